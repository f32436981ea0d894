import { describe, expect, it } from 'vitest';
import type { CommandRunner, ExecResult } from './exec.ts';
import { Iptables, RestoreError } from './iptables.ts';

/** Answers every command with one canned result (real outputs of iptables 1.8), recording the calls. */
function cannedRunner(result: Partial<ExecResult>): CommandRunner & { calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    run(file, args) {
      calls.push([file, ...args]);
      return Promise.resolve({ exitCode: 0, stdout: '', stderr: '', ...result });
    },
  };
}

const PAYLOAD = ['*filter', ':KUBE-A - [0:0]', ':KUBE-B - [0:0]', '-A KUBE-A -j ACCEPT', '-A KUBE-A -m bogus -j ACCEPT', '-A KUBE-B -j DROP', 'COMMIT', ''].join('\n');

async function restoreFailure(stderr: string, payload = PAYLOAD): Promise<RestoreError> {
  const error: unknown = await new Iptables('IPv4', cannedRunner({ exitCode: 2, stderr })).restore(payload, { noflush: true }).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof RestoreError)) throw new Error(`expected a RestoreError, got ${String(error)}`);
  return error;
}

describe('Iptables.restore errors', () => {
  it('names the line of a parse error and shows it with two lines of context on each side', async () => {
    const error = await restoreFailure(
      "iptables-restore v1.8.9 (nf_tables): Couldn't load match `bogus':No such file or directory\n\nError occurred at line: 5\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n",
    );
    expect(error.line).toBe(5);
    expect(error.message).toBe(
      [
        "iptables-restore -w 5 --noflush failed (exit 2) at line 5: iptables-restore v1.8.9 (nf_tables): Couldn't load match `bogus':No such file or directory; Error occurred at line: 5",
        '  3: :KUBE-B - [0:0]',
        '  4: -A KUBE-A -j ACCEPT',
        '> 5: -A KUBE-A -m bogus -j ACCEPT',
        '  6: -A KUBE-B -j DROP',
        '  7: COMMIT',
      ].join('\n'),
    );
  });

  it('understands the "line N failed" form and clips the context at the start of the payload', async () => {
    const error = await restoreFailure('iptables-restore: line 1 failed\n', 'garbage\n');
    expect(error.line).toBe(1);
    expect(error.message.split('\n').slice(1)).toEqual(['> 1: garbage']);
  });

  it('understands "COMMIT expected at line N"', async () => {
    expect((await restoreFailure('iptables-restore: COMMIT expected at line 8\n')).line).toBe(8);
  });

  it('has no line when iptables-restore names none', async () => {
    const error = await restoreFailure('iptables-restore: unable to initialize table \'nat\'\n');
    expect(error.line).toBeUndefined();
    expect(error.message).toBe("iptables-restore -w 5 --noflush failed (exit 2): iptables-restore: unable to initialize table 'nat'");
  });
});

describe('Iptables commands', () => {
  it('runs ip6tables-restore with the wait, counters and table flags for IPv6', async () => {
    const runner = cannedRunner({});
    await new Iptables('IPv6', runner, { waitSeconds: 10 }).restore('*nat\nCOMMIT\n', { noflush: false, counters: true, table: 'nat' });
    expect(runner.calls).toEqual([['ip6tables-restore', '-w', '10', '--counters', '-T', 'nat']]);
  });

  it('reads the version and backend, also from releases that print no backend', async () => {
    await expect(new Iptables('IPv4', cannedRunner({ stdout: 'iptables v1.8.9 (nf_tables)\n' })).version()).resolves.toEqual({ version: '1.8.9', backend: 'nf_tables' });
    await expect(new Iptables('IPv4', cannedRunner({ stdout: 'iptables v1.8.7 (legacy)\n' })).version()).resolves.toEqual({ version: '1.8.7', backend: 'legacy' });
    await expect(new Iptables('IPv6', cannedRunner({ stdout: 'ip6tables v1.6.1\n' })).version()).resolves.toEqual({ version: '1.6.1', backend: 'legacy' });
  });

  it('reports a failed command on one line with its stderr', async () => {
    const ipt = new Iptables('IPv4', cannedRunner({ exitCode: 4, stderr: 'iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n' }));
    await expect(ipt.ensureChain('nat', 'KUBE-SERVICES')).rejects.toThrow(
      /^iptables -w 5 -t nat -N KUBE-SERVICES failed \(exit 4\): iptables v1\.8\.9 \(nf_tables\): Could not fetch rule set generation id: Permission denied \(you must be root\)$/,
    );
  });

  it('runs the -nft or -legacy variants of every program when given a backend, plain iptables by default', async () => {
    for (const [family, backend, base] of [['IPv4', 'nft', 'iptables-nft'], ['IPv6', 'legacy', 'ip6tables-legacy'], ['IPv4', 'default', 'iptables'], ['IPv6', undefined, 'ip6tables']] as const) {
      const runner = cannedRunner({ stdout: ':KPX-CANARY - [0:0]\n' });
      const ipt = new Iptables(family, runner, backend === undefined ? {} : { backend });
      expect(ipt.backend).toBe(backend ?? 'default');
      await ipt.restore('*nat\nCOMMIT\n', { noflush: true });
      await ipt.save('mangle');
      await ipt.ensureChain('nat', 'KUBE-SERVICES');
      await ipt.chainExists('filter', 'KPX-CANARY');
      expect(runner.calls).toEqual([
        [`${base}-restore`, '-w', '5', '--noflush'],
        [`${base}-save`, '-t', 'mangle'],
        [base, '-w', '5', '-t', 'nat', '-N', 'KUBE-SERVICES'],
        [base, '-w', '5', '-t', 'filter', '-S', 'KPX-CANARY', '1'],
      ]);
    }
  });
});
