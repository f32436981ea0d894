import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileFamily } from '../compile/compile.ts';
import { renderSave, renderedLines, standaloneRuleset } from '../compile/render.ts';
import { buildProxyModels, classifyObjects } from '../model/cluster.ts';
import { decodeDocuments } from '../model/documents.ts';
import { formatIP, parseIP, type IPAddress } from '../model/ip.ts';
import type { FamilyModel } from '../model/proxy-model.ts';
import { affinityOverTime, connectionSurvives, entryOf, followPacket, servingEndpointsOf, staleUdpEntries } from './conntrack.ts';
import type { EngineContext } from './engine.ts';
import { traceNewConnection, type TracePacket } from './netfilter.ts';
import { singleInterfaceNetwork } from './packet.ts';
import { parseRuleset } from './parse.ts';

const ip = (t: string): IPAddress => parseIP(t) ?? (() => { throw new Error(t); })();
const example = readFileSync(new URL('../../../examples/cluster.yaml', import.meta.url), 'utf8');

function model(yaml: string): FamilyModel {
  const [m] = buildProxyModels(classifyObjects(decodeDocuments(yaml, 'x.yaml')).state).families;
  if (m === undefined) throw new Error('no model');
  return m;
}

function context(m: FamilyModel, ruleset = standaloneRuleset(compileFamily(m))): EngineContext {
  return { ruleset, net: singleInterfaceNetwork([ip('10.89.0.10')]), now: 0, lines: renderedLines(ruleset), policies: new Map() };
}

// kube-dns has endpoints 10.244.1.3 and 10.244.2.4; the second state removes 10.244.1.3.
const before = model(example);
const after = model(example.replace('- {addresses: [10.244.1.3], nodeName: node-a, conditions: {ready: true}}\n', ''));
const dns: TracePacket = { protocol: 'udp', src: ip('10.244.1.50'), dst: ip('10.96.0.10'), sport: 5353, dport: 53 };

describe('conntrack', () => {
  it('keeps an established connection on its endpoint after the rules change (NAT is not re-evaluated)', () => {
    const first = traceNewConnection(context(before), dns).find((o) => o.destination === '10.244.1.3:53');
    expect(first?.probability).toBe(0.5);
    if (first === undefined) return;
    const entry = entryOf(dns, first, 0);
    // The new rules no longer mention 10.244.1.3 at all; a *new* connection cannot reach it...
    const newConn = traceNewConnection(context(after), dns).map((o) => o.destination);
    expect(newConn).toEqual(['10.244.2.4:53']);
    // ...but the existing flow still follows its conntrack binding.
    expect(followPacket(context(after), entry)).toEqual({ verdict: 'ACCEPT', destination: '10.244.1.3:53' });
    expect(connectionSurvives(context(after), entry)).toEqual({ survives: true, reason: 'its packets still reach 10.244.1.3:53' });
  });

  it('reports a connection killed by a filter rule in the new ruleset', () => {
    const first = traceNewConnection(context(before), dns).find((o) => o.destination === '10.244.1.3:53');
    if (first === undefined) throw new Error('no outcome');
    const blocking = renderSave(compileFamily(after)).replace(
      '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules"',
      '-A KUBE-FORWARD -d 10.244.1.3 -j DROP\n-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules"',
    );
    const ctx = context(after, parseRuleset(blocking));
    expect(connectionSurvives(ctx, entryOf(dns, first, 0))).toEqual({ survives: false, reason: 'its next packet is dropped by the new rules' });
  });

  it('finds the UDP entries whose endpoint no longer serves (and only those)', () => {
    const outs = traceNewConnection(context(before), dns);
    const entries = outs.map((o) => entryOf(dns, o, 0));
    const other = { ...dns, dst: ip('192.0.2.53') };
    const [unrelated] = traceNewConnection(context(before), other);
    if (unrelated === undefined) throw new Error('no outcome');
    const stale = staleUdpEntries([...entries, entryOf(other, unrelated, 0)], servingEndpointsOf(after));
    expect(stale.map((e) => formatIP(e.reply.src))).toEqual(['10.244.1.3']);
    expect(staleUdpEntries(entries, servingEndpointsOf(before))).toEqual([]);
  });

  it('keeps ClientIP affinity for its timeout, and only for it', () => {
    // shop/checkout: ClientIP affinity, timeoutSeconds 3600, two ready endpoints.
    const t: TracePacket = { protocol: 'tcp', src: ip('10.244.1.50'), dst: ip('10.96.33.3'), sport: 40000, dport: 80 };
    const runs = affinityOverTime(context(before), t, [10, 3599, 3601]);
    expect(runs.map((r) => [r.first, r.probability])).toEqual([
      ['10.244.1.31:8080', 0.5],
      ['10.244.2.32:8080', 0.5],
    ]);
    for (const r of runs) {
      const [at10, at3599, at3601] = r.later.map((l) => [...l.distribution]);
      expect(at10).toEqual([[r.first, 1]]);
      expect(at3599).toEqual([[r.first, 1]]);
      expect(new Map(at3601)).toEqual(new Map([['10.244.1.31:8080', 0.5], ['10.244.2.32:8080', 0.5]]));
    }
  });
});
