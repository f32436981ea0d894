/**
 * The validated, per-family model the compiler consumes: service ports, their endpoints (deduped
 * and sorted exactly as kube-proxy sorts them) and the node context (reference §1.0, §1.14, §8).
 */
import type { ProxyConfig } from './config.ts';
import type { EndpointSliceInfo } from './endpointslice.ts';
import {
  cidrContains,
  formatCIDR,
  formatIP,
  isLoopback,
  joinHostPort,
  LOOPBACK_V4,
  LOOPBACK_V6,
  parseCIDR,
  parseIP,
  type IPFamily,
} from './ip.ts';
import { ZONE_LABEL, type NodeInfo } from './node.ts';
import type { Protocol, ServiceInfo } from './service.ts';

/** kube-proxy switches to large-cluster mode above this many endpoints (reference §4.4). */
export const LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000;

export interface ServicePort {
  /** Unique key: ServicePortName plus protocol, e.g. `ns/web:http/TCP`. */
  readonly key: string;
  /** ServicePortName.String(): `ns/name:portname`, or `ns/name` for an unnamed port. */
  readonly spn: string;
  readonly namespace: string;
  readonly serviceName: string;
  readonly portName: string;
  readonly protocol: Protocol;
  readonly clusterIP: string;
  readonly port: number;
  readonly nodePort: number;
  readonly affinityTimeoutSeconds: number;
  readonly externalIPs: readonly string[];
  readonly loadBalancerIPs: readonly string[];
  readonly loadBalancerSourceRanges: readonly string[];
  readonly healthCheckNodePort: number;
  readonly externalPolicyLocal: boolean;
  readonly internalPolicyLocal: boolean;
}

export interface Endpoint {
  readonly ip: string;
  readonly port: number;
  /** JoinHostPort(ip, port): `10.0.0.1:80`, `[fd00::1]:80`. */
  readonly endpoint: string;
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
  readonly isLocal: boolean;
  readonly zoneHints: readonly string[];
  readonly nodeHints: readonly string[];
}

/** Which sources count as "local pods" for masquerading (kube-proxy's LocalTrafficDetector). */
export type LocalTrafficDetector =
  | { readonly kind: 'cidr'; readonly cidr: string }
  | { readonly kind: 'interface'; readonly name: string }
  | { readonly kind: 'none' };

export interface NodeContext {
  readonly family: IPFamily;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly zone: string;
  /** The primary node IP of this family, if known. */
  readonly primaryIP: string | undefined;
  /** Every local address of this family (primary first), loopback excluded. */
  readonly localIPs: readonly string[];
  readonly detector: LocalTrafficDetector;
  readonly masqueradeMark: string;
  readonly masqueradeAll: boolean;
  /** Effective: IPv4 only, and only when the node-port addresses include loopback. */
  readonly localhostNodePorts: boolean;
  /** 'all' or the exact local addresses NodePorts answer on. */
  readonly nodePortAddresses: 'all' | readonly string[];
  readonly nfacct: boolean;
  readonly masqueradeRandomFully: boolean;
  readonly conntrackTCPBeLiberal: boolean;
}

export interface FamilyModel {
  readonly family: IPFamily;
  readonly node: NodeContext;
  /** Sorted by key. */
  readonly servicePorts: readonly ServicePort[];
  /** Per ServicePort.key, sorted by endpoint string; absent when there are none. */
  readonly endpoints: ReadonlyMap<string, readonly Endpoint[]>;
  readonly largeClusterMode: boolean;
}

export function servicePortName(namespace: string, name: string, portName: string): string {
  return portName === '' ? `${namespace}/${name}` : `${namespace}/${name}:${portName}`;
}

function byFamily(texts: readonly string[], family: IPFamily): string[] {
  return texts.filter((t) => parseIP(t)?.family === family);
}

export function servicePortsFor(service: ServiceInfo, family: IPFamily): ServicePort[] {
  const clusterIP = service.clusterIPs[family];
  if (clusterIP === undefined) return [];
  const externallyAccessibleByType =
    service.type === 'LoadBalancer' || service.type === 'NodePort' || service.externalIPs.length > 0;
  const externalPolicyLocal = externallyAccessibleByType && service.externalTrafficPolicyLocal;
  return service.ports.map((p) => {
    const spn = servicePortName(service.namespace, service.name, p.name);
    return {
      key: `${spn}/${p.protocol}`,
      spn,
      namespace: service.namespace,
      serviceName: service.name,
      portName: p.name,
      protocol: p.protocol,
      clusterIP,
      port: p.port,
      nodePort: p.nodePort,
      affinityTimeoutSeconds: service.affinityTimeoutSeconds,
      externalIPs: byFamily(service.externalIPs, family),
      loadBalancerIPs: byFamily(service.loadBalancerIPs, family),
      loadBalancerSourceRanges: service.loadBalancerSourceRanges.filter((c) => c.family === family).map(formatCIDR),
      healthCheckNodePort: service.type === 'LoadBalancer' && externalPolicyLocal ? service.healthCheckNodePort : 0,
      externalPolicyLocal,
      internalPolicyLocal: service.internalTrafficPolicyLocal,
    };
  });
}

/** Port-level: reachable from outside through a NodePort, LB IP or external IP. */
export function externallyAccessible(sp: ServicePort): boolean {
  return sp.nodePort !== 0 || sp.loadBalancerIPs.length > 0 || sp.externalIPs.length > 0;
}

export function usesClusterEndpoints(sp: ServicePort): boolean {
  return !sp.internalPolicyLocal || externallyAccessible(sp);
}

export function usesLocalEndpoints(sp: ServicePort): boolean {
  return sp.internalPolicyLocal || (sp.externalPolicyLocal && externallyAccessible(sp));
}

/** `namespace/name` of the Service a port or slice belongs to. */
function serviceKeyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** This family's slices per Service, each list in slice-name order (the order kube-proxy merges them in). */
function slicesByService(slices: readonly EndpointSliceInfo[], family: IPFamily): Map<string, EndpointSliceInfo[]> {
  const out = new Map<string, EndpointSliceInfo[]>();
  for (const slice of slices) {
    if (slice.family !== family) continue;
    const key = serviceKeyOf(slice.namespace, slice.serviceName);
    const list = out.get(key);
    if (list === undefined) out.set(key, [slice]);
    else list.push(slice);
  }
  for (const list of out.values()) if (list.length > 1) list.sort((a, b) => compareStrings(a.name, b.name));
  return out;
}

/** The endpoints of one Service's ports, from that Service's slices (slice-name order). */
function serviceEndpoints(ports: readonly ServicePort[], slices: readonly EndpointSliceInfo[], nodeName: string): Map<string, Endpoint[]> {
  const wanted = new Set(ports.map((sp) => sp.key));
  const byKey = new Map<string, Map<string, Endpoint>>();
  for (const slice of slices) {
    for (const port of slice.ports) {
      const key = `${servicePortName(slice.namespace, slice.serviceName, port.name)}/${port.protocol}`;
      if (!wanted.has(key)) continue;
      let set = byKey.get(key);
      if (set === undefined) {
        set = new Map();
        byKey.set(key, set);
      }
      for (const ep of slice.endpoints) {
        const endpoint = joinHostPort(ep.ip, port.port);
        const isLocal = nodeName !== '' && ep.nodeName === nodeName;
        if (set.has(endpoint) && !isLocal) continue;
        set.set(endpoint, {
          ip: ep.ip,
          port: port.port,
          endpoint,
          ready: ep.ready,
          serving: ep.serving,
          terminating: ep.terminating,
          isLocal,
          zoneHints: ep.zoneHints,
          nodeHints: ep.nodeHints,
        });
      }
    }
  }
  const out = new Map<string, Endpoint[]>();
  for (const [key, set] of byKey) {
    out.set(key, [...set.values()].sort((a, b) => compareStrings(a.endpoint, b.endpoint)));
  }
  return out;
}

/** Plain byte-wise string order, like Go's `<` on strings (not locale order). */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export interface NodeContextInput {
  readonly config: ProxyConfig;
  readonly node: NodeInfo | undefined;
  readonly family: IPFamily;
  readonly masqueradeMark: string;
}

/** All local addresses of the node (primary first): the configured ones, else the Node's. */
export function nodeAddresses(config: ProxyConfig, node: NodeInfo | undefined): string[] {
  const base = config.nodeIPs.length > 0 ? config.nodeIPs : (node?.addresses ?? []);
  const canonical = base.map((t) => canonicalOrSelf(t));
  const bind = config.bindAddress === '' ? undefined : parseIP(config.bindAddress);
  if (bind !== undefined && bind.value !== 0n) canonical.unshift(formatIP(bind));
  return [...new Set(canonical)];
}

function canonicalOrSelf(text: string): string {
  const ip = parseIP(text);
  return ip === undefined ? text : formatIP(ip);
}

function detectorFor(config: ProxyConfig, node: NodeInfo | undefined, family: IPFamily): LocalTrafficDetector {
  switch (config.detectLocalMode) {
    case 'ClusterCIDR': {
      const cidr = config.clusterCIDRs.map((c) => parseCIDR(c)).find((c) => c?.family === family);
      return cidr === undefined ? { kind: 'none' } : { kind: 'cidr', cidr: formatCIDR(cidr) };
    }
    case 'NodeCIDR': {
      const cidr = (node?.podCIDRs ?? []).map((c) => parseCIDR(c)).find((c) => c?.family === family);
      return cidr === undefined ? { kind: 'none' } : { kind: 'cidr', cidr: formatCIDR(cidr) };
    }
    case 'BridgeInterface':
      return { kind: 'interface', name: config.bridgeInterface };
    case 'InterfaceNamePrefix':
      return { kind: 'interface', name: `${config.interfaceNamePrefix}+` };
  }
}

export function nodeContext(input: NodeContextInput): NodeContext {
  const { config, node, family } = input;
  const localIPs = nodeAddresses(config, node).filter((t) => {
    const ip = parseIP(t);
    return ip?.family === family && !isLoopback(ip);
  });
  const primaryIP = localIPs[0];
  // kube-proxy's NodePortAddresses: CIDRs of this family ("primary" = the primary IP); none = all.
  const cidrs = config.nodePortAddresses.flatMap((text) => {
    if (text === 'primary') return primaryIP === undefined ? [] : [parseCIDR(`${primaryIP}/${family === 'IPv4' ? '32' : '128'}`)];
    const c = parseCIDR(text);
    return c?.family === family ? [c] : [];
  }).filter((c) => c !== undefined);
  const matchAll = cidrs.length === 0 || cidrs.some((c) => c.prefix === 0);
  const containsLoopbackV4 = family === 'IPv4' && (matchAll || cidrs.some((c) => cidrContains(c, LOOPBACK_V4)));
  const localhostNodePorts = config.localhostNodePorts && containsLoopbackV4;
  let nodePortAddresses: 'all' | string[] = 'all';
  if (!matchAll) {
    const loopback = family === 'IPv4' ? LOOPBACK_V4 : LOOPBACK_V6;
    const candidates = [...localIPs.map((t) => parseIP(t)).filter((ip) => ip !== undefined), loopback];
    nodePortAddresses = candidates
      .filter((ip) => cidrs.some((c) => cidrContains(c, ip)))
      // kube-proxy skips loopback for IPv6 and when localhost NodePorts are off (reference §1.3).
      .filter((ip) => !isLoopback(ip) || localhostNodePorts)
      .map(formatIP);
  }
  return {
    family,
    name: config.nodeName,
    labels: node?.labels ?? {},
    zone: node?.labels[ZONE_LABEL] ?? '',
    primaryIP,
    localIPs,
    detector: detectorFor(config, node, family),
    masqueradeMark: input.masqueradeMark,
    masqueradeAll: config.masqueradeAll,
    localhostNodePorts,
    nodePortAddresses,
    nfacct: config.nfacct,
    masqueradeRandomFully: config.masqueradeRandomFully,
    conntrackTCPBeLiberal: config.conntrackTCPBeLiberal,
  };
}

export interface FamilyModelInput {
  readonly services: readonly ServiceInfo[];
  readonly slices: readonly EndpointSliceInfo[];
  readonly node: NodeContext;
}

/**
 * What one family's model build leaves for the next (the agent's syncs): a Service whose
 * ServiceInfo and slices are the same objects as last time gets the same ServicePort and Endpoint
 * arrays back, so everything downstream can tell "unchanged" by identity.
 */
export class FamilyModelMemo {
  #nodeKey: string | undefined;
  #ports = new WeakMap<ServiceInfo, readonly ServicePort[]>();
  #endpoints = new Map<string, { readonly ports: readonly ServicePort[]; readonly slices: readonly EndpointSliceInfo[]; readonly result: ReadonlyMap<string, readonly Endpoint[]> }>();

  /** Forgets everything when the node context changed (it decides locality and addresses). */
  forNode(node: NodeContext): void {
    const key = JSON.stringify(node);
    if (key === this.#nodeKey) return;
    this.#nodeKey = key;
    this.#ports = new WeakMap();
    this.#endpoints = new Map();
  }

  ports(service: ServiceInfo, family: IPFamily): readonly ServicePort[] {
    let ports = this.#ports.get(service);
    if (ports === undefined) {
      ports = servicePortsFor(service, family);
      this.#ports.set(service, ports);
    }
    return ports;
  }

  endpoints(service: string, ports: readonly ServicePort[], slices: readonly EndpointSliceInfo[], nodeName: string): ReadonlyMap<string, readonly Endpoint[]> {
    const known = this.#endpoints.get(service);
    if (known?.ports === ports && known.slices.length === slices.length && known.slices.every((s, i) => s === slices[i])) return known.result;
    const result = serviceEndpoints(ports, slices, nodeName);
    this.#endpoints.set(service, { ports, slices, result });
    return result;
  }

  /** Drops Services that no longer exist. */
  retain(services: ReadonlySet<string>): void {
    for (const key of this.#endpoints.keys()) if (!services.has(key)) this.#endpoints.delete(key);
  }
}

/**
 * kube-proxy's view of one family: service ports sorted, and per port the endpoints of its
 * Service's slices (kube-proxy's EndpointSliceCache: dedup by `ip:port`, a local copy wins; sorted
 * by the endpoint string). A memo carried between builds makes unchanged Services free.
 */
export function buildFamilyModel(input: FamilyModelInput, memo = new FamilyModelMemo()): FamilyModel {
  const { node } = input;
  const family = node.family;
  memo.forNode(node);
  const servicePorts: ServicePort[] = [];
  const endpoints = new Map<string, readonly Endpoint[]>();
  const byService = slicesByService(input.slices, family);
  const seen = new Set<string>();
  for (const service of input.services) {
    const ports = memo.ports(service, family);
    if (ports.length === 0) continue;
    const key = serviceKeyOf(service.namespace, service.name);
    seen.add(key);
    for (const sp of ports) servicePorts.push(sp);
    for (const [spKey, list] of memo.endpoints(key, ports, byService.get(key) ?? [], node.name)) endpoints.set(spKey, list);
  }
  memo.retain(seen);
  servicePorts.sort((a, b) => compareStrings(a.spn, b.spn) || compareStrings(a.protocol, b.protocol));
  let total = 0;
  for (const list of endpoints.values()) total += list.length;
  return {
    family,
    node,
    servicePorts,
    endpoints,
    largeClusterMode: total > LARGE_CLUSTER_ENDPOINTS_THRESHOLD,
  };
}
