// kpx's `helm test` (templates/tests/test-service.yaml runs it with the kpx image's node -e):
// Services work through kpx's rules when (1) the cluster DNS Service's ClusterIP answers a UDP
// query for kubernetes.default.svc and (2) the kubernetes Service's ClusterIP reaches the API server
// (HTTPS GET /version, verified with the service account's CA). Exits 1 with the reason otherwise.
// KPX_TEST_ROOT (a prefix for the files read) and KPX_TEST_TIMEOUT_SECONDS exist for the chart's
// offline test (e2e/chart); the pod sets neither.
'use strict';
const dns = require('node:dns');
const fs = require('node:fs');
const https = require('node:https');

const root = process.env.KPX_TEST_ROOT ?? '';
const serviceAccount = `${root}/var/run/secrets/kubernetes.io/serviceaccount`;
const deadline = Date.now() + Number(process.env.KPX_TEST_TIMEOUT_SECONDS ?? '120') * 1000;

function fail(message) {
  console.error(`kpx-test FAILED: ${message}`);
  process.exit(1);
}

/** The first nameserver and the cluster domain (from the "svc.<domain>" search entry). */
function clusterDns() {
  const lines = fs.readFileSync(`${root}/etc/resolv.conf`, 'utf8').split('\n').map((l) => l.trim().split(/\s+/));
  const nameserver = lines.find((w) => w[0] === 'nameserver')?.[1];
  const search = lines.filter((w) => w[0] === 'search').flatMap((w) => w.slice(1));
  const svc = search.find((d) => d.startsWith('svc.'));
  if (nameserver === undefined) fail(`${root}/etc/resolv.conf names no nameserver (is the pod's dnsPolicy ClusterFirst?)`);
  return { nameserver, domain: svc === undefined ? 'cluster.local' : svc.slice('svc.'.length) };
}

/** Retries attempt every 2 s until the deadline; then fails with what and the last error. */
async function retry(what, attempt) {
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() >= deadline) fail(`${what}: ${error.message}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

async function resolveName(resolver, name) {
  try {
    return await resolver.resolve4(name);
  } catch (error) {
    if (error.code === 'ENODATA') return resolver.resolve6(name); // an IPv6-only cluster
    throw error;
  }
}

function getVersion(address, port, ca, token) {
  return new Promise((resolve, reject) => {
    const request = https.get(
      {
        host: address,
        port,
        path: '/version',
        ca,
        servername: 'kubernetes.default.svc', // a name every API server certificate carries
        headers: token === undefined ? {} : { Authorization: `Bearer ${token}` },
        timeout: 5000,
      },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk) => { body += chunk; });
        response.on('end', () => {
          if (response.statusCode !== 200) return reject(new Error(`HTTP ${response.statusCode}: ${body.slice(0, 200)}`));
          try {
            resolve(JSON.parse(body));
          } catch {
            reject(new Error(`the answer is not JSON: ${body.slice(0, 200)}`));
          }
        });
      },
    );
    request.on('timeout', () => request.destroy(new Error('no answer within 5 s')));
    request.on('error', reject);
  });
}

async function main() {
  const { nameserver, domain } = clusterDns();
  const name = `kubernetes.default.svc.${domain}`;
  const resolver = new dns.promises.Resolver({ timeout: 3000, tries: 1 });
  resolver.setServers([nameserver]);
  const addresses = await retry(
    `the cluster DNS Service ${nameserver} gave no address for ${name} over UDP (are kpx's rules for kube-system/kube-dns in place, and is CoreDNS running?)`,
    () => resolveName(resolver, name),
  );
  const address = addresses[0];
  const port = Number(process.env.KUBERNETES_SERVICE_PORT ?? '443');
  const url = `https://${address.includes(':') ? `[${address}]` : address}:${port}/version`;
  const ca = fs.readFileSync(`${serviceAccount}/ca.crt`);
  const token = fs.existsSync(`${serviceAccount}/token`) ? fs.readFileSync(`${serviceAccount}/token`, 'utf8').trim() : undefined;
  const version = await retry(
    `GET ${url} through the kubernetes Service's ClusterIP failed (are kpx's rules for default/kubernetes in place?)`,
    () => getVersion(address, port, ca, token),
  );
  console.log(`kpx-test passed: ${name} is ${addresses.join(', ')} (answered by ${nameserver} over UDP); GET ${url} answered ${version.gitVersion}`);
}

main().catch((error) => fail(error.stack ?? String(error)));
