/**
 * `kpx run --cleanup`: removes everything kpx owns from a node's tables (reference §4.6):
 * the jump rules in the built-in chains, then kpx's chains. kubelet's KUBE-FIREWALL is left.
 */
import { builtinJumps, FILTER_TOP_CHAINS, NAT_TOP_CHAINS } from '../compile/compile.ts';
import { SERVICE_CHAIN_PREFIXES } from '../compile/hash.ts';
import { ruleArgv } from '../compile/render.ts';
import type { TableName } from '../compile/ruleset.ts';
import type { Iptables } from '../dataplane/iptables.ts';
import { CANARY_CHAIN } from './proxier.ts';

const OWNED: Readonly<Partial<Record<TableName, readonly string[]>>> = {
  nat: [...NAT_TOP_CHAINS, CANARY_CHAIN],
  filter: [...FILTER_TOP_CHAINS, CANARY_CHAIN],
  mangle: [CANARY_CHAIN],
};

function chainsIn(dump: string): string[] {
  return dump
    .split('\n')
    .filter((l) => l.startsWith(':'))
    .map((l) => l.slice(1, l.indexOf(' ')));
}

/** Returns the number of jump rules and chains removed. */
export async function cleanupRules(iptables: Pick<Iptables, 'deleteRule' | 'save' | 'restore'>): Promise<{ rules: number; chains: number }> {
  let rules = 0;
  for (const j of builtinJumps()) {
    while (await iptables.deleteRule(j.table, j.chain, ruleArgv(j.rule))) rules++;
  }
  let chains = 0;
  for (const [table, names] of Object.entries(OWNED) as [TableName, readonly string[]][]) {
    const present = chainsIn(await iptables.save(table));
    const doomed = present.filter((c) => names.includes(c) || (table === 'nat' && SERVICE_CHAIN_PREFIXES.some((p) => c.startsWith(p))));
    if (doomed.length === 0) continue;
    const lines = [`*${table}`, ...doomed.map((c) => `:${c} - [0:0]`), ...doomed.map((c) => `-X ${c}`), 'COMMIT'];
    await iptables.restore(`${lines.join('\n')}\n`, { noflush: true });
    chains += doomed.length;
  }
  return { rules, chains };
}
