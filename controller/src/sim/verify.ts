/**
 * The verification gate: proves compiled rules against the model by simulation.
 *
 * For every service port, client class (pod on this node, pod on another node, the node itself,
 * an external client, the endpoint itself) and frontend (ClusterIP, external IPs, LB IPs,
 * NodePort), the expected outcome is stated here from kube-proxy's policy (reference §1.4-§1.14,
 * §7.3) without looking at the rules, and compared with what the simulator says the rules do:
 * 1. reachable endpoints are exactly the policy's set; 2. each has probability 1/n (within 1e-9);
 * 3. masquerading happens exactly where the policy says; 4. no endpoints → REJECT, Local policy
 * without a local endpoint → DROP; 5. structure (structure.ts); 6. other traffic passes untouched.
 */
import type { CompiledFamily, CompiledServicePort } from '../compile/compile.ts';
import { standaloneRuleset } from '../compile/render.ts';
import type { Ruleset } from '../compile/ruleset.ts';
import type { Endpoint, FamilyModel, ServicePort } from '../model/proxy-model.ts';
import { cidrContains, cidrLiteral, formatIP, parseCIDR, type CIDR, type IPAddress, type IPFamily } from '../model/ip.ts';
import { SimulationError, type EngineContext } from './engine.ts';
import { traceNewConnection, walkNewConnection, type Outcome, type Walked } from './netfilter.ts';
import { endpointText, isLocalAddress, parseAddress, type NodeNetwork, type SimProtocol } from './packet.ts';
import { checkStructure, formatStructureViolation } from './structure.ts';

export type ClientClass = 'pod on this node' | 'pod on another node' | 'the node itself' | 'an external client' | 'the endpoint itself';
export type FrontendKind = 'ClusterIP' | 'external IP' | 'LoadBalancer IP' | 'NodePort';

export interface Violation {
  /** `ns/name:port/TCP`, or "ruleset" for structural problems. */
  readonly servicePort: string;
  readonly frontend: string;
  readonly client: string;
  readonly expected: string;
  readonly actual: string;
}

export function formatViolation(v: Violation): string {
  if (v.servicePort === 'ruleset') return `structure: ${v.actual}`;
  return `${v.servicePort} via ${v.frontend} from ${v.client}: expected ${v.expected}, got ${v.actual}`;
}

export interface VerificationReport {
  readonly family: IPFamily;
  readonly checks: number;
  readonly violations: readonly Violation[];
}

type Expected =
  | { readonly kind: 'endpoints'; readonly endpoints: readonly Endpoint[]; readonly masquerade: boolean; readonly why: string }
  | { readonly kind: 'REJECT' | 'DROP'; readonly why: string }
  | { readonly kind: 'untouched'; readonly why: string };

interface Client {
  readonly cls: ClientClass;
  readonly ip: IPAddress;
  readonly inIface: string | undefined;
  /** Whether kube-proxy's local-traffic detector counts this client as a local pod. */
  readonly detectedLocal: boolean;
  /** Whether the source is a node address (addrtype --src-type LOCAL). */
  readonly isNode: boolean;
}

interface Frontend {
  readonly kind: FrontendKind;
  readonly ip: IPAddress;
  readonly port: number;
  /** Whether the frontend address is one of the node's own (a NodePort always is). */
  readonly local: boolean;
}

const POD_IFACE = 'kpxpod0';

function offset(cidr: CIDR, n: bigint): IPAddress {
  return { family: cidr.family, value: cidr.network + n };
}

const parsedIPs = new Map<string, IPAddress | undefined>();

function ipOf(text: string): IPAddress {
  let ip = parsedIPs.get(text);
  if (ip === undefined) {
    ip = parseAddress(text);
    parsedIPs.set(text, ip);
  }
  if (ip === undefined) throw new SimulationError(`"${text}" is not an IP address`);
  return ip;
}

/** Verification setup for one family: the node network and the client addresses. */
interface Setup {
  readonly net: NodeNetwork;
  readonly nodeIP: IPAddress;
  readonly podRange: CIDR;
  readonly podIface: string;
  readonly localPod: IPAddress;
  readonly remotePod: IPAddress;
  readonly externals: readonly IPAddress[];
}

/** A pod range for clients when the node's is unknown (no cluster CIDR detector). */
const podFallback = (v4: boolean): CIDR => cidrLiteral(v4 ? '10.250.0.0/16' : 'fd00:250::/64');

const setups = new WeakMap<FamilyModel, Setup>();

function setupFor(model: FamilyModel): Setup {
  let setup = setups.get(model);
  if (setup === undefined) {
    setup = buildSetup(model);
    setups.set(model, setup);
  }
  return setup;
}

function buildSetup(model: FamilyModel): Setup {
  const node = model.node;
  const family = model.family;
  const v4 = family === 'IPv4';
  const nodeIP = node.primaryIP === undefined ? ipOf(v4 ? '192.0.2.1' : '2001:db8::1') : ipOf(node.primaryIP);
  const podRange =
    node.detector.kind === 'cidr' ? (parseCIDR(node.detector.cidr) ?? podFallback(v4)) : podFallback(v4);
  const podIface = node.detector.kind === 'interface' ? (node.detector.name.endsWith('+') ? `${node.detector.name.slice(0, -1)}0` : node.detector.name) : POD_IFACE;
  // Client addresses must not collide with endpoints (compared as canonical text: no parsing).
  const endpointIPs = new Set<string>();
  for (const eps of model.endpoints.values()) for (const ep of eps) endpointIPs.add(ep.ip);
  const taken = new Set<bigint>();
  const free = (start: bigint): IPAddress => {
    let n = start;
    while (taken.has(podRange.network + n) || endpointIPs.has(formatIP(offset(podRange, n)))) n++;
    taken.add(podRange.network + n);
    return offset(podRange, n);
  };
  const gateway = offset(podRange, 1n);
  taken.add(gateway.value);
  const localPod = free(77n);
  const remotePod = free(177n);
  const externals = (v4 ? ['203.0.113.77', '198.51.100.77', '192.0.2.177', '100.64.77.77', '172.31.77.77'] : ['2001:db8:ffff::77', '2001:db8:eeee::77', 'fc00:77::77']).map(ipOf);
  const nodeIPs = [nodeIP, ...node.localIPs.map(ipOf).filter((ip) => ip.value !== nodeIP.value)];
  const hostPrefix = v4 ? 32 : 128;
  return {
    net: {
      interfaces: [
        { name: 'eth0', addresses: nodeIPs.map((ip) => ({ ip, prefix: { family, network: ip.value, prefix: hostPrefix } })) },
        { name: podIface, addresses: [{ ip: gateway, prefix: podRange }] },
      ],
      extraLocal: [],
      // kpx, like kube-proxy, sets route_localnet when it serves NodePorts on 127.0.0.1.
      routeLocalnet: node.localhostNodePorts,
    },
    nodeIP,
    podRange,
    podIface,
    localPod,
    remotePod,
    externals,
  };
}

function detectedLocal(model: FamilyModel, ip: IPAddress, inIface: string | undefined): boolean {
  const d = model.node.detector;
  switch (d.kind) {
    case 'cidr': {
      const c = parseCIDR(d.cidr);
      return c !== undefined && cidrContains(c, ip);
    }
    case 'interface':
      return inIface !== undefined && (d.name.endsWith('+') ? inIface.startsWith(d.name.slice(0, -1)) : inIface === d.name);
    case 'none':
      return false;
  }
}

function clientsFor(model: FamilyModel, setup: Setup, sp: ServicePort): Client[] {
  const mk = (cls: ClientClass, ip: IPAddress, inIface: string | undefined, isNode = false): Client => ({
    cls,
    ip,
    inIface,
    detectedLocal: !isNode && detectedLocal(model, ip, inIface),
    isNode,
  });
  const ranges = sp.loadBalancerSourceRanges.map((r) => parseCIDR(r)).filter((c) => c !== undefined);
  const external = setup.externals.find((ip) => !ranges.some((r) => cidrContains(r, ip)) && !cidrContains(setup.podRange, ip)) ?? setup.externals[0];
  const clients = [mk('pod on this node', setup.localPod, setup.podIface)];
  // A pod on another node differs from a local one only where rules look at interfaces.
  if (model.node.detector.kind === 'interface') clients.push(mk('pod on another node', setup.remotePod, 'eth0'));
  clients.push(mk('the node itself', setup.nodeIP, undefined, true));
  if (external !== undefined) clients.push(mk('an external client', external, 'eth0'));
  // A client inside each source range (the first usable address that is not a pod).
  for (const r of ranges) {
    const ip = offset(r, r.prefix >= (r.family === 'IPv4' ? 31 : 127) ? 0n : 1n);
    if (!cidrContains(setup.podRange, ip) && ip.value !== setup.nodeIP.value) clients.push(mk('an external client', ip, 'eth0'));
  }
  return clients;
}

function frontendsFor(model: FamilyModel, setup: Setup, sp: ServicePort): Frontend[] {
  const fe = (kind: FrontendKind, ip: IPAddress, port: number): Frontend => ({ kind, ip, port, local: isLocalAddress(setup.net, ip) });
  const out: Frontend[] = [fe('ClusterIP', ipOf(sp.clusterIP), sp.port)];
  for (const ip of sp.externalIPs) out.push(fe('external IP', ipOf(ip), sp.port));
  for (const ip of sp.loadBalancerIPs) out.push(fe('LoadBalancer IP', ipOf(ip), sp.port));
  if (sp.nodePort !== 0) {
    const npa = model.node.nodePortAddresses;
    const addresses = npa === 'all' ? [setup.nodeIP] : npa.map(ipOf).filter((ip) => ip.value !== (ip.family === 'IPv4' ? 0x7f000001n : 1n)).slice(0, 1);
    for (const ip of addresses) out.push(fe('NodePort', ip, sp.nodePort));
  }
  return out;
}

/** kube-proxy's policy for one (service port, client, frontend), from the model alone. */
function expectedOutcome(model: FamilyModel, csp: CompiledServicePort, client: Client, fe: Frontend): Expected {
  const sp = csp.servicePort;
  const { clusterEndpoints, localEndpoints, hasAnyEndpoints } = csp.categories;
  const node = model.node;
  if (fe.kind === 'ClusterIP') {
    if (!hasAnyEndpoints) return { kind: 'REJECT', why: 'the service has no endpoints' };
    if (sp.internalPolicyLocal && localEndpoints.length === 0) return { kind: 'DROP', why: 'internalTrafficPolicy Local and no endpoint on this node' };
    const eps = sp.internalPolicyLocal ? localEndpoints : clusterEndpoints;
    const masq = node.masqueradeAll || (node.detector.kind !== 'none' && !client.detectedLocal);
    return { kind: 'endpoints', endpoints: eps, masquerade: masq, why: sp.internalPolicyLocal ? 'local endpoints (internalTrafficPolicy Local)' : 'all cluster endpoints' };
  }
  // External frontends. Without endpoints, the filter rules REJECT on INPUT and FORWARD; the node's
  // own traffic (OUTPUT) is not hooked to KUBE-EXTERNAL-SERVICES (reference §1.2), so it leaves as is.
  if (!hasAnyEndpoints) {
    // To one of the node's own addresses (a NodePort always), even the node's own packet comes
    // back in through INPUT, where the REJECT rules are.
    if (client.isNode && !fe.local) return { kind: 'untouched', why: 'no endpoints; the node\'s own traffic to an external frontend is not filtered' };
    return { kind: 'REJECT', why: 'the service has no endpoints' };
  }
  const ranges = sp.loadBalancerSourceRanges.map((r) => parseCIDR(r)).filter((c) => c !== undefined);
  if (fe.kind === 'LoadBalancer IP' && ranges.length > 0) {
    const nodeInRange = node.primaryIP !== undefined && ranges.some((r) => cidrContains(r, ipOf(node.primaryIP ?? '')));
    const allowed = ranges.some((r) => cidrContains(r, client.ip)) || (nodeInRange && client.ip.value === fe.ip.value);
    if (!allowed) return { kind: 'DROP', why: 'the source is outside loadBalancerSourceRanges' };
  }
  if (!sp.externalPolicyLocal) {
    return { kind: 'endpoints', endpoints: clusterEndpoints, masquerade: true, why: 'all cluster endpoints, masqueraded (externalTrafficPolicy Cluster)' };
  }
  // externalTrafficPolicy Local: pods and the node short-circuit to the cluster endpoints.
  if (client.detectedLocal) return { kind: 'endpoints', endpoints: clusterEndpoints, masquerade: false, why: 'pod traffic is short-circuited to all cluster endpoints' };
  if (client.isNode) return { kind: 'endpoints', endpoints: clusterEndpoints, masquerade: true, why: 'node traffic is short-circuited to all cluster endpoints, masqueraded' };
  if (localEndpoints.length === 0) return { kind: 'DROP', why: 'externalTrafficPolicy Local and no endpoint on this node' };
  return { kind: 'endpoints', endpoints: localEndpoints, masquerade: false, why: 'local endpoints only, client IP preserved (externalTrafficPolicy Local)' };
}

function describeExpected(e: Expected): string {
  switch (e.kind) {
    case 'endpoints':
      return `${e.endpoints.map((ep) => ep.endpoint).join(', ')} at ${String(e.endpoints.length === 0 ? 0 : +(1 / e.endpoints.length).toFixed(6))} each, ${e.masquerade ? '' : 'not '}masqueraded (${e.why})`;
    case 'REJECT':
    case 'DROP':
      return `${e.kind} (${e.why})`;
    case 'untouched':
      return `no DNAT and no masquerade (${e.why})`;
  }
}

function describeActual(outs: readonly Outcome[]): string {
  return outs
    .map((o) => `${o.verdict}${o.destination !== null ? ` to ${o.destination}` : o.verdict === 'ACCEPT' ? ' without DNAT' : ''}${o.masquerade ? ' masqueraded' : ''} (p=${String(+o.probability.toFixed(9))})`)
    .join('; ');
}

const EPSILON = 1e-9;


/**
 * Whether an outcome to `destination` is masqueraded: the policy's answer, plus the hairpin rule
 * (any source equal to the endpoint is marked), except that a packet DNATed to one of the node's
 * own addresses (a host-network endpoint) is delivered locally and never crosses POSTROUTING.
 */
function expectedMasquerade(policy: boolean, ep: IPAddress, client: Client, net: NodeNetwork): boolean {
  if (isLocalAddress(net, ep) && !client.isNode) return false;
  return policy || ep.value === client.ip.value;
}

/** Compares outcomes with the expectation; returns what is wrong, or undefined. */
function compare(e: Expected, outs: readonly Outcome[], client: Client, net: NodeNetwork): string | undefined {
  const total = outs.reduce((s, o) => s + o.probability, 0);
  if (Math.abs(total - 1) > EPSILON) return `outcome probabilities sum to ${String(total)}`;
  switch (e.kind) {
    case 'REJECT':
    case 'DROP':
      return outs.every((o) => o.verdict === e.kind && o.destination === null) ? undefined : 'the outcome differs';
    case 'untouched':
      return outs.every((o) => o.verdict === 'ACCEPT' && o.destination === null && !o.masquerade) ? undefined : 'the outcome differs';
    case 'endpoints': {
      const byDest = new Map<string, number>();
      for (const o of outs) {
        if (o.verdict !== 'ACCEPT' || o.destination === null) return `${o.verdict} without DNAT with probability ${String(+o.probability.toFixed(9))}`;
        byDest.set(o.destination, (byDest.get(o.destination) ?? 0) + o.probability);
        if (o.masquerade !== expectedMasquerade(e.masquerade, o.flow.packet.dst, client, net)) return `masquerade ${o.masquerade ? 'on' : 'off'} for ${o.destination}`;
      }
      const want = new Set(e.endpoints.map((ep) => ep.endpoint));
      const got = [...byDest.keys()];
      if (got.length !== want.size || got.some((d) => !want.has(d))) return 'a different set of endpoints';
      const p = 1 / want.size;
      for (const [d, q] of byDest) if (Math.abs(q - p) > EPSILON) return `${d} has probability ${String(+q.toFixed(10))} instead of ${String(+p.toFixed(10))}`;
      return undefined;
    }
  }
}

/**
 * Expected endpoints by address and port, which is comparing their texts as long as each text is
 * the canonical one and no address comes with two ports (else undefined: only texts are compared).
 */
interface EndpointSlots {
  /** Address (IPv6 ones offset by 2^128) → the endpoint's port and slot; a repeated endpoint shares one. */
  readonly slots: ReadonlyMap<bigint, { readonly port: number; readonly slot: number }>;
  readonly size: number;
}

const V6_OFFSET = 1n << 128n;
const addressKey = (ip: IPAddress): bigint => (ip.family === 'IPv4' ? ip.value : ip.value | V6_OFFSET);

function slotsOf(eps: readonly Endpoint[]): EndpointSlots | undefined {
  const slots = new Map<bigint, { port: number; slot: number }>();
  for (const ep of eps) {
    const ip = parseAddress(ep.ip);
    if (ip === undefined || endpointText(ip, ep.port) !== ep.endpoint) return undefined;
    const known = slots.get(addressKey(ip));
    if (known === undefined) slots.set(addressKey(ip), { port: ep.port, slot: slots.size });
    else if (known.port !== ep.port) return undefined;
  }
  return { slots, size: slots.size };
}

/** Sums taken in another order differ by far less; closer to the bound, `compare` decides. */
const MARGIN = 1e-12;

/**
 * Whether the packet's ends certainly pass `compare`, decided without writing outcomes up (no
 * text, no sorting); false means: let `compare` decide (and word what is wrong).
 */
function surelyPasses(e: Expected, walked: Walked, client: Client, net: NodeNetwork, slots: EndpointSlots | undefined): boolean {
  let total = 0;
  for (const s of walked.stopped) total += s.flow.probability;
  for (const d of walked.delivered) total += d.flow.probability;
  if (Math.abs(total - 1) > EPSILON - MARGIN) return false;
  switch (e.kind) {
    case 'REJECT':
    case 'DROP':
      return walked.delivered.length === 0 && walked.stopped.every((s) => s.verdict === e.kind && s.flow.nat.dnat === undefined);
    case 'untouched':
      return walked.stopped.length === 0 && walked.delivered.every((d) => d.flow.nat.dnat === undefined && d.flow.nat.snat === undefined);
    case 'endpoints': {
      if (slots === undefined || walked.stopped.length > 0) return false;
      const sums = new Array<number>(slots.size).fill(0);
      const hit = new Array<boolean>(slots.size).fill(false);
      for (const { flow } of walked.delivered) {
        const dnat = flow.nat.dnat;
        if (dnat === undefined || (flow.nat.snat !== undefined) !== expectedMasquerade(e.masquerade, flow.packet.dst, client, net)) return false;
        const known = slots.slots.get(addressKey(dnat.ip));
        if (known?.port !== dnat.port) return false;
        const slot = known.slot;
        sums[slot] = (sums[slot] ?? 0) + flow.probability;
        hit[slot] = true;
      }
      const p = 1 / slots.size;
      return hit.every(Boolean) && sums.every((q) => Math.abs(q - p) <= EPSILON - MARGIN);
    }
  }
}

function protocolOf(sp: ServicePort): SimProtocol {
  return sp.protocol.toLowerCase() as SimProtocol;
}

export interface VerifyOptions {
  /** Only these service port keys (a partial sync verifies what changed). */
  readonly only?: ReadonlySet<string>;
  /** The rules to prove; defaults to the compiled ruleset (standalone form). */
  readonly ruleset?: Ruleset;
  /** Built-in chain policies of `ruleset` (a node dump's `:INPUT DROP`). */
  readonly policies?: EngineContext['policies'];
}

/*
 * Work that depends only on the ruleset or the model is kept per object, so that verifying a few
 * service ports of a ruleset already verified (a partial sync) costs only those ports.
 */
const standaloneRulesets = new WeakMap<CompiledFamily, Ruleset>();
const structureViolations = new WeakMap<Ruleset, readonly Violation[]>();

function standaloneOf(compiled: CompiledFamily): Ruleset {
  let ruleset = standaloneRulesets.get(compiled);
  if (ruleset === undefined) {
    ruleset = standaloneRuleset(compiled);
    standaloneRulesets.set(compiled, ruleset);
  }
  return ruleset;
}

function structureOf(ruleset: Ruleset): readonly Violation[] {
  let violations = structureViolations.get(ruleset);
  if (violations === undefined) {
    violations = checkStructure(ruleset).map((v) => ({ servicePort: 'ruleset', frontend: '', client: '', expected: '', actual: formatStructureViolation(v) }));
    structureViolations.set(ruleset, violations);
  }
  return violations;
}

/** Runs the invariant suite over one family's compiled rules. */
export function verifyCompiled(compiled: CompiledFamily, options: VerifyOptions = {}): VerificationReport {
  const model = compiled.model;
  const ruleset = options.ruleset ?? standaloneOf(compiled);
  const violations: Violation[] = [...structureOf(ruleset)];
  const setup = setupFor(model);
  const ctx: EngineContext = { ruleset, net: setup.net, now: 0, lines: new Map(), policies: options.policies ?? new Map(), recordPath: false };
  let checks = 0;
  const slots = new Map<readonly Endpoint[], EndpointSlots | undefined>();
  const slotsFor = (eps: readonly Endpoint[]): EndpointSlots | undefined => {
    if (!slots.has(eps)) slots.set(eps, slotsOf(eps));
    return slots.get(eps);
  };
  const run = (label: string, fe: Frontend | undefined, client: Client, protocol: SimProtocol, dport: number, expected: Expected): void => {
    checks++;
    const dst = fe?.ip ?? setup.nodeIP;
    const packet = { protocol, src: client.ip, dst, sport: 40000, dport, inIface: client.inIface };
    let outs: Outcome[];
    try {
      if (surelyPasses(expected, walkNewConnection(ctx, packet), client, setup.net, expected.kind === 'endpoints' ? slotsFor(expected.endpoints) : undefined)) return;
      outs = traceNewConnection(ctx, packet);
    } catch (error) {
      if (!(error instanceof SimulationError)) throw error;
      violations.push({ servicePort: label, frontend: fe === undefined ? 'node' : `${fe.kind} ${formatIP(fe.ip)}:${String(fe.port)}`, client: client.cls, expected: describeExpected(expected), actual: `a simulation error: ${error.message}` });
      return;
    }
    const wrong = compare(expected, outs, client, setup.net);
    if (wrong !== undefined) {
      violations.push({
        servicePort: label,
        frontend: fe === undefined ? `node ${formatIP(dst)}:${String(dport)}` : `${fe.kind} ${formatIP(fe.ip)}:${String(fe.port)}`,
        client: `${client.cls} (${formatIP(client.ip)})`,
        expected: describeExpected(expected),
        actual: `${describeActual(outs)}: ${wrong}`,
      });
    }
  };

  for (const csp of compiled.servicePorts) {
    const sp = csp.servicePort;
    if (options.only !== undefined && !options.only.has(sp.key)) continue;
    const label = `${sp.spn}/${sp.protocol}`;
    const clients = clientsFor(model, setup, sp);
    for (const fe of frontendsFor(model, setup, sp)) {
      for (const client of clients) {
        // Only a LoadBalancer IP has per-source-range clients; other frontends test the first external.
        if (client.cls === 'an external client' && fe.kind !== 'LoadBalancer IP' && client !== clients.find((c) => c.cls === 'an external client')) continue;
        run(label, fe, client, protocolOf(sp), fe.port, expectedOutcome(model, csp, client, fe));
      }
    }
    // Hairpin: a local endpoint reaching its own Service through the ClusterIP.
    const self = csp.categories.clusterEndpoints.find((ep) => ep.isLocal && !sp.internalPolicyLocal);
    if (self !== undefined && csp.hasInternal) {
      const ip = ipOf(self.ip);
      const client: Client = { cls: 'the endpoint itself', ip, inIface: setup.podIface, detectedLocal: detectedLocal(model, ip, setup.podIface), isNode: false };
      const fe: Frontend = { kind: 'ClusterIP', ip: ipOf(sp.clusterIP), port: sp.port, local: isLocalAddress(setup.net, ipOf(sp.clusterIP)) };
      run(label, fe, client, protocolOf(sp), sp.port, expectedOutcome(model, csp, client, fe));
    }
  }

  // 6. Traffic that is not Service traffic passes untouched: a port no Service uses, to the node.
  if (options.only === undefined) {
    const used = new Set(model.servicePorts.flatMap((sp) => [sp.nodePort, sp.healthCheckNodePort]));
    const port = [22, 2222, 6443, 10250].find((p) => !used.has(p)) ?? 1;
    const external = setup.externals[0];
    if (external !== undefined) {
      run('non-service traffic', undefined, { cls: 'an external client', ip: external, inIface: 'eth0', detectedLocal: false, isNode: false }, 'tcp', port, { kind: 'untouched', why: 'no Service uses this port' });
    }
  }
  return { family: compiled.family, checks, violations };
}
