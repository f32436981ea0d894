/**
 * The cluster's state file (`<stateDir>/state.json`): every resource is recorded *before* it is
 * created, so a teardown from any process (the test's afterAll, `make cluster-down`, the next
 * startCluster after a crashed test) can remove it. Teardown order: processes (by pid, after
 * checking the pid still runs the recorded program), anything else still running inside our
 * network namespaces, the namespaces (pods first), the host links, then the state directory.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { killProcess, tryRun, type ProcessRecord } from './sys.ts';

/** Every network namespace and host link the harness creates starts with this. */
export const RESOURCE_PREFIX = 'kpxc-';

export const DEFAULT_STATE_DIR = '/tmp/kpx-cluster';

export function defaultStateDir(): string {
  const fromEnv = process.env.KPX_CLUSTER_DIR;
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : DEFAULT_STATE_DIR;
}

export interface NodeState {
  readonly name: string;
  readonly netns: string;
  /** Address on the host bridge; the node's InternalIP. */
  readonly ip: string;
  readonly zone: string;
  readonly podCIDR: string;
  /** The pod bridge's address inside the node (the pods' gateway). */
  readonly podGateway: string;
  /** Host side of the node's veth on the host bridge. */
  readonly hostLink: string;
  /** Next host number to hand out in podCIDR. */
  nextPodHost: number;
  /** Next index for the node-side veth of a pod (vpN). */
  nextPodLink: number;
}

export interface PodState {
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  readonly ip: string;
  readonly netns: string;
  /** Node-side veth name inside the node namespace. */
  readonly nodeLink: string;
}

export interface ClusterState {
  readonly version: 1;
  /** Who started it: a test's cluster whose owner died may be cleaned up by the next test run; a CLI cluster only by cluster-down. */
  readonly owner: { readonly kind: 'test' | 'cli'; readonly pid: number };
  readonly startedAt: string;
  readonly dir: string;
  readonly binaries: { readonly k8s: string; readonly etcd: string };
  readonly bridge: { readonly name: string; readonly ip: string; readonly prefixLength: number };
  readonly apiserver: { readonly url: string; readonly port: number };
  readonly etcd: { readonly url: string };
  readonly serviceCIDR: string;
  readonly clusterCIDR: string;
  readonly pki: string;
  readonly kubeconfigs: { readonly admin: string; readonly kubeProxy: string };
  readonly nodes: NodeState[];
  readonly external: { readonly netns: string; readonly ip: string; readonly hostLink: string };
  processes: ProcessRecord[];
  /** In creation order; deleted in reverse. */
  netns: string[];
  hostLinks: string[];
  pods: PodState[];
}

export function statePath(dir: string): string {
  return join(dir, 'state.json');
}

export function saveState(state: ClusterState): void {
  mkdirSync(state.dir, { recursive: true });
  const tmp = `${statePath(state.dir)}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(tmp, statePath(state.dir));
}

export function loadState(dir: string): ClusterState | undefined {
  const path = statePath(dir);
  if (!existsSync(path)) return undefined;
  const state = JSON.parse(readFileSync(path, 'utf8')) as { version?: unknown };
  if (state.version !== 1) throw new Error(`${path}: unknown state version ${JSON.stringify(state.version)}`);
  return state as ClusterState;
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function netnsPids(netns: string): Promise<number[]> {
  const result = await tryRun('ip', ['netns', 'pids', netns]);
  if (result.exitCode !== 0) return [];
  return result.stdout
    .split('\n')
    .map((line) => Number.parseInt(line.trim(), 10))
    .filter((pid) => Number.isInteger(pid) && pid > 0);
}

async function killNetnsProcesses(netns: string): Promise<void> {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    const pids = await netnsPids(netns);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, signal);
      } catch {
        // gone
      }
    }
    for (let i = 0; i < 40 && (await netnsPids(netns)).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  }
}

export async function listOurNetns(): Promise<string[]> {
  const result = await tryRun('ip', ['-j', 'netns', 'list']);
  if (result.exitCode !== 0 || result.stdout.trim() === '') return [];
  const entries = JSON.parse(result.stdout) as { name: string }[];
  return entries.map((e) => e.name).filter((name) => name.startsWith(RESOURCE_PREFIX));
}

export async function listOurHostLinks(): Promise<string[]> {
  const result = await tryRun('ip', ['-j', 'link', 'show']);
  if (result.exitCode !== 0 || result.stdout.trim() === '') return [];
  const entries = JSON.parse(result.stdout) as { ifname: string }[];
  return entries.map((e) => e.ifname).filter((name) => name.startsWith(RESOURCE_PREFIX));
}

export interface TeardownOptions {
  /** Keep the state directory (logs, PKI, kubeconfigs) after removing everything else. */
  readonly keepDir?: boolean;
  /** Also remove any kpxc-* namespace or host link the state does not list (leftovers of a lost state file). */
  readonly sweep?: boolean;
  readonly log?: (message: string) => void;
}

/** Removes everything `state` lists. Safe to run twice and from another process. */
export async function teardown(state: ClusterState | undefined, options: TeardownOptions = {}): Promise<void> {
  const log = options.log ?? ((): void => undefined);
  if (state !== undefined) {
    // Dependents first, in parallel: everything inside a namespace (kube-proxies, pod servers);
    // then the host processes in reverse start order: controller-manager, apiserver, etcd.
    const inNetns = state.processes.filter((p) => p.netns !== undefined);
    await Promise.all(
      inNetns.map(async (record) => {
        log(`stopping ${record.name} (pid ${String(record.pid)})`);
        await killProcess(record);
      }),
    );
    for (const record of state.processes.filter((p) => p.netns === undefined).reverse()) {
      log(`stopping ${record.name} (pid ${String(record.pid)})`);
      await killProcess(record);
    }
  }
  const netns = new Set(state?.netns ?? []);
  const links = new Set(state?.hostLinks ?? []);
  if (options.sweep === true) {
    for (const name of await listOurNetns()) netns.add(name);
    for (const name of await listOurHostLinks()) links.add(name);
  }
  const ordered = [...netns].reverse();
  await Promise.all(ordered.map((name) => killNetnsProcesses(name)));
  for (const name of ordered) {
    const result = await tryRun('ip', ['netns', 'delete', name]);
    if (result.exitCode === 0) log(`deleted netns ${name}`);
  }
  for (const name of [...links].reverse()) {
    const result = await tryRun('ip', ['link', 'delete', name]);
    if (result.exitCode === 0) log(`deleted link ${name}`);
  }
  if (state !== undefined && options.keepDir !== true) {
    rmSync(state.dir, { recursive: true, force: true });
  } else if (state !== undefined) {
    // Keep the logs, but make sure nobody mistakes the directory for a running cluster.
    rmSync(statePath(state.dir), { force: true });
  }
}
