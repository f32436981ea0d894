/**
 * Structural invariants of a ruleset (verification gate, invariant 5): every jump target exists,
 * no jump loops, no chain left unreferenced, per-service chains are not empty, and targets are
 * used only in tables where netfilter accepts them.
 */
import { SERVICE_CHAIN_PREFIXES } from '../compile/hash.ts';
import { isBuiltinChain, targetChain, type Ruleset, type Table, type TableName, type Target } from '../compile/ruleset.ts';

export interface StructureViolation {
  readonly table: TableName;
  readonly chain: string;
  readonly message: string;
}

const NAT_ONLY_TARGETS: ReadonlySet<Target['kind']> = new Set(['DNAT', 'SNAT', 'MASQUERADE', 'REDIRECT']);

/** How a table's chains link up, worked out once per table (the simulator follows the same links). */
export interface ChainLinks {
  /** Chain name → position of its last declaration (the one that counts). */
  readonly positions: ReadonlyMap<string, number>;
  /** Where each chain's rules start in `targets`. */
  readonly offsets: Int32Array;
  /** Per rule, chain by chain: position of the chain it jumps or goes to; -1 for none or a missing one. */
  readonly targets: Int32Array;
}

const links = new WeakMap<Table, ChainLinks>();

export function chainLinks(table: Table): ChainLinks {
  let known = links.get(table);
  if (known === undefined) {
    const chains = table.chains;
    const positions = new Map<string, number>();
    const offsets = new Int32Array(chains.length + 1);
    for (let c = 0; c < chains.length; c++) {
      const chain = chains[c];
      positions.set(chain?.name ?? '', c);
      offsets[c + 1] = (offsets[c] ?? 0) + (chain?.rules.length ?? 0);
    }
    const targets = new Int32Array(offsets[chains.length] ?? 0).fill(-1);
    let k = 0;
    for (const chain of chains) {
      for (const rule of chain.rules) {
        const name = targetChain(rule.target);
        if (name !== undefined) targets[k] = positions.get(name) ?? -1;
        k++;
      }
    }
    known = { positions, offsets, targets };
    links.set(table, known);
  }
  return known;
}

function checkTable(table: Table, out: StructureViolation[]): void {
  const chains = table.chains;
  const { positions: ids, offsets, targets } = chainLinks(table);
  const duplicates = new Map<string, number>();
  if (ids.size !== chains.length) {
    for (const c of chains) duplicates.set(c.name, (duplicates.get(c.name) ?? 0) + 1);
    // In the order of first declaration.
    for (const name of ids.keys()) {
      const count = duplicates.get(name) ?? 1;
      if (count > 1) out.push({ table: table.name, chain: name, message: `chain ${name} is declared ${String(count)} times` });
    }
  }
  const idOf = (i: number, name: string): number => (duplicates.size === 0 ? i : (ids.get(name) ?? i));
  const referenced = new Uint8Array(chains.length);
  // Jumps between declared user chains, by position of the declaration that counts.
  const edges: (number[] | undefined)[] = new Array<number[] | undefined>(chains.length);
  const nat = table.name === 'nat';
  chains.forEach((chain, c) => {
    let next: number[] | undefined;
    const first = offsets[c] ?? 0;
    chain.rules.forEach((r, i) => {
      const target = targetChain(r.target);
      if (target !== undefined) {
        const id = targets[first + i] ?? -1;
        if (id >= 0) referenced[id] = 1;
        if (isBuiltinChain(table.name, target)) {
          out.push({ table: table.name, chain: chain.name, message: `rule ${String(i + 1)} of ${chain.name} jumps to the built-in chain ${target}` });
        } else if (id < 0) {
          out.push({ table: table.name, chain: chain.name, message: `rule ${String(i + 1)} of ${chain.name} jumps to ${target}, which does not exist` });
        } else {
          (next ??= []).push(id);
        }
      }
      if (!nat && NAT_ONLY_TARGETS.has(r.target.kind)) {
        out.push({ table: table.name, chain: chain.name, message: `rule ${String(i + 1)} of ${chain.name} uses ${r.target.kind}, which works only in the nat table` });
      }
    });
    edges[c] = next;
  });
  chains.forEach((chain, i) => {
    const name = chain.name;
    if (isBuiltinChain(table.name, name)) return;
    // Per-service chains must be reachable and non-empty (upstream's checkIPTablesRuleJumps);
    // top-level and foreign chains may legitimately be idle (KUBE-MARK-MASQ with no Services).
    const perService = SERVICE_CHAIN_PREFIXES.some((p) => name.startsWith(p));
    if (perService && referenced[idOf(i, name)] === 0) {
      out.push({ table: table.name, chain: name, message: `chain ${name} is never jumped to` });
    }
    if (perService && chain.rules.length === 0) {
      out.push({ table: table.name, chain: name, message: `service chain ${name} has no rules` });
    }
  });
  // Loops: iptables-restore rejects them, so a looping ruleset would fail to apply as a whole.
  const VISITING = 1;
  const DONE = 2;
  const state = new Uint8Array(chains.length);
  const stack: number[] = [];
  const visit = (id: number): void => {
    if (state[id] === DONE) return;
    if (state[id] === VISITING) {
      const name = chains[id]?.name ?? '';
      const cycle = [...stack.slice(stack.indexOf(id)), id].map((n) => chains[n]?.name ?? '').join(' -> ');
      out.push({ table: table.name, chain: name, message: `jump loop ${cycle}` });
      return;
    }
    state[id] = VISITING;
    stack.push(id);
    for (const to of edges[id] ?? []) visit(to);
    stack.pop();
    state[id] = DONE;
  };
  chains.forEach((chain, i) => {
    visit(idOf(i, chain.name));
  });
}

export function checkStructure(ruleset: Ruleset): StructureViolation[] {
  const out: StructureViolation[] = [];
  for (const table of ruleset.tables) checkTable(table, out);
  return out;
}

export function formatStructureViolation(v: StructureViolation): string {
  return `${v.table}/${v.chain}: ${v.message}`;
}
