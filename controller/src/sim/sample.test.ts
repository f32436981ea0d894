import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileFamily } from '../compile/compile.ts';
import { renderedLines, standaloneRuleset } from '../compile/render.ts';
import { buildProxyModels, classifyObjects } from '../model/cluster.ts';
import { decodeDocuments } from '../model/documents.ts';
import { ipLiteral } from '../model/ip.ts';
import type { EngineContext } from './engine.ts';
import { singleInterfaceNetwork } from './packet.ts';
import { sampleConnections, seededRandom } from './sample.ts';

function exampleContext(): EngineContext {
  const text = readFileSync(new URL('../../../examples/cluster.yaml', import.meta.url), 'utf8');
  const [model] = buildProxyModels(classifyObjects(decodeDocuments(text, 'x')).state).families;
  if (model === undefined) throw new Error('no model');
  const ruleset = standaloneRuleset(compileFamily(model));
  return { ruleset, net: singleInterfaceNetwork([ipLiteral('10.89.0.10')]), now: 0, lines: renderedLines(ruleset), policies: new Map(), recordPath: false };
}

const ctx = exampleContext();

describe('sampling mode', () => {
  it('is reproducible for a seed and spreads over the endpoints by their exact probabilities', () => {
    const packet = { protocol: 'tcp' as const, src: ipLiteral('10.244.1.50'), dst: ipLiteral('10.96.12.34'), sport: 40000, dport: 80 };
    const a = sampleConnections(ctx, packet, { connections: 3000, seed: 7 });
    const b = sampleConnections(ctx, packet, { connections: 3000, seed: 7 });
    expect(a.sequence).toEqual(b.sequence);
    expect([...a.counts.keys()].sort()).toEqual(['ACCEPT to 10.244.1.21:8080', 'ACCEPT to 10.244.1.22:8080', 'ACCEPT to 10.244.2.23:8080']);
    // Each endpoint has p = 1/3: 3000 draws stay within 6 standard deviations (sd ≈ 25.8) of 1000.
    for (const n of a.counts.values()) expect(Math.abs(n - 1000)).toBeLessThan(155);
    expect(sampleConnections(ctx, packet, { connections: 50, seed: 8 }).sequence).not.toEqual(a.sequence.slice(0, 50));
  });

  it('plays out ClientIP affinity: one endpoint while connections keep coming within the timeout', () => {
    // shop/checkout: affinity timeout 3600 s; a connection every 60 s keeps refreshing it.
    const packet = { protocol: 'tcp' as const, src: ipLiteral('10.244.1.50'), dst: ipLiteral('10.96.33.3'), sport: 40000, dport: 80 };
    const sticky = sampleConnections(ctx, packet, { connections: 200, seed: 1, interval: 60 });
    expect(sticky.counts.size).toBe(1);
    // With 2 hours between connections, every connection is a fresh random pick.
    const loose = sampleConnections(ctx, packet, { connections: 200, seed: 1, interval: 7200 });
    expect(loose.counts.size).toBe(2);
  });

  it('draws uniformly', () => {
    const r = seededRandom(42);
    const buckets = [0, 0, 0, 0];
    for (let i = 0; i < 40000; i++) {
      const k = Math.floor(r() * 4);
      buckets[k] = (buckets[k] ?? 0) + 1;
    }
    for (const b of buckets) expect(Math.abs(b - 10000)).toBeLessThan(600);
  });
});
