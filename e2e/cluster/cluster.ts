/**
 * A real Kubernetes control plane on one machine, without Docker or kubelets: etcd,
 * kube-apiserver and kube-controller-manager (EndpointSlice controller and friends, none of the
 * controllers that need kubelets) as processes, nodes as network namespaces on a host bridge, an
 * external client namespace, Node objects with InternalIPs and zone labels.
 *
 *   const cluster = await startCluster({ nodes: 2 });
 *   try { ... cluster.api / createPods(cluster, ...) / startKubeProxy(cluster, 'node-1') ... }
 *   finally { await cluster.stop(); }
 *
 * See docs/e2e.md and ../shared/reference/real-cluster-harness.md.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { KubeClient, KubeError } from './kube-client.ts';
import { BRIDGE_IP, CLUSTER_CIDR, createNetwork, EXTERNAL_IP, HOST_BRIDGE, nodePlan } from './network.ts';
import { createPki, type CertPair, type Pki } from './pki.ts';
import type { HeldConnection, HeldSpec, ProbeResult, ProbeSpec } from './probe.ts';
import {
  defaultStateDir,
  listOurHostLinks,
  listOurNetns,
  loadState,
  processAlive,
  RESOURCE_PREFIX,
  saveState,
  teardown,
  type ClusterState,
  type NodeState,
} from './state.ts';
import { inNetns, killProcess, requireRoot, run, startDaemon, tailFile, tryRun, waitFor, type Daemon, type RunResult } from './sys.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const PROBE_SCRIPT = join(HERE, 'probe.ts');
const BUILD_SCRIPT = join(HERE, '..', 'build', 'build-binaries.sh');

export interface ClusterOptions {
  /** Where state, logs, PKI and kubeconfigs go; default $KPX_CLUSTER_DIR or /tmp/kpx-cluster. */
  readonly stateDir?: string;
  /** Number of node namespaces (default 2, at most 80). */
  readonly nodes?: number;
  /** Zone label per node, round robin (default zone-a, zone-b). */
  readonly zones?: readonly string[];
  /** 'cli' clusters survive their starter (make cluster-up); 'test' clusters are cleaned up by the next test if their owner died. */
  readonly owner?: 'test' | 'cli';
  readonly serviceCIDR?: string;
  readonly apiserverPort?: number;
  /** etcd client port on 127.0.0.1; the peer port is the next one. */
  readonly etcdPort?: number;
  /** Also run the serviceaccount controller (creates `default` ServiceAccounts). Default true. */
  readonly serviceAccountController?: boolean;
  /** Progress messages (default: silent). */
  readonly log?: (message: string) => void;
  /** Audit every request these users make (metadata level) to <dir>/logs/audit.log; see Cluster.auditEvents. */
  readonly auditUsers?: readonly string[];
}

/** One audited request (the fields the tests read). */
export interface AuditEvent {
  readonly verb: string;
  readonly user: { readonly username: string };
  readonly objectRef?: { readonly resource?: string; readonly subresource?: string; readonly apiGroup?: string; readonly name?: string };
  readonly responseStatus?: { readonly code?: number };
  readonly stage: string;
}

export interface Binaries {
  readonly k8s: string;
  readonly etcd: string;
}

/** The pinned binaries: $KPX_BIN_K8S / $KPX_BIN_ETCD, else what e2e/build/build-binaries.sh --print-env reports. */
export async function findBinaries(): Promise<Binaries> {
  let k8s = process.env.KPX_BIN_K8S;
  let etcd = process.env.KPX_BIN_ETCD;
  if (k8s === undefined || etcd === undefined) {
    const result = await tryRun('bash', [BUILD_SCRIPT, '--print-env']);
    if (result.exitCode !== 0) {
      throw new Error(`the Kubernetes/etcd binaries are not built yet (${BUILD_SCRIPT} --print-env exited ${String(result.exitCode)}); run: bash e2e/build/build-binaries.sh`);
    }
    for (const line of result.stdout.split('\n')) {
      const [key, value] = line.split('=', 2);
      if (key === 'KPX_BIN_K8S') k8s ??= value;
      if (key === 'KPX_BIN_ETCD') etcd ??= value;
    }
  }
  if (k8s === undefined || etcd === undefined) throw new Error('could not determine KPX_BIN_K8S / KPX_BIN_ETCD');
  for (const path of [join(k8s, 'kube-apiserver'), join(k8s, 'kube-controller-manager'), join(k8s, 'kube-proxy'), join(k8s, 'kubectl'), join(etcd, 'etcd')]) {
    if (!existsSync(path)) throw new Error(`missing binary ${path}; run: bash e2e/build/build-binaries.sh`);
  }
  return { k8s, etcd };
}

/** A kubeconfig with the certificates embedded, so it can be copied anywhere. */
export async function writeKubeconfig(path: string, server: string, ca: string, user: string, pair: CertPair): Promise<void> {
  const b64 = (file: string): string => readFileSync(file).toString('base64');
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'kpx-e2e', cluster: { server, 'certificate-authority-data': b64(ca) } }],
    users: [{ name: user, user: { 'client-certificate-data': b64(pair.cert), 'client-key-data': b64(pair.key) } }],
    contexts: [{ name: 'kpx-e2e', context: { cluster: 'kpx-e2e', user } }],
    'current-context': 'kpx-e2e',
  };
  await writeFile(path, stringify(config), { mode: 0o600 });
}

export class Cluster {
  readonly state: ClusterState;
  /** Admin client (system:masters). */
  readonly api: KubeClient;
  readonly #daemons = new Map<string, Daemon>();
  #stopped = false;

  constructor(state: ClusterState) {
    this.state = state;
    this.api = new KubeClient({ server: state.apiserver.url, ...this.credentials('admin') });
  }

  get dir(): string {
    return this.state.dir;
  }

  get nodes(): readonly NodeState[] {
    return this.state.nodes;
  }

  get external(): ClusterState['external'] {
    return this.state.external;
  }

  node(name: string): NodeState {
    const node = this.state.nodes.find((n) => n.name === name);
    if (node === undefined) throw new Error(`no node ${name} (nodes: ${this.state.nodes.map((n) => n.name).join(', ')})`);
    return node;
  }

  /** Cert/key file paths of a PKI identity ('admin', 'kube-proxy', or one minted with createClientCert). */
  credentials(name: string): { ca: string; cert: string; key: string } {
    return { ca: join(this.state.pki, 'ca.crt'), cert: join(this.state.pki, `${name}.crt`), key: join(this.state.pki, `${name}.key`) };
  }

  get kubectlPath(): string {
    return join(this.state.binaries.k8s, 'kubectl');
  }

  persist(): void {
    saveState(this.state);
  }

  /** Runs kubectl with the admin kubeconfig; throws on failure. */
  kubectl(args: readonly string[], input?: string): Promise<string> {
    return run(this.kubectlPath, ['--kubeconfig', this.state.kubeconfigs.admin, ...args], input);
  }

  /** Runs a program inside a network namespace; a non-zero exit is returned, not thrown. */
  exec(netns: string, file: string, args: readonly string[], input?: string): Promise<RunResult> {
    const [cmd, argv] = inNetns(netns, file, args);
    return tryRun(cmd, argv, input);
  }

  /** `iptables-save` inside a namespace (optionally one table). */
  async iptablesSave(netns: string, table?: string): Promise<string> {
    const result = await this.exec(netns, 'iptables-save', table === undefined ? [] : ['-t', table]);
    if (result.exitCode !== 0) throw new Error(`iptables-save in ${netns} failed: ${result.stderr}`);
    return result.stdout;
  }

  /** Sends `spec.count` independent requests from inside `netns` (see probe.ts). */
  probe(netns: string, spec: ProbeSpec): Promise<ProbeResult[]> {
    return this.#runProbe(netns, spec);
  }

  /** Holds long-lived connections to one pod from inside `netns` and reports each (see probe.ts). */
  probeHeld(netns: string, spec: HeldSpec): Promise<HeldConnection[]> {
    return this.#runProbe(netns, spec);
  }

  async #runProbe<T>(netns: string, spec: ProbeSpec): Promise<T> {
    const result = await this.exec(netns, process.execPath, [PROBE_SCRIPT, JSON.stringify(spec)]);
    if (result.exitCode !== 0) throw new Error(`probe in ${netns} failed (exit ${String(result.exitCode)}): ${result.stderr}`);
    return JSON.parse(result.stdout) as T;
  }

  /** Starts a daemon (own process group, log under <dir>/logs) and records it in the state file. */
  startDaemon(name: string, program: string, args: readonly string[], options: { netns?: string; env?: Record<string, string> } = {}): Daemon {
    if (this.#daemons.has(name) || this.state.processes.some((p) => p.name === name)) throw new Error(`a process named ${name} is already running`);
    const logDir = join(this.state.dir, 'logs');
    mkdirSync(logDir, { recursive: true });
    const daemon = startDaemon(name, program, args, { log: join(logDir, `${name.replace(/[^A-Za-z0-9_.-]/g, '_')}.log`), ...options });
    this.#daemons.set(name, daemon);
    this.state.processes.push(daemon.record);
    this.persist();
    return daemon;
  }

  /** Stops one daemon started with startDaemon (by the recorded pid) and forgets it. */
  async stopDaemon(name: string): Promise<void> {
    const record = this.state.processes.find((p) => p.name === name);
    if (record === undefined) return;
    await killProcess(record);
    this.state.processes = this.state.processes.filter((p) => p !== record);
    this.#daemons.delete(name);
    this.persist();
  }

  /**
   * Stops kube-apiserver (SIGTERM, then SIGKILL), waits `downMs`, and starts it again with the same
   * command line; resolves once it is ready. Clients see their watches break and connections refused.
   */
  async restartApiserver(downMs = 0): Promise<void> {
    const record = this.state.processes.find((p) => p.name === 'kube-apiserver');
    if (record === undefined) throw new Error('no kube-apiserver in this cluster');
    const args = readFileSync(`/proc/${String(record.pid)}/cmdline`, 'utf8').split('\0').filter((a) => a !== '').slice(1);
    await this.stopDaemon('kube-apiserver');
    if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs));
    this.startDaemon('kube-apiserver', record.program, args);
    await waitFor(
      'kube-apiserver /readyz after restart',
      async () => {
        const { status } = await this.api.raw('GET', '/readyz', { timeoutMs: 5000 }).catch(() => ({ status: 0 }));
        return status === 200 ? true : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 250, check: () => { this.assertAlive('kube-apiserver'); } },
    );
  }

  /** The audit log's events so far (empty unless the cluster was started with auditUsers). */
  auditEvents(): AuditEvent[] {
    const path = join(this.state.dir, 'logs', 'audit.log');
    if (!existsSync(path)) return [];
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as AuditEvent);
  }

  /** Throws (with its log tail) if a daemon this process started has exited. */
  assertAlive(name: string): void {
    this.#daemons.get(name)?.assertAlive();
  }

  logPath(name: string): string {
    return join(this.state.dir, 'logs', `${name.replace(/[^A-Za-z0-9_.-]/g, '_')}.log`);
  }

  logTail(name: string, lines = 30): string {
    return tailFile(this.logPath(name), lines);
  }

  /** Removes every process, namespace and link of the cluster, and its state directory (unless keepDir or KPX_KEEP_CLUSTER_DIR=1). */
  async stop(options: { keepDir?: boolean; log?: (message: string) => void } = {}): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.api.close();
    await teardown(this.state, { keepDir: options.keepDir ?? process.env.KPX_KEEP_CLUSTER_DIR === '1', ...(options.log === undefined ? {} : { log: options.log }) });
  }
}

/** Attaches to a running cluster (e.g. one from `make cluster-up`) through its state directory. */
export function openCluster(stateDir: string = defaultStateDir()): Cluster {
  const state = loadState(stateDir);
  if (state === undefined) throw new Error(`no cluster state in ${stateDir}; start one with make cluster-up`);
  return new Cluster(state);
}

async function handleLeftovers(dir: string, log: (message: string) => void): Promise<void> {
  const existing = loadState(dir);
  if (existing !== undefined) {
    if (existing.owner.kind === 'test' && !processAlive(existing.owner.pid)) {
      log(`removing the leftovers of a test cluster whose owner (pid ${String(existing.owner.pid)}) is gone`);
      await teardown(existing, { sweep: true });
    } else {
      throw new Error(
        `a cluster is already running (state ${join(dir, 'state.json')}, started by ${existing.owner.kind} pid ${String(existing.owner.pid)} at ${existing.startedAt}). ` +
          `Stop it first: make cluster-down (or KPX_CLUSTER_DIR=${dir} npx node e2e/cluster/down.ts)`,
      );
    }
  }
  const leftovers = [...(await listOurNetns()), ...(await listOurHostLinks())];
  if (leftovers.length > 0) {
    throw new Error(`leftover ${RESOURCE_PREFIX}* network namespaces or links from an earlier cluster: ${leftovers.join(', ')}. Remove them with: make cluster-down (npx node e2e/cluster/down.ts)`);
  }
}

/** Starts the whole cluster; on any failure everything created so far is removed before the error is rethrown. */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  requireRoot();
  const log = options.log ?? ((): void => undefined);
  const t0 = Date.now();
  const step = (message: string): void => {
    log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${message}`);
  };
  const dir = options.stateDir ?? defaultStateDir();
  const nodeCount = options.nodes ?? 2;
  if (!Number.isInteger(nodeCount) || nodeCount < 1 || nodeCount > 80) throw new Error(`nodes must be 1..80, got ${String(nodeCount)}`);
  const zones = options.zones ?? ['zone-a', 'zone-b'];
  const binaries = await findBinaries();
  await handleLeftovers(dir, step);
  mkdirSync(join(dir, 'logs'), { recursive: true });

  const apiserverPort = options.apiserverPort ?? 6443;
  const etcdPort = options.etcdPort ?? 12379;
  const serviceCIDR = options.serviceCIDR ?? '10.96.0.0/16';
  const state: ClusterState = {
    version: 1,
    owner: { kind: options.owner ?? 'test', pid: process.pid },
    startedAt: new Date().toISOString(),
    dir,
    binaries,
    bridge: { name: HOST_BRIDGE, ip: BRIDGE_IP, prefixLength: 24 },
    apiserver: { url: `https://${BRIDGE_IP}:${String(apiserverPort)}`, port: apiserverPort },
    etcd: { url: `http://127.0.0.1:${String(etcdPort)}` },
    serviceCIDR,
    clusterCIDR: CLUSTER_CIDR,
    pki: join(dir, 'pki'),
    kubeconfigs: { admin: join(dir, 'admin.kubeconfig'), kubeProxy: join(dir, 'kube-proxy.kubeconfig') },
    nodes: Array.from({ length: nodeCount }, (_, i) => nodePlan(i + 1, zones[i % zones.length] ?? 'zone-a')),
    external: { netns: `${RESOURCE_PREFIX}ext`, ip: EXTERNAL_IP, hostLink: `${RESOURCE_PREFIX}ext` },
    processes: [],
    netns: [],
    hostLinks: [],
    pods: [],
  };
  saveState(state);
  const daemons: Daemon[] = [];
  const spawn = (name: string, program: string, args: readonly string[]): Daemon => {
    const daemon = startDaemon(name, program, args, { log: join(dir, 'logs', `${name}.log`) });
    daemons.push(daemon);
    state.processes.push(daemon.record);
    saveState(state);
    return daemon;
  };
  const alive = (): void => {
    for (const d of daemons) d.assertAlive();
  };

  try {
    step(`starting in ${dir}`);
    const firstServiceIP = serviceCIDR.replace(/\.0\/\d+$/, '.1');
    const etcdDataDir = join(dir, 'etcd');
    const etcd = spawn('etcd', join(binaries.etcd, 'etcd'), [
      '--name=kpx',
      `--data-dir=${etcdDataDir}`,
      `--listen-client-urls=${state.etcd.url}`,
      `--advertise-client-urls=${state.etcd.url}`,
      `--listen-peer-urls=http://127.0.0.1:${String(etcdPort + 1)}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${String(etcdPort + 1)}`,
      `--initial-cluster=kpx=http://127.0.0.1:${String(etcdPort + 1)}`,
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    // PKI, network and etcd readiness in parallel.
    const [pki] = await Promise.all([
      createPki(state.pki, {
        dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'],
        ipAddresses: ['127.0.0.1', BRIDGE_IP, firstServiceIP],
      }).then((p) => {
        step('PKI ready');
        return p;
      }),
      createNetwork(state, () => {
        saveState(state);
      }).then(() => {
        step(`network ready (${String(nodeCount)} nodes, external client)`);
      }),
      waitFor(
        'etcd /readyz',
        async () => {
          const res = await fetch(`${state.etcd.url}/readyz`);
          return res.ok ? true : undefined;
        },
        { timeoutMs: 30_000, check: () => {
          etcd.assertAlive();
        } },
      ).then(() => {
        step('etcd ready');
      }),
    ]);

    const audit = options.auditUsers === undefined ? [] : await auditArgs(state, options.auditUsers);
    const apiserver = spawn('kube-apiserver', join(binaries.k8s, 'kube-apiserver'), [...apiserverArgs(state, pki), ...audit]);
    await Promise.all([
      writeKubeconfig(state.kubeconfigs.admin, state.apiserver.url, pki.ca.cert, 'kpx-admin', pki.admin),
      writeKubeconfig(state.kubeconfigs.kubeProxy, state.apiserver.url, pki.ca.cert, 'system:kube-proxy', pki.kubeProxy),
    ]);
    const cluster = new Cluster(state);
    await waitFor(
      'kube-apiserver /readyz',
      async () => {
        const { status } = await cluster.api.raw('GET', '/readyz', { timeoutMs: 5000 });
        return status === 200 ? true : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 250, check: () => {
        apiserver.assertAlive();
      } },
    );
    step('kube-apiserver ready');

    const controllers = ['endpointslice-controller', 'endpointslice-mirroring-controller', 'namespace-controller', 'garbage-collector-controller', 'service-cidr-controller'];
    const saController = options.serviceAccountController ?? true;
    if (saController) controllers.push('serviceaccount-controller');
    spawn('kube-controller-manager', join(binaries.k8s, 'kube-controller-manager'), [
      `--kubeconfig=${state.kubeconfigs.admin}`,
      `--controllers=${controllers.join(',')}`,
      '--leader-elect=false',
      '--secure-port=0',
      '--use-service-account-credentials=false',
      '--v=1',
    ]);
    await Promise.all(state.nodes.map((node) => registerNode(cluster, node)));
    step(`Node objects created: ${state.nodes.map((n) => `${n.name}=${n.ip}/${n.zone}`).join(', ')}`);
    if (saController) {
      await waitFor('the default ServiceAccount (kube-controller-manager is running)', async () => cluster.api.get('/api/v1/namespaces/default/serviceaccounts/default'), {
        timeoutMs: 60_000,
        intervalMs: 250,
        check: alive,
      });
    }
    alive();
    step('kube-controller-manager running; cluster ready');
    return cluster;
  } catch (error) {
    step(`start failed, tearing down: ${error instanceof Error ? error.message : String(error)}`);
    await teardown(state, { keepDir: process.env.KPX_KEEP_CLUSTER_DIR === '1' });
    throw error;
  }
}

async function auditArgs(state: ClusterState, users: readonly string[]): Promise<string[]> {
  const policy = join(state.dir, 'audit-policy.yaml');
  mkdirSync(join(state.dir, 'logs'), { recursive: true });
  await writeFile(
    policy,
    stringify({
      apiVersion: 'audit.k8s.io/v1',
      kind: 'Policy',
      omitStages: ['RequestReceived'],
      rules: [{ level: 'Metadata', users: [...users] }, { level: 'None' }],
    }),
  );
  // The log backend writes each event before the response is sent (blocking mode), so a test reads what happened.
  return [`--audit-policy-file=${policy}`, `--audit-log-path=${join(state.dir, 'logs', 'audit.log')}`, '--audit-log-mode=blocking'];
}

function apiserverArgs(state: ClusterState, pki: Pki): string[] {
  return [
    `--etcd-servers=${state.etcd.url}`,
    `--bind-address=${state.bridge.ip}`,
    `--advertise-address=${state.bridge.ip}`,
    `--secure-port=${String(state.apiserver.port)}`,
    `--cert-dir=${join(state.dir, 'apiserver')}`,
    `--tls-cert-file=${pki.apiserver.cert}`,
    `--tls-private-key-file=${pki.apiserver.key}`,
    `--client-ca-file=${pki.ca.cert}`,
    '--authorization-mode=Node,RBAC',
    `--service-cluster-ip-range=${state.serviceCIDR}`,
    '--service-node-port-range=30000-32767',
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${pki.serviceAccount.publicKey}`,
    `--service-account-signing-key-file=${pki.serviceAccount.privateKey}`,
    '--allow-privileged=true',
    // No kubelet mounts tokens, and pods must be creatable before the serviceaccount controller made `default`.
    '--disable-admission-plugins=ServiceAccount',
    '--enable-admission-plugins=NodeRestriction',
    '--profiling=false',
    '--v=1',
  ];
}

/** Creates the Node object (hostname and zone labels, podCIDR) and patches its status: InternalIP, Ready, CPU for topology hints. */
async function registerNode(cluster: Cluster, node: NodeState): Promise<void> {
  try {
    await cluster.api.create('/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: node.name,
        labels: { 'kubernetes.io/hostname': node.name, 'kubernetes.io/os': 'linux', 'topology.kubernetes.io/zone': node.zone },
      },
      spec: { podCIDR: node.podCIDR, podCIDRs: [node.podCIDR] },
    });
  } catch (error) {
    if (!(error instanceof KubeError && error.status === 409)) throw error;
  }
  const now = new Date().toISOString();
  const resources = { cpu: '2', memory: '4Gi', pods: '250' };
  await cluster.api.patch(`/api/v1/nodes/${node.name}/status`, {
    status: {
      addresses: [
        { type: 'InternalIP', address: node.ip },
        { type: 'Hostname', address: node.name },
      ],
      capacity: resources,
      allocatable: resources,
      conditions: [{ type: 'Ready', status: 'True', reason: 'KpxHarness', message: 'network namespace node of the kpx e2e harness', lastHeartbeatTime: now, lastTransitionTime: now }],
    },
  });
}
