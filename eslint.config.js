// Lint as architecture: strict types everywhere, console only in the CLI layer, the pure core
// free of IO imports.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const IO_MODULES = ['node:fs', 'node:fs/promises', 'node:child_process', 'node:net', 'node:http', 'node:https', 'node:os', 'node:dgram', 'execa', 'prom-client', '@kubernetes/client-node'];

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'charts/**', 'coverage/**', '.scratch/**', 'reports/**'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  ...tseslint.configs.stylisticTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js', 'controller/bin/kpx.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: false }],
      'no-restricted-syntax': ['error', { selector: 'ExportDefaultDeclaration', message: 'Use named exports.' }],
      'no-console': 'error',
    },
  },
  {
    files: ['controller/src/{model,compile,sim,plan}/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: IO_MODULES.map((name) => ({ name, message: 'The pure core does no IO.' })) }],
      'no-restricted-globals': ['error', { name: 'Date', message: 'The pure core reads no clock: take time as a parameter.' }],
      'no-restricted-properties': ['error', { object: 'Math', property: 'random', message: 'The pure core is deterministic.' }, { object: 'performance', property: 'now', message: 'No clock in the pure core.' }],
    },
  },
  { files: ['controller/src/cli/**/*.ts', 'e2e/**/*.ts', 'bench/**/*.ts'], rules: { 'no-console': 'off' } },
  { files: ['eslint.config.js'], ...tseslint.configs.disableTypeChecked },
  { files: ['controller/bin/kpx.js'], ...tseslint.configs.disableTypeChecked, languageOptions: { globals: { process: 'readonly' } } },
  {
    // vitest config files must export default
    files: ['vitest.config.ts', 'eslint.config.js'],
    rules: { 'no-restricted-syntax': 'off' },
  },
);
