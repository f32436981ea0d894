/**
 * fast-check arbitraries for cluster states as Kubernetes objects (what `kpx preview -f` reads):
 * random VALID states (every Service type and traffic policy, EndpointSlices with every condition
 * combination, a Node, an optional KubeProxyConfiguration) and random INVALID mutations of them
 * (one object broken in one field, the way the apiserver would refuse it).
 *
 * Everything is drawn through fast-check, so a run is reproducible from its seed. Addresses come
 * from documentation and private ranges only: the kernel tests load these rules into network
 * namespaces, and nothing here must ever name an address outside them.
 */
import fc from 'fast-check';
import { classifyObjects, type ClusterState } from '../model/cluster.ts';
import type { SourcedObject } from '../model/documents.ts';
import type { JsonObject } from '../model/fields.ts';
import type { IPFamily } from '../model/ip.ts';

type Gen = fc.GeneratorValue;
type Json = Record<string, unknown>;

export const LOCAL_NODE_NAMES = ['node-a', 'worker-1', 'ip-10-0-0-1.ec2.internal'] as const;
export const REMOTE_NODE_NAMES = ['node-b', 'node-c'] as const;
export const ZONES = ['zone-a', 'zone-b', 'zone-c'] as const;
const NAMESPACES = ['default', 'kube-system', 'ns1', 'shop', `n${'s'.repeat(62)}`] as const;
const SERVICE_WORDS = ['web', 'db', 'dns', 'api', 'cart', `s${'v'.repeat(55)}`] as const;
const PORT_NAMES = ['http', 'https', 'dns', 'dns-tcp', 'grpc', 'metrics', 'p80', 'admin-port-1234'] as const;
const COMMON_PORTS = [80, 443, 53, 8080, 9153, 6443] as const;
const PROTOCOLS = [undefined, 'TCP', 'UDP', 'SCTP'] as const;
const FAMILY_SETS: readonly (readonly IPFamily[])[] = [['IPv4'], ['IPv6'], ['IPv4', 'IPv6'], ['IPv6', 'IPv4']];
const CLUSTER_CIDR: Readonly<Record<IPFamily, string>> = { IPv4: '10.244.0.0/16', IPv6: 'fd00:244::/48' };

// Stable builders: fc.gen caches arbitraries by builder and arguments, so these must not be
// fresh closures on every call (that would defeat replay while shrinking).
const int = (g: Gen, min: number, max: number): number => g(fc.integer, { min, max });
const chance = (g: Gen, percent: number): boolean => int(g, 0, 99) < percent;
function pick<T>(g: Gen, items: readonly T[]): T {
  if (items.length === 0) throw new RangeError('Cannot pick from an empty list');
  return items[int(g, 0, items.length - 1)] as T;
}
/** A random subset of `items` of the given size, in random order. */
function subset<T>(g: Gen, items: readonly T[], size: number): T[] {
  const pool = [...items];
  const out: T[] = [];
  while (out.length < size && pool.length > 0) out.push(...pool.splice(int(g, 0, pool.length - 1), 1));
  return out;
}

function hex(n: number): string {
  return n.toString(16);
}

/** Writes an IPv6 address in one of the forms the API accepts (compressed, expanded, upper case). */
function spellIPv6(g: Gen, canonical: string): string {
  switch (int(g, 0, 5)) {
    case 0: {
      if (!canonical.includes('::')) return canonical;
      const [head = '', tail = ''] = canonical.split('::');
      const left = head === '' ? [] : head.split(':');
      const right = tail === '' ? [] : tail.split(':');
      return [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right].join(':');
    }
    case 1:
      return canonical.toUpperCase();
    default:
      return canonical;
  }
}

function nodeIP(family: IPFamily, n: number): string {
  return family === 'IPv4' ? `192.168.${String(n >> 8)}.${String((n & 255) || 2)}` : `fd00:1::${hex(n || 2)}`;
}

function podIP(family: IPFamily, n: number): string {
  return family === 'IPv4' ? `10.244.${String(n >> 4)}.${String((n & 15) + 1)}` : `fd00:244:0:${hex(n >> 4)}::${hex((n & 15) + 1)}`;
}

function clusterIP(family: IPFamily, n: number): string {
  return family === 'IPv4' ? `10.96.${String(n >> 8)}.${String(n & 255)}` : `fd00:96::${hex(n)}`;
}

function externalIP(family: IPFamily, n: number): string {
  return family === 'IPv4' ? `203.0.113.${String(n)}` : `2001:db8:e::${hex(n)}`;
}

function loadBalancerIP(family: IPFamily, n: number): string {
  return family === 'IPv4' ? `198.51.100.${String(n)}` : `2001:db8:1b::${hex(n)}`;
}

const otherFamily = (f: IPFamily): IPFamily => (f === 'IPv4' ? 'IPv6' : 'IPv4');

/** A generated cluster: the objects, plus what the generator decided about the local node. */
export interface GeneratedCluster {
  readonly objects: readonly JsonObject[];
  readonly nodeName: string;
  /** The local node's address families, primary first. */
  readonly nodeFamilies: readonly IPFamily[];
}

interface NodeFacts {
  readonly name: string;
  readonly families: readonly IPFamily[];
  readonly ips: Readonly<Partial<Record<IPFamily, string>>>;
  readonly zone: string | undefined;
}

/** Allocates distinct numbers (node ports, cluster IPs) from a range, as the apiserver would. */
class Allocator {
  readonly #used = new Set<number>();
  readonly #min: number;
  readonly #max: number;
  constructor(min: number, max: number) {
    this.#min = min;
    this.#max = max;
  }
  take(g: Gen): number {
    let n = int(g, this.#min, this.#max);
    while (this.#used.has(n)) n = n === this.#max ? this.#min : n + 1;
    this.#used.add(n);
    return n;
  }
}

function genNode(g: Gen): { node: Json; facts: NodeFacts } {
  const name = pick(g, LOCAL_NODE_NAMES);
  const families = pick(g, FAMILY_SETS);
  const zone = chance(g, 80) ? pick(g, ZONES) : undefined;
  const ips: Partial<Record<IPFamily, string>> = {};
  const addresses: Json[] = [];
  for (const f of families) {
    const ip = nodeIP(f, int(g, 2, 1000));
    ips[f] = ip;
    addresses.push({ type: 'InternalIP', address: f === 'IPv6' ? spellIPv6(g, ip) : ip });
  }
  if (chance(g, 20)) addresses.push({ type: 'ExternalIP', address: externalIP(pick(g, families), int(g, 200, 250)) });
  if (chance(g, 15)) addresses.push({ type: 'InternalIP', address: nodeIP(pick(g, families), int(g, 1001, 2000)) });
  addresses.push({ type: 'Hostname', address: name });
  const podCIDRs = families.map((f) => (f === 'IPv4' ? '10.244.1.0/24' : 'fd00:244:0:1::/64'));
  const node: Json = {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, ...(zone === undefined ? {} : { 'topology.kubernetes.io/zone': zone }) } },
    spec: chance(g, 80) ? { podCIDRs } : { podCIDR: podCIDRs[0] },
    status: { addresses },
  };
  return { node, facts: { name, families, ips, zone } };
}

function genRemoteNode(g: Gen, name: string): Json {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, 'topology.kubernetes.io/zone': pick(g, ZONES) } },
    spec: { podCIDRs: ['10.244.2.0/24'] },
    status: { addresses: [{ type: 'InternalIP', address: nodeIP('IPv4', int(g, 2001, 3000)) }] },
  };
}

function genProxyConfiguration(g: Gen, node: NodeFacts): Json {
  const config: Json = { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration' };
  if (chance(g, 70)) config.hostnameOverride = node.name;
  if (chance(g, 20)) config.mode = pick(g, ['iptables', '']);
  // kube-proxy takes a non-wildcard bindAddress as the primary node IP.
  const primary = node.ips[node.families[0] ?? 'IPv4'];
  if (chance(g, 15)) config.bindAddress = pick(g, ['0.0.0.0', '::', ...(primary === undefined ? [] : [primary])]);
  if (chance(g, 70)) {
    const families = subset(g, node.families, int(g, 1, node.families.length));
    config.clusterCIDR = families.map((f) => CLUSTER_CIDR[f]).join(chance(g, 20) ? ', ' : ',');
  }
  if (chance(g, 50)) {
    const mode = pick(g, ['ClusterCIDR', 'NodeCIDR', 'BridgeInterface', 'InterfaceNamePrefix'] as const);
    config.detectLocalMode = mode;
    if (mode === 'BridgeInterface') config.detectLocal = { bridgeInterface: pick(g, ['cbr0', 'cni0', 'br-pods-123456']) };
    if (mode === 'InterfaceNamePrefix') config.detectLocal = { interfaceNamePrefix: pick(g, ['veth', 'cali', 'lxc']) };
  }
  const iptables: Json = {};
  if (chance(g, 30)) iptables.masqueradeAll = chance(g, 50);
  if (chance(g, 30)) iptables.masqueradeBit = pick(g, [0, 14, 15, 30, 31, int(g, 0, 31)]);
  if (chance(g, 40)) iptables.localhostNodePorts = chance(g, 50);
  if (chance(g, 20)) iptables.syncPeriod = pick(g, ['30s', '1m0s', '1h']);
  if (chance(g, 20)) iptables.minSyncPeriod = pick(g, ['0s', '1s', '500ms']);
  if (Object.keys(iptables).length > 0) config.iptables = iptables;
  if (chance(g, 30)) {
    const v4 = node.ips.IPv4;
    const v6 = node.ips.IPv6;
    const pool = [
      'primary',
      '127.0.0.0/8',
      '0.0.0.0/0',
      '::/0',
      '::1/128',
      // Matches no local address: kube-proxy then programs no NodePort dispatch at all.
      '172.31.0.0/16',
      ...(v4 === undefined ? [] : [`${v4}/32`, '192.168.0.0/16']),
      ...(v6 === undefined ? [] : [`${v6}/128`, 'fd00:1::/64']),
    ];
    config.nodePortAddresses = subset(g, pool, int(g, 1, 3));
  }
  if (chance(g, 15)) config.conntrack = { tcpBeLiberal: chance(g, 50) };
  return config;
}

interface PortFacts {
  readonly name: string;
  readonly protocol: 'TCP' | 'UDP' | 'SCTP';
}

interface ServiceFacts {
  readonly namespace: string;
  readonly name: string;
  readonly families: readonly IPFamily[];
  readonly ports: readonly PortFacts[];
  readonly hints: 'none' | 'zones' | 'nodes' | 'both';
  /** Enough endpoints to push the cluster past kube-proxy's large-cluster threshold (1000). */
  readonly large: boolean;
}

interface Allocators {
  readonly nodePorts: Allocator;
  readonly healthCheckPorts: Allocator;
  readonly clusterIPs: Allocator;
}

function genService(g: Gen, index: number, node: NodeFacts, alloc: Allocators): { service: Json; facts: ServiceFacts } {
  const namespace = pick(g, NAMESPACES);
  const name = `${pick(g, SERVICE_WORDS)}-${String(index)}`;
  // Mostly families the node has (so the service is compiled), sometimes the other one.
  const families = chance(g, 85)
    ? pick(g, FAMILY_SETS.filter((s) => s.some((f) => node.families.includes(f))))
    : pick(g, FAMILY_SETS);
  const type = pick(g, ['ClusterIP', 'NodePort', 'LoadBalancer'] as const);
  const spec: Json = {};
  if (type !== 'ClusterIP' || chance(g, 50)) spec.type = type;

  // Distinct cluster IPs per service: one number shared by both families.
  const ipNumber = alloc.clusterIPs.take(g);
  const ips = families.map((f) => clusterIP(f, ipNumber));
  const spelled = ips.map((ip, i) => (families[i] === 'IPv6' ? spellIPv6(g, ip) : ip));
  const style = families.length === 1 ? int(g, 0, 2) : int(g, 1, 2);
  if (style === 0) spec.clusterIP = spelled[0];
  if (style >= 1) spec.clusterIPs = spelled;
  if (style === 1) spec.clusterIP = spelled[0];
  if (style >= 1 || chance(g, 50)) spec.ipFamilies = [...families];
  if (chance(g, 50)) spec.ipFamilyPolicy = families.length === 2 ? pick(g, ['PreferDualStack', 'RequireDualStack']) : 'SingleStack';

  const portCount = int(g, 1, chance(g, 10) ? 4 : 3);
  const names = portCount === 1 && chance(g, 40) ? [''] : subset(g, PORT_NAMES, portCount);
  const external = type !== 'ClusterIP';
  const ports: Json[] = [];
  const portFacts: PortFacts[] = [];
  const used = new Set<string>();
  for (const portName of names) {
    const protocol = pick(g, PROTOCOLS);
    // The apiserver refuses two ports with one number and protocol: move on to a free number.
    let port = chance(g, 50) ? pick(g, COMMON_PORTS) : int(g, 1, 65535);
    while (used.has(`${String(port)}/${protocol ?? 'TCP'}`)) port = (port % 65535) + 1;
    used.add(`${String(port)}/${protocol ?? 'TCP'}`);
    const p: Json = { port };
    if (portName !== '') p.name = portName;
    if (protocol !== undefined) p.protocol = protocol;
    if (chance(g, 40)) p.targetPort = chance(g, 50) ? int(g, 1, 65535) : 'http-alt';
    if (external) {
      const np = int(g, 0, 9);
      if (np < 8) p.nodePort = alloc.nodePorts.take(g);
      else if (np === 8) p.nodePort = 0;
    }
    ports.push(p);
    portFacts.push({ name: portName, protocol: protocol ?? 'TCP' });
  }
  spec.ports = ports;

  if (chance(g, 25)) {
    spec.externalIPs = Array.from({ length: int(g, 1, 2) }, () => {
      const f = chance(g, 85) ? pick(g, families) : otherFamily(pick(g, families));
      return externalIP(f, int(g, 1, 40));
    });
  }
  const status: Json = {};
  if (type === 'LoadBalancer') {
    const ingress = Array.from({ length: int(g, 0, 3) }, (): Json => {
      const f = chance(g, 85) ? pick(g, families) : otherFamily(pick(g, families));
      const ip = loadBalancerIP(f, int(g, 1, 40));
      switch (int(g, 0, 5)) {
        case 0:
          return { hostname: `lb-${String(index)}.example.com` };
        case 1:
          return { ip, ipMode: 'VIP' };
        case 2:
          return { ip, ipMode: 'Proxy' };
        default:
          return { ip };
      }
    });
    if (ingress.length > 0) status.loadBalancer = { ingress };
    else if (chance(g, 50)) status.loadBalancer = {};
    if (chance(g, 40)) {
      const ranges = [
        '203.0.113.0/25',
        ' 203.0.113.0/25',
        '10.0.0.0/8',
        '192.168.0.0/16', // contains the node IP: the FW chain then also allows the VIPs
        '0.0.0.0/0',
        '198.51.100.7/32',
        '2001:db8::/32',
        'fd00:1::/64', // contains the IPv6 node IP
        '10.1.2.3/8', // host bits set: Go's ParseCIDR clears them
      ];
      spec.loadBalancerSourceRanges = subset(g, ranges, int(g, 1, 3));
    }
  }
  const externallyAccessible = external || spec.externalIPs !== undefined;
  let etpLocal = false;
  if (externallyAccessible && chance(g, 70)) {
    const etp = pick(g, ['Cluster', 'Local'] as const);
    spec.externalTrafficPolicy = etp;
    etpLocal = etp === 'Local';
  }
  if (type === 'LoadBalancer' && etpLocal && chance(g, 85)) spec.healthCheckNodePort = alloc.healthCheckPorts.take(g);
  if (chance(g, 40)) spec.internalTrafficPolicy = pick(g, ['Cluster', 'Local']);
  const affinity = pick(g, [undefined, 'None', 'ClientIP', 'ClientIP']);
  if (affinity !== undefined) spec.sessionAffinity = affinity;
  if (affinity === 'ClientIP' && chance(g, 70)) {
    spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: pick(g, [1, 10800, 86400, int(g, 1, 86400)]) } };
  }
  if (chance(g, 15)) spec.publishNotReadyAddresses = chance(g, 50);
  if (chance(g, 30)) spec.selector = { app: name };

  const service: Json = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace, name, labels: { app: name } },
    spec,
    ...(Object.keys(status).length > 0 ? { status } : {}),
  };
  const hints = pick(g, ['none', 'none', 'zones', 'nodes', 'both'] as const);
  // A mid-range window: fast-check biases integers towards their bounds, so chance() would fire
  // far more often than 1 in 100 and every large cluster costs a second of test time.
  const rare = int(g, 0, 9999);
  const large = index === 0 && rare >= 5000 && rare < 5100;
  return { service, facts: { namespace, name, families, ports: portFacts, hints, large } };
}

function genConditions(g: Gen): Json | undefined {
  if (chance(g, 20)) return undefined;
  const conditions: Json = {};
  for (const key of ['ready', 'serving', 'terminating']) {
    const v = pick(g, [undefined, true, false]);
    if (v !== undefined) conditions[key] = v;
  }
  return conditions;
}

function genEndpoint(g: Gen, family: IPFamily, svc: ServiceFacts, node: NodeFacts): Json {
  const nodeIPOfFamily = node.ips[family];
  // A small address pool, so endpoints repeat across the slices of a service (duplicates).
  const ip = nodeIPOfFamily !== undefined && chance(g, 5) ? nodeIPOfFamily : podIP(family, int(g, 0, 40));
  const addresses = [family === 'IPv6' ? spellIPv6(g, ip) : ip];
  if (chance(g, 10)) addresses.push(podIP(family, int(g, 41, 60)));
  const ep: Json = { addresses };
  const conditions = genConditions(g);
  if (conditions !== undefined) ep.conditions = conditions;
  const where = int(g, 0, 9);
  if (where < 4) ep.nodeName = node.name;
  else if (where < 8) ep.nodeName = pick(g, REMOTE_NODE_NAMES);
  if (chance(g, 50)) ep.zone = pick(g, ZONES);
  const useZones = svc.hints === 'zones' || svc.hints === 'both';
  const useNodes = svc.hints === 'nodes' || svc.hints === 'both';
  const hints: Json = {};
  if (useZones && chance(g, 90)) hints.forZones = subset(g, ZONES, int(g, 1, 2)).map((z) => ({ name: z }));
  if (useNodes && chance(g, 90)) {
    hints.forNodes = subset(g, [node.name, ...REMOTE_NODE_NAMES], int(g, 1, 2)).map((n) => ({ name: n }));
  }
  if (Object.keys(hints).length > 0) ep.hints = hints;
  if (chance(g, 10)) ep.targetRef = { kind: 'Pod', namespace: svc.namespace, name: `${svc.name}-pod` };
  return ep;
}

/** 1001-1100 distinct endpoints in slices of at most 100 (the EndpointSlice controller's default). */
function genLargeEndpointSlices(g: Gen, svc: ServiceFacts, node: NodeFacts): Json[] {
  const family = svc.families[0] ?? 'IPv4';
  const total = int(g, 1001, 1100);
  const ports = svc.ports.map((p) => ({ name: p.name, port: int(g, 1, 65535), protocol: p.protocol }));
  const out: Json[] = [];
  for (let start = 0, j = 0; start < total; start += 100, j++) {
    const endpoints = Array.from({ length: Math.min(100, total - start) }, (_, k): Json => {
      const n = start + k;
      const ip = family === 'IPv4' ? `10.244.${String(128 + (n >> 8))}.${String(n & 255)}` : `fd00:244:1::${hex(n + 1)}`;
      return { addresses: [ip], conditions: { ready: chance(g, 95) }, nodeName: chance(g, 10) ? node.name : pick(g, REMOTE_NODE_NAMES) };
    });
    out.push({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { namespace: svc.namespace, name: `${svc.name}-large-${String(j)}`, labels: { 'kubernetes.io/service-name': svc.name } },
      addressType: family,
      ports,
      endpoints,
    });
  }
  return out;
}

function genEndpointSlices(g: Gen, svc: ServiceFacts, node: NodeFacts): Json[] {
  const out: Json[] = svc.large ? genLargeEndpointSlices(g, svc, node) : [];
  const families = chance(g, 10) ? [...svc.families, otherFamily(svc.families[0] ?? 'IPv4')] : svc.families;
  for (const family of [...new Set(families)]) {
    const count = int(g, 0, 3);
    for (let j = 0; j < count; j++) {
      const ports: Json[] = [];
      for (const p of svc.ports) {
        if (!chance(g, 85)) continue;
        const protocol = chance(g, 5) ? pick(g, ['TCP', 'UDP', 'SCTP'] as const) : p.protocol;
        const sp: Json = { name: p.name, port: chance(g, 50) ? pick(g, COMMON_PORTS) : int(g, 1, 65535) };
        if (protocol !== 'TCP' || chance(g, 50)) sp.protocol = protocol;
        ports.push(sp);
      }
      if (chance(g, 5)) ports.push({ name: 'unrelated', port: 9999, protocol: 'TCP' });
      out.push({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: {
          namespace: svc.namespace,
          name: `${svc.name}-${family === 'IPv4' ? 'v4' : 'v6'}-${String(j)}`,
          labels: { 'kubernetes.io/service-name': svc.name, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
        },
        addressType: family,
        ports,
        endpoints: Array.from({ length: int(g, 0, 4) }, () => genEndpoint(g, family, svc, node)),
      });
    }
  }
  return out;
}

function genCluster(g: Gen, maxServices: number): GeneratedCluster {
  const { node, facts } = genNode(g);
  const objects: Json[] = [];
  if (chance(g, 60)) objects.push(genProxyConfiguration(g, facts));
  objects.push(node);
  if (chance(g, 20)) objects.push(genRemoteNode(g, pick(g, REMOTE_NODE_NAMES)));
  const alloc: Allocators = {
    nodePorts: new Allocator(30000, 31999),
    healthCheckPorts: new Allocator(32000, 32767),
    clusterIPs: new Allocator(1, 4000),
  };
  const services: Json[] = [];
  const slices: Json[] = [];
  const count = int(g, 0, maxServices);
  for (let i = 0; i < count; i++) {
    const { service, facts: svc } = genService(g, i, facts, alloc);
    services.push(service);
    slices.push(...genEndpointSlices(g, svc, facts));
  }
  objects.push(...services, ...slices);
  return { objects, nodeName: facts.name, nodeFamilies: facts.families };
}

export interface ClusterArbitraryOptions {
  /** At most this many Services (default 6). */
  readonly maxServices?: number;
}

/** Random valid cluster states. */
export function validClusterArbitrary(options: ClusterArbitraryOptions = {}): fc.Arbitrary<GeneratedCluster> {
  const maxServices = options.maxServices ?? 6;
  return fc.gen().map((g) => genCluster(g, maxServices));
}

/** The objects as decoded documents, each with a source naming its position (`generated#3`). */
export function sourcedObjects(objects: readonly JsonObject[]): SourcedObject[] {
  return objects.map((object, i) => ({ object, source: sourceOf(i) }));
}

export function sourceOf(index: number): string {
  return `generated#${String(index + 1)}`;
}

/** Classifies generated objects into a ClusterState; every generated object is of a read kind. */
export function clusterStateOf(objects: readonly JsonObject[]): ClusterState {
  const { state, problems } = classifyObjects(sourcedObjects(objects));
  if (problems.length > 0) throw new Error(`Generated objects were not classified: ${JSON.stringify(problems)}`);
  return state;
}

// ---------------------------------------------------------------------------------------------
// Invalid mutations

export type MutableKind = 'Service' | 'EndpointSlice' | 'Node' | 'KubeProxyConfiguration';

export interface InvalidCase {
  /** The valid cluster the mutation started from. */
  readonly base: GeneratedCluster;
  /** The base objects with one of them broken. */
  readonly objects: readonly JsonObject[];
  readonly index: number;
  readonly kind: MutableKind;
  /** What was broken, e.g. `spec.ports[0].port = 70000`. */
  readonly mutation: string;
}

type Mutation = (g: Gen, o: Json) => string | undefined;

const at = (value: unknown): Json => (typeof value === 'object' && value !== null ? (value as Json) : {});
const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const show = (v: unknown): string => (v === undefined ? 'undefined' : JSON.stringify(v));

function set(o: Json, path: string, value: unknown): string {
  const keys = path.split('.');
  let cur: Json = o;
  for (const k of keys.slice(0, -1)) {
    const idx = /^\[(\d+)\]$/.exec(k);
    const next: unknown = idx === null ? cur[k] : list(cur)[Number(idx[1])];
    if (typeof next !== 'object' || next === null) {
      const created: Json = {};
      cur[k] = created;
      cur = created;
    } else {
      cur = next as Json;
    }
  }
  const last = keys.at(-1) ?? '';
  const idx = /^\[(\d+)\]$/.exec(last);
  if (idx !== null) (cur as unknown as unknown[])[Number(idx[1])] = value;
  else if (value === undefined) Reflect.deleteProperty(cur, last);
  else cur[last] = value;
  return `${path.replace(/\.\[/g, '[')} = ${show(value)}`;
}

const SERVICE_MUTATIONS: readonly Mutation[] = [
  (g, o) => {
    const ports = list(at(o.spec).ports);
    const k = int(g, 0, ports.length - 1);
    return set(o, `spec.ports.[${String(k)}].port`, pick(g, [0, -1, 65536, 70000, '80', 80.5, true, null]));
  },
  (g, o) => {
    const ports = list(at(o.spec).ports);
    return set(o, `spec.ports.[${String(int(g, 0, ports.length - 1))}].nodePort`, pick(g, [65536, -1, 100000, '30080']));
  },
  (g, o) => {
    const ports = list(at(o.spec).ports);
    return set(o, `spec.ports.[${String(int(g, 0, ports.length - 1))}].protocol`, pick(g, ['ICMP', 'tcp', 'HTTP', 6]));
  },
  (g, o) => {
    const ports = list(at(o.spec).ports);
    return set(o, `spec.ports.[${String(int(g, 0, ports.length - 1))}]`, pick(g, [80, 'http', ['http']]));
  },
  (_g, o) => {
    const ports = list(at(o.spec).ports);
    if (ports.length < 2) return undefined;
    return set(o, 'spec.ports.[1].name', at(ports[0]).name);
  },
  (g, o) => {
    const ports = list(at(o.spec).ports);
    if (ports.length < 2) return undefined;
    return set(o, `spec.ports.[${String(int(g, 0, ports.length - 1))}].name`, undefined);
  },
  (_g, o) => {
    const ports = list(at(o.spec).ports);
    if (ports.length < 2) return undefined;
    set(o, 'spec.ports.[1].protocol', at(ports[0]).protocol ?? 'TCP');
    return set(o, 'spec.ports.[1].port', at(ports[0]).port);
  },
  (_g, o) => {
    const ports = list(at(o.spec).ports);
    const nodePort = at(ports[0]).nodePort;
    if (ports.length < 2 || typeof nodePort !== 'number' || nodePort === 0) return undefined;
    set(o, 'spec.ports.[1].protocol', at(ports[0]).protocol ?? 'TCP');
    return set(o, 'spec.ports.[1].nodePort', nodePort);
  },
  (g, o) => set(o, 'spec.ports', pick(g, [{}, '80', 80])),
  (g, o) => {
    const bad = pick(g, ['10.96.0.256', 'not-an-ip', '10.96.1', 'fd00::96::1', ' 10.96.0.1', '10.96.0.1/32', 'fd00:96::1%eth0']);
    const spec = at(o.spec);
    if (spec.clusterIPs !== undefined) set(o, 'spec.clusterIPs.[0]', bad);
    if (spec.clusterIP !== undefined || spec.clusterIPs === undefined) set(o, 'spec.clusterIP', bad);
    return `spec.clusterIP(s)[0] = ${show(bad)}`;
  },
  (_g, o) => {
    const spec = at(o.spec);
    const first = (list(spec.clusterIPs)[0] ?? spec.clusterIP) as string;
    set(o, 'spec.clusterIPs', [first]);
    return set(o, 'spec.ipFamilies', [first.includes(':') ? 'IPv4' : 'IPv6']);
  },
  (_g, o) => {
    const spec = at(o.spec);
    const first = (list(spec.clusterIPs)[0] ?? spec.clusterIP) as string;
    set(o, 'spec.ipFamilies', undefined);
    return set(o, 'spec.clusterIPs', [first, first.includes(':') ? '10.96.255.1' : 'fd00:96::ff:1', '10.96.255.2']);
  },
  (_g, o) => {
    const spec = at(o.spec);
    const first = (list(spec.clusterIPs)[0] ?? spec.clusterIP) as string;
    set(o, 'spec.clusterIPs', [first]);
    return set(o, 'spec.clusterIP', first.includes(':') ? 'fd00:96::ff:ff' : '10.96.255.254');
  },
  (_g, o) => {
    const spec = at(o.spec);
    const first = (list(spec.clusterIPs)[0] ?? spec.clusterIP) as string;
    set(o, 'spec.ipFamilies', undefined);
    set(o, 'spec.clusterIP', undefined);
    // Two addresses of one family.
    return set(o, 'spec.clusterIPs', [first, first.includes(':') ? 'fd00:96::ff:2' : '10.96.255.3']);
  },
  (g, o) => set(o, 'spec.externalIPs', [...list(at(o.spec).externalIPs), pick(g, ['300.1.1.1', '2001:db8::g', '203.0.113.1/32', '', 'localhost', 7])]),
  (g, o) => {
    const ingress = [...list(at(at(o.status).loadBalancer).ingress), { ip: pick(g, ['1.2.3.4.5', '198.51.100.300', '::ffff::1']) }];
    return set(o, 'status.loadBalancer.ingress', ingress);
  },
  (g, o) => {
    const ingress = [...list(at(at(o.status).loadBalancer).ingress), { ip: '198.51.100.9', ipMode: pick(g, ['Foo', 'vip']) }];
    return set(o, 'status.loadBalancer.ingress', ingress);
  },
  (g, o) => set(o, 'status.loadBalancer.ingress', pick(g, ['198.51.100.9', { ip: '198.51.100.9' }])),
  (g, o) =>
    set(o, 'spec.loadBalancerSourceRanges', [
      ...list(at(o.spec).loadBalancerSourceRanges),
      pick(g, ['10.0.0.0/33', '10.0.0.1', 'garbage', 'fd00::/129', '10.0.0.0/-1', '']),
    ]),
  (g, o) => {
    set(o, 'spec.sessionAffinity', 'ClientIP');
    return set(o, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', pick(g, [0, -5, 86401, '60', 1.5]));
  },
  (g, o) => set(o, 'spec.sessionAffinity', pick(g, ['Sticky', 'clientip', 1])),
  (g, o) => set(o, 'spec.type', pick(g, ['Internal', 'nodeport', 3])),
  (g, o) => set(o, 'spec.externalTrafficPolicy', pick(g, ['Global', 'local', true])),
  (g, o) => set(o, 'spec.internalTrafficPolicy', pick(g, ['Node', 'PreferClose'])),
  (g, o) => set(o, 'spec.healthCheckNodePort', pick(g, [70000, -1, '30000'])),
  (g, o) => set(o, 'spec', pick(g, ['ClusterIP', [], 5])),
  (g, o) => set(o, 'spec.publishNotReadyAddresses', pick(g, ['yes', 1])),
  (_g, o) => set(o, 'metadata.name', undefined),
  (g, o) => set(o, 'metadata.labels', { app: pick(g, [5, true, {}]) }),
];

const SLICE_MUTATIONS: readonly Mutation[] = [
  (g, o) => set(o, 'addressType', pick(g, ['IPv5', 'ipv4', undefined, 4])),
  (g, o) => {
    const eps = list(o.endpoints);
    if (eps.length === 0) return undefined;
    const k = int(g, 0, eps.length - 1);
    const addrs = list(at(eps[k]).addresses);
    const wrongFamily = o.addressType === 'IPv4' ? 'fd00:244::5' : '10.244.0.5';
    return set(o, `endpoints.[${String(k)}].addresses.[${String(int(g, 0, addrs.length - 1))}]`, pick(g, ['10.244.0.300', 'fd00::zz', '', 'pod-1', wrongFamily, 5]));
  },
  (g, o) => {
    const eps = list(o.endpoints);
    if (eps.length === 0) return undefined;
    return set(o, `endpoints.[${String(int(g, 0, eps.length - 1))}]`, pick(g, ['10.244.0.1', 5, []]));
  },
  (g, o) => {
    const eps = list(o.endpoints);
    if (eps.length === 0) return undefined;
    return set(o, `endpoints.[${String(int(g, 0, eps.length - 1))}].addresses`, pick(g, ['10.244.0.1', {}]));
  },
  (g, o) => {
    const eps = list(o.endpoints);
    if (eps.length === 0) return undefined;
    const k = String(int(g, 0, eps.length - 1));
    const key = pick(g, ['ready', 'serving', 'terminating']);
    return set(o, `endpoints.[${k}].conditions.${key}`, pick(g, ['true', 1, 'False']));
  },
  (g, o) => {
    const eps = list(o.endpoints);
    if (eps.length === 0) return undefined;
    return set(o, `endpoints.[${String(int(g, 0, eps.length - 1))}].conditions`, pick(g, ['ready', [true]]));
  },
  (g, o) => {
    const eps = list(o.endpoints);
    if (eps.length === 0) return undefined;
    return set(o, `endpoints.[${String(int(g, 0, eps.length - 1))}].nodeName`, pick(g, [5, true, ['node-a']]));
  },
  (g, o) => {
    const eps = list(o.endpoints);
    if (eps.length === 0) return undefined;
    const k = String(int(g, 0, eps.length - 1));
    const which = pick(g, ['forZones', 'forNodes']);
    return set(o, `endpoints.[${k}].hints.${which}`, pick(g, ['zone-a', 5, ['zone-a'], [{ name: 5 }]]));
  },
  (g, o) => {
    const eps = list(o.endpoints);
    if (eps.length === 0) return undefined;
    return set(o, `endpoints.[${String(int(g, 0, eps.length - 1))}].hints`, pick(g, ['zone-a', [1]]));
  },
  (g, o) => {
    const ports = list(o.ports);
    if (ports.length === 0) return undefined;
    // Port 0 is not invalid (kube-proxy skips such ports), so it is not among these.
    return set(o, `ports.[${String(int(g, 0, ports.length - 1))}].port`, pick(g, [70000, -1, '8080', 1.5, 65536]));
  },
  (g, o) => {
    const ports = list(o.ports);
    if (ports.length === 0) return undefined;
    return set(o, `ports.[${String(int(g, 0, ports.length - 1))}].protocol`, pick(g, ['HTTP', 'udp', 17]));
  },
  (g, o) => {
    const ports = list(o.ports);
    if (ports.length === 0) return undefined;
    return set(o, `ports.[${String(int(g, 0, ports.length - 1))}].name`, pick(g, [5, true, ['http']]));
  },
  (g, o) => {
    const ports = list(o.ports);
    if (ports.length === 0) return undefined;
    return set(o, `ports.[${String(int(g, 0, ports.length - 1))}]`, pick(g, [80, 'http']));
  },
  (g, o) => set(o, 'endpoints', pick(g, [{}, 'x'])),
  (g, o) => set(o, 'ports', pick(g, [{}, 'x'])),
  (_g, o) => set(o, 'metadata.name', undefined),
];

const NODE_MUTATIONS: readonly Mutation[] = [
  (g, o) => {
    const addrs = list(at(o.status).addresses);
    const k = addrs.findIndex((a) => at(a).type === 'InternalIP');
    if (k < 0) return undefined;
    return set(o, `status.addresses.[${String(k)}].address`, pick(g, ['192.168.0.300', 'node-a.local', '', 5]));
  },
  (g, o) => set(o, 'spec.podCIDRs', [pick(g, ['10.244.1.0/33', '10.244.1.0', 'bogus', 24])]),
  (g, o) => {
    set(o, 'spec.podCIDRs', undefined);
    return set(o, 'spec.podCIDR', pick(g, [5, '10.244.1.0/40']));
  },
  (g, o) => set(o, 'status.addresses', pick(g, ['10.0.0.1', {}])),
  (g, o) => set(o, 'status.addresses.[0]', pick(g, ['x', 5])),
  (g, o) => set(o, 'status', pick(g, ['Ready', [1]])),
  (_g, o) => set(o, 'metadata.name', undefined),
  (g, o) => set(o, 'metadata.labels', { 'topology.kubernetes.io/zone': pick(g, [5, false]) }),
];

const PROXY_CONFIGURATION_MUTATIONS: readonly Mutation[] = [
  (g, o) => set(o, 'clusterCIDR', pick(g, ['10.244.0.0/33', '10.244.0.0/16,10.245.0.0/16', 'garbage', 'fd00::/200', 16])),
  (g, o) => set(o, 'mode', pick(g, ['ipvs', 'nftables', 'kernelspace'])),
  (g, o) => set(o, 'iptables.masqueradeBit', pick(g, [32, -1, '14', 14.5])),
  (g, o) => set(o, 'detectLocalMode', pick(g, ['Foo', 'clustercidr'])),
  (g, o) => set(o, 'bindAddress', pick(g, ['0.0.0.300', 'any'])),
  (g, o) => set(o, 'nodePortAddresses', pick(g, [['bogus'], ['10.0.0.0/33'], 'primary', [5]])),
  (g, o) => set(o, 'iptables.masqueradeAll', pick(g, ['true', 1])),
  (g, o) => set(o, 'iptables.localhostNodePorts', pick(g, ['false', 0])),
  (g, o) => set(o, 'iptables.syncPeriod', pick(g, ['5 minutes', '30', '1h30x', 30])),
  (g, o) => set(o, 'conntrack.tcpBeLiberal', pick(g, [1, 'yes'])),
  (g, o) => set(o, 'iptables', pick(g, ['fast', [1]])),
  (g, o) => set(o, 'hostnameOverride', pick(g, [5, ['node-a']])),
];

const MUTATIONS: Readonly<Record<MutableKind, readonly Mutation[]>> = {
  Service: SERVICE_MUTATIONS,
  EndpointSlice: SLICE_MUTATIONS,
  Node: NODE_MUTATIONS,
  KubeProxyConfiguration: PROXY_CONFIGURATION_MUTATIONS,
};

function mutableKind(o: JsonObject): MutableKind | undefined {
  const kind = o.kind;
  return typeof kind === 'string' && Object.hasOwn(MUTATIONS, kind) ? (kind as MutableKind) : undefined;
}

function genInvalid(g: Gen, base: GeneratedCluster): InvalidCase {
  const candidates = base.objects.flatMap((o, i) => (mutableKind(o) === undefined ? [] : [i]));
  for (;;) {
    const index = pick(g, candidates);
    const original = base.objects[index];
    const kind = original === undefined ? undefined : mutableKind(original);
    if (original === undefined || kind === undefined) continue;
    const mutated = structuredClone(original) as Json;
    const mutation = pick(g, MUTATIONS[kind])(g, mutated);
    if (mutation === undefined) continue; // not applicable to this object's shape; draw again
    const objects = base.objects.map((o, i) => (i === index ? mutated : o));
    return { base, objects, index, kind, mutation };
  }
}

/** A valid cluster with exactly one object broken (every cluster has at least its Node). */
export function invalidClusterArbitrary(options: ClusterArbitraryOptions = {}): fc.Arbitrary<InvalidCase> {
  const maxServices = options.maxServices ?? 6;
  return fc.gen().map((g) => genInvalid(g, genCluster(g, maxServices)));
}
