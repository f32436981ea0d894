/**
 * The canonical order upstream's proxier tests compare restore payloads in (`sortIPTablesRules`,
 * reference §7.2), so kpx's output can be checked against kube-proxy's expected text, whose
 * per-service order is Go-map random.
 */

interface ParsedTable {
  name: string;
  chains: string[];
  rules: Map<string, string[]>;
  deleted: string[];
}

function chainRank(name: string): [number, string] {
  if (name === 'KUBE-NODEPORTS') return [0, ''];
  if (name === 'KUBE-SERVICES') return [1, ''];
  if (name.startsWith('KUBE-')) return [2, name];
  return [3, name];
}

function compareChains(a: string, b: string): number {
  const [ra, na] = chainRank(a);
  const [rb, nb] = chainRank(b);
  return ra !== rb ? ra - rb : na < nb ? -1 : na > nb ? 1 : 0;
}

/** The service name a rule's comment starts with (up to the first space or colon). */
function serviceOfRule(line: string): string {
  const m = /--comment "?([^" :]*)/.exec(line);
  return m?.[1] ?? '';
}

export function sortLikeUpstreamTests(text: string): string {
  const tables: ParsedTable[] = [];
  let current: ParsedTable | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      current = { name: line.slice(1), chains: [], rules: new Map(), deleted: [] };
      tables.push(current);
    } else if (current === undefined) {
      throw new Error(`Line outside a table: ${line}`);
    } else if (line.startsWith(':')) {
      current.chains.push(line.slice(1).split(' ')[0] ?? '');
    } else if (line.startsWith('-A ')) {
      const chain = line.split(' ')[1] ?? '';
      const list = current.rules.get(chain) ?? [];
      list.push(line);
      current.rules.set(chain, list);
    } else if (line.startsWith('-X ')) {
      current.deleted.push(line.slice(3));
    }
  }
  tables.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const t of tables) {
    out.push(`*${t.name}`);
    const chains = [...t.chains].sort(compareChains);
    for (const c of chains) out.push(`:${c} - [0:0]`);
    for (const c of chains) {
      let rules = t.rules.get(c) ?? [];
      if (c === 'KUBE-NODEPORTS' || c === 'KUBE-SERVICES') {
        const last = rules.filter((r) => r.includes('must be the last rule'));
        const rest = rules.filter((r) => !r.includes('must be the last rule'));
        rest.sort((a, b) => {
          const sa = serviceOfRule(a);
          const sb = serviceOfRule(b);
          return sa < sb ? -1 : sa > sb ? 1 : 0;
        });
        rules = [...rest, ...last];
      }
      out.push(...rules);
    }
    for (const d of t.deleted) out.push(`-X ${d}`);
    out.push('COMMIT');
  }
  return out.join('\n') + '\n';
}
