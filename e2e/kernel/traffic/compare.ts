/**
 * Kernel observations against simulator outcomes.
 *
 * A connection's category is where it ended: the `ip:port` the answering server was reached on
 * (the DNAT destination, or the original destination without DNAT), `refused` (REJECT) or
 * `timeout` (DROP). The simulator's outcomes map onto the same categories, so one comparison
 * covers (a) the distribution (chi-square at ALPHA), (b) the reachable set, (c) the source the
 * server saw (masquerade or not) and (d) REJECT vs DROP.
 */
import { formatIP } from '../../../controller/src/model/ip.ts';
import type { ConntrackEntry } from '../../../controller/src/sim/conntrack.ts';
import type { Outcome, TracePacket } from '../../../controller/src/sim/netfilter.ts';
import { endpointText } from '../../../controller/src/sim/packet.ts';
import { goodnessOfFit, type GoodnessOfFit } from './chi-square.ts';
import type { BurstReport } from './protocol.ts';
import type { Namespace } from './testbed.ts';

export interface ExpectedCategory {
  readonly probability: number;
  /** Sources (after SNAT) the server may see. */
  readonly sources: ReadonlySet<string>;
  readonly masquerade: boolean;
  readonly delivery: Outcome['delivery'];
}

/**
 * The simulator's outcomes, merged by category. A connection DNATed to an address in
 * `unanswered` (an endpoint on another node, which this topology does not have) leaves the node
 * and is never answered: its category is `timeout`.
 */
export function expectedCategories(outcomes: readonly Outcome[], packet: TracePacket, unanswered: ReadonlySet<string> = new Set()): Map<string, ExpectedCategory> {
  const out = new Map<string, { probability: number; sources: Set<string>; masquerade: boolean; delivery: Outcome['delivery'] }>();
  for (const o of outcomes) {
    const gone = o.verdict === 'ACCEPT' && o.destination !== null && unanswered.has(o.destination.split(':')[0] ?? '');
    const key = o.verdict === 'REJECT' ? 'refused' : o.verdict === 'DROP' || gone ? 'timeout' : (o.destination ?? endpointText(packet.dst, packet.dport));
    const c = out.get(key) ?? { probability: 0, sources: new Set<string>(), masquerade: o.masquerade, delivery: o.delivery };
    c.probability += o.probability;
    if (o.verdict === 'ACCEPT') c.sources.add(o.source);
    c.masquerade ||= o.masquerade;
    out.set(key, c);
  }
  return out;
}

export interface Comparison {
  /** Empty when the kernel agrees with the simulator. */
  readonly problems: string[];
  readonly fit: GoodnessOfFit;
  readonly observed: ReadonlyMap<string, number>;
  readonly expected: ReadonlyMap<string, ExpectedCategory>;
}

/** Below this many expected connections a category may legitimately be missing from a sample. */
const MIN_EXPECTED_TO_REQUIRE = 20;

export interface CompareOptions {
  /** Endpoint IP → pod name, for messages. */
  readonly names?: ReadonlyMap<string, string>;
  /** Endpoint IPs nobody answers in this topology (see expectedCategories). */
  readonly unanswered?: ReadonlySet<string>;
}

/**
 * Compares a burst (all connections with the same 5-tuple shape, new source port each) with
 * the simulator's outcomes for one of its packets.
 */
export function compareBurst(report: BurstReport, outcomes: readonly Outcome[], packet: TracePacket, options: CompareOptions = {}): Comparison {
  const problems: string[] = [];
  const names = options.names ?? new Map<string, string>();
  const expected = expectedCategories(outcomes, packet, options.unanswered);
  const observed = new Map<string, number>();
  const label = (key: string): string => names.get(key.split(':')[0] ?? '') ?? key;
  let total = 0;
  for (const row of report.rows) {
    const key = row.outcome === 'answered' ? row.reached : row.outcome;
    observed.set(key, (observed.get(key) ?? 0) + row.count);
    total += row.count;
    const e = expected.get(key);
    if (e === undefined) {
      problems.push(`kernel: ${String(row.count)} connection(s) ${row.outcome === 'answered' ? `answered by ${row.server} at ${row.reached} (saw source ${row.seenAddress})` : row.outcome}; simulator: this outcome is impossible (${describe(expected, label)})`);
      continue;
    }
    if (row.outcome !== 'answered') continue;
    // (c) the source the endpoint saw is the simulator's source after SNAT.
    if (!e.sources.has(row.seenAddress)) {
      problems.push(`${label(key)}: the server saw source ${row.seenAddress} on ${String(row.count)} connection(s); simulator: ${[...e.sources].join(' or ')} (masquerade ${String(e.masquerade)})`);
    }
    if (!e.masquerade && row.sourcePortKept !== row.count) {
      problems.push(`${label(key)}: not masqueraded, yet ${String(row.count - row.sourcePortKept)} of ${String(row.count)} connection(s) arrived from another source port`);
    }
  }
  // (b) every endpoint the simulator can reach is reached (when the sample is big enough to say).
  for (const [key, e] of expected) {
    if ((observed.get(key) ?? 0) === 0 && e.probability * total >= MIN_EXPECTED_TO_REQUIRE) {
      problems.push(`simulator: ${label(key)} with probability ${e.probability.toPrecision(6)}; kernel: none of ${String(total)} connection(s)`);
    }
  }
  // (a) the distribution.
  const fit = goodnessOfFit(
    observed,
    new Map([...expected].map(([k, e]) => [k, e.probability])),
  );
  if (!fit.consistent) {
    const table = [...expected].map(([k, e]) => `${label(k)}: observed ${String(observed.get(k) ?? 0)}, expected ${(e.probability * total).toFixed(1)}`).join('; ');
    problems.push(`chi-square ${fit.statistic.toFixed(2)} > critical ${fit.critical.toFixed(2)} (df ${String(fit.df)}, p = ${fit.pValue.toExponential(2)}): ${table}`);
  }
  return { problems, fit, observed, expected };
}

function describe(expected: ReadonlyMap<string, ExpectedCategory>, label: (key: string) => string): string {
  return [...expected].map(([k, e]) => `${label(k)} ${e.probability.toPrecision(4)}`).join(', ');
}

/** Outcome distribution as category → probability (for comparing two traces of one packet). */
export function distributionOf(outcomes: readonly Outcome[], packet: TracePacket): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, e] of expectedCategories(outcomes, packet)) out[key] = `${e.probability.toFixed(12)} from ${[...e.sources].sort().join(',')}`;
  return out;
}

/** One conntrack entry as `conntrack -L` prints it: original and reply tuples. */
export interface KernelConntrackEntry {
  readonly protocol: string;
  readonly original: { readonly src: string; readonly dst: string; readonly sport: number; readonly dport: number };
  readonly reply: { readonly src: string; readonly dst: string; readonly sport: number; readonly dport: number };
}

/** The kernel's entries for connections from `src` (and `sport`, when given) in the namespace's table. */
export async function conntrackEntries(ns: Namespace, protocol: 'tcp' | 'udp', src: string, sport?: number): Promise<KernelConntrackEntry[]> {
  const r = await ns.check('conntrack', ['-L', '-p', protocol, '--orig-src', src, ...(sport === undefined ? [] : ['--sport', String(sport)])]);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((line) => {
      const values = (key: string): string[] => [...line.matchAll(new RegExp(`\\b${key}=([^ ]+)`, 'g'))].map((m) => m[1] ?? '');
      const [src0 = '', src1 = ''] = values('src');
      const [dst0 = '', dst1 = ''] = values('dst');
      const [sp0 = '0', sp1 = '0'] = values('sport');
      const [dp0 = '0', dp1 = '0'] = values('dport');
      return {
        protocol: line.split(/\s+/)[0] ?? '',
        original: { src: src0, dst: dst0, sport: Number(sp0), dport: Number(dp0) },
        reply: { src: src1, dst: dst1, sport: Number(sp1), dport: Number(dp1) },
      };
    });
}

/** The simulator's conntrack entry in the shape `conntrack -L` prints. */
export function simulatedEntry(entry: ConntrackEntry): KernelConntrackEntry {
  return {
    protocol: entry.original.protocol,
    original: { src: formatIP(entry.original.src), dst: formatIP(entry.original.dst), sport: entry.original.sport, dport: entry.original.dport },
    reply: { src: formatIP(entry.reply.src), dst: formatIP(entry.reply.dst), sport: entry.reply.sport, dport: entry.reply.dport },
  };
}
