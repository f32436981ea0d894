import { describe, expect, it } from 'vitest';
import { commandError, execaRunner, runChecked } from './exec.ts';

describe('execaRunner', () => {
  it('feeds the input on stdin and returns stdout byte for byte, also for payloads of tens of MB', async () => {
    const payload = '-A KUBE-SERVICES -m comment --comment "ns/svc:port cluster IP" -j KUBE-SVC-X\n'.repeat(400_000);
    expect(payload.length).toBeGreaterThan(30_000_000);
    const result = await execaRunner().run('cat', [], payload);
    expect(result.exitCode).toBe(0);
    expect(result.stdout === payload).toBe(true);
  });

  it('runs the program behind the prefix, each argument one argv element', async () => {
    const result = await execaRunner({ prefix: ['env', 'KPX_TEST_PREFIX=yes'] }).run('printenv', ['KPX_TEST_PREFIX']);
    expect(result).toEqual({ exitCode: 0, stdout: 'yes\n', stderr: '' });
    const spaced = await execaRunner().run('printf', ['%s|', 'kubernetes service portals', '$(id)']);
    expect(spaced.stdout).toBe('kubernetes service portals|$(id)|');
  });

  it('returns a failing exit code instead of throwing, and -1 when the program cannot start', async () => {
    const failed = await execaRunner().run('ls', ['/nonexistent-kpx-path']);
    expect(failed.exitCode).toBeGreaterThan(0);
    expect(failed.stderr).toMatch(/nonexistent-kpx-path/);
    const missing = await execaRunner().run('kpx-no-such-program', []);
    expect(missing.exitCode).toBe(-1);
    expect(missing.stderr).toMatch(/ENOENT/);
  });
});

describe('runChecked / commandError', () => {
  it('throws one line naming the command, exit code and stderr', async () => {
    await expect(runChecked(execaRunner(), 'ls', ['/nonexistent-kpx-path'])).rejects.toThrow(/^ls \/nonexistent-kpx-path failed \(exit 2\): ls: .*nonexistent-kpx-path.*$/);
    const error = commandError('conntrack', ['-L'], { exitCode: 1, stdout: '', stderr: 'line one\n\n  line two\n' });
    expect(error.message).toBe('conntrack -L failed (exit 1): line one; line two');
  });
});
