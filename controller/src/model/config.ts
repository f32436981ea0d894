/**
 * Proxy settings: kpx's own, read from a KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1)
 * so kube-proxy users can bring theirs, with kube-proxy's defaults (reference §8).
 */
import { arrayAt, boolAt, enumAt, intAt, objectAt, stringAt, type JsonObject } from './fields.ts';
import { parseCIDR, parseIP, type IPFamily } from './ip.ts';
import { FieldError, quote } from './problem.ts';

export type DetectLocalMode = 'ClusterCIDR' | 'NodeCIDR' | 'BridgeInterface' | 'InterfaceNamePrefix';
export const DETECT_LOCAL_MODES: readonly DetectLocalMode[] = ['ClusterCIDR', 'NodeCIDR', 'BridgeInterface', 'InterfaceNamePrefix'];

export interface ProxyConfig {
  /** The node this proxy runs on; "" when unknown (then no endpoint is local). */
  readonly nodeName: string;
  /** Every local address of the node, primary first; empty means "take the Node object's". */
  readonly nodeIPs: readonly string[];
  /** At most one per family. */
  readonly clusterCIDRs: readonly string[];
  readonly detectLocalMode: DetectLocalMode;
  readonly bridgeInterface: string;
  readonly interfaceNamePrefix: string;
  readonly masqueradeAll: boolean;
  /** 0-31; the mark is 1 << bit. */
  readonly masqueradeBit: number;
  readonly localhostNodePorts: boolean;
  /** CIDRs (or "primary"); empty means every local address. */
  readonly nodePortAddresses: readonly string[];
  /** Only this family, or undefined for every family the node has. */
  readonly ipFamily: IPFamily | undefined;
  /** Services labelled service.kubernetes.io/service-proxy-name=<this> are ours; "" = only unlabelled ones. */
  readonly serviceProxyName: string;
  /** Whether the nfacct counters exist (kube-proxy adds `-m nfacct` rules only then). */
  readonly nfacct: boolean;
  /** Whether MASQUERADE gets --random-fully (kube-proxy: iff iptables >= 1.6.2). */
  readonly masqueradeRandomFully: boolean;
  /** net.netfilter.nf_conntrack_tcp_be_liberal != 0 removes the INVALID drop rule. */
  readonly conntrackTCPBeLiberal: boolean;
  readonly syncPeriodMs: number;
  readonly minSyncPeriodMs: number;
  /** Non-wildcard bindAddress is the primary node IP (kube-proxy). "" when unset. */
  readonly bindAddress: string;
}

export const DEFAULT_PROXY_CONFIG: ProxyConfig = {
  nodeName: '',
  nodeIPs: [],
  clusterCIDRs: [],
  detectLocalMode: 'ClusterCIDR',
  bridgeInterface: '',
  interfaceNamePrefix: '',
  masqueradeAll: false,
  masqueradeBit: 14,
  localhostNodePorts: true,
  nodePortAddresses: [],
  ipFamily: undefined,
  serviceProxyName: '',
  nfacct: false,
  masqueradeRandomFully: true,
  conntrackTCPBeLiberal: false,
  syncPeriodMs: 30_000,
  minSyncPeriodMs: 1_000,
  bindAddress: '',
};

export type ProxyConfigOverrides = { -readonly [K in keyof ProxyConfig]?: ProxyConfig[K] };

/** Go's `%#08x` of 1<<bit, as kube-proxy formats the masquerade mark: `0x00004000` for bit 14. */
export function masqueradeMarkOf(bit: number): string {
  return `0x${(2 ** bit).toString(16).padStart(8, '0')}`;
}

const DURATION_UNITS: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, µs: 0.001, ns: 0.000001 };

/** Parses a Go duration ("30s", "1m0s", "500ms", "0"). */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  const re = /([0-9]+(?:\.[0-9]+)?)(h|ms|m|s|us|µs|ns)/gy;
  let total = 0;
  let consumed = 0;
  for (const m of text.matchAll(re)) {
    total += Number.parseFloat(m[1] ?? '0') * (DURATION_UNITS[m[2] ?? 's'] ?? 0);
    consumed += m[0].length;
  }
  return consumed === text.length && consumed > 0 ? total : undefined;
}

function durationAt(value: unknown, field: string): number | undefined {
  const s = stringAt(value, field);
  if (s === undefined || s === '') return undefined;
  const ms = parseDuration(s);
  if (ms === undefined) throw new FieldError(field, `${quote(s)} is not a duration like "30s" or "1m0s"`);
  return ms;
}

export function validateClusterCIDRs(values: readonly string[], field: string): string[] {
  const seen = new Set<IPFamily>();
  return values.map((text, i) => {
    const cidr = parseCIDR(text.trim());
    const f = values.length > 1 ? `${field}[${String(i)}]` : field;
    if (cidr === undefined) throw new FieldError(f, `${quote(text)} is not a valid CIDR`);
    if (seen.has(cidr.family)) throw new FieldError(f, `${quote(text)} repeats the ${cidr.family} family (one CIDR per family)`);
    seen.add(cidr.family);
    return text.trim();
  });
}

export function validateNodePortAddresses(values: readonly string[], field: string): string[] {
  return values.map((text, i) => {
    const t = text.trim();
    if (t === 'primary') return t;
    if (parseCIDR(t) === undefined) {
      throw new FieldError(`${field}[${String(i)}]`, `${quote(text)} is not a CIDR or "primary"`);
    }
    return t;
  });
}

export function validateMasqueradeBit(bit: number, field: string): number {
  if (!Number.isInteger(bit) || bit < 0 || bit > 31) throw new FieldError(field, `${String(bit)} is out of range (0-31)`);
  return bit;
}

/** Reads the settings kpx uses from a KubeProxyConfiguration object. */
export function readKubeProxyConfiguration(obj: JsonObject): ProxyConfigOverrides {
  const out: ProxyConfigOverrides = {};
  const mode = stringAt(obj.mode, 'mode') ?? '';
  if (mode !== '' && mode !== 'iptables') throw new FieldError('mode', `${quote(mode)} is not supported (kpx is an iptables proxy)`);
  const hostname = stringAt(obj.hostnameOverride, 'hostnameOverride');
  if (hostname !== undefined && hostname !== '') out.nodeName = hostname.trim().toLowerCase();
  const bind = stringAt(obj.bindAddress, 'bindAddress');
  if (bind !== undefined && bind !== '') {
    if (parseIP(bind) === undefined) throw new FieldError('bindAddress', `${quote(bind)} is not a valid IP address`);
    out.bindAddress = bind;
  }
  const clusterCIDR = stringAt(obj.clusterCIDR, 'clusterCIDR');
  if (clusterCIDR !== undefined && clusterCIDR !== '') {
    out.clusterCIDRs = validateClusterCIDRs(clusterCIDR.split(','), 'clusterCIDR');
  }
  const mode2 = enumAt(obj.detectLocalMode, 'detectLocalMode', DETECT_LOCAL_MODES);
  if (mode2 !== undefined) out.detectLocalMode = mode2;
  const detectLocal = objectAt(obj.detectLocal, 'detectLocal') ?? {};
  const bridge = stringAt(detectLocal.bridgeInterface, 'detectLocal.bridgeInterface');
  if (bridge !== undefined && bridge !== '') out.bridgeInterface = bridge;
  const prefix = stringAt(detectLocal.interfaceNamePrefix, 'detectLocal.interfaceNamePrefix');
  if (prefix !== undefined && prefix !== '') out.interfaceNamePrefix = prefix;
  const ipt = objectAt(obj.iptables, 'iptables') ?? {};
  const masqAll = boolAt(ipt.masqueradeAll, 'iptables.masqueradeAll');
  if (masqAll !== undefined) out.masqueradeAll = masqAll;
  const bit = intAt(ipt.masqueradeBit, 'iptables.masqueradeBit');
  if (bit !== undefined) out.masqueradeBit = validateMasqueradeBit(bit, 'iptables.masqueradeBit');
  const lnp = boolAt(ipt.localhostNodePorts, 'iptables.localhostNodePorts');
  if (lnp !== undefined) out.localhostNodePorts = lnp;
  const sync = durationAt(ipt.syncPeriod, 'iptables.syncPeriod');
  if (sync !== undefined) out.syncPeriodMs = sync;
  const minSync = durationAt(ipt.minSyncPeriod, 'iptables.minSyncPeriod');
  if (minSync !== undefined) out.minSyncPeriodMs = minSync;
  const npa = arrayAt(obj.nodePortAddresses, 'nodePortAddresses').map((v, i) => stringAt(v, `nodePortAddresses[${String(i)}]`) ?? '');
  if (npa.length > 0) out.nodePortAddresses = validateNodePortAddresses(npa, 'nodePortAddresses');
  const conntrack = objectAt(obj.conntrack, 'conntrack') ?? {};
  const liberal = boolAt(conntrack.tcpBeLiberal, 'conntrack.tcpBeLiberal');
  if (liberal !== undefined) out.conntrackTCPBeLiberal = liberal;
  return out;
}

/** Checks cross-field rules the way kube-proxy does at start-up. */
export function checkProxyConfig(config: ProxyConfig): void {
  if (config.detectLocalMode === 'BridgeInterface' && config.bridgeInterface === '') {
    throw new FieldError('detectLocal.bridgeInterface', 'is required when detectLocalMode is BridgeInterface');
  }
  if (config.detectLocalMode === 'InterfaceNamePrefix' && config.interfaceNamePrefix === '') {
    throw new FieldError('detectLocal.interfaceNamePrefix', 'is required when detectLocalMode is InterfaceNamePrefix');
  }
  config.nodeIPs.forEach((ip, i) => {
    if (parseIP(ip) === undefined) throw new FieldError(`nodeIPs[${String(i)}]`, `${quote(ip)} is not a valid IP address`);
  });
}
