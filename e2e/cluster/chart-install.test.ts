/**
 * charts/kpx against the real kube-apiserver, with the real helm and kubectl:
 * - `helm install` creates every object; every rendered object (default and non-default values, the
 *   helm test Pod included) passes server-side validation with strict field validation;
 * - the CRDs register and a NodeProxyStatus validates;
 * - the DaemonSet's container as installed (its args, the ConfigMap's KubeProxyConfiguration, a
 *   token of the chart's ServiceAccount from `kubectl create token`) runs in two node namespaces and
 *   proxies Services: traffic works and the rules equal upstream kube-proxy's on a third node;
 * - RBAC is sufficient (the above) and minimal: every verb the ClusterRole grants shows up in the
 *   apiserver's audit log of kpx's requests, and removing any single rule breaks the agent.
 *
 *   npx vitest run --config e2e/cluster/vitest.config.ts e2e/cluster/chart-install.test.ts     (root)
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CHART_DIR, helmOrThrow, NAMESPACE, parseManifests, RELEASE, renderChartText } from '../chart/helm.ts';
import { startCluster, type Cluster } from './cluster.ts';
import { KPX_BIN, KPX_SERVICE_ACCOUNT, kpxAgentHandle, mintKpxToken, writeTokenKubeconfig, type KpxAgent } from './kpx-agent.ts';
import { startKubeProxy, waitForKubeProxySync, waitForProgrammedEndpoints, type KubeProxy } from './kube-proxy.ts';
import { createPods, createWebService, waitForReadyEndpoints, type HarnessPod, type PodSet } from './pods.ts';
import type { ProbeResult } from './probe.ts';
import { canonical, compareRulesets, formatDifferences, kubeProxyPart, parseDump, project } from './rule-compare.ts';
import { requireRoot, sleep, waitFor } from './sys.ts';

const KPX_USER = `system:serviceaccount:${NAMESPACE}:${KPX_SERVICE_ACCOUNT}`;
const NONDEFAULT_VALUES = new URL('../chart/values-nondefault.yaml', import.meta.url).pathname;
const CLUSTER_ROLE_PATH = '/apis/rbac.authorization.k8s.io/v1/clusterroles/kpx';
const FAULT = { 'kpx.dev/test-fault': 'drop-endpoint-rule' };

interface Rule {
  readonly apiGroups: readonly string[];
  readonly resources: readonly string[];
  readonly verbs: readonly string[];
}
interface ClusterRole {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly labels?: Record<string, string>; readonly annotations?: Record<string, string> };
  readonly rules: readonly Rule[];
}
interface Container {
  readonly args: readonly string[];
}

function log(message: string): void {
  console.log(`[chart] ${message}`);
}

/** Objects as one JSON List for kubectl (JSON, so no YAML 1.1 reading turns a string "on" into a bool). */
function asList(objects: readonly unknown[]): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects });
}

function first<T>(items: readonly T[]): T {
  const item = items[0];
  if (item === undefined) throw new Error('expected at least one item');
  return item;
}

function podsOf(results: readonly ProbeResult[]): string[] {
  const failures = results.flatMap((r) => (r.ok ? [] : [r.error]));
  expect(failures, `failed requests: ${failures.slice(0, 5).join('; ')}`).toEqual([]);
  return [...new Set(results.flatMap((r) => (r.ok ? [r.reply.pod] : [])))].sort();
}

/** `group/resource[/subresource]:verb` for every verb a rule grants. */
function grants(rules: readonly Rule[]): string[] {
  return rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}/${res}:${v}`)))).sort();
}

describe('the Helm chart on a real apiserver', () => {
  let cluster: Cluster | undefined;
  const c = (): Cluster => {
    if (cluster === undefined) throw new Error('cluster did not start');
    return cluster;
  };
  let kubeconfig: string;
  let container: Container;
  let configFile: string;
  let installedRole: ClusterRole;
  const agents: KpxAgent[] = [];
  let proxy3: KubeProxy;
  let web: PodSet;
  let client: HarnessPod;

  /** The values the harness installs with: its API server address and its kube-proxy's settings. */
  const harnessValues = (): Record<string, unknown> => {
    const api = new URL(c().state.apiserver.url);
    return {
      apiServer: { host: api.hostname, port: Number(api.port) },
      // The fault-injection hook makes a verification failure (an Event) on demand.
      extraArgs: ['--enable-fault-injection'],
      config: {
        clusterCIDR: c().state.clusterCIDR,
        detectLocalMode: 'ClusterCIDR',
        // Node IPs differ per namespace: metrics on every address so the test can read them.
        metricsBindAddress: '0.0.0.0:10249',
        iptables: { minSyncPeriod: '10ms', syncPeriod: '3s', localhostNodePorts: false, masqueradeAll: false },
      },
    };
  };

  /**
   * Runs the installed DaemonSet's container in a node namespace: the image's entrypoint
   * (`node controller/bin/kpx.js`) with the Pod's args, `$(NODE_NAME)` expanded as the kubelet does,
   * the ConfigMap mounted where the Pod mounts it, and the ServiceAccount's token as a kubeconfig.
   */
  const startChartAgent = (nodeName: string, processName: string): KpxAgent => {
    const node = c().node(nodeName);
    const args = container.args.map((a) => a.replaceAll('$(NODE_NAME)', node.name).replace('=/etc/kpx/config.yaml', `=${configFile}`));
    c().startDaemon(processName, process.execPath, [KPX_BIN, ...args, `--kubeconfig=${kubeconfig}`], { netns: node.netns });
    return kpxAgentHandle(c(), node.name, processName, configFile);
  };

  const programmed = (agent: KubeProxy, spn: string, count: number): Promise<string[]> => waitForProgrammedEndpoints(c(), agent, spn, count);

  const readLog = (processName: string): string => readFileSync(c().logPath(processName), 'utf8');

  beforeAll(async () => {
    requireRoot();
    cluster = await startCluster({ nodes: 3, auditUsers: [KPX_USER], log });
  });

  afterEach((context) => {
    if (context.task.result?.state !== 'fail' || cluster === undefined) return;
    for (const a of agents) log(`--- ${a.processName} log tail ---\n${c().logTail(a.processName, 40)}`);
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it('every rendered object passes server-side validation (strict fields), with default and non-default values', async () => {
    for (const options of [{ values: harnessValues() }, { valuesFiles: [NONDEFAULT_VALUES] }]) {
      // The ServiceMonitor's CRD (Prometheus Operator) is not installed here; every other object is checked.
      const objects = parseManifests(await renderChartText(options)).filter((o) => o.kind !== 'ServiceMonitor');
      expect(objects.length).toBeGreaterThanOrEqual(3);
      const out = await c().kubectl(['apply', '--dry-run=server', '--validate=strict', '-o', 'name', '-f', '-'], asList(objects));
      // `-o name` prints kind.group/name; compare kind/name.
      const applied = out.trim().split('\n').map((l) => l.replace(/^([a-z]+)(\.[^/]+)?\//, '$1/')).sort();
      expect(applied).toEqual(objects.map((o) => `${o.kind.toLowerCase()}/${o.metadata.name}`).sort());
    }
    // The check can fail: an unknown field in a DaemonSet is refused.
    const bad = parseManifests(await renderChartText({ values: harnessValues() })).find((o) => o.kind === 'DaemonSet');
    const refused = c().kubectl(['apply', '--dry-run=server', '--validate=strict', '-f', '-'], asList([{ ...bad, spec: { ...(bad?.spec as object), hostNetwrok: true } }]));
    await expect(refused).rejects.toThrow(/unknown field \\?"(spec\.)?hostNetwrok\\?"/);
  });

  it('helm install creates every object, and the CRDs register and validate a NodeProxyStatus', async () => {
    await helmOrThrow(['install', RELEASE, CHART_DIR, '--namespace', NAMESPACE, '--kubeconfig', c().state.kubeconfigs.admin, '--values', '-'], stringify(harnessValues()));
    const manifest = await helmOrThrow(['get', 'manifest', RELEASE, '--namespace', NAMESPACE, '--kubeconfig', c().state.kubeconfigs.admin]);
    const objects = parseManifests(manifest);
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(['ClusterRole/kpx', 'ClusterRoleBinding/kpx', 'ConfigMap/kpx', 'DaemonSet/kpx', 'ServiceAccount/kpx']);
    const live = JSON.parse(await c().kubectl(['get', '-f', '-', '-o', 'json'], manifest)) as { items: { kind: string; metadata: { name: string; labels?: Record<string, string> } }[] };
    expect(live.items.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort());
    for (const o of live.items) expect(o.metadata.labels?.['app.kubernetes.io/instance'], `${o.kind}/${o.metadata.name}`).toBe(RELEASE);

    for (const crd of ['nodeproxystatuses.kpx.dev', 'packettraces.kpx.dev']) {
      await waitFor(`CRD ${crd} established`, async () => {
        const got = await c().api.get<{ status?: { conditions?: { type: string; status: string }[] } }>(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd}`);
        return got.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True') === true ? true : undefined;
      }, { timeoutMs: 20_000, intervalMs: 200 });
    }
    const nps = '/apis/kpx.dev/v1alpha1/nodeproxystatuses';
    await c().api.create(nps, { apiVersion: 'kpx.dev/v1alpha1', kind: 'NodeProxyStatus', metadata: { name: 'validation-probe' } });
    await c().api.raw('PATCH', `${nps}/validation-probe/status`, { body: { status: { lastSyncKind: 'full', lastSyncDurationSeconds: 0.2, rulesPerTable: { nat: 10, filter: 2 } } }, contentType: 'application/merge-patch+json' }).then(({ status }) => {
      expect(status).toBe(200);
    });
    const invalid = await c().api.raw('PATCH', `${nps}/validation-probe/status`, { body: { status: { lastSyncKind: 'sideways' } }, contentType: 'application/merge-patch+json' });
    expect(invalid.status).toBe(422);
    await c().api.delete(`${nps}/validation-probe`);

    installedRole = await c().api.get<ClusterRole>(CLUSTER_ROLE_PATH);
    const ds = await c().api.get<{ spec: { template: { spec: { containers: Container[] } } } }>(`/apis/apps/v1/namespaces/${NAMESPACE}/daemonsets/kpx`);
    container = first(ds.spec.template.spec.containers);
    const cm = await c().api.get<{ data: Record<string, string> }>(`/api/v1/namespaces/${NAMESPACE}/configmaps/kpx`);
    configFile = join(c().dir, 'chart-config.yaml');
    await writeFile(configFile, cm.data['config.yaml'] ?? '');
    expect((parse(cm.data['config.yaml'] ?? '') as { kind?: string }).kind).toBe('KubeProxyConfiguration');
  });

  it("runs the installed container with a token of the chart's ServiceAccount: Services work, and the rules equal kube-proxy's", async () => {
    kubeconfig = join(c().dir, 'chart-kpx.kubeconfig');
    await writeTokenKubeconfig(c(), kubeconfig, await mintKpxToken(c()));
    agents.push(startChartAgent('node-1', 'kpx-chart-node-1'), startChartAgent('node-2', 'kpx-chart-node-2'));
    proxy3 = await startKubeProxy(c(), 'node-3', { waitForSync: false, config: { iptables: { minSyncPeriod: '10ms', syncPeriod: '3s', localhostNodePorts: false } } });
    await Promise.all([...agents, proxy3].map((p) => waitForKubeProxySync(c(), p)));
    web = await createPods(c(), { name: 'web', replicas: 3, nodes: ['node-1'] });
    client = first((await createPods(c(), { name: 'client', replicas: 1, nodes: ['node-2'] })).pods);
    const svc = await createWebService(c(), web.labels);
    await waitForReadyEndpoints(c(), 'default', 'web', 3);
    for (const p of [...agents, proxy3]) await programmed(p, 'default/web:http', 3);

    const ip = svc.spec.clusterIP ?? '';
    const pods = web.pods.map((p) => p.name).sort();
    expect(podsOf(await c().probe(client.netns, { protocol: 'tcp', host: ip, port: 80, count: 40 }))).toEqual(pods);
    expect(podsOf(await c().probe(client.netns, { protocol: 'udp', host: ip, port: 80, count: 40 }))).toEqual(pods);
    const node2 = c().node('node-2');
    expect(podsOf(await c().probe(node2.netns, { protocol: 'tcp', host: ip, port: 80, count: 30 }))).toEqual(pods);
    const nodePort = svc.spec.ports?.find((p) => p.name === 'http')?.nodePort ?? 0;
    expect(podsOf(await c().probe(c().external.netns, { protocol: 'tcp', host: node2.ip, port: nodePort, count: 40 }))).toEqual(pods);

    // node-2 (kpx from the chart) and node-3 (kube-proxy) see the cluster from the same position.
    const comparable = async (netns: string): Promise<ReturnType<typeof canonical>> => project(canonical(kubeProxyPart(parseDump(await c().iptablesSave(netns), 'IPv4'))), ['default'], undefined);
    const differences = compareRulesets(await comparable(agents[1]?.netns ?? ''), await comparable(proxy3.netns));
    expect(differences, formatDifferences(differences)).toEqual([]);

    // The ConfigMap's metricsBindAddress is honoured (kpx's default is 127.0.0.1), and status is written.
    expect(await (await fetch(agents[1]?.metricsURL ?? '')).text()).toMatch(/kubeproxy_sync_proxy_rules_last_timestamp_seconds/);
    const status = await waitFor('NodeProxyStatus node-2 Ready', async () => {
      const s = await c().api.get<{ status?: { conditions?: { type: string; status: string }[] } }>('/apis/kpx.dev/v1alpha1/nodeproxystatuses/node-2').catch(() => undefined);
      return s?.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') === true ? s : undefined;
    }, { timeoutMs: 30_000, intervalMs: 300 });
    expect(status.status?.conditions?.find((x) => x.type === 'Verified')?.status).toBe('True');
  });

  it('uses every verb its ClusterRole grants (the audit log of its own requests)', async () => {
    // A verification failure (Event created, then patched as it repeats) and a restart (the
    // NodeProxyStatus exists already: its owner is patched) exercise the rarer verbs.
    await c().api.patch('/api/v1/namespaces/default/services/web', { metadata: { annotations: FAULT } });
    await createPods(c(), { name: 'web-late', replicas: 1, nodes: ['node-1'], labels: web.labels });
    await waitFor('a repeated VerificationFailed event on node-2', async () => {
      const list = await c().api.get<{ items: { reason?: string; count?: number; involvedObject?: { name?: string } }[] }>('/api/v1/namespaces/default/events');
      return list.items.some((e) => e.reason === 'VerificationFailed' && e.involvedObject?.name === 'node-2' && (e.count ?? 1) >= 2) ? true : undefined;
    }, { timeoutMs: 30_000, intervalMs: 500 });
    await c().api.patch('/api/v1/namespaces/default/services/web', { metadata: { annotations: { 'kpx.dev/test-fault': null } } });
    await c().stopDaemon('kpx-chart-node-2');
    agents[1] = startChartAgent('node-2', 'kpx-chart-node-2b');
    await waitForKubeProxySync(c(), first(agents.slice(1)));
    await programmed(first(agents.slice(1)), 'default/web:http', 4);

    const used = new Set<string>();
    await waitFor('the audit log to show every granted verb', () => {
      for (const e of c().auditEvents()) {
        if (e.user.username !== KPX_USER || e.objectRef?.resource === undefined || (e.responseStatus?.code ?? 0) >= 400) continue;
        const resource = e.objectRef.subresource === undefined ? e.objectRef.resource : `${e.objectRef.resource}/${e.objectRef.subresource}`;
        used.add(`${e.objectRef.apiGroup ?? ''}/${resource}:${e.verb}`);
      }
      return Promise.resolve(grants(installedRole.rules).every((g) => used.has(g)) ? true : undefined);
    }, { timeoutMs: 30_000, intervalMs: 500 }).catch((error: unknown) => {
      log(`granted: ${grants(installedRole.rules).join(' ')}; used: ${[...used].sort().join(' ')}`);
      throw error;
    });
    log(`verbs kpx used: ${[...used].sort().join(' ')}`);
    // Nothing it asked for was refused, and nothing it used lies outside the ClusterRole.
    expect([...used].filter((u) => !grants(installedRole.rules).includes(u))).toEqual([]);
    const refused = c().auditEvents().filter((e) => e.user.username === KPX_USER && e.responseStatus?.code === 403);
    expect(refused.map((e) => `${e.verb} ${e.objectRef?.resource ?? ''}`)).toEqual([]);
  });

  it('breaks when any single rule is removed from its ClusterRole', async () => {
    await c().stopDaemon('kpx-chart-node-1');
    const setRules = async (rules: readonly Rule[]): Promise<void> => {
      const current = await c().api.get<ClusterRole & { metadata: { resourceVersion?: string } }>(CLUSTER_ROLE_PATH);
      await c().api.replace(CLUSTER_ROLE_PATH, { ...current, rules });
    };
    /** Waits until the apiserver's authorizer has the new rules (SubjectAccessReview), so the agent meets them. */
    const authorized = (rule: Rule, allowed: boolean): Promise<true> =>
      waitFor(`RBAC to ${allowed ? 'allow' : 'deny'} ${rule.resources.join(',')}`, async () => {
        const [resource, subresource] = (rule.resources[0] ?? '').split('/');
        const review = await c().api.create<{ status: { allowed: boolean } }>('/apis/authorization.k8s.io/v1/subjectaccessreviews', {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: {
            user: KPX_USER,
            groups: ['system:serviceaccounts', `system:serviceaccounts:${NAMESPACE}`, 'system:authenticated'],
            resourceAttributes: { group: rule.apiGroups[0] ?? '', resource, ...(subresource === undefined ? {} : { subresource }), verb: rule.verbs[0] ?? '', ...(resource === 'events' ? { namespace: 'default' } : {}) },
          },
        });
        return review.status.allowed === allowed ? true : undefined;
      }, { timeoutMs: 20_000, intervalMs: 200 });

    const symptoms: string[] = [];
    for (const [index, rule] of installedRole.rules.entries()) {
      const resource = rule.resources.join(',');
      const name = `kpx-minus-${String(index)}`;
      await setRules(installedRole.rules.filter((_r, i) => i !== index));
      await authorized(rule, false);
      // Events are written only on trouble: make one (a verification failure) for this agent to report.
      if (resource === 'events') await c().api.patch('/api/v1/namespaces/default/services/web', { metadata: { annotations: FAULT } });
      startChartAgent('node-1', name);
      try {
        const symptom = await waitFor(`kpx without the ${resource} rule to fail`, () => {
          const text = readLog(name);
          const lines = text.split('\n').filter((l) => l.includes('"level":"warn"') || l.includes('"level":"error"'));
          if (['services', 'endpointslices', 'nodes'].includes(resource)) {
            // Its informer is refused: nothing is ever programmed.
            const refused = lines.find((l) => l.includes('list/watch failed') && /forbidden|403/.test(l) && l.includes(resource === 'nodes' ? '"node"' : `"${resource}"`));
            return Promise.resolve(refused !== undefined && !text.includes('informers synced') ? refused : undefined);
          }
          if (resource === 'events') return Promise.resolve(lines.find((l) => l.includes('Could not record Event') && l.includes('403')));
          return Promise.resolve(lines.find((l) => l.includes('Could not write NodeProxyStatus') && l.includes('403')));
        }, { timeoutMs: 20_000, intervalMs: 250 });
        if (['services', 'endpointslices', 'nodes'].includes(resource)) {
          // Still nothing programmed a while later (the informer keeps retrying and keeps being refused).
          await sleep(2000);
          expect(readLog(name)).not.toContain('informers synced');
        }
        symptoms.push(`${resource}: ${symptom.slice(0, 160)}`);
      } finally {
        await c().stopDaemon(name);
        if (resource === 'events') await c().api.patch('/api/v1/namespaces/default/services/web', { metadata: { annotations: { 'kpx.dev/test-fault': null } } });
        await setRules(installedRole.rules);
        await authorized(rule, true);
      }
    }
    for (const s of symptoms) log(`without ${s}`);
    expect(symptoms).toHaveLength(installedRole.rules.length);
  });
});
