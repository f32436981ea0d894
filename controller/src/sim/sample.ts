/**
 * Sampling mode: many connections one after another, each taking one branch chosen by a seeded
 * pseudo-random generator, with `-m recent` state carried from one connection to the next (so
 * ClientIP affinity plays out). Deterministic for a given seed.
 */
import type { EngineContext, RecentLists } from './engine.ts';
import { traceNewConnection, type TracePacket } from './netfilter.ts';

/** mulberry32: small, fast, good enough to pick branches reproducibly. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SampleOptions {
  readonly connections: number;
  readonly seed: number;
  /** Seconds between connections (simulated time; affinity timeouts count it). Default 1. */
  readonly interval?: number;
  /** Give each connection its own source port (default true), as real clients do. */
  readonly newSourcePort?: boolean;
}

export interface SampleResult {
  /** Outcome key (`ACCEPT to ip:port`, `REJECT`, ...) → number of connections. */
  readonly counts: ReadonlyMap<string, number>;
  /** The key of each connection, in order. */
  readonly sequence: readonly string[];
}

export function sampleConnections(ctx: EngineContext, packet: TracePacket, options: SampleOptions): SampleResult {
  const random = seededRandom(options.seed);
  const interval = options.interval ?? 1;
  let recent: RecentLists = new Map();
  const counts = new Map<string, number>();
  const sequence: string[] = [];
  for (let i = 0; i < options.connections; i++) {
    const sport = options.newSourcePort === false ? packet.sport : 1024 + ((packet.sport - 1024 + i) % 64512);
    const outs = traceNewConnection({ ...ctx, now: ctx.now + i * interval }, { ...packet, sport }, { recent });
    const r = random();
    let acc = 0;
    let chosen = outs[outs.length - 1];
    for (const o of outs) {
      acc += o.probability;
      if (r < acc) {
        chosen = o;
        break;
      }
    }
    if (chosen === undefined) throw new Error('the simulator returned no outcome');
    recent = chosen.flow.recent;
    const key = `${chosen.verdict}${chosen.destination === null ? '' : ` to ${chosen.destination}`}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    sequence.push(key);
  }
  return { counts, sequence };
}
