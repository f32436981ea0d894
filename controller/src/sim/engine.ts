/**
 * Chain traversal: one packet through one table's chains, as exact branches.
 *
 * A statistic rule splits a flow in two (probability p and 1-p), so a traversal returns every
 * possible outcome with its probability, not a sample. Everything a rule can change travels in
 * the flow: the packet, the path, the `-m recent` lists and the NAT binding.
 */
import type { Chain, Clause, Rule, Ruleset, Table, TableName, Target } from '../compile/ruleset.ts';
import { cidrContains, parseIP, type CIDR, type IPAddress, type IPFamily } from '../model/ip.ts';
import { quantizedProbability } from './normalize.ts';
import { icmpTypeNumber, interfaceAddress, isLocalAddress, parseAddress, parseAddressOrPrefix, type NodeNetwork, type Packet } from './packet.ts';
import { chainLinks, type ChainLinks } from './structure.ts';

export interface PathStep {
  readonly table: TableName;
  readonly chain: string;
  /** The rule itself; `ruleText(step.rule)` prints it (formatting is left to whoever shows it). */
  readonly rule: Rule;
  /** Line in the dump the rule came from (or in kpx's save rendering). */
  readonly line: number;
}

/** `-m recent` lists: list name → address key → timestamps (seconds) of hits, newest last. */
export type RecentLists = ReadonlyMap<string, ReadonlyMap<string, readonly number[]>>;

export type ConnState = 'NEW' | 'ESTABLISHED' | 'RELATED' | 'INVALID' | 'UNTRACKED';

export interface NatBinding {
  readonly dnat: { readonly ip: IPAddress; readonly port: number } | undefined;
  /** 'masquerade' picks the outgoing interface's address at POSTROUTING. */
  readonly snat: { readonly ip: IPAddress } | 'masquerade' | undefined;
}

/** The rules a flow matched, newest first (a persistent list: appending is O(1) for every branch). */
export interface PathList {
  readonly step: PathStep;
  readonly previous: PathList | undefined;
}

export function pathSteps(path: PathList | undefined): PathStep[] {
  const out: PathStep[] = [];
  for (let p = path; p !== undefined; p = p.previous) out.push(p.step);
  return out.reverse();
}

export interface Flow {
  readonly probability: number;
  readonly packet: Packet;
  readonly path: PathList | undefined;
  readonly recent: RecentLists;
  readonly state: ConnState;
  /** Original direction (client → service) or reply (endpoint → client). */
  readonly direction: 'original' | 'reply';
  readonly nat: NatBinding;
  /** Whether a rule decided or changed something (not only passing through chains). */
  readonly acted: boolean;
}

export type TableVerdict = 'ACCEPT' | 'DROP' | 'REJECT';

export interface TableResult {
  readonly flow: Flow;
  readonly verdict: TableVerdict;
}

export interface EngineContext {
  readonly ruleset: Ruleset;
  readonly net: NodeNetwork;
  /** Simulated time in seconds, for `-m recent`. */
  readonly now: number;
  /** Line numbers of rules, when known. */
  readonly lines: ReadonlyMap<Rule, number>;
  /** Policies of built-in chains (default ACCEPT). */
  readonly policies: ReadonlyMap<string, TableVerdict>;
  /** Record the rules each flow matched (default true; the verifier needs outcomes only). */
  readonly recordPath?: boolean;
}

/** A rule the simulator cannot evaluate: reported, never guessed. */
export class SimulationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimulationError';
  }
}

type RecentClause = Extract<Clause, { kind: 'recent' }>;
type CertainClause = Exclude<Clause, { kind: 'statisticRandom' | 'recent' }>;

/*
 * What a rule's text leaves to parse (addresses, marks, NAT targets) is parsed once per clause or
 * target object and kept as long as the ruleset is.
 */
type AddressClause = Extract<Clause, { kind: 'source' | 'destination' }>;
const cidrs = new WeakMap<AddressClause, CIDR | null>();

/** The clause's address or prefix; undefined when it is neither. */
function parsedCidr(c: AddressClause): CIDR | undefined {
  let cidr = cidrs.get(c);
  if (cidr === undefined) {
    cidr = parseAddressOrPrefix(c.cidr) ?? null;
    cidrs.set(c, cidr);
  }
  return cidr ?? undefined;
}

/** cidrContains, comparing a single address (the common `-s`/`-d` of kube-proxy's rules) directly. */
function contains(c: CIDR, ip: IPAddress): boolean {
  return c.prefix === (c.family === 'IPv4' ? 32 : 128) ? c.network === ip.value && c.family === ip.family : cidrContains(c, ip);
}

function cidrOf(c: AddressClause): CIDR {
  const cidr = parsedCidr(c);
  if (cidr === undefined) throw new SimulationError(`"${c.cidr}" is not an address or CIDR`);
  return cidr;
}

/** `value` and `mask` of a mark match or MARK target, as 32-bit numbers. */
const marks = new WeakMap<object, { readonly value: number; readonly mask: number }>();

function markOf(m: { readonly value: string; readonly mask: string | undefined }): { readonly value: number; readonly mask: number } {
  let parsed = marks.get(m);
  if (parsed === undefined) {
    parsed = { mask: m.mask === undefined ? 0xffffffff : Number(BigInt(m.mask)) >>> 0, value: Number(BigInt(m.value)) >>> 0 };
    marks.set(m, parsed);
  }
  return parsed;
}

function ifaceMatches(pattern: string, name: string | undefined): boolean {
  if (name === undefined) return false;
  return pattern.endsWith('+') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

function addrType(net: NodeNetwork, ip: IPAddress, type: string): boolean {
  const local = isLocalAddress(net, ip);
  // 224.0.0.0/4 and ff00::/8, compared without BigInt shifts.
  const multicast = ip.family === 'IPv4' ? ip.value >= 0xe0000000n && ip.value <= 0xefffffffn : ip.value >= 0xff000000000000000000000000000000n;
  const broadcast = ip.family === 'IPv4' && ip.value === 0xffffffffn;
  switch (type) {
    case 'LOCAL':
      return local;
    case 'UNICAST':
      return !local && !multicast && !broadcast;
    case 'MULTICAST':
      return multicast;
    case 'BROADCAST':
      return broadcast;
    default:
      throw new SimulationError(`addrtype ${type} is not supported`);
  }
}

function recentKey(ip: IPAddress, mask: string | undefined): string {
  const m = mask === undefined ? undefined : parseIP(mask);
  const value = m === undefined ? ip.value : ip.value & m.value;
  return `${ip.family}:${value.toString(16)}`;
}

/** A branch of a clause's evaluation: statistic splits, everything else is certain. */
interface Branch {
  readonly p: number;
  readonly matched: boolean;
  readonly recent: RecentLists;
}

function withRecent(lists: RecentLists, name: string, key: string, times: readonly number[] | undefined): RecentLists {
  const next = new Map(lists);
  const list = new Map(lists.get(name) ?? []);
  if (times === undefined) list.delete(key);
  else list.set(key, times);
  next.set(name, list);
  return next;
}

/** Clauses whose answer is a plain yes or no for a packet (everything but statistic and recent). */
function clauseHolds(ctx: EngineContext, flow: Flow, c: CertainClause): boolean {
  const pkt = flow.packet;
  switch (c.kind) {
    case 'comment':
    case 'nfacct':
      return true;
    case 'protocol':
      return (c.protocol === 'all' || c.protocol === pkt.protocol) !== c.negate;
    case 'source':
      return contains(cidrOf(c), pkt.src) !== c.negate;
    case 'destination':
      return contains(cidrOf(c), pkt.dst) !== c.negate;
    case 'sourcePort':
      return (pkt.sport >= c.from && pkt.sport <= c.to) !== c.negate;
    case 'destinationPort':
      return (pkt.dport >= c.from && pkt.dport <= c.to) !== c.negate;
    case 'inInterface':
      return ifaceMatches(c.name, pkt.inIface) !== c.negate;
    case 'outInterface':
      return ifaceMatches(c.name, pkt.outIface) !== c.negate;
    case 'addrtype':
      return addrType(ctx.net, c.direction === 'src' ? pkt.src : pkt.dst, c.type) !== c.negate;
    case 'statisticNth':
      // One connection's first packet: the counter starts at 0.
      return c.packet === 0;
    case 'mark': {
      const m = markOf(c);
      return (((pkt.mark & m.mask) >>> 0) === m.value) !== c.negate;
    }
    case 'multiport': {
      if (pkt.protocol !== 'tcp' && pkt.protocol !== 'udp' && pkt.protocol !== 'sctp') return false;
      const inRanges = (port: number): boolean => c.ranges.some((r) => port >= r.from && port <= r.to);
      const hit = c.direction === 'dst' ? inRanges(pkt.dport) : c.direction === 'src' ? inRanges(pkt.sport) : inRanges(pkt.dport) || inRanges(pkt.sport);
      return hit !== c.negate;
    }
    case 'tcpFlags': {
      if (pkt.protocol !== 'tcp') return false;
      const flags = new Set(pkt.tcpFlags ?? ['SYN']);
      const set = c.mask.filter((f) => flags.has(f));
      return (set.length === c.comp.length && c.comp.every((f) => set.includes(f))) !== c.negate;
    }
    case 'icmpType': {
      if (pkt.protocol !== (c.v6 ? 'icmpv6' : 'icmp')) return false;
      if (c.type === 'any') return !c.negate;
      const want = icmpTypeNumber(c.type, c.v6);
      if (want === undefined) throw new SimulationError(`icmp type "${c.type}" is not supported`);
      return ((pkt.icmpType ?? (c.v6 ? 128 : 8)) === want) !== c.negate;
    }
    case 'ctstate':
      for (const st of c.states) {
        if (st === flow.state || (st === 'DNAT' && flow.nat.dnat !== undefined) || (st === 'SNAT' && flow.nat.snat !== undefined)) return !c.negate;
      }
      return c.negate;
  }
}

function recentBranch(ctx: EngineContext, flow: Flow, recent: RecentLists, c: RecentClause): Branch {
  const pkt = flow.packet;
  const key = recentKey(c.side === 'rdest' ? pkt.dst : pkt.src, c.mask);
  const times = recent.get(c.name)?.get(key);
  switch (c.action) {
    case 'set':
      return { p: 1, matched: true, recent: withRecent(recent, c.name, key, [...(times ?? []), ctx.now]) };
    case 'remove':
      return { p: 1, matched: times !== undefined, recent: withRecent(recent, c.name, key, undefined) };
    case 'rcheck':
    case 'update': {
      const last = times?.at(-1);
      const fresh = last !== undefined && (c.seconds === undefined || ctx.now - last <= c.seconds);
      let next = recent;
      if (c.reap && c.seconds !== undefined && times !== undefined) {
        const seconds = c.seconds;
        const kept = times.filter((t) => ctx.now - t <= seconds);
        next = withRecent(next, c.name, key, kept.length === 0 ? undefined : kept);
      }
      if (fresh && c.action === 'update') next = withRecent(next, c.name, key, [...(times ?? []), ctx.now]);
      return { p: 1, matched: fresh, recent: next };
    }
  }
}

function clauseBranches(ctx: EngineContext, flow: Flow, recent: RecentLists, c: Clause): Branch[] {
  switch (c.kind) {
    case 'statisticRandom': {
      // The kernel keeps the probability as a 31-bit fraction; use exactly that.
      const p = quantizedProbability(c.probability) / 0x80000000;
      return [
        { p, matched: true, recent },
        { p: 1 - p, matched: false, recent },
      ].filter((b) => b.p > 0);
    }
    case 'recent':
      return [recentBranch(ctx, flow, recent, c)];
    default:
      return [{ p: 1, matched: clauseHolds(ctx, flow, c), recent }];
  }
}

function certainFrom(clauses: readonly Clause[], from: number): boolean {
  for (let i = from; i < clauses.length; i++) {
    const kind = clauses[i]?.kind;
    if (kind === 'statisticRandom' || kind === 'recent') return false;
  }
  return true;
}

function holdFrom(ctx: EngineContext, flow: Flow, clauses: readonly Clause[], from: number): boolean {
  for (let i = from; i < clauses.length; i++) {
    const c = clauses[i];
    if (c !== undefined && c.kind !== 'statisticRandom' && c.kind !== 'recent' && !clauseHolds(ctx, flow, c)) return false;
  }
  return true;
}

/**
 * Whether a rule matches a flow: true or false when that is certain, else every branch (a
 * statistic splits, `-m recent` may change the lists) with whether the whole rule matched.
 * Clauses are evaluated in order, each only on branches that still match.
 */
function matchRule(ctx: EngineContext, flow: Flow, rule: Rule): boolean | Branch[] {
  const clauses = rule.clauses;
  let i = 0;
  for (; i < clauses.length; i++) {
    const c = clauses[i];
    if (c === undefined || c.kind === 'statisticRandom' || c.kind === 'recent') break;
    if (!clauseHolds(ctx, flow, c)) return false;
  }
  if (i === clauses.length) return true;
  const first = clauses[i];
  if (first?.kind === 'statisticRandom' && certainFrom(clauses, i + 1)) {
    // The common split (KUBE-SVC-*): one statistic, then only certain clauses.
    const p = quantizedProbability(first.probability) / 0x80000000;
    const split: Branch[] = [];
    if (p > 0) split.push({ p, matched: holdFrom(ctx, flow, clauses, i + 1), recent: flow.recent });
    if (1 - p > 0) split.push({ p: 1 - p, matched: false, recent: flow.recent });
    return split;
  }
  let branches: Branch[] = [{ p: 1, matched: true, recent: flow.recent }];
  for (; i < clauses.length; i++) {
    const c = clauses[i];
    if (c === undefined) continue;
    const next: Branch[] = [];
    for (const b of branches) {
      if (!b.matched) {
        next.push(b);
        continue;
      }
      for (const r of clauseBranches(ctx, flow, b.recent, c)) next.push({ p: b.p * r.p, matched: r.matched, recent: r.recent });
    }
    branches = next;
  }
  return branches;
}

interface NatTarget {
  readonly ip: IPAddress;
  readonly port: number;
}

/** The host and, when the target names one, the port of `ip[:port]`, `[v6]:port` or `v6`. */
function splitNatTarget(text: string): { host: string; port: string | undefined } {
  const bracket = text.startsWith('[') ? /^\[([^\]]+)\](?::([0-9]+))?$/.exec(text) : null;
  if (bracket !== null) return { host: bracket[1] ?? '', port: bracket[2] };
  const colon = text.indexOf(':');
  // Exactly one colon: ADDRESS:PORT (an IPv6 address has several).
  return colon >= 0 && colon === text.lastIndexOf(':') ? { host: text.slice(0, colon), port: text.slice(colon + 1) } : { host: text, port: undefined };
}

/** Parses `ip[:port]`, `[v6]:port` or `v6` of a NAT target. */
export function parseNatTarget(text: string, fallbackPort: number): NatTarget {
  const split = splitNatTarget(text);
  const host = split.host;
  const port = split.port === undefined ? fallbackPort : Number(split.port);
  if (host.includes('-') || /:[0-9]+-[0-9]+$/.test(text)) {
    // The kernel hashes each connection onto a range (nf_nat's find_best_ips_proto); guessing one
    // address would be silently wrong.
    throw new SimulationError(`NAT to a range ("${text}") is not modelled: the kernel picks per connection by hash`);
  }
  const ip = parseAddress(host);
  if (ip === undefined || !Number.isInteger(port)) throw new SimulationError(`NAT target "${text}" is not ADDRESS[:PORT]`);
  return { ip, port };
}

/**
 * A DNAT or SNAT target's parsed form, kept per target: for any packet when the target names its
 * port, else for the packet port last asked (`fallback`).
 */
const natTargets = new WeakMap<Target, { readonly fallback: number | undefined; readonly to: NatTarget }>();

function natTarget(target: Target, text: string, fallbackPort: number): NatTarget {
  const known = natTargets.get(target);
  if (known !== undefined && (known.fallback === undefined || known.fallback === fallbackPort)) return known.to;
  const to = parseNatTarget(text, fallbackPort);
  natTargets.set(target, { fallback: splitNatTarget(text).port === undefined ? fallbackPort : undefined, to });
  return to;
}

/**
 * Where a traversal leaves its flows, in the order things happen: each flow with its verdict, or
 * undefined when it fell off the end of a chain or RETURNed (the caller continues with it).
 */
interface Outcomes {
  readonly flows: Flow[];
  readonly verdicts: (TableVerdict | undefined)[];
}

function emit(out: Outcomes, flow: Flow, verdict: TableVerdict | undefined): void {
  out.flows.push(flow);
  out.verdicts.push(verdict);
}

const MAX_DEPTH = 64;

/**
 * A table prepared for traversal, built on first use and kept per Table object (verifications
 * of one ruleset share it): chains by name and, for long chains, the rules bucketed by an exact
 * destination address or destination port, so a packet visits only rules that can match it
 * (KUBE-SERVICES holds one rule per service frontend). Order within the chain is kept.
 */
interface TableIndex {
  readonly table: Table;
  /** Chains by name and each rule's jump target (shared with the structure check). */
  readonly links: ChainLinks;
  /** Per chain position: built when a long chain is first entered. */
  readonly dispatch: Map<number, ChainIndex>;
  /** Per chain position: what its traversal reads, when it can be memoised (null: it cannot). */
  readonly reads: Map<number, Reads | null>;
}

interface ChainIndex {
  readonly always: readonly number[];
  readonly byDst: Readonly<Record<IPFamily, ReadonlyMap<bigint, readonly number[]>>>;
  readonly byDport: ReadonlyMap<number, readonly number[]>;
}

const INDEX_THRESHOLD = 16;
const tableIndexes = new WeakMap<Table, TableIndex>();

function tableIndex(table: Table): TableIndex {
  let idx = tableIndexes.get(table);
  if (idx === undefined) {
    idx = { table, links: chainLinks(table), dispatch: new Map(), reads: new Map() };
    tableIndexes.set(table, idx);
  }
  return idx;
}

/** The position of the chain rule `position` of chain `c` jumps or goes to; -1 if it does not exist. */
function jumpTarget(index: TableIndex, c: number, position: number): number {
  const { offsets, targets } = index.links;
  return targets[(offsets[c] ?? 0) + position] ?? -1;
}

function push<K>(map: Map<K, number[]>, key: K, value: number): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function dispatchIndex(chain: Chain): ChainIndex {
  const always: number[] = [];
  const byDst = { IPv4: new Map<bigint, number[]>(), IPv6: new Map<bigint, number[]>() };
  const byDport = new Map<number, number[]>();
  chain.rules.forEach((rule, i) => {
    const d = rule.clauses.find((c) => c.kind === 'destination');
    const host = d?.negate === false ? parsedCidr(d) : undefined;
    if (host?.prefix === (host?.family === 'IPv4' ? 32 : 128)) {
      push(byDst[host.family], host.network, i);
      return;
    }
    const p = rule.clauses.find((c) => c.kind === 'destinationPort');
    if (p !== undefined && !p.negate && p.from === p.to) push(byDport, p.from, i);
    else always.push(i);
  });
  return { always, byDst, byDport };
}

const NONE: readonly number[] = [];

function merge2(a: readonly number[], b: readonly number[]): readonly number[] {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    if (y === undefined || (x !== undefined && x < y)) {
      out.push(x ?? 0);
      i++;
    } else {
      out.push(y);
      j++;
    }
  }
  return out;
}

/** The rule positions of a long chain a packet with this destination can match, in order. */
function candidates(index: TableIndex, c: number, chain: Chain, pkt: Packet): readonly number[] {
  let ix = index.dispatch.get(c);
  if (ix === undefined) {
    ix = dispatchIndex(chain);
    index.dispatch.set(c, ix);
  }
  const byDst = ix.byDst[pkt.dst.family].get(pkt.dst.value) ?? NONE;
  return merge2(merge2(ix.always, byDst), ix.byDport.get(pkt.dport) ?? NONE);
}

function withStep(ctx: EngineContext, index: TableIndex, c: number, position: number, rule: Rule, flow: Flow): Flow {
  const step: PathStep = { table: index.table.name, chain: index.table.chains[c]?.name ?? '', rule, line: ctx.lines.get(rule) ?? position + 1 };
  return { ...flow, path: { step, previous: flow.path } };
}

/**
 * Runs one flow through a chain. Verdicts go to `out` in the order they happen; flows that fall
 * off the end or RETURN go there too, without a verdict.
 */
function runChain(ctx: EngineContext, index: TableIndex, c: number, start: Flow, depth: number, out: Outcomes): void {
  const chain = index.table.chains[c];
  if (chain === undefined) return;
  if (depth > MAX_DEPTH) throw new SimulationError(`chain ${chain.name} nests deeper than ${String(MAX_DEPTH)} jumps (a loop?)`);
  const rules = chain.rules;
  // Every flow in one traversal has the entry destination: only DNAT changes it, and it ends the chain.
  const order = rules.length < INDEX_THRESHOLD ? undefined : candidates(index, c, chain, start.packet);
  const count = order === undefined ? rules.length : order.length;
  // The active flows: `one` while there is exactly one (the common case), else `many`.
  let one: Flow | undefined = start;
  let many: Flow[] = [];
  let next: Flow[] | undefined;
  for (let k = 0; k < count; k++) {
    const position = order === undefined ? k : (order[k] ?? 0);
    const rule = rules[position];
    if (rule === undefined) continue;
    if (one !== undefined) {
      const m = matchRule(ctx, one, rule);
      // A rule that certainly does not match leaves everything as it is.
      if (m === false) continue;
      next ??= [];
      take(ctx, index, c, position, rule, one, m, depth, next, out);
    } else {
      next ??= [];
      for (const flow of many) take(ctx, index, c, position, rule, flow, matchRule(ctx, flow, rule), depth, next, out);
    }
    if (next.length === 1) {
      one = next.pop();
      continue;
    }
    one = undefined;
    many = next;
    next = undefined;
    if (many.length === 0) return;
  }
  if (one !== undefined) emit(out, one, undefined);
  else for (const flow of many) emit(out, flow, undefined);
}

/** Applies the rule's target to what matched; what did not match continues in `cont`. */
function take(ctx: EngineContext, index: TableIndex, c: number, position: number, rule: Rule, flow: Flow, match: boolean | Branch[], depth: number, cont: Flow[], out: Outcomes): void {
  if (match === false) {
    cont.push(flow);
    return;
  }
  const record = ctx.recordPath !== false;
  if (match === true) {
    applyTarget(ctx, index, c, position, rule.target, record ? withStep(ctx, index, c, position, rule, flow) : flow, depth, cont, out);
    return;
  }
  for (const b of match) {
    const f: Flow = { ...flow, probability: flow.probability * b.p, recent: b.recent };
    if (!b.matched) cont.push(f);
    else applyTarget(ctx, index, c, position, rule.target, record ? withStep(ctx, index, c, position, rule, f) : f, depth, cont, out);
  }
}

function natOnly(index: TableIndex, target: string): void {
  if (index.table.name !== 'nat') throw new SimulationError(`${target} is only valid in the nat table`);
}

function applyTarget(ctx: EngineContext, index: TableIndex, c: number, position: number, t: Target, flow: Flow, depth: number, cont: Flow[], out: Outcomes): void {
  const pkt = flow.packet;
  switch (t.kind) {
    case 'none':
    case 'LOG':
      cont.push(flow);
      return;
    case 'ACCEPT':
    case 'DROP':
    case 'REJECT':
      emit(out, flow.acted ? flow : { ...flow, acted: true }, t.kind);
      return;
    case 'RETURN':
      emit(out, flow, undefined);
      return;
    case 'NOTRACK':
      cont.push({ ...flow, state: 'UNTRACKED', acted: true });
      return;
    case 'MARK': {
      const { value: v, mask: m } = markOf(t);
      const mark = t.op === 'or' ? pkt.mark | v : t.op === 'xor' ? pkt.mark ^ v : t.op === 'and' ? pkt.mark & v : t.op === 'set' ? (pkt.mark & ~m) | v : (pkt.mark & ~m) ^ v;
      cont.push({ ...flow, packet: { ...pkt, mark: mark >>> 0 }, acted: true });
      return;
    }
    case 'DNAT': {
      natOnly(index, t.kind);
      const to = natTarget(t, t.toDestination, pkt.dport);
      emit(out, { ...flow, packet: { ...pkt, dst: to.ip, dport: to.port }, nat: { ...flow.nat, dnat: to }, acted: true }, 'ACCEPT');
      return;
    }
    case 'REDIRECT': {
      natOnly(index, t.kind);
      const local = pkt.inIface === undefined ? undefined : interfaceAddress(ctx.net, pkt.inIface, pkt.family);
      const ip = local ?? (pkt.family === 'IPv4' ? { family: pkt.family, value: 0x7f000001n } : { family: pkt.family, value: 1n });
      const port = t.toPorts === undefined ? pkt.dport : Number(t.toPorts.split('-')[0]);
      emit(out, { ...flow, packet: { ...pkt, dst: ip, dport: port }, nat: { ...flow.nat, dnat: { ip, port } }, acted: true }, 'ACCEPT');
      return;
    }
    case 'SNAT': {
      natOnly(index, t.kind);
      const to = natTarget(t, t.toSource, pkt.sport);
      emit(out, { ...flow, nat: { ...flow.nat, snat: { ip: to.ip } }, acted: true }, 'ACCEPT');
      return;
    }
    case 'MASQUERADE':
      natOnly(index, t.kind);
      emit(out, { ...flow, nat: { ...flow.nat, snat: 'masquerade' }, acted: true }, 'ACCEPT');
      return;
    case 'jump':
    case 'goto': {
      const sub = jumpTarget(index, c, position);
      if (sub < 0) throw new SimulationError(`rule jumps to ${t.chain}, which does not exist in table ${index.table.name}`);
      const mark = out.flows.length;
      runChain(ctx, index, sub, flow, depth + 1, out);
      // goto: falling off the target returns from *this* chain too.
      if (t.kind === 'goto') return;
      // jump: flows that fell off or RETURNed continue here; verdicts stay where they are.
      const { flows, verdicts } = out;
      let kept = mark;
      for (let i = mark; i < flows.length; i++) {
        const f = flows[i];
        if (f === undefined) continue;
        const verdict = verdicts[i];
        if (verdict === undefined) {
          cont.push(f);
          continue;
        }
        flows[kept] = f;
        verdicts[kept++] = verdict;
      }
      while (flows.length > kept) {
        flows.pop();
        verdicts.pop();
      }
      return;
    }
  }
}

/** A built-in chain of a table, resolved once per ruleset and policies. */
export interface Hook {
  /** undefined: the table or chain is absent (the packet is accepted). */
  readonly index: TableIndex | undefined;
  /** Position of the chain in its table. */
  readonly chain: number | undefined;
  readonly policy: TableVerdict;
  /** No rules and an ACCEPT policy: crossing it changes nothing. */
  readonly empty: boolean;
}

export function resolveHook(ctx: EngineContext, tableName: TableName, chainName: string): Hook {
  const table = ctx.ruleset.tables.find((t) => t.name === tableName);
  const index = table === undefined ? undefined : tableIndex(table);
  const chain = index?.links.positions.get(chainName);
  const rules = chain === undefined ? undefined : table?.chains[chain]?.rules.length;
  const policy = ctx.policies.get(`${tableName}/${chainName}`) ?? 'ACCEPT';
  return { index, chain, policy, empty: rules === undefined || (rules === 0 && policy === 'ACCEPT') };
}

/**
 * Runs a built-in chain (an absent table or chain accepts): accepted flows go to `accepted`, the
 * others to `stopped`, each in order.
 */
export function runHook(ctx: EngineContext, hook: Hook, flow: Flow, accepted: Flow[], stopped: TableResult[]): void {
  if (hook.index === undefined || hook.chain === undefined) {
    accepted.push(flow);
    return;
  }
  const out: Outcomes = { flows: [], verdicts: [] };
  const memo = ctx.recordPath === false ? memoized(ctx, hook.index, hook.chain, flow) : undefined;
  if (memo === undefined) runChain(ctx, hook.index, hook.chain, flow, 0, out);
  else replay(memo, flow, out);
  out.flows.forEach((f, i) => {
    const verdict = out.verdicts[i] ?? hook.policy;
    if (verdict === 'ACCEPT') accepted.push(f);
    else stopped.push({ flow: f, verdict });
  });
}

/*
 * Memoised hooks. Without path recording, what the traversal of a built-in chain does to a flow
 * depends only on the packet fields the rules it can reach look at, and on those only through the
 * rules' predicates: whether an address is one of the exact hosts they name, inside each prefix
 * they name, local; whether a port is one they name or inside a range. Flows that agree on all of
 * that (and on the connection state and marks the rules read) take the same branches and get the
 * same changes. The verifier sends every endpoint's packet of every check through FORWARD or
 * OUTPUT and POSTROUTING, so each class is traversed once per context and replayed for the rest.
 */

/** Hooks reaching more rules (nat PREROUTING: every service) are traversed as they are. */
const MEMO_MAX_RULES = 1024;

interface AddressReads {
  /** Exact addresses the rules name, numbered (IPv6 ones offset by 2^128 to keep families apart). */
  readonly hosts: Map<bigint, number>;
  readonly prefixes: CIDR[];
  /** addrtype: whether the address is local, multicast, broadcast. */
  types: boolean;
}

interface PortReads {
  /** The exact value matters (a NAT target without a port keeps the packet's). */
  exact: boolean;
  readonly ports: Map<number, number>;
  readonly ranges: { readonly from: number; readonly to: number }[];
}

/** What the traversal of a chain and every chain it can reach reads (a field left out: not read). */
interface Reads {
  /** Longest chain of jumps below the entry. */
  height: number;
  /** A statistic splits flows: then only flows of probability 1 are memoised (same arithmetic). */
  statistic: boolean;
  src?: AddressReads;
  dst?: AddressReads;
  sport?: PortReads;
  dport?: PortReads;
  inIface: boolean;
  outIface: boolean;
  mark: boolean;
  tcpFlags: boolean;
  icmpType: boolean;
}

const addressReads = (): AddressReads => ({ hosts: new Map(), prefixes: [], types: false });
const portReads = (): PortReads => ({ exact: false, ports: new Map(), ranges: [] });
const V6_HOSTS = 1n << 128n;
const hostKey = (ip: IPAddress): bigint => (ip.family === 'IPv4' ? ip.value : ip.value | V6_HOSTS);

function readAddress(a: AddressReads, clause: AddressClause): boolean {
  const c = parsedCidr(clause);
  if (c === undefined) return false;
  if (c.prefix === (c.family === 'IPv4' ? 32 : 128)) {
    const key = hostKey({ family: c.family, value: c.network });
    if (!a.hosts.has(key)) a.hosts.set(key, a.hosts.size);
  } else if (!a.prefixes.some((p) => p.family === c.family && p.network === c.network && p.prefix === c.prefix)) {
    a.prefixes.push(c);
  }
  return true;
}

function readPorts(p: PortReads, from: number, to: number): void {
  if (from !== to) p.ranges.push({ from, to });
  else if (!p.ports.has(from)) p.ports.set(from, p.ports.size);
}

/** Notes what a clause reads; false when the clause keeps the traversal from being memoised. */
function readClause(r: Reads, c: Clause): boolean {
  switch (c.kind) {
    case 'source':
      return readAddress((r.src ??= addressReads()), c);
    case 'destination':
      return readAddress((r.dst ??= addressReads()), c);
    case 'sourcePort':
      readPorts((r.sport ??= portReads()), c.from, c.to);
      return true;
    case 'destinationPort':
      readPorts((r.dport ??= portReads()), c.from, c.to);
      return true;
    case 'multiport':
      for (const range of c.ranges) {
        if (c.direction !== 'dst') readPorts((r.sport ??= portReads()), range.from, range.to);
        if (c.direction !== 'src') readPorts((r.dport ??= portReads()), range.from, range.to);
      }
      return true;
    case 'inInterface':
      r.inIface = true;
      return true;
    case 'outInterface':
      r.outIface = true;
      return true;
    case 'addrtype':
      if (c.direction === 'src') (r.src ??= addressReads()).types = true;
      else (r.dst ??= addressReads()).types = true;
      return true;
    case 'mark':
      r.mark = true;
      return true;
    case 'tcpFlags':
      r.tcpFlags = true;
      return true;
    case 'icmpType':
      r.icmpType = true;
      return true;
    case 'statisticRandom':
      r.statistic = true;
      return true;
    case 'recent':
      return false;
    case 'comment':
    case 'nfacct':
    case 'protocol':
    case 'statisticNth':
    case 'ctstate':
      // Protocol, connection state and NAT bindings are always part of the key.
      return true;
  }
}

function readTarget(r: Reads, t: Target): void {
  if (t.kind === 'MARK') r.mark = true;
  else if (t.kind === 'DNAT' && splitNatTarget(t.toDestination).port === undefined) (r.dport ??= portReads()).exact = true;
  else if (t.kind === 'REDIRECT') {
    r.inIface = true;
    if (t.toPorts === undefined) (r.dport ??= portReads()).exact = true;
  }
}

/** What traversing `entry` reads; undefined when it cannot be memoised (recent, loops, too large). */
function readsOf(index: TableIndex, entry: number): Reads | undefined {
  const known = index.reads.get(entry);
  if (known !== undefined) return known ?? undefined;
  const r: Reads = { height: 0, statistic: false, inIface: false, outIface: false, mark: false, tcpFlags: false, icmpType: false };
  let count = 0;
  const heights = new Map<number, number>();
  // The height of a chain's subtree; undefined to give up.
  const visit = (c: number): number | undefined => {
    const seen = heights.get(c);
    if (seen !== undefined) return seen < 0 ? undefined : seen;
    heights.set(c, -1);
    let height = 0;
    for (const [position, rule] of (index.table.chains[c]?.rules ?? []).entries()) {
      count++;
      if (count > MEMO_MAX_RULES || !rule.clauses.every((clause) => readClause(r, clause))) return undefined;
      readTarget(r, rule.target);
      // A missing chain makes every traversal that reaches it fail: nothing to remember.
      const sub = jumpTarget(index, c, position);
      if (sub < 0) continue;
      const below = visit(sub);
      if (below === undefined) return undefined;
      height = Math.max(height, below + 1);
    }
    heights.set(c, height);
    return height;
  };
  const height = visit(entry);
  if (height !== undefined) r.height = height;
  const reads = height === undefined ? undefined : r;
  index.reads.set(entry, reads ?? null);
  return reads;
}

const PROTOCOLS: readonly string[] = ['tcp', 'udp', 'sctp', 'icmp', 'icmpv6'];
const STATES: readonly string[] = ['NEW', 'ESTABLISHED', 'RELATED', 'INVALID', 'UNTRACKED'];
const TCP_FLAGS: readonly string[] = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'];

/** One verification's memo: traversals by what they read, then by key; interfaces and marks numbered. */
interface MemoTable {
  readonly byReads: Map<Reads, Map<number | string, Memo>>;
  readonly ifaces: Map<string | undefined, number>;
  readonly marks: Map<number, number>;
  /** Traversals kept; past MEMO_LIMIT the table starts over (memory stays bounded). */
  size: number;
}

const MEMO_LIMIT = 4096;

/**
 * A flow's key: digits, each with its radix, folded into numbers of at most 53 bits (fast as Map
 * keys; the rare key longer than one is written out). No key when a digit is outside its radix
 * (an odd port, flag or type). Folding is exact because a Reads always asks the same radices.
 */
class Key {
  valid = true;
  private readonly done: number[] = [];
  private value = 0;
  private span = 1;

  digit(value: number, radix: number): void {
    if (!Number.isInteger(value) || value < 0 || value >= radix) this.valid = false;
    if (this.span * radix > Number.MAX_SAFE_INTEGER) {
      this.done.push(this.value);
      this.value = 0;
      this.span = 1;
    }
    this.value = this.value * radix + value;
    this.span *= radix;
  }

  result(): number | string | undefined {
    if (!this.valid) return undefined;
    return this.done.length === 0 ? this.value : [...this.done, this.value].join();
  }
}

function writeAddress(ctx: EngineContext, k: Key, a: AddressReads | undefined, ip: IPAddress): void {
  if (a === undefined) return;
  k.digit((a.hosts.get(hostKey(ip)) ?? -1) + 1, a.hosts.size + 1);
  for (const p of a.prefixes) k.digit(cidrContains(p, ip) ? 1 : 0, 2);
  if (a.types) k.digit((addrType(ctx.net, ip, 'LOCAL') ? 1 : 0) + (addrType(ctx.net, ip, 'MULTICAST') ? 2 : 0) + (addrType(ctx.net, ip, 'BROADCAST') ? 4 : 0), 8);
}

function writePort(k: Key, p: PortReads | undefined, port: number): void {
  if (p === undefined) return;
  if (p.exact) {
    k.digit(port, 0x10000);
    return;
  }
  k.digit((p.ports.get(port) ?? -1) + 1, p.ports.size + 1);
  for (const r of p.ranges) k.digit(port >= r.from && port <= r.to ? 1 : 0, 2);
}

/** A value numbered in the order first seen (interface names, marks): fewer digits than the value. */
function writeId<T>(k: Key, ids: Map<T, number>, value: T): void {
  let id = ids.get(value);
  if (id === undefined) {
    id = ids.size;
    ids.set(value, id);
  }
  k.digit(id, 0x10000);
}

/** Everything about a flow that the traversal described by `r` can depend on. */
function writeKey(ctx: EngineContext, memo: MemoTable, r: Reads, f: Flow, k: Key): void {
  const p = f.packet;
  k.digit(p.family === 'IPv4' ? 0 : 1, 2);
  k.digit(PROTOCOLS.indexOf(p.protocol), PROTOCOLS.length);
  k.digit(STATES.indexOf(f.state), STATES.length);
  k.digit((f.acted ? 1 : 0) + (f.nat.dnat === undefined ? 0 : 2) + (f.nat.snat === undefined ? 0 : 4), 8);
  writeAddress(ctx, k, r.src, p.src);
  writeAddress(ctx, k, r.dst, p.dst);
  writePort(k, r.sport, p.sport);
  writePort(k, r.dport, p.dport);
  if (r.inIface) writeId(k, memo.ifaces, p.inIface);
  if (r.outIface) writeId(k, memo.ifaces, p.outIface);
  if (r.mark) writeId(k, memo.marks, p.mark);
  if (r.tcpFlags) k.digit((p.tcpFlags ?? ['SYN']).reduce((bits, flag) => bits | (TCP_FLAGS.includes(flag) ? 1 << TCP_FLAGS.indexOf(flag) : 0x100), 0), 0x100);
  if (r.icmpType) k.digit(p.icmpType === undefined ? 0 : p.icmpType + 1, 257);
}

/** The flow's key for the traversal described by `r`; undefined when it has none. */
function memoKey(ctx: EngineContext, memo: MemoTable, r: Reads, f: Flow): number | string | undefined {
  const k = new Key();
  writeKey(ctx, memo, r, f, k);
  return k.result();
}

/** One traversal, from a probe flow whose parts can be told apart from what the rules set. */
interface Memo {
  readonly reads: Reads;
  readonly probe: Flow;
  readonly out: Outcomes;
}

const KEPT_DNAT: NonNullable<NatBinding['dnat']> = { ip: { family: 'IPv4', value: 0n }, port: 0 };
const KEPT_SNAT: NonNullable<NatBinding['snat']> = { ip: { family: 'IPv4', value: 0n } };

/** Per context (one verification). */
const memos = new WeakMap<EngineContext, MemoTable>();

/** The traversal of `chain` for flows like `start`, from the memo or done now; undefined when it cannot be memoised. */
function memoized(ctx: EngineContext, index: TableIndex, chain: number, start: Flow): Memo | undefined {
  const r = readsOf(index, chain);
  if (r === undefined || r.height > MAX_DEPTH || (r.statistic && start.probability !== 1)) return undefined;
  let table = memos.get(ctx);
  if (table === undefined) {
    table = { byReads: new Map(), ifaces: new Map(), marks: new Map(), size: 0 };
    memos.set(ctx, table);
  }
  if (table.size >= MEMO_LIMIT) {
    table.byReads.clear();
    table.size = 0;
  }
  let byKey = table.byReads.get(r);
  if (byKey === undefined) {
    byKey = new Map();
    table.byReads.set(r, byKey);
  }
  const key = memoKey(ctx, table, r, start);
  if (key === undefined) return undefined;
  let memo = byKey.get(key);
  if (memo === undefined) {
    const pkt = start.packet;
    const probe: Flow = {
      ...start,
      probability: 1,
      packet: { ...pkt, dst: { family: pkt.dst.family, value: pkt.dst.value } },
      nat: { dnat: start.nat.dnat === undefined ? undefined : KEPT_DNAT, snat: start.nat.snat === undefined ? undefined : KEPT_SNAT },
    };
    memo = { reads: r, probe, out: { flows: [], verdicts: [] } };
    runChain(ctx, index, chain, probe, 0, memo.out);
    byKey.set(key, memo);
    table.size++;
  }
  return memo;
}

/** What the memoised traversal did to its probe, done to `flow`. */
function replay(memo: Memo, flow: Flow, out: Outcomes): void {
  const { probe, reads } = memo;
  memo.out.flows.forEach((o, i) => {
    const verdict = memo.out.verdicts[i];
    if (o.packet === probe.packet && o.nat === probe.nat && o.probability === 1 && o.state === probe.state && o.acted === probe.acted) {
      emit(out, flow, verdict);
      return;
    }
    let packet = flow.packet;
    if (o.packet !== probe.packet) {
      const moved = o.packet.dst !== probe.packet.dst;
      packet = { ...packet, mark: reads.mark ? o.packet.mark : packet.mark, dst: moved ? o.packet.dst : packet.dst, dport: moved ? o.packet.dport : packet.dport };
    }
    const nat = o.nat === probe.nat ? flow.nat : { dnat: o.nat.dnat === probe.nat.dnat ? flow.nat.dnat : o.nat.dnat, snat: o.nat.snat === probe.nat.snat ? flow.nat.snat : o.nat.snat };
    emit(out, { ...flow, probability: flow.probability * o.probability, packet, nat, state: o.state, acted: o.acted }, verdict);
  });
}
