/**
 * Sync planning: what an `iptables-restore --noflush` payload must contain to take the node from
 * what it holds to what kpx compiled (reference §4.1-4.3, DESIGN.md "plan").
 *
 * - A partial sync looks only at the chains of the services that changed and at the top-level
 *   chains, and writes only the chains whose rules differ from what kpx last applied. Unlike
 *   kube-proxy it does not rewrite KUBE-SERVICES when a change leaves it as it was.
 * - A full sync compares every kpx chain with what the kernel holds (read back, canonical form)
 *   and writes only the chains that differ, so a restart over unchanged rules writes nothing.
 *   When many existing chains differ (an external flush), re-declaring them one by one under
 *   `--noflush` costs quadratic time in the nf_tables backend (reference harness §4: 432 s at 5k
 *   services), so the planner replaces the whole table instead: the node's foreign rules are
 *   carried over verbatim from the dump and kpx's chains written fresh, in one transaction.
 */
import { createHash } from 'node:crypto';
import type { CompiledFamily } from '../compile/compile.ts';
import { SERVICE_CHAIN_PREFIXES } from '../compile/hash.ts';
import { ruleLine, ruleText } from '../compile/render.ts';
import { isBuiltinChain, type Chain, type Ruleset, type TableName } from '../compile/ruleset.ts';
import { normalizeRuleset } from '../sim/normalize.ts';
import { parseRuleset } from '../sim/parse.ts';

/** kpx's tables, in the order a payload writes them (kube-proxy: filter, then nat). */
export const PLAN_TABLES = ['filter', 'nat'] as const satisfies readonly TableName[];
export type PlanTable = (typeof PLAN_TABLES)[number];

/** What kpx believes each of its chains holds: chain → its `-A` lines joined by newlines. */
export type AppliedChains = ReadonlyMap<string, string>;
export type AppliedState = Readonly<Record<PlanTable, AppliedChains>>;

/** The sha256 of one chain, as a 64-bit number (its part of the ruleset hash). */
function chainDigest(table: PlanTable, name: string, text: string): bigint {
  return createHash('sha256').update(`${table}\u0000${name}\u0000${text}`).digest().readBigUInt64BE(0);
}

const MASK64 = (1n << 64n) - 1n;

/**
 * What kpx's chains hold on the node, kept up to date by each applied plan: a partial sync costs
 * only its own chains (no copy of the whole state), and the ruleset hash is kept as the sum of
 * per-chain digests, so it too changes by what changed.
 */
export class AppliedRules {
  readonly #tables: Record<PlanTable, Map<string, string>> = { filter: new Map(), nat: new Map() };
  #sum = 0n;

  chains(table: PlanTable): AppliedChains {
    return this.#tables[table];
  }

  get state(): AppliedState {
    return this.#tables;
  }

  /** Order-independent hash of every chain's name and rules (16 hex digits). */
  get hash(): string {
    return this.#sum.toString(16).padStart(16, '0');
  }

  /** Records what the node holds once `plan` has been applied. */
  apply(plan: SyncPlan): void {
    if (plan.kind === 'full') {
      for (const table of PLAN_TABLES) this.#tables[table] = new Map();
      this.#sum = 0n;
    }
    for (const t of plan.tables) {
      for (const name of t.deleted) this.#delete(t.table, name);
      for (const [name, text] of t.texts) this.#set(t.table, name, text);
    }
  }

  #set(table: PlanTable, name: string, text: string): void {
    this.#delete(table, name);
    this.#tables[table].set(name, text);
    this.#sum = (this.#sum + chainDigest(table, name, text)) & MASK64;
  }

  #delete(table: PlanTable, name: string): void {
    const text = this.#tables[table].get(name);
    if (text === undefined) return;
    this.#tables[table].delete(name);
    this.#sum = (this.#sum - chainDigest(table, name, text)) & MASK64;
  }
}

/**
 * Above this many chains to write (new or changed), a full sync replaces the table instead: the
 * `--noflush` restore of many chains is quadratic (a first sync of 5,000 Services: 762 s vs 7.7 s,
 * docs/benchmarks.md). Rules of other programs are carried over from the dump read just before.
 */
export const TABLE_REPLACE_THRESHOLD = 200;

export interface TablePlan {
  readonly table: PlanTable;
  readonly mode: 'noflush' | 'replace';
  /** Chains (re)written, in declaration order. */
  readonly written: readonly string[];
  readonly deleted: readonly string[];
  /**
   * What these chains hold afterwards (chain → `-A` lines): for a full sync every chain kpx
   * wants, for a partial one the chains it (re)wrote or found unchanged.
   */
  readonly texts: ReadonlyMap<string, string>;
}

export interface SyncPlan {
  readonly kind: 'full' | 'partial';
  /** Restore input for `iptables-restore --noflush`; "" when nothing needs writing. */
  readonly noflushPayload: string;
  /** Per table, restore input for `iptables-restore -T table` (no --noflush): whole-table replacement. */
  readonly replacePayloads: ReadonlyMap<PlanTable, string>;
  readonly tables: readonly TablePlan[];
  /** Rule lines per table in the desired ruleset (kube-proxy's iptables_total metric). */
  readonly ruleCounts: Readonly<Record<PlanTable, number>>;
}

function isServiceChain(chain: string): boolean {
  return SERVICE_CHAIN_PREFIXES.some((p) => chain.startsWith(p));
}

/** Chains kpx owns in a table: the ones it declares and every per-service nat chain. */
export function isOwnedChain(table: TableName, chain: string, declared: ReadonlySet<string>): boolean {
  return declared.has(chain) || (table === 'nat' && isServiceChain(chain));
}

function tableOf(ruleset: Ruleset, name: TableName): readonly Chain[] {
  return ruleset.tables.find((t) => t.name === name)?.chains ?? [];
}

function chainText(chain: Chain): string {
  return chain.rules.map((r) => ruleLine(chain.name, r)).join('\n');
}

function ruleCount(chains: readonly Chain[]): number {
  let n = 0;
  for (const c of chains) n += c.rules.length;
  return n;
}

function counts(compiled: CompiledFamily): Record<PlanTable, number> {
  return { filter: ruleCount(tableOf(compiled.ruleset, 'filter')), nat: ruleCount(tableOf(compiled.ruleset, 'nat')) };
}

/** Writes one table's part of a --noflush payload (reference §4.1 order). */
function noflushSection(table: PlanTable, chains: readonly Chain[], written: ReadonlySet<string>, deleted: readonly string[]): string[] {
  if (written.size === 0 && deleted.length === 0) return [];
  const lines = [`*${table}`];
  for (const c of chains) if (written.has(c.name)) lines.push(`:${c.name} - [0:0]`);
  for (const name of deleted) lines.push(`:${name} - [0:0]`);
  for (const c of chains) if (written.has(c.name)) for (const r of c.rules) lines.push(ruleLine(c.name, r));
  for (const name of deleted) lines.push(`-X ${name}`);
  lines.push('COMMIT');
  return lines;
}

function payload(lines: readonly string[]): string {
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

export interface PartialPlanInput {
  readonly compiled: CompiledFamily;
  /** The chains on the node: what the previous plans applied. */
  readonly previous: AppliedState;
  /**
   * The compile the previous plan was made from: the changed Services' former chains are found in
   * it, and a top-level chain whose rules are the very same objects is not even rendered.
   */
  readonly previousCompiled: CompiledFamily;
  /** `namespace/name` of the Services whose Service or EndpointSlices changed. */
  readonly changedServices: ReadonlySet<string>;
}

/** A compile's chains that are not per-service chains (KUBE-SERVICES, KUBE-NODEPORTS, ...), per table. */
const topLevelChains = new WeakMap<CompiledFamily, ReadonlyMap<PlanTable, ReadonlyMap<string, Chain>>>();

function topLevelOf(compiled: CompiledFamily): ReadonlyMap<PlanTable, ReadonlyMap<string, Chain>> {
  let known = topLevelChains.get(compiled);
  if (known === undefined) {
    const out = new Map<PlanTable, Map<string, Chain>>();
    for (const table of PLAN_TABLES) {
      const chains = new Map<string, Chain>();
      for (const c of tableOf(compiled.ruleset, table)) if (!isServiceChain(c.name)) chains.set(c.name, c);
      out.set(table, chains);
    }
    known = out;
    topLevelChains.set(compiled, known);
  }
  return known;
}

/** The per-service chains of the given Services in one compile, in declaration order. */
function chainsOfServices(compiled: CompiledFamily, services: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const csp of compiled.servicePorts) {
    if (services.has(`${csp.servicePort.namespace}/${csp.servicePort.serviceName}`)) for (const c of csp.natChains) out.push(c);
  }
  return out;
}

function sameRules(a: Chain | undefined, b: Chain): boolean {
  if (a === undefined) return false;
  if (a === b || a.rules === b.rules) return true;
  return a.rules.length === b.rules.length && a.rules.every((r, i) => r === b.rules[i]);
}

/**
 * A partial sync: the top-level chains and the chains of changed services are compared with what
 * kpx last applied; only differing chains are written, and chains no longer wanted are deleted.
 * Its cost follows the change, not the cluster: the other services' chains are not looked at.
 */
export function planPartial(input: PartialPlanInput): SyncPlan {
  const { compiled, previous, previousCompiled, changedServices } = input;
  const wanted = new Set(chainsOfServices(compiled, changedServices));
  const former = chainsOfServices(previousCompiled, changedServices);
  const top = topLevelOf(compiled);
  const formerTop = topLevelOf(previousCompiled);
  // The changed services' chains, found by name in the new compile (a lookup built for them only).
  const serviceChains = new Map<string, Chain>();
  if (wanted.size > 0) for (const c of tableOf(compiled.ruleset, 'nat')) if (wanted.has(c.name)) serviceChains.set(c.name, c);
  const tables: TablePlan[] = [];
  const lines: string[] = [];
  for (const table of PLAN_TABLES) {
    const before = previous[table];
    const topChains = top.get(table) ?? new Map<string, Chain>();
    const formerTopChains = formerTop.get(table) ?? new Map<string, Chain>();
    const candidates: Chain[] = [...topChains.values()];
    if (table === 'nat') for (const name of wanted) {
      const c = serviceChains.get(name);
      if (c !== undefined) candidates.push(c);
    }
    const written: Chain[] = [];
    const texts = new Map<string, string>();
    for (const c of candidates) {
      const had = before.get(c.name);
      // Same rule objects as the previous compile's chain: it renders as it did then.
      const text = had !== undefined && sameRules(formerTopChains.get(c.name), c) ? had : chainText(c);
      texts.set(c.name, text);
      if (had !== text) written.push(c);
    }
    const deleted: string[] = [];
    for (const name of formerTopChains.keys()) if (!topChains.has(name) && before.has(name)) deleted.push(name);
    if (table === 'nat') for (const name of former) if (!wanted.has(name) && before.has(name)) deleted.push(name);
    const names = new Set(written.map((c) => c.name));
    for (const line of noflushSection(table, written, names, deleted)) lines.push(line);
    tables.push({ table, mode: 'noflush', written: written.map((c) => c.name), deleted, texts });
  }
  return { kind: 'partial', noflushPayload: payload(lines), replacePayloads: new Map(), tables, ruleCounts: counts(compiled) };
}

/** The node's current tables as `iptables-save -t filter` / `-t nat` printed them. */
export type KernelDump = Readonly<Record<PlanTable, string>>;

/** The lines of a dump that belong to chains `keep` selects (foreign rules may use matches kpx does not parse). */
function selectChains(text: string, keep: (chain: string) => boolean): string {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith(':')) {
      const name = line.slice(1, line.indexOf(' '));
      if (keep(name)) out.push(line);
    } else if (line.startsWith('-A ')) {
      const end = line.indexOf(' ', 3);
      if (keep(line.slice(3, end < 0 ? undefined : end))) out.push(line);
    } else if (line.startsWith('*') || line === 'COMMIT') {
      out.push(line);
    }
  }
  return out.join('\n') + '\n';
}

/** Chain name → canonical rule texts joined, for comparing kpx's rules with a read-back. */
function canonicalChains(ruleset: Ruleset, table: TableName): Map<string, string> {
  const out = new Map<string, string>();
  for (const c of tableOf(normalizeRuleset(ruleset, { tables: [table] }), table)) out.set(c.name, c.rules.map(ruleText).join('\n'));
  return out;
}

export interface ChainComparison {
  /** Chains missing from the node or holding other rules. */
  readonly differing: readonly string[];
  /** Of those, the ones that exist on the node. */
  readonly existingDiffering: readonly string[];
  /** kpx-owned chains on the node that are not in `chains`. */
  readonly stale: readonly string[];
}

/** Compares chains kpx wants (canonical text per chain) with the node's dump of that table. */
function compareCanonical(family: Ruleset['family'], table: PlanTable, wanted: ReadonlyMap<string, string>, dump: string): ChainComparison {
  const declared = new Set(wanted.keys());
  const kernel = canonicalChains(parseRuleset(selectChains(dump, (name) => isOwnedChain(table, name, declared)), family), table);
  const differing: string[] = [];
  const existingDiffering: string[] = [];
  for (const [name, text] of wanted) {
    const have = kernel.get(name);
    if (have !== text) {
      differing.push(name);
      if (have !== undefined) existingDiffering.push(name);
    }
  }
  return { differing, existingDiffering, stale: [...kernel.keys()].filter((name) => !declared.has(name)) };
}

/** Compares kpx's desired chains of one table with the node's, in canonical form. */
export function compareWithKernel(compiled: CompiledFamily, table: PlanTable, dump: string): ChainComparison {
  const wanted = canonicalChains({ family: compiled.family, tables: [{ name: table, chains: tableOf(compiled.ruleset, table) }] }, table);
  return compareCanonical(compiled.family, table, wanted, dump);
}

/** The node's table with kpx's chains swapped for the desired ones: input for a table replacement. */
function replacementTable(table: PlanTable, dump: string, chains: readonly Chain[], ownedNames: ReadonlySet<string>): string {
  const owned = (name: string): boolean => isOwnedChain(table, name, ownedNames);
  const out: string[] = [`*${table}`];
  const rules: string[] = [];
  let inTable = false;
  for (const line of dump.split('\n')) {
    if (line.startsWith('*')) inTable = line === `*${table}`;
    else if (!inTable) continue;
    else if (line.startsWith(':')) {
      const name = line.slice(1, line.indexOf(' '));
      if (!owned(name)) out.push(isBuiltinChain(table, name) ? line.replace(/\[\d+:\d+\]$/, '[0:0]') : `:${name} - [0:0]`);
    } else if (line.startsWith('-A ')) {
      const end = line.indexOf(' ', 3);
      if (!owned(line.slice(3, end < 0 ? undefined : end))) rules.push(line);
    }
  }
  for (const c of chains) out.push(`:${c.name} - [0:0]`);
  for (const line of rules) out.push(line);
  for (const c of chains) for (const r of c.rules) out.push(ruleLine(c.name, r));
  out.push('COMMIT');
  return `${out.join('\n')}\n`;
}

export interface FullPlanInput {
  readonly compiled: CompiledFamily;
  readonly kernel: KernelDump;
  readonly replaceThreshold?: number;
}

/** A full sync: every kpx chain checked against the node; only differing chains are written. */
export function planFull(input: FullPlanInput): SyncPlan {
  const { compiled, kernel } = input;
  const threshold = input.replaceThreshold ?? TABLE_REPLACE_THRESHOLD;
  const tables: TablePlan[] = [];
  const lines: string[] = [];
  const replacePayloads = new Map<PlanTable, string>();
  for (const table of PLAN_TABLES) {
    const chains = tableOf(compiled.ruleset, table);
    const texts = new Map(chains.map((c) => [c.name, chainText(c)]));
    const cmp = compareWithKernel(compiled, table, kernel[table]);
    if (cmp.differing.length > threshold) {
      replacePayloads.set(table, replacementTable(table, kernel[table], chains, new Set(chains.map((c) => c.name))));
      tables.push({ table, mode: 'replace', written: chains.map((c) => c.name), deleted: cmp.stale, texts });
      continue;
    }
    const written = new Set(cmp.differing);
    for (const line of noflushSection(table, chains, written, cmp.stale)) lines.push(line);
    tables.push({ table, mode: 'noflush', written: cmp.differing, deleted: cmp.stale, texts });
  }
  return { kind: 'full', noflushPayload: payload(lines), replacePayloads, tables, ruleCounts: counts(compiled) };
}

export interface DriftReport {
  readonly table: PlanTable;
  readonly chains: readonly string[];
}

/**
 * Chain name → canonical rule texts joined, for chains given as kpx renders them (chain → its `-A`
 * lines), parsed in one go.
 */
export function canonicalOfTexts(family: Ruleset['family'], table: PlanTable, chains: ReadonlyMap<string, string>): Map<string, string> {
  const text: string[] = [`*${table}`];
  for (const name of chains.keys()) text.push(`:${name} - [0:0]`);
  // Texts may end in "\n": the parser skips the empty lines that leaves.
  for (const rules of chains.values()) if (rules !== '') text.push(rules);
  text.push('COMMIT');
  return canonicalChains(parseRuleset(`${text.join('\n')}\n`, family), table);
}

/** kpx's chains whose read-back differs from what kpx applied (external edits or flushes). */
export function detectDrift(family: Ruleset['family'], applied: AppliedState, kernel: KernelDump): DriftReport[] {
  const out: DriftReport[] = [];
  for (const table of PLAN_TABLES) {
    const cmp = compareCanonical(family, table, canonicalOfTexts(family, table, applied[table]), kernel[table]);
    const chains = [...cmp.differing, ...cmp.stale];
    if (chains.length > 0) out.push({ table, chains });
  }
  return out;
}
