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

function checkTable(table: Table, out: StructureViolation[]): void {
  const declared = new Map<string, number>();
  for (const c of table.chains) declared.set(c.name, (declared.get(c.name) ?? 0) + 1);
  for (const [name, count] of declared) {
    if (count > 1) out.push({ table: table.name, chain: name, message: `chain ${name} is declared ${String(count)} times` });
  }
  const referenced = new Set<string>();
  const edges = new Map<string, string[]>();
  for (const chain of table.chains) {
    const next: string[] = [];
    chain.rules.forEach((r, i) => {
      const to = targetChain(r.target);
      const where = (): string => `rule ${String(i + 1)} of ${chain.name}`;
      if (to !== undefined) {
        referenced.add(to);
        if (!isBuiltinChain(table.name, to)) next.push(to);
        if (isBuiltinChain(table.name, to)) {
          out.push({ table: table.name, chain: chain.name, message: `${where()} jumps to the built-in chain ${to}` });
        } else if (!declared.has(to)) {
          out.push({ table: table.name, chain: chain.name, message: `${where()} jumps to ${to}, which does not exist` });
        }
      }
      if (NAT_ONLY_TARGETS.has(r.target.kind) && table.name !== 'nat') {
        out.push({ table: table.name, chain: chain.name, message: `${where()} uses ${r.target.kind}, which works only in the nat table` });
      }
    });
    edges.set(chain.name, next);
  }
  for (const chain of table.chains) {
    const name = chain.name;
    if (isBuiltinChain(table.name, name)) continue;
    // Per-service chains must be reachable and non-empty (upstream's checkIPTablesRuleJumps);
    // top-level and foreign chains may legitimately be idle (KUBE-MARK-MASQ with no Services).
    const perService = SERVICE_CHAIN_PREFIXES.some((p) => name.startsWith(p));
    if (perService && !referenced.has(name)) {
      out.push({ table: table.name, chain: name, message: `chain ${name} is never jumped to` });
    }
    if (perService && chain.rules.length === 0) {
      out.push({ table: table.name, chain: name, message: `service chain ${name} has no rules` });
    }
  }
  // Loops: iptables-restore rejects them, so a looping ruleset would fail to apply as a whole.
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (name: string): void => {
    const s = state.get(name);
    if (s === 'done') return;
    if (s === 'visiting') {
      const cycle = [...stack.slice(stack.indexOf(name)), name].join(' -> ');
      out.push({ table: table.name, chain: name, message: `jump loop ${cycle}` });
      return;
    }
    state.set(name, 'visiting');
    stack.push(name);
    for (const to of edges.get(name) ?? []) if (declared.has(to)) visit(to);
    stack.pop();
    state.set(name, 'done');
  };
  for (const chain of table.chains) visit(chain.name);
}

export function checkStructure(ruleset: Ruleset): StructureViolation[] {
  const out: StructureViolation[] = [];
  for (const table of ruleset.tables) checkTable(table, out);
  return out;
}

export function formatStructureViolation(v: StructureViolation): string {
  return `${v.table}/${v.chain}: ${v.message}`;
}
