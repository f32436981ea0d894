/**
 * The kind workflow (e2e/kind/, `make e2e-kind`, .github/workflows/e2e-kind.yml) on a machine without
 * Docker: run.sh's prerequisite check with tools missing from PATH; its whole flow against fake
 * docker, kind, kubectl and helm (e2e/kind/testdata/fake-tool.sh), including the diagnostics a failure
 * leaves; and the static facts: shellcheck, the kind config, the quick-start commands of the issue 6
 * contract, the workflow's pins. The real run happens in the GitHub workflow.
 *
 *   npx vitest run --config e2e/cluster/vitest.config.ts e2e/image/kind.test.ts
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RUN = join(ROOT, 'e2e/kind/run.sh');
const FAKE_TOOL = join(ROOT, 'e2e/kind/testdata/fake-tool.sh');
const TOOLS = ['docker', 'kind', 'kubectl', 'helm'] as const;
const INSTALL_LINKS = {
  docker: 'https://docs.docker.com/engine/install/',
  kind: 'https://kind.sigs.k8s.io/docs/user/quick-start/#installation',
  kubectl: 'https://kubernetes.io/docs/tasks/tools/#kubectl',
  helm: 'https://helm.sh/docs/intro/install/',
} as const;

/** The kind quick start of the issue 6 contract: docs/install.md and run.sh both use these commands. */
const QUICK_START = [
  'kind create cluster --name kpx --config e2e/kind/kind-config.yaml',
  'docker build -t kpx:dev .',
  'kind load docker-image kpx:dev --name kpx',
  'helm install kpx ./charts/kpx --namespace kube-system --set image.repository=kpx --set image.tag=dev --set image.pullPolicy=IfNotPresent --set apiServer.host=kpx-control-plane --set apiServer.port=6443 --wait',
  'kubectl -n kube-system rollout status ds/kpx',
  'helm test kpx --namespace kube-system',
] as const;
const HELM_INSTALL = QUICK_START[3];

function findProgram(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

const BASH = findProgram('bash');
const MAKE = findProgram('make');
const SHELLCHECK = findProgram('shellcheck');
const SYSTEM_PATH = process.env.PATH ?? '';

const scratch: string[] = [];
afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

interface Sandbox {
  readonly dir: string;
  /** Holds bash and the fake tools asked for, nothing else. */
  readonly bin: string;
  readonly state: string;
  readonly artifacts: string;
}

function sandbox(fakes: readonly string[]): Sandbox {
  if (BASH === undefined) throw new Error('bash is not on PATH');
  const dir = mkdtempSync(join(tmpdir(), 'kpx-kind-test-'));
  scratch.push(dir);
  const bin = join(dir, 'bin');
  const state = join(dir, 'state');
  mkdirSync(bin);
  mkdirSync(state);
  symlinkSync(BASH, join(bin, 'bash'));
  for (const name of fakes) symlinkSync(FAKE_TOOL, join(bin, name));
  return { dir, bin, state, artifacts: join(dir, 'artifacts') };
}

interface ScriptRun {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Every fake tool call: the tool name, then its arguments. */
  readonly calls: readonly (readonly string[])[];
}

interface RunOptions {
  /** PATH is the sandbox's bin only, unless this adds the system PATH after it (coreutils, sh, grep, ...). */
  readonly systemPath?: boolean;
  readonly env?: Readonly<Record<string, string>>;
  readonly command?: readonly [string, ...string[]];
}

function runIn(box: Sandbox, options: RunOptions = {}): ScriptRun {
  if (BASH === undefined) throw new Error('bash is not on PATH');
  const [program, ...args] = options.command ?? [BASH, RUN];
  const result = spawnSync(program, args, {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
    env: {
      PATH: options.systemPath === true ? `${box.bin}${delimiter}${SYSTEM_PATH}` : box.bin,
      HOME: box.dir,
      FAKE_STATE: box.state,
      ARTIFACTS: box.artifacts,
      ...options.env,
    },
  });
  const log = join(box.state, 'calls.log');
  const calls = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => l !== '').map((l) => l.split('\t')) : [];
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, calls };
}

const commandLine = (call: readonly string[]): string => call.join(' ');

/** Index of each expected command line (a prefix match) in calls, in order; -1 from the first one missing. */
function inOrder(calls: readonly (readonly string[])[], expected: readonly string[]): number[] {
  const lines = calls.map(commandLine);
  const found: number[] = [];
  let from = 0;
  for (const command of expected) {
    const at = lines.findIndex((line, i) => i >= from && line.startsWith(command));
    found.push(at);
    if (at < 0) return [...found, ...expected.slice(found.length).map(() => -1)];
    from = at + 1;
  }
  return found;
}

/** Shell text → logical command lines: continuations joined, surrounding space and a `$ ` prompt dropped. */
function logicalLines(text: string): string[] {
  return text
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((line) => line.trim().replace(/^\$ /, ''));
}

function tokens(command: string): string[] {
  return command
    .split(/\s+/)
    .filter((t) => t !== '')
    .map((t) => t.replace(/^"(.*)"$/, '$1'));
}

interface HelmInstall {
  readonly release: string | undefined;
  readonly chart: string | undefined;
  /** Every `--flag value` (or `--flag=value`, or a bare boolean flag with value ''), in order. */
  readonly flags: readonly (readonly [string, string])[];
}

const BOOLEAN_HELM_FLAGS = new Set(['--wait', '--install', '--atomic', '--create-namespace', '--logs']);

/** Parses `helm install R CHART ...` or `helm upgrade --install R CHART ...`. */
function parseHelmInstall(command: string): HelmInstall {
  const words = tokens(command).slice(2);
  const positional: string[] = [];
  const flags: [string, string][] = [];
  for (let i = 0; i < words.length; i++) {
    const word = words[i] ?? '';
    if (!word.startsWith('--')) positional.push(word);
    else if (word.includes('=') && !word.startsWith('--set')) flags.push([word.slice(0, word.indexOf('=')), word.slice(word.indexOf('=') + 1)]);
    else if (BOOLEAN_HELM_FLAGS.has(word)) flags.push([word, '']);
    else flags.push([word, words[++i] ?? '']);
  }
  return { release: positional[0], chart: positional[1], flags: flags.filter(([flag]) => flag !== '--install') };
}

const flagText = ([flag, value]: readonly [string, string]): string => (value === '' ? flag : `${flag} ${value}`);

describe('e2e/kind/run.sh without its tools', () => {
  it('stops with exit 2 and one message naming every missing tool and where to get it', () => {
    const box = sandbox([]);
    const run = runIn(box);
    expect(run.status, run.stderr).toBe(2);
    expect(run.stderr).toContain('e2e-kind: cannot run: missing docker, kind, kubectl, helm (not found on PATH)');
    for (const tool of TOOLS) expect(run.stderr).toMatch(new RegExp(`^  ${tool} +${INSTALL_LINKS[tool].replace(/[.?]/g, '\\$&')}$`, 'm'));
    expect(run.stderr).toContain('.github/workflows/e2e-kind.yml runs it');
    expect(existsSync(box.artifacts), 'nothing is created before the check').toBe(false);
  });

  it('names only the tools that are missing', () => {
    const box = sandbox(['docker', 'helm']);
    const run = runIn(box);
    expect(run.status, run.stderr).toBe(2);
    expect(run.stderr).toContain('missing kind, kubectl (not found on PATH)');
    expect(run.stderr).not.toMatch(/^ {2}(docker|helm) /m);
    expect(run.stderr).not.toContain('daemon');
    expect(run.calls.map(commandLine)).toEqual(['docker info']);
  });

  it('stops with exit 2 when docker is installed but its daemon does not answer', () => {
    const box = sandbox(TOOLS);
    const run = runIn(box, { env: { FAKE_FAIL: 'docker\tinfo' } });
    expect(run.status, run.stderr).toBe(2);
    expect(run.stderr).toContain('docker is installed but its daemon does not answer');
    expect(run.stderr).not.toContain('missing');
    expect(run.calls.map(commandLine)).toEqual(['docker info']);
  });

  it.skipIf(MAKE === undefined)('`make e2e-kind` stops with the same message and a non-zero status', () => {
    const box = sandbox([]);
    const run = runIn(box, { command: [MAKE ?? 'make', '--no-print-directory', 'e2e-kind'] });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain('e2e-kind: cannot run: missing docker, kind, kubectl, helm');
  });
});

describe('e2e/kind/run.sh against fake docker, kind, kubectl and helm', () => {
  const fakes = [...TOOLS, 'curl'];

  it('creates the cluster, runs the quick start in order, checks traffic, then deletes the cluster', () => {
    const box = sandbox(fakes);
    const run = runIn(box, { systemPath: true });
    expect(run.status, run.stderr).toBe(0);
    const order = inOrder(run.calls, [
      'docker info',
      QUICK_START[0],
      'kubectl wait --for=condition=Ready nodes --all',
      QUICK_START[1],
      QUICK_START[2],
      'helm upgrade --install kpx ./charts/kpx',
      QUICK_START[4],
      'kubectl -n kube-system rollout status deployment/coredns',
      'kubectl wait --for=condition=Ready nodeproxystatus/kpx-control-plane',
      'kubectl apply -f e2e/kind/workload.yaml',
      'kubectl -n kpx-e2e exec client -- sh -c',
      'docker exec kpx-control-plane sh -c',
      QUICK_START[5],
      'kubectl get nodeproxystatuses -o wide',
      'kind delete cluster --name kpx',
    ]);
    expect(order).not.toContain(-1);

    // The helm invocation carries every flag of the quick start's `helm install`.
    const helm = run.calls.find((c) => commandLine(c).startsWith('helm upgrade --install'));
    const invoked = parseHelmInstall(commandLine(helm ?? []));
    const contract = parseHelmInstall(HELM_INSTALL);
    expect(invoked.release).toBe(contract.release);
    expect(invoked.chart).toBe(contract.chart);
    expect(invoked.flags.map(flagText)).toEqual(expect.arrayContaining(contract.flags.map(flagText)));
    expect(invoked.flags.map(flagText)).toEqual(expect.arrayContaining(['--timeout 5m']));

    // Traffic: ClusterIP by IP and by name, NodePort on each of the 3 nodes from the pod and from a node, balancing.
    const urls = run.calls.filter((c) => c.includes('-c')).map((c) => `${c.at(-2) ?? ''} x${c.at(-1) ?? ''}`);
    expect(urls).toEqual([
      'http://10.96.12.34/hostname x10',
      'http://echo.kpx-e2e.svc.cluster.local/hostname x10',
      ...['2', '3', '4'].flatMap((n) => [`http://172.18.0.${n}:30080/hostname x10`, `http://172.18.0.${n}:30080/hostname x10`]),
      'http://10.96.12.34/hostname x60',
    ]);
    expect(run.stdout).toMatch(/^ +20 echo-7d9-aaaaa$/m);
    expect(run.stdout).toContain('e2e-kind: all checks passed');

    // kubectl and helm never see the user's kubeconfig: one temporary file, gone after the run.
    const kubeconfigs = [...new Set(readFileSync(join(box.state, 'kubeconfig.log'), 'utf8').trim().split('\n'))];
    expect(kubeconfigs).toHaveLength(1);
    expect(kubeconfigs[0]).toMatch(/^\/.+\/kubeconfig$/);
    expect(existsSync(kubeconfigs[0] ?? '/')).toBe(false);
    expect(readdirSync(box.artifacts), 'no diagnostics after a successful run').toEqual([]);
  });

  it('reuses an existing cluster, and KPX_KIND_KEEP=1 keeps it', () => {
    const box = sandbox(fakes);
    const run = runIn(box, { systemPath: true, env: { FAKE_CLUSTER: '1', KPX_KIND_KEEP: '1' } });
    expect(run.status, run.stderr).toBe(0);
    const lines = run.calls.map(commandLine);
    expect(lines).toContain('kind export kubeconfig --name kpx');
    expect(lines.filter((l) => l.startsWith('kind create') || l.startsWith('kind delete'))).toEqual([]);
    expect(run.stdout).toContain('keeping the kind cluster kpx');
  });

  it('KPX_KIND_FRESH=1 deletes an existing cluster and creates it again', () => {
    const box = sandbox(fakes);
    const run = runIn(box, { systemPath: true, env: { FAKE_CLUSTER: '1', KPX_KIND_FRESH: '1' } });
    expect(run.status, run.stderr).toBe(0);
    expect(inOrder(run.calls, ['kind delete cluster --name kpx', QUICK_START[0], QUICK_START[1]])).not.toContain(-1);
  });

  it('on a failing step: iptables-save of every node, NodeProxyStatuses, kpx logs and kind logs, exit 1, cluster kept', () => {
    const box = sandbox(fakes);
    const run = runIn(box, { systemPath: true, env: { FAKE_FAIL: 'helm\ttest' } });
    expect(run.status, run.stderr).toBe(1);
    expect(run.stderr).toMatch(/FAIL: exit status 1 at e2e\/kind\/run\.sh:\d+: helm test kpx --namespace kube-system/);
    const files = readdirSync(box.artifacts);
    for (const node of ['kpx-control-plane', 'kpx-worker', 'kpx-worker2']) {
      expect(files).toContain(`${node}.iptables-save.txt`);
      expect(readFileSync(join(box.artifacts, `${node}.iptables-save.txt`), 'utf8')).toContain(`iptables-save output on ${node}`);
    }
    expect(files).toEqual(expect.arrayContaining(['nodeproxystatuses.yaml', 'kpx-abcde.log', 'kpx-fghij.log', 'kind-logs']));
    expect(files.some((f) => f.startsWith('coredns'))).toBe(false);
    expect(run.calls.map(commandLine)).toContain(`kind export logs --name kpx ${join(box.artifacts, 'kind-logs')}`);
    expect(run.calls.map(commandLine).filter((l) => l.startsWith('kind delete'))).toEqual([]);
  });

  it('fails when one pod gets fewer than 5 of the 60 balancing requests', () => {
    const box = sandbox(fakes);
    const run = runIn(box, { systemPath: true, env: { FAKE_STARVE: 'echo-7d9-ccccc' } });
    expect(run.status, run.stderr).toBe(1);
    expect(run.stderr).toContain('FAIL: pod echo-7d9-ccccc answered 0 of 60 requests to the ClusterIP; want at least 5');
    expect(readdirSync(box.artifacts)).toContain('nodeproxystatuses.yaml');
  });
});

describe('the kind workflow files', () => {
  const script = readFileSync(RUN, 'utf8');

  it(`run.sh is shellcheck-clean${SHELLCHECK === undefined ? ' (skipped: shellcheck is not installed; Debian package shellcheck)' : ''}`, ({ skip }) => {
    if (SHELLCHECK === undefined) {
      skip();
      return;
    }
    const result = spawnSync(SHELLCHECK, [RUN, FAKE_TOOL], { encoding: 'utf8' });
    expect(result.stdout + result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('the kind cluster has no kube-proxy, the default CNI, one control plane and two workers', () => {
    const config: unknown = parse(readFileSync(join(ROOT, 'e2e/kind/kind-config.yaml'), 'utf8'));
    expect(config).toEqual({
      kind: 'Cluster',
      apiVersion: 'kind.x-k8s.io/v1alpha4',
      name: 'kpx',
      networking: { kubeProxyMode: 'none' },
      nodes: [{ role: 'control-plane' }, { role: 'worker' }, { role: 'worker' }],
    });
  });

  it("run.sh uses the contract's quick-start commands and every flag of its helm install", () => {
    const lines = logicalLines(script);
    for (const command of QUICK_START.filter((c) => c !== HELM_INSTALL)) {
      expect(lines.some((line) => line === command || line.startsWith(`${command} `)), command).toBe(true);
    }
    const helmLines = lines.filter((line) => line.startsWith('helm upgrade --install '));
    expect(helmLines).toHaveLength(1);
    const ours = parseHelmInstall(helmLines[0] ?? '');
    const contract = parseHelmInstall(HELM_INSTALL);
    expect([ours.release, ours.chart]).toEqual([contract.release, contract.chart]);
    expect(contract.flags.map(flagText)).toContain('--set apiServer.host=kpx-control-plane');
    const missing = contract.flags.map(flagText).filter((flag) => !ours.flags.map(flagText).includes(flag));
    expect(missing, 'quick-start flags missing from run.sh').toEqual([]);
    expect(ours.flags.map(flagText)).toEqual(expect.arrayContaining(['--wait', '--timeout 5m']));
  });

  it('docs/install.md gives the same quick start', () => {
    const docs = logicalLines(readFileSync(join(ROOT, 'docs/install.md'), 'utf8'));
    for (const command of QUICK_START.filter((c) => c !== HELM_INSTALL)) {
      expect(docs.some((line) => line === command || line.startsWith(`${command} `)), command).toBe(true);
    }
    const helm = docs.find((line) => line.startsWith('helm install kpx '));
    expect(helm, 'docs/install.md has no `helm install kpx ...` line').toBeDefined();
    const theirs = parseHelmInstall(helm ?? '');
    const contract = parseHelmInstall(HELM_INSTALL);
    expect([theirs.release, theirs.chart]).toEqual([contract.release, contract.chart]);
    expect([...theirs.flags.map(flagText)].sort()).toEqual([...contract.flags.map(flagText)].sort());
  });

  it('the GitHub workflow pins every action and tool, runs make e2e-kind and uploads reports/kind on failure', () => {
    interface Step {
      readonly uses?: string;
      readonly run?: string;
      readonly if?: string;
      readonly with?: Record<string, unknown>;
    }
    interface Workflow {
      readonly on: Record<string, unknown>;
      readonly env: Record<string, string>;
      readonly jobs: { readonly kind: { readonly 'runs-on': string; readonly steps: readonly Step[] } };
    }
    const workflow = parse(readFileSync(join(ROOT, '.github/workflows/e2e-kind.yml'), 'utf8')) as Workflow;
    expect(Object.keys(workflow.on)).toEqual(expect.arrayContaining(['push', 'pull_request']));
    const job = workflow.jobs.kind;
    expect(job['runs-on']).toBe('ubuntu-latest');
    const uses = job.steps.flatMap((s) => (s.uses === undefined ? [] : [s.uses]));
    for (const action of uses) expect(action, 'actions are pinned to an exact version').toMatch(/^[\w-]+\/[\w-]+@v\d+\.\d+\.\d+$/);
    expect(uses.map((u) => u.split('@')[0])).toEqual(
      expect.arrayContaining(['actions/checkout', 'actions/setup-node', 'azure/setup-helm', 'actions/upload-artifact']),
    );
    expect(job.steps.find((s) => s.uses?.startsWith('actions/setup-node@') === true)?.with?.['node-version']).toBe(24);
    for (const tool of ['KIND_VERSION', 'KUBECTL_VERSION', 'HELM_VERSION']) expect(workflow.env[tool]).toMatch(/^v\d+\.\d+\.\d+$/);
    expect(job.steps.some((s) => s.run === 'make e2e-kind')).toBe(true);
    const upload = job.steps.find((s) => s.uses?.startsWith('actions/upload-artifact@') === true);
    expect(upload?.if).toBe('failure()');
    expect(upload?.with?.path).toBe('reports/kind');
  });
});
