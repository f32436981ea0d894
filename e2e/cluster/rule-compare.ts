/**
 * Conformance plumbing: run `kpx preview` on objects read back from the apiserver with one node's
 * kube-proxy settings, take kube-proxy's own chains out of an `iptables-save` dump, bring both into
 * one canonical form, and list the differences chain by chain (chain names included).
 *
 * The only things left out of the comparison are listed in EXCLUSIONS (and docs/conformance.md),
 * each with its reason. Everything else must be equal.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ruleLine, ruleText } from '../../controller/src/compile/render.ts';
import { isBuiltinChain, type Chain, type Rule, type Ruleset, type TableName } from '../../controller/src/compile/ruleset.ts';
import { diffRulesets, type ChainDifference } from '../../controller/src/plan/diff.ts';
import { normalizeRuleset } from '../../controller/src/sim/normalize.ts';
import { parseRuleset } from '../../controller/src/sim/parse.ts';
import { tryRun } from './sys.ts';

const KPX_BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'controller', 'bin', 'kpx.js');

export type Family = 'IPv4' | 'IPv6';

/** What is deliberately not compared, and why (mirrored in docs/conformance.md). */
export const EXCLUSIONS: readonly { readonly what: string; readonly why: string }[] = [
  {
    what: 'KUBE-PROXY-CANARY in mangle, nat and filter',
    why: "kube-proxy's empty canary chains for flush detection (iptables Monitor); kpx preview prints the rules of one sync, not a monitor",
  },
  { what: 'the mangle and raw tables', why: 'kube-proxy writes nothing there but the mangle canary' },
  {
    what: 'rules in built-in chains that do not jump to a KUBE-* chain, and chains not named KUBE-*',
    why: 'not kube-proxy\'s (there are none in the harness\'s node namespaces: no kubelet, no CNI plugin)',
  },
  {
    what: 'the order of the per-service-port rule groups in nat KUBE-SERVICES/KUBE-NODEPORTS and filter KUBE-SERVICES/KUBE-EXTERNAL-SERVICES/KUBE-NODEPORTS/KUBE-PROXY-FIREWALL',
    why: 'kube-proxy writes service ports in Go map order (different on every sync); kpx sorts them (docs/compatibility.md). The groups match disjoint destinations, so their order has no effect; the order inside a group and every fixed rule (e.g. the nodeports rule that must be last) is compared',
  },
];

/** Chains whose per-service-port groups kube-proxy writes in map order. */
const MAP_ORDER_CHAINS: Readonly<Record<string, readonly string[]>> = {
  nat: ['KUBE-SERVICES', 'KUBE-NODEPORTS'],
  filter: ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL'],
};

/** One node's kube-proxy settings, as kpx preview flags. */
export interface NodeSettings {
  readonly nodeName: string;
  /** The node's addresses (its Node object's InternalIPs). */
  readonly nodeIPs: readonly string[];
  readonly clusterCIDR: string;
  readonly detectLocalMode: string;
  readonly localhostNodePorts: boolean;
  readonly masqueradeAll: boolean;
  readonly nodePortAddresses: readonly string[];
}

/** What kpx cannot see offline, read from kube-proxy's dump of the same family. */
export interface DumpFacts {
  /** kube-proxy could create the nfacct counters (its dump uses `-m nfacct`). */
  readonly nfacct: boolean;
  /** kube-proxy's iptables supports MASQUERADE --random-fully (its dump uses it). */
  readonly randomFully: boolean;
}

export function dumpFacts(dump: string): DumpFacts {
  return { nfacct: /-m nfacct\b/.test(dump), randomFully: /--random-fully\b/.test(dump) };
}

export function previewArgs(file: string, settings: NodeSettings, facts: DumpFacts, family: Family): string[] {
  return [
    'preview',
    '-f',
    file,
    '-o',
    'save',
    '--node-name',
    settings.nodeName,
    ...settings.nodeIPs.flatMap((ip) => ['--node-ip', ip]),
    '--cluster-cidr',
    settings.clusterCIDR,
    '--detect-local-mode',
    settings.detectLocalMode,
    '--localhost-nodeports',
    String(settings.localhostNodePorts),
    ...(settings.masqueradeAll ? ['--masquerade-all'] : []),
    ...(settings.nodePortAddresses.length > 0 ? ['--nodeport-addresses', settings.nodePortAddresses.join(',')] : []),
    '--nfacct',
    String(facts.nfacct),
    '--masquerade-random-fully',
    String(facts.randomFully),
    '--ip-family',
    family === 'IPv4' ? 'ipv4' : 'ipv6',
  ];
}

export interface PreviewResult {
  readonly args: readonly string[];
  readonly exitCode: number;
  readonly save: string;
  readonly stderr: string;
}

/** Runs `kpx preview -o save` (the real CLI, with the project's Node) on a file of objects. */
export async function runPreview(file: string, settings: NodeSettings, facts: DumpFacts, family: Family): Promise<PreviewResult> {
  const args = previewArgs(file, settings, facts, family);
  const result = await tryRun(process.execPath, [KPX_BIN, ...args]);
  if (result.exitCode !== 0 && result.exitCode !== 3) {
    throw new Error(`kpx ${args.join(' ')} exited ${String(result.exitCode)}: ${result.stderr}`);
  }
  return { args, exitCode: result.exitCode, save: result.stdout, stderr: result.stderr };
}

function isKubeChain(name: string): boolean {
  return name.startsWith('KUBE-') && name !== 'KUBE-PROXY-CANARY';
}

/** kube-proxy's part of a node's dump: nat and filter, KUBE-* chains (no canary), built-in chains' jumps to KUBE-* chains. */
export function kubeProxyPart(ruleset: Ruleset): Ruleset {
  return {
    family: ruleset.family,
    tables: ruleset.tables
      .filter((t) => t.name === 'nat' || t.name === 'filter')
      .map((t) => ({
        name: t.name,
        chains: t.chains.flatMap((c): Chain[] => {
          if (isBuiltinChain(t.name, c.name)) {
            return [{ name: c.name, rules: c.rules.filter((r) => r.target.kind === 'jump' && isKubeChain(r.target.chain)) }];
          }
          return isKubeChain(c.name) ? [c] : [];
        }),
      })),
  };
}

/** What kubeProxyPart leaves out of a node's dump that is not an empty canary chain (should be nothing). */
export function excludedButNotCanary(ruleset: Ruleset): string[] {
  const out: string[] = [];
  for (const t of ruleset.tables) {
    for (const c of t.chains) {
      if (c.name === 'KUBE-PROXY-CANARY') {
        if (c.rules.length > 0) out.push(`${t.name}/${c.name} has ${String(c.rules.length)} rules`);
      } else if (t.name !== 'nat' && t.name !== 'filter') {
        if (!isBuiltinChain(t.name, c.name) || c.rules.length > 0) out.push(`${t.name}/${c.name} (${String(c.rules.length)} rules)`);
      } else if (isBuiltinChain(t.name, c.name)) {
        for (const r of c.rules) if (!(r.target.kind === 'jump' && isKubeChain(r.target.chain))) out.push(`${t.name} ${ruleLine(c.name, r)}`);
      } else if (!isKubeChain(c.name)) {
        out.push(`${t.name}/${c.name}`);
      }
    }
  }
  return out;
}

/**
 * The ruleset with the comments of endpoint rules removed (the KUBE-SVC/SVL → KUBE-SEP jumps and
 * every KUBE-SEP rule), as large-cluster mode writes them. Applied to kube-proxy's side only, for
 * the state a partial sync leaves after crossing the 1000-endpoint threshold (docs/conformance.md).
 */
export function withoutEndpointComments(ruleset: Ruleset): Ruleset {
  const strip = (r: Rule): Rule => ({ clauses: r.clauses.filter((c) => c.kind !== 'comment'), target: r.target });
  return {
    family: ruleset.family,
    tables: ruleset.tables.map((t) => ({
      name: t.name,
      chains: t.chains.map((c) => {
        if (t.name !== 'nat') return c;
        if (c.name.startsWith('KUBE-SEP-')) return { name: c.name, rules: c.rules.map(strip) };
        if (c.name.startsWith('KUBE-SVC-') || c.name.startsWith('KUBE-SVL-')) {
          return { name: c.name, rules: c.rules.map((r) => (r.target.kind === 'jump' && r.target.chain.startsWith('KUBE-SEP-') ? strip(r) : r)) };
        }
        return c;
      }),
    })),
  };
}

/** Names of nat chains whose endpoint rules carry comments (none in large-cluster mode after a full sync). */
export function commentedEndpointChains(ruleset: Ruleset): string[] {
  return ruleset.tables
    .filter((t) => t.name === 'nat')
    .flatMap((t) => t.chains)
    .filter((c) => (c.name.startsWith('KUBE-SEP-') && c.rules.some((r) => commentOf(r) !== undefined)) || (/^KUBE-SV[CL]-/.test(c.name) && c.rules.some((r) => r.target.kind === 'jump' && r.target.chain.startsWith('KUBE-SEP-') && commentOf(r) !== undefined)))
    .map((c) => c.name);
}

export function commentOf(rule: Rule): string | undefined {
  for (const c of rule.clauses) if (c.kind === 'comment') return c.text;
  return undefined;
}

/** The service port a rule in a shared chain belongs to: the comment's first word (`ns/name:port`), unless it is a fixed `kubernetes ...` rule. */
function servicePortKey(rule: Rule): string | undefined {
  const comment = commentOf(rule);
  if (comment === undefined || comment.startsWith('kubernetes ')) return undefined;
  return comment.split(' ')[0];
}

/** Sorts the service-port groups between fixed rules by service port name (stable, so each group keeps its inner order). */
function groupOrder(rules: readonly Rule[]): Rule[] {
  const out: Rule[] = [];
  let segment: { key: string; rule: Rule }[] = [];
  const flush = (): void => {
    segment.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    out.push(...segment.map((s) => s.rule));
    segment = [];
  };
  for (const rule of rules) {
    const key = servicePortKey(rule);
    if (key === undefined) {
      flush();
      out.push(rule);
    } else {
      segment.push({ key, rule });
    }
  }
  flush();
  return out;
}

/**
 * Canonical form: normalised (reference real-cluster-harness §4; `normalize: false` keeps every
 * token as parsed, for two texts that both come from iptables-save), chains sorted by name (built-in
 * ones first), and the map-ordered chains in service-port order.
 */
export function canonical(ruleset: Ruleset, options: { normalize?: boolean } = {}): Ruleset {
  const normalized = normalizeRuleset(ruleset);
  const base = options.normalize === false ? sortChains(ruleset, normalized) : normalized;
  return {
    family: base.family,
    tables: base.tables.map((t) => ({
      name: t.name,
      chains: t.chains.map((c) => (MAP_ORDER_CHAINS[t.name]?.includes(c.name) === true ? { name: c.name, rules: groupOrder(c.rules) } : c)),
    })),
  };
}

/** The raw ruleset's tables and chains in the order of the normalised one. */
function sortChains(raw: Ruleset, normalized: Ruleset): Ruleset {
  return {
    family: raw.family,
    tables: normalized.tables.map((nt) => {
      const rt = raw.tables.find((t) => t.name === nt.name);
      return { name: nt.name, chains: nt.chains.map((nc) => rt?.chains.find((c) => c.name === nc.name) ?? nc) };
    }),
  };
}

/** Differences chain by chain on the rules' text as given (no normalisation): for two iptables-save outputs. */
export function compareExactly(kpx: Ruleset, kubeProxy: Ruleset): ChainDifference[] {
  const index = (r: Ruleset): Map<string, readonly string[]> => {
    const out = new Map<string, readonly string[]>();
    for (const t of r.tables) for (const c of t.chains) out.set(`${t.name}\u0000${c.name}`, c.rules.map(ruleText));
    return out;
  };
  const a = index(kpx);
  const b = index(kubeProxy);
  const out: ChainDifference[] = [];
  for (const key of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    const [table, chain] = key.split('\u0000') as [TableName, string];
    const want = a.get(key);
    const have = b.get(key);
    if (want !== undefined && want.join('\n') === have?.join('\n')) continue;
    out.push({
      table,
      chain,
      kind: want === undefined ? 'unexpected' : have === undefined ? 'missing' : 'changed',
      onlyDesired: (want ?? []).filter((r) => !(have ?? []).includes(r)),
      onlyActual: (have ?? []).filter((r) => !(want ?? []).includes(r)),
    });
  }
  return out;
}

/** The namespace a rule is about, from the `ns/name` in its comment (undefined for fixed rules). */
export function namespaceOfRule(rule: Rule, namespaces: readonly string[]): string | undefined {
  const comment = commentOf(rule);
  if (comment === undefined) return undefined;
  for (const ns of namespaces) if (new RegExp(`(^|[ "])${ns}/`).test(comment)) return ns;
  return undefined;
}

/**
 * The part of a ruleset that belongs to one namespace: per-service chains whose rules name it (all
 * their rules), and, in the shared and built-in chains, only the rules that name it.
 * `namespace` undefined selects what belongs to no listed namespace (fixed rules, default/kubernetes).
 */
export function project(ruleset: Ruleset, namespaces: readonly string[], namespace: string | undefined): Ruleset {
  const shared = (table: TableName, chain: string): boolean => isBuiltinChain(table, chain) || MAP_ORDER_CHAINS[table]?.includes(chain) === true || chain === 'KUBE-FORWARD' || chain === 'KUBE-POSTROUTING' || chain === 'KUBE-MARK-MASQ' || chain === 'KUBE-FIREWALL';
  return {
    family: ruleset.family,
    tables: ruleset.tables.map((t) => ({
      name: t.name,
      chains: t.chains.flatMap((c): Chain[] => {
        if (shared(t.name, c.name)) return [{ name: c.name, rules: c.rules.filter((r) => namespaceOfRule(r, namespaces) === namespace) }];
        const owners = new Set(c.rules.map((r) => namespaceOfRule(r, namespaces)).filter((n) => n !== undefined));
        const owner = owners.size === 0 ? undefined : [...owners][0];
        if (owners.size > 1) throw new Error(`chain ${t.name}/${c.name} names several namespaces: ${[...owners].join(', ')}`);
        return owner === namespace ? [c] : [];
      }),
    })),
  };
}

/** Every rule as `table -A CHAIN ...` text, for expectations and failure messages. */
export function onlyRules(ruleset: Ruleset): string[] {
  return ruleset.tables.flatMap((t) => t.chains.flatMap((c) => c.rules.map((r) => `${t.name} ${ruleLine(c.name, r)}`)));
}

/** Differences between kpx (desired) and kube-proxy (actual), both already canonical. */
export function compareRulesets(kpx: Ruleset, kubeProxy: Ruleset): ChainDifference[] {
  return diffRulesets(kpx, kubeProxy);
}

export function formatDifferences(differences: readonly ChainDifference[]): string {
  return differences
    .map((d) => {
      const head = `${d.table}/${d.chain}: ${d.kind === 'missing' ? 'only kpx has this chain' : d.kind === 'unexpected' ? 'only kube-proxy has this chain' : 'rules differ'}`;
      const lines = [head, ...d.onlyDesired.map((r) => `  kpx only:        -A ${d.chain} ${r}`), ...d.onlyActual.map((r) => `  kube-proxy only: -A ${d.chain} ${r}`)];
      if (d.kind === 'changed' && d.onlyDesired.length === 0 && d.onlyActual.length === 0) lines.push('  (same rules, different order)');
      return lines.join('\n');
    })
    .join('\n');
}

export function parseDump(text: string, family: Family): Ruleset {
  return parseRuleset(text, family);
}
