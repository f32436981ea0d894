/**
 * How the agent finds the API server: a kubeconfig file when given, otherwise the pod's service
 * account (in-cluster). An explicit host/port replaces the server address either way: on kind clusters
 * created with `kubeProxyMode: none` the `kubernetes` Service (KUBERNETES_SERVICE_HOST) has no rules
 * until kpx programs them, so kpx must dial the control plane directly.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { dirname } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';

export interface KubeconfigOptions {
  readonly kubeconfigPath?: string;
  readonly apiServerHost?: string;
  readonly apiServerPort?: number;
  /** Prefix of the service account paths (`<prefix>/var/run/secrets/kubernetes.io/serviceaccount/...`); default none. */
  readonly inClusterPathPrefix?: string;
}

/** The configuration cannot be loaded; the message is one line naming the file or setting. */
export class KubeconfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KubeconfigError';
  }
}

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

const ERRNO_TEXT: Readonly<Record<string, string>> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
};

function firstLine(text: string): string {
  return text.split('\n')[0]?.trim() ?? '';
}

function errnoText(err: unknown): string {
  const code = err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
  return (code === undefined ? undefined : ERRNO_TEXT[code]) ?? (err instanceof Error ? firstLine(err.message) : String(err));
}

function loadFile(kc: KubeConfig, path: string): void {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new KubeconfigError(`kubeconfig ${path}: ${errnoText(err)}`, { cause: err });
  }
  try {
    kc.loadFromString(text);
  } catch (err) {
    // The library reads YAML with js-yaml and validates entries; an empty file fails as a TypeError.
    const reason =
      err instanceof TypeError ? 'not a kubeconfig (no clusters, contexts or users)'
      : err instanceof Error && err.name === 'YAMLException' ? `not valid YAML: ${firstLine(err.message)}`
      : errnoText(err);
    throw new KubeconfigError(`kubeconfig ${path}: ${reason}`, { cause: err });
  }
  kc.makePathsAbsolute(dirname(path));
}

function loadInCluster(kc: KubeConfig, options: KubeconfigOptions): void {
  const prefix = options.inClusterPathPrefix ?? '';
  for (const file of ['token', 'ca.crt']) {
    const path = `${prefix}${SERVICE_ACCOUNT_DIR}/${file}`;
    if (!existsSync(path)) throw new KubeconfigError(`in-cluster config: ${path}: no such file (not running in a pod? give a kubeconfig)`);
  }
  const envComplete = process.env.KUBERNETES_SERVICE_HOST !== undefined && process.env.KUBERNETES_SERVICE_PORT !== undefined;
  if (!envComplete && (options.apiServerHost === undefined || options.apiServerPort === undefined)) {
    throw new KubeconfigError('in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set; give the API server host and port or a kubeconfig');
  }
  kc.loadFromCluster(prefix);
}

/** `server` with its host and/or port replaced; no trailing slash (paths are appended to it). */
function replaceServer(server: string, host: string | undefined, port: number | undefined): string {
  if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) {
    throw new KubeconfigError(`API server port ${String(port)} is not a port number (1-65535)`);
  }
  if (host?.trim() === '') throw new KubeconfigError('API server host is empty');
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    // In-cluster without the environment (checked above: host and port are both given).
    url = new URL('https://localhost');
  }
  if (host !== undefined) {
    const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
    url.hostname = isIPv6(bare) ? `[${bare}]` : bare;
    if (url.hostname === '') throw new KubeconfigError(`API server host "${host}" is not a host name or address`);
  }
  if (port !== undefined) url.port = String(port);
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
}

export function loadKubeConfig(options: KubeconfigOptions): KubeConfig {
  const kc = new KubeConfig();
  const source = options.kubeconfigPath === undefined ? 'in-cluster config' : `kubeconfig ${options.kubeconfigPath}`;
  if (options.kubeconfigPath === undefined) loadInCluster(kc, options);
  else loadFile(kc, options.kubeconfigPath);

  const contextName = kc.getCurrentContext();
  if (!contextName) throw new KubeconfigError(`${source}: no current-context`);
  const context = kc.getContextObject(contextName);
  if (context === null) throw new KubeconfigError(`${source}: current-context "${contextName}" not found`);
  const cluster = kc.getCluster(context.cluster);
  if (cluster === null) throw new KubeconfigError(`${source}: cluster "${context.cluster}" of context "${contextName}" not found`);

  // The library reads these on every request; a missing one would fail each list and watch instead.
  const user = kc.getUser(context.user);
  const files: [string, string | undefined][] = [
    ['certificate-authority', cluster.caFile],
    ['client-certificate', user?.certFile],
    ['client-key', user?.keyFile],
  ];
  for (const [field, file] of files) {
    if (file !== undefined && !existsSync(file)) throw new KubeconfigError(`${source}: ${field} ${file}: no such file`);
  }

  if (options.apiServerHost !== undefined || options.apiServerPort !== undefined) {
    const server = replaceServer(cluster.server, options.apiServerHost, options.apiServerPort);
    kc.clusters = kc.clusters.map((c) => (c === cluster ? { ...c, server } : c));
  } else if (!URL.canParse(cluster.server)) {
    throw new KubeconfigError(`${source}: server "${cluster.server}" of cluster "${cluster.name}" is not a URL`);
  }
  return kc;
}
