/**
 * kpx's custom resources and Node Events against the real kube-apiserver: the CRDs in crds/ are
 * accepted and established, the NodeProxyStatus writer creates a Node-owned object and writes a
 * full status (after reporting the CRD missing before it was installed), the schemas reject
 * invalid objects, the printer columns render, and the Event recorder aggregates a repeated event.
 *
 *   npx vitest run --config e2e/cluster/vitest.config.ts e2e/cluster/crds.test.ts     (root)
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonLogger } from '../../controller/src/agent/log.ts';
import { NodeEventRecorder } from '../../controller/src/kube/events.ts';
import { NodeProxyStatusWriter, type NodeProxyStatusBody } from '../../controller/src/kube/status.ts';
import { startCluster, type Cluster } from './cluster.ts';
import { KubeError } from './kube-client.ts';
import { requireRoot, waitFor } from './sys.ts';

const CRD_DIR = new URL('../../crds/', import.meta.url).pathname;
const CRDS = ['kpx.dev_nodeproxystatuses.yaml', 'kpx.dev_packettraces.yaml'];
const NPS = '/apis/kpx.dev/v1alpha1/nodeproxystatuses';
const PT = '/apis/kpx.dev/v1alpha1/packettraces';
const NODE = 'node-1';

function log(message: string): void {
  console.log(`[crds] ${message}`);
}

interface Table {
  readonly columnDefinitions: readonly { readonly name: string }[];
  readonly rows: readonly { readonly cells: readonly unknown[] }[];
}

/** GET as a server-side Table (what kubectl get prints), keyed by column name. */
function getTable(cluster: Cluster, path: string): Promise<Record<string, unknown>[]> {
  const creds = cluster.credentials('admin');
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, cluster.state.apiserver.url),
      { ca: readFileSync(creds.ca), cert: readFileSync(creds.cert), key: readFileSync(creds.key), headers: { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200) {
            reject(new Error(`GET ${path} as Table: HTTP ${String(res.statusCode)}: ${body}`));
            return;
          }
          const table = JSON.parse(body) as Table;
          resolve(table.rows.map((row) => Object.fromEntries(table.columnDefinitions.map((c, i) => [c.name, row.cells[i]]))));
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The apiserver's rejection of a request (HTTP status and message). */
async function rejection(attempt: Promise<unknown>): Promise<{ status: number; message: string }> {
  try {
    await attempt;
  } catch (error) {
    if (error instanceof KubeError) return { status: error.status, message: error.message };
    throw error;
  }
  throw new Error('the apiserver accepted the object');
}

describe('kpx CRDs, NodeProxyStatus and Node Events on a real kube-apiserver', () => {
  let cluster: Cluster | undefined;
  let kubeConfig: KubeConfig;
  let nodeUID: string;
  const c = (): Cluster => {
    if (cluster === undefined) throw new Error('cluster did not start');
    return cluster;
  };

  beforeAll(async () => {
    requireRoot();
    const t0 = Date.now();
    cluster = await startCluster({ nodes: 1, serviceAccountController: false });
    log(`cluster started in ${String(Date.now() - t0)} ms`);
    const creds = cluster.credentials('admin');
    kubeConfig = new KubeConfig();
    kubeConfig.loadFromOptions({
      clusters: [{ name: 'e2e', server: cluster.state.apiserver.url, caFile: creds.ca, skipTLSVerify: false }],
      users: [{ name: 'admin', certFile: creds.cert, keyFile: creds.key }],
      contexts: [{ name: 'e2e', cluster: 'e2e', user: 'admin' }],
      currentContext: 'e2e',
    });
    nodeUID = (await cluster.api.get<{ metadata: { uid: string } }>(`/api/v1/nodes/${NODE}`)).metadata.uid;
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it('reports the CRD missing, then writes a Node-owned NodeProxyStatus once the CRDs are established', async () => {
    const logs: { level: string; msg: string }[] = [];
    const writer = new NodeProxyStatusWriter({ kubeConfig, nodeName: NODE, log: jsonLogger({ write: (line) => logs.push(JSON.parse(line) as (typeof logs)[number]) }) });
    try {
      writer.setNodeUID(nodeUID);
      const now = new Date().toISOString();
      const status: NodeProxyStatusBody = {
        lastSyncTime: now,
        lastSyncKind: 'full',
        lastSyncDurationSeconds: 0.25,
        rulesPerTable: { filter: 4, nat: 37 },
        rulesetHash: 'sha256:0f3a',
        services: 3,
        servicePorts: 4,
        endpoints: 7,
        families: ['IPv4'],
        verification: { verdict: 'Passed', checks: 112, violations: [] },
        drift: { detections: 1, lastDetectionTime: now, lastReason: 'KUBE-SERVICES missing from nat' },
        conditions: [
          { type: 'Ready', status: 'True', reason: 'RulesApplied', message: 'rules for 4 service ports applied', lastTransitionTime: now },
          { type: 'Verified', status: 'True', reason: 'VerificationPassed', message: '112 checks passed', lastTransitionTime: now },
          { type: 'Drifted', status: 'False', reason: 'DriftRepaired', message: 'nat rules restored', lastTransitionTime: now },
        ],
      };
      writer.update(status);
      await writer.flush();
      expect(writer.failures).toBe(1);
      expect(logs.map((l) => `${l.level} ${l.msg}`)).toEqual(['warn NodeProxyStatus CRD not installed; status reporting disabled until it is']);

      for (const file of CRDS) await c().api.create('/apis/apiextensions.k8s.io/v1/customresourcedefinitions', parse(readFileSync(join(CRD_DIR, file), 'utf8')));
      for (const name of ['nodeproxystatuses.kpx.dev', 'packettraces.kpx.dev']) {
        await waitFor(
          `CRD ${name} Established`,
          async () => {
            const crd = await c().api.get<{ status?: { conditions?: { type: string; status: string }[] } }>(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
            return crd.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True') === true ? true : undefined;
          },
          { timeoutMs: 20_000, intervalMs: 100 },
        );
      }

      writer.update(status);
      await writer.flush();
      expect(writer.writes).toBe(1);
      const stored = await c().api.get<{ metadata: { ownerReferences?: unknown[] }; status: unknown }>(`${NPS}/${NODE}`);
      expect(stored.metadata.ownerReferences).toEqual([{ apiVersion: 'v1', kind: 'Node', name: NODE, uid: nodeUID }]);
      expect(stored.status).toEqual(status);
      expect(logs.at(-1)).toMatchObject({ level: 'info', msg: 'NodeProxyStatus CRD found; status reporting enabled' });
    } finally {
      await writer.stop();
    }
  });

  it('shows every node at a glance in the printer columns', async () => {
    const rows = await getTable(c(), NPS);
    expect(rows).toEqual([{ Name: NODE, Ready: 'True', Verified: 'Passed', Sync: 'full', 'Last Sync': expect.stringMatching(/^\d+s$/) as unknown, Duration: 0.25, 'NAT Rules': 37, Drift: 1, Age: expect.any(String) as unknown }]);
  });

  it('rejects a NodeProxyStatus with an unknown verdict', async () => {
    const bad = await rejection(c().api.patch(`${NPS}/${NODE}/status`, { status: { verification: { verdict: 'Maybe', checks: 1 } } }));
    expect(bad.status).toBe(422);
    expect(bad.message).toContain('status.verification.verdict');
  });

  it('accepts a valid PacketTrace (protocol defaults to TCP), its status with a null destination, and rejects invalid ones', async () => {
    await c().api.create(PT, { apiVersion: 'kpx.dev/v1alpha1', kind: 'PacketTrace', metadata: { name: 'dns' }, spec: { node: NODE, source: '10.244.1.5', destination: '10.96.0.10', port: 53 } });
    await c().api.create(PT, { apiVersion: 'kpx.dev/v1alpha1', kind: 'PacketTrace', metadata: { name: 'v6' }, spec: { node: NODE, source: '2001:db8::1', destination: 'fd00::10', port: 443, protocol: 'UDP', inInterface: 'eth0' } });
    const outcome = { probability: 1, verdict: 'REJECT', matched: true, destination: null, masquerade: false, source: '10.244.1.5', path: [{ table: 'filter', chain: 'KUBE-SERVICES', rule: '-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -j REJECT', line: 9 }] };
    await c().api.patch(`${PT}/dns/status`, [{ op: 'add', path: '/status', value: { phase: 'Completed', observedGeneration: 1, outcomes: [outcome] } }], 'json');
    const dns = await c().api.get<{ spec: { protocol: string }; status: { outcomes: unknown[] } }>(`${PT}/dns`);
    expect(dns.spec.protocol).toBe('TCP');
    expect(dns.status.outcomes).toEqual([outcome]);

    const spec = { node: NODE, source: '10.244.1.5', destination: '10.96.0.10', port: 80 };
    const invalid: [string, Record<string, unknown>, string][] = [
      ['port', { ...spec, port: 70000 }, 'spec.port'],
      ['protocol', { ...spec, protocol: 'ICMP' }, 'spec.protocol'],
      ['source', { ...spec, source: '10.244.1' }, 'spec.source'],
      ['node', { ...spec, node: 'Node_1' }, 'spec.node'],
    ];
    for (const [name, badSpec, field] of invalid) {
      const bad = await rejection(c().api.create(PT, { apiVersion: 'kpx.dev/v1alpha1', kind: 'PacketTrace', metadata: { name: `bad-${name}` }, spec: badSpec }));
      expect(bad.status, name).toBe(422);
      expect(bad.message, name).toContain(field);
    }
    const missing = await rejection(c().api.create(PT, { apiVersion: 'kpx.dev/v1alpha1', kind: 'PacketTrace', metadata: { name: 'bad-missing' }, spec: { node: NODE, source: '10.244.1.5' } }));
    expect(missing.message).toMatch(/spec\.destination: Required value[\s\S]*spec\.port: Required value|spec\.port: Required value[\s\S]*spec\.destination: Required value/);

    const rows = await getTable(c(), PT);
    const age = expect.any(String) as unknown;
    expect(rows).toEqual([
      { Name: 'dns', Node: NODE, Destination: '10.96.0.10', Port: 53, Protocol: 'TCP', Phase: 'Completed', Age: age },
      { Name: 'v6', Node: NODE, Destination: 'fd00::10', Port: 443, Protocol: 'UDP', Phase: null, Age: age },
    ]);
  });

  it('records a Node Event and aggregates the identical one into count 2', async () => {
    const recorder = new NodeEventRecorder({ kubeConfig, nodeName: NODE, log: jsonLogger({ write: (line) => { log(line.trimEnd()); } }) });
    recorder.setNodeUID(nodeUID);
    recorder.record('Warning', 'VerificationFailed', 'compiled rules not applied: 1 violation; keeping the last good rules');
    recorder.record('Warning', 'VerificationFailed', 'compiled rules not applied: 1 violation; keeping the last good rules');
    await recorder.stop();
    const events = await c().api.get<{ items: { count: number; type: string; involvedObject: { kind: string; name: string; uid: string }; source: { component: string }; reportingComponent: string }[] }>(
      `/api/v1/namespaces/default/events?fieldSelector=${encodeURIComponent(`involvedObject.name=${NODE},reason=VerificationFailed`)}`,
    );
    expect(events.items).toHaveLength(1);
    expect(events.items[0]).toMatchObject({ count: 2, type: 'Warning', involvedObject: { kind: 'Node', name: NODE, uid: nodeUID }, source: { component: 'kpx' }, reportingComponent: 'kpx' });
  });
});
