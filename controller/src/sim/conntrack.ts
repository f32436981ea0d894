/**
 * Conntrack in the simulator: the entry a connection's first packet leaves behind, and what
 * happens to the connection's later packets and replies under a (possibly different) ruleset.
 *
 * Answers the questions rule changes raise: does this established connection survive ruleset B,
 * which UDP entries point at endpoints that no longer serve, and does ClientIP affinity stick.
 */
import { formatIP, joinHostPort, type IPAddress } from '../model/ip.ts';
import type { FamilyModel } from '../model/proxy-model.ts';
import type { EngineContext, NatBinding } from './engine.ts';
import { traceNewConnection, type Outcome, type TracePacket } from './netfilter.ts';
import { endpointText, type SimProtocol } from './packet.ts';

export interface Tuple {
  readonly protocol: SimProtocol;
  readonly src: IPAddress;
  readonly sport: number;
  readonly dst: IPAddress;
  readonly dport: number;
}

export interface ConntrackEntry {
  /** As the client sent it. */
  readonly original: Tuple;
  /** As the reply comes back: from the endpoint (after DNAT) to the source (after SNAT). */
  readonly reply: Tuple;
  readonly nat: NatBinding;
  readonly mark: number;
  /** Simulated time (seconds) at which the entry expires unless refreshed. */
  readonly expires: number;
}

/** Kernel defaults (seconds): UDP 30 s unreplied / 120 s stream, TCP established 5 days. */
export const DEFAULT_TIMEOUTS: Readonly<Record<SimProtocol, number>> = { tcp: 432_000, udp: 120, sctp: 432_000, icmp: 30, icmpv6: 30 };

/** The entry an accepted first packet leaves in the conntrack table. */
export function entryOf(t: TracePacket, outcome: Outcome, now: number): ConntrackEntry {
  const p = outcome.flow.packet;
  return {
    original: { protocol: t.protocol, src: t.src, sport: t.sport, dst: t.dst, dport: t.dport },
    reply: { protocol: t.protocol, src: p.dst, sport: p.dport, dst: p.src, dport: p.sport },
    nat: outcome.flow.nat,
    mark: 0,
    expires: now + DEFAULT_TIMEOUTS[t.protocol],
  };
}

export interface FollowResult {
  readonly verdict: Outcome['verdict'];
  /** Where the packet went (`ip:port`); the entry's endpoint unless rules interfered. */
  readonly destination: string;
}

/** A later packet of the connection, in the original direction, through `ctx`'s rules. */
export function followPacket(ctx: EngineContext, entry: ConntrackEntry, inIface?: string): FollowResult {
  const o = entry.original;
  const [out] = traceNewConnection(ctx, { ...o, inIface, established: entry.nat });
  if (out === undefined) throw new Error('the simulator returned no outcome');
  return { verdict: out.verdict, destination: endpointText(out.flow.packet.dst, out.flow.packet.dport) };
}

export interface Survival {
  readonly survives: boolean;
  readonly reason: string;
}

/**
 * Whether an established connection keeps working under the rules in `ctx` (for example after a
 * sync replaced ruleset A with B): its packets must still be accepted and still reach the same
 * endpoint. NAT rules do not matter any more (conntrack holds the binding); filter rules do.
 */
export function connectionSurvives(ctx: EngineContext, entry: ConntrackEntry, inIface?: string): Survival {
  const next = followPacket(ctx, entry, inIface);
  const endpoint = endpointText(entry.reply.src, entry.reply.sport);
  if (next.verdict !== 'ACCEPT') return { survives: false, reason: `its next packet is ${next.verdict === 'DROP' ? 'dropped' : 'rejected'} by the new rules` };
  if (next.destination !== endpoint) return { survives: false, reason: `its next packet goes to ${next.destination} instead of ${endpoint}` };
  return { survives: true, reason: `its packets still reach ${endpoint}` };
}

/** Service frontends and the endpoints currently serving them (from the model). */
export interface ServingEndpoints {
  /** `ip:port` of a ClusterIP, external IP or LB IP frontend → serving endpoint IPs. */
  readonly byFrontend: ReadonlyMap<string, ReadonlySet<string>>;
  /** node port → serving endpoint IPs. */
  readonly byNodePort: ReadonlyMap<number, ReadonlySet<string>>;
}

/**
 * UDP entries whose reply source is not a serving endpoint of the service they were addressed
 * to: the reconciler deletes these so clients (DNS!) stop talking to a pod that is gone
 * (reference §5). Entries to addresses that are not Service frontends are left alone.
 */
export function staleUdpEntries(entries: readonly ConntrackEntry[], serving: ServingEndpoints): ConntrackEntry[] {
  return entries.filter((e) => {
    if (e.original.protocol !== 'udp') return false;
    const replyFrom = formatIP(e.reply.src);
    const frontend = serving.byFrontend.get(endpointText(e.original.dst, e.original.dport));
    if (frontend !== undefined) return !frontend.has(replyFrom);
    const nodePort = serving.byNodePort.get(e.original.dport);
    return nodePort !== undefined && !nodePort.has(replyFrom);
  });
}

export interface AffinityStep {
  /** Seconds after the first connection. */
  readonly at: number;
  /** Endpoint → probability for a second connection at that time. */
  readonly distribution: ReadonlyMap<string, number>;
}

/**
 * ClientIP affinity over time: the first connection picks an endpoint; a second connection from
 * the same client, `at` seconds later, sees the `-m recent` lists that first pick left behind.
 * Returns, per first pick, the distribution of the second connection at each offset.
 */
export function affinityOverTime(
  ctx: EngineContext,
  t: TracePacket,
  offsets: readonly number[],
): { first: string; probability: number; later: AffinityStep[] }[] {
  return traceNewConnection(ctx, t)
    .filter((o) => o.destination !== null)
    .map((o) => ({
      first: o.destination ?? '',
      probability: o.probability,
      later: offsets.map((at) => {
        const distribution = new Map<string, number>();
        for (const x of traceNewConnection({ ...ctx, now: ctx.now + at }, t, { recent: o.flow.recent })) {
          const key = x.destination ?? x.verdict;
          distribution.set(key, (distribution.get(key) ?? 0) + x.probability);
        }
        return { at, distribution };
      }),
    }));
}

/** What the conntrack reconciler compares entries with: serving endpoints per frontend. */
export function servingEndpointsOf(model: FamilyModel): ServingEndpoints {
  const byFrontend = new Map<string, Set<string>>();
  const byNodePort = new Map<number, Set<string>>();
  for (const sp of model.servicePorts) {
    if (sp.protocol !== 'UDP') continue;
    // Traffic policy, topology and terminating state are deliberately ignored (reference §5).
    const serving = new Set((model.endpoints.get(sp.key) ?? []).filter((e) => e.serving).map((e) => e.ip));
    for (const ip of [sp.clusterIP, ...sp.externalIPs, ...sp.loadBalancerIPs]) byFrontend.set(joinHostPort(ip, sp.port), serving);
    if (sp.nodePort !== 0) byNodePort.set(sp.nodePort, serving);
  }
  return { byFrontend, byNodePort };
}
