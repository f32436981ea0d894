/**
 * iptables backend detection (controller/src/dataplane/backend.ts) against real netfilter: each
 * case prepares a fresh network namespace through iptables-legacy or iptables-nft, checks what
 * `--iptables-backend auto` picks, then lets kpx program the node through that backend (a full
 * proxier sync: jumps, canaries, restore) and reads it back with that backend's own save, the
 * other backend staying empty of kpx chains. `kpx run --cleanup` (a real process in the
 * namespace) must then find and remove the rules in the same backend.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../controller/src/agent/clock.ts';
import { silentLogger } from '../../controller/src/agent/log.ts';
import { CANARY_CHAIN, Proxier } from '../../controller/src/agent/proxier.ts';
import { detectBackend } from '../../controller/src/dataplane/backend.ts';
import { execaRunner, type CommandRunner } from '../../controller/src/dataplane/exec.ts';
import { Iptables } from '../../controller/src/dataplane/iptables.ts';
import { decodeDocuments } from '../../controller/src/model/documents.ts';
import { hasProgram, kernelTestMode, NetworkNamespace } from './netns.ts';

const mode = kernelTestMode();
if (mode.kind === 'skip') process.stderr.write(`kpx: ${mode.reason}\n`);
const KPX = fileURLToPath(new URL('../../controller/bin/kpx.js', import.meta.url));
const EXAMPLE = decodeDocuments(readFileSync(new URL('../../examples/cluster.yaml', import.meta.url), 'utf8'), 'examples/cluster.yaml');
const VARIANTS = ['iptables-legacy', 'iptables-legacy-save', 'ip6tables-legacy', 'iptables-nft', 'iptables-nft-save', 'ip6tables-nft'];

const runnerFor = (ns: NetworkNamespace): CommandRunner => execaRunner({ prefix: ['ip', 'netns', 'exec', ns.name] });

/** One full sync of the example cluster as node-a, through `backend`, as the agent does it. */
async function syncThrough(ns: NetworkNamespace, backend: 'nft' | 'legacy'): Promise<void> {
  const runner = runnerFor(ns);
  const tables = new Map((['IPv4', 'IPv6'] as const).map((f) => [f, new Iptables(f, runner, { backend })] as const));
  const proxier = new Proxier({
    overrides: { nodeName: 'node-a' },
    configObjects: EXAMPLE.filter((o) => o.object.kind === 'KubeProxyConfiguration'),
    dataplane: (family) => ({ iptables: tables.get(family) ?? new Iptables(family, runner, { backend }) }),
    log: silentLogger,
    clock: systemClock(),
  });
  for (const { object } of EXAMPLE) {
    if (object.kind === 'Service') proxier.onServiceChange(undefined, object);
    if (object.kind === 'EndpointSlice') proxier.onEndpointSliceChange(undefined, object);
    if (object.kind === 'Node' && (object.metadata as { name?: string } | undefined)?.name === 'node-a') proxier.onNodeChange(object);
  }
  for (const what of ['services', 'endpointSlices', 'node'] as const) proxier.setSynced(what);
  const summary = await proxier.sync();
  expect(summary?.kind).toBe('full');
}

/** All tables of one backend and family, read with that backend's own save. */
async function dump(ns: NetworkNamespace, backend: 'nft' | 'legacy', family: 'iptables' | 'ip6tables' = 'iptables'): Promise<string> {
  return (await ns.check(`${family}-${backend}-save`, [])).stdout;
}

const KPX_CHAIN = /^:(KUBE-SERVICES|KUBE-SVC-|KUBE-SEP-|KPX-CANARY)/m;

/** Runs `body` against a fresh namespace, deleted afterwards whatever happens. */
async function inFreshNamespace(purpose: string, body: (ns: NetworkNamespace) => Promise<void>): Promise<void> {
  const ns = await NetworkNamespace.create(purpose);
  try {
    await body(ns);
  } finally {
    await ns.delete();
  }
}

describe.skipIf(mode.kind === 'skip')('kernel: iptables backend detection', () => {
  beforeAll(() => {
    if (mode.kind === 'fail') throw new Error(mode.reason);
    const missing = VARIANTS.filter((p) => !hasProgram(p));
    if (missing.length > 0) throw new Error(`the iptables package's -legacy and -nft variants are needed; missing: ${missing.join(', ')}`);
  });

  /** kpx programs the node through `backend`; only that backend holds its chains; --cleanup empties it again. */
  async function provesRoundTrip(ns: NetworkNamespace, backend: 'nft' | 'legacy'): Promise<void> {
    const other = backend === 'nft' ? 'legacy' : 'nft';
    await syncThrough(ns, backend);
    for (const family of ['iptables', 'ip6tables'] as const) {
      const mine = await dump(ns, backend, family);
      expect(mine, `${family}-${backend}-save`).toMatch(/^-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES$/m);
      expect(mine).toMatch(/^-A KUBE-SERVICES .* -j KUBE-SVC-/m);
      expect(mine).toContain(`:${CANARY_CHAIN} - [0:0]`);
      expect(await dump(ns, other, family), `${family}-${other}-save`).not.toMatch(KPX_CHAIN);
    }
    // Detection still lands on the same backend with kpx's rules in place, so a restarted agent
    // (and --cleanup) keeps using it.
    expect((await detectBackend(runnerFor(ns), 'auto')).backend).toBe(backend);

    const cleanup = await ns.run(process.execPath, [KPX, 'run', '--cleanup']);
    expect(cleanup.exitCode, cleanup.stderr).toBe(0);
    const logs = cleanup.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logs[0]).toMatchObject({ level: 'info', msg: 'iptables backend chosen', backend, flag: 'auto' });
    expect(logs.filter((l) => l.msg === 'removed kpx rules').map((l) => l.family)).toEqual(['IPv4', 'IPv6']);
    for (const family of ['iptables', 'ip6tables'] as const) expect(await dump(ns, backend, family), `${family}-${backend}-save after --cleanup`).not.toMatch(KPX_CHAIN);
  }

  it('picks legacy when only iptables-legacy holds rules, and kpx programs (and cleans) the legacy tables', () =>
    inFreshNamespace('be-legacy', async (ns) => {
      await ns.check('iptables-legacy', ['-w', '-t', 'filter', '-A', 'INPUT', '-s', '192.0.2.1/32', '-j', 'DROP']);
      await ns.check('ip6tables-legacy', ['-w', '-t', 'filter', '-A', 'INPUT', '-s', '2001:db8::1/128', '-j', 'DROP']);
      const choice = await detectBackend(runnerFor(ns), 'auto');
      expect(choice).toEqual({
        backend: 'legacy',
        reason: 'no kubelet hint chains; legacy holds more rules (0 nft rules, 2 legacy rules)',
        scans: { nft: { hints: [], rules: 0 }, legacy: { hints: [], rules: 2 } },
      });
      await provesRoundTrip(ns, 'legacy');
      // The node's own legacy rule is untouched.
      expect(await dump(ns, 'legacy')).toContain('-A INPUT -s 192.0.2.1/32 -j DROP');
    }));

  it("picks nft when kubelet's hint chains are in the nft mangle table, even though legacy holds more rules", () =>
    inFreshNamespace('be-hint', async (ns) => {
      await ns.check('iptables-nft', ['-w', '-t', 'mangle', '-N', 'KUBE-IPTABLES-HINT']);
      await ns.check('iptables-nft', ['-w', '-t', 'mangle', '-N', 'KUBE-KUBELET-CANARY']);
      await ns.check('ip6tables-nft', ['-w', '-t', 'mangle', '-N', 'KUBE-IPTABLES-HINT']);
      for (const source of ['192.0.2.1/32', '192.0.2.2/32', '192.0.2.3/32']) await ns.check('iptables-legacy', ['-w', '-t', 'filter', '-A', 'INPUT', '-s', source, '-j', 'DROP']);
      const choice = await detectBackend(runnerFor(ns), 'auto');
      expect(choice.backend).toBe('nft');
      expect(choice.reason).toBe("kubelet's IPv4 KUBE-IPTABLES-HINT, IPv4 KUBE-KUBELET-CANARY, IPv6 KUBE-IPTABLES-HINT chains are in the nft mangle table");
      expect(choice.scans?.legacy.rules).toBe(3);
      await provesRoundTrip(ns, 'nft');
    }));

  it('picks nft for an empty node (both backends empty: the tie goes to nft)', () =>
    inFreshNamespace('be-empty', async (ns) => {
      const choice = await detectBackend(runnerFor(ns), 'auto');
      expect(choice).toMatchObject({ backend: 'nft', reason: 'no kubelet hint chains and a tie (0 nft rules, 0 legacy rules): nft, the default' });
      await provesRoundTrip(ns, 'nft');
    }));

  it('an explicit --iptables-backend legacy overrides what auto would pick', () =>
    inFreshNamespace('be-explicit', async (ns) => {
      await ns.check('iptables-nft', ['-w', '-t', 'mangle', '-N', 'KUBE-IPTABLES-HINT']);
      expect((await detectBackend(runnerFor(ns), 'legacy')).backend).toBe('legacy');
      await syncThrough(ns, 'legacy');
      expect(await dump(ns, 'legacy')).toMatch(KPX_CHAIN);
      expect(await dump(ns, 'nft')).not.toMatch(KPX_CHAIN);
    }));
});
