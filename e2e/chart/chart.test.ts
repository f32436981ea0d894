/**
 * charts/kpx with the real helm: lint, render with default, kind quick-start and non-default
 * values, the schema rejecting typos and wrong types with helm's message, the ClusterRole being
 * no more than system:node-proxier's rules (kpx's verbs) plus kpx's own, the ConfigMap being a KubeProxyConfiguration
 * kpx accepts, the CRDs being crds/, and docs/install.md covering every value.
 *
 *   npx vitest run --config e2e/cluster/vitest.config.ts e2e/chart     (helm from e2e/build/build-binaries.sh)
 */
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tryRun } from '../cluster/sys.ts';
import { CHART_DIR, findObject, helm, helmTemplate, NAMESPACE, parseManifests, RELEASE, renderChart, REPO_ROOT, type KubeObject, type RenderOptions } from './helm.ts';
import { KIND_QUICK_START, leafValuePaths, shellCommands, uncommentedValues, valuesTableKeys } from './chart-docs.ts';

const KPX_BIN = join(REPO_ROOT, 'controller', 'bin', 'kpx.js');
const NONDEFAULT = join(REPO_ROOT, 'e2e', 'chart', 'values-nondefault.yaml');
const CRD_DIR = join(REPO_ROOT, 'crds');

interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: { readonly fieldRef?: { readonly fieldPath: string } };
}
interface Probe {
  readonly httpGet: { readonly path: string; readonly port: string | number; readonly host?: string };
  readonly [field: string]: unknown;
}
interface Container {
  readonly name: string;
  readonly image: string;
  readonly imagePullPolicy: string;
  readonly command?: readonly string[];
  readonly args?: readonly string[];
  readonly env?: readonly EnvVar[];
  readonly ports?: readonly { readonly name: string; readonly containerPort: number }[];
  readonly livenessProbe?: Probe;
  readonly readinessProbe?: Probe;
  readonly resources?: unknown;
  readonly securityContext?: {
    readonly privileged?: boolean;
    readonly runAsUser?: number;
    readonly readOnlyRootFilesystem?: boolean;
    readonly allowPrivilegeEscalation?: boolean;
    readonly capabilities?: { readonly add?: readonly string[]; readonly drop?: readonly string[] };
  };
  readonly volumeMounts?: readonly { readonly name: string; readonly mountPath: string; readonly readOnly?: boolean }[];
}
interface PodSpec {
  readonly serviceAccountName?: string;
  readonly hostNetwork?: boolean;
  readonly dnsPolicy?: string;
  readonly priorityClassName?: string;
  readonly terminationGracePeriodSeconds?: number;
  readonly nodeSelector?: Readonly<Record<string, string>>;
  readonly tolerations?: readonly unknown[];
  readonly affinity?: unknown;
  readonly imagePullSecrets?: readonly { readonly name: string }[];
  readonly restartPolicy?: string;
  readonly containers: readonly Container[];
  readonly volumes?: readonly { readonly name: string; readonly hostPath?: { readonly path: string; readonly type?: string }; readonly configMap?: { readonly name: string } }[];
}
interface DaemonSet extends KubeObject {
  readonly spec: {
    readonly selector: { readonly matchLabels: Readonly<Record<string, string>> };
    readonly updateStrategy: unknown;
    readonly template: { readonly metadata: { readonly labels: Readonly<Record<string, string>>; readonly annotations: Readonly<Record<string, string>> }; readonly spec: PodSpec };
  };
}
interface Pod extends KubeObject {
  readonly spec: PodSpec;
}
interface Rule {
  readonly apiGroups: readonly string[];
  readonly resources: readonly string[];
  readonly verbs: readonly string[];
}

/**
 * What the issue asks for: no more than system:node-proxier grants (services, endpointslices, nodes,
 * events), narrowed to the verbs kpx uses, plus kpx.dev's NodeProxyStatus and its status.
 */
const EXPECTED_RULES: readonly Rule[] = [
  { apiGroups: [''], resources: ['services'], verbs: ['list', 'watch'] },
  { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
  { apiGroups: [''], resources: ['nodes'], verbs: ['list', 'watch'] },
  { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
  { apiGroups: ['kpx.dev'], resources: ['nodeproxystatuses'], verbs: ['create', 'patch'] },
  { apiGroups: ['kpx.dev'], resources: ['nodeproxystatuses/status'], verbs: ['patch'] },
];

const KIND_QUICK_START_SET = ['image.repository=kpx', 'image.tag=dev', 'image.pullPolicy=IfNotPresent', 'apiServer.host=kpx-control-plane', 'apiServer.port=6443'];

function daemonSet(objects: readonly KubeObject[]): DaemonSet {
  return findObject(objects, 'DaemonSet', 'kpx') as DaemonSet;
}

function kpxContainer(objects: readonly KubeObject[]): Container {
  const [container, ...others] = daemonSet(objects).spec.template.spec.containers;
  if (container === undefined || others.length > 0) throw new Error('the DaemonSet must have exactly one container');
  expect(container.name).toBe('kpx');
  return container;
}

function configText(objects: readonly KubeObject[]): string {
  const data = (findObject(objects, 'ConfigMap', 'kpx') as KubeObject & { data: Record<string, string> }).data;
  expect(Object.keys(data)).toEqual(['config.yaml']);
  return data['config.yaml'] ?? '';
}

/** helm's failure output for a render that must fail (the test fails if it renders). */
async function renderFailure(options: RenderOptions): Promise<string> {
  const result = await helmTemplate(options);
  expect(result.exitCode, `helm template ${JSON.stringify(options)} rendered but should have failed`).not.toBe(0);
  return result.stderr;
}

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kpx-chart-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** `kpx preview -f <config.yaml> -o summary` on a rendered ConfigMap's configuration. */
async function previewConfig(text: string, name: string): Promise<string> {
  const file = join(scratch, `${name}.yaml`);
  await writeFile(file, text);
  const result = await tryRun(process.execPath, [KPX_BIN, 'preview', '-f', file, '-o', 'summary']);
  expect(result.stderr).toBe('');
  expect(result.exitCode).toBe(0);
  return result.stdout;
}

describe('Chart.yaml', () => {
  it('is apiVersion v2 with appVersion = package.json version and kubeVersion >=1.29', async () => {
    const chart = parse(await readFile(join(CHART_DIR, 'Chart.yaml'), 'utf8')) as Record<string, unknown>;
    const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(chart.apiVersion).toBe('v2');
    expect(chart.name).toBe('kpx');
    expect(chart.appVersion).toBe(pkg.version);
    expect(chart.kubeVersion).toBe('>=1.29.0-0');
  });

  it('refuses Kubernetes 1.28 and accepts 1.29', async () => {
    expect(await renderFailure({ extraArgs: ['--kube-version', '1.28.9'] })).toMatch(/kubeVersion: >=1\.29\.0-0 which is incompatible with Kubernetes v1\.28\.9/);
    expect(daemonSet(await renderChart({ extraArgs: ['--kube-version', '1.29.0'] })).kind).toBe('DaemonSet');
  });
});

describe('helm lint --strict', () => {
  it('passes with the default values', async () => {
    const result = await helm(['lint', '--strict', CHART_DIR]);
    expect(result.stdout + result.stderr).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(result.exitCode).toBe(0);
  });

  it('passes with e2e/chart/values-nondefault.yaml', async () => {
    const result = await helm(['lint', '--strict', CHART_DIR, '--values', NONDEFAULT]);
    expect(result.stdout + result.stderr).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(result.exitCode).toBe(0);
  });
});

describe('helm template with the default values', () => {
  let objects: KubeObject[];
  beforeAll(async () => {
    objects = await renderChart();
  });

  it('renders the contract objects, labelled with name and instance', () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
      ['ClusterRole/kpx', 'ClusterRoleBinding/kpx', 'ConfigMap/kpx', 'DaemonSet/kpx', 'Pod/kpx-test', 'ServiceAccount/kpx'].sort(),
    );
    for (const o of objects) {
      expect(o.metadata.labels, `${o.kind}/${o.metadata.name}`).toMatchObject({ 'app.kubernetes.io/name': 'kpx', 'app.kubernetes.io/instance': RELEASE });
      if (!o.kind.startsWith('Cluster')) expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(NAMESPACE);
    }
    const ds = daemonSet(objects);
    expect(ds.spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'kpx', 'app.kubernetes.io/instance': RELEASE });
    expect(ds.spec.template.metadata.labels).toMatchObject(ds.spec.selector.matchLabels);
  });

  it('runs kpx on the host network with NET_ADMIN and NET_RAW only, not privileged, read-only root', () => {
    const pod = daemonSet(objects).spec.template.spec;
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe('Default');
    expect(pod.serviceAccountName).toBe('kpx');
    const sc = kpxContainer(objects).securityContext;
    expect(sc?.capabilities?.add).toEqual(['NET_ADMIN', 'NET_RAW']);
    expect(sc?.capabilities?.drop).toEqual(['ALL']);
    expect(sc?.privileged).toBe(false);
    expect(sc?.allowPrivilegeEscalation).toBe(false);
    expect(sc?.readOnlyRootFilesystem).toBe(true);
    expect(sc?.runAsUser).toBe(0);
  });

  it('mounts the xtables lock, /lib/modules read-only and the ConfigMap at /etc/kpx', () => {
    const pod = daemonSet(objects).spec.template.spec;
    expect(pod.volumes).toEqual([
      { name: 'config', configMap: { name: 'kpx' } },
      { name: 'xtables-lock', hostPath: { path: '/run/xtables.lock', type: 'FileOrCreate' } },
      { name: 'lib-modules', hostPath: { path: '/lib/modules' } },
    ]);
    expect(kpxContainer(objects).volumeMounts).toEqual([
      { name: 'config', mountPath: '/etc/kpx', readOnly: true },
      { name: 'xtables-lock', mountPath: '/run/xtables.lock' },
      { name: 'lib-modules', mountPath: '/lib/modules', readOnly: true },
    ]);
  });

  it('takes NODE_NAME from the downward API and passes the contract args to the image entrypoint', () => {
    const c = kpxContainer(objects);
    expect(c.image).toBe('ghcr.io/kpx-proxy/kpx:0.1.0');
    expect(c.imagePullPolicy).toBe('IfNotPresent');
    expect(c.command).toBeUndefined();
    expect(c.env).toEqual([{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }]);
    expect(c.args).toEqual([
      'run',
      '--config=/etc/kpx/config.yaml',
      '--hostname-override=$(NODE_NAME)',
      '--log-level=info',
    ]);
  });

  it('uses only flags kpx run knows', async () => {
    const help = await tryRun(process.execPath, [KPX_BIN, 'run', '--help']);
    expect(help.exitCode).toBe(0);
    const flags = kpxContainer(await renderChart({ valuesFiles: [NONDEFAULT] })).args ?? [];
    const names = flags.filter((a) => a.startsWith('--')).map((a) => a.split('=')[0] ?? a);
    expect(names.length).toBeGreaterThan(6);
    for (const name of names) expect(help.stdout, name).toMatch(new RegExp(`${name}[ ,]`));
  });

  it('probes /livez and /healthz on the healthz port 10256', () => {
    const c = kpxContainer(objects);
    expect(c.ports).toEqual([
      { name: 'healthz', containerPort: 10256, protocol: 'TCP' },
      { name: 'metrics', containerPort: 10249, protocol: 'TCP' },
    ]);
    expect(c.livenessProbe).toEqual({ httpGet: { path: '/livez', port: 'healthz' }, initialDelaySeconds: 15, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 3 });
    expect(c.readinessProbe).toEqual({ httpGet: { path: '/healthz', port: 'healthz' }, initialDelaySeconds: 5, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 3, successThreshold: 1 });
  });

  it('follows the port and a non-wildcard host of config.healthzBindAddress', async () => {
    const c = kpxContainer(await renderChart({ set: ['config.healthzBindAddress=127.0.0.1:10356'] }));
    expect(c.ports?.find((p) => p.name === 'healthz')?.containerPort).toBe(10356);
    // kpx reads the address from the ConfigMap's KubeProxyConfiguration, as kube-proxy does.
    expect(c.args?.filter((a) => a.includes('bind-address'))).toEqual([]);
    expect(c.livenessProbe?.httpGet).toEqual({ path: '/livez', port: 'healthz', host: '127.0.0.1' });
    expect(c.readinessProbe?.httpGet).toEqual({ path: '/healthz', port: 'healthz', host: '127.0.0.1' });
  });

  it('schedules on every Linux node: system-node-critical, all taints tolerated, RollingUpdate one node at a time', () => {
    const ds = daemonSet(objects);
    const pod = ds.spec.template.spec;
    expect(pod.priorityClassName).toBe('system-node-critical');
    expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(pod.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' });
    expect(pod.affinity).toBeUndefined();
    expect(pod.terminationGracePeriodSeconds).toBe(30);
    expect(ds.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    expect(kpxContainer(objects).resources).toEqual({ requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } });
  });

  it("grants no more than system:node-proxier's rules (the verbs kpx uses) plus kpx.dev NodeProxyStatuses", () => {
    expect((findObject(objects, 'ClusterRole', 'kpx') as KubeObject & { rules: Rule[] }).rules).toEqual(EXPECTED_RULES);
    const binding = findObject(objects, 'ClusterRoleBinding', 'kpx') as KubeObject & { roleRef: unknown; subjects: unknown };
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'kpx' });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'kpx', namespace: NAMESPACE }]);
  });

  it("holds kube-proxy's defaults in a KubeProxyConfiguration that kpx preview accepts", async () => {
    const text = configText(objects);
    expect(parse(text)).toEqual({
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      mode: 'iptables',
      clusterCIDR: '',
      detectLocalMode: 'ClusterCIDR',
      detectLocal: { bridgeInterface: '', interfaceNamePrefix: '' },
      nodePortAddresses: [],
      healthzBindAddress: '0.0.0.0:10256',
      metricsBindAddress: '127.0.0.1:10249',
      iptables: { masqueradeAll: false, masqueradeBit: 14, localhostNodePorts: true, minSyncPeriod: '1s', syncPeriod: '30s' },
    });
    // masqueradeBit 14 is the mark 0x00004000; no clusterCIDR means no local traffic detection.
    expect(await previewConfig(text, 'default')).toMatch(/IPv4: node IP unknown, local traffic not detected, mark 0x00004000/);
  });

  it('rolls the pods when the configuration changes (checksum/config)', async () => {
    const before = daemonSet(objects).spec.template.metadata.annotations['checksum/config'];
    const after = daemonSet(await renderChart({ set: ['config.iptables.syncPeriod=31s'] })).spec.template.metadata.annotations['checksum/config'];
    expect(before).toMatch(/^[0-9a-f]{64}$/);
    expect(after).toMatch(/^[0-9a-f]{64}$/);
    expect(after).not.toBe(before);
  });

  it('has a helm test hook Pod kpx-test that runs the check with the kpx image', () => {
    const pod = findObject(objects, 'Pod', 'kpx-test') as Pod;
    expect(pod.metadata.annotations).toEqual({ 'helm.sh/hook': 'test', 'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded' });
    expect(pod.spec.restartPolicy).toBe('Never');
    expect(pod.spec.hostNetwork).toBeUndefined();
    const [container] = pod.spec.containers;
    expect(container?.image).toBe(kpxContainer(objects).image);
    expect(container?.command?.slice(0, 2)).toEqual(['/usr/local/bin/node', '-e']);
    expect(container?.command?.[2]).toMatch(/kubernetes\.default\.svc/);
    expect(container?.securityContext?.capabilities?.drop).toEqual(['ALL']);
  });
});

describe('helm template with the kind quick-start values', () => {
  it('uses the loaded image and the control-plane address', async () => {
    const c = kpxContainer(await renderChart({ set: KIND_QUICK_START_SET }));
    expect(c.image).toBe('kpx:dev');
    expect(c.imagePullPolicy).toBe('IfNotPresent');
    expect(c.args?.slice(-2)).toEqual(['--apiserver-host=kpx-control-plane', '--apiserver-port=6443']);
  });
});

describe('helm template with e2e/chart/values-nondefault.yaml', () => {
  let objects: KubeObject[];
  beforeAll(async () => {
    objects = await renderChart({ valuesFiles: [NONDEFAULT] });
  });

  it('creates no ServiceAccount, RBAC or test Pod, and adds the metrics Service and ServiceMonitor', () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(['ConfigMap/kpx', 'DaemonSet/kpx', 'Service/kpx-metrics', 'ServiceMonitor/kpx'].sort());
  });

  it('runs as the named ServiceAccount with the digest-pinned image', () => {
    const pod = daemonSet(objects).spec.template.spec;
    expect(pod.serviceAccountName).toBe('platform-proxy');
    expect(pod.imagePullSecrets).toEqual([{ name: 'regcred' }]);
    const c = kpxContainer(objects);
    expect(c.image).toBe('registry.example.com:5000/team/kpx:0.1.0-rc.1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef');
    expect(c.imagePullPolicy).toBe('Always');
  });

  it('passes the API server, service-proxy-name and extra args, and the extra env', () => {
    const c = kpxContainer(objects);
    expect(c.args).toEqual([
      'run',
      '--config=/etc/kpx/config.yaml',
      '--hostname-override=$(NODE_NAME)',
      '--log-level=debug',
      '--service-proxy-name=kpx',
      '--apiserver-host=kpx-control-plane',
      '--apiserver-port=6443',
      '--dry-run',
    ]);
    expect(c.env).toEqual([
      { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
      { name: 'KPX_EXTRA', value: 'on' },
    ]);
    expect(c.ports).toEqual([
      { name: 'healthz', containerPort: 10356, protocol: 'TCP' },
      { name: 'metrics', containerPort: 10249, protocol: 'TCP' },
    ]);
    expect(c.readinessProbe).toMatchObject({ httpGet: { path: '/healthz', port: 'healthz' }, periodSeconds: 3, timeoutSeconds: 5 });
  });

  it('applies the scheduling, resources and pod metadata values', () => {
    const ds = daemonSet(objects);
    const pod = ds.spec.template.spec;
    expect(pod.priorityClassName).toBeUndefined();
    expect(pod.tolerations).toEqual([{ key: 'dedicated', operator: 'Equal', value: 'network', effect: 'NoSchedule' }]);
    // Maps merge with the defaults (null removes a default key); lists replace them.
    expect(pod.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux', 'node-role.kubernetes.io/worker': '' });
    expect(pod.affinity).toMatchObject({ nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: {} } });
    expect(pod.terminationGracePeriodSeconds).toBe(60);
    expect(ds.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '10%' } });
    expect(kpxContainer(objects).resources).toEqual({ requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1', memory: '1Gi' } });
    expect(ds.spec.template.metadata.labels['example.com/tier']).toBe('node');
    expect(ds.spec.template.metadata.annotations['example.com/owner']).toBe('network-team');
    expect(ds.spec.template.metadata.annotations['checksum/config']).toMatch(/^[0-9a-f]{64}$/);
  });

  it('scrapes every node through a headless metrics Service', () => {
    const service = findObject(objects, 'Service', 'kpx-metrics') as KubeObject & { spec: Record<string, unknown> };
    expect(service.spec).toEqual({
      clusterIP: 'None',
      selector: { 'app.kubernetes.io/name': 'kpx', 'app.kubernetes.io/instance': RELEASE },
      ports: [{ name: 'metrics', port: 10249, targetPort: 'metrics', protocol: 'TCP' }],
    });
    const monitor = findObject(objects, 'ServiceMonitor', 'kpx') as KubeObject & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: Record<string, unknown>[] } };
    expect(monitor.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(monitor.metadata.labels?.release).toBe('prometheus');
    expect(service.metadata.labels).toMatchObject(monitor.spec.selector.matchLabels);
    expect(monitor.spec.endpoints[0]).toMatchObject({ port: 'metrics', path: '/metrics', interval: '15s' });
  });

  it('merges config over the defaults, and kpx preview honours it', async () => {
    const text = configText(objects);
    expect(parse(text)).toMatchObject({
      clusterCIDR: '10.244.0.0/16,fd00:10:244::/56',
      conntrack: { maxPerCore: 0 },
      iptables: { masqueradeBit: 10, minSyncPeriod: '250ms', syncPeriod: '30s', localhostNodePorts: true },
    });
    expect(await previewConfig(text, 'nondefault')).toMatch(/IPv4: node IP unknown, local traffic from 10\.244\.0\.0\/16, mark 0x00000400/);
  });
});

describe('values.yaml', () => {
  it('has a comment on every value', async () => {
    const text = await readFile(join(CHART_DIR, 'values.yaml'), 'utf8');
    expect(uncommentedValues(text)).toEqual([]);
    // The check itself: an uncommented value and a commented one.
    expect(uncommentedValues('a:\n  # b\n  b: 1\n  c: 2\nd:\n  - x\ne: {} # e\n')).toEqual(['a.c', 'd']);
  });
});

describe('values.schema.json', () => {
  it.each([
    ['imagee.tag=x', "at '': additional properties 'imagee' not allowed"],
    ['serviceMonitor.enable=true', "at '/serviceMonitor': additional properties 'enable' not allowed"],
    ['config.iptables.minSyncPeriode=2s', "at '/config/iptables': additional properties 'minSyncPeriode' not allowed"],
  ])('rejects the typo --set %s', async (expression, message) => {
    const stderr = await renderFailure({ set: [expression] });
    expect(stderr).toMatch(/values don't meet the specifications of the schema/);
    expect(stderr).toContain(message);
  });

  it('rejects a wrong type (tests.enabled=yes is a string)', async () => {
    expect(await renderFailure({ set: ['tests.enabled=yes'] })).toContain("at '/tests/enabled': got string, want boolean");
  });

  it.each([
    [{ config: { mode: 'ipvs' } }, "at '/config/mode': value must be one of '', 'iptables'"],
    [{ config: { iptables: { masqueradeBit: 32 } } }, "at '/config/iptables/masqueradeBit': maximum: got 32, want 31"],
    [{ config: { iptables: { syncPeriod: '30 seconds' } } }, "at '/config/iptables/syncPeriod': '30 seconds' does not match pattern"],
    [{ config: { hostnameOverride: 'node-1' } }, "at '/config/hostnameOverride': value must be ''"],
    [{ image: { repository: 'kpx:dev' } }, "at '/image/repository': 'kpx:dev' does not match pattern"],
    [{ image: { digest: 'sha256:abc' } }, "at '/image/digest': 'sha256:abc' does not match pattern"],
    [{ updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1 } } }, "at '/updateStrategy/rollingUpdate': additional properties 'maxSurge' not allowed"],
    [{ extraArgs: ['dry-run'] }, "at '/extraArgs/0': 'dry-run' does not match pattern"],
  ])('rejects %j', async (values, message) => {
    expect(await renderFailure({ values })).toContain(message);
  });

  it('accepts a whole upstream KubeProxyConfiguration', async () => {
    const upstream = {
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      bindAddress: '0.0.0.0',
      bindAddressHardFail: false,
      clientConnection: { acceptContentTypes: '', burst: 10, contentType: 'application/vnd.kubernetes.protobuf', kubeconfig: '/var/lib/kube-proxy/kubeconfig.conf', qps: 5 },
      clusterCIDR: '10.244.0.0/16',
      configSyncPeriod: '15m0s',
      conntrack: { maxPerCore: 32768, min: 131072, tcpBeLiberal: false, tcpCloseWaitTimeout: '1h0m0s', tcpEstablishedTimeout: '24h0m0s', udpStreamTimeout: '0s', udpTimeout: '0s' },
      detectLocal: { bridgeInterface: '', interfaceNamePrefix: '' },
      detectLocalMode: '',
      enableProfiling: false,
      featureGates: {},
      healthzBindAddress: '0.0.0.0:10256',
      hostnameOverride: '',
      iptables: { localhostNodePorts: true, masqueradeAll: false, masqueradeBit: 14, minSyncPeriod: '1s', syncPeriod: '30s' },
      ipvs: { excludeCIDRs: null, minSyncPeriod: '0s', scheduler: '', strictARP: false, syncPeriod: '30s', tcpFinTimeout: '0s', tcpTimeout: '0s', udpTimeout: '0s' },
      logging: { flushFrequency: 0, options: { json: { infoBufferSize: '0' }, text: { infoBufferSize: '0' } }, verbosity: 0 },
      metricsBindAddress: '127.0.0.1:10249',
      mode: 'iptables',
      nftables: { masqueradeAll: false, masqueradeBit: 14, minSyncPeriod: '1s', syncPeriod: '30s' },
      nodePortAddresses: null,
      oomScoreAdj: -999,
      portRange: '',
      showHiddenMetricsForVersion: '',
      winkernel: { enableDSR: false, forwardHealthCheckVip: false, networkName: '', rootHnsEndpointName: '', sourceVip: '' },
    };
    const text = configText(await renderChart({ values: { config: upstream } }));
    expect(parse(text)).toMatchObject({ clusterCIDR: '10.244.0.0/16', oomScoreAdj: -999 });
    expect(await previewConfig(text, 'upstream')).toMatch(/local traffic from 10\.244\.0\.0\/16, mark 0x00004000/);
  });

  it('fails the render when serviceMonitor is enabled with metrics on localhost', async () => {
    const stderr = await renderFailure({ set: ['serviceMonitor.enabled=true'] });
    expect(stderr).toContain('serviceMonitor.enabled needs metrics reachable from Prometheus, but config.metricsBindAddress is "127.0.0.1:10249" (loopback only)');
    expect(stderr).toContain('config.metricsBindAddress=0.0.0.0:10249');
  });

  it('fails the render when serviceAccount.create is false without a name', async () => {
    expect(await renderFailure({ set: ['serviceAccount.create=false'] })).toContain('serviceAccount.name is required when serviceAccount.create is false');
  });

  it('closes every object the chart defines (additionalProperties: false)', async () => {
    const schema = JSON.parse(await readFile(join(CHART_DIR, 'values.schema.json'), 'utf8')) as unknown;
    const open: string[] = [];
    const walk = (node: unknown, path: string): void => {
      if (typeof node !== 'object' || node === null) return;
      const record = node as Record<string, unknown>;
      if ('properties' in record && record.additionalProperties !== false) open.push(path);
      for (const [key, child] of Object.entries(record)) walk(child, `${path}/${key}`);
    };
    walk(schema, '#');
    expect(open).toEqual([]);
  });
});

/**
 * NOTES.txt as `helm install` prints it. `helm template` skips NOTES.txt and a client-only
 * `helm install --dry-run` still needs an apiserver, so a copy of the chart gets a ConfigMap
 * template that renders the same file with `tpl`.
 */
async function renderNotes(set: readonly string[]): Promise<string> {
  const copy = join(scratch, `notes-${String(set.length)}-${String(Date.now())}`);
  await cp(CHART_DIR, copy, { recursive: true, dereference: true });
  await mkdir(join(copy, 'files'), { recursive: true });
  await cp(join(copy, 'templates', 'NOTES.txt'), join(copy, 'files', 'NOTES.txt'));
  await writeFile(join(copy, 'templates', 'notes-probe.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-probe\ndata:\n  notes: {{ tpl (.Files.Get "files/NOTES.txt") . | quote }}\n');
  const result = await helm(['template', RELEASE, copy, '--namespace', NAMESPACE, '--show-only', 'templates/notes-probe.yaml', ...set.flatMap((e) => ['--set', e])]);
  expect(result.exitCode, result.stderr).toBe(0);
  return (parseManifests(result.stdout)[0] as KubeObject & { data: { notes: string } }).data.notes;
}

describe('NOTES.txt', () => {
  it('tells the operator what to check next, how to give kpx the API server, and how to clean up', async () => {
    const notes = await renderNotes([]);
    expect(notes).toContain('kubectl -n kube-system rollout status ds/kpx');
    expect(notes).toContain('kubectl get nodeproxystatuses');
    expect(notes).toContain('helm test kpx --namespace kube-system');
    expect(notes).toContain('--set apiServer.host=<control-plane host or IP> --set apiServer.port=6443');
    expect(notes).toContain('kpx run --cleanup');
    expect(notes).toContain('kubectl delete -f crds/');
  });

  it('drops the API server hint and the helm test step when they do not apply', async () => {
    const notes = await renderNotes(['apiServer.host=kpx-control-plane', 'tests.enabled=false', 'serviceProxyName=kpx']);
    expect(notes).not.toContain('apiServer.host=');
    expect(notes).not.toContain('helm test');
    expect(notes).toContain('kpx handles only Services labelled service.kubernetes.io/service-proxy-name=kpx');
    expect(notes).toContain('kubectl -n kube-system rollout status ds/kpx');
  });
});

describe('CRDs', () => {
  it("are exactly the repository's crds/*.yaml, in --include-crds and in the packaged chart", async () => {
    const files = (await readdir(CRD_DIR)).filter((f) => f.endsWith('.yaml')).sort();
    expect(files.length).toBeGreaterThan(0);
    const expected = await Promise.all(files.map(async (f) => parse(await readFile(join(CRD_DIR, f), 'utf8')) as unknown));
    const rendered = (await renderChart({ includeCrds: true })).filter((o) => o.kind === 'CustomResourceDefinition');
    expect(rendered).toEqual(expected);

    const out = join(scratch, 'package');
    const packaged = await helm(['package', CHART_DIR, '--destination', out]);
    expect(packaged.exitCode, packaged.stderr).toBe(0);
    const unpacked = await tryRun('tar', ['-xzf', join(out, 'kpx-0.1.0.tgz'), '-C', out]);
    expect(unpacked.exitCode, unpacked.stderr).toBe(0);
    // Only the manifests: crds/README.md is left out (.helmignore), and helm would not take it for a CRD anyway.
    expect((await readdir(join(out, 'kpx', 'crds'))).sort()).toEqual(files);
    for (const f of files) expect(await readFile(join(out, 'kpx', 'crds', f), 'utf8'), f).toBe(await readFile(join(CRD_DIR, f), 'utf8'));
  });
});

describe('docs/install.md', () => {
  let doc: string;
  beforeAll(async () => {
    doc = await readFile(join(REPO_ROOT, 'docs', 'install.md'), 'utf8');
  });

  it("lists every value of values.yaml in its table, and nothing that isn't one", async () => {
    const values = parse(await readFile(join(CHART_DIR, 'values.yaml'), 'utf8')) as Record<string, unknown>;
    const schema = JSON.parse(await readFile(join(CHART_DIR, 'values.schema.json'), 'utf8')) as Record<string, unknown>;
    const leaves = leafValuePaths(values, schema);
    expect(leaves).toContain('config.iptables.minSyncPeriod');
    expect(leaves).toContain('resources.requests');
    expect(valuesTableKeys(doc).sort()).toEqual(leaves.sort());
  });

  it('gives the kind quick start with the exact contract commands', () => {
    expect(doc).toContain(KIND_QUICK_START);
  });

  it("sets in the quick start's helm install exactly what the kind render test uses", () => {
    const install = shellCommands(KIND_QUICK_START).find((c) => c.startsWith('helm install '));
    expect(install).toMatch(/^helm install kpx \.\/charts\/kpx --namespace kube-system .* --wait$/);
    expect([...(install ?? '').matchAll(/--set (\S+)/g)].map((m) => m[1])).toEqual(KIND_QUICK_START_SET);
  });
});

describe('parseManifests', () => {
  it('drops empty documents and rejects invalid YAML', () => {
    expect(parseManifests('---\n# only a comment\n---\nkind: A\nmetadata: {name: a}\n---\n')).toEqual([{ kind: 'A', metadata: { name: 'a' } }]);
    expect(() => parseManifests('kind: [unclosed\n')).toThrow(/invalid YAML/);
  });
});
