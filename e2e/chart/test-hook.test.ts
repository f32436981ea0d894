/**
 * The chart's `helm test` Pod script, run offline: the real-cluster harness has no kubelet, so the
 * Pod itself runs only in kind (e2e/kind). Here the script is taken from the rendered Pod and run
 * with this Node against a fake cluster DNS server (UDP) and a fake API server (HTTPS with a CA of
 * its own), through KPX_TEST_ROOT's resolv.conf and service account files.
 *
 *   npx vitest run --config e2e/cluster/vitest.config.ts e2e/chart/test-hook.test.ts
 */
import type { IncomingHttpHeaders } from 'node:http';
import { createServer, type Server } from 'node:https';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPki, type Pki } from '../cluster/pki.ts';
import { startFakeDns, type FakeDns } from './fake-dns.ts';
import { findObject, renderChart } from './helm.ts';

const DOMAIN = 'kpx.test';
const NAME = `kubernetes.default.svc.${DOMAIN}`;
const TOKEN = 'fake-service-account-token';

interface Request {
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
}

let dir: string;
let script: string;
let pki: Pki;
let strangerPki: Pki;
let dns: FakeDns;
const apiServers: Server[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kpx-test-hook-'));
  const pod = findObject(await renderChart(), 'Pod', 'kpx-test') as unknown as { spec: { containers: { command: string[] }[] } };
  script = pod.spec.containers[0]?.command[2] ?? '';
  [pki, strangerPki] = await Promise.all([
    createPki(join(dir, 'pki'), { dnsNames: ['kubernetes.default.svc'], ipAddresses: ['127.0.0.1'] }),
    createPki(join(dir, 'stranger-pki'), { dnsNames: ['kubernetes.default.svc'], ipAddresses: ['127.0.0.1'] }),
  ]);
  dns = await startFakeDns({ [NAME]: '127.0.0.1' });
});

afterAll(async () => {
  await dns.close();
  for (const server of apiServers) server.close();
  await rm(dir, { recursive: true, force: true });
});

/** A fake API server answering GET /version with its serving certificate from pair. */
async function startApiServer(pair: Pki['apiserver'], requests: Request[]): Promise<number> {
  const server = createServer({ cert: await readFile(pair.cert), key: await readFile(pair.key) }, (req, res) => {
    requests.push({ url: req.url ?? '', headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ major: '1', minor: '99', gitVersion: 'v1.99.0-fake' }));
  });
  apiServers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the fake API server has no port');
  return address.port;
}

/** A pod's view: resolv.conf naming the fake DNS server and the cluster domain, and the service account files. */
async function podRoot(name: string, nameserver: string): Promise<string> {
  const root = join(dir, name);
  const serviceAccount = join(root, 'var/run/secrets/kubernetes.io/serviceaccount');
  await mkdir(join(root, 'etc'), { recursive: true });
  await mkdir(serviceAccount, { recursive: true });
  await writeFile(join(root, 'etc/resolv.conf'), `search kube-system.svc.${DOMAIN} svc.${DOMAIN} ${DOMAIN}\nnameserver ${nameserver}\noptions ndots:5\n`);
  await writeFile(join(serviceAccount, 'ca.crt'), await readFile(pki.ca.cert));
  await writeFile(join(serviceAccount, 'token'), `${TOKEN}\n`);
  return root;
}

async function runScript(root: string, apiPort: number): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const result = await execa(process.execPath, ['-e', script], {
    reject: false,
    extendEnv: false,
    env: { KPX_TEST_ROOT: root, KPX_TEST_TIMEOUT_SECONDS: '1', KUBERNETES_SERVICE_PORT: String(apiPort) },
    timeout: 60_000,
  });
  return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
}

describe('the helm test script (kpx-test)', () => {
  it('passes when cluster DNS answers over UDP and the API server answers /version with the service account CA', async () => {
    const requests: Request[] = [];
    const port = await startApiServer(pki.apiserver, requests);
    const result = await runScript(await podRoot('ok', dns.server), port);
    expect(result.stderr).toBe('');
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe(`kpx-test passed: ${NAME} is 127.0.0.1 (answered by ${dns.server} over UDP); GET https://127.0.0.1:${String(port)}/version answered v1.99.0-fake`);
    expect(dns.questions).toContain(`${NAME} 1`);
    expect(requests).toEqual([expect.objectContaining({ url: '/version', headers: expect.objectContaining({ authorization: `Bearer ${TOKEN}` }) as unknown })]);
  });

  it('fails naming the DNS Service when cluster DNS does not answer for kubernetes.default.svc', async () => {
    const port = await startApiServer(pki.apiserver, []);
    const silent = await startFakeDns({});
    try {
      const result = await runScript(await podRoot('no-dns', silent.server), port);
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain(`kpx-test FAILED: the cluster DNS Service ${silent.server} gave no address for ${NAME} over UDP`);
      expect(silent.questions).toContain(`${NAME} 1`);
    } finally {
      await silent.close();
    }
  });

  it('fails naming the kubernetes Service when the API server is not the one the service account CA signed', async () => {
    const requests: Request[] = [];
    const port = await startApiServer(strangerPki.apiserver, requests);
    const result = await runScript(await podRoot('stranger', dns.server), port);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`kpx-test FAILED: GET https://127.0.0.1:${String(port)}/version through the kubernetes Service's ClusterIP failed`);
    expect(result.stderr).toMatch(/certificate/);
    expect(requests).toEqual([]);
  });
});
