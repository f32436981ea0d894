/**
 * FamilyModel → Ruleset: kube-proxy's iptables-mode rules for a full sync (reference §1, §3).
 *
 * One function per concern: fixed chains, each service port's rules, the final NodePort dispatch.
 * The output is kpx's own chains (what a full-sync restore writes) plus the jump rules into the
 * built-in chains, kept apart because they are ensured individually, never restored.
 */
import { categorizeEndpoints, type EndpointCategories } from '../model/categorize.ts';
import { cidrContains, parseCIDR, parseIP } from '../model/ip.ts';
import {
  externallyAccessible,
  usesClusterEndpoints,
  usesLocalEndpoints,
  type Endpoint,
  type FamilyModel,
  type LocalTrafficDetector,
  type NodeContext,
  type ServicePort,
} from '../model/proxy-model.ts';
import {
  endpointChainName,
  externalChainName,
  firewallChainName,
  localChainName,
  serviceChainName,
} from './hash.ts';
import { probability } from './probability.ts';
import {
  ACCEPT,
  addrtype,
  comment,
  ctstate,
  dport,
  DROP,
  dst,
  inIface,
  jump,
  markMatch,
  NO_TARGET,
  nfacct,
  proto,
  REJECT,
  RETURN,
  rule,
  src,
  type Chain,
  type Clause,
  type L4Protocol,
  type Rule,
  type Ruleset,
  type TableName,
  type Target,
} from './ruleset.ts';

export const KUBE_SERVICES = 'KUBE-SERVICES';
export const KUBE_EXTERNAL_SERVICES = 'KUBE-EXTERNAL-SERVICES';
export const KUBE_NODEPORTS = 'KUBE-NODEPORTS';
export const KUBE_POSTROUTING = 'KUBE-POSTROUTING';
export const KUBE_MARK_MASQ = 'KUBE-MARK-MASQ';
export const KUBE_FORWARD = 'KUBE-FORWARD';
export const KUBE_PROXY_FIREWALL = 'KUBE-PROXY-FIREWALL';
export const KUBE_FIREWALL = 'KUBE-FIREWALL';

/** Top-level chains kpx writes on every sync, per table, in kube-proxy's declaration order. */
export const FILTER_TOP_CHAINS = [KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL] as const;
export const NAT_TOP_CHAINS = [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ] as const;

export const NFACCT_CT_STATE_INVALID = 'ct_state_invalid_dropped_pkts';
export const NFACCT_LOCALHOST_NODEPORTS = 'localhost_nps_accepted_pkts';
const NODEPORTS_LAST_RULE_COMMENT = 'kubernetes service nodeports; NOTE: this must be the last rule in this chain';

/** A rule kpx ensures at the top of a built-in chain (reference §1.2). */
export interface BuiltinJump {
  readonly table: TableName;
  readonly chain: string;
  readonly rule: Rule;
}

export interface CompiledServicePort {
  readonly servicePort: ServicePort;
  readonly categories: EndpointCategories;
  /** The per-service nat chains this port owns (SVC, SVL, EXT, FW, SEP), in declaration order. */
  readonly natChains: readonly string[];
  readonly hasInternal: boolean;
  readonly hasExternal: boolean;
}

export interface CompiledFamily {
  readonly family: FamilyModel['family'];
  readonly model: FamilyModel;
  /** kpx's own chains in filter and nat. */
  readonly ruleset: Ruleset;
  /** Built-in chain jumps, in the order kube-proxy ensures (prepends) them. */
  readonly jumps: readonly BuiltinJump[];
  readonly servicePorts: readonly CompiledServicePort[];
  readonly noLocalEndpoints: { readonly internal: number; readonly external: number };
}

/** Chains of one table under construction: declaration order plus rules. */
class TableBuilder {
  /** Every chain, in declaration order. */
  readonly #order: Chain[] = [];
  /** The rules of the chains declared here, by name. */
  readonly #declared = new Map<string, Rule[]>();

  declare(name: string): void {
    if (this.#declared.has(name)) return;
    const rules: Rule[] = [];
    this.#declared.set(name, rules);
    this.#order.push({ name, rules });
  }

  add(chain: string, clauses: readonly Clause[], target: Target): void {
    this.#rulesOf(chain).push(rule(clauses, target));
  }

  /**
   * Adds a chain built elsewhere: the rules of a declared chain are appended; any other chain is
   * kept as the very object (not indexed: a name put twice is declared twice, which the
   * verification gate reports).
   */
  put(chain: Chain): void {
    if (this.#declared.has(chain.name)) for (const r of chain.rules) this.#rulesOf(chain.name).push(r);
    else this.#order.push(chain);
  }

  #rulesOf(chain: string): Rule[] {
    const rules = this.#declared.get(chain);
    if (rules === undefined) throw new Error(`Chain ${chain} was not declared before adding a rule to it`);
    return rules;
  }

  build(): Chain[] {
    return this.#order;
  }
}

function l4(sp: ServicePort): L4Protocol {
  return sp.protocol.toLowerCase() as L4Protocol;
}

function detectorIfLocal(d: LocalTrafficDetector): Clause[] {
  switch (d.kind) {
    case 'cidr':
      return [src(d.cidr)];
    case 'interface':
      return [inIface(d.name)];
    case 'none':
      return [];
  }
}

function detectorIfNotLocal(d: LocalTrafficDetector): Clause[] {
  switch (d.kind) {
    case 'cidr':
      return [src(d.cidr, true)];
    case 'interface':
      return [inIface(d.name, true)];
    case 'none':
      return [];
  }
}

/** The jump rules of reference §1.2 (and kubelet's KUBE-FIREWALL duplicates), in ensure order. */
export function builtinJumps(): BuiltinJump[] {
  const j = (table: TableName, chain: string, extra: Clause[], text: string, to: string): BuiltinJump => ({
    table,
    chain,
    rule: rule(text === '' ? extra : [...extra, comment(text)], jump(to)),
  });
  const isNew = [ctstate(['NEW'])];
  return [
    j('filter', 'INPUT', isNew, 'kubernetes externally-visible service portals', KUBE_EXTERNAL_SERVICES),
    j('filter', 'FORWARD', isNew, 'kubernetes externally-visible service portals', KUBE_EXTERNAL_SERVICES),
    j('filter', 'INPUT', [], 'kubernetes health check service ports', KUBE_NODEPORTS),
    j('filter', 'FORWARD', isNew, 'kubernetes service portals', KUBE_SERVICES),
    j('filter', 'OUTPUT', isNew, 'kubernetes service portals', KUBE_SERVICES),
    j('filter', 'FORWARD', [], 'kubernetes forwarding rules', KUBE_FORWARD),
    j('filter', 'INPUT', isNew, 'kubernetes load balancer firewall', KUBE_PROXY_FIREWALL),
    j('filter', 'OUTPUT', isNew, 'kubernetes load balancer firewall', KUBE_PROXY_FIREWALL),
    j('filter', 'FORWARD', isNew, 'kubernetes load balancer firewall', KUBE_PROXY_FIREWALL),
    j('nat', 'OUTPUT', [], 'kubernetes service portals', KUBE_SERVICES),
    j('nat', 'PREROUTING', [], 'kubernetes service portals', KUBE_SERVICES),
    j('nat', 'POSTROUTING', [], 'kubernetes postrouting rules', KUBE_POSTROUTING),
    // kubelet's chain; kube-proxy ensures the jumps too and never removes them.
    j('filter', 'INPUT', [], '', KUBE_FIREWALL),
    j('filter', 'OUTPUT', [], '', KUBE_FIREWALL),
  ];
}

interface Writers {
  readonly filter: TableBuilder;
  readonly nat: TableBuilder;
  readonly node: NodeContext;
  readonly largeClusterMode: boolean;
}

function writeServiceToEndpointRules(
  w: Writers,
  sp: ServicePort,
  chain: string,
  endpoints: readonly Endpoint[],
): void {
  const epComment = (ep: Endpoint): Clause[] => (w.largeClusterMode ? [] : [comment(`${sp.spn} -> ${ep.endpoint}`)]);
  const sepName = (ep: Endpoint): string => endpointChainName(sp.spn, sp.protocol, ep.endpoint);
  if (sp.affinityTimeoutSeconds > 0) {
    for (const ep of endpoints) {
      const name = sepName(ep);
      w.nat.add(
        chain,
        [
          ...epComment(ep),
          { kind: 'recent', name, action: 'rcheck', seconds: sp.affinityTimeoutSeconds, reap: true, side: undefined, mask: undefined },
        ],
        jump(name),
      );
    }
  }
  endpoints.forEach((ep, i) => {
    const last = i === endpoints.length - 1;
    const stat: Clause[] = last ? [] : [{ kind: 'statisticRandom', probability: probability(endpoints.length - i) }];
    w.nat.add(chain, [...epComment(ep), ...stat], jump(sepName(ep)));
  });
}

function writeEndpointChain(w: Writers, sp: ServicePort, ep: Endpoint): string {
  const name = endpointChainName(sp.spn, sp.protocol, ep.endpoint);
  w.nat.declare(name);
  const svcComment = w.largeClusterMode ? [] : [comment(sp.spn)];
  // Hairpin: a pod reaching itself through the service must be masqueraded to get the reply.
  w.nat.add(name, [...svcComment, src(ep.ip)], jump(KUBE_MARK_MASQ));
  const affinity: Clause[] =
    sp.affinityTimeoutSeconds > 0
      ? [{ kind: 'recent', name, action: 'set', seconds: undefined, reap: false, side: undefined, mask: undefined }]
      : [];
  w.nat.add(name, [...svcComment, ...affinity, proto(l4(sp))], { kind: 'DNAT', toDestination: ep.endpoint });
  return name;
}

function compileServicePort(w: Writers, sp: ServicePort, endpoints: readonly Endpoint[]): CompiledServicePort {
  const { node } = w;
  const categories = categorizeEndpoints(endpoints, sp, node);
  const { clusterEndpoints, localEndpoints, hasAnyEndpoints } = categories;
  const p = l4(sp);
  const spn = sp.spn;

  const clusterChain = serviceChainName(spn, sp.protocol);
  const localChain = localChainName(spn, sp.protocol);
  const externalChain = externalChainName(spn, sp.protocol);
  const fwChain = firewallChainName(spn, sp.protocol);
  const usesClusterChain = clusterEndpoints.length > 0 && usesClusterEndpoints(sp);
  const usesLocalChain = localEndpoints.length > 0 && usesLocalEndpoints(sp);

  let internalChain = clusterChain;
  let hasInternal = hasAnyEndpoints;
  if (sp.internalPolicyLocal) {
    internalChain = localChain;
    if (localEndpoints.length === 0) hasInternal = false;
  }
  let externalPolicyChain = clusterChain;
  let hasExternal = hasAnyEndpoints;
  if (sp.externalPolicyLocal) {
    externalPolicyChain = localChain;
    if (localEndpoints.length === 0) hasExternal = false;
  }
  // hasAnyEndpoints, not hasExternal: the EXT chain still short-circuits pod and node traffic.
  const usesExternalChain = hasAnyEndpoints && externallyAccessible(sp);
  const usesFW = hasAnyEndpoints && sp.loadBalancerIPs.length > 0 && sp.loadBalancerSourceRanges.length > 0;
  const lbChain = usesFW ? fwChain : externalChain;

  let internalFilter: { target: Target; comment: string } | undefined;
  let externalFilter: { target: Target; comment: string } | undefined;
  if (!hasAnyEndpoints) {
    internalFilter = { target: REJECT, comment: `${spn} has no endpoints` };
    externalFilter = internalFilter;
  } else {
    if (!hasInternal) internalFilter = { target: DROP, comment: `${spn} has no local endpoints` };
    if (!hasExternal) externalFilter = { target: DROP, comment: `${spn} has no local endpoints` };
  }
  const portMatch = (ip: string, port: number): Clause[] => [proto(p), dst(ip), dport(port)];

  // ClusterIP (§1.5).
  if (hasInternal) {
    w.nat.add(KUBE_SERVICES, [comment(`${spn} cluster IP`), ...portMatch(sp.clusterIP, sp.port)], jump(internalChain));
  } else if (internalFilter !== undefined) {
    w.filter.add(KUBE_SERVICES, [comment(internalFilter.comment), ...portMatch(sp.clusterIP, sp.port)], internalFilter.target);
  }

  // External IPs (§1.6).
  for (const ip of sp.externalIPs) {
    if (hasAnyEndpoints) w.nat.add(KUBE_SERVICES, [comment(`${spn} external IP`), ...portMatch(ip, sp.port)], jump(externalChain));
    if (externalFilter !== undefined) {
      w.filter.add(KUBE_EXTERNAL_SERVICES, [comment(externalFilter.comment), ...portMatch(ip, sp.port)], externalFilter.target);
    }
  }

  // Load-balancer IPs and source ranges (§1.7).
  for (const ip of sp.loadBalancerIPs) {
    if (hasAnyEndpoints) w.nat.add(KUBE_SERVICES, [comment(`${spn} loadbalancer IP`), ...portMatch(ip, sp.port)], jump(lbChain));
    if (usesFW) {
      w.filter.add(KUBE_PROXY_FIREWALL, [comment(`${spn} traffic not accepted by ${fwChain}`), ...portMatch(ip, sp.port)], DROP);
    }
  }
  if (externalFilter !== undefined) {
    for (const ip of sp.loadBalancerIPs) {
      w.filter.add(KUBE_EXTERNAL_SERVICES, [comment(externalFilter.comment), ...portMatch(ip, sp.port)], externalFilter.target);
    }
  }

  // NodePort (§1.8).
  if (sp.nodePort !== 0) {
    if (hasAnyEndpoints) {
      if (node.localhostNodePorts && node.nfacct) {
        w.nat.add(
          KUBE_NODEPORTS,
          [comment(spn), proto(p), dst('127.0.0.0/8'), dport(sp.nodePort), nfacct(NFACCT_LOCALHOST_NODEPORTS)],
          jump(externalChain),
        );
      }
      w.nat.add(KUBE_NODEPORTS, [comment(spn), proto(p), dport(sp.nodePort)], jump(externalChain));
    }
    if (externalFilter !== undefined) {
      w.filter.add(
        KUBE_EXTERNAL_SERVICES,
        [comment(externalFilter.comment), addrtype('dst'), proto(p), dport(sp.nodePort)],
        externalFilter.target,
      );
    }
  }

  // Health check node port (§1.9), whether or not there are endpoints.
  if (sp.healthCheckNodePort !== 0) {
    w.filter.add(KUBE_NODEPORTS, [comment(`${spn} health check node port`), proto('tcp'), dport(sp.healthCheckNodePort)], ACCEPT);
  }

  // Per-service nat chains, in kube-proxy's order: EXT, FW, SVC, SVL, SEPs.
  const natChains: string[] = [];
  const declare = (name: string): void => {
    w.nat.declare(name);
    natChains.push(name);
  };
  const internalMasq: Clause[] = [comment(`${spn} cluster IP`), ...portMatch(sp.clusterIP, sp.port)];
  const writeInternalMasq = (): void => {
    if (!hasInternal) return;
    if (node.masqueradeAll) w.nat.add(internalChain, internalMasq, jump(KUBE_MARK_MASQ));
    else if (node.detector.kind !== 'none') {
      w.nat.add(internalChain, [...internalMasq, ...detectorIfNotLocal(node.detector)], jump(KUBE_MARK_MASQ));
    }
  };

  if (usesExternalChain) {
    declare(externalChain);
    if (!sp.externalPolicyLocal) {
      w.nat.add(externalChain, [comment(`masquerade traffic for ${spn} external destinations`)], jump(KUBE_MARK_MASQ));
    } else {
      if (node.detector.kind !== 'none') {
        w.nat.add(
          externalChain,
          [comment(`pod traffic for ${spn} external destinations`), ...detectorIfLocal(node.detector)],
          jump(clusterChain),
        );
      }
      w.nat.add(
        externalChain,
        [comment(`masquerade LOCAL traffic for ${spn} external destinations`), addrtype('src')],
        jump(KUBE_MARK_MASQ),
      );
      w.nat.add(externalChain, [comment(`route LOCAL traffic for ${spn} external destinations`), addrtype('src')], jump(clusterChain));
    }
    if (hasExternal) w.nat.add(externalChain, [], jump(externalPolicyChain));
  }

  if (usesFW) {
    declare(fwChain);
    const fwComment = comment(`${spn} loadbalancer IP`);
    const primary = node.primaryIP;
    let allowFromNode = false;
    for (const cidr of sp.loadBalancerSourceRanges) {
      w.nat.add(fwChain, [fwComment, src(cidr)], jump(externalChain));
      if (primary !== undefined && cidrTextContains(cidr, primary)) allowFromNode = true;
    }
    // A node reaching its own LB VIP loops back with the VIP as source (VIP-like load balancers).
    if (allowFromNode) for (const ip of sp.loadBalancerIPs) w.nat.add(fwChain, [fwComment, src(ip)], jump(externalChain));
    w.nat.add(fwChain, [comment(`other traffic to ${spn} will be dropped by KUBE-PROXY-FIREWALL`)], NO_TARGET);
  }

  if (usesClusterChain) {
    declare(clusterChain);
    if (internalChain === clusterChain) writeInternalMasq();
    writeServiceToEndpointRules(w, sp, clusterChain, clusterEndpoints);
  }
  if (usesLocalChain) {
    declare(localChain);
    if (internalChain === localChain) writeInternalMasq();
    writeServiceToEndpointRules(w, sp, localChain, localEndpoints);
  }
  for (const ep of categories.allReachable) natChains.push(writeEndpointChain(w, sp, ep));

  return { servicePort: sp, categories, natChains, hasInternal, hasExternal };
}

function cidrTextContains(cidrText: string, ipText: string): boolean {
  const cidr = parseCIDR(cidrText);
  const ip = parseIP(ipText);
  return cidr !== undefined && ip !== undefined && cidrContains(cidr, ip);
}

function writeFixedRules(w: Writers): void {
  const { node } = w;
  const mark = node.masqueradeMark;
  w.nat.add(KUBE_POSTROUTING, [markMatch(mark, mark, true)], RETURN);
  w.nat.add(KUBE_POSTROUTING, [], { kind: 'MARK', op: 'xor', value: mark, mask: undefined });
  w.nat.add(
    KUBE_POSTROUTING,
    [comment('kubernetes service traffic requiring SNAT')],
    { kind: 'MASQUERADE', randomFully: node.masqueradeRandomFully, toPorts: undefined },
  );
  w.nat.add(KUBE_MARK_MASQ, [], { kind: 'MARK', op: 'or', value: mark, mask: undefined });
  if (node.family === 'IPv4' && node.localhostNodePorts) {
    w.filter.add(
      KUBE_FIREWALL,
      [
        comment('block incoming localnet connections'),
        dst('127.0.0.0/8'),
        src('127.0.0.0/8', true),
        ctstate(['RELATED', 'ESTABLISHED', 'DNAT'], true),
      ],
      DROP,
    );
  }
}

function writeForwardRules(w: Writers): void {
  const { node } = w;
  if (!node.conntrackTCPBeLiberal) {
    w.filter.add(KUBE_FORWARD, [ctstate(['INVALID']), ...(node.nfacct ? [nfacct(NFACCT_CT_STATE_INVALID)] : [])], DROP);
  }
  w.filter.add(KUBE_FORWARD, [comment('kubernetes forwarding rules'), markMatch(node.masqueradeMark, node.masqueradeMark)], ACCEPT);
  w.filter.add(KUBE_FORWARD, [comment('kubernetes forwarding conntrack rule'), ctstate(['RELATED', 'ESTABLISHED'])], ACCEPT);
}

function writeNodePortsDispatch(w: Writers): void {
  const { node } = w;
  const last = comment(NODEPORTS_LAST_RULE_COMMENT);
  if (node.nodePortAddresses === 'all') {
    const extra: Clause[] =
      node.family === 'IPv6' ? [dst('::1/128', true)] : node.localhostNodePorts ? [] : [dst('127.0.0.0/8', true)];
    w.nat.add(KUBE_SERVICES, [last, addrtype('dst'), ...extra], jump(KUBE_NODEPORTS));
    return;
  }
  for (const ip of node.nodePortAddresses) w.nat.add(KUBE_SERVICES, [last, dst(ip)], jump(KUBE_NODEPORTS));
}

/** One service port's compiled rules: its own nat chains whole, and its rules in the top-level chains. */
interface Fragment {
  readonly compiled: CompiledServicePort;
  readonly filter: readonly Chain[];
  readonly nat: readonly Chain[];
}

function topLevelBuilders(): { filter: TableBuilder; nat: TableBuilder } {
  const filter = new TableBuilder();
  const nat = new TableBuilder();
  for (const c of FILTER_TOP_CHAINS) filter.declare(c);
  for (const c of NAT_TOP_CHAINS) nat.declare(c);
  return { filter, nat };
}

function compileFragment(node: NodeContext, largeClusterMode: boolean, sp: ServicePort, endpoints: readonly Endpoint[]): Fragment {
  const { filter, nat } = topLevelBuilders();
  const compiled = compileServicePort({ filter, nat, node, largeClusterMode }, sp, endpoints);
  const used = (c: Chain): boolean => c.rules.length > 0 || compiled.natChains.includes(c.name);
  return { compiled, filter: filter.build().filter((c) => c.rules.length > 0), nat: nat.build().filter(used) };
}

/**
 * What compiling one model leaves for the next (the agent's syncs): a service port whose
 * ServicePort and endpoints are the same objects as last time (see ModelMemo) gets its fragment
 * back instead of being compiled again, its chains the very same objects.
 */
export class CompileMemo {
  #key: string | undefined;
  #fragments = new WeakMap<ServicePort, { readonly endpoints: readonly Endpoint[] | undefined; readonly fragment: Fragment }>();

  /** Forgets everything when what every service port's rules depend on changed. */
  forContext(node: NodeContext, largeClusterMode: boolean): void {
    const key = JSON.stringify({ node, largeClusterMode });
    if (key === this.#key) return;
    this.#key = key;
    this.#fragments = new WeakMap();
  }

  fragment(sp: ServicePort, endpoints: readonly Endpoint[] | undefined, compile: () => Fragment): Fragment {
    const known = this.#fragments.get(sp);
    if (known !== undefined && known.endpoints === endpoints) return known.fragment;
    const fragment = compile();
    this.#fragments.set(sp, { endpoints, fragment });
    return fragment;
  }
}

export interface CompileOptions {
  readonly memo?: CompileMemo;
}

/** Compiles one family's model into kpx's chains (a full sync). */
export function compileFamily(model: FamilyModel, options: CompileOptions = {}): CompiledFamily {
  const { filter, nat } = topLevelBuilders();
  // kube-proxy declares KUBE-FIREWALL in the restore only for IPv4 with localhost NodePorts.
  if (model.family === 'IPv4' && model.node.localhostNodePorts) filter.declare(KUBE_FIREWALL);
  const w: Writers = { filter, nat, node: model.node, largeClusterMode: model.largeClusterMode };
  const memo = options.memo;
  memo?.forContext(model.node, model.largeClusterMode);

  writeFixedRules(w);
  let internal = 0;
  let external = 0;
  const servicePorts = model.servicePorts.map((sp) => {
    const endpoints = model.endpoints.get(sp.key);
    const build = (): Fragment => compileFragment(model.node, model.largeClusterMode, sp, endpoints ?? []);
    const fragment = memo === undefined ? build() : memo.fragment(sp, endpoints, build);
    for (const c of fragment.filter) filter.put(c);
    for (const c of fragment.nat) nat.put(c);
    const compiled = fragment.compiled;
    const anyEndpoints = compiled.categories.hasAnyEndpoints;
    if (anyEndpoints && !compiled.hasInternal) internal++;
    if (anyEndpoints && !compiled.hasExternal) external++;
    return compiled;
  });
  writeForwardRules(w);
  writeNodePortsDispatch(w);

  return {
    family: model.family,
    model,
    ruleset: {
      family: model.family,
      tables: [
        { name: 'filter', chains: filter.build() },
        { name: 'nat', chains: nat.build() },
      ],
    },
    jumps: builtinJumps(),
    servicePorts,
    noLocalEndpoints: { internal, external },
  };
}
