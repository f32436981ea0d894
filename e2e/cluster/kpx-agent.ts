/**
 * kpx's node agent (`kpx run`) inside a node's network namespace, under the identity the Helm
 * chart creates: a ServiceAccount bound to kpx's least-privilege ClusterRole, authenticated with a
 * token minted through the TokenRequest API (what `kubectl create token` does). It runs with the
 * same KubeProxyConfiguration the harness gives the upstream kube-proxy, so both can be compared.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { Cluster } from './cluster.ts';
import { KUBE_PROXY_HEALTHZ_PORT, kubeProxyConfig, type KubeProxy } from './kube-proxy.ts';

const KPX_BIN = fileURLToPath(new URL('../../controller/bin/kpx.js', import.meta.url));

export const KPX_NAMESPACE = 'kube-system';
export const KPX_SERVICE_ACCOUNT = 'kpx';
export const KPX_METRICS_PORT = 10249;

/** The ClusterRole rules the chart grants kpx: system:node-proxier's plus kpx's own resources. */
export const KPX_CLUSTER_ROLE_RULES = [
  { apiGroups: [''], resources: ['services'], verbs: ['list', 'watch'] },
  { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
  { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['', 'events.k8s.io'], resources: ['events'], verbs: ['create', 'patch', 'update'] },
  { apiGroups: ['kpx.dev'], resources: ['nodeproxystatuses'], verbs: ['get', 'create', 'update', 'patch'] },
  { apiGroups: ['kpx.dev'], resources: ['nodeproxystatuses/status'], verbs: ['get', 'update', 'patch'] },
] as const;

export interface KpxAgent extends KubeProxy {
  readonly metricsURL: string;
}

async function ensure(cluster: Cluster, path: string, object: { metadata: { name: string } }): Promise<void> {
  try {
    await cluster.api.create(path, object);
  } catch (error) {
    if (!/AlreadyExists|409/.test((error as Error).message)) throw error;
    await cluster.api.replace(`${path}/${object.metadata.name}`, object);
  }
}

/** Creates kpx's ServiceAccount, ClusterRole and binding, and a kubeconfig with a fresh token. */
export async function installKpxIdentity(cluster: Cluster): Promise<string> {
  await ensure(cluster, `/api/v1/namespaces/${KPX_NAMESPACE}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: KPX_SERVICE_ACCOUNT, namespace: KPX_NAMESPACE } } as never);
  await ensure(cluster, '/apis/rbac.authorization.k8s.io/v1/clusterroles', { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'kpx' }, rules: KPX_CLUSTER_ROLE_RULES } as never);
  await ensure(cluster, '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: 'kpx' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'kpx' },
    subjects: [{ kind: 'ServiceAccount', name: KPX_SERVICE_ACCOUNT, namespace: KPX_NAMESPACE }],
  } as never);
  const token = await cluster.api.create<{ status: { token: string } }>(`/api/v1/namespaces/${KPX_NAMESPACE}/serviceaccounts/${KPX_SERVICE_ACCOUNT}/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: 24 * 3600 },
  });
  const path = join(cluster.dir, 'kpx.kubeconfig');
  await writeFile(
    path,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'harness', cluster: { server: cluster.state.apiserver.url, 'certificate-authority': cluster.credentials('admin').ca } }],
      users: [{ name: 'kpx', user: { token: token.status.token } }],
      contexts: [{ name: 'kpx', context: { cluster: 'harness', user: 'kpx' } }],
      'current-context': 'kpx',
    }),
  );
  return path;
}

export function kpxProcessName(nodeName: string): string {
  return `kpx-${nodeName}`;
}

export interface KpxOptions {
  readonly kubeconfig: string;
  /** Deep-merged KubeProxyConfiguration overrides, as for kube-proxy. */
  readonly config?: Readonly<Record<string, unknown>>;
  readonly args?: readonly string[];
}

/** Starts `kpx run` in the node's namespace (does not wait: see waitForKubeProxySync, which works for kpx too). */
export async function startKpx(cluster: Cluster, nodeName: string, options: KpxOptions): Promise<KpxAgent> {
  const node = cluster.node(nodeName);
  const configPath = join(cluster.dir, `kpx-${node.name}.yaml`);
  await writeFile(configPath, stringify(kubeProxyConfig(cluster, node.name, options.config ?? {})));
  const processName = kpxProcessName(node.name);
  cluster.startDaemon(
    processName,
    process.execPath,
    [
      KPX_BIN,
      'run',
      `--kubeconfig=${options.kubeconfig}`,
      `--config=${configPath}`,
      `--hostname-override=${node.name}`,
      `--metrics-bind-address=${node.ip}:${String(KPX_METRICS_PORT)}`,
      '--min-sync-period=10ms',
      ...(options.args ?? []),
    ],
    { netns: node.netns },
  );
  return {
    node: node.name,
    netns: node.netns,
    processName,
    configPath,
    healthzURL: `http://${node.ip}:${String(KUBE_PROXY_HEALTHZ_PORT)}/healthz`,
    metricsURL: `http://${node.ip}:${String(KPX_METRICS_PORT)}/metrics`,
  };
}
