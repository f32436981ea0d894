/**
 * Conformance of kpx's compiler against the real thing: every scenario of scenarios.ts is applied to
 * the real apiserver (one namespace each, one shared cluster), upstream kube-proxy programs both
 * nodes, and for each node and IP family the objects read back from the apiserver
 * (`kubectl get svc,endpointslices,nodes -A -o json`) go through `kpx preview -o save` with that
 * node's kube-proxy settings. Both sides are parsed, kube-proxy's chains are taken from
 * `iptables-save`/`ip6tables-save`, both are normalised, and they must be equal chain by chain,
 * chain names included. Only EXCLUSIONS (rule-compare.ts, docs/conformance.md) are left out.
 *
 *   npx vitest run --config e2e/cluster/vitest.config.ts e2e/cluster/conformance.test.ts   (root)
 *
 * node-1 runs the harness's default KubeProxyConfiguration; node-2 adds masqueradeAll and
 * nodePortAddresses, so both code paths are compared.
 */
import { writeFile } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChainDifference } from '../../controller/src/plan/diff.ts';
import type { Ruleset } from '../../controller/src/compile/ruleset.ts';
import { startCluster, type Cluster } from './cluster.ts';
import { kubeProxyConfig, startKubeProxy, stopKubeProxy, waitForKubeProxySync, type KubeProxy } from './kube-proxy.ts';
import { addNetns } from './network.ts';
import {
  canonical,
  commentedEndpointChains,
  commentOf,
  compareExactly,
  compareRulesets,
  dumpFacts,
  excludedButNotCanary,
  EXCLUSIONS,
  formatDifferences,
  kubeProxyPart,
  onlyRules,
  parseDump,
  project,
  runPreview,
  type DumpFacts,
  type Family,
  type NodeSettings,
  type PreviewResult,
  withoutEndpointComments,
} from './rule-compare.ts';
import { namespaceOf, NODE_1, NODE_2, SCENARIOS, ScenarioContext, type EndpointExpectation, type Scenario } from './scenarios.ts';
import { requireRoot, sleep, waitFor } from './sys.ts';

const FAMILIES: readonly Family[] = ['IPv4', 'IPv6'];
const NAMESPACES = SCENARIOS.map(namespaceOf);
/** The large-cluster phase's namespace (added after the matrix, so not a scenario). */
const LARGE_NAMESPACE = 'cf-large';
/** How long a difference may persist before it counts (kube-proxy catching up with the last change). */
const CONVERGE_MS = 15_000;

/** Extra kube-proxy settings per node (deep-merged over the harness's configuration). */
const NODE_CONFIG: Readonly<Record<string, Readonly<Record<string, unknown>>>> = {
  [NODE_1]: {},
  [NODE_2]: { iptables: { masqueradeAll: true }, nodePortAddresses: ['10.200.0.0/24'] },
};

function log(message: string): void {
  console.log(`[conformance] ${message}`);
}

interface Comparison {
  readonly node: string;
  readonly family: Family;
  readonly settings: NodeSettings;
  readonly facts: DumpFacts;
  readonly preview: PreviewResult;
  /** kube-proxy's `iptables-save` / `ip6tables-save` output. */
  readonly dump: string;
  readonly kpx: Ruleset;
  readonly kubeProxy: Ruleset;
  readonly differences: readonly ChainDifference[];
}

interface Snapshot {
  readonly objectsFile: string;
  readonly comparisons: readonly Comparison[];
}

interface EndpointView {
  readonly ready: number;
  readonly terminating: number;
  readonly notReady: number;
  readonly hinted: { zone: number; node: number };
  readonly total: number;
}

interface SliceList {
  readonly items: readonly {
    readonly endpoints?: readonly {
      readonly conditions?: { readonly ready?: boolean; readonly serving?: boolean; readonly terminating?: boolean };
      readonly hints?: { readonly forZones?: readonly unknown[]; readonly forNodes?: readonly unknown[] };
    }[];
  }[];
}

interface ItemList {
  readonly items: readonly { readonly kind?: string; readonly metadata: { readonly namespace?: string; readonly name: string; readonly resourceVersion?: string } }[];
}

interface NodeList {
  readonly items: readonly { readonly kind?: string; readonly metadata: { readonly name: string }; readonly status?: { readonly addresses?: readonly { type: string; address: string }[] } }[];
}

async function endpointView(cluster: Cluster, namespace: string, service: string): Promise<EndpointView> {
  const list = await cluster.api.get<SliceList>(`/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices?labelSelector=${encodeURIComponent(`kubernetes.io/service-name=${service}`)}`);
  const view = { ready: 0, terminating: 0, notReady: 0, hinted: { zone: 0, node: 0 }, total: 0 };
  for (const slice of list.items) {
    for (const ep of slice.endpoints ?? []) {
      view.total++;
      const c = ep.conditions ?? {};
      // Unset ready means ready (the EndpointSlice API's "unknown"), as kube-proxy reads it.
      if (c.ready !== false) view.ready++;
      if (c.terminating === true) view.terminating++;
      else if (c.ready === false && c.serving !== true) view.notReady++;
      if ((ep.hints?.forZones?.length ?? 0) > 0) view.hinted.zone++;
      if ((ep.hints?.forNodes?.length ?? 0) > 0) view.hinted.node++;
    }
  }
  return view;
}

function endpointsMatch(view: EndpointView, want: EndpointExpectation): boolean {
  if (view.ready !== want.ready || view.terminating !== (want.terminating ?? 0) || view.notReady !== (want.notReady ?? 0)) return false;
  if (want.hints !== undefined && view.hinted[want.hints] !== view.total) return false;
  return true;
}

/** Every Service, EndpointSlice and Node with its resourceVersion: changes whenever any of them changes. */
async function fingerprint(cluster: Cluster): Promise<string> {
  const lists = await Promise.all([
    cluster.api.get<ItemList>('/api/v1/services'),
    cluster.api.get<ItemList>('/apis/discovery.k8s.io/v1/endpointslices'),
    cluster.api.get<ItemList>('/api/v1/nodes'),
  ]);
  return lists
    .flatMap((l, i) => l.items.map((o) => `${String(i)}/${o.metadata.namespace ?? ''}/${o.metadata.name}@${o.metadata.resourceVersion ?? ''}`))
    .sort()
    .join('\n');
}

/** Waits until nothing changed for `quietMs`; returns a time before the last change (a sync after it saw it). */
async function settle(cluster: Cluster, quietMs = 1500, timeoutMs = 60_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let previous = await fingerprint(cluster);
  let bound = Date.now();
  let stableSince = Date.now();
  for (;;) {
    await sleep(250);
    const pollStart = Date.now();
    const current = await fingerprint(cluster);
    if (current !== previous) {
      previous = current;
      bound = pollStart - 250;
      stableSince = Date.now();
    } else if (Date.now() - stableSince >= quietMs) {
      return bound;
    }
    if (Date.now() > deadline) throw new Error(`the apiserver objects kept changing for ${String(timeoutMs)} ms`);
  }
}

function nodeSettings(cluster: Cluster, node: string, objects: string): NodeSettings {
  const config = kubeProxyConfig(cluster, node, NODE_CONFIG[node] ?? {}) as {
    hostnameOverride: string;
    clusterCIDR: string;
    detectLocalMode: string;
    iptables: { localhostNodePorts: boolean; masqueradeAll: boolean };
    nodePortAddresses?: string[];
  };
  const nodes = (JSON.parse(objects) as NodeList).items.filter((o) => o.kind === 'Node');
  const object = nodes.find((n) => n.metadata.name === config.hostnameOverride);
  const ips = object?.status?.addresses?.filter((a) => a.type === 'InternalIP').map((a) => a.address) ?? [];
  if (ips.length === 0) throw new Error(`Node ${node} has no InternalIP in the read-back objects`);
  return {
    nodeName: config.hostnameOverride,
    nodeIPs: ips,
    clusterCIDR: config.clusterCIDR,
    detectLocalMode: config.detectLocalMode,
    localhostNodePorts: config.iptables.localhostNodePorts,
    masqueradeAll: config.iptables.masqueradeAll,
    nodePortAddresses: config.nodePortAddresses ?? [],
  };
}

async function dump(cluster: Cluster, netns: string, family: Family): Promise<string> {
  const result = await cluster.exec(netns, family === 'IPv4' ? 'iptables-save' : 'ip6tables-save', []);
  if (result.exitCode !== 0) throw new Error(`${family} save in ${netns} failed: ${result.stderr}`);
  return result.stdout;
}

/** kpx against kube-proxy's rules with the endpoint-rule comments a partial sync left behind removed. */
function modStaleComments(c: Comparison): ChainDifference[] {
  return compareRulesets(c.kpx, canonical(withoutEndpointComments(c.kubeProxy)));
}

/** One consistent snapshot: objects, then dumps, then objects again (unchanged, or undefined). */
async function takeSnapshot(cluster: Cluster, proxies: readonly KubeProxy[], label: string): Promise<Snapshot | undefined> {
  const dir = join(cluster.dir, 'conformance');
  mkdirSync(dir, { recursive: true });
  const before = await fingerprint(cluster);
  const objects = await cluster.kubectl(['get', 'svc,endpointslices,nodes', '-A', '-o', 'json']);
  const dumps = await Promise.all(proxies.flatMap((p) => FAMILIES.map(async (family) => ({ node: p.node, netns: p.netns, family, text: await dump(cluster, p.netns, family) }))));
  if ((await fingerprint(cluster)) !== before) return undefined;
  const objectsFile = join(dir, `${label}-objects.json`);
  await writeFile(objectsFile, objects);
  const comparisons = await Promise.all(
    dumps.map(async (d): Promise<Comparison> => {
      await writeFile(join(dir, `${label}-${d.node}-${d.family}-kube-proxy.txt`), d.text);
      const settings = nodeSettings(cluster, d.node, objects);
      const facts = dumpFacts(d.text);
      const preview = await runPreview(objectsFile, settings, facts, d.family);
      await writeFile(join(dir, `${label}-${d.node}-${d.family}-kpx.txt`), preview.save);
      const kpx = canonical(parseDump(preview.save, d.family));
      const kubeProxy = canonical(kubeProxyPart(parseDump(d.text, d.family)));
      return { node: d.node, family: d.family, settings, facts, preview, dump: d.text, kpx, kubeProxy, differences: compareRulesets(kpx, kubeProxy) };
    }),
  );
  return { objectsFile, comparisons };
}

/** Where kpx's rules are loaded for the kernel round trip (recorded in the state file, so teardown removes it). */
const SCRATCH_NETNS = 'kpxc-cf-kernel';

/**
 * Loads kpx's `-o save` output into an otherwise empty namespace and reads it back with
 * iptables-save: then both sides are the kernel's own text and are compared without normalisation.
 */
async function kernelRoundTrip(cluster: Cluster, comparison: Comparison): Promise<ChainDifference[]> {
  const restore = comparison.family === 'IPv4' ? 'iptables-restore' : 'ip6tables-restore';
  const loaded = await cluster.exec(SCRATCH_NETNS, restore, [], comparison.preview.save);
  if (loaded.exitCode !== 0) throw new Error(`${restore} of kpx's rules for ${comparison.node} failed: ${loaded.stderr}`);
  const back = await dump(cluster, SCRATCH_NETNS, comparison.family);
  // kpx's side unfiltered: everything in the scratch namespace is kpx's.
  const kpx = canonical(parseDump(back, comparison.family), { normalize: false });
  const kubeProxy = canonical(kubeProxyPart(parseDump(comparison.dump, comparison.family)), { normalize: false });
  return compareExactly(kpx, kubeProxy);
}

interface Measurement {
  readonly snapshot: Snapshot;
  /** `node family` → formatted differences of the kernel round trip ('' when equal) or the error; empty when not run. */
  readonly roundTrips: ReadonlyMap<string, string>;
}

/**
 * Waits for the apiserver objects to settle and both kube-proxies to sync after the last change,
 * then takes consistent snapshots until kpx and kube-proxy agree or CONVERGE_MS passed (kube-proxy
 * may still be catching up), and finally loads kpx's rules through the kernel.
 */
async function measure(
  cluster: Cluster,
  proxies: readonly KubeProxy[],
  label: string,
  timed: <T>(what: string, f: () => Promise<T>) => Promise<T>,
  options: { readonly converged?: (c: Comparison) => boolean; readonly roundTrip?: boolean } = {},
): Promise<Measurement> {
  const converged = options.converged ?? ((c: Comparison): boolean => c.differences.length === 0);
  const bound = await timed(`${label}: apiserver objects settled`, () => settle(cluster));
  await timed(`${label}: kube-proxy synced after the last change`, () => Promise.all(proxies.map((p) => waitForKubeProxySync(cluster, p, { since: new Date(bound) }))));
  const snapshot = await timed(`${label}: snapshot + kpx preview + comparison`, async () => {
    const deadline = Date.now() + CONVERGE_MS;
    let last: Snapshot | undefined;
    for (let attempt = 1; ; attempt++) {
      last = (await takeSnapshot(cluster, proxies, label)) ?? last;
      const differing = last?.comparisons.filter((x) => !converged(x)).length;
      if (last !== undefined && (differing === 0 || Date.now() > deadline)) {
        log(`${label}: comparison after ${String(attempt)} attempt(s): ${String(differing)} of ${String(last.comparisons.length)} node/family rulesets differ`);
        return last;
      }
      if (Date.now() > deadline + 30_000) throw new Error(`${label}: no consistent snapshot (the objects kept changing)`);
      await sleep(1000);
    }
  });
  if (options.roundTrip === false) return { snapshot, roundTrips: new Map() };
  const roundTrips = await timed(`${label}: kernel round trip of kpx's rules (${String(snapshot.comparisons.length)} loads into a scratch netns)`, async () => {
    const out = new Map<string, string>();
    for (const x of snapshot.comparisons) {
      try {
        out.set(`${x.node} ${x.family}`, formatDifferences(await kernelRoundTrip(cluster, x)));
      } catch (error) {
        out.set(`${x.node} ${x.family}`, error instanceof Error ? error.message : String(error));
      }
    }
    return out;
  });
  return { snapshot, roundTrips };
}

/** The scratch namespace for the kernel round trip, with the nfacct objects kpx's rules name. */
async function createScratchNetns(cluster: Cluster): Promise<void> {
  await addNetns(cluster.state, () => {
    cluster.persist();
  }, SCRATCH_NETNS);
  for (const name of ['ct_state_invalid_dropped_pkts', 'localhost_nps_accepted_pkts']) {
    const made = await cluster.exec(SCRATCH_NETNS, 'nfacct', ['add', name]);
    if (made.exitCode !== 0) throw new Error(`nfacct add ${name} failed (the nfacct tool is needed: apt-get install nfacct): ${made.stderr}`);
  }
}

function mutateChain(r: Ruleset, table: string, chain: string, f: (rules: Ruleset['tables'][number]['chains'][number]['rules']) => Ruleset['tables'][number]['chains'][number]['rules']): Ruleset {
  return { family: r.family, tables: r.tables.map((t) => (t.name !== table ? t : { name: t.name, chains: t.chains.map((ch) => (ch.name === chain ? { name: ch.name, rules: f(ch.rules) } : ch)) })) };
}

function renameChain(r: Ruleset, table: string, from: string, to: string): Ruleset {
  return { family: r.family, tables: r.tables.map((t) => (t.name !== table ? t : { name: t.name, chains: t.chains.map((ch) => (ch.name === from ? { name: to, rules: ch.rules } : ch)) })) };
}

function scenarioDifferences(c: Comparison, namespace: string | undefined): ChainDifference[] {
  return compareRulesets(project(c.kpx, NAMESPACES, namespace), project(c.kubeProxy, NAMESPACES, namespace));
}

describe('conformance: kpx preview against upstream kube-proxy on a real cluster', () => {
  let cluster: Cluster | undefined;
  let snapshot: Snapshot | undefined;
  const setupErrors = new Map<string, string>();
  let roundTrips: ReadonlyMap<string, string> = new Map();
  let proxies: KubeProxy[] = [];
  const endpointErrors = new Map<string, string>();
  const timings: string[] = [];

  const c = (): Cluster => {
    if (cluster === undefined) throw new Error('cluster did not start');
    return cluster;
  };
  const snap = (): Snapshot => {
    if (snapshot === undefined) throw new Error('no snapshot was taken');
    return snapshot;
  };
  const timed = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    const t = Date.now();
    const result = await f();
    timings.push(`${what}: ${String(Date.now() - t)} ms`);
    log(`${what} in ${String(Date.now() - t)} ms`);
    return result;
  };

  beforeAll(async () => {
    requireRoot();
    const t0 = Date.now();
    log(`left out of the comparison:\n  ${EXCLUSIONS.map((e) => `${e.what}: ${e.why}`).join('\n  ')}`);
    cluster = await timed('cluster start', () => startCluster({ log }));
    proxies = await timed('kube-proxy start (2 nodes)', () =>
      Promise.all([NODE_1, NODE_2].map((node) => startKubeProxy(c(), node, { config: NODE_CONFIG[node] ?? {} }))),
    );
    await timed(`namespaces + scenario setup (${String(SCENARIOS.length)} scenarios)`, async () => {
      await Promise.all(NAMESPACES.map((name) => c().api.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } })));
      await Promise.all(
        SCENARIOS.map(async (s) => {
          try {
            await s.setup(new ScenarioContext(c(), namespaceOf(s)));
          } catch (error) {
            setupErrors.set(s.name, error instanceof Error ? error.message : String(error));
          }
        }),
      );
    });
    for (const [name, error] of setupErrors) log(`setup of ${name} failed: ${error}`);
    await timed('EndpointSlices as each scenario expects', () =>
      Promise.all(
        SCENARIOS.filter((s) => !setupErrors.has(s.name)).map(async (s) => {
          for (const want of s.endpoints) {
            let last: EndpointView | undefined;
            try {
              await waitFor(`${namespaceOf(s)}/${want.service} endpoints`, async () => {
                last = await endpointView(c(), namespaceOf(s), want.service);
                return endpointsMatch(last, want) ? true : undefined;
              }, { timeoutMs: 60_000, intervalMs: 300 });
            } catch {
              endpointErrors.set(s.name, `${want.service}: wanted ${JSON.stringify(want)}, EndpointSlices show ${JSON.stringify(last)}`);
            }
          }
        }),
      ),
    );
    await createScratchNetns(c());
    const measured = await measure(c(), proxies, 'matrix', timed);
    snapshot = measured.snapshot;
    roundTrips = measured.roundTrips;
    log(`setup total ${String(Date.now() - t0)} ms`);
  });

  afterAll(async () => {
    const t = Date.now();
    await cluster?.stop();
    log(`cluster stopped in ${String(Date.now() - t)} ms`);
    log(`timings:\n  ${timings.join('\n  ')}`);
  });

  describe.each(FAMILIES)('%s', (family) => {
    it.each([NODE_1, NODE_2])('the whole ruleset of %s equals kpx preview', (node) => {
      const comparison = snap().comparisons.find((x) => x.node === node && x.family === family);
      if (comparison === undefined) throw new Error(`no comparison for ${node} ${family}`);
      log(`${node} ${family}: kpx ${comparison.preview.args.slice(4).join(' ')}`);
      log(`${node} ${family}: ${String(onlyRules(comparison.kubeProxy).length)} kube-proxy rules, ${String(onlyRules(comparison.kpx).length)} kpx rules, ${String(comparison.differences.length)} differing chains`);
      expect(formatDifferences(comparison.differences), `kpx (-f ${snap().objectsFile}) vs kube-proxy on ${node}`).toBe('');
      expect(comparison.preview.exitCode, `kpx verification: ${comparison.preview.stderr}`).toBe(0);
    });

    it.each([NODE_1, NODE_2])('kernel round trip, no normalisation: kpx loaded into a scratch netns saves back exactly as kube-proxy on %s', (node) => {
      expect(roundTrips.get(`${node} ${family}`), 'differences between the two iptables-save texts').toBe('');
    });
  });

  it('the comparison is not vacuous: it catches each kind of change, and forgives only the order of service-port groups', () => {
    const x = snap().comparisons.find((y) => y.node === NODE_1 && y.family === 'IPv4');
    if (x === undefined) throw new Error('no node-1 IPv4 comparison');
    // Mutations are made on the canonical form and canonicalised again, as a dump would be.
    const caught = (r: Ruleset): number => compareRulesets(canonical(r), x.kubeProxy).length;
    const firstChain = (prefix: string, min = 1): string => {
      const name = x.kpx.tables.flatMap((t) => t.chains).find((ch) => ch.name.startsWith(prefix) && ch.rules.length >= min)?.name;
      if (name === undefined) throw new Error(`no ${prefix} chain with ${String(min)} rules`);
      return name;
    };
    const sep = firstChain('KUBE-SEP-');
    const svc = firstChain('KUBE-SVC-', 3);
    expect(caught(x.kpx)).toBe(0);
    expect(caught(mutateChain(x.kpx, 'nat', sep, (rules) => rules.slice(0, -1))), 'a missing rule').toBeGreaterThan(0);
    expect(caught(renameChain(x.kpx, 'nat', svc, `${svc}X`)), 'a renamed chain').toBeGreaterThan(0);
    expect(caught(mutateChain(x.kpx, 'nat', svc, ([a, b, ...rest]) => [b, a, ...rest].filter((r) => r !== undefined))), 'two rules swapped inside a chain').toBeGreaterThan(0);
    const probability = mutateChain(x.kpx, 'nat', svc, (rules) =>
      rules.map((r) => ({ ...r, clauses: r.clauses.map((cl) => (cl.kind === 'statisticRandom' ? { ...cl, probability: '0.25000000000' } : cl)) })),
    );
    expect(caught(probability), 'a changed probability').toBeGreaterThan(0);
    expect(caught(mutateChain(x.kpx, 'nat', 'KUBE-SERVICES', (rules) => [...rules.slice(-1), ...rules.slice(0, -1)])), 'the nodeports rule not last').toBeGreaterThan(0);
    // Moving a whole service-port group is what kube-proxy's map order does: forgiven.
    const rotated = mutateChain(x.kpx, 'nat', 'KUBE-SERVICES', (rules) => {
      const body = rules.slice(0, -1);
      const key = (r: (typeof rules)[number]): string => commentOf(r)?.split(' ')[0] ?? '';
      const first = body[0] === undefined ? '' : key(body[0]);
      return [...body.filter((r) => key(r) !== first), ...body.filter((r) => key(r) === first), ...rules.slice(-1)];
    });
    expect(caught(rotated), 'a moved service-port group').toBe(0);
    expect(compareRulesets(rotated, x.kubeProxy).length, 'the same without canonical group order').toBeGreaterThan(0);
    // The exact (kernel round trip) comparison also sees what normalisation folds, e.g. a dropped `-m tcp`.
    const raw = canonical(kubeProxyPart(parseDump(x.dump, 'IPv4')), { normalize: false });
    const noModule = mutateChain(raw, 'nat', sep, (rules) =>
      rules.map((r) => ({ ...r, clauses: r.clauses.map((cl) => (cl.kind === 'protocol' ? { ...cl, module: false } : cl)) })),
    );
    expect(compareExactly(noModule, raw).length, 'a dropped -m tcp (exact)').toBeGreaterThan(0);
    expect(compareRulesets(noModule, raw).length, 'a dropped -m tcp (normalised)').toBe(0);
  });

  it('the parts of the dumps left out of the comparison hold nothing but the empty KUBE-PROXY-CANARY chains', () => {
    const out = snap().comparisons.flatMap((x) => excludedButNotCanary(parseDump(x.dump, x.family)).map((e) => `${x.node} ${x.family}: ${e}`));
    expect(out).toEqual([]);
  });

  it('the rules that belong to no scenario (fixed rules, default/kubernetes) are equal', () => {
    const out = snap().comparisons.filter((x) => x.family === 'IPv4').map((x) => formatDifferences(scenarioDifferences(x, undefined)));
    expect(out.filter((o) => o !== '').join('\n')).toBe('');
  });

  describe.each(SCENARIOS.map((s) => [s.name, s] as [string, Scenario]))('scenario %s', (name, scenario) => {
    it('sets up and reaches its EndpointSlice state', () => {
      expect(setupErrors.get(name) ?? '', 'setup error').toBe('');
      expect(endpointErrors.get(name) ?? '', 'EndpointSlice state').toBe('');
    });

    it('kube-proxy programmed what the scenario exercises, and kpx matches it on both nodes', () => {
      const failures: string[] = [];
      for (const x of snap().comparisons.filter((y) => y.family === 'IPv4')) {
        const mine = project(x.kubeProxy, NAMESPACES, namespaceOf(scenario));
        failures.push(...scenario.expect({ node: x.node, lines: onlyRules(mine) }));
        const diff = scenarioDifferences(x, namespaceOf(scenario));
        if (diff.length > 0) failures.push(`${x.node}: kpx differs from kube-proxy:\n${formatDifferences(diff)}`);
      }
      expect(failures.join('\n'), scenario.title).toBe('');
    });
  });
  // Last, because it changes the whole cluster: more than 1000 endpoints in all switch kube-proxy
  // (and kpx) into large-cluster mode, which drops the comments of every endpoint rule. kube-proxy
  // gets there by a partial sync (crossing the threshold does not force a full one), so the chains
  // of unchanged services keep their comments until its next full sync; a restart forces one.
  describe('large-cluster mode: a Service with 1100 hand-written endpoints is added', () => {
    let partial: Measurement | undefined;
    let full: Measurement | undefined;
    const get = (m: Measurement | undefined): Measurement => {
      if (m === undefined) throw new Error('the large-cluster phase did not run');
      return m;
    };
    const cases = FAMILIES.flatMap((family) => [NODE_1, NODE_2].map((node) => [node, family] as const));
    const find = (m: Measurement | undefined, node: string, family: Family): Comparison => {
      const x = get(m).snapshot.comparisons.find((y) => y.node === node && y.family === family);
      if (x === undefined) throw new Error(`no comparison for ${node} ${family}`);
      return x;
    };

    beforeAll(async () => {
      const ns = LARGE_NAMESPACE;
      await c().api.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
      await c().api.create(`/api/v1/namespaces/${ns}/services`, {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'svc', namespace: ns },
        spec: { ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }] },
      });
      // 100.64.0.0/10 (shared address space): never a pod, node or service address here. Max 1000 per slice.
      const address = (k: number): string => `100.64.${String(Math.floor(k / 250))}.${String((k % 250) + 1)}`;
      for (const [index, from, count] of [[0, 0, 600], [1, 600, 500]] as const) {
        await c().api.create(`/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`, {
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: { name: `svc-large-${String(index)}`, namespace: ns, labels: { 'kubernetes.io/service-name': 'svc', 'endpointslice.kubernetes.io/managed-by': 'kpx-e2e' } },
          addressType: 'IPv4',
          endpoints: Array.from({ length: count }, (_, i) => ({ addresses: [address(from + i)], conditions: { ready: true } })),
          ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
        });
      }
      partial = await measure(c(), proxies, 'large-partial', timed, { converged: (x) => modStaleComments(x).length === 0, roundTrip: false });
      for (const x of get(partial).snapshot.comparisons.filter((y) => y.family === 'IPv4')) {
        log(`large-partial ${x.node}: ${String(commentedEndpointChains(x.kubeProxy).length)} kube-proxy chains still have endpoint-rule comments from before the threshold`);
      }
      await timed('restart kube-proxy on both nodes (forces a full sync)', async () => {
        for (const p of proxies) await stopKubeProxy(c(), p);
        proxies = await Promise.all([NODE_1, NODE_2].map((node) => startKubeProxy(c(), node, { config: NODE_CONFIG[node] ?? {} })));
      });
      full = await measure(c(), proxies, 'large-full', timed);
    });

    it.each(cases)('after the partial sync, %s %s: kpx equals kube-proxy except for endpoint-rule comments left in unchanged chains', (node, family) => {
      const x = find(partial, node, family);
      const stale = new Set(commentedEndpointChains(x.kubeProxy));
      expect(formatDifferences(modStaleComments(x)), 'differences besides stale comments').toBe('');
      // Every real difference is such a chain, and only the comments differ in it.
      expect(x.differences.filter((d) => !stale.has(d.chain)).map((d) => `${d.table}/${d.chain}`)).toEqual([]);
    });

    it.each(cases)('after a full sync (restart), %s %s: kpx equals kube-proxy, normalised and through the kernel', (node, family) => {
      const x = find(full, node, family);
      if (family === 'IPv4') {
        // kube-proxy really is in large-cluster mode: more than 1100 endpoint chains, none commented.
        expect(x.kubeProxy.tables.flatMap((t) => t.chains).filter((ch) => ch.name.startsWith('KUBE-SEP-')).length).toBeGreaterThan(1100);
        expect(commentedEndpointChains(x.kubeProxy)).toEqual([]);
      }
      log(`large-full ${node} ${family}: ${String(onlyRules(x.kubeProxy).length)} kube-proxy rules, ${String(x.differences.length)} differing chains`);
      expect(formatDifferences(x.differences), `kpx (-f ${get(full).snapshot.objectsFile}) vs kube-proxy on ${node}`).toBe('');
      expect(get(full).roundTrips.get(`${node} ${family}`), 'kernel round trip').toBe('');
      expect(x.preview.exitCode, `kpx verification: ${x.preview.stderr}`).toBe(0);
    });
  });
});
