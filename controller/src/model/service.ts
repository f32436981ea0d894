/**
 * v1 Service → ServiceInfo: validated, defaulted the way the apiserver would, and filtered the way
 * kube-proxy's informers and ShouldSkipService filter (reference §1.0).
 */
import {
  arrayAt,
  boolAt,
  enumAt,
  intAt,
  metadataOf,
  objectAt,
  portAt,
  stringAt,
  type JsonObject,
} from './fields.ts';
import { formatIP, parseCIDR, parseIP, type CIDR, type IPFamily } from './ip.ts';
import { FieldError, quote } from './problem.ts';

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP'];

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';

export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';

/** The API default for sessionAffinityConfig.clientIP.timeoutSeconds. */
export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;
const MAX_AFFINITY_TIMEOUT_SECONDS = 86400;

export interface ServicePortSpec {
  /** `spec.ports[i].name`, "" when unnamed. */
  readonly name: string;
  readonly port: number;
  readonly protocol: Protocol;
  /** 0 when the port has no node port. */
  readonly nodePort: number;
}

export interface ServiceInfo {
  readonly namespace: string;
  readonly name: string;
  readonly type: ServiceType;
  /** Canonical cluster IP per family (from spec.clusterIPs / spec.ipFamilies). */
  readonly clusterIPs: Readonly<Partial<Record<IPFamily, string>>>;
  readonly ports: readonly ServicePortSpec[];
  /** Canonical external IPs, spec order, all families. */
  readonly externalIPs: readonly string[];
  /** Canonical load-balancer ingress IPs with ipMode unset or VIP, status order, all families. */
  readonly loadBalancerIPs: readonly string[];
  readonly loadBalancerSourceRanges: readonly CIDR[];
  /** ClientIP affinity timeout in seconds; 0 when sessionAffinity is None. */
  readonly affinityTimeoutSeconds: number;
  readonly externalTrafficPolicyLocal: boolean;
  readonly internalTrafficPolicyLocal: boolean;
  readonly healthCheckNodePort: number;
}

export type ServiceReading =
  | { readonly kind: 'service'; readonly service: ServiceInfo }
  | { readonly kind: 'ignored'; readonly reason: string };

export interface ServiceFilter {
  /** kpx's service-proxy-name; "" means kpx handles only unlabelled Services (kube-proxy's behaviour). */
  readonly serviceProxyName: string;
}

function readIP(value: unknown, field: string): { text: string; family: IPFamily } {
  const s = stringAt(value, field);
  const ip = s === undefined ? undefined : parseIP(s.trim() === s ? s : '');
  if (s === undefined || ip === undefined) throw new FieldError(field, `${quote(value)} is not a valid IP address`);
  return { text: formatIP(ip), family: ip.family };
}

function readPorts(spec: JsonObject): ServicePortSpec[] {
  const raw = arrayAt(spec.ports, 'spec.ports');
  const ports: ServicePortSpec[] = [];
  const seen = new Set<string>();
  raw.forEach((entry, i) => {
    const f = `spec.ports[${String(i)}]`;
    const p = objectAt(entry, f) ?? {};
    const name = stringAt(p.name, `${f}.name`) ?? '';
    const port = portAt(p.port, `${f}.port`);
    if (port === undefined) throw new FieldError(`${f}.port`, 'is required');
    const protocol = enumAt(p.protocol, `${f}.protocol`, PROTOCOLS) ?? 'TCP';
    const nodePort = portAt(p.nodePort, `${f}.nodePort`, { allowZero: true }) ?? 0;
    if (raw.length > 1 && name === '') throw new FieldError(`${f}.name`, 'is required when the Service has more than one port');
    if (seen.has(name)) throw new FieldError(`${f}.name`, `${quote(name)} is a duplicate port name`);
    seen.add(name);
    // The apiserver rejects two ports with the same number and protocol (they would share a VIP).
    const clash = ports.find((q) => q.port === port && q.protocol === protocol);
    if (clash !== undefined) throw new FieldError(`${f}.port`, `${String(port)}/${protocol} is already used by port ${quote(clash.name)}`);
    const npClash = nodePort === 0 ? undefined : ports.find((q) => q.nodePort === nodePort && q.protocol === protocol);
    if (npClash !== undefined) throw new FieldError(`${f}.nodePort`, `${String(nodePort)}/${protocol} is already used by port ${quote(npClash.name)}`);
    ports.push({ name, port, protocol, nodePort });
  });
  return ports;
}

/**
 * Reads the cluster IPs like the apiserver defaults them: spec.clusterIPs falls back to
 * [spec.clusterIP], and ipFamilies, when given, must agree with the addresses.
 */
function readClusterIPs(spec: JsonObject): Partial<Record<IPFamily, string>> | 'headless' | 'none' {
  const single = stringAt(spec.clusterIP, 'spec.clusterIP');
  let list = arrayAt(spec.clusterIPs, 'spec.clusterIPs').map((v, i) => stringAt(v, `spec.clusterIPs[${String(i)}]`) ?? '');
  if (list.length === 0 && single !== undefined && single !== '') list = [single];
  if (single !== undefined && single !== '' && list[0] !== single) {
    throw new FieldError('spec.clusterIP', `${quote(single)} must equal spec.clusterIPs[0] ${quote(list[0])}`);
  }
  if (list.length === 0 || list[0] === '') return 'none';
  if (list[0] === 'None') return 'headless';
  if (list.length > 2) throw new FieldError('spec.clusterIPs', 'may hold at most two addresses');
  const families = arrayAt(spec.ipFamilies, 'spec.ipFamilies').map(
    (v, i) => enumAt(v, `spec.ipFamilies[${String(i)}]`, ['IPv4', 'IPv6'] as const) ?? 'IPv4',
  );
  const out: Partial<Record<IPFamily, string>> = {};
  list.forEach((text, i) => {
    const field = `spec.clusterIPs[${String(i)}]`;
    const ip = readIP(text, field);
    const declared = families[i];
    if (declared !== undefined && declared !== ip.family) {
      throw new FieldError(field, `${quote(text)} is not an ${declared} address as spec.ipFamilies[${String(i)}] says`);
    }
    if (out[ip.family] !== undefined) throw new FieldError(field, `${quote(text)} repeats the ${ip.family} family`);
    out[ip.family] = ip.text;
  });
  return out;
}

function readAffinity(spec: JsonObject): number {
  const affinity = enumAt(spec.sessionAffinity, 'spec.sessionAffinity', ['None', 'ClientIP'] as const) ?? 'None';
  if (affinity === 'None') return 0;
  const config = objectAt(spec.sessionAffinityConfig, 'spec.sessionAffinityConfig');
  const clientIP = objectAt(config?.clientIP, 'spec.sessionAffinityConfig.clientIP');
  const field = 'spec.sessionAffinityConfig.clientIP.timeoutSeconds';
  const timeout = intAt(clientIP?.timeoutSeconds, field) ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS;
  if (timeout < 1 || timeout > MAX_AFFINITY_TIMEOUT_SECONDS) {
    throw new FieldError(field, `${String(timeout)} is out of range (1-${String(MAX_AFFINITY_TIMEOUT_SECONDS)})`);
  }
  return timeout;
}

function readLoadBalancerIPs(obj: JsonObject): string[] {
  const status = objectAt(obj.status, 'status');
  const lb = objectAt(status?.loadBalancer, 'status.loadBalancer');
  const out: string[] = [];
  arrayAt(lb?.ingress, 'status.loadBalancer.ingress').forEach((entry, i) => {
    const f = `status.loadBalancer.ingress[${String(i)}]`;
    const ing = objectAt(entry, f) ?? {};
    const ip = stringAt(ing.ip, `${f}.ip`) ?? '';
    const ipMode = enumAt(ing.ipMode, `${f}.ipMode`, ['VIP', 'Proxy'] as const);
    if (ip === '') return; // hostname-only ingress: nothing to program
    const parsed = readIP(ip, `${f}.ip`);
    // ipMode Proxy: the load balancer delivers to the node, so kube-proxy must not short-circuit it.
    if (ipMode === 'Proxy') return;
    out.push(parsed.text);
  });
  return out;
}

function readSourceRanges(spec: JsonObject): CIDR[] {
  return arrayAt(spec.loadBalancerSourceRanges, 'spec.loadBalancerSourceRanges').map((v, i) => {
    const field = `spec.loadBalancerSourceRanges[${String(i)}]`;
    const s = stringAt(v, field) ?? '';
    // kube-proxy trims whitespace (" 203.0.113.0/25" works, reference §1.0).
    const cidr = parseCIDR(s.trim());
    if (cidr === undefined) throw new FieldError(field, `${quote(s)} is not a valid CIDR`);
    return cidr;
  });
}

export function readService(obj: JsonObject, filter: ServiceFilter): ServiceReading {
  const meta = metadataOf(obj, { namespaced: true });
  const proxyName = meta.labels[SERVICE_PROXY_NAME_LABEL];
  if (proxyName !== undefined && (filter.serviceProxyName === '' || proxyName !== filter.serviceProxyName)) {
    const ours = filter.serviceProxyName === '' ? 'kpx has no service-proxy-name' : `kpx's is ${quote(filter.serviceProxyName)}`;
    return { kind: 'ignored', reason: `labelled ${SERVICE_PROXY_NAME_LABEL}=${quote(proxyName)} (${ours})` };
  }
  if (meta.labels[HEADLESS_LABEL] !== undefined) return { kind: 'ignored', reason: `labelled ${HEADLESS_LABEL}` };
  const spec = objectAt(obj.spec, 'spec') ?? {};
  const type = enumAt(spec.type, 'spec.type', ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] as const) ?? 'ClusterIP';
  if (type === 'ExternalName') return { kind: 'ignored', reason: 'type ExternalName has no proxy rules' };
  const clusterIPs = readClusterIPs(spec);
  if (clusterIPs === 'headless') return { kind: 'ignored', reason: 'headless (clusterIP None) has no proxy rules' };
  if (clusterIPs === 'none') return { kind: 'ignored', reason: 'no cluster IP allocated (spec.clusterIP is empty)' };
  const ports = readPorts(spec);
  const externalIPs = arrayAt(spec.externalIPs, 'spec.externalIPs').map(
    (v, i) => readIP(v, `spec.externalIPs[${String(i)}]`).text,
  );
  const etp = enumAt(spec.externalTrafficPolicy, 'spec.externalTrafficPolicy', ['Cluster', 'Local'] as const) ?? 'Cluster';
  const itp = enumAt(spec.internalTrafficPolicy, 'spec.internalTrafficPolicy', ['Cluster', 'Local'] as const) ?? 'Cluster';
  const healthCheckNodePort = portAt(spec.healthCheckNodePort, 'spec.healthCheckNodePort', { allowZero: true }) ?? 0;
  boolAt(spec.publishNotReadyAddresses, 'spec.publishNotReadyAddresses');
  return {
    kind: 'service',
    service: {
      namespace: meta.namespace,
      name: meta.name,
      type,
      clusterIPs,
      ports,
      externalIPs,
      loadBalancerIPs: readLoadBalancerIPs(obj),
      loadBalancerSourceRanges: readSourceRanges(spec),
      affinityTimeoutSeconds: readAffinity(spec),
      externalTrafficPolicyLocal: etp === 'Local',
      internalTrafficPolicyLocal: itp === 'Local',
      healthCheckNodePort,
    },
  };
}
