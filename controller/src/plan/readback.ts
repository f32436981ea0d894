/**
 * Drift read-back that costs what changed, not the size of the node's tables.
 *
 * detectDrift parses and normalises every kpx chain of an `iptables-save` dump on each check
 * (seconds at 10,000 Services). ReadbackChecker gives the same answer, but first cuts the dump
 * into per-chain text by plain string scanning and remembers, per chain, the (applied text, dump
 * text) pair it last found equal: a chain whose two texts are the very same strings again is equal
 * without parsing. Only the other chains are parsed, together, and compared in canonical form.
 */
import type { Ruleset } from '../compile/ruleset.ts';
import { normalizeRuleset } from '../sim/normalize.ts';
import { canonicalOfTexts, isOwnedChain, type AppliedChains, type PlanTable } from './plan.ts';

/** Both lists are in the order detectDrift gives: normalizeRuleset's (built-ins, then by name). */
export interface ReadbackResult {
  /** kpx chains (keys of `applied`) missing from the dump or holding other rules. */
  readonly differing: readonly string[];
  /** kpx-owned chains in the dump (isOwnedChain) that are not in `applied`. */
  readonly stale: readonly string[];
}

/** A chain's applied text and dump text, last found equal in canonical form. */
interface EqualPair {
  readonly applied: string;
  readonly dumped: string;
}

/**
 * The `-A` lines of each chain `keep` selects in one table of a dump, each line ending in "\n"
 * (a chain declared with no rules: ""). Only chains declared by a `:NAME` line are present, as
 * when the parser reads the dump; other lines are never looked at beyond their first words.
 */
function chainsOfDump(dump: string, table: PlanTable, keep: (chain: string) => boolean): Map<string, string> {
  const lines = new Map<string, string[]>();
  let inTable = false;
  for (const line of dump.split('\n')) {
    if (line.startsWith('*')) inTable = line === `*${table}`;
    else if (!inTable) continue;
    else if (line.startsWith(':')) {
      const end = line.indexOf(' ');
      const name = line.slice(1, end < 0 ? undefined : end);
      // A chain line creates the chain, or flushes it (restore semantics, as in parse.ts).
      if (keep(name)) lines.set(name, []);
    } else if (line.startsWith('-A ')) {
      const end = line.indexOf(' ', 3);
      lines.get(line.slice(3, end < 0 ? undefined : end))?.push(line);
    }
  }
  const out = new Map<string, string>();
  // join() over two or more items builds a new string: a lone line kept as is would be a view of
  // the whole dump, and remembering it would keep every dump it came from alive.
  for (const [name, rules] of lines) out.set(name, rules.length === 0 ? '' : [...rules, ''].join('\n'));
  return out;
}

/** Chain names in the order normalizeRuleset lists chains (detectDrift reports them so). */
function inChainOrder(family: Ruleset['family'], table: PlanTable, names: readonly string[]): string[] {
  const ruleset: Ruleset = { family, tables: [{ name: table, chains: names.map((name) => ({ name, rules: [] })) }] };
  return normalizeRuleset(ruleset).tables.flatMap((t) => t.chains.map((c) => c.name));
}

/**
 * Compares what kpx applied with a node's dump, remembering the chains found equal so that the
 * next check parses only the chains whose applied or dumped text changed.
 */
export class ReadbackChecker {
  readonly #family: Ruleset['family'];
  /** Per table, chain → the pair last found equal; only chains of the last `applied`. */
  readonly #equal = new Map<PlanTable, ReadonlyMap<string, EqualPair>>();
  #parsedChains = 0;

  constructor(family: 'IPv4' | 'IPv6') {
    this.#family = family;
  }

  /** How many chains the last compare parsed (the others were remembered equal or missing). */
  get parsedChains(): number {
    return this.#parsedChains;
  }

  /** The answer of detectDrift for one table (differing, then stale, each in its order), incrementally. */
  compare(table: PlanTable, applied: AppliedChains, dump: string): ReadbackResult {
    const declared = new Set(applied.keys());
    const dumped = chainsOfDump(dump, table, (name) => isOwnedChain(table, name, declared));
    const known = this.#equal.get(table) ?? new Map<string, EqualPair>();
    const equal = new Map<string, EqualPair>();
    const differing: string[] = [];
    const unknown = new Map<string, EqualPair>();
    for (const [name, text] of applied) {
      const have = dumped.get(name);
      if (have === undefined) {
        differing.push(name);
        continue;
      }
      const pair = known.get(name);
      if (pair?.applied === text && pair.dumped === have) equal.set(name, pair);
      else unknown.set(name, { applied: text, dumped: have });
    }
    if (unknown.size > 0) {
      const want = canonicalOfTexts(this.#family, table, new Map([...unknown].map(([name, p]) => [name, p.applied])));
      const have = canonicalOfTexts(this.#family, table, new Map([...unknown].map(([name, p]) => [name, p.dumped])));
      for (const [name, pair] of unknown) {
        if (want.get(name) === have.get(name)) equal.set(name, pair);
        else differing.push(name);
      }
    }
    this.#equal.set(table, equal);
    this.#parsedChains = unknown.size;
    const stale = [...dumped.keys()].filter((name) => !declared.has(name));
    return { differing: inChainOrder(this.#family, table, differing), stale: inChainOrder(this.#family, table, stale) };
  }
}
