/**
 * The real upstream kube-proxy (iptables mode) inside a node's network namespace, configured as
 * the reference (§5) describes: the system:kube-proxy identity, hostnameOverride and bindAddress =
 * the node, the cluster CIDR, minSyncPeriod ~0 (10ms: a literal 0s is defaulted to 1s), localhostNodePorts false (no route_localnet
 * sysctl), conntrack maxPerCore 0 and timeouts 0s (no global sysctls written).
 */
import { writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { Cluster } from './cluster.ts';
import { waitFor } from './sys.ts';

export const KUBE_PROXY_HEALTHZ_PORT = 10256;

export interface KubeProxyOptions {
  /** Deep-merged over the harness's KubeProxyConfiguration (e.g. { iptables: { masqueradeAll: true } }). */
  readonly config?: Readonly<Record<string, unknown>>;
  /** klog verbosity (default 2: logs each sync with its duration). */
  readonly verbosity?: number;
  /** Wait for the first full sync before returning (default true). */
  readonly waitForSync?: boolean;
}

export interface KubeProxy {
  readonly node: string;
  readonly netns: string;
  /** The daemon's name in the cluster's process list and log directory. */
  readonly processName: string;
  readonly configPath: string;
  readonly healthzURL: string;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepMerge(base: Record<string, unknown>, over: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const current = out[key];
    out[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return out;
}

/** The KubeProxyConfiguration the harness runs kube-proxy with on `nodeName`. */
export function kubeProxyConfig(cluster: Cluster, nodeName: string, overrides: Readonly<Record<string, unknown>> = {}): Record<string, unknown> {
  const node = cluster.node(nodeName);
  const base: Record<string, unknown> = {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    clientConnection: { kubeconfig: cluster.state.kubeconfigs.kubeProxy },
    hostnameOverride: node.name,
    bindAddress: node.ip,
    healthzBindAddress: `0.0.0.0:${String(KUBE_PROXY_HEALTHZ_PORT)}`,
    metricsBindAddress: '127.0.0.1:10249',
    mode: 'iptables',
    clusterCIDR: cluster.state.clusterCIDR,
    detectLocalMode: 'ClusterCIDR',
    // The reference asks for 0s, but v1alpha1 defaulting turns a zero minSyncPeriod into 1s; 10ms is the practical "immediately".
    iptables: { minSyncPeriod: '10ms', syncPeriod: '30s', localhostNodePorts: false, masqueradeAll: false },
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s', udpTimeout: '0s', udpStreamTimeout: '0s', tcpBeLiberal: false },
  };
  return deepMerge(base, overrides);
}

export function kubeProxyProcessName(nodeName: string): string {
  return `kube-proxy-${nodeName}`;
}

/** Starts upstream kube-proxy in the node's namespace and (by default) waits for its first sync. */
export async function startKubeProxy(cluster: Cluster, nodeName: string, options: KubeProxyOptions = {}): Promise<KubeProxy> {
  const node = cluster.node(nodeName);
  const configPath = join(cluster.dir, `kube-proxy-${node.name}.yaml`);
  await writeFile(configPath, stringify(kubeProxyConfig(cluster, node.name, options.config ?? {})));
  const processName = kubeProxyProcessName(node.name);
  cluster.startDaemon(processName, join(cluster.state.binaries.k8s, 'kube-proxy'), [`--config=${configPath}`, `--v=${String(options.verbosity ?? 2)}`], { netns: node.netns });
  const proxy: KubeProxy = { node: node.name, netns: node.netns, processName, configPath, healthzURL: `http://${node.ip}:${String(KUBE_PROXY_HEALTHZ_PORT)}/healthz` };
  if (options.waitForSync ?? true) await waitForKubeProxySync(cluster, proxy);
  return proxy;
}

export async function stopKubeProxy(cluster: Cluster, proxy: KubeProxy): Promise<void> {
  await cluster.stopDaemon(proxy.processName);
}

export interface Healthz {
  /** The HTTP status (the JSON body has its own per-family `status` object, left out here). */
  readonly httpStatus: number;
  readonly healthy?: boolean;
  readonly lastUpdated?: string;
  readonly currentTime?: string;
  readonly nodeEligible?: boolean;
}

/** kube-proxy's /healthz (200 once it has synced recently, 503 before the first sync). */
export function kubeProxyHealthz(proxy: KubeProxy): Promise<Healthz> {
  return new Promise((resolve, reject) => {
    const req = get(proxy.healthzURL, { timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        try {
          const parsed = JSON.parse(body) as Omit<Healthz, 'httpStatus'>;
          resolve({
            httpStatus: res.statusCode ?? 0,
            ...(parsed.healthy === undefined ? {} : { healthy: parsed.healthy }),
            ...(parsed.lastUpdated === undefined ? {} : { lastUpdated: parsed.lastUpdated }),
            ...(parsed.currentTime === undefined ? {} : { currentTime: parsed.currentTime }),
            ...(parsed.nodeEligible === undefined ? {} : { nodeEligible: parsed.nodeEligible }),
          });
        } catch {
          resolve({ httpStatus: res.statusCode ?? 0 });
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/**
 * Waits until kube-proxy reports healthy with a sync at or after `since` (default: now minus
 * nothing, i.e. any sync) and two consecutive `iptables-save` dumps 300 ms apart are identical.
 */
export async function waitForKubeProxySync(cluster: Cluster, proxy: KubeProxy, options: { since?: Date; timeoutMs?: number } = {}): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const check = (): void => {
    cluster.assertAlive(proxy.processName);
  };
  await waitFor(
    `kube-proxy on ${proxy.node} to report a sync (${proxy.healthzURL})`,
    async () => {
      const health = await kubeProxyHealthz(proxy);
      if (health.httpStatus !== 200 || health.lastUpdated === undefined) throw new Error(`healthz answered ${JSON.stringify(health)}`);
      if (options.since !== undefined && Date.parse(health.lastUpdated) < options.since.getTime()) {
        throw new Error(`last sync ${health.lastUpdated} is older than ${options.since.toISOString()}`);
      }
      return true;
    },
    { timeoutMs, intervalMs: 200, check },
  );
  let previous = await cluster.iptablesSave(proxy.netns);
  return waitFor(
    `stable iptables rules in ${proxy.netns}`,
    async () => {
      const current = await cluster.iptablesSave(proxy.netns);
      const stable = current === previous;
      previous = current;
      return stable ? current : undefined;
    },
    { timeoutMs, intervalMs: 300, check },
  );
}

/**
 * The endpoints ("ip:port") kube-proxy programmed for a service port, read from the comments of
 * the KUBE-SVC-/KUBE-SVL- jump rules in `nat`: `--comment "ns/name:port -> 10.244.1.10:8080"`.
 */
export function programmedEndpoints(natDump: string, servicePortName: string): string[] {
  const found = new Set<string>();
  const marker = `${servicePortName} -> `;
  for (const line of natDump.split('\n')) {
    if (!/^-A KUBE-SV[CL]-/.test(line)) continue;
    const at = line.indexOf(marker);
    if (at < 0) continue;
    const rest = line.slice(at + marker.length);
    const endpoint = /^[0-9.:[\]a-f]+/.exec(rest)?.[0];
    if (endpoint !== undefined) found.add(endpoint);
  }
  return [...found].sort();
}

/** Waits until the proxy (kube-proxy or kpx) on `proxy.node` has programmed exactly `count` endpoints for `ns/name:port`. */
export async function waitForProgrammedEndpoints(cluster: Cluster, proxy: KubeProxy, servicePortName: string, count: number, timeoutMs = 30_000, intervalMs = 200): Promise<string[]> {
  return waitFor(
    `${proxy.processName} on ${proxy.node} to program ${String(count)} endpoints for ${servicePortName}`,
    async () => {
      const endpoints = programmedEndpoints(await cluster.iptablesSave(proxy.netns, 'nat'), servicePortName);
      return endpoints.length === count ? endpoints : undefined;
    },
    {
      timeoutMs,
      intervalMs,
      check: () => {
        cluster.assertAlive(proxy.processName);
      },
    },
  );
}
