/**
 * Chain traversal: one packet through one table's chains, as exact branches.
 *
 * A statistic rule splits a flow in two (probability p and 1-p), so a traversal returns every
 * possible outcome with its probability, not a sample. Everything a rule can change travels in
 * the flow: the packet, the path, the `-m recent` lists and the NAT binding.
 */
import { targetChain, type Chain, type Clause, type Rule, type Ruleset, type Table, type TableName } from '../compile/ruleset.ts';
import { cidrContains, parseAddressOrCIDR, parseIP, type CIDR, type IPAddress } from '../model/ip.ts';
import { quantizedProbability } from './normalize.ts';
import { icmpTypeNumber, interfaceAddress, isLocalAddress, type NodeNetwork, type Packet } from './packet.ts';

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

const cidrCache = new Map<string, CIDR | undefined>();
function cidrOf(text: string): CIDR {
  let c = cidrCache.get(text);
  if (c === undefined && !cidrCache.has(text)) {
    c = parseAddressOrCIDR(text);
    cidrCache.set(text, c);
  }
  if (c === undefined) throw new SimulationError(`"${text}" is not an address or CIDR`);
  return c;
}

function ifaceMatches(pattern: string, name: string | undefined): boolean {
  if (name === undefined) return false;
  return pattern.endsWith('+') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

function addrType(net: NodeNetwork, ip: IPAddress, type: string): boolean {
  const local = isLocalAddress(net, ip);
  const multicast = ip.family === 'IPv4' ? ip.value >> 28n === 0xen : ip.value >> 120n === 0xffn;
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
function clauseHolds(ctx: EngineContext, flow: Flow, c: Exclude<Clause, { kind: 'statisticRandom' | 'recent' }>): boolean {
  const pkt = flow.packet;
  const neg = (negate: boolean, v: boolean): boolean => (negate ? !v : v);
  switch (c.kind) {
    case 'comment':
    case 'nfacct':
      return true;
    case 'protocol':
      return neg(c.negate, c.protocol === 'all' || c.protocol === pkt.protocol);
    case 'source':
      return neg(c.negate, cidrContains(cidrOf(c.cidr), pkt.src));
    case 'destination':
      return neg(c.negate, cidrContains(cidrOf(c.cidr), pkt.dst));
    case 'sourcePort':
      return neg(c.negate, pkt.sport >= c.from && pkt.sport <= c.to);
    case 'destinationPort':
      return neg(c.negate, pkt.dport >= c.from && pkt.dport <= c.to);
    case 'inInterface':
      return neg(c.negate, ifaceMatches(c.name, pkt.inIface));
    case 'outInterface':
      return neg(c.negate, ifaceMatches(c.name, pkt.outIface));
    case 'addrtype':
      return neg(c.negate, addrType(ctx.net, c.direction === 'src' ? pkt.src : pkt.dst, c.type));
    case 'statisticNth':
      // One connection's first packet: the counter starts at 0.
      return c.packet === 0;
    case 'mark': {
      const mask = c.mask === undefined ? 0xffffffff : Number(BigInt(c.mask));
      return neg(c.negate, ((pkt.mark & mask) >>> 0) === (Number(BigInt(c.value)) >>> 0));
    }
    case 'multiport': {
      if (pkt.protocol !== 'tcp' && pkt.protocol !== 'udp' && pkt.protocol !== 'sctp') return false;
      const inRanges = (port: number): boolean => c.ranges.some((r) => port >= r.from && port <= r.to);
      const hit = c.direction === 'dst' ? inRanges(pkt.dport) : c.direction === 'src' ? inRanges(pkt.sport) : inRanges(pkt.dport) || inRanges(pkt.sport);
      return neg(c.negate, hit);
    }
    case 'tcpFlags': {
      if (pkt.protocol !== 'tcp') return false;
      const flags = new Set(pkt.tcpFlags ?? ['SYN']);
      const set = c.mask.filter((f) => flags.has(f));
      return neg(c.negate, set.length === c.comp.length && c.comp.every((f) => set.includes(f)));
    }
    case 'icmpType': {
      if (pkt.protocol !== (c.v6 ? 'icmpv6' : 'icmp')) return false;
      if (c.type === 'any') return !c.negate;
      const want = icmpTypeNumber(c.type, c.v6);
      if (want === undefined) throw new SimulationError(`icmp type "${c.type}" is not supported`);
      return neg(c.negate, (pkt.icmpType ?? (c.v6 ? 128 : 8)) === want);
    }
    case 'ctstate': {
      const has = (st: string): boolean =>
        st === flow.state || (st === 'DNAT' && flow.nat.dnat !== undefined) || (st === 'SNAT' && flow.nat.snat !== undefined);
      return neg(c.negate, c.states.some(has));
    }
  }
}

function matchClause(ctx: EngineContext, flow: Flow, recent: RecentLists, c: Clause): Branch[] {
  const pkt = flow.packet;
  switch (c.kind) {
    case 'statisticRandom': {
      // The kernel keeps the probability as a 31-bit fraction; use exactly that.
      const p = quantizedProbability(c.probability) / 0x80000000;
      return [
        { p, matched: true, recent },
        { p: 1 - p, matched: false, recent },
      ].filter((b) => b.p > 0);
    }
    case 'recent': {
      const addr = c.side === 'rdest' ? pkt.dst : pkt.src;
      const key = recentKey(addr, c.mask);
      const times = recent.get(c.name)?.get(key);
      switch (c.action) {
        case 'set': {
          const next = withRecent(recent, c.name, key, [...(times ?? []), ctx.now]);
          return [{ p: 1, matched: true, recent: next }];
        }
        case 'remove':
          return [{ p: 1, matched: times !== undefined, recent: withRecent(recent, c.name, key, undefined) }];
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
          return [{ p: 1, matched: fresh, recent: next }];
        }
      }
      break;
    }
    default:
      return [{ p: 1, matched: clauseHolds(ctx, flow, c), recent }];
  }
}

/** Whether evaluating the rule can split a flow or touch `-m recent` state. */
function isBranching(rule: Rule): boolean {
  return rule.clauses.some((c) => c.kind === 'statisticRandom' || c.kind === 'recent');
}

/** Fast path for rules without statistic or recent matches: a plain yes or no. */
function matchCertain(ctx: EngineContext, flow: Flow, rule: Rule): boolean {
  for (const c of rule.clauses) {
    if (c.kind === 'statisticRandom' || c.kind === 'recent') throw new SimulationError('internal: branching clause on the fast path');
    if (!clauseHolds(ctx, flow, c)) return false;
  }
  return true;
}

/** Evaluates a rule's clauses in order; returns each branch with whether the whole rule matched. */
function matchRule(ctx: EngineContext, flow: Flow, rule: Rule): Branch[] {
  let branches: Branch[] = [{ p: 1, matched: true, recent: flow.recent }];
  for (const c of rule.clauses) {
    const next: Branch[] = [];
    for (const b of branches) {
      if (!b.matched) {
        next.push(b);
        continue;
      }
      for (const r of matchClause(ctx, flow, b.recent, c)) next.push({ p: b.p * r.p, matched: r.matched, recent: r.recent });
    }
    branches = next;
  }
  return branches;
}

const natTargets = new Map<string, Map<number, { ip: IPAddress; port: number }>>();

/** Parses `ip[:port]`, `[v6]:port` or `v6` of a NAT target. */
export function parseNatTarget(text: string, fallbackPort: number): { ip: IPAddress; port: number } {
  let byPort = natTargets.get(text);
  if (byPort === undefined) {
    byPort = new Map();
    natTargets.set(text, byPort);
  }
  let parsed = byPort.get(fallbackPort);
  if (parsed === undefined) {
    parsed = parseNatTargetUncached(text, fallbackPort);
    byPort.set(fallbackPort, parsed);
  }
  return parsed;
}

function parseNatTargetUncached(text: string, fallbackPort: number): { ip: IPAddress; port: number } {
  let host = text;
  let port = fallbackPort;
  const bracket = /^\[([^\]]+)\](?::([0-9]+))?$/.exec(text);
  if (bracket !== null) {
    host = bracket[1] ?? '';
    if (bracket[2] !== undefined) port = Number(bracket[2]);
  } else if (text.split(':').length === 2) {
    const [h, p] = text.split(':');
    host = h ?? '';
    port = Number(p);
  }
  if (host.includes('-') || /:[0-9]+-[0-9]+$/.test(text)) {
    // The kernel hashes each connection onto a range (nf_nat's find_best_ips_proto); guessing one
    // address would be silently wrong.
    throw new SimulationError(`NAT to a range ("${text}") is not modelled: the kernel picks per connection by hash`);
  }
  const ip = parseIP(host);
  if (ip === undefined || !Number.isInteger(port)) throw new SimulationError(`NAT target "${text}" is not ADDRESS[:PORT]`);
  return { ip, port };
}

interface ChainOutcome {
  readonly flow: Flow;
  /** undefined: fell off the end or RETURNed (the caller continues). */
  readonly verdict: TableVerdict | undefined;
}

const MAX_DEPTH = 64;

/**
 * Lookup structures for a ruleset: chains by name, and for long chains the rules bucketed by an
 * exact destination address or destination port, so a packet visits only rules that can match it
 * (KUBE-SERVICES holds one rule per service frontend). Order within the chain is kept.
 */
interface ChainIndex {
  readonly always: readonly number[];
  readonly byDst: ReadonlyMap<string, readonly number[]>;
  readonly byDport: ReadonlyMap<number, readonly number[]>;
}

interface RulesetIndex {
  readonly chains: ReadonlyMap<string, Chain>;
  readonly dispatch: ReadonlyMap<Chain, ChainIndex>;
  /** Per chain, per rule: whether it can branch (statistic, recent). */
  readonly branchy: ReadonlyMap<Chain, readonly boolean[]>;
  /** Per short chain: every rule position, in order. */
  readonly identity: ReadonlyMap<Chain, readonly number[]>;
}

const INDEX_THRESHOLD = 16;
const indexes = new WeakMap<Table, RulesetIndex>();

function push<K>(map: Map<K, number[]>, key: K, value: number): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function indexTable(table: Table): RulesetIndex {
  let idx = indexes.get(table);
  if (idx !== undefined) return idx;
  const chains = new Map<string, Chain>();
  const dispatch = new Map<Chain, ChainIndex>();
  const branchy = new Map<Chain, boolean[]>();
  const identity = new Map<Chain, number[]>();
  for (const chain of table.chains) {
    chains.set(chain.name, chain);
    branchy.set(chain, chain.rules.map(isBranching));
    if (chain.rules.length < INDEX_THRESHOLD) {
      identity.set(chain, chain.rules.map((_, i) => i));
      continue;
    }
    const always: number[] = [];
    const byDst = new Map<string, number[]>();
    const byDport = new Map<number, number[]>();
    chain.rules.forEach((rule, i) => {
      const d = rule.clauses.find((c) => c.kind === 'destination');
      const host = d?.negate === false ? cidrOf(d.cidr) : undefined;
      const hostBits = host?.family === 'IPv4' ? 32 : 128;
      if (host?.prefix === hostBits) {
        push(byDst, `${host.family}:${host.network.toString(16)}`, i);
        return;
      }
      const p = rule.clauses.find((c) => c.kind === 'destinationPort');
      if (p !== undefined && !p.negate && p.from === p.to) push(byDport, p.from, i);
      else always.push(i);
    });
    dispatch.set(chain, { always, byDst, byDport });
  }
  idx = { chains, dispatch, branchy, identity };
  indexes.set(table, idx);
  return idx;
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

/** The rule positions a packet with this destination can match, in chain order. */
function candidates(index: RulesetIndex, chain: Chain, pkt: Packet): readonly number[] {
  const ix = index.dispatch.get(chain);
  if (ix === undefined) return index.identity.get(chain) ?? NONE;
  const byDst = ix.byDst.get(`${pkt.dst.family}:${pkt.dst.value.toString(16)}`) ?? NONE;
  return merge2(merge2(ix.always, byDst), ix.byDport.get(pkt.dport) ?? NONE);
}

function step(ctx: EngineContext, table: Table, chain: Chain, index: number, rule: Rule): PathStep {
  return { table: table.name, chain: chain.name, rule, line: ctx.lines.get(rule) ?? index + 1 };
}

function runChain(ctx: EngineContext, table: Table, chain: Chain, start: Flow, depth: number): ChainOutcome[] {
  if (depth > MAX_DEPTH) throw new SimulationError(`chain ${chain.name} nests deeper than ${String(MAX_DEPTH)} jumps (a loop?)`);
  const results: ChainOutcome[] = [];
  let active: Flow[] = [start];
  // Every flow in one traversal has the entry destination: only DNAT changes it, and it ends the chain.
  const index = indexTable(table);
  const order = candidates(index, chain, start.packet);
  const branchy = index.branchy.get(chain) ?? [];
  const record = ctx.recordPath !== false;
  // Two flow lists swapped rule by rule, instead of a new array per rule.
  let next: Flow[] = [];
  for (const position of order) {
    const rule = chain.rules[position];
    if (rule === undefined) continue;
    next.length = 0;
    if (branchy[position] !== true && active.length === 1) {
      // The common case: one flow, a rule that cannot branch; no-match leaves the lists as they are.
      const [flow] = active;
      if (flow === undefined || !matchCertain(ctx, flow, rule)) continue;
      applyTarget(ctx, table, rule, record ? { ...flow, path: { step: step(ctx, table, chain, position, rule), previous: flow.path } } : flow, depth, next, results);
      [active, next] = [next, active];
      if (active.length === 0) break;
      continue;
    }
    for (const flow of active) {
      if (branchy[position] !== true) {
        if (!matchCertain(ctx, flow, rule)) next.push(flow);
        else applyTarget(ctx, table, rule, record ? { ...flow, path: { step: step(ctx, table, chain, position, rule), previous: flow.path } } : flow, depth, next, results);
        continue;
      }
      for (const b of matchRule(ctx, flow, rule)) {
        const f: Flow = { ...flow, probability: flow.probability * b.p, recent: b.recent };
        if (!b.matched) {
          next.push(f);
          continue;
        }
        const taken: Flow = record ? { ...f, path: { step: step(ctx, table, chain, position, rule), previous: f.path } } : f;
        applyTarget(ctx, table, rule, taken, depth, next, results);
      }
    }
    [active, next] = [next, active];
    if (active.length === 0) break;
  }
  for (const flow of active) results.push({ flow, verdict: undefined });
  return results;
}

function applyTarget(ctx: EngineContext, table: Table, rule: Rule, flow: Flow, depth: number, cont: Flow[], done: ChainOutcome[]): void {
  const t = rule.target;
  const pkt = flow.packet;
  const natOnly = (): void => {
    if (table.name !== 'nat') throw new SimulationError(`${t.kind} is only valid in the nat table`);
  };
  switch (t.kind) {
    case 'none':
    case 'LOG':
      cont.push(flow);
      return;
    case 'ACCEPT':
    case 'DROP':
    case 'REJECT':
      done.push({ flow: { ...flow, acted: true }, verdict: t.kind });
      return;
    case 'RETURN':
      done.push({ flow, verdict: undefined });
      return;
    case 'NOTRACK':
      cont.push({ ...flow, state: 'UNTRACKED', acted: true });
      return;
    case 'MARK': {
      const v = Number(BigInt(t.value)) >>> 0;
      const m = t.mask === undefined ? 0xffffffff : Number(BigInt(t.mask)) >>> 0;
      const ops = { or: pkt.mark | v, xor: pkt.mark ^ v, and: pkt.mark & v, set: (pkt.mark & ~m) | v, 'set-xmark': (pkt.mark & ~m) ^ v };
      cont.push({ ...flow, packet: { ...pkt, mark: ops[t.op] >>> 0 }, acted: true });
      return;
    }
    case 'DNAT': {
      natOnly();
      const to = parseNatTarget(t.toDestination, pkt.dport);
      done.push({ flow: { ...flow, packet: { ...pkt, dst: to.ip, dport: to.port }, nat: { ...flow.nat, dnat: to }, acted: true }, verdict: 'ACCEPT' });
      return;
    }
    case 'REDIRECT': {
      natOnly();
      const local = pkt.inIface === undefined ? undefined : interfaceAddress(ctx.net, pkt.inIface, pkt.family);
      const ip = local ?? (pkt.family === 'IPv4' ? { family: pkt.family, value: 0x7f000001n } : { family: pkt.family, value: 1n });
      const port = t.toPorts === undefined ? pkt.dport : Number(t.toPorts.split('-')[0]);
      done.push({ flow: { ...flow, packet: { ...pkt, dst: ip, dport: port }, nat: { ...flow.nat, dnat: { ip, port } }, acted: true }, verdict: 'ACCEPT' });
      return;
    }
    case 'SNAT': {
      natOnly();
      const to = parseNatTarget(t.toSource, pkt.sport);
      done.push({ flow: { ...flow, nat: { ...flow.nat, snat: { ip: to.ip } }, acted: true }, verdict: 'ACCEPT' });
      return;
    }
    case 'MASQUERADE':
      natOnly();
      done.push({ flow: { ...flow, nat: { ...flow.nat, snat: 'masquerade' }, acted: true }, verdict: 'ACCEPT' });
      return;
    case 'jump':
    case 'goto': {
      const name = targetChain(t) ?? '';
      const sub = indexTable(table).chains.get(name);
      if (sub === undefined) throw new SimulationError(`rule jumps to ${name}, which does not exist in table ${table.name}`);
      for (const r of runChain(ctx, table, sub, flow, depth + 1)) {
        if (r.verdict !== undefined) done.push(r);
        // goto: falling off the target returns from *this* chain too.
        else if (t.kind === 'goto') done.push(r);
        else cont.push(r.flow);
      }
      return;
    }
  }
}

/** Whether a hook has rules at all: absent tables and empty built-in chains accept unseen. */
export function hookIsEmpty(ctx: EngineContext, tableName: TableName, chainName: string): boolean {
  const table = ctx.ruleset.tables.find((t) => t.name === tableName);
  const chain = table === undefined ? undefined : indexTable(table).chains.get(chainName);
  return chain === undefined || (chain.rules.length === 0 && (ctx.policies.get(`${tableName}/${chainName}`) ?? 'ACCEPT') === 'ACCEPT');
}

/** Runs a built-in chain of a table; a table or chain that is absent accepts. */
export function runHook(ctx: EngineContext, tableName: TableName, chainName: string, flow: Flow): TableResult[] {
  const table = ctx.ruleset.tables.find((t) => t.name === tableName);
  const chain = table === undefined ? undefined : indexTable(table).chains.get(chainName);
  if (table === undefined || chain === undefined) return [{ flow, verdict: 'ACCEPT' }];
  const policy = ctx.policies.get(`${tableName}/${chainName}`) ?? 'ACCEPT';
  return runChain(ctx, table, chain, flow, 0).map((r) => ({ flow: r.flow, verdict: r.verdict ?? policy }));
}
