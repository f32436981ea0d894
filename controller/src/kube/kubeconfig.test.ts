import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpMethod, RequestContext } from '@kubernetes/client-node';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FakeApiServer } from './fake-apiserver.ts';
import { listObjects } from './informer.ts';
import { KubeconfigError, loadKubeConfig } from './kubeconfig.ts';

let dir: string;
const cleanups: (() => Promise<void> | void)[] = [];

function tempDir(): string {
  dir = mkdtempSync(join(tmpdir(), 'kpx-kubeconfig-'));
  const created = dir;
  cleanups.push(() => {
    rmSync(created, { recursive: true, force: true });
  });
  return dir;
}

afterEach(async () => {
  vi.unstubAllEnvs();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function kubeconfigFile(server: string, extraCluster = ''): string {
  const path = join(tempDir(), 'config');
  writeFileSync(
    path,
    `apiVersion: v1
kind: Config
current-context: kind-kpx
clusters:
- name: kind-kpx
  cluster:
    server: ${server}
${extraCluster}users:
- name: kind-kpx
  user:
    token: file-token
contexts:
- name: kind-kpx
  context: {cluster: kind-kpx, user: kind-kpx}
`,
  );
  return path;
}

function errorOf(fn: () => unknown): KubeconfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof KubeconfigError) return err;
    throw err;
  }
  throw new Error('expected a KubeconfigError');
}

async function authorizationOf(kc: ReturnType<typeof loadKubeConfig>): Promise<string | undefined> {
  const request = new RequestContext('https://example.invalid/api', HttpMethod.GET);
  await kc.applySecurityAuthentication(request);
  return request.getHeaders().Authorization;
}

describe('loadKubeConfig from a file', () => {
  it('loads the current context and makes relative file paths absolute', async () => {
    const path = kubeconfigFile('https://127.0.0.1:6443', '    certificate-authority: ca.crt\n');
    writeFileSync(join(dir, 'ca.crt'), 'not parsed until TLS');
    const kc = loadKubeConfig({ kubeconfigPath: path });

    expect(kc.getCurrentCluster()).toMatchObject({ name: 'kind-kpx', server: 'https://127.0.0.1:6443', caFile: join(dir, 'ca.crt') });
    expect(await authorizationOf(kc)).toBe('Bearer file-token');
  });

  it.each([
    [{ apiServerHost: '172.18.0.2', apiServerPort: 6443 }, 'https://172.18.0.2:6443'],
    [{ apiServerHost: 'kpx-control-plane' }, 'https://kpx-control-plane:41234'],
    [{ apiServerPort: 7443 }, 'https://127.0.0.1:7443'],
    [{ apiServerHost: 'fd00::2', apiServerPort: 6443 }, 'https://[fd00::2]:6443'],
    [{ apiServerHost: '[fd00::2]' }, 'https://[fd00::2]:41234'],
  ])('replaces the server address with %o', (override, server) => {
    const kc = loadKubeConfig({ kubeconfigPath: kubeconfigFile('https://127.0.0.1:41234'), ...override });

    expect(kc.getCurrentCluster()?.server).toBe(server);
  });

  it('talks to the overridden address', async () => {
    const server = await FakeApiServer.start();
    cleanups.push(() => server.close());
    server.put('/api/v1/services', { apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default', name: 'kubernetes' } });
    const port = Number(new URL(server.url).port);
    // The file names an address nothing listens on, as a kind kubeconfig does from inside a node.
    const kc = loadKubeConfig({
      kubeconfigPath: kubeconfigFile('http://192.0.2.1:1', '    insecure-skip-tls-verify: true\n'),
      apiServerHost: '127.0.0.1',
      apiServerPort: port,
    });

    const list = await listObjects(kc, '/api/v1/services', {}, new AbortController().signal);

    expect(list.items.map((o) => o.metadata?.name)).toEqual(['kubernetes']);
    expect(server.requests).toHaveLength(1);
  });

  it('reports a missing file in one line', () => {
    const error = errorOf(() => loadKubeConfig({ kubeconfigPath: '/nonexistent/kpx/config' }));

    expect(error.message).toBe('kubeconfig /nonexistent/kpx/config: no such file');
    expect(error.name).toBe('KubeconfigError');
  });

  it.each([
    ['', 'not valid YAML: expected a document, but the input is empty'],
    ['~\n', 'not a kubeconfig (no clusters, contexts or users)'],
    ['clusters: [\n  - name: x\n  bad', /^not valid YAML: missed comma between flow collection entries/],
    ['apiVersion: v1\nkind: Config\nclusters: []\n', 'no current-context'],
    ['current-context: ghost\n', 'current-context "ghost" not found'],
    ['current-context: c\ncontexts:\n- name: c\n  context: {cluster: gone, user: u}\n', 'cluster "gone" of context "c" not found'],
    ['current-context: c\nclusters:\n- name: k\n  cluster: {}\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n', 'clusters[0].cluster.server is missing'],
  ])('reports a broken file in one line (%j)', (text, reason) => {
    const path = join(tempDir(), 'config');
    writeFileSync(path, text);
    const error = errorOf(() => loadKubeConfig({ kubeconfigPath: path }));

    expect(error.message).not.toContain('\n');
    expect(error.message.startsWith(`kubeconfig ${path}: `)).toBe(true);
    const detail = error.message.slice(`kubeconfig ${path}: `.length);
    if (typeof reason === 'string') expect(detail).toBe(reason);
    else expect(detail).toMatch(reason);
  });

  it('reports a missing certificate file when loading, not on every request', () => {
    const path = kubeconfigFile('https://127.0.0.1:6443', '    certificate-authority: missing-ca.crt\n');
    const error = errorOf(() => loadKubeConfig({ kubeconfigPath: path }));

    expect(error.message).toBe(`kubeconfig ${path}: certificate-authority ${join(dir, 'missing-ca.crt')}: no such file`);
  });

  it('rejects a port that is not a port number', () => {
    const error = errorOf(() => loadKubeConfig({ kubeconfigPath: kubeconfigFile('https://127.0.0.1:6443'), apiServerPort: 70000 }));

    expect(error.message).toBe('API server port 70000 is not a port number (1-65535)');
  });
});

describe('loadKubeConfig in-cluster', () => {
  function serviceAccount(files: Record<string, string> = { token: 'sa-token', 'ca.crt': 'not checked until TLS', namespace: 'kube-system' }): string {
    const prefix = tempDir();
    const sa = join(prefix, 'var/run/secrets/kubernetes.io/serviceaccount');
    mkdirSync(sa, { recursive: true });
    for (const [name, content] of Object.entries(files)) writeFileSync(join(sa, name), content);
    return prefix;
  }

  it('uses the service account token and the KUBERNETES_SERVICE_* address', async () => {
    vi.stubEnv('KUBERNETES_SERVICE_HOST', '10.96.0.1');
    vi.stubEnv('KUBERNETES_SERVICE_PORT', '443');
    const prefix = serviceAccount();
    const kc = loadKubeConfig({ inClusterPathPrefix: prefix });

    expect(kc.getCurrentCluster()).toMatchObject({ server: 'https://10.96.0.1:443', caFile: `${prefix}/var/run/secrets/kubernetes.io/serviceaccount/ca.crt` });
    expect(await authorizationOf(kc)).toBe('Bearer sa-token');
  });

  it('replaces the Service address with the given host and port (no environment needed)', () => {
    vi.stubEnv('KUBERNETES_SERVICE_HOST', undefined);
    vi.stubEnv('KUBERNETES_SERVICE_PORT', undefined);
    const kc = loadKubeConfig({ inClusterPathPrefix: serviceAccount(), apiServerHost: '172.18.0.2', apiServerPort: 6443 });

    expect(kc.getCurrentCluster()?.server).toBe('https://172.18.0.2:6443');
  });

  it('overrides only the host, keeping the Service port', () => {
    vi.stubEnv('KUBERNETES_SERVICE_HOST', '10.96.0.1');
    vi.stubEnv('KUBERNETES_SERVICE_PORT', '6443');
    const kc = loadKubeConfig({ inClusterPathPrefix: serviceAccount(), apiServerHost: '172.18.0.2' });

    expect(kc.getCurrentCluster()?.server).toBe('https://172.18.0.2:6443');
  });

  it('says what is missing outside a pod', () => {
    vi.stubEnv('KUBERNETES_SERVICE_HOST', undefined);
    vi.stubEnv('KUBERNETES_SERVICE_PORT', undefined);
    const prefix = serviceAccount();
    expect(errorOf(() => loadKubeConfig({ inClusterPathPrefix: prefix })).message).toBe(
      'in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set; give the API server host and port or a kubeconfig',
    );

    const empty = serviceAccount({});
    expect(errorOf(() => loadKubeConfig({ inClusterPathPrefix: empty, apiServerHost: 'h', apiServerPort: 1 })).message).toBe(
      `in-cluster config: ${empty}/var/run/secrets/kubernetes.io/serviceaccount/token: no such file (not running in a pod? give a kubeconfig)`,
    );
  });
});
