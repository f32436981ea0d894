/**
 * Ruleset → iptables-restore text, token for token as kube-proxy writes it (reference §3, §4.1).
 */
import type { CompiledFamily } from './compile.ts';
import {
  isBuiltinChain,
  type Chain,
  type Clause,
  type Rule,
  type Ruleset,
  type Table,
  type Target,
} from './ruleset.ts';

/** Quotes a word for iptables-restore when it is not a single token. */
export function quoteWord(word: string): string {
  if (word !== '' && !/[\s"'\\]/.test(word)) return word;
  return `"${word.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

const MARK_OPTION = { or: '--or-mark', xor: '--xor-mark', set: '--set-mark', 'set-xmark': '--set-xmark', and: '--and-mark' } as const;

const not = (negate: boolean): string[] => (negate ? ['!'] : []);

function portRange(from: number, to: number): string {
  return from === to ? String(from) : `${String(from)}:${String(to)}`;
}

export function clauseWords(c: Clause): string[] {
  switch (c.kind) {
    case 'comment':
      return ['-m', 'comment', '--comment', quoteWord(c.text)];
    case 'protocol':
      return [...(c.module ? ['-m', c.protocol] : []), ...not(c.negate), '-p', c.protocol];
    case 'source':
      return [...not(c.negate), '-s', c.cidr];
    case 'destination':
      return [...not(c.negate), '-d', c.cidr];
    case 'sourcePort':
      return [...not(c.negate), '--sport', portRange(c.from, c.to)];
    case 'destinationPort':
      return [...not(c.negate), '--dport', portRange(c.from, c.to)];
    case 'inInterface':
      return [...not(c.negate), '-i', c.name];
    case 'outInterface':
      return [...not(c.negate), '-o', c.name];
    case 'addrtype':
      return ['-m', 'addrtype', ...not(c.negate), c.direction === 'src' ? '--src-type' : '--dst-type', c.type];
    case 'statisticRandom':
      return ['-m', 'statistic', '--mode', 'random', '--probability', c.probability];
    case 'statisticNth':
      return ['-m', 'statistic', '--mode', 'nth', '--every', String(c.every), '--packet', String(c.packet)];
    case 'recent':
      return [
        '-m',
        'recent',
        '--name',
        c.name,
        `--${c.action}`,
        ...(c.seconds === undefined ? [] : ['--seconds', String(c.seconds)]),
        ...(c.reap ? ['--reap'] : []),
        ...(c.mask === undefined ? [] : ['--mask', c.mask]),
        ...(c.side === undefined ? [] : [`--${c.side}`]),
      ];
    case 'mark':
      return ['-m', 'mark', ...not(c.negate), '--mark', c.mask === undefined ? c.value : `${c.value}/${c.mask}`];
    case 'ctstate':
      return c.module === 'conntrack'
        ? ['-m', 'conntrack', ...not(c.negate), '--ctstate', c.states.join(',')]
        : ['-m', 'state', ...not(c.negate), '--state', c.states.join(',')];
    case 'nfacct':
      return ['-m', 'nfacct', '--nfacct-name', c.name];
    case 'multiport':
      return ['-m', 'multiport', ...not(c.negate), c.direction === 'dst' ? '--dports' : c.direction === 'src' ? '--sports' : '--ports', c.ranges.map((r) => portRange(r.from, r.to)).join(',')];
    case 'tcpFlags':
      return [...not(c.negate), '--tcp-flags', c.mask.join(','), c.comp.length === 0 ? 'NONE' : c.comp.join(',')];
    case 'icmpType':
      return [...not(c.negate), c.v6 ? '--icmpv6-type' : '--icmp-type', c.type];
  }
}

export function targetWords(t: Target): string[] {
  switch (t.kind) {
    case 'none':
      return [];
    case 'jump':
      return ['-j', t.chain];
    case 'goto':
      return ['-g', t.chain];
    case 'ACCEPT':
    case 'DROP':
    case 'RETURN':
    case 'NOTRACK':
      return ['-j', t.kind];
    case 'REJECT':
      return ['-j', 'REJECT', ...(t.rejectWith === undefined ? [] : ['--reject-with', t.rejectWith])];
    case 'DNAT':
      return ['-j', 'DNAT', '--to-destination', t.toDestination];
    case 'SNAT':
      return ['-j', 'SNAT', '--to-source', t.toSource, ...(t.randomFully ? ['--random-fully'] : [])];
    case 'MASQUERADE':
      return ['-j', 'MASQUERADE', ...(t.toPorts === undefined ? [] : ['--to-ports', t.toPorts]), ...(t.randomFully ? ['--random-fully'] : [])];
    case 'REDIRECT':
      return ['-j', 'REDIRECT', ...(t.toPorts === undefined ? [] : ['--to-ports', t.toPorts])];
    case 'MARK': {
      const value = t.mask === undefined ? t.value : `${t.value}/${t.mask}`;
      return ['-j', 'MARK', MARK_OPTION[t.op], value];
    }
    case 'LOG':
      return ['-j', 'LOG', ...(t.prefix === undefined ? [] : ['--log-prefix', quoteWord(t.prefix)])];
  }
}

/** The text after `-A CHAIN ` for a rule. */
export function ruleText(r: Rule): string {
  return [...r.clauses.flatMap(clauseWords), ...targetWords(r.target)].join(' ');
}

/** A rule's words as program arguments (no shell, so comments stay one unquoted word). */
export function ruleArgv(r: Rule): string[] {
  return [...r.clauses.flatMap((c) => (c.kind === 'comment' ? ['-m', 'comment', '--comment', c.text] : clauseWords(c))), ...targetWords(r.target)];
}

/** A full `-A CHAIN ...` line. */
export function ruleLine(chain: string, r: Rule): string {
  const text = ruleText(r);
  return text === '' ? `-A ${chain}` : `-A ${chain} ${text}`;
}

function chainLine(table: Table, chain: Chain): string {
  return isBuiltinChain(table.name, chain.name) ? `:${chain.name} ACCEPT [0:0]` : `:${chain.name} - [0:0]`;
}

/** Renders tables in restore format: chain lines first, then rules chain by chain, then COMMIT. */
export function renderRuleset(ruleset: Ruleset): string {
  const lines: string[] = [];
  for (const table of ruleset.tables) {
    lines.push(`*${table.name}`);
    for (const chain of table.chains) lines.push(chainLine(table, chain));
    for (const chain of table.chains) for (const r of chain.rules) lines.push(ruleLine(chain.name, r));
    lines.push('COMMIT');
  }
  return lines.join('\n') + '\n';
}

/** The line number each rule has in renderRuleset's output (for paths that cite lines). */
export function renderedLines(ruleset: Ruleset): Map<Rule, number> {
  const lines = new Map<Rule, number>();
  let n = 0;
  for (const table of ruleset.tables) {
    n += 1 + table.chains.length;
    for (const chain of table.chains) for (const r of chain.rules) lines.set(r, ++n);
    n += 1;
  }
  return lines;
}

/** The payload a full sync feeds `iptables-restore --noflush`: kpx's own chains only. */
export function renderRestore(compiled: CompiledFamily): string {
  return renderRuleset(compiled.ruleset);
}

/**
 * A complete, standalone ruleset: built-in chains (ACCEPT policy) holding kpx's jump rules as they
 * end up after being prepended one by one, plus every kpx chain. Loads into an empty namespace.
 */
export function standaloneRuleset(compiled: CompiledFamily): Ruleset {
  const tables = compiled.ruleset.tables.map((table): Table => {
    const builtins = new Map<string, Rule[]>();
    const extra: string[] = [];
    const own = new Set(table.chains.map((c) => c.name));
    for (const j of compiled.jumps) {
      if (j.table !== table.name) continue;
      const rules = builtins.get(j.chain) ?? [];
      rules.unshift(j.rule); // each jump is inserted at the top (-I), so the last ensured comes first
      builtins.set(j.chain, rules);
      const to = j.rule.target.kind === 'jump' ? j.rule.target.chain : undefined;
      if (to !== undefined && !own.has(to) && !extra.includes(to)) extra.push(to);
    }
    const builtinChains = (table.name === 'nat'
      ? ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING']
      : ['INPUT', 'FORWARD', 'OUTPUT']
    ).map((name) => ({ name, rules: builtins.get(name) ?? [] }));
    return {
      name: table.name,
      chains: [...builtinChains, ...table.chains, ...extra.map((name) => ({ name, rules: [] }))],
    };
  });
  return { family: compiled.ruleset.family, tables };
}

export function renderSave(compiled: CompiledFamily): string {
  return renderRuleset(standaloneRuleset(compiled));
}
