/**
 * Command-line flags shared by the offline commands: inputs, node and proxy options
 * (DESIGN.md, "The CLI contract"). Flags override a KubeProxyConfiguration found in the inputs.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import {
  DETECT_LOCAL_MODES,
  validateClusterCIDRs,
  validateMasqueradeBit,
  validateNodePortAddresses,
  type DetectLocalMode,
  type ProxyConfigOverrides,
} from '../model/config.ts';
import { parseIP } from '../model/ip.ts';
import { FieldError } from '../model/problem.ts';

/** Bad flags or arguments: reported on one line, exit code 2. */
export class UsageError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UsageError';
  }
}

export const PROXY_OPTIONS = {
  file: { type: 'string', short: 'f', multiple: true },
  'node-name': { type: 'string' },
  'node-ip': { type: 'string', multiple: true },
  'cluster-cidr': { type: 'string', multiple: true },
  'detect-local-mode': { type: 'string' },
  'pod-bridge-interface': { type: 'string' },
  'pod-interface-name-prefix': { type: 'string' },
  'masquerade-all': { type: 'boolean' },
  'masquerade-bit': { type: 'string' },
  'localhost-nodeports': { type: 'string' },
  'nodeport-addresses': { type: 'string', multiple: true },
  'ip-family': { type: 'string' },
  'service-proxy-name': { type: 'string' },
  nfacct: { type: 'string' },
  'masquerade-random-fully': { type: 'string' },
  'conntrack-tcp-be-liberal': { type: 'string' },
  output: { type: 'string', short: 'o' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

export type ProxyFlagValues = ReturnType<typeof parseProxyArgs>['values'];

export function parseProxyArgs(args: readonly string[]) {
  try {
    return parseArgs({ args: [...args], options: PROXY_OPTIONS, allowPositionals: false, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message.split('\n')[0] ?? 'invalid arguments', { cause: error });
  }
}

function bool(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new UsageError(`--${name} must be true or false, got "${value}"`);
}

function flagCheck<T>(run: () => T): T {
  try {
    return run();
  } catch (error) {
    if (error instanceof FieldError) throw new UsageError(`--${error.message}`, { cause: error });
    throw error;
  }
}

/** Turns flags into config overrides, validating each with a message naming the flag. */
export function proxyOverrides(values: ProxyFlagValues): ProxyConfigOverrides {
  const o: ProxyConfigOverrides = {};
  if (values['node-name'] !== undefined) o.nodeName = values['node-name'];
  if (values['node-ip'] !== undefined) {
    o.nodeIPs = values['node-ip'].flatMap((v) => v.split(',')).map((ip) => {
      if (parseIP(ip.trim()) === undefined) throw new UsageError(`--node-ip "${ip}" is not a valid IP address`);
      return ip.trim();
    });
  }
  const cidrs = values['cluster-cidr'];
  if (cidrs !== undefined) o.clusterCIDRs = flagCheck(() => validateClusterCIDRs(cidrs.flatMap((v) => v.split(',')), 'cluster-cidr'));
  const mode = values['detect-local-mode'];
  if (mode !== undefined) {
    if (!(DETECT_LOCAL_MODES as readonly string[]).includes(mode)) {
      throw new UsageError(`--detect-local-mode "${mode}" is not one of ${DETECT_LOCAL_MODES.join(', ')}`);
    }
    o.detectLocalMode = mode as DetectLocalMode;
  }
  if (values['pod-bridge-interface'] !== undefined) o.bridgeInterface = values['pod-bridge-interface'];
  if (values['pod-interface-name-prefix'] !== undefined) o.interfaceNamePrefix = values['pod-interface-name-prefix'];
  if (values['masquerade-all'] !== undefined) o.masqueradeAll = values['masquerade-all'];
  const bit = values['masquerade-bit'];
  if (bit !== undefined) {
    if (!/^[0-9]+$/.test(bit)) throw new UsageError(`--masquerade-bit "${bit}" is not a number`);
    o.masqueradeBit = flagCheck(() => validateMasqueradeBit(Number(bit), 'masquerade-bit'));
  }
  const lnp = bool('localhost-nodeports', values['localhost-nodeports']);
  if (lnp !== undefined) o.localhostNodePorts = lnp;
  const npa = values['nodeport-addresses'];
  if (npa !== undefined) {
    o.nodePortAddresses = flagCheck(() => validateNodePortAddresses(npa.flatMap((v) => v.split(',')).filter((v) => v !== ''), 'nodeport-addresses'));
  }
  const family = values['ip-family'];
  if (family !== undefined) {
    const f = family.toLowerCase();
    if (f !== 'ipv4' && f !== 'ipv6') throw new UsageError(`--ip-family "${family}" is not ipv4 or ipv6`);
    o.ipFamily = f === 'ipv4' ? 'IPv4' : 'IPv6';
  }
  if (values['service-proxy-name'] !== undefined) o.serviceProxyName = values['service-proxy-name'];
  const nf = bool('nfacct', values.nfacct);
  if (nf !== undefined) o.nfacct = nf;
  const rf = bool('masquerade-random-fully', values['masquerade-random-fully']);
  if (rf !== undefined) o.masqueradeRandomFully = rf;
  const liberal = bool('conntrack-tcp-be-liberal', values['conntrack-tcp-be-liberal']);
  if (liberal !== undefined) o.conntrackTCPBeLiberal = liberal;
  return o;
}
