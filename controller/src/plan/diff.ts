/**
 * Ruleset → Ruleset differences, chain by chain, in canonical form: what a node holds compared
 * with what kpx wants there (drift), or what a sync must rewrite.
 */
import { ruleText } from '../compile/render.ts';
import type { Chain, Ruleset, TableName } from '../compile/ruleset.ts';
import { normalizeRuleset } from '../sim/normalize.ts';

export interface ChainDifference {
  readonly table: TableName;
  readonly chain: string;
  readonly kind: 'missing' | 'unexpected' | 'changed';
  /** Rules (canonical text) only in the desired chain, and only in the actual one. */
  readonly onlyDesired: readonly string[];
  readonly onlyActual: readonly string[];
}

export interface DiffOptions {
  /** Which chains to compare (default: all); e.g. kpx's own chains in a whole node dump. */
  readonly chains?: (table: TableName, chain: string) => boolean;
}

function byName(ruleset: Ruleset): Map<string, Chain> {
  const out = new Map<string, Chain>();
  for (const t of ruleset.tables) for (const c of t.chains) out.set(`${t.name}\u0000${c.name}`, c);
  return out;
}

/** Differences between a desired and an actual ruleset, after canonical normalisation. */
export function diffRulesets(desired: Ruleset, actual: Ruleset, options: DiffOptions = {}): ChainDifference[] {
  const d = byName(normalizeRuleset(desired));
  const a = byName(normalizeRuleset(actual));
  const keep = options.chains ?? (() => true);
  const out: ChainDifference[] = [];
  const keys = [...new Set([...d.keys(), ...a.keys()])].sort();
  for (const key of keys) {
    const [table, chain] = key.split('\u0000') as [TableName, string];
    if (!keep(table, chain)) continue;
    const want = d.get(key);
    const have = a.get(key);
    const wantRules = want?.rules.map(ruleText) ?? [];
    const haveRules = have?.rules.map(ruleText) ?? [];
    if (want !== undefined && have !== undefined && wantRules.join('\n') === haveRules.join('\n')) continue;
    const haveSet = new Set(haveRules);
    const wantSet = new Set(wantRules);
    out.push({
      table,
      chain,
      kind: want === undefined ? 'unexpected' : have === undefined ? 'missing' : 'changed',
      onlyDesired: wantRules.filter((r) => !haveSet.has(r)),
      onlyActual: haveRules.filter((r) => !wantSet.has(r)),
    });
  }
  return out;
}

export function formatChainDifference(c: ChainDifference): string {
  const head = `${c.table}/${c.chain}: ${c.kind === 'missing' ? 'missing on the node' : c.kind === 'unexpected' ? 'not wanted by kpx' : 'rules differ'}`;
  const lines = [head, ...c.onlyDesired.map((r) => `  - ${r}`), ...c.onlyActual.map((r) => `  + ${r}`)];
  if (c.kind === 'changed' && c.onlyDesired.length === 0 && c.onlyActual.length === 0) lines.push('  (same rules, different order)');
  return lines.join('\n');
}
