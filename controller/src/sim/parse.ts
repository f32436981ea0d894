/**
 * iptables-save / iptables-restore text → Ruleset.
 *
 * Reads kpx's own output and what the kernel's iptables-save prints back (nf_tables or legacy),
 * for any table. A match or target the simulator cannot model is an error naming the line, never
 * silently skipped: a rule we cannot read is a rule we cannot prove.
 */
import {
  type Chain,
  type Clause,
  type L4Protocol,
  type Rule,
  type Ruleset,
  type Table,
  type TableName,
  type Target,
} from '../compile/ruleset.ts';
import { parseAddressOrCIDR } from '../model/ip.ts';

export class RulesetParseError extends Error {
  readonly line: number;
  constructor(line: number, message: string) {
    super(`line ${String(line)}: ${message}`);
    this.name = 'RulesetParseError';
    this.line = line;
  }
}

const TABLES: readonly TableName[] = ['raw', 'mangle', 'nat', 'filter'];
const L4: readonly string[] = ['tcp', 'udp', 'sctp', 'icmp', 'icmpv6', 'ipv6-icmp', 'all'];

/** Splits a line into words: double-quoted strings are one word (quotes removed, `\"` unescaped). */
export function splitWords(line: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && /\s/.test(line.charAt(i))) i++;
    if (i >= line.length) break;
    let word = '';
    let quoted = false;
    while (i < line.length && (quoted || !/\s/.test(line.charAt(i)))) {
      const ch = line.charAt(i);
      if (ch === '"') {
        quoted = !quoted;
        i++;
      } else if (ch === '\\' && i + 1 < line.length && (line.charAt(i + 1) === '"' || line.charAt(i + 1) === '\\')) {
        word += line.charAt(i + 1);
        i += 2;
      } else {
        word += ch;
        i++;
      }
    }
    if (quoted) throw new Error('unterminated quote');
    words.push(word);
  }
  return words;
}

interface Cursor {
  readonly words: readonly string[];
  pos: number;
  readonly line: number;
}

function next(c: Cursor, what: string): string {
  const w = c.words[c.pos];
  if (w === undefined) throw new RulesetParseError(c.line, `${what} needs a value`);
  c.pos++;
  return w;
}

function peek(c: Cursor): string | undefined {
  return c.words[c.pos];
}

function parsePortRange(c: Cursor, text: string): { from: number; to: number } {
  const m = /^([0-9]+)(?::([0-9]+))?$/.exec(text);
  const from = Number(m?.[1]);
  const to = m?.[2] === undefined ? from : Number(m[2]);
  if (m === null || from > 65535 || to > 65535 || from > to) throw new RulesetParseError(c.line, `"${text}" is not a port or port range`);
  return { from, to };
}

function checkAddress(c: Cursor, text: string): string {
  if (parseAddressOrCIDR(text) === undefined) throw new RulesetParseError(c.line, `"${text}" is not an address or CIDR`);
  return text;
}

function splitMark(text: string): { value: string; mask: string | undefined } {
  const slash = text.indexOf('/');
  return slash < 0 ? { value: text, mask: undefined } : { value: text.slice(0, slash), mask: text.slice(slash + 1) };
}

const SUPPORTED_MODULES = new Set([
  'comment', 'tcp', 'udp', 'sctp', 'icmp', 'icmp6', 'icmpv6', 'addrtype', 'statistic', 'recent', 'mark', 'conntrack', 'state', 'nfacct', 'multiport',
]);

const TCP_FLAGS = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'];

function flagList(c: Cursor, text: string): string[] {
  if (text === 'NONE') return [];
  if (text === 'ALL') return [...TCP_FLAGS];
  const flags = text.split(',');
  for (const f of flags) if (!TCP_FLAGS.includes(f)) throw new RulesetParseError(c.line, `"${f}" is not a TCP flag`);
  return flags;
}

/** Parses one module's options (after `-m NAME`), appending clauses. */
function parseModule(c: Cursor, module: string, clauses: Clause[]): void {
  if (!SUPPORTED_MODULES.has(module)) throw new RulesetParseError(c.line, `match module "${module}" is not supported`);
  if (module === 'tcp' || module === 'udp' || module === 'sctp') {
    // `-m tcp -p tcp` (restore input) or `-p tcp ... -m tcp` (iptables-save): one protocol clause.
    const p = clauses.findLast((cl) => cl.kind === 'protocol');
    const ahead = c.words[c.pos] === '-p' ? c.words[c.pos + 1] : undefined;
    if (ahead === module) {
      c.pos += 2;
      clauses.push({ kind: 'protocol', protocol: module, negate: false, module: true });
    } else if (p?.protocol === module) {
      clauses[clauses.lastIndexOf(p)] = { ...p, module: true };
    } else {
      throw new RulesetParseError(c.line, `-m ${module} needs -p ${module}`);
    }
  }
  let negate = false;
  for (;;) {
    const w = peek(c);
    if (w === undefined) return;
    if (w === '!' && c.words[c.pos + 1]?.startsWith('--') === true) {
      negate = true;
      c.pos++;
      continue;
    }
    if (!w.startsWith('--')) {
      if (negate) throw new RulesetParseError(c.line, '"!" must precede an option');
      return;
    }
    // Options that belong to the target or to the generic part end this module's options.
    if (w === '--to-destination' || w === '--to-source') return;
    c.pos++;
    const neg = negate;
    negate = false;
    parseModuleOption(c, module, w, neg, clauses);
  }
}

function parseModuleOption(c: Cursor, module: string, opt: string, negate: boolean, clauses: Clause[]): void {
  const unsupported = (): never => {
    throw new RulesetParseError(c.line, `option ${opt} of -m ${module} is not supported`);
  };
  switch (module) {
    case 'comment':
      if (opt !== '--comment') unsupported();
      clauses.push({ kind: 'comment', text: next(c, opt) });
      return;
    case 'icmp':
    case 'icmp6':
    case 'icmpv6':
      if (opt !== '--icmp-type' && opt !== '--icmpv6-type') unsupported();
      clauses.push({ kind: 'icmpType', type: next(c, opt), negate, v6: opt === '--icmpv6-type' });
      return;
    case 'multiport': {
      const direction = opt === '--dports' || opt === '--destination-ports' ? 'dst' : opt === '--sports' || opt === '--source-ports' ? 'src' : opt === '--ports' ? 'any' : undefined;
      if (direction === undefined) unsupported();
      else clauses.push({ kind: 'multiport', direction, ranges: next(c, opt).split(',').map((p) => parsePortRange(c, p)), negate });
      return;
    }
    case 'tcp':
    case 'udp':
    case 'sctp': {
      if (module === 'tcp' && (opt === '--tcp-flags' || opt === '--syn')) {
        const mask = opt === '--syn' ? ['FIN', 'SYN', 'RST', 'ACK'] : flagList(c, next(c, opt));
        const comp = opt === '--syn' ? ['SYN'] : flagList(c, next(c, opt));
        clauses.push({ kind: 'tcpFlags', mask, comp, negate });
        return;
      }
      if (opt === '--dport' || opt === '--destination-port') {
        clauses.push({ kind: 'destinationPort', ...parsePortRange(c, next(c, opt)), negate });
      } else if (opt === '--sport' || opt === '--source-port') {
        clauses.push({ kind: 'sourcePort', ...parsePortRange(c, next(c, opt)), negate });
      } else unsupported();
      return;
    }
    case 'addrtype':
      if (opt === '--src-type' || opt === '--dst-type') {
        clauses.push({ kind: 'addrtype', direction: opt === '--src-type' ? 'src' : 'dst', type: next(c, opt), negate });
      } else unsupported();
      return;
    case 'statistic': {
      if (opt !== '--mode') unsupported();
      const mode = next(c, opt);
      if (mode === 'random') {
        if (next(c, 'statistic random') !== '--probability') unsupported();
        const p = next(c, '--probability');
        if (!/^(0(\.[0-9]+)?|1(\.0+)?)$/.test(p)) throw new RulesetParseError(c.line, `"${p}" is not a probability`);
        clauses.push({ kind: 'statisticRandom', probability: p });
      } else if (mode === 'nth') {
        let every = 0;
        let packet = 0;
        while (peek(c) === '--every' || peek(c) === '--packet') {
          const o = next(c, 'nth');
          const v = Number(next(c, o));
          if (o === '--every') every = v;
          else packet = v;
        }
        if (!Number.isInteger(every) || every < 1) throw new RulesetParseError(c.line, 'statistic nth needs --every N');
        clauses.push({ kind: 'statisticNth', every, packet });
      } else unsupported();
      return;
    }
    case 'recent':
      parseRecent(c, opt, clauses);
      return;
    case 'mark':
      if (opt !== '--mark') unsupported();
      clauses.push({ kind: 'mark', ...splitMark(next(c, opt)), negate });
      return;
    case 'conntrack':
    case 'state':
      if (opt !== (module === 'conntrack' ? '--ctstate' : '--state')) unsupported();
      clauses.push({ kind: 'ctstate', states: next(c, opt).split(','), negate, module: module === 'state' ? 'state' : 'conntrack' });
      return;
    case 'nfacct':
      if (opt !== '--nfacct-name') unsupported();
      clauses.push({ kind: 'nfacct', name: next(c, opt) });
      return;
    default:
      unsupported();
  }
}

type RecentClause = Extract<Clause, { kind: 'recent' }>;

/** `-m recent` options come in any order; they are folded into one clause. */
function parseRecent(c: Cursor, first: string, clauses: Clause[]): void {
  const r: { -readonly [K in keyof RecentClause]: RecentClause[K] } = {
    kind: 'recent', name: 'DEFAULT', action: 'set', seconds: undefined, reap: false, side: undefined, mask: undefined,
  };
  let sawAction = false;
  let opt: string | undefined = first;
  while (opt !== undefined) {
    switch (opt) {
      case '--name':
        r.name = next(c, opt);
        break;
      case '--set':
      case '--rcheck':
      case '--update':
      case '--remove':
        r.action = opt.slice(2) as RecentClause['action'];
        sawAction = true;
        break;
      case '--seconds':
        r.seconds = Number(next(c, opt));
        break;
      case '--reap':
        r.reap = true;
        break;
      case '--rsource':
      case '--rdest':
        r.side = opt.slice(2) as 'rsource' | 'rdest';
        break;
      case '--mask':
        r.mask = next(c, opt);
        break;
      default:
        throw new RulesetParseError(c.line, `option ${opt} of -m recent is not supported`);
    }
    const w = peek(c);
    opt = w !== undefined && ['--name', '--set', '--rcheck', '--update', '--remove', '--seconds', '--reap', '--rsource', '--rdest', '--mask'].includes(w) ? next(c, w) : undefined;
  }
  if (!sawAction) throw new RulesetParseError(c.line, '-m recent needs --set, --rcheck, --update or --remove');
  clauses.push(r);
}

const UNSUPPORTED_TARGETS = new Set([
  'TPROXY', 'CLASSIFY', 'TCPMSS', 'CONNMARK', 'NFQUEUE', 'TRACE', 'AUDIT', 'CHECKSUM', 'NETMAP', 'SET', 'TEE', 'TOS', 'TTL', 'HL', 'DSCP', 'ULOG', 'NFLOG', 'SECMARK', 'CONNSECMARK', 'IDLETIMER', 'LED', 'RATEEST', 'SYNPROXY',
]);

function parseTarget(c: Cursor, name: string): Target {
  const opts = new Map<string, string | true>();
  const valueless = new Set(['--random-fully', '--random', '--persistent', '--notrack', '--log-uid', '--log-tcp-sequence', '--log-tcp-options', '--log-ip-options']);
  while (peek(c)?.startsWith('--') === true) {
    const o = next(c, 'target option');
    opts.set(o, valueless.has(o) ? true : next(c, o));
  }
  const str = (k: string): string | undefined => {
    const v = opts.get(k);
    return typeof v === 'string' ? v : undefined;
  };
  const only = (...allowed: string[]): void => {
    for (const k of opts.keys()) if (!allowed.includes(k)) throw new RulesetParseError(c.line, `option ${k} of -j ${name} is not supported`);
  };
  switch (name) {
    case 'ACCEPT':
    case 'DROP':
    case 'RETURN':
      only();
      return { kind: name };
    case 'REJECT':
      only('--reject-with');
      return { kind: 'REJECT', rejectWith: str('--reject-with') };
    case 'DNAT': {
      only('--to-destination', '--random', '--persistent');
      const to = str('--to-destination');
      if (to === undefined) throw new RulesetParseError(c.line, '-j DNAT needs --to-destination');
      return { kind: 'DNAT', toDestination: to };
    }
    case 'SNAT': {
      only('--to-source', '--random', '--random-fully', '--persistent');
      const to = str('--to-source');
      if (to === undefined) throw new RulesetParseError(c.line, '-j SNAT needs --to-source');
      return { kind: 'SNAT', toSource: to, randomFully: opts.has('--random-fully') };
    }
    case 'MASQUERADE':
      only('--to-ports', '--random', '--random-fully');
      return { kind: 'MASQUERADE', randomFully: opts.has('--random-fully'), toPorts: str('--to-ports') };
    case 'REDIRECT':
      only('--to-ports', '--random');
      return { kind: 'REDIRECT', toPorts: str('--to-ports') };
    case 'MARK': {
      only('--set-xmark', '--set-mark', '--or-mark', '--xor-mark', '--and-mark');
      const [entry] = [...opts.entries()];
      if (entry === undefined || typeof entry[1] !== 'string' || opts.size !== 1) throw new RulesetParseError(c.line, '-j MARK needs exactly one mark operation');
      const op = entry[0].slice(2).replace(/-mark$/, '') as 'set-xmark' | 'set' | 'or' | 'xor' | 'and';
      return { kind: 'MARK', op, ...splitMark(entry[1]) };
    }
    case 'LOG':
      only('--log-prefix', '--log-level', '--log-uid', '--log-tcp-sequence', '--log-tcp-options', '--log-ip-options');
      return { kind: 'LOG', prefix: str('--log-prefix') };
    case 'NOTRACK':
      only();
      return { kind: 'NOTRACK' };
    case 'CT':
      if (opts.size === 1 && opts.has('--notrack')) return { kind: 'NOTRACK' };
      throw new RulesetParseError(c.line, 'only -j CT --notrack is supported');
    default:
      // Any other name is a user chain, unless it is a target extension we do not model.
      if (opts.size > 0 || UNSUPPORTED_TARGETS.has(name)) throw new RulesetParseError(c.line, `target ${name} is not supported`);
      return { kind: 'jump', chain: name };
  }
}

/** Parses the words of a rule after `-A CHAIN`. */
export function parseRuleWords(words: readonly string[], line: number): Rule {
  const c: Cursor = { words, pos: 0, line };
  const clauses: Clause[] = [];
  let target: Target = { kind: 'none' };
  let negate = false;
  while (c.pos < words.length) {
    const w = next(c, 'rule');
    if (w === '!') {
      negate = true;
      continue;
    }
    const neg = negate;
    negate = false;
    switch (w) {
      case '-p':
      case '--protocol': {
        let p = next(c, w).toLowerCase();
        if (p === 'ipv6-icmp') p = 'icmpv6';
        if (!L4.includes(p)) throw new RulesetParseError(line, `protocol "${p}" is not supported`);
        clauses.push({ kind: 'protocol', protocol: p as L4Protocol, negate: neg, module: false });
        break;
      }
      case '-s':
      case '--source':
        clauses.push({ kind: 'source', cidr: checkAddress(c, next(c, w)), negate: neg });
        break;
      case '-d':
      case '--destination':
        clauses.push({ kind: 'destination', cidr: checkAddress(c, next(c, w)), negate: neg });
        break;
      case '-i':
      case '--in-interface':
        clauses.push({ kind: 'inInterface', name: next(c, w), negate: neg });
        break;
      case '-o':
      case '--out-interface':
        clauses.push({ kind: 'outInterface', name: next(c, w), negate: neg });
        break;
      case '-m':
      case '--match':
        if (neg) throw new RulesetParseError(line, '"!" cannot negate -m');
        parseModule(c, next(c, w), clauses);
        break;
      case '-j':
      case '--jump':
        target = parseTarget(c, next(c, w));
        break;
      case '-g':
      case '--goto':
        target = { kind: 'goto', chain: next(c, w) };
        break;
      case '--dport':
      case '--sport': {
        // Port options right after -p without -m (legacy restore input allows it).
        const range = parsePortRange(c, next(c, w));
        clauses.push(w === '--dport' ? { kind: 'destinationPort', ...range, negate: neg } : { kind: 'sourcePort', ...range, negate: neg });
        break;
      }
      case '--tcp-flags':
      case '--syn':
      case '--icmp-type':
      case '--icmpv6-type': {
        // Protocol options right after -p without -m, as iptables-restore accepts them.
        const p = clauses.findLast((cl) => cl.kind === 'protocol');
        if (p === undefined) throw new RulesetParseError(line, `${w} needs -p`);
        parseModuleOption(c, p.protocol === 'icmpv6' ? 'icmp6' : p.protocol, w, neg, clauses);
        break;
      }
      case '-c':
      case '--set-counters':
        next(c, w);
        next(c, w);
        break;
      default:
        throw new RulesetParseError(line, `"${w}" is not a supported rule option`);
    }
  }
  if (negate) throw new RulesetParseError(line, 'dangling "!"');
  return { clauses, target };
}

interface MutableTable {
  name: TableName;
  chains: Map<string, Rule[]>;
}

/** A parsed dump with what the simulator needs beyond the rules themselves. */
export interface ParsedDump {
  readonly ruleset: Ruleset;
  /** The line each rule came from. */
  readonly lines: ReadonlyMap<Rule, number>;
  /** `table/CHAIN` → policy of built-in chains (`:INPUT DROP [0:0]`). */
  readonly policies: ReadonlyMap<string, 'ACCEPT' | 'DROP'>;
}

/** Parses a whole iptables-save or restore text. `-X CHAIN` lines remove the chain. */
export function parseRuleset(text: string, family: 'IPv4' | 'IPv6' = 'IPv4'): Ruleset {
  return parseDump(text, family).ruleset;
}

export function parseDump(text: string, family: 'IPv4' | 'IPv6' = 'IPv4'): ParsedDump {
  const lines = new Map<Rule, number>();
  const policies = new Map<string, 'ACCEPT' | 'DROP'>();
  const tables: MutableTable[] = [];
  let current: MutableTable | undefined;
  text.split('\n').forEach((raw, index) => {
    const lineNo = index + 1;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    let words: string[];
    try {
      words = splitWords(line);
    } catch (error) {
      throw new RulesetParseError(lineNo, (error as Error).message);
    }
    const head = words[0] ?? '';
    if (head.startsWith('*')) {
      const name = head.slice(1) as TableName;
      if (!TABLES.includes(name)) throw new RulesetParseError(lineNo, `table "${head.slice(1)}" is not supported`);
      if (current !== undefined) throw new RulesetParseError(lineNo, `table ${name} starts before COMMIT of ${current.name}`);
      current = tables.find((t) => t.name === name);
      if (current === undefined) {
        current = { name, chains: new Map() };
        tables.push(current);
      }
      return;
    }
    if (current === undefined) throw new RulesetParseError(lineNo, `"${line}" is outside a table`);
    if (head === 'COMMIT') {
      current = undefined;
      return;
    }
    if (head.startsWith(':')) {
      const name = head.slice(1);
      if (name === '') throw new RulesetParseError(lineNo, 'chain line without a name');
      // A chain line creates the chain, or flushes it (restore semantics).
      current.chains.set(name, []);
      const policy = words[1];
      if (policy === 'ACCEPT' || policy === 'DROP') policies.set(`${current.name}/${name}`, policy);
      else if (policy !== undefined && policy !== '-') throw new RulesetParseError(lineNo, `chain policy "${policy}" is not ACCEPT or DROP`);
      return;
    }
    if (head === '-A' || head === '--append') {
      const chain = words[1];
      if (chain === undefined) throw new RulesetParseError(lineNo, '-A needs a chain');
      const rules = current.chains.get(chain);
      if (rules === undefined) throw new RulesetParseError(lineNo, `chain ${chain} is not declared in table ${current.name}`);
      const rule = parseRuleWords(words.slice(2), lineNo);
      lines.set(rule, lineNo);
      rules.push(rule);
      return;
    }
    if (head === '-X' || head === '--delete-chain') {
      const chain = words[1];
      if (chain === undefined) throw new RulesetParseError(lineNo, '-X needs a chain');
      current.chains.delete(chain);
      return;
    }
    throw new RulesetParseError(lineNo, `"${head}" lines are not supported`);
  });
  if (current !== undefined) throw new RulesetParseError(text.split('\n').length, `table ${current.name} has no COMMIT`);
  return {
    ruleset: {
      family,
      tables: tables.map((t): Table => ({ name: t.name, chains: [...t.chains].map(([name, rules]): Chain => ({ name, rules })) })),
    },
    lines,
    policies,
  };
}
