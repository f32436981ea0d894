// Tests fail on stray console output: the product prints through its own writers only.
/* eslint-disable no-console */
import { afterEach } from 'vitest';

let stray: string[] = [];
for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
  console[method] = (...args: unknown[]): void => {
    stray.push(`console.${method}: ${args.map(String).join(' ')}`);
  };
}

afterEach(() => {
  const found = stray;
  stray = [];
  if (found.length > 0) throw new Error(`Unexpected console output:\n${found.join('\n')}`);
});
