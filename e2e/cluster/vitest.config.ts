// The real-cluster e2e project (and the chart and image checks, which need the pinned helm and hadolint
// binaries): root only, one file at a time (one cluster per machine), long timeouts.
//   npx vitest run --config e2e/cluster/vitest.config.ts
import { defineConfig } from 'vitest/config';

// eslint-disable-next-line no-restricted-syntax -- vitest loads the default export
export default defineConfig({
  test: {
    name: 'cluster',
    reporters: ['default', 'json'],
    outputFile: { json: 'reports/vitest-e2e.json' },
    root: new URL('../..', import.meta.url).pathname,
    include: ['e2e/cluster/**/*.test.ts', 'e2e/chart/**/*.test.ts', 'e2e/image/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    fileParallelism: false,
    maxWorkers: 1,
    pool: 'forks',
  },
});
