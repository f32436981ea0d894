import { execa } from 'execa';
import { describe, expect, it } from 'vitest';

const SCRIPT = new URL('./testdata/sigterm-with-child.ts', import.meta.url).pathname;

describe('stopSignal', () => {
  it('lets the agent shut down gracefully when SIGTERM arrives while a child program runs', async () => {
    // Before the fix, the handler removed itself, execa's signal-exit re-raised SIGTERM with the
    // default action, and the process died without running its shutdown.
    const r = await execa(process.execPath, [SCRIPT], { reject: false, timeout: 10_000 });
    expect(r.signal).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('stopping on SIGTERM');
  });
});
