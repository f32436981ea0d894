import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    reporters: ['default', 'json'],
    outputFile: { json: 'reports/vitest.json' },
    setupFiles: ['./controller/test-setup.ts'],
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['controller/src/**/*.test.ts'], testTimeout: 30_000 },
      },
      {
        extends: true,
        // Real netfilter in network namespaces: root only, one file at a time.
        test: {
          name: 'kernel',
          include: ['e2e/kernel/**/*.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
