/**
 * kpx as the node proxy on a real cluster: `kpx run` on node-1 and node-2 (under the chart's RBAC
 * identity), the upstream kube-proxy on node-3 for side-by-side comparison, real pods and traffic.
 *
 * Namespace `default` holds workloads whose pods all run on node-1, so node-2 (kpx) and node-3
 * (kube-proxy) see the same cluster from the same position: their rules must be equal.
 * Namespace `policy` holds traffic-policy scenarios with pods on node-1 and node-2.
 *
 *   npx vitest run --config e2e/cluster/vitest.config.ts e2e/cluster/agent.test.ts
 */
import { existsSync, readdirSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from './cluster.ts';
import { installKpxIdentity, startKpx, type KpxAgent } from './kpx-agent.ts';
import { kubeProxyHealthz, startKubeProxy, waitForKubeProxySync, waitForProgrammedEndpoints, type KubeProxy } from './kube-proxy.ts';
import type { ServiceObject } from './kube-client.ts';
import { createPods, createWebService, deletePod, setPodReady, waitForReadyEndpoints, type HarnessPod, type PodSet } from './pods.ts';
import type { ProbeResult } from './probe.ts';
import { canonical, compareRulesets, formatDifferences, kubeProxyPart, parseDump, project } from './rule-compare.ts';
import { requireRoot, sleep, waitFor } from './sys.ts';

const REQUESTS = 40;
const SYNC_PERIOD = '3s';
const CRDS = new URL('../../crds/', import.meta.url);

function log(message: string): void {
  console.log(`[agent] ${message}`);
}

function okCount(results: readonly ProbeResult[]): Map<string, number> {
  const failures = results.flatMap((r) => (r.ok ? [] : [r.error]));
  expect(failures, `failed requests: ${failures.slice(0, 5).join('; ')}`).toEqual([]);
  const counts = new Map<string, number>();
  for (const r of results) if (r.ok) counts.set(r.reply.pod, (counts.get(r.reply.pod) ?? 0) + 1);
  return counts;
}

function first<T>(items: readonly T[]): T {
  const item = items[0];
  if (item === undefined) throw new Error('expected at least one item');
  return item;
}

const podsOf = (results: readonly ProbeResult[]): string[] => [...okCount(results).keys()].sort();
const sourcesOf = (results: readonly ProbeResult[]): string[] => [...new Set(results.flatMap((r) => (r.ok ? [r.reply.sourceIP] : [])))].sort();

describe('kpx run on a real cluster', () => {
  let cluster: Cluster | undefined;
  let kpx1: KpxAgent;
  let kpx2: KpxAgent;
  let proxy3: KubeProxy;
  let kubeconfig: string;
  let web: PodSet;
  let client: HarnessPod;
  let webSvc: ServiceObject;
  const c = (): Cluster => {
    if (cluster === undefined) throw new Error('cluster did not start');
    return cluster;
  };
  const agentArgs = ['--enable-fault-injection'];
  const agentConfig = { iptables: { syncPeriod: SYNC_PERIOD, minSyncPeriod: '10ms', localhostNodePorts: false } };

  /** Waits until `agent`'s node has programmed `count` endpoints for a service port (polled every 20 ms: programming times are logged). */
  const programmed = (agent: KubeProxy, spn: string, count: number, timeoutMs = 20_000): Promise<string[]> => waitForProgrammedEndpoints(c(), agent, spn, count, timeoutMs, 20);

  /** kube-proxy-owned part of a node's rules for namespace `default` and the fixed rules. */
  const comparable = async (netns: string): Promise<ReturnType<typeof canonical>[]> => {
    const rules = canonical(kubeProxyPart(parseDump(await c().iptablesSave(netns), 'IPv4')));
    return [project(rules, ['default', 'policy'], 'default'), project(rules, ['default', 'policy'], undefined)];
  };

  beforeAll(async () => {
    requireRoot();
    cluster = await startCluster({ nodes: 3, log });
    await c().kubectl(['apply', '-f', new URL('.', CRDS).pathname]);
    await c().api.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'policy' } });
    kubeconfig = await installKpxIdentity(c());
    [kpx1, kpx2] = await Promise.all([startKpx(c(), 'node-1', { kubeconfig, config: agentConfig, args: agentArgs }), startKpx(c(), 'node-2', { kubeconfig, config: agentConfig, args: agentArgs })]);
    proxy3 = await startKubeProxy(c(), 'node-3', { waitForSync: false });
    await Promise.all([kpx1, kpx2, proxy3].map((p) => waitForKubeProxySync(c(), p)));
    web = await createPods(c(), { name: 'web', replicas: 3, nodes: ['node-1'] });
    const clients = await createPods(c(), { name: 'client', replicas: 1, nodes: ['node-2'] });
    client = first(clients.pods);
    webSvc = await createWebService(c(), web.labels);
    await waitForReadyEndpoints(c(), 'default', 'web', 3);
    for (const p of [kpx1, kpx2, proxy3]) await programmed(p, 'default/web:http', 3);
  });

  afterEach((context) => {
    if (context.task.result?.state !== 'fail' || cluster === undefined) return;
    for (const name of [kpx1.processName, kpx2.processName]) log(`--- ${name} log tail ---\n${c().logTail(name, 40)}`);
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it('installs its CRDs from crds/ (the files the chart ships)', () => {
    expect(readdirSync(CRDS).filter((f) => f.endsWith('.yaml')).length).toBeGreaterThanOrEqual(2);
  });

  it('serves ClusterIP from a pod and from each node, and NodePort from the external client, over TCP and UDP', async () => {
    const ip = webSvc.spec.clusterIP ?? '';
    const names = web.pods.map((p) => p.name).sort();
    expect(podsOf(await c().probe(client.netns, { protocol: 'tcp', host: ip, port: 80, count: REQUESTS }))).toEqual(names);
    expect(podsOf(await c().probe(client.netns, { protocol: 'udp', host: ip, port: 80, count: REQUESTS }))).toEqual(names);
    for (const node of ['node-1', 'node-2']) {
      expect(podsOf(await c().probe(c().node(node).netns, { protocol: 'tcp', host: ip, port: 80, count: REQUESTS }))).toEqual(names);
    }
    const nodePort = webSvc.spec.ports?.find((p) => p.name === 'http')?.nodePort ?? 0;
    for (const node of ['node-1', 'node-2']) {
      const res = await c().probe(c().external.netns, { protocol: 'tcp', host: c().node(node).ip, port: nodePort, count: REQUESTS });
      expect(podsOf(res)).toEqual(names);
      expect(sourcesOf(res)).not.toContain(c().external.ip);
    }
  });

  it('has the same rules as kube-proxy on a neighbouring node, and reports its programming time next to it', async () => {
    const [a, b] = await Promise.all([comparable(kpx2.netns), comparable(proxy3.netns)]);
    for (let i = 0; i < a.length; i++) {
      const diff = compareRulesets(a[i] as never, b[i] as never);
      expect(diff, formatDifferences(diff)).toEqual([]);
    }
    // One API change, timed on both nodes: a fourth web pod.
    const t0 = Date.now();
    await createPods(c(), { name: 'web-extra', replicas: 1, nodes: ['node-1'], labels: web.labels });
    const [kpxMs, kubeProxyMs] = await Promise.all(
      [kpx2, proxy3].map(async (p) => {
        await programmed(p, 'default/web:http', 4);
        return Date.now() - t0;
      }),
    );
    log(`pod created → rules on node: kpx ${String(kpxMs)} ms, kube-proxy ${String(kubeProxyMs)} ms (includes the EndpointSlice controller)`);
    await sleep(300);
    const [a2, b2] = await Promise.all([comparable(kpx2.netns), comparable(proxy3.netns)]);
    for (let i = 0; i < a2.length; i++) {
      const diff = compareRulesets(a2[i] as never, b2[i] as never);
      expect(diff, formatDifferences(diff)).toEqual([]);
    }
    const kpxHealth = await kubeProxyHealthz(kpx2);
    expect(kpxHealth.httpStatus).toBe(200);
  });

  it('externalTrafficPolicy Local: health check 200 where an endpoint runs, 503 elsewhere; client IP preserved; source ranges enforced', async () => {
    const pods = await createPods(c(), { name: 'lb', namespace: 'policy', replicas: 1, nodes: ['node-1'] });
    const lbIP = '10.200.0.250';
    const svc = await c().api.create<ServiceObject & { spec: { healthCheckNodePort?: number } }>('/api/v1/namespaces/policy/services', {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'lb', namespace: 'policy' },
      spec: { type: 'LoadBalancer', externalTrafficPolicy: 'Local', selector: pods.labels, loadBalancerSourceRanges: [`${c().external.ip}/32`], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }] },
    });
    await c().api.patch(`/api/v1/namespaces/policy/services/lb/status`, { status: { loadBalancer: { ingress: [{ ip: lbIP }] } } });
    await waitForReadyEndpoints(c(), 'policy', 'lb', 1);
    await programmed(kpx1, 'policy/lb:http', 1);
    const hc = svc.spec.healthCheckNodePort ?? 0;
    expect(hc).toBeGreaterThan(0);
    const status = async (node: string): Promise<number> => (await fetch(`http://${c().node(node).ip}:${String(hc)}/`)).status;
    await waitFor('health check servers', async () => ((await status('node-1')) === 200 && (await status('node-2')) === 503 ? true : undefined), { timeoutMs: 15_000, intervalMs: 200 });
    // The "load balancer" sends to node-1, where the endpoint is.
    await c().exec(c().external.netns, 'ip', ['route', 'replace', `${lbIP}/32`, 'via', c().node('node-1').ip]);
    const res = await c().probe(c().external.netns, { protocol: 'tcp', host: lbIP, port: 80, count: 10 });
    expect(podsOf(res)).toEqual(['lb-0']);
    expect(sourcesOf(res)).toEqual([c().external.ip]);
    // Outside the source ranges: dropped.
    await c().api.patch('/api/v1/namespaces/policy/services/lb', { spec: { loadBalancerSourceRanges: ['192.0.2.0/24'] } });
    await waitFor('source range change', async () => ((await c().iptablesSave(kpx1.netns, 'nat')).includes('192.0.2.0/24') ? true : undefined), { timeoutMs: 10_000, intervalMs: 50 });
    const blocked = await c().probe(c().external.netns, { protocol: 'tcp', host: lbIP, port: 80, count: 2, timeoutMs: 700 });
    expect(blocked.every((r) => !r.ok)).toBe(true);
  });

  it('internalTrafficPolicy Local, ClientIP affinity, hairpin, and no endpoints → connection refused', async () => {
    const pods = await createPods(c(), { name: 'pol', namespace: 'policy', replicas: 2, nodes: ['node-1', 'node-2'] });
    const make = (name: string, spec: Record<string, unknown>): Promise<ServiceObject> =>
      c().api.create<ServiceObject>('/api/v1/namespaces/policy/services', { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'policy' }, spec: { ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }], ...spec } });
    const itp = await make('itp', { selector: pods.labels, internalTrafficPolicy: 'Local' });
    const aff = await make('aff', { selector: pods.labels, sessionAffinity: 'ClientIP' });
    const none = await make('none', { selector: { app: 'nothing' } });
    await waitForReadyEndpoints(c(), 'policy', 'itp', 2);
    await programmed(kpx2, 'policy/itp:http', 1);
    await programmed(kpx2, 'policy/aff:http', 2);
    // node-2's client reaches only node-2's pod.
    expect(podsOf(await c().probe(client.netns, { protocol: 'tcp', host: itp.spec.clusterIP ?? '', port: 80, count: 20 }))).toEqual(['pol-1']);
    // Affinity: every request from one client lands on one pod.
    expect(podsOf(await c().probe(client.netns, { protocol: 'tcp', host: aff.spec.clusterIP ?? '', port: 80, count: 20 }))).toHaveLength(1);
    // Hairpin: a pod reaching itself through its Service sees the node's address, not its own.
    const self = first(pods.pods);
    const hairpin = await c().probe(self.netns, { protocol: 'tcp', host: aff.spec.clusterIP ?? '', port: 80, count: 20 });
    const mine = hairpin.flatMap((r) => (r.ok && r.reply.pod === self.name ? [r.reply.sourceIP] : []));
    okCount(hairpin);
    for (const s of mine) expect(s).not.toBe(self.ip);
    // No endpoints: REJECT, so the client is refused at once rather than timing out.
    const refused = await c().probe(client.netns, { protocol: 'tcp', host: none.spec.clusterIP ?? '', port: 80, count: 2 });
    expect(refused.map((r) => (r.ok ? 'ok' : r.error))).toEqual(expect.arrayContaining([expect.stringMatching(/ECONNREFUSED/)]));
  });

  it('falls back to serving terminating endpoints when no ready ones are left', async () => {
    const pods = await createPods(c(), { name: 'term', namespace: 'policy', replicas: 1, nodes: ['node-1'] });
    const svc = await c().api.create<ServiceObject>('/api/v1/namespaces/policy/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'term', namespace: 'policy' }, spec: { selector: pods.labels, ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }] } });
    await waitForReadyEndpoints(c(), 'policy', 'term', 1);
    await deletePod(c(), first(pods.pods), { graceful: true });
    await waitFor('terminating endpoint', async () => ((await c().api.get<{ items: { endpoints?: { conditions?: { terminating?: boolean } }[] }[] }>('/apis/discovery.k8s.io/v1/namespaces/policy/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dterm')).items.some((s) => s.endpoints?.some((e) => e.conditions?.terminating === true)) ? true : undefined), { timeoutMs: 15_000, intervalMs: 200 });
    await sleep(500);
    expect(podsOf(await c().probe(client.netns, { protocol: 'tcp', host: svc.spec.clusterIP ?? '', port: 80, count: 10 }))).toEqual(['term-0']);
  });

  it('scales 4 → 10 → 1 under continuous traffic without a failed request, keeping connections to the surviving pod', async () => {
    const ip = webSvc.spec.clusterIP ?? '';
    const survivor = first(web.pods).name;
    // Long-lived connections to the pod that survives, opened before the scaling starts: each must
    // keep answering on its one TCP connection while the Service's rules are rewritten around it.
    const held = c().probeHeld(client.netns, { protocol: 'tcp', host: ip, port: 80, count: 300, intervalMs: 50, timeoutMs: 5000, hold: { pod: survivor, connections: 3, maxAttempts: 80 } });
    let heldDone = false;
    void held.then(
      () => (heldDone = true),
      () => (heldDone = true),
    );
    await sleep(1500);
    // A generous per-request timeout: the machine also runs etcd, the apiserver and three proxies, and a
    // slow answer is not a failed one; a request sent to a removed endpoint would never be answered.
    const traffic = c().probe(client.netns, { protocol: 'tcp', host: ip, port: 80, count: 150, intervalMs: 40, timeoutMs: 5000 });
    const more = await createPods(c(), { name: 'web-more', replicas: 6, nodes: ['node-1'], labels: web.labels });
    await programmed(kpx2, 'default/web:http', 10);
    // Scale down the way a rollout does: endpoints leave the rules (not ready) before the pods go.
    const all = [...web.pods.slice(1), ...more.pods, { namespace: 'default', name: 'web-extra-0' }];
    await Promise.all(all.map((p) => setPodReady(c(), p, false)));
    await programmed(kpx2, 'default/web:http', 1);
    await Promise.all(all.map((p) => deletePod(c(), p)));
    // The held connections must outlive the scaling to prove anything (300 requests 50 ms apart).
    expect(heldDone).toBe(false);
    const results = await traffic;
    const failures = results.flatMap((r) => (r.ok ? [] : [r.error]));
    log(`scale under traffic: ${String(results.length)} requests, ${String(failures.length)} failed, pods seen ${String(new Set(results.flatMap((r) => (r.ok ? [r.reply.pod] : []))).size)}`);
    expect(failures).toEqual([]);
    const connections = await held;
    log(`held connections to ${survivor}: ${connections.map((h) => `${String(h.results.filter((r) => r.ok).length)}/${String(h.results.length)} answered`).join(', ')}`);
    expect(connections).toHaveLength(3);
    for (const connection of connections) {
      expect(connection.results.flatMap((r) => (r.ok ? [] : [r.error]))).toEqual([]);
      // One TCP connection throughout: the same pod saw the same client port for every request.
      const seen = new Set(connection.results.map((r) => (r.ok ? `${r.reply.pod}:${String(r.reply.sourcePort)}` : '')));
      expect(seen.size).toBe(1);
      expect([...seen][0]).toMatch(new RegExp(`^${survivor}:`));
    }
  });

  it('keeps a UDP client working when its server pod is replaced (stale conntrack entries removed)', async () => {
    const dns1 = await createPods(c(), { name: 'dns', namespace: 'policy', replicas: 1, nodes: ['node-1'], labels: { app: 'dns' } });
    const svc = await c().api.create<ServiceObject>('/api/v1/namespaces/policy/services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'dns', namespace: 'policy' }, spec: { selector: { app: 'dns' }, ports: [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 8080 }] } });
    await programmed(kpx2, 'policy/dns:dns', 1);
    const ask = (): Promise<ProbeResult[]> => c().probe(client.netns, { protocol: 'udp', host: svc.spec.clusterIP ?? '', port: 53, count: 3, sourcePort: 5353, timeoutMs: 1000 });
    expect(podsOf(await ask())).toEqual(['dns-0']);
    await deletePod(c(), first(dns1.pods));
    await createPods(c(), { name: 'dns-new', namespace: 'policy', replicas: 1, nodes: ['node-1'], labels: { app: 'dns' } });
    await programmed(kpx2, 'policy/dns:dns', 1);
    await waitFor('the resolver socket to reach the new pod', async () => {
      const r = await ask();
      return r.some((x) => x.ok && x.reply.pod === 'dns-new-0') ? true : undefined;
    }, { timeoutMs: 10_000, intervalMs: 100 });
  });

  it('survives kill -9 under traffic: restarted, it keeps the rules and no request fails', async () => {
    const ip = webSvc.spec.clusterIP ?? '';
    const before = await c().iptablesSave(kpx1.netns, 'nat');
    const traffic = c().probe(c().node('node-1').netns, { protocol: 'tcp', host: ip, port: 80, count: 60, intervalMs: 50 });
    const record = c().state.processes.find((p) => p.name === kpx1.processName);
    process.kill(record?.pid ?? -1, 'SIGKILL');
    await sleep(300);
    await c().stopDaemon(kpx1.processName);
    const nat = await c().iptablesSave(kpx1.netns, 'nat');
    expect(nat.split('\n').filter((l) => l.startsWith('-A')).length).toBe(before.split('\n').filter((l) => l.startsWith('-A')).length);
    kpx1 = await startKpx(c(), 'node-1', { kubeconfig, config: agentConfig, args: agentArgs });
    await waitForKubeProxySync(c(), kpx1);
    const failures = (await traffic).flatMap((r) => (r.ok ? [] : [r.error]));
    expect(failures).toEqual([]);
    // The restarted agent's first (full) sync found the node's rules already right: it wrote nothing.
    const restartedSync = await waitFor('the restarted agent\'s first sync', () => {
      const lines = c().logTail(kpx1.processName, 400).split('\n');
      const start = lines.findLastIndex((l) => l.includes('"msg":"kpx starting"'));
      return Promise.resolve(lines.slice(start).find((l) => l.includes('"msg":"synced"')));
    }, { timeoutMs: 15_000, intervalMs: 100 });
    expect(restartedSync).toMatch(/"kind":"full".*"writtenChains":0,"deletedChains":0/);
  });

  it('stops cleanly on SIGTERM and leaves the rules in place', async () => {
    const before = (await c().iptablesSave(kpx1.netns, 'nat')).split('\n').filter((l) => l.startsWith('-A '));
    const record = c().state.processes.find((p) => p.name === kpx1.processName);
    if (record === undefined) throw new Error('no kpx process on node-1');
    c().assertAlive(kpx1.processName);
    process.kill(record.pid, 'SIGTERM');
    await waitFor('kpx on node-1 to exit', () => Promise.resolve(existsSync(`/proc/${String(record.pid)}`) ? undefined : true), { timeoutMs: 15_000, intervalMs: 100 });
    expect(c().logTail(kpx1.processName, 400)).toMatch(/"msg":"kpx stopping; rules stay in place","reason":"SIGTERM"/);
    const after = (await c().iptablesSave(kpx1.netns, 'nat')).split('\n').filter((l) => l.startsWith('-A '));
    expect(after).toEqual(before);
    await c().stopDaemon(kpx1.processName);
    kpx1 = await startKpx(c(), 'node-1', { kubeconfig, config: agentConfig, args: agentArgs });
    await waitForKubeProxySync(c(), kpx1);
  });

  it('repairs an external `iptables -t nat -F` within the sync period', async () => {
    const ip = webSvc.spec.clusterIP ?? '';
    await c().exec(kpx2.netns, 'iptables', ['-t', 'nat', '-F']);
    const t0 = Date.now();
    await waitFor('traffic through the repaired rules', async () => {
      const r = await c().probe(client.netns, { protocol: 'tcp', host: ip, port: 80, count: 1, timeoutMs: 500 });
      return r[0]?.ok === true ? true : undefined;
    }, { timeoutMs: 15_000, intervalMs: 100 });
    log(`nat flush repaired after ${String(Date.now() - t0)} ms (sync period ${SYNC_PERIOD})`);
    expect(podsOf(await c().probe(client.netns, { protocol: 'tcp', host: ip, port: 80, count: 5 }))).toEqual(['web-0']);
    const metrics = await (await fetch(kpx2.metricsURL)).text();
    expect(metrics).toMatch(/kpx_drift_repairs_total\{ip_family="IPv4",reason="jump"\} [1-9]/);
  });

  it('keeps the old rules when verification fails, and says why in an Event and the NodeProxyStatus', async () => {
    const rules = async (): Promise<string[]> => (await c().iptablesSave(kpx2.netns, 'nat')).split('\n').filter((l) => l.startsWith('-A '));
    const before = await rules();
    await c().api.patch('/api/v1/namespaces/default/services/web', { metadata: { annotations: { 'kpx.dev/test-fault': 'drop-endpoint-rule' } } });
    await createPods(c(), { name: 'web-late', replicas: 1, nodes: ['node-1'], labels: web.labels });
    await programmed(proxy3, 'default/web:http', 2);
    const event = await waitFor('a VerificationFailed event on node-2', async () => {
      const list = await c().api.get<{ items: { reason?: string; message?: string; involvedObject?: { name?: string } }[] }>('/api/v1/namespaces/default/events');
      return list.items.find((e) => e.reason === 'VerificationFailed' && e.involvedObject?.name === 'node-2');
    }, { timeoutMs: 20_000, intervalMs: 300 });
    expect(event.message).toMatch(/default\/web/);
    expect(await rules()).toEqual(before);
    const status = await waitFor('NodeProxyStatus Verified=False', async () => {
      const s = await c().api.get<{ status?: { conditions?: { type: string; status: string }[]; verification?: { verdict?: string } } }>('/apis/kpx.dev/v1alpha1/nodeproxystatuses/node-2').catch(() => undefined);
      return s?.status?.verification?.verdict === 'Failed' ? s : undefined;
    }, { timeoutMs: 30_000, intervalMs: 500 });
    expect(status.status?.conditions?.find((x) => x.type === 'Verified')?.status).toBe('False');
    await c().api.patch('/api/v1/namespaces/default/services/web', { metadata: { annotations: { 'kpx.dev/test-fault': null } } });
    await programmed(kpx2, 'default/web:http', 2);
  });
  it('recovers when the apiserver stops and comes back, and catches up on changes made after', async () => {
    await c().restartApiserver(2000);
    const t0 = Date.now();
    await createPods(c(), { name: 'web-after', replicas: 1, nodes: ['node-1'], labels: web.labels });
    await Promise.all([kpx1, kpx2].map((p) => programmed(p, 'default/web:http', 3, 60_000)));
    log(`after the apiserver restart, both agents programmed the new pod in ${String(Date.now() - t0)} ms`);
    expect(c().logTail(kpx2.processName, 400)).toMatch(/"level":"warn".*informer/);
  });
});
