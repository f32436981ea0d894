/**
 * A canonical form of a Ruleset, so that a ruleset and what the kernel's iptables-save prints
 * back for it compare equal (reference: real-cluster-harness §4): iptables-save reorders generic
 * matches first, adds /32, prints 11-decimal probabilities, rewrites MARK --or/--xor-mark as
 * --set-xmark, spells out recent's mask and side, and lists chains alphabetically.
 */
import { BUILTIN_CHAINS, type Chain, type Clause, type Rule, type Ruleset, type Table, type TableName, type Target } from '../compile/ruleset.ts';
import { formatCIDR, parseAddressOrCIDR } from '../model/ip.ts';
import { icmpTypeNumber } from './packet.ts';

const GENERIC_ORDER: Readonly<Record<string, number>> = { source: 0, destination: 1, inInterface: 2, outInterface: 3, protocol: 4 };

function cidr(text: string): string {
  const c = parseAddressOrCIDR(text);
  return c === undefined ? text : formatCIDR(c);
}

const U32 = 0xffffffffn;

function hex(n: bigint): string {
  return `0x${n.toString(16)}`;
}

function num(text: string): bigint {
  return BigInt(text);
}

/** The kernel keeps a statistic probability as a 31-bit fraction (xt_statistic). */
export function quantizedProbability(text: string): number {
  return Math.round(Number(text) * 0x80000000);
}

function normalizeClause(c: Clause, family: Ruleset['family']): Clause {
  switch (c.kind) {
    case 'source':
    case 'destination':
      return { ...c, cidr: cidr(c.cidr) };
    case 'protocol':
      return { ...c, module: false };
    case 'statisticRandom':
      // As iptables-save prints it: the kernel's 31-bit value with 11 decimals.
      return { kind: 'statisticRandom', probability: (quantizedProbability(c.probability) / 0x80000000).toFixed(11) };
    case 'recent':
      return {
        ...c,
        side: c.side ?? 'rsource',
        mask: c.mask ?? (family === 'IPv4' ? '255.255.255.255' : 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'),
      };
    case 'mark':
      return { ...c, value: hex(num(c.value)), mask: hex(c.mask === undefined ? U32 : num(c.mask)) };
    case 'ctstate':
      return { ...c, states: [...c.states].sort(), module: 'conntrack' };
    case 'tcpFlags': {
      const order = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'];
      const sorted = (f: readonly string[]): string[] => [...f].sort((a, b) => order.indexOf(a) - order.indexOf(b));
      return { ...c, mask: sorted(c.mask), comp: sorted(c.comp) };
    }
    case 'icmpType': {
      const n = c.type === 'any' ? undefined : icmpTypeNumber(c.type, c.v6);
      return n === undefined ? c : { ...c, type: String(n) };
    }
    case 'multiport':
    case 'comment':
    case 'sourcePort':
    case 'destinationPort':
    case 'inInterface':
    case 'outInterface':
    case 'addrtype':
    case 'statisticNth':
    case 'nfacct':
      return c;
  }
}

function normalizeTarget(t: Target, family: Ruleset['family']): Target {
  switch (t.kind) {
    case 'MARK': {
      const v = num(t.value);
      const m = t.mask === undefined ? undefined : num(t.mask);
      // Everything as --set-xmark value/mask: mark = (mark & ~mask) ^ value.
      switch (t.op) {
        case 'or':
          return { kind: 'MARK', op: 'set-xmark', value: hex(v), mask: hex(v) };
        case 'xor':
          return { kind: 'MARK', op: 'set-xmark', value: hex(v), mask: '0x0' };
        case 'and':
          return { kind: 'MARK', op: 'set-xmark', value: '0x0', mask: hex(~v & U32) };
        case 'set':
          return { kind: 'MARK', op: 'set-xmark', value: hex(v), mask: hex(m ?? U32) };
        case 'set-xmark':
          return { kind: 'MARK', op: 'set-xmark', value: hex(v), mask: hex(m ?? U32) };
      }
      break;
    }
    case 'REJECT':
      return { kind: 'REJECT', rejectWith: t.rejectWith ?? (family === 'IPv4' ? 'icmp-port-unreachable' : 'icmp6-port-unreachable') };
    default:
      return t;
  }
}

/** `-s 0.0.0.0/0` matches everything; iptables-save leaves it out. */
function matchesEverything(c: Clause): boolean {
  return (c.kind === 'source' || c.kind === 'destination') && !c.negate && parseAddressOrCIDR(c.cidr)?.prefix === 0;
}

export function normalizeRule(r: Rule, family: Ruleset['family']): Rule {
  const clauses = r.clauses.filter((c) => !matchesEverything(c)).map((c) => normalizeClause(c, family));
  const generic = clauses
    .filter((c) => c.kind in GENERIC_ORDER)
    .sort((a, b) => (GENERIC_ORDER[a.kind] ?? 0) - (GENERIC_ORDER[b.kind] ?? 0));
  const rest = clauses.filter((c) => !(c.kind in GENERIC_ORDER));
  return { clauses: [...generic, ...rest], target: normalizeTarget(r.target, family) };
}

function chainOrder(table: TableName, a: Chain, b: Chain): number {
  const builtins = BUILTIN_CHAINS[table];
  const ia = builtins.indexOf(a.name);
  const ib = builtins.indexOf(b.name);
  if (ia >= 0 || ib >= 0) return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

export interface NormalizeOptions {
  /** Keep only these tables (e.g. a node dump also has mangle and raw). */
  readonly tables?: readonly TableName[];
}

export function normalizeRuleset(ruleset: Ruleset, options: NormalizeOptions = {}): Ruleset {
  const tables = ruleset.tables
    .filter((t) => options.tables === undefined || options.tables.includes(t.name))
    .map((t): Table => ({
      name: t.name,
      chains: t.chains
        .map((c) => ({ name: c.name, rules: c.rules.map((r) => normalizeRule(r, ruleset.family)) }))
        .sort((a, b) => chainOrder(t.name, a, b)),
    }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { family: ruleset.family, tables };
}
