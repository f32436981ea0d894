/**
 * The dataplane shell (controller/src/dataplane/) against real netfilter: iptables-restore/-save,
 * single-rule commands, conntrack and nfacct, each aimed at a fresh network namespace through the
 * runner's `ip netns exec` prefix, so the host's tables and conntrack table are never touched.
 * Runs as root; see kernelTestMode() for the KPX_SKIP_KERNEL escape hatch.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Conntrack, staleFlows, type ConntrackFlow } from '../../controller/src/dataplane/conntrack.ts';
import { execaRunner, type CommandRunner } from '../../controller/src/dataplane/exec.ts';
import { Iptables, RestoreError } from '../../controller/src/dataplane/iptables.ts';
import { ensureNfacct, nfacctAvailable, readNfacct } from '../../controller/src/dataplane/nfacct.ts';
import type { ServingEndpoints } from '../../controller/src/sim/conntrack.ts';
import { hasProgram, kernelTestMode, NetworkNamespace } from './netns.ts';

const mode = kernelTestMode();
if (mode.kind === 'skip') process.stderr.write(`kpx: ${mode.reason}\n`);
const conntrackTool = hasProgram('conntrack');
const nfacctTool = hasProgram('nfacct');

const runnerFor = (ns: NetworkNamespace): CommandRunner => execaRunner({ prefix: ['ip', 'netns', 'exec', ns.name] });

/** The `-A` lines of one chain in an iptables-save dump, in order. */
const rulesOf = (dump: string, chain: string): string[] => dump.split('\n').filter((l) => l.startsWith(`-A ${chain} `));

/** Sends UDP datagrams from inside the namespace (node's dgram; argument array, no shell). */
async function sendUdp(ns: NetworkNamespace, host: string, port: number, count: number): Promise<void> {
  const script = `const s = require('node:dgram').createSocket('udp4'); let n = ${String(count)};
const next = () => (n-- > 0 ? s.send('kpx', ${String(port)}, ${JSON.stringify(host)}, next) : s.close()); next();`;
  await ns.check(process.execPath, ['-e', script]);
}

describe.skipIf(mode.kind === 'skip')('kernel: the dataplane shell', () => {
  const namespaces: NetworkNamespace[] = [];
  const fresh = async (purpose: string): Promise<NetworkNamespace> => {
    const ns = await NetworkNamespace.create(purpose);
    namespaces.push(ns);
    return ns;
  };

  beforeAll(() => {
    if (mode.kind === 'fail') throw new Error(mode.reason);
  });
  afterAll(async () => {
    await Promise.all(namespaces.map((ns) => ns.delete()));
  });

  describe('Iptables', () => {
    let ns: NetworkNamespace;
    let ipt: Iptables;

    beforeEach(async () => {
      ns = await fresh('dp-ipt');
      ipt = new Iptables('IPv4', runnerFor(ns));
    });

    it('restore without --noflush replaces the table; with --noflush it keeps chains the payload does not name', async () => {
      await ipt.restore('*filter\n:KUBE-A - [0:0]\n-A KUBE-A -j ACCEPT\n-A INPUT -j KUBE-A\nCOMMIT\n', { noflush: false });
      await ipt.restore('*filter\n:KUBE-B - [0:0]\n-A KUBE-B -j DROP\nCOMMIT\n', { noflush: false });
      let dump = await ipt.save('filter');
      expect(dump).not.toContain(':KUBE-A');
      expect(rulesOf(dump, 'INPUT')).toEqual([]);
      expect(rulesOf(dump, 'KUBE-B')).toEqual(['-A KUBE-B -j DROP']);

      // --noflush: KUBE-B survives, a chain named with `:` is created or flushed and rewritten.
      await ipt.restore('*filter\n:KUBE-C - [0:0]\n:KUBE-B - [0:0]\n-A KUBE-C -j RETURN\n-A KUBE-B -j ACCEPT\nCOMMIT\n', { noflush: true, counters: true });
      dump = await ipt.save('filter');
      expect(rulesOf(dump, 'KUBE-B')).toEqual(['-A KUBE-B -j ACCEPT']);
      expect(rulesOf(dump, 'KUBE-C')).toEqual(['-A KUBE-C -j RETURN']);
    });

    it('restores only the table named with -T, and save(table) reads back only that table', async () => {
      const payload = '*filter\n:KUBE-F - [0:0]\nCOMMIT\n*nat\n:KUBE-N - [0:0]\n-A KUBE-N -j RETURN\nCOMMIT\n';
      await ipt.restore(payload, { noflush: true, table: 'nat' });
      const nat = await ipt.save('nat');
      expect(nat).toContain('*nat');
      expect(nat).not.toContain('*filter');
      expect(rulesOf(nat, 'KUBE-N')).toEqual(['-A KUBE-N -j RETURN']);
      expect(await ipt.chainExists('filter', 'KUBE-F')).toBe(false);
      await ipt.ensureChain('filter', 'KUBE-F2');
      const all = await ipt.save();
      expect(all).toContain('*nat');
      expect(all).toContain(':KUBE-F2 - [0:0]');
    });

    it('a bad payload fails with a RestoreError naming its line, and nothing of it is applied', async () => {
      const payload = ['*filter', ':KUBE-OK - [0:0]', '-A KUBE-OK -j ACCEPT', '-A KUBE-OK -m kpx-no-such-match -j ACCEPT', '-A KUBE-OK -j DROP', 'COMMIT', ''].join('\n');
      const error: unknown = await ipt.restore(payload, { noflush: true }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RestoreError);
      if (!(error instanceof RestoreError)) return;
      expect(error.line).toBe(4);
      expect(error.message).toContain('at line 4');
      expect(error.message).toContain('> 4: -A KUBE-OK -m kpx-no-such-match -j ACCEPT');
      expect(error.message).toContain('  2: :KUBE-OK - [0:0]');
      expect(error.message).toContain('  6: COMMIT');
      expect(await ipt.chainExists('filter', 'KUBE-OK')).toBe(false);
    });

    it('ensureChain and ensureRule are idempotent: the second call reports the existing one and adds nothing', async () => {
      const comment = ['-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'];
      expect(await ipt.ensureChain('nat', 'KUBE-SERVICES')).toBe(false);
      expect(await ipt.ensureChain('nat', 'KUBE-SERVICES')).toBe(true);
      expect(await ipt.ensureRule('append', 'nat', 'OUTPUT', comment)).toBe(false);
      expect(await ipt.ensureRule('append', 'nat', 'OUTPUT', comment)).toBe(true);
      const dump = await ipt.save('nat');
      expect(dump.split('\n').filter((l) => l.startsWith(':KUBE-SERVICES '))).toHaveLength(1);
      expect(rulesOf(dump, 'OUTPUT')).toEqual(['-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES']);
    });

    it('prepend puts the rule first, append last', async () => {
      await ipt.ensureRule('append', 'filter', 'INPUT', ['-s', '192.0.2.1/32', '-j', 'ACCEPT']);
      await ipt.ensureRule('prepend', 'filter', 'INPUT', ['-s', '192.0.2.2/32', '-j', 'DROP']);
      await ipt.ensureRule('append', 'filter', 'INPUT', ['-s', '192.0.2.3/32', '-j', 'ACCEPT']);
      await ipt.ensureRule('prepend', 'filter', 'INPUT', ['-m', 'conntrack', '--ctstate', 'NEW', '-j', 'DROP']);
      expect(rulesOf(await ipt.save('filter'), 'INPUT')).toEqual([
        '-A INPUT -m conntrack --ctstate NEW -j DROP',
        '-A INPUT -s 192.0.2.2/32 -j DROP',
        '-A INPUT -s 192.0.2.1/32 -j ACCEPT',
        '-A INPUT -s 192.0.2.3/32 -j ACCEPT',
      ]);
    });

    it('deleteRule and deleteChain remove what exists and report false for what does not', async () => {
      await ipt.restore('*nat\n:KUBE-SVC-X - [0:0]\n-A KUBE-SVC-X -j RETURN\n-A KUBE-SVC-X -s 10.0.0.0/8 -j RETURN\nCOMMIT\n', { noflush: true });
      await ipt.ensureRule('append', 'nat', 'PREROUTING', ['-j', 'KUBE-SVC-X']);
      expect(await ipt.deleteRule('nat', 'PREROUTING', ['-j', 'KUBE-SVC-X'])).toBe(true);
      expect(await ipt.deleteRule('nat', 'PREROUTING', ['-j', 'KUBE-SVC-X'])).toBe(false);
      expect(await ipt.deleteRule('nat', 'KUBE-NO-SUCH-CHAIN', ['-j', 'RETURN'])).toBe(false);
      expect(rulesOf(await ipt.save('nat'), 'PREROUTING')).toEqual([]);

      expect(await ipt.chainExists('nat', 'KUBE-SVC-X')).toBe(true);
      expect(await ipt.deleteChain('nat', 'KUBE-SVC-X')).toBe(true);
      expect(await ipt.chainExists('nat', 'KUBE-SVC-X')).toBe(false);
      expect(await ipt.deleteChain('nat', 'KUBE-SVC-X')).toBe(false);
      expect(await ipt.save('nat')).not.toContain('KUBE-SVC-X');
      expect(await ipt.chainExists('nat', 'PREROUTING')).toBe(true);
    });

    it('commands that fail for another reason throw one line naming the command', async () => {
      await ipt.ensureChain('filter', 'KUBE-REF');
      await ipt.ensureRule('append', 'filter', 'INPUT', ['-j', 'KUBE-REF']);
      // A referenced chain cannot be deleted.
      await expect(ipt.deleteChain('filter', 'KUBE-REF')).rejects.toThrow(/^iptables -w 5 -t filter -X KUBE-REF failed \(exit \d+\): [^\n]+$/);
      await expect(ipt.ensureRule('append', 'filter', 'INPUT', ['-m', 'kpx-no-such-match', '-j', 'ACCEPT'])).rejects.toThrow(/^iptables -w 5 -t filter -C INPUT .*failed/);
    });

    it('reports its version and backend', async () => {
      expect(await ipt.version()).toEqual({ version: expect.stringMatching(/^1\.\d+\.\d+$/) as unknown, backend: expect.stringMatching(/^(nf_tables|legacy)$/) as unknown });
    });

    it('drives ip6tables for IPv6, separately from the IPv4 tables', async () => {
      const ipt6 = new Iptables('IPv6', runnerFor(ns));
      expect(ipt6.family).toBe('IPv6');
      await ipt6.restore('*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -d fd00:96::a/128 -p udp -m udp --dport 53 -j RETURN\nCOMMIT\n', { noflush: true });
      expect(await ipt6.ensureRule('prepend', 'nat', 'OUTPUT', ['-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'])).toBe(false);
      const dump6 = await ipt6.save('nat');
      expect(rulesOf(dump6, 'KUBE-SERVICES')).toEqual(['-A KUBE-SERVICES -d fd00:96::a/128 -p udp -m udp --dport 53 -j RETURN']);
      expect(rulesOf(dump6, 'OUTPUT')).toHaveLength(1);
      expect(await ipt.chainExists('nat', 'KUBE-SERVICES')).toBe(false);
      const error: unknown = await ipt6.restore('*nat\n-A KUBE-SERVICES -d 10.0.0.1/32 -j RETURN\nCOMMIT\n', { noflush: true }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RestoreError);
      expect((error as RestoreError).message).toMatch(/^ip6tables-restore -w 5 --noflush failed/);
    });
  });

  describe.skipIf(!conntrackTool)('Conntrack', () => {
    let ns: NetworkNamespace;
    let ct: Conntrack;
    const insert = (proto: 'udp' | 'tcp', orig: [string, number, string, number], reply: [string, number]): Promise<unknown> => {
      const [src, sport, dst, dport] = orig;
      const args = ['-I', '-p', proto, '-s', src, '-d', dst, '--sport', String(sport), '--dport', String(dport), '-t', '300'];
      args.push('--reply-src', reply[0], '--reply-dst', src, '--reply-port-src', String(reply[1]), '--reply-port-dst', String(sport));
      return ns.check('conntrack', proto === 'tcp' ? [...args, '--state', 'ESTABLISHED'] : args);
    };
    const key = (f: ConntrackFlow): string => `${f.origSrc}:${String(f.origSport)}>${f.origDst}:${String(f.origDport)} via ${f.replySrc}:${String(f.replySport)}`;

    beforeEach(async () => {
      ns = await fresh('dp-ct');
      ct = new Conntrack(runnerFor(ns));
    });

    it('lists a real DNATed UDP flow with its original and reply tuples', async () => {
      await ns.check('ip', ['addr', 'add', '10.0.0.1/32', 'dev', 'lo']);
      await ns.check('ip', ['route', 'add', '10.96.0.0/16', 'dev', 'lo', 'src', '10.0.0.1']);
      await new Iptables('IPv4', runnerFor(ns)).restore('*nat\n-A OUTPUT -d 10.96.0.10/32 -p udp --dport 53 -j DNAT --to-destination 10.0.0.1:5353\nCOMMIT\n', { noflush: true });
      await sendUdp(ns, '10.96.0.10', 53, 1);
      const flows = await ct.listUdp('IPv4');
      expect(flows).toHaveLength(1);
      expect(flows[0]).toMatchObject({ protocol: 'udp', origSrc: '10.0.0.1', origDst: '10.96.0.10', origDport: 53, replySrc: '10.0.0.1', replySport: 5353, replyDst: '10.0.0.1' });
      expect(flows[0]?.replyDport).toBe(flows[0]?.origSport);
      expect(await ct.listUdp('IPv6')).toEqual([]);
    });

    it('deletes exactly the stale flows staleFlows selects, leaving serving, unrelated and TCP entries', async () => {
      await insert('udp', ['10.0.0.2', 1000, '10.96.0.10', 53], ['10.244.1.3', 53]); // endpoint gone: stale
      await insert('udp', ['10.0.0.3', 1001, '10.96.0.10', 53], ['10.244.2.4', 53]); // serving
      await insert('udp', ['10.0.0.2', 1002, '10.96.0.11', 53], ['10.244.1.3', 53]); // serving another frontend
      await insert('udp', ['192.0.2.7', 1003, '10.89.0.10', 30053], ['10.244.1.3', 53]); // node port, stale
      await insert('udp', ['10.0.0.2', 1004, '192.0.2.1', 53], ['192.0.2.1', 53]); // not a Service
      await insert('tcp', ['10.0.0.2', 1000, '10.96.0.10', 53], ['10.244.1.3', 53]); // TCP is never touched

      const serving: ServingEndpoints = {
        byFrontend: new Map([['10.96.0.10:53', new Set(['10.244.2.4'])], ['10.96.0.11:53', new Set(['10.244.1.3'])]]),
        byNodePort: new Map([[30053, new Set(['10.244.2.4'])]]),
      };
      const before = await ct.listUdp('IPv4');
      expect(before).toHaveLength(5);
      const stale = staleFlows(before, serving);
      expect(stale.map(key).sort()).toEqual(['10.0.0.2:1000>10.96.0.10:53 via 10.244.1.3:53', '192.0.2.7:1003>10.89.0.10:30053 via 10.244.1.3:53']);

      for (const f of stale) {
        expect(await ct.deleteFlows('IPv4', { origDst: f.origDst, origDport: f.origDport, replySrc: f.replySrc, replySport: f.replySport })).toBe(1);
      }
      const after = await ct.listUdp('IPv4');
      expect(after.map(key).sort()).toEqual(before.filter((f) => !stale.includes(f)).map(key).sort());
      expect(staleFlows(after, serving)).toEqual([]);
      expect((await ns.check('conntrack', ['-L', '-p', 'tcp'])).stdout).toContain('dport=53');

      // Nothing left to match: 0, not an error (conntrack itself exits 1 here).
      expect(await ct.deleteFlows('IPv4', { origDst: '10.96.0.10', replySrc: '10.244.1.3' })).toBe(0);
      // A filter on the port alone catches every UDP flow to it.
      expect(await ct.deleteFlows('IPv4', { origDport: 53 })).toBe(3);
      expect(await ct.listUdp('IPv4')).toEqual([]);
    });

    it('lists and deletes IPv6 flows, whatever spelling the filter uses', async () => {
      await insert('udp', ['fd00::1', 2000, 'fd00:96::a', 53], ['fd00:244::5', 53]);
      await insert('udp', ['fd00::1', 2001, 'fd00:96::b', 53], ['fd00:244::6', 53]);
      await insert('udp', ['10.0.0.2', 2000, '10.96.0.10', 53], ['10.244.1.3', 53]);
      const flows = await ct.listUdp('IPv6');
      expect(flows.map(key).sort()).toEqual(['fd00::1:2000>fd00:96::a:53 via fd00:244::5:53', 'fd00::1:2001>fd00:96::b:53 via fd00:244::6:53']);
      expect(await ct.deleteFlows('IPv6', { origDst: 'fd00:96:0:0:0:0:0:a', replySrc: 'FD00:244::5' })).toBe(1);
      expect((await ct.listUdp('IPv6')).map((f) => f.origDst)).toEqual(['fd00:96::b']);
      expect(await ct.listUdp('IPv4')).toHaveLength(1);
    });

    it('refuses a delete without a filter instead of wiping every UDP flow', async () => {
      await insert('udp', ['10.0.0.2', 1000, '10.96.0.10', 53], ['10.244.1.3', 53]);
      await expect(ct.deleteFlows('IPv4', {})).rejects.toThrow(/needs a filter/);
      expect(await ct.listUdp('IPv4')).toHaveLength(1);
    });
  });

  describe.skipIf(!nfacctTool)('nfacct', () => {
    it('creates an accounting object once and reads the packets a rule counted into it', async () => {
      const ns = await fresh('dp-nfacct');
      const runner = runnerFor(ns);
      expect(await nfacctAvailable(runner)).toBe(true);
      expect(await readNfacct(runner, 'localhost_nps_accepted_pkts')).toBeUndefined();
      expect(await ensureNfacct(runner, 'localhost_nps_accepted_pkts')).toBe(false);
      expect(await ensureNfacct(runner, 'localhost_nps_accepted_pkts')).toBe(true);
      expect(await readNfacct(runner, 'localhost_nps_accepted_pkts')).toBe(0);

      const ipt = new Iptables('IPv4', runner);
      await ipt.ensureRule('append', 'filter', 'OUTPUT', ['-p', 'udp', '--dport', '9', '-m', 'nfacct', '--nfacct-name', 'localhost_nps_accepted_pkts']);
      await sendUdp(ns, '127.0.0.1', 9, 3);
      expect(await readNfacct(runner, 'localhost_nps_accepted_pkts')).toBe(3);
    });

    it('reports nfacct as unavailable when the tool cannot run', async () => {
      const ns = await fresh('dp-nfacct');
      expect(await nfacctAvailable(execaRunner({ prefix: ['ip', 'netns', 'exec', ns.name, 'env', 'PATH=/nonexistent'] }))).toBe(false);
    });
  });
});
