/**
 * The agent's sync against real netfilter in a fresh namespace: full sync into an empty node,
 * partial syncs that write only what changed, a restart over existing rules that writes nothing,
 * drift (external flush, canary removal) detected and repaired, a whole-table replacement that
 * keeps foreign rules, the verification gate keeping bad rules off the node, and --cleanup.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupRules } from '../../controller/src/agent/cleanup.ts';
import { FakeClock, systemClock, type Clock } from '../../controller/src/agent/clock.ts';
import { FAULT_ANNOTATION } from '../../controller/src/agent/faults.ts';
import { silentLogger } from '../../controller/src/agent/log.ts';
import { CANARY_CHAIN, Proxier, SyncError, type FamilySyncReport, type ProxierObserver } from '../../controller/src/agent/proxier.ts';
import { execaRunner } from '../../controller/src/dataplane/exec.ts';
import { Iptables } from '../../controller/src/dataplane/iptables.ts';
import { decodeDocuments } from '../../controller/src/model/documents.ts';
import type { JsonObject } from '../../controller/src/model/fields.ts';
import type { IPFamily } from '../../controller/src/model/ip.ts';
import { isOwnedChain } from '../../controller/src/plan/plan.ts';
import { diffRulesets, formatChainDifference } from '../../controller/src/plan/diff.ts';
import { parseRuleset } from '../../controller/src/sim/parse.ts';
import { kernelTestMode, NetworkNamespace } from './netns.ts';

const mode = kernelTestMode();
const EXAMPLE = new URL('../../examples/cluster.yaml', import.meta.url);

const objects = decodeDocuments(readFileSync(EXAMPLE, 'utf8'), 'examples/cluster.yaml');
const ofKind = (kind: string): JsonObject[] => objects.filter((o) => o.object.kind === kind).map((o) => o.object);
const configObjects = objects.filter((o) => o.object.kind === 'KubeProxyConfiguration');

function clone<T>(v: T): T {
  return structuredClone(v);
}

function sliceNamed(name: string): JsonObject {
  const s = ofKind('EndpointSlice').find((o) => (o.metadata as { name: string }).name === name);
  if (s === undefined) throw new Error(`example has no EndpointSlice ${name}`);
  return s;
}

describe.skipIf(mode.kind === 'skip')('proxier on real netfilter', () => {
  let ns: NetworkNamespace;
  const tables = new Map<IPFamily, Iptables>();

  const newProxier = (options: { replaceThreshold?: number; faultInjection?: boolean; clock?: Clock; observer?: ProxierObserver } = {}): Proxier => {
    const p = new Proxier({
      overrides: { nodeName: 'node-a' },
      configObjects,
      dataplane: (family) => {
        const t = tables.get(family);
        if (t === undefined) throw new Error(`no iptables for ${family}`);
        return { iptables: t };
      },
      log: silentLogger,
      ...options,
      clock: options.clock ?? systemClock(),
    });
    for (const s of ofKind('Service')) p.onServiceChange(undefined, s);
    for (const s of ofKind('EndpointSlice')) p.onEndpointSliceChange(undefined, s);
    p.onNodeChange(ofKind('Node').find((n) => (n.metadata as { name: string }).name === 'node-a'));
    p.setSynced('services');
    p.setSynced('endpointSlices');
    p.setSynced('node');
    return p;
  };

  /** kpx's chains on the node vs what the proxier compiled: no difference. */
  async function expectNodeMatches(p: Proxier): Promise<void> {
    for (const [family, ipt] of tables) {
      const compiled = p.lastCompiled(family);
      expect(compiled, family).toBeDefined();
      if (compiled === undefined) return;
      const declared = new Set(compiled.ruleset.tables.flatMap((t) => t.chains.map((c) => c.name)));
      const dump = await ipt.save();
      const actual = parseRuleset(
        dump
          .split('\n')
          .filter((l) => !l.startsWith('-A ') || isOwnedChain('nat', l.split(' ')[1] ?? '', declared))
          .join('\n'),
        family,
      );
      const diff = diffRulesets(compiled.ruleset, actual, { chains: (table, chain) => (table === 'nat' || table === 'filter') && isOwnedChain(table, chain, declared) });
      expect(diff.map(formatChainDifference), family).toEqual([]);
    }
  }

  const report = (summary: { families: readonly FamilySyncReport[] } | undefined, family: IPFamily = 'IPv4'): FamilySyncReport => {
    const r = summary?.families.find((f) => f.family === family);
    if (r === undefined) throw new Error(`no ${family} report`);
    return r;
  };

  beforeAll(async () => {
    if (mode.kind === 'fail') throw new Error(mode.reason);
    ns = await NetworkNamespace.create('proxier');
    const runner = execaRunner({ prefix: ['ip', 'netns', 'exec', ns.name] });
    tables.set('IPv4', new Iptables('IPv4', runner));
    tables.set('IPv6', new Iptables('IPv6', runner));
  });

  afterAll(async () => {
    await ns.delete();
  });

  it('programs an empty node with a full sync, jumps and canaries included', async () => {
    const p = newProxier();
    const summary = await p.sync();
    expect(summary?.kind).toBe('full');
    expect(summary?.families.map((f) => f.family).sort()).toEqual(['IPv4', 'IPv6']);
    expect(report(summary).writtenChains).toContain('KUBE-SERVICES');
    await expectNodeMatches(p);
    const save = await tables.get('IPv4')?.save();
    expect(save).toMatch(/-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES/);
    expect(save).toMatch(/-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING/);
    for (const table of ['mangle', 'nat', 'filter'] as const) expect(await tables.get('IPv4')?.chainExists(table, CANARY_CHAIN)).toBe(true);
  });

  it('writes only the changed chains on a partial sync, and leaves KUBE-SERVICES alone when it is unchanged', async () => {
    const p = newProxier();
    await p.sync();
    // One endpoint of shop/frontend goes away: its service chains change, one SEP chain is deleted.
    const before = sliceNamed('frontend-v4');
    const after = clone(before) as { endpoints: unknown[] };
    after.endpoints = after.endpoints.slice(1);
    expect(p.onEndpointSliceChange(before, after as unknown as JsonObject)).toBe(true);
    const r = report(await p.sync());
    expect(r.kind).toBe('partial');
    expect(r.deletedChains).toHaveLength(1);
    expect(r.deletedChains[0]).toMatch(/^KUBE-SEP-/);
    expect(r.writtenChains).not.toContain('KUBE-SERVICES');
    expect(r.writtenChains.every((c) => /^KUBE-(SVC|SVL|EXT|FW|SEP)-/.test(c))).toBe(true);
    expect(r.writtenChains.length).toBeGreaterThan(0);
    await expectNodeMatches(p);

    // Removing a Service rewrites KUBE-SERVICES and deletes all its chains.
    const svc = ofKind('Service').find((s) => (s.metadata as { name: string }).name === 'payments');
    p.onServiceChange(svc, undefined);
    const r2 = report(await p.sync());
    expect(r2.kind).toBe('partial');
    expect(r2.writtenChains).toContain('KUBE-SERVICES');
    expect(r2.deletedChains.some((c) => c.startsWith('KUBE-SVC-'))).toBe(true);
    await expectNodeMatches(p);
  });

  it('writes nothing when it restarts over the rules it left behind', async () => {
    const first = newProxier();
    await first.sync();
    const restarted = newProxier();
    const summary = await restarted.sync();
    for (const f of summary?.families ?? []) {
      expect(f.kind).toBe('full');
      expect(f.writtenChains, f.family).toEqual([]);
      expect(f.deletedChains, f.family).toEqual([]);
    }
    await expectNodeMatches(restarted);
  });

  it('detects an external flush and repairs it by replacing the table, keeping foreign rules', async () => {
    const ipt = tables.get('IPv4');
    if (ipt === undefined) throw new Error('no IPv4');
    const p = newProxier({ replaceThreshold: 3 });
    await p.sync();
    await ns.check('iptables', ['-t', 'nat', '-N', 'FOREIGN']);
    await ns.check('iptables', ['-t', 'nat', '-A', 'FOREIGN', '-p', 'tcp', '--dport', '2222', '-j', 'DNAT', '--to-destination', '10.9.9.9:22']);
    await ns.check('iptables', ['-t', 'nat', '-A', 'PREROUTING', '-j', 'FOREIGN']);
    expect(await p.checkDrift({ readBack: 'now' })).toBe(false);
    for (const chain of ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ']) await ns.check('iptables', ['-t', 'nat', '-F', chain]);
    const svcChains = (await ipt.save('nat')).split('\n').filter((l) => l.startsWith(':KUBE-SVC-')).map((l) => l.slice(1, l.indexOf(' ')));
    for (const chain of svcChains) await ns.check('iptables', ['-t', 'nat', '-F', chain]);
    expect(await p.checkDrift({ readBack: 'now' })).toBe(true);
    expect(p.needFullSync).toBe(true);
    const r = report(await p.sync());
    expect(r.kind).toBe('full');
    expect(r.replacedTables).toEqual(['nat']);
    await expectNodeMatches(p);
    const nat = await ipt.save('nat');
    expect(nat).toContain('-A FOREIGN -p tcp -m tcp --dport 2222 -j DNAT --to-destination 10.9.9.9:22');
    expect(nat).toContain('-A PREROUTING -j FOREIGN');
    expect(await p.checkDrift({ readBack: 'now' })).toBe(false);
  });

  it('notices the canary going away (a table flush) and re-creates it', async () => {
    const p = newProxier();
    await p.sync();
    await ns.check('iptables', ['-t', 'mangle', '-X', CANARY_CHAIN]);
    expect(await p.checkDrift({ readBack: 'now' })).toBe(true);
    await p.sync();
    expect(await tables.get('IPv4')?.chainExists('mangle', CANARY_CHAIN)).toBe(true);
  });

  it('between read-backs, still sees a removed jump from a built-in chain and puts it back', async () => {
    const clock = new FakeClock();
    const drifts: string[] = [];
    const p = newProxier({ clock, observer: { drift: (family, reason, detail) => drifts.push(`${family} ${reason}: ${detail}`) } });
    await p.sync();
    expect(await p.checkDrift()).toBe(false);
    // The jump check (milliseconds, every period) sees it, not the read-back (which may not be due).
    const jump = ['-m', 'comment', '--comment', 'kubernetes service portals', '-j', 'KUBE-SERVICES'];
    await ns.check('iptables', ['-t', 'nat', '-D', 'PREROUTING', ...jump]);
    expect(await p.checkDrift()).toBe(true);
    expect(drifts).toEqual(['IPv4 jump: the jump from nat PREROUTING to KUBE-SERVICES gone']);
    await p.sync();
    expect(await tables.get('IPv4')?.hasRule('nat', 'PREROUTING', jump)).toBe(true);
    expect(await p.checkDrift({ readBack: 'now' })).toBe(false);
  });

  it('keeps the last good rules when the verifier finds a violation', async () => {
    const p = newProxier({ faultInjection: true });
    await p.sync();
    const good = await tables.get('IPv4')?.save('nat');
    const svc = ofKind('Service').find((s) => (s.metadata as { name: string }).name === 'frontend');
    const broken = clone(svc) as { metadata: { annotations?: Record<string, string> } };
    broken.metadata.annotations = { ...broken.metadata.annotations, [FAULT_ANNOTATION]: 'drop-endpoint-rule' };
    p.onServiceChange(svc, broken);
    const failure = await p.sync().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(SyncError);
    expect((failure as SyncError).stage).toBe('verify');
    expect((failure as SyncError).message).toMatch(/shop\/frontend/);
    expect(await tables.get('IPv4')?.save('nat')).toBe(good);
    expect(p.needFullSync).toBe(true);
  });

  it('--cleanup removes every rule and chain kpx owns, and nothing else', async () => {
    const p = newProxier();
    await p.sync();
    for (const ipt of tables.values()) {
      const removed = await cleanupRules(ipt);
      expect(removed.rules).toBeGreaterThan(0);
      const left = await ipt.save();
      expect(left).not.toMatch(/KUBE-(SERVICES|NODEPORTS|POSTROUTING|MARK-MASQ|SVC|SEP|EXT|FW|SVL|FORWARD|PROXY-FIREWALL|EXTERNAL-SERVICES)/);
      expect(left).not.toContain(CANARY_CHAIN);
    }
    expect(await tables.get('IPv4')?.save('nat')).toContain('-A FOREIGN');
  });

  it('repairs a whole `iptables -t nat -F` by table replacement with the built-in chains\' jumps back in place', async () => {
    // Replacement builds the table from a dump; the jumps must be in that dump (the flush removed them).
    // Last: it flushes the foreign rules the tests above rely on.
    const drifts: string[] = [];
    const p = newProxier({ replaceThreshold: 1, observer: { drift: (_family, reason) => drifts.push(reason) } });
    await p.sync();
    const ipt = tables.get('IPv4');
    if (ipt === undefined) throw new Error('no IPv4 iptables');
    const jumps = (nat: string): string[] => nat.split('\n').filter((l) => /^-A (PREROUTING|OUTPUT|POSTROUTING) .*-j KUBE-/.test(l)).sort();
    const before = jumps(await ipt.save('nat'));
    expect(before.length).toBeGreaterThanOrEqual(3);
    await ns.check('iptables', ['-t', 'nat', '-F']);
    expect(jumps(await ipt.save('nat'))).toEqual([]);
    expect(await p.checkDrift()).toBe(true);
    expect(drifts).toEqual(['jump']);
    const r = report(await p.sync());
    expect(r.replacedTables).toEqual(['nat']);
    expect(jumps(await ipt.save('nat'))).toEqual(before);
    await expectNodeMatches(p);
    expect(await p.checkDrift({ readBack: 'now' })).toBe(false);
  });
});
