/**
 * Pods without a kubelet, Deployment-style: each pod is a real network namespace behind its node's
 * pod bridge, running a real server (pod-server.ts: HTTP and UDP echo that report the pod's name
 * and the source address they saw), plus a Pod object bound to the node (spec.nodeName) whose
 * status is patched Running/Ready with the namespace's IP, the way kwok does it. The real
 * EndpointSlice controller then publishes it.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Cluster } from './cluster.ts';
import type { EndpointSliceList, ServiceObject } from './kube-client.ts';
import { allocatePod, createPodNetwork, deletePodNetwork } from './network.ts';
import type { PodState } from './state.ts';
import { tailFile, waitFor } from './sys.ts';

const POD_SERVER = join(dirname(fileURLToPath(import.meta.url)), 'pod-server.ts');

export interface PodSetSpec {
  /** Pods are named `<name>-<i>`. */
  readonly name: string;
  /** Kubernetes namespace (must exist); default 'default'. */
  readonly namespace?: string;
  readonly replicas: number;
  /** Placement: pod i goes to nodes[i % nodes.length]; default round robin over all nodes. */
  readonly nodes?: readonly string[];
  /** Default { app: name }. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Ports the HTTP server listens on (container ports named http, http-1, ...); default [8080]. */
  readonly tcpPorts?: readonly number[];
  /** Ports the UDP echo listens on (named udp, udp-1, ...); default [8080]. */
  readonly udpPorts?: readonly number[];
  /** Patch the Ready condition True (default) or False. */
  readonly ready?: boolean;
  /** Run the server process (default true); false gives addressable pods with nothing listening, e.g. for rule-only scenarios with many endpoints. */
  readonly serve?: boolean;
}

export interface HarnessPod {
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  readonly ip: string;
  /** The pod's network namespace, for cluster.exec / cluster.probe. */
  readonly netns: string;
}

export interface PodSet {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly pods: readonly HarnessPod[];
}

function serverName(pod: Pick<PodState, 'namespace' | 'name'>): string {
  return `pod-${pod.namespace}-${pod.name}`;
}

function conditions(ready: boolean, now: string): object[] {
  const status = (value: boolean): string => (value ? 'True' : 'False');
  return [
    { type: 'PodScheduled', status: 'True', lastTransitionTime: now },
    { type: 'Initialized', status: 'True', lastTransitionTime: now },
    { type: 'ContainersReady', status: status(ready), lastTransitionTime: now },
    { type: 'Ready', status: status(ready), lastTransitionTime: now },
  ];
}

const IMAGE = 'kpx.invalid/e2e/pod-server:harness';

function containerStatus(ready: boolean, startedAt: string): object {
  return { name: 'server', ready, started: true, restartCount: 0, image: IMAGE, imageID: '', state: { running: { startedAt } } };
}

async function createOne(cluster: Cluster, spec: PodSetSpec, pod: PodState, labels: Readonly<Record<string, string>>): Promise<HarnessPod> {
  const node = cluster.node(pod.node);
  const persist = (): void => {
    cluster.persist();
  };
  await createPodNetwork(cluster.state, persist, node, pod);
  const tcpPorts = spec.tcpPorts ?? [8080];
  const udpPorts = spec.udpPorts ?? [8080];

  if (spec.serve ?? true) {
    const name = serverName(pod);
    mkdirSync(join(cluster.dir, 'logs'), { recursive: true });
    const args = [POD_SERVER, '--name', pod.name, '--node', pod.node, ...tcpPorts.flatMap((p) => ['--tcp', String(p)]), ...udpPorts.flatMap((p) => ['--udp', String(p)])];
    cluster.startDaemon(name, process.execPath, args, { netns: pod.netns });
    const log = cluster.logPath(name);
    await waitFor(`pod server ${pod.namespace}/${pod.name} to listen`, () => Promise.resolve(existsSync(log) && readFileSync(log, 'utf8').includes('ready\n') ? true : undefined), {
      timeoutMs: 20_000,
      intervalMs: 50,
      check: () => {
        cluster.assertAlive(name);
      },
    }).catch((error: unknown) => {
      throw new Error(`${error instanceof Error ? error.message : String(error)}\n${tailFile(log, 20)}`);
    });
  }

  const ports = [
    ...tcpPorts.map((p, i) => ({ name: i === 0 ? 'http' : `http-${String(i)}`, containerPort: p, protocol: 'TCP' })),
    ...udpPorts.map((p, i) => ({ name: i === 0 ? 'udp' : `udp-${String(i)}`, containerPort: p, protocol: 'UDP' })),
  ];
  const base = `/api/v1/namespaces/${pod.namespace}/pods`;
  await cluster.api.create(base, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: pod.name, namespace: pod.namespace, labels },
    spec: {
      nodeName: pod.node,
      containers: [{ name: 'server', image: IMAGE, ports }],
    },
  });
  const now = new Date().toISOString();
  await cluster.api.patch(`${base}/${pod.name}/status`, {
    status: {
      phase: 'Running',
      podIP: pod.ip,
      podIPs: [{ ip: pod.ip }],
      hostIP: node.ip,
      hostIPs: [{ ip: node.ip }],
      startTime: now,
      conditions: conditions(spec.ready ?? true, now),
      containerStatuses: [containerStatus(spec.ready ?? true, now)],
    },
  });
  return { namespace: pod.namespace, name: pod.name, node: pod.node, ip: pod.ip, netns: pod.netns };
}

/** Creates `spec.replicas` pods in parallel; returns once every server listens and every Pod object is patched. */
export async function createPods(cluster: Cluster, spec: PodSetSpec): Promise<PodSet> {
  const namespace = spec.namespace ?? 'default';
  const labels = spec.labels ?? { app: spec.name };
  const placement = spec.nodes ?? cluster.nodes.map((n) => n.name);
  if (placement.length === 0) throw new Error('no nodes to place pods on');
  // Allocate synchronously (addresses, veth names), record, then build in parallel.
  const planned = Array.from({ length: spec.replicas }, (_, i) => {
    const name = `${spec.name}-${String(i)}`;
    if (cluster.state.pods.some((p) => p.namespace === namespace && p.name === name)) throw new Error(`pod ${namespace}/${name} already exists`);
    const pod = allocatePod(cluster.node(placement[i % placement.length] ?? ''), namespace, name);
    cluster.state.pods.push(pod);
    return pod;
  });
  cluster.persist();
  const pods = await Promise.all(planned.map((pod) => createOne(cluster, spec, pod, labels)));
  return { name: spec.name, namespace, labels, pods };
}

/** Flips a pod's Ready (and ContainersReady) condition with a strategic merge patch. */
export async function setPodReady(cluster: Cluster, pod: Pick<HarnessPod, 'namespace' | 'name'>, ready: boolean): Promise<void> {
  const status = ready ? 'True' : 'False';
  const now = new Date().toISOString();
  await cluster.api.patch(
    `/api/v1/namespaces/${pod.namespace}/pods/${pod.name}/status`,
    {
      status: {
        conditions: [
          { type: 'Ready', status, lastTransitionTime: now },
          { type: 'ContainersReady', status, lastTransitionTime: now },
        ],
        containerStatuses: [{ name: 'server', ready }],
      },
    },
    'strategic',
  );
}

/**
 * Deletes a pod. `graceful` (default false) only sets deletionTimestamp, since no kubelet finishes the
 * deletion: the pod stays, terminating, and keeps serving (terminating endpoints). Otherwise the
 * object is removed at once (gracePeriodSeconds=0) together with its server and namespace.
 */
export async function deletePod(cluster: Cluster, pod: Pick<HarnessPod, 'namespace' | 'name'>, options: { graceful?: boolean } = {}): Promise<void> {
  const path = `/api/v1/namespaces/${pod.namespace}/pods/${pod.name}`;
  if (options.graceful === true) {
    await cluster.api.delete(path, { gracePeriodSeconds: '30' });
    return;
  }
  await cluster.api.delete(path, { gracePeriodSeconds: '0' });
  const record = cluster.state.pods.find((p) => p.namespace === pod.namespace && p.name === pod.name);
  if (record === undefined) return;
  await cluster.stopDaemon(serverName(record));
  await deletePodNetwork(cluster.state, () => {
    cluster.persist();
  }, record);
  cluster.state.pods = cluster.state.pods.filter((p) => p !== record);
  cluster.persist();
}

/** The addresses of a Service's endpoints by condition, read from its EndpointSlices. */
export async function serviceEndpoints(cluster: Cluster, namespace: string, service: string): Promise<{ ready: string[]; serving: string[]; terminating: string[] }> {
  const list = await cluster.api.get<EndpointSliceList>(
    `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices?labelSelector=${encodeURIComponent(`kubernetes.io/service-name=${service}`)}`,
  );
  const out = { ready: [] as string[], serving: [] as string[], terminating: [] as string[] };
  for (const slice of list.items) {
    for (const ep of slice.endpoints ?? []) {
      const address = ep.addresses[0];
      if (address === undefined) continue;
      if (ep.conditions?.ready === true) out.ready.push(address);
      if (ep.conditions?.serving === true) out.serving.push(address);
      if (ep.conditions?.terminating === true) out.terminating.push(address);
    }
  }
  for (const list of Object.values(out)) list.sort();
  return out;
}

/** Waits until the Service's EndpointSlices list exactly `count` ready endpoints. */
export async function waitForReadyEndpoints(cluster: Cluster, namespace: string, service: string, count: number, timeoutMs = 30_000): Promise<string[]> {
  return waitFor(
    `${String(count)} ready endpoints for ${namespace}/${service}`,
    async () => {
      const { ready } = await serviceEndpoints(cluster, namespace, service);
      return ready.length === count ? ready : undefined;
    },
    { timeoutMs, intervalMs: 200 },
  );
}

/** The demo Service `default/web`: NodePort, TCP and UDP on port 80 → 8080 of the given pods. */
export async function createWebService(cluster: Cluster, selector: Readonly<Record<string, string>>): Promise<ServiceObject> {
  return cluster.api.create<ServiceObject>('/api/v1/namespaces/default/services', {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'default' },
    spec: {
      type: 'NodePort',
      selector,
      ports: [
        { name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 },
        { name: 'udp', protocol: 'UDP', port: 80, targetPort: 8080 },
      ],
    },
  });
}
