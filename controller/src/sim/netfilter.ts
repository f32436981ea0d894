/**
 * The netfilter path of a node: which tables and chains a packet crosses, in order, for packets
 * that arrive (PREROUTING → routing → INPUT or FORWARD → POSTROUTING) and packets the node sends
 * (OUTPUT → POSTROUTING, then INPUT when the destination is local), with NAT applied only to a
 * connection's first packet and undone for its replies through the conntrack binding.
 */
import { formatIP, type IPAddress } from '../model/ip.ts';
import { pathSteps, resolveHook, runHook, type EngineContext, type Flow, type Hook, type NatBinding, type PathStep, type RecentLists, type TableResult, type TableVerdict } from './engine.ts';
import { arrivalInterface, endpointText, isLocalAddress, masqueradeAddress, routeOut, type Packet, type SimProtocol } from './packet.ts';
import type { TableName } from '../compile/ruleset.ts';

export interface TracePacket {
  readonly protocol: SimProtocol;
  readonly src: IPAddress;
  readonly dst: IPAddress;
  readonly sport: number;
  readonly dport: number;
  /** Where the packet arrives; undefined: locally generated if src is local, else by source route. */
  readonly inIface?: string | undefined;
  readonly mark?: number;
  /**
   * A later packet of an existing connection (original direction): conntrack applies the
   * entry's NAT binding instead of the nat chains.
   */
  readonly established?: NatBinding;
}

export type Delivery = 'local' | 'forwarded' | 'dropped';

export interface ReplyOutcome {
  readonly verdict: TableVerdict;
  readonly path: readonly PathStep[];
  /** The reply as the client sees it: it must come from the address the client connected to. */
  readonly source: string;
  readonly destination: string;
}

export interface Outcome {
  readonly probability: number;
  readonly verdict: TableVerdict;
  readonly matched: boolean;
  /** `ip:port` after DNAT, or null when no DNAT happened. */
  readonly destination: string | null;
  readonly masquerade: boolean;
  /** Source address after SNAT (the original source without it). */
  readonly source: string;
  readonly delivery: Delivery;
  readonly outIface: string | undefined;
  readonly path: readonly PathStep[];
  /** The final flow state, for conntrack and replies. */
  readonly flow: Flow;
  readonly reply?: ReplyOutcome;
}

/** A hook a packet crosses: a built-in chain of one table. */
interface Stage {
  readonly table: TableName;
  readonly chain: string;
  readonly key: string;
}

const stage = (table: TableName, chain: string): Stage => ({ table, chain, key: `${table}/${chain}` });

/** Hooks resolved per ruleset and chain policies (contexts that differ only in time share them). */
const hookCache = new WeakMap<EngineContext['ruleset'], WeakMap<EngineContext['policies'], Map<string, Hook>>>();

function hookFor(ctx: EngineContext, s: Stage): Hook {
  let byPolicies = hookCache.get(ctx.ruleset);
  if (byPolicies === undefined) {
    byPolicies = new WeakMap();
    hookCache.set(ctx.ruleset, byPolicies);
  }
  let hooks = byPolicies.get(ctx.policies);
  if (hooks === undefined) {
    hooks = new Map();
    byPolicies.set(ctx.policies, hooks);
  }
  let hook = hooks.get(s.key);
  if (hook === undefined) {
    hook = resolveHook(ctx, s.table, s.chain);
    hooks.set(s.key, hook);
  }
  return hook;
}

function runStages(ctx: EngineContext, flows: readonly Flow[], stages: readonly Stage[], final: TableResult[]): readonly Flow[] {
  let active = flows;
  for (const s of stages) {
    const hook = hookFor(ctx, s);
    // A stage with no rules and an ACCEPT policy changes nothing, except that NAT bindings of
    // later packets are applied at the nat stage even when it has no rules.
    if (hook.empty && !(s.table === 'nat' && active.some((f) => f.state === 'ESTABLISHED'))) continue;
    const next: Flow[] = [];
    for (const flow of active) {
      // NAT chains see only a connection's first packet, and never untracked packets; later
      // packets get the connection's binding applied where the nat hook would run.
      if (s.table === 'nat' && flow.state !== 'NEW') {
        const dnat = flow.nat.dnat;
        const rewrite = flow.state === 'ESTABLISHED' && flow.direction === 'original' && dnat !== undefined && (s.chain === 'PREROUTING' || s.chain === 'OUTPUT') && flow.packet.dst.value !== dnat.ip.value;
        next.push(rewrite ? { ...flow, packet: { ...flow.packet, dst: dnat.ip, dport: dnat.port } } : flow);
        continue;
      }
      runHook(ctx, hook, flow, next, final);
    }
    active = next;
  }
  return active;
}

function applySnat(ctx: EngineContext, flow: Flow): Flow {
  const snat = flow.nat.snat;
  if (snat === undefined) return flow;
  const pkt = flow.packet;
  const ip = snat === 'masquerade' ? masqueradeAddress(ctx.net, pkt.outIface ?? '', pkt.dst) : snat.ip;
  return ip === undefined ? flow : { ...flow, packet: { ...pkt, src: ip } };
}

function reroute(ctx: EngineContext, flow: Flow): Flow {
  return { ...flow, packet: { ...flow.packet, outIface: routeOut(ctx.net, flow.packet.dst) } };
}

const PREROUTING: readonly Stage[] = [stage('raw', 'PREROUTING'), stage('mangle', 'PREROUTING'), stage('nat', 'PREROUTING')];
const INPUT: readonly Stage[] = [stage('mangle', 'INPUT'), stage('filter', 'INPUT'), stage('nat', 'INPUT')];
const FORWARD: readonly Stage[] = [stage('mangle', 'FORWARD'), stage('filter', 'FORWARD')];
const POSTROUTING: readonly Stage[] = [stage('mangle', 'POSTROUTING'), stage('nat', 'POSTROUTING')];
const OUTPUT_PRE: readonly Stage[] = [stage('raw', 'OUTPUT'), stage('mangle', 'OUTPUT'), stage('nat', 'OUTPUT')];
const OUTPUT_FILTER: readonly Stage[] = [stage('filter', 'OUTPUT')];
/** A locally sent packet to a local address comes back in through lo: no NAT again. */
const LOOPBACK_IN: readonly Stage[] = [stage('raw', 'PREROUTING'), stage('mangle', 'PREROUTING'), stage('mangle', 'INPUT'), stage('filter', 'INPUT')];

/** Where one packet ends: accepted and delivered, or stopped with a verdict. */
export interface Walked {
  readonly delivered: readonly { flow: Flow; delivery: Delivery }[];
  readonly stopped: readonly TableResult[];
}

/** Walks one packet (first packet of a connection, or a later/reply packet) through the node. */
function walk(ctx: EngineContext, start: Flow): Walked {
  const stopped: TableResult[] = [];
  const delivered: { flow: Flow; delivery: Delivery }[] = [];
  const pkt = start.packet;
  const locallyGenerated = pkt.inIface === undefined;
  const finishPost = (flows: readonly Flow[]): void => {
    for (const f of runStages(ctx, flows, POSTROUTING, stopped).map((f) => applySnat(ctx, f))) {
      if (f.packet.outIface === 'lo' && locallyGenerated) {
        for (const g of runStages(ctx, [{ ...f, packet: { ...f.packet, inIface: 'lo' } }], LOOPBACK_IN, stopped)) delivered.push({ flow: g, delivery: 'local' });
      } else delivered.push({ flow: f, delivery: 'forwarded' });
    }
  };
  if (locallyGenerated) {
    const routed = reroute(ctx, start);
    const afterNat = runStages(ctx, [routed], OUTPUT_PRE, stopped).map((f) => reroute(ctx, f));
    // After DNAT, a 127.0.0.0/8 source may leave the loopback device only with route_localnet=1;
    // otherwise the reroute fails and the packet is dropped (the client times out).
    const routable = afterNat.filter((f) => {
      const p = f.packet;
      const martian = p.family === 'IPv4' && p.src.value >> 24n === 127n && p.outIface !== 'lo' && ctx.net.routeLocalnet !== true;
      if (martian) stopped.push({ flow: { ...f, acted: true }, verdict: 'DROP' });
      return !martian;
    });
    finishPost(runStages(ctx, routable, OUTPUT_FILTER, stopped));
    return { delivered, stopped };
  }
  const afterPre = runStages(ctx, [start], PREROUTING, stopped);
  const local: Flow[] = [];
  const forward: Flow[] = [];
  for (const f of afterPre) (isLocalAddress(ctx.net, f.packet.dst) ? local : forward).push(f);
  for (const f of runStages(ctx, local, INPUT, stopped)) delivered.push({ flow: applySnat(ctx, f), delivery: 'local' });
  finishPost(runStages(ctx, forward.map((f) => reroute(ctx, f)), FORWARD, stopped));
  return { delivered, stopped };
}

function initialFlow(ctx: EngineContext, t: TracePacket, family: Packet['family'], recent: RecentLists): Flow {
  const locallyGenerated = t.inIface === undefined && isLocalAddress(ctx.net, t.src);
  const inIface = locallyGenerated ? undefined : (t.inIface ?? arrivalInterface(ctx.net, t.src));
  return {
    probability: 1,
    packet: {
      family, protocol: t.protocol, src: t.src, dst: t.dst, sport: t.sport, dport: t.dport, inIface, outIface: undefined, mark: t.mark ?? 0,
      // A connection opens with a SYN; later packets of an established one carry ACK.
      tcpFlags: t.established === undefined ? ['SYN'] : ['ACK'],
    },
    path: undefined,
    recent,
    state: t.established === undefined ? 'NEW' : 'ESTABLISHED',
    direction: 'original',
    nat: t.established ?? { dnat: undefined, snat: undefined },
    acted: false,
  };
}

function hostPort(ip: IPAddress, port: number, protocol: SimProtocol): string {
  return protocol === 'icmp' || protocol === 'icmpv6' ? formatIP(ip) : endpointText(ip, port);
}

/** The first reply of a connection, back through conntrack (un-DNAT, un-SNAT). */
function traceReply(ctx: EngineContext, original: TracePacket, forward: Flow, delivery: Delivery): ReplyOutcome {
  const out = forward.packet;
  const family = out.family;
  // The reply leaves the endpoint towards the (possibly SNATed) source.
  const replyFromLocal = delivery === 'local';
  const start: Flow = {
    ...forward,
    probability: 1,
    path: undefined,
    state: forward.state === 'UNTRACKED' ? 'UNTRACKED' : 'ESTABLISHED',
    direction: 'reply',
    packet: {
      ...out,
      src: out.dst,
      dst: out.src,
      sport: out.dport,
      dport: out.sport,
      inIface: replyFromLocal ? undefined : (out.outIface ?? arrivalInterface(ctx.net, out.dst)),
      outIface: undefined,
      mark: 0,
      tcpFlags: ['SYN', 'ACK'],
      icmpType: family === 'IPv4' ? 0 : 129,
    },
  };
  // Conntrack reverses the bindings: the reply's destination becomes the original source at
  // PREROUTING (un-SNAT) and its source the original destination at POSTROUTING (un-DNAT).
  const unSnat: Flow = forward.nat.snat === undefined ? start : { ...start, packet: { ...start.packet, dst: original.src } };
  const walked = walk(ctx, unSnat);
  const stopped = walked.stopped[0];
  if (stopped !== undefined) {
    return { verdict: stopped.verdict, path: pathSteps(stopped.flow.path), source: hostPort(stopped.flow.packet.src, stopped.flow.packet.sport, original.protocol), destination: hostPort(stopped.flow.packet.dst, stopped.flow.packet.dport, original.protocol) };
  }
  const done = walked.delivered[0]?.flow ?? unSnat;
  const src = forward.nat.dnat === undefined ? done.packet.src : original.dst;
  const sport = forward.nat.dnat === undefined ? done.packet.sport : original.dport;
  return { verdict: 'ACCEPT', path: pathSteps(done.path), source: hostPort(src, sport, original.protocol), destination: hostPort(done.packet.dst, done.packet.dport, original.protocol) };
}

/** Traces the first packet of a new connection; every possible outcome with its probability. */
export interface TraceOptions {
  readonly withReply?: boolean;
  /** `-m recent` lists before this packet (empty by default). */
  readonly recent?: RecentLists;
}

/** The first packet of a new connection through the node, before its outcomes are written up. */
export function walkNewConnection(ctx: EngineContext, t: TracePacket, recent: RecentLists = new Map()): Walked {
  return walk(ctx, initialFlow(ctx, t, t.src.family, recent));
}

export function traceNewConnection(ctx: EngineContext, t: TracePacket, options: TraceOptions = {}): Outcome[] {
  const walked = walkNewConnection(ctx, t, options.recent);
  const outcomes: Outcome[] = [];
  const make = (flow: Flow, verdict: TableVerdict, delivery: Delivery): Outcome => {
    const dnat = flow.nat.dnat;
    const base = {
      probability: flow.probability,
      verdict,
      matched: flow.acted,
      destination: dnat === undefined ? null : hostPort(dnat.ip, dnat.port, t.protocol),
      masquerade: flow.nat.snat !== undefined,
      source: formatIP(flow.packet.src),
      delivery,
      outIface: flow.packet.outIface,
      path: pathSteps(flow.path),
      flow,
    };
    return options.withReply === true && verdict === 'ACCEPT' ? { ...base, reply: traceReply(ctx, t, flow, delivery) } : base;
  };
  for (const s of walked.stopped) outcomes.push(make(s.flow, s.verdict, 'dropped'));
  for (const d of walked.delivered) outcomes.push(make(d.flow, 'ACCEPT', d.delivery));
  return outcomes.sort((a, b) => b.probability - a.probability || (a.destination ?? '').localeCompare(b.destination ?? ''));
}
