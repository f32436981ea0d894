/**
 * Proves the harness itself: with the real upstream kube-proxy as the proxy on both nodes, a
 * ClusterIP+NodePort Service with 3 pods on two nodes is reachable from a pod, from a node and
 * (NodePort) from the external client, over TCP and UDP, and traffic spreads over all 3 pods.
 *
 *   npx vitest run --config e2e/cluster/vitest.config.ts     (root; binaries from e2e/build/build-binaries.sh)
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from './cluster.ts';
import { startKubeProxy, waitForProgrammedEndpoints, type KubeProxy } from './kube-proxy.ts';
import { createPods, createWebService, waitForReadyEndpoints, type HarnessPod, type PodSet } from './pods.ts';
import type { ProbeResult } from './probe.ts';
import { requireRoot } from './sys.ts';

const REQUESTS = 60;

function log(message: string): void {
  console.log(`[smoke] ${message}`);
}

/** Asserts every probe succeeded and returns the pods that answered (name → count). */
function answered(results: readonly ProbeResult[]): Map<string, number> {
  const failures = results.flatMap((r) => (r.ok ? [] : [r.error]));
  expect(failures, `failed requests: ${failures.slice(0, 5).join('; ')}`).toEqual([]);
  const counts = new Map<string, number>();
  for (const r of results) if (r.ok) counts.set(r.reply.pod, (counts.get(r.reply.pod) ?? 0) + 1);
  return counts;
}

function sources(results: readonly ProbeResult[]): string[] {
  return [...new Set(results.flatMap((r) => (r.ok ? [r.reply.sourceIP] : [])))].sort();
}

describe('real cluster smoke: upstream kube-proxy on two netns nodes', () => {
  let cluster: Cluster | undefined;
  let proxies: KubeProxy[] = [];
  let web: PodSet;
  let client: HarnessPod;
  let clusterIP: string;
  let nodePorts: { tcp: number; udp: number };
  let webPodNames: string[];

  const c = (): Cluster => {
    if (cluster === undefined) throw new Error('cluster did not start');
    return cluster;
  };

  beforeAll(async () => {
    requireRoot();
    const t0 = Date.now();
    cluster = await startCluster({ log });
    log(`cluster started in ${String(Date.now() - t0)} ms`);
    const t1 = Date.now();
    proxies = await Promise.all(cluster.nodes.map((node) => startKubeProxy(c(), node.name)));
    log(`kube-proxy synced on ${String(proxies.length)} nodes in ${String(Date.now() - t1)} ms`);

    const t2 = Date.now();
    // 2 pods on node-1, 1 on node-2, and a client pod on node-2.
    const [webSet, clientSet] = await Promise.all([
      createPods(cluster, { name: 'web', replicas: 3, nodes: ['node-1', 'node-2', 'node-1'] }),
      createPods(cluster, { name: 'client', replicas: 1, nodes: ['node-2'] }),
    ]);
    web = webSet;
    const first = clientSet.pods[0];
    if (first === undefined) throw new Error('client pod missing');
    client = first;
    webPodNames = web.pods.map((p) => p.name).sort();
    const svc = await createWebService(cluster, web.labels);
    clusterIP = svc.spec.clusterIP ?? '';
    const nodePort = (name: string): number => svc.spec.ports?.find((p) => p.name === name)?.nodePort ?? 0;
    nodePorts = { tcp: nodePort('http'), udp: nodePort('udp') };
    log(`service default/web clusterIP ${clusterIP}, nodePorts tcp ${String(nodePorts.tcp)} udp ${String(nodePorts.udp)}`);
    const ready = await waitForReadyEndpoints(cluster, 'default', 'web', 3);
    expect(ready).toEqual(web.pods.map((p) => p.ip).sort());
    for (const proxy of proxies) {
      await waitForProgrammedEndpoints(c(), proxy, 'default/web:http', 3);
      await waitForProgrammedEndpoints(c(), proxy, 'default/web:udp', 3);
    }
    log(`pods + service programmed by kube-proxy on both nodes in ${String(Date.now() - t2)} ms`);
  });

  afterEach((context) => {
    if (context.task.result?.state !== 'fail' || cluster === undefined) return;
    for (const proxy of proxies) log(`--- ${proxy.processName} log tail ---\n${cluster.logTail(proxy.processName, 20)}`);
  });

  afterAll(async () => {
    const t = Date.now();
    await cluster?.stop();
    log(`cluster stopped in ${String(Date.now() - t)} ms`);
  });

  it('publishes EndpointSlices with node names and zones from the Node objects', async () => {
    const slices = await c().api.get<{ items: { endpoints?: { addresses: string[]; nodeName?: string; zone?: string }[] }[] }>(
      '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb',
    );
    const endpoints = slices.items.flatMap((s) => s.endpoints ?? []).map((e) => `${e.addresses[0] ?? ''} ${e.nodeName ?? ''} ${e.zone ?? ''}`);
    expect(endpoints.sort()).toEqual(web.pods.map((p) => `${p.ip} ${p.node} ${c().node(p.node).zone}`).sort());
  });

  it('ClusterIP is reachable from a pod over TCP and UDP, spread over all 3 pods, source preserved', async () => {
    const tcp = await c().probe(client.netns, { protocol: 'tcp', host: clusterIP, port: 80, count: REQUESTS });
    expect([...answered(tcp).keys()].sort()).toEqual(webPodNames);
    expect(sources(tcp)).toEqual([client.ip]);
    const udp = await c().probe(client.netns, { protocol: 'udp', host: clusterIP, port: 80, count: REQUESTS });
    expect([...answered(udp).keys()].sort()).toEqual(webPodNames);
    expect(sources(udp)).toEqual([client.ip]);
    log(`pod -> ClusterIP tcp ${JSON.stringify(Object.fromEntries(answered(tcp)))} udp ${JSON.stringify(Object.fromEntries(answered(udp)))}`);
  });

  it('ClusterIP is reachable from each node, spread over all 3 pods', async () => {
    for (const node of c().nodes) {
      const tcp = await c().probe(node.netns, { protocol: 'tcp', host: clusterIP, port: 80, count: REQUESTS });
      expect([...answered(tcp).keys()].sort()).toEqual(webPodNames);
      const udp = await c().probe(node.netns, { protocol: 'udp', host: clusterIP, port: 80, count: REQUESTS });
      expect([...answered(udp).keys()].sort()).toEqual(webPodNames);
      log(`${node.name} -> ClusterIP sources seen by pods: ${sources(tcp).join(', ')}`);
    }
  });

  it('NodePort on every node is reachable from the external client, spread over all 3 pods', async () => {
    const ext = c().external;
    for (const node of c().nodes) {
      const tcp = await c().probe(ext.netns, { protocol: 'tcp', host: node.ip, port: nodePorts.tcp, count: REQUESTS });
      expect([...answered(tcp).keys()].sort()).toEqual(webPodNames);
      const udp = await c().probe(ext.netns, { protocol: 'udp', host: node.ip, port: nodePorts.udp, count: REQUESTS });
      expect([...answered(udp).keys()].sort()).toEqual(webPodNames);
      // externalTrafficPolicy Cluster: the client is masqueraded to the node it entered.
      const seen = sources(tcp);
      log(`external -> ${node.name} NodePort: sources seen by pods ${seen.join(', ')}`);
      expect(seen).not.toContain(ext.ip);
    }
  });

  it('pod servers are real processes in their own network namespaces', async () => {
    const pod = web.pods[0];
    if (pod === undefined) throw new Error('no pod');
    const direct = await c().probe(client.netns, { protocol: 'tcp', host: pod.ip, port: 8080, count: 1 });
    expect(answered(direct)).toEqual(new Map([[pod.name, 1]]));
    const addr = await c().exec(pod.netns, 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0']);
    expect(addr.stdout).toContain(`${pod.ip}/32`);
  });
});
