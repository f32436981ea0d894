/**
 * The cluster's PKI, made with the openssl CLI: one CA, the apiserver's serving certificate, client
 * certificates (x509 client-cert authentication: CN = user, O = groups) and the service-account
 * signing key pair. Leaf keys are EC P-256 (fast to generate; Go and Node read OpenSSL 3's PKCS#8),
 * the service-account key is RSA 2048.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './sys.ts';

export interface CertPair {
  readonly cert: string;
  readonly key: string;
}

export interface Pki {
  readonly dir: string;
  readonly ca: CertPair;
  readonly apiserver: CertPair;
  /** CN=kpx-admin, O=system:masters. */
  readonly admin: CertPair;
  /** CN=system:kube-proxy: the built-in binding system:node-proxier grants kube-proxy's permissions. */
  readonly kubeProxy: CertPair;
  readonly serviceAccount: { readonly privateKey: string; readonly publicKey: string };
}

export interface PkiOptions {
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-noenc'];

function subjectLines(cn: string, orgs: readonly string[]): string {
  // Multi-valued O needs numbered keys in the distinguished_name section.
  return [`CN = ${cn}`, ...orgs.map((o, i) => `${String(i)}.O = ${o}`)].join('\n');
}

async function config(dir: string, name: string, cn: string, orgs: readonly string[], extensions: readonly string[]): Promise<string> {
  const path = join(dir, `${name}.cnf`);
  const text = ['[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', subjectLines(cn, orgs), '[ext]', ...extensions, ''].join('\n');
  await writeFile(path, text);
  return path;
}

async function leaf(dir: string, ca: CertPair, name: string, cn: string, orgs: readonly string[], extensions: readonly string[]): Promise<CertPair> {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const cnf = await config(dir, name, cn, orgs, [
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature, keyEncipherment',
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid',
    ...extensions,
  ]);
  await run('openssl', ['req', '-x509', '-new', '-config', cnf, '-extensions', 'ext', ...EC_KEY, '-keyout', pair.key, '-out', pair.cert, '-days', '365', '-CA', ca.cert, '-CAkey', ca.key]);
  return pair;
}

export async function createPki(dir: string, options: PkiOptions): Promise<Pki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
  const caConfig = await config(dir, 'ca', 'kpx-e2e-ca', [], [
    'basicConstraints = critical, CA:TRUE',
    'keyUsage = critical, keyCertSign, cRLSign, digitalSignature',
    'subjectKeyIdentifier = hash',
  ]);
  await run('openssl', ['req', '-x509', '-new', '-config', caConfig, '-extensions', 'ext', ...EC_KEY, '-keyout', ca.key, '-out', ca.cert, '-days', '3650']);

  const san = [...options.dnsNames.map((d) => `DNS:${d}`), ...options.ipAddresses.map((ip) => `IP:${ip}`)].join(', ');
  const saPrivate = join(dir, 'sa.key');
  const saPublic = join(dir, 'sa.pub');
  const [apiserver, admin, kubeProxy] = await Promise.all([
    leaf(dir, ca, 'apiserver', 'kube-apiserver', [], ['extendedKeyUsage = serverAuth', `subjectAltName = ${san}`]),
    leaf(dir, ca, 'admin', 'kpx-admin', ['system:masters'], ['extendedKeyUsage = clientAuth']),
    leaf(dir, ca, 'kube-proxy', 'system:kube-proxy', [], ['extendedKeyUsage = clientAuth']),
    (async () => {
      await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', saPrivate]);
      await run('openssl', ['pkey', '-in', saPrivate, '-pubout', '-out', saPublic]);
    })(),
  ]);
  return { dir, ca, apiserver, admin, kubeProxy, serviceAccount: { privateKey: saPrivate, publicKey: saPublic } };
}

/** Mints one more client certificate (CN = user, O = groups) from an existing CA, e.g. for a test identity. */
export async function createClientCert(dir: string, ca: CertPair, name: string, user: string, groups: readonly string[] = []): Promise<CertPair> {
  return leaf(dir, ca, name, user, groups, ['extendedKeyUsage = clientAuth']);
}
