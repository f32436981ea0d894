/**
 * kpx's node agent (`kpx run`) inside a node's network namespace, under the identity the Helm
 * chart creates: the chart's own ServiceAccount, ClusterRole and ClusterRoleBinding (rendered by
 * the real helm from charts/kpx), authenticated with a token minted by `kubectl create token`. It
 * runs with the same KubeProxyConfiguration the harness gives the upstream kube-proxy, so both can
 * be compared.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { renderChartText } from '../chart/helm.ts';
import type { Cluster } from './cluster.ts';
import { KUBE_PROXY_HEALTHZ_PORT, kubeProxyConfig, type KubeProxy } from './kube-proxy.ts';

export const KPX_BIN = fileURLToPath(new URL('../../controller/bin/kpx.js', import.meta.url));

export const KPX_NAMESPACE = 'kube-system';
export const KPX_SERVICE_ACCOUNT = 'kpx';
export const KPX_METRICS_PORT = 10249;

export interface KpxAgent extends KubeProxy {
  readonly metricsURL: string;
}

/** A kubeconfig for the harness's apiserver that authenticates with `token`. */
export async function writeTokenKubeconfig(cluster: Cluster, path: string, token: string): Promise<void> {
  await writeFile(
    path,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'harness', cluster: { server: cluster.state.apiserver.url, 'certificate-authority': cluster.credentials('admin').ca } }],
      users: [{ name: 'kpx', user: { token } }],
      contexts: [{ name: 'kpx', context: { cluster: 'harness', user: 'kpx' } }],
      'current-context': 'kpx',
    }),
  );
}

/** A token for the chart's ServiceAccount, minted the way an operator would (`kubectl create token`). */
export async function mintKpxToken(cluster: Cluster): Promise<string> {
  return (await cluster.kubectl(['create', 'token', KPX_SERVICE_ACCOUNT, '--namespace', KPX_NAMESPACE, '--duration', '24h'])).trim();
}

/**
 * Applies the chart's ServiceAccount, ClusterRole and ClusterRoleBinding (helm template
 * --show-only: the RBAC has one source, charts/kpx) and writes a kubeconfig with a fresh token.
 */
export async function installKpxIdentity(cluster: Cluster): Promise<string> {
  const manifests = await renderChartText({
    extraArgs: ['--show-only', 'templates/serviceaccount.yaml', '--show-only', 'templates/clusterrole.yaml', '--show-only', 'templates/clusterrolebinding.yaml'],
  });
  await cluster.kubectl(['apply', '--server-side', '--field-manager=kpx-e2e', '-f', '-'], manifests);
  const path = join(cluster.dir, 'kpx.kubeconfig');
  await writeTokenKubeconfig(cluster, path, await mintKpxToken(cluster));
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
  return kpxAgentHandle(cluster, node.name, processName, configPath);
}

/** How tests reach an agent running in a node's namespace (healthz and metrics on the node IP). */
export function kpxAgentHandle(cluster: Cluster, nodeName: string, processName: string, configPath: string): KpxAgent {
  const node = cluster.node(nodeName);
  return {
    node: node.name,
    netns: node.netns,
    processName,
    configPath,
    healthzURL: `http://${node.ip}:${String(KUBE_PROXY_HEALTHZ_PORT)}/healthz`,
    metricsURL: `http://${node.ip}:${String(KPX_METRICS_PORT)}/metrics`,
  };
}
