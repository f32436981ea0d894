/**
 * Behaviours of reference §1.2–§1.12 on small hand-built clusters. Every expected line below was
 * written from the reference text (chain names from the §2 worked examples where they exist).
 */
import { describe, expect, it } from 'vitest';
import { buildProxyModels, classifyObjects } from '../model/cluster.ts';
import type { ProxyConfigOverrides } from '../model/config.ts';
import { decodeDocuments } from '../model/documents.ts';
import { compileFamily, type CompiledFamily } from './compile.ts';
import { endpointChainName, serviceChainName } from './hash.ts';
import { renderRestore, ruleLine } from './render.ts';

// ---------------------------------------------------------------------------------------------
// Helpers

interface Restore {
  readonly text: string;
  /** `-A CHAIN ...` lines of one chain of one table, in order. */
  rules(table: 'filter' | 'nat', chain: string): string[];
  /** Declared chains (`:NAME - [0:0]`) of one table. */
  chains(table: 'filter' | 'nat'): string[];
  /** Every `-A` line of one table. */
  all(table: 'filter' | 'nat'): string[];
}

function parseRestore(text: string): Restore {
  const tables = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      current = [];
      tables.set(line.slice(1), current);
    } else if (line === 'COMMIT') current = undefined;
    else if (line !== '') current?.push(line);
  }
  const lines = (t: string): string[] => tables.get(t) ?? [];
  return {
    text,
    rules: (table, chain) => lines(table).filter((l) => l === `-A ${chain}` || l.startsWith(`-A ${chain} `)),
    chains: (table) => lines(table).filter((l) => l.startsWith(':')).map((l) => l.slice(1).split(' ')[0] ?? ''),
    all: (table) => lines(table).filter((l) => l.startsWith('-A ')),
  };
}

const BASE: ProxyConfigOverrides = { clusterCIDRs: ['10.0.0.0/8'], masqueradeRandomFully: false };

function compileYaml(yaml: string, overrides: ProxyConfigOverrides = {}): CompiledFamily[] {
  const { state, problems } = classifyObjects(decodeDocuments(yaml, 'test.yaml'));
  expect(problems).toEqual([]);
  const models = buildProxyModels(state, { overrides: { ...BASE, ...overrides } });
  expect(models.problems.filter((p) => p.kind !== 'note')).toEqual([]);
  return models.families.map((m) => compileFamily(m));
}

function restoreOf(yaml: string, overrides: ProxyConfigOverrides = {}, family: 'IPv4' | 'IPv6' = 'IPv4'): Restore {
  const compiled = compileYaml(yaml, overrides).find((c) => c.family === family);
  if (compiled === undefined) throw new Error(`no ${family} ruleset`);
  return parseRestore(renderRestore(compiled));
}

const NODE = `apiVersion: v1
kind: Node
metadata: {name: test-node}
spec: {podCIDRs: [10.244.1.0/24]}
status: {addresses: [{type: InternalIP, address: 192.168.0.2}]}
`;

const NODE_V6 = `apiVersion: v1
kind: Node
metadata: {name: test-node}
status: {addresses: [{type: InternalIP, address: "fd00:1::2"}]}
`;

function svc(spec: string, opts: { ns?: string; name?: string; status?: string } = {}): string {
  return `apiVersion: v1
kind: Service
metadata: {namespace: ${opts.ns ?? 'ns1'}, name: ${opts.name ?? 'svc1'}}
spec:
${spec}${opts.status === undefined ? '' : `status:\n${opts.status}`}`;
}

interface SliceOpts {
  ns?: string;
  service?: string;
  name?: string;
  ports?: string;
  addressType?: string;
}

/** `endpoints` is a YAML list body, one `- {...}` per line. */
function slice(endpoints: string, opts: SliceOpts = {}): string {
  const service = opts.service ?? 'svc1';
  return `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: ${opts.ns ?? 'ns1'}, name: ${opts.name ?? `${service}-abc`}, labels: {kubernetes.io/service-name: ${service}}}
addressType: ${opts.addressType ?? 'IPv4'}
ports: ${opts.ports ?? '[{name: p80, port: 80, protocol: TCP}]'}
endpoints:
${endpoints}`;
}

const docs = (...parts: string[]): string => parts.join('---\n');

// Chain names from reference §2.
const SVC1 = 'XPGD46QRK7WJZT7O'; // ns1/svc1:p80 tcp
const SVC = `KUBE-SVC-${SVC1}`;
const SVL = `KUBE-SVL-${SVC1}`;
const EXT = `KUBE-EXT-${SVC1}`;
const FW = `KUBE-FW-${SVC1}`;
const SEP1 = 'KUBE-SEP-SXIVWICOYRO3J4NJ'; // ns1/svc1:p80 tcp 10.180.0.1:80
const sep = (endpoint: string): string => endpointChainName('ns1/svc1:p80', 'TCP', endpoint);

const LAST_COMMENT = '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain"';
const CLUSTER_IP_RULE = `-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j ${SVC}`;
const MASQ_RULE_PREFIX = `-A ${SVC} -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80`;

const CLUSTER_IP_SVC = svc('  clusterIP: 172.30.0.41\n  ports: [{name: p80, port: 80, protocol: TCP}]\n');
const ONE_EP = slice('- {addresses: [10.180.0.1], nodeName: node2}\n');

// ---------------------------------------------------------------------------------------------

describe('fixed rules (reference §1.3)', () => {
  it('writes the POSTROUTING, MARK-MASQ, FORWARD and FIREWALL rules with the production mark', () => {
    const r = restoreOf(NODE);
    expect(r.rules('nat', 'KUBE-POSTROUTING')).toEqual([
      '-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN',
      '-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000',
      '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE',
    ]);
    expect(r.rules('nat', 'KUBE-MARK-MASQ')).toEqual(['-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000']);
    expect(r.rules('filter', 'KUBE-FORWARD')).toEqual([
      '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
      '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT',
      '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    ]);
    expect(r.chains('filter')).toContain('KUBE-FIREWALL');
    expect(r.rules('filter', 'KUBE-FIREWALL')).toEqual([
      '-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
    ]);
    expect(r.rules('nat', 'KUBE-SERVICES')).toEqual([`-A KUBE-SERVICES ${LAST_COMMENT} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`]);
    for (const c of ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL']) {
      expect(r.chains('filter')).toContain(c);
    }
    for (const c of ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ']) expect(r.chains('nat')).toContain(c);
    expect(r.chains('nat')).not.toContain('KUBE-MARK-DROP');
  });

  it('masquerade bit 3 gives mark 0x00000008', () => {
    const r = restoreOf(NODE, { masqueradeBit: 3 });
    expect(r.rules('nat', 'KUBE-MARK-MASQ')).toEqual(['-A KUBE-MARK-MASQ -j MARK --or-mark 0x00000008']);
    expect(r.rules('nat', 'KUBE-POSTROUTING').slice(0, 2)).toEqual([
      '-A KUBE-POSTROUTING -m mark ! --mark 0x00000008/0x00000008 -j RETURN',
      '-A KUBE-POSTROUTING -j MARK --xor-mark 0x00000008',
    ]);
    expect(r.rules('filter', 'KUBE-FORWARD')[1]).toBe(
      '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00000008/0x00000008 -j ACCEPT',
    );
  });

  it('appends --random-fully to MASQUERADE when supported', () => {
    const r = restoreOf(NODE, { masqueradeRandomFully: true });
    expect(r.rules('nat', 'KUBE-POSTROUTING')[2]).toBe(
      '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    );
  });

  it('drops the INVALID rule when nf_conntrack_tcp_be_liberal is set', () => {
    const r = restoreOf(NODE, { conntrackTCPBeLiberal: true });
    expect(r.rules('filter', 'KUBE-FORWARD')).toEqual([
      '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT',
      '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    ]);
  });

  it('adds the nfacct match to the INVALID rule when the counters exist', () => {
    const r = restoreOf(NODE, { nfacct: true });
    expect(r.rules('filter', 'KUBE-FORWARD')[0]).toBe(
      '-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP',
    );
  });

  it('localhostNodePorts=false: "! -d 127.0.0.0/8" on the last rule and no KUBE-FIREWALL chain', () => {
    const r = restoreOf(docs(NODE, CLUSTER_IP_SVC, ONE_EP), { localhostNodePorts: false });
    const services = r.rules('nat', 'KUBE-SERVICES');
    expect(services[services.length - 1]).toBe(
      `-A KUBE-SERVICES ${LAST_COMMENT} -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS`,
    );
    expect(r.chains('filter')).not.toContain('KUBE-FIREWALL');
    expect(r.rules('filter', 'KUBE-FIREWALL')).toEqual([]);
  });

  it('IPv6: last rule "! -d ::1/128" and no KUBE-FIREWALL chain', () => {
    const r = restoreOf(NODE_V6, {}, 'IPv6');
    expect(r.rules('nat', 'KUBE-SERVICES')).toEqual([
      `-A KUBE-SERVICES ${LAST_COMMENT} -m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS`,
    ]);
    expect(r.chains('filter')).not.toContain('KUBE-FIREWALL');
  });

  it('explicit nodePortAddresses: one "-d <nodeIP>" rule per matching local address', () => {
    const r = restoreOf(docs(NODE, CLUSTER_IP_SVC, ONE_EP), {
      nodeIPs: ['192.168.0.2', '192.168.1.2', '10.1.0.5'],
      nodePortAddresses: ['192.168.0.0/16'],
    });
    const services = r.rules('nat', 'KUBE-SERVICES');
    expect(services[0]).toBe(CLUSTER_IP_RULE);
    expect(services.slice(1).sort()).toEqual([
      `-A KUBE-SERVICES ${LAST_COMMENT} -d 192.168.0.2 -j KUBE-NODEPORTS`,
      `-A KUBE-SERVICES ${LAST_COMMENT} -d 192.168.1.2 -j KUBE-NODEPORTS`,
    ]);
  });

  it('explicit nodePortAddresses with loopback: 127.0.0.1 only with localhost NodePorts', () => {
    const overrides = { nodeIPs: ['192.168.0.2'], nodePortAddresses: ['192.168.0.0/24', '127.0.0.0/8'] };
    expect(restoreOf(NODE, overrides).rules('nat', 'KUBE-SERVICES').sort()).toEqual([
      `-A KUBE-SERVICES ${LAST_COMMENT} -d 127.0.0.1 -j KUBE-NODEPORTS`,
      `-A KUBE-SERVICES ${LAST_COMMENT} -d 192.168.0.2 -j KUBE-NODEPORTS`,
    ]);
    const off = restoreOf(NODE, { ...overrides, localhostNodePorts: false });
    expect(off.rules('nat', 'KUBE-SERVICES')).toEqual([`-A KUBE-SERVICES ${LAST_COMMENT} -d 192.168.0.2 -j KUBE-NODEPORTS`]);
    expect(off.chains('filter')).not.toContain('KUBE-FIREWALL');
  });

  it('explicit nodePortAddresses for IPv6 skip ::1', () => {
    const r = restoreOf(NODE_V6, { nodePortAddresses: ['fd00:1::/64', '::1/128'] }, 'IPv6');
    expect(r.rules('nat', 'KUBE-SERVICES')).toEqual([`-A KUBE-SERVICES ${LAST_COMMENT} -d fd00:1::2 -j KUBE-NODEPORTS`]);
  });

  it('a zero CIDR in nodePortAddresses means all addresses', () => {
    const r = restoreOf(NODE, { nodePortAddresses: ['0.0.0.0/0'] });
    expect(r.rules('nat', 'KUBE-SERVICES')).toEqual([`-A KUBE-SERVICES ${LAST_COMMENT} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`]);
  });
});

describe('built-in chain jumps (reference §1.2)', () => {
  it('lists the 12 kube-proxy jumps plus the two kubelet KUBE-FIREWALL jumps, in ensure order', () => {
    const [compiled] = compileYaml(NODE);
    if (compiled === undefined) throw new Error('no ruleset');
    expect(compiled.jumps.map((j) => `${j.table} ${ruleLine(j.chain, j.rule)}`)).toEqual([
      'filter -A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
      'filter -A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
      'filter -A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
      'filter -A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
      'filter -A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
      'filter -A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
      'filter -A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
      'filter -A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
      'filter -A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
      'nat -A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
      'nat -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
      'nat -A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
      'filter -A INPUT -j KUBE-FIREWALL',
      'filter -A OUTPUT -j KUBE-FIREWALL',
    ]);
  });
});

describe('ClusterIP and the local-traffic detector (reference §1.5, §1.11, §1.12, §1.14)', () => {
  it('ClusterCIDR detector: full chain set for one endpoint', () => {
    const r = restoreOf(docs(NODE, CLUSTER_IP_SVC, ONE_EP));
    expect(r.rules('nat', 'KUBE-SERVICES')).toEqual([
      CLUSTER_IP_RULE,
      `-A KUBE-SERVICES ${LAST_COMMENT} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`,
    ]);
    expect(r.rules('nat', SVC)).toEqual([
      `${MASQ_RULE_PREFIX} ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ`,
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j ${SEP1}`,
    ]);
    expect(r.rules('nat', SEP1)).toEqual([
      `-A ${SEP1} -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ`,
      `-A ${SEP1} -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80`,
    ]);
    expect(r.chains('nat')).toEqual(expect.arrayContaining([SVC, SEP1]));
    expect(r.chains('nat')).not.toContain(EXT);
    expect(r.chains('nat')).not.toContain(SVL);
    expect(r.all('filter').filter((l) => l.includes('ns1/svc1'))).toEqual([]);
  });

  it('masqueradeAll: internal masquerade rule without detector arguments', () => {
    const r = restoreOf(docs(NODE, CLUSTER_IP_SVC, ONE_EP), { masqueradeAll: true });
    expect(r.rules('nat', SVC)[0]).toBe(`${MASQ_RULE_PREFIX} -j KUBE-MARK-MASQ`);
  });

  it('masqueradeAll with the no-op detector still masquerades', () => {
    const r = restoreOf(docs(NODE, CLUSTER_IP_SVC, ONE_EP), { masqueradeAll: true, clusterCIDRs: [] });
    expect(r.rules('nat', SVC)[0]).toBe(`${MASQ_RULE_PREFIX} -j KUBE-MARK-MASQ`);
  });

  it('no-op detector (no cluster CIDR): no internal masquerade rule', () => {
    const r = restoreOf(docs(NODE, CLUSTER_IP_SVC, ONE_EP), { clusterCIDRs: [] });
    expect(r.rules('nat', SVC)).toEqual([`-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j ${SEP1}`]);
  });

  it('ClusterCIDR mode uses the cluster CIDR of the family (IPv6)', () => {
    const v6svc = svc('  clusterIP: "fd00:ab34::20"\n  ports: [{name: p80, port: 80, protocol: TCP}]\n');
    const v6ep = slice('- {addresses: ["ff06::c1"], nodeName: node2}\n', { addressType: 'IPv6' });
    const r = restoreOf(docs(NODE_V6, v6svc, v6ep), { clusterCIDRs: ['10.0.0.0/8', 'fd00:10::/64'] }, 'IPv6');
    const sepV6 = 'KUBE-SEP-LIGRYQQLSZN4UWQ5';
    expect(r.rules('nat', SVC)).toEqual([
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d fd00:ab34::20 --dport 80 ! -s fd00:10::/64 -j KUBE-MARK-MASQ`,
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> [ff06::c1]:80" -j ${sepV6}`,
    ]);
    expect(r.rules('nat', sepV6)).toEqual([
      `-A ${sepV6} -m comment --comment ns1/svc1:p80 -s ff06::c1 -j KUBE-MARK-MASQ`,
      `-A ${sepV6} -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination [ff06::c1]:80`,
    ]);
  });

  it('NodeCIDR detector uses the Node pod CIDR', () => {
    const r = restoreOf(docs(NODE, CLUSTER_IP_SVC, ONE_EP), { detectLocalMode: 'NodeCIDR' });
    expect(r.rules('nat', SVC)[0]).toBe(`${MASQ_RULE_PREFIX} ! -s 10.244.1.0/24 -j KUBE-MARK-MASQ`);
  });

  it('BridgeInterface detector: "! -i br0" to masquerade, "-i br0" for pod traffic', () => {
    const np = svc(
      '  type: NodePort\n  clusterIP: 172.30.0.41\n  externalTrafficPolicy: Local\n  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30080}]\n',
    );
    const r = restoreOf(docs(NODE, np, ONE_EP), { detectLocalMode: 'BridgeInterface', bridgeInterface: 'br0' });
    expect(r.rules('nat', SVC)[0]).toBe(`${MASQ_RULE_PREFIX} ! -i br0 -j KUBE-MARK-MASQ`);
    expect(r.rules('nat', EXT)[0]).toBe(
      `-A ${EXT} -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -i br0 -j ${SVC}`,
    );
  });

  it('InterfaceNamePrefix detector: "! -i veth+" and "-i veth+"', () => {
    const np = svc(
      '  type: NodePort\n  clusterIP: 172.30.0.41\n  externalTrafficPolicy: Local\n  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30080}]\n',
    );
    const r = restoreOf(docs(NODE, np, ONE_EP), { detectLocalMode: 'InterfaceNamePrefix', interfaceNamePrefix: 'veth' });
    expect(r.rules('nat', SVC)[0]).toBe(`${MASQ_RULE_PREFIX} ! -i veth+ -j KUBE-MARK-MASQ`);
    expect(r.rules('nat', EXT)[0]).toBe(
      `-A ${EXT} -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -i veth+ -j ${SVC}`,
    );
  });
});

describe('endpoint dispatch (reference §1.11, §1.12, §3)', () => {
  it('three endpoints: probabilities 1/3, 1/2, then none', () => {
    const eps = slice('- {addresses: [10.180.0.1]}\n- {addresses: [10.180.0.2]}\n- {addresses: [10.180.0.3]}\n');
    const r = restoreOf(docs(NODE, CLUSTER_IP_SVC, eps));
    expect(r.rules('nat', SVC).slice(1)).toEqual([
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.3333333333 -j ${SEP1}`,
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -m statistic --mode random --probability 0.5000000000 -j ${sep('10.180.0.2:80')}`,
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.3:80" -j ${sep('10.180.0.3:80')}`,
    ]);
    for (const e of ['10.180.0.1', '10.180.0.2', '10.180.0.3']) {
      expect(r.chains('nat')).toContain(sep(`${e}:80`));
      expect(r.rules('nat', sep(`${e}:80`))).toEqual([
        `-A ${sep(`${e}:80`)} -m comment --comment ns1/svc1:p80 -s ${e} -j KUBE-MARK-MASQ`,
        `-A ${sep(`${e}:80`)} -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination ${e}:80`,
      ]);
    }
  });

  it('orders endpoints by plain string order: 10.0.0.10:80 before 10.0.0.2:80', () => {
    const eps = slice('- {addresses: [10.0.0.2]}\n- {addresses: [10.0.0.10]}\n');
    const r = restoreOf(docs(NODE, CLUSTER_IP_SVC, eps), { clusterCIDRs: [] });
    expect(r.rules('nat', SVC)).toEqual([
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.0.0.10:80" -m statistic --mode random --probability 0.5000000000 -j ${sep('10.0.0.10:80')}`,
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.0.0.2:80" -j ${sep('10.0.0.2:80')}`,
    ]);
  });

  it('uses the endpoint port of the slice (target port)', () => {
    const eps = slice('- {addresses: [10.180.0.1]}\n', { ports: '[{name: p80, port: 8080, protocol: TCP}]' });
    const r = restoreOf(docs(NODE, CLUSTER_IP_SVC, eps));
    const s = sep('10.180.0.1:8080');
    expect(r.rules('nat', SVC)[1]).toBe(`-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:8080" -j ${s}`);
    expect(r.rules('nat', s)[1]).toBe(`-A ${s} -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:8080`);
  });

  it('ClientIP affinity: rcheck rules for every endpoint before the statistic rules, --set in SEP', () => {
    const aff = svc(
      '  clusterIP: 172.30.0.41\n  sessionAffinity: ClientIP\n  ports: [{name: p80, port: 80, protocol: TCP}]\n',
    );
    const eps = slice('- {addresses: [10.180.0.1]}\n- {addresses: [10.180.0.2]}\n');
    const r = restoreOf(docs(NODE, aff, eps));
    const sep2 = sep('10.180.0.2:80');
    expect(r.rules('nat', SVC)).toEqual([
      `${MASQ_RULE_PREFIX} ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ`,
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m recent --name ${SEP1} --rcheck --seconds 10800 --reap -j ${SEP1}`,
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -m recent --name ${sep2} --rcheck --seconds 10800 --reap -j ${sep2}`,
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j ${SEP1}`,
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j ${sep2}`,
    ]);
    expect(r.rules('nat', SEP1)).toEqual([
      `-A ${SEP1} -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ`,
      `-A ${SEP1} -m comment --comment ns1/svc1:p80 -m recent --name ${SEP1} --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80`,
    ]);
  });

  it('ClientIP affinity with an explicit timeout', () => {
    const aff = svc(
      '  clusterIP: 172.30.0.41\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 300}}\n  ports: [{name: p80, port: 80, protocol: TCP}]\n',
    );
    const r = restoreOf(docs(NODE, aff, ONE_EP));
    expect(r.rules('nat', SVC)[1]).toBe(
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m recent --name ${SEP1} --rcheck --seconds 300 --reap -j ${SEP1}`,
    );
  });

  it('UDP: "-m udp -p udp" in service, masquerade and DNAT rules', () => {
    const udp = svc('  clusterIP: 172.30.0.10\n  ports: [{name: dns, port: 53, protocol: UDP}]\n', { name: 'dns' });
    const eps = slice('- {addresses: [10.180.0.5]}\n', { service: 'dns', ports: '[{name: dns, port: 5353, protocol: UDP}]' });
    const r = restoreOf(docs(NODE, udp, eps));
    const svcChain = serviceChainName('ns1/dns:dns', 'UDP');
    const sepChain = endpointChainName('ns1/dns:dns', 'UDP', '10.180.0.5:5353');
    expect(r.rules('nat', 'KUBE-SERVICES')[0]).toBe(
      `-A KUBE-SERVICES -m comment --comment "ns1/dns:dns cluster IP" -m udp -p udp -d 172.30.0.10 --dport 53 -j ${svcChain}`,
    );
    expect(r.rules('nat', svcChain)).toEqual([
      `-A ${svcChain} -m comment --comment "ns1/dns:dns cluster IP" -m udp -p udp -d 172.30.0.10 --dport 53 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ`,
      `-A ${svcChain} -m comment --comment "ns1/dns:dns -> 10.180.0.5:5353" -j ${sepChain}`,
    ]);
    expect(r.rules('nat', sepChain)[1]).toBe(
      `-A ${sepChain} -m comment --comment ns1/dns:dns -m udp -p udp -j DNAT --to-destination 10.180.0.5:5353`,
    );
  });

  it('SCTP: "-m sctp -p sctp" with the §2 chain names', () => {
    const sctp = svc('  clusterIP: 172.30.0.41\n  ports: [{name: p80, port: 80, protocol: SCTP}]\n');
    const eps = slice('- {addresses: [10.180.0.1]}\n', { ports: '[{name: p80, port: 80, protocol: SCTP}]' });
    const r = restoreOf(docs(NODE, sctp, eps));
    expect(r.rules('nat', 'KUBE-SERVICES')[0]).toBe(
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m sctp -p sctp -d 172.30.0.41 --dport 80 -j KUBE-SVC-GFCIFIA5VTFSTMSM',
    );
    expect(r.rules('nat', 'KUBE-SEP-RFW33Y6OHVBQ4W3M')[1]).toBe(
      '-A KUBE-SEP-RFW33Y6OHVBQ4W3M -m comment --comment ns1/svc1:p80 -m sctp -p sctp -j DNAT --to-destination 10.180.0.1:80',
    );
  });

  it('a TCP slice port does not feed a UDP service port of the same name', () => {
    const udp = svc('  clusterIP: 172.30.0.41\n  ports: [{name: p80, port: 80, protocol: UDP}]\n');
    const r = restoreOf(docs(NODE, udp, ONE_EP));
    expect(r.rules('filter', 'KUBE-SERVICES')).toEqual([
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" -m udp -p udp -d 172.30.0.41 --dport 80 -j REJECT',
    ]);
  });

  it('unnamed port: spn without ":port" and the §2 names', () => {
    const unnamed = svc('  clusterIP: 172.30.0.41\n  ports: [{port: 80}]\n');
    const eps = slice('- {addresses: [10.0.1.1]}\n', { ports: '[{name: "", port: 80}]' });
    const r = restoreOf(docs(NODE, unnamed, eps), { clusterCIDRs: [] });
    expect(r.rules('nat', 'KUBE-SERVICES')[0]).toBe(
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-AQI2S6QIMU7PVVRP',
    );
    expect(r.rules('nat', 'KUBE-SVC-AQI2S6QIMU7PVVRP')).toEqual([
      '-A KUBE-SVC-AQI2S6QIMU7PVVRP -m comment --comment "ns1/svc1 -> 10.0.1.1:80" -j KUBE-SEP-3JOIVZTXZZRGORX4',
    ]);
  });

  it('large-cluster mode (> 1000 endpoints): no comments on SVC→SEP and SEP rules, others kept', () => {
    const ipsList: string[] = [];
    for (let i = 0; i < 1001; i++) ipsList.push(`10.1.${String(Math.floor(i / 200))}.${String((i % 200) + 1)}`);
    const eps = slice(ipsList.map((ip) => `- {addresses: [${ip}]}`).join('\n') + '\n');
    const r = restoreOf(docs(NODE, CLUSTER_IP_SVC, eps));
    const sorted = ipsList.map((ip) => `${ip}:80`).sort();
    const first = sorted[0] ?? '';
    const last = sorted[sorted.length - 1] ?? '';
    const svcRules = r.rules('nat', SVC);
    expect(svcRules).toHaveLength(1002);
    expect(svcRules[0]).toBe(`${MASQ_RULE_PREFIX} ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ`);
    expect(svcRules[1]).toBe(`-A ${SVC} -m statistic --mode random --probability 0.0009990010 -j ${sep(first)}`);
    expect(svcRules[1001]).toBe(`-A ${SVC} -j ${sep(last)}`);
    const firstIP = first.split(':')[0] ?? '';
    expect(r.rules('nat', sep(first))).toEqual([
      `-A ${sep(first)} -s ${firstIP} -j KUBE-MARK-MASQ`,
      `-A ${sep(first)} -m tcp -p tcp -j DNAT --to-destination ${first}`,
    ]);
    expect(r.rules('nat', 'KUBE-SERVICES')[0]).toBe(CLUSTER_IP_RULE);
    expect(r.rules('nat', 'KUBE-POSTROUTING')[2]).toContain('--comment "kubernetes service traffic requiring SNAT"');
    expect(r.all('nat').filter((l) => l.includes(' -> '))).toEqual([]);
  });

  it('exactly 1000 endpoints keep their comments', () => {
    const ipsList: string[] = [];
    for (let i = 0; i < 1000; i++) ipsList.push(`10.1.${String(Math.floor(i / 200))}.${String((i % 200) + 1)}`);
    const eps = slice(ipsList.map((ip) => `- {addresses: [${ip}]}`).join('\n') + '\n');
    const r = restoreOf(docs(NODE, CLUSTER_IP_SVC, eps));
    const sorted = ipsList.map((ip) => `${ip}:80`).sort();
    const first = sorted[0] ?? '';
    expect(r.rules('nat', SVC)[1]).toBe(
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> ${first}" -m statistic --mode random --probability 0.0010000000 -j ${sep(first)}`,
    );
  });
});

describe('no endpoints (reference §1.4 step 8, §1.5–§1.8)', () => {
  it('REJECTs the cluster IP and every external frontend, and makes no per-service chain', () => {
    const lb = svc(
      `  type: LoadBalancer
  clusterIP: 172.30.0.41
  externalIPs: [192.168.99.22]
  loadBalancerSourceRanges: [203.0.113.0/25]
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30080}]
`,
      { status: '  loadBalancer: {ingress: [{ip: 1.2.3.4}]}\n' },
    );
    const r = restoreOf(docs(NODE, lb));
    expect(r.rules('filter', 'KUBE-SERVICES')).toEqual([
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j REJECT',
    ]);
    expect(r.rules('filter', 'KUBE-EXTERNAL-SERVICES')).toEqual([
      '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j REJECT',
      '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j REJECT',
      '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j REJECT',
    ]);
    expect(r.rules('filter', 'KUBE-PROXY-FIREWALL')).toEqual([]);
    expect(r.rules('nat', 'KUBE-SERVICES')).toEqual([`-A KUBE-SERVICES ${LAST_COMMENT} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`]);
    expect(r.rules('nat', 'KUBE-NODEPORTS')).toEqual([]);
    expect(r.chains('nat').filter((c) => /^KUBE-(SVC|SVL|EXT|FW|SEP)-/.test(c))).toEqual([]);
  });

  it('counts only terminating-but-not-serving endpoints as none', () => {
    const eps = slice('- {addresses: [10.180.0.1], conditions: {ready: false, serving: false, terminating: true}}\n');
    const r = restoreOf(docs(NODE, CLUSTER_IP_SVC, eps));
    expect(r.rules('filter', 'KUBE-SERVICES')).toEqual([
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j REJECT',
    ]);
  });

  it('uses serving-terminating endpoints when none is ready', () => {
    const eps = slice(
      '- {addresses: [10.180.0.1], conditions: {ready: false, serving: true, terminating: true}}\n- {addresses: [10.180.0.2], conditions: {ready: false, serving: false, terminating: true}}\n',
    );
    const r = restoreOf(docs(NODE, CLUSTER_IP_SVC, eps));
    expect(r.rules('filter', 'KUBE-SERVICES')).toEqual([]);
    expect(r.rules('nat', SVC).slice(1)).toEqual([`-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j ${SEP1}`]);
    expect(r.chains('nat')).not.toContain(sep('10.180.0.2:80'));
  });
});

describe('external traffic (reference §1.6–§1.10)', () => {
  const NP_CLUSTER = svc(
    '  type: NodePort\n  clusterIP: 172.30.0.41\n  externalIPs: [192.168.99.22]\n  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30080}]\n',
  );

  it('eTP Cluster: external IP and NodePort go through KUBE-EXT, which masquerades', () => {
    const r = restoreOf(docs(NODE, NP_CLUSTER, ONE_EP));
    expect(r.rules('nat', 'KUBE-SERVICES')).toEqual([
      CLUSTER_IP_RULE,
      `-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j ${EXT}`,
      `-A KUBE-SERVICES ${LAST_COMMENT} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`,
    ]);
    expect(r.rules('nat', 'KUBE-NODEPORTS')).toEqual([
      `-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 30080 -j ${EXT}`,
    ]);
    expect(r.rules('nat', EXT)).toEqual([
      `-A ${EXT} -m comment --comment "masquerade traffic for ns1/svc1:p80 external destinations" -j KUBE-MARK-MASQ`,
      `-A ${EXT} -j ${SVC}`,
    ]);
    expect(r.all('filter').filter((l) => l.includes('ns1/svc1'))).toEqual([]);
  });

  it('NodePort with nfacct and localhost NodePorts: the extra 127.0.0.0/8 rule first', () => {
    const r = restoreOf(docs(NODE, NP_CLUSTER, ONE_EP), { nfacct: true });
    expect(r.rules('nat', 'KUBE-NODEPORTS')).toEqual([
      `-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 30080 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j ${EXT}`,
      `-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 30080 -j ${EXT}`,
    ]);
  });

  it('a NodePort-type Service without a node port number has no KUBE-NODEPORTS rule', () => {
    const np = svc('  type: NodePort\n  clusterIP: 172.30.0.41\n  ports: [{name: p80, port: 80, protocol: TCP}]\n');
    const r = restoreOf(docs(NODE, np, ONE_EP));
    expect(r.rules('nat', 'KUBE-NODEPORTS')).toEqual([]);
    expect(r.chains('nat')).not.toContain(EXT);
  });

  it('eTP Local with a local endpoint: short-circuit rules then the jump to KUBE-SVL', () => {
    const np = svc(
      '  type: NodePort\n  clusterIP: 172.30.0.41\n  externalTrafficPolicy: Local\n  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30080}]\n',
    );
    const eps = slice('- {addresses: [10.180.0.1], nodeName: node2}\n- {addresses: [10.180.0.2], nodeName: test-node}\n');
    const r = restoreOf(docs(NODE, np, eps));
    const sep2 = sep('10.180.0.2:80');
    expect(r.rules('nat', EXT)).toEqual([
      `-A ${EXT} -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -s 10.0.0.0/8 -j ${SVC}`,
      `-A ${EXT} -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ`,
      `-A ${EXT} -m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j ${SVC}`,
      `-A ${EXT} -j ${SVL}`,
    ]);
    expect(r.rules('nat', SVL)).toEqual([`-A ${SVL} -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j ${sep2}`]);
    expect(r.rules('nat', SVC)).toEqual([
      `${MASQ_RULE_PREFIX} ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ`,
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j ${SEP1}`,
      `-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j ${sep2}`,
    ]);
    expect(r.all('filter').filter((l) => l.includes('ns1/svc1'))).toEqual([]);
  });

  it('eTP Local with the no-op detector: no "pod traffic" rule', () => {
    const np = svc(
      '  type: NodePort\n  clusterIP: 172.30.0.41\n  externalTrafficPolicy: Local\n  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30080}]\n',
    );
    const eps = slice('- {addresses: [10.180.0.1], nodeName: test-node}\n');
    const r = restoreOf(docs(NODE, np, eps), { clusterCIDRs: [] });
    expect(r.rules('nat', EXT)).toEqual([
      `-A ${EXT} -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ`,
      `-A ${EXT} -m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j ${SVC}`,
      `-A ${EXT} -j ${SVL}`,
    ]);
    expect(r.rules('nat', SVC)).toEqual([`-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j ${SEP1}`]);
  });

  it('eTP Local without local endpoints: DROP external frontends, no SVL chain, no EXT tail jump', () => {
    const lb = svc(
      `  type: LoadBalancer
  clusterIP: 172.30.0.41
  externalIPs: [192.168.99.22]
  externalTrafficPolicy: Local
  healthCheckNodePort: 30000
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3001}]
`,
      { status: '  loadBalancer: {ingress: [{ip: 1.2.3.4}]}\n' },
    );
    const r = restoreOf(docs(NODE, lb, ONE_EP));
    expect(r.rules('filter', 'KUBE-EXTERNAL-SERVICES')).toEqual([
      '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no local endpoints" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j DROP',
      '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no local endpoints" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP',
      '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP',
    ]);
    expect(r.rules('filter', 'KUBE-NODEPORTS')).toEqual([
      '-A KUBE-NODEPORTS -m comment --comment "ns1/svc1:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT',
    ]);
    expect(r.rules('filter', 'KUBE-SERVICES')).toEqual([]);
    expect(r.chains('nat')).not.toContain(SVL);
    expect(r.rules('nat', EXT)).toEqual([
      `-A ${EXT} -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -s 10.0.0.0/8 -j ${SVC}`,
      `-A ${EXT} -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ`,
      `-A ${EXT} -m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j ${SVC}`,
    ]);
    // the frontends still lead to KUBE-EXT (hasEndpoints, not hasExternal)
    expect(r.rules('nat', 'KUBE-SERVICES')).toEqual([
      CLUSTER_IP_RULE,
      `-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j ${EXT}`,
      `-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j ${EXT}`,
      `-A KUBE-SERVICES ${LAST_COMMENT} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`,
    ]);
    expect(r.rules('nat', 'KUBE-NODEPORTS')).toEqual([
      `-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j ${EXT}`,
    ]);
  });

  it('healthCheckNodePort ACCEPT is written with local endpoints too', () => {
    const lb = svc(
      '  type: LoadBalancer\n  clusterIP: 172.30.0.41\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 30000\n  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 3001}]\n',
    );
    const eps = slice('- {addresses: [10.180.0.1], nodeName: test-node}\n');
    const r = restoreOf(docs(NODE, lb, eps));
    expect(r.rules('filter', 'KUBE-NODEPORTS')).toEqual([
      '-A KUBE-NODEPORTS -m comment --comment "ns1/svc1:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT',
    ]);
    expect(r.rules('filter', 'KUBE-EXTERNAL-SERVICES')).toEqual([]);
  });

  it('eTP Local: duplicate endpoint across slices, the local copy wins', () => {
    const np = svc(
      '  type: NodePort\n  clusterIP: 172.30.0.41\n  externalTrafficPolicy: Local\n  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30080}]\n',
    );
    const a = slice('- {addresses: [10.180.0.1], nodeName: test-node}\n', { name: 'svc1-a' });
    const b = slice('- {addresses: [10.180.0.1], nodeName: node2}\n', { name: 'svc1-b' });
    for (const order of [docs(NODE, np, a, b), docs(NODE, np, b, a)]) {
      const r = restoreOf(order);
      expect(r.rules('nat', SVL)).toEqual([`-A ${SVL} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j ${SEP1}`]);
      expect(r.rules('nat', SVC).slice(1)).toEqual([`-A ${SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j ${SEP1}`]);
      expect(r.rules('nat', EXT)[3]).toBe(`-A ${EXT} -j ${SVL}`);
      expect(r.rules('nat', SEP1)).toHaveLength(2);
    }
  });

  it('ignores LB ingress IPs with ipMode Proxy', () => {
    const lb = svc('  type: LoadBalancer\n  clusterIP: 172.30.0.41\n  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30080}]\n', {
      status: '  loadBalancer: {ingress: [{ip: 1.2.3.4, ipMode: Proxy}, {ip: 5.6.7.8, ipMode: VIP}]}\n',
    });
    const r = restoreOf(docs(NODE, lb, ONE_EP));
    expect(r.rules('nat', 'KUBE-SERVICES')).toEqual([
      CLUSTER_IP_RULE,
      `-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j ${EXT}`,
      `-A KUBE-SERVICES ${LAST_COMMENT} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`,
    ]);
    expect(r.text).not.toContain('1.2.3.4');
  });
});

describe('loadBalancerSourceRanges (reference §1.7)', () => {
  const lbWith = (ranges: string): string =>
    svc(
      `  type: LoadBalancer\n  clusterIP: 172.30.0.41\n  loadBalancerSourceRanges: [${ranges}]\n  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30080}]\n`,
      { status: '  loadBalancer: {ingress: [{ip: 5.6.7.8}]}\n' },
    );

  it('sends LB traffic through KUBE-FW, backed by a KUBE-PROXY-FIREWALL DROP', () => {
    const r = restoreOf(docs(NODE, lbWith('" 203.0.113.5/25"'), ONE_EP));
    expect(r.rules('nat', 'KUBE-SERVICES')[1]).toBe(
      `-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j ${FW}`,
    );
    expect(r.rules('nat', FW)).toEqual([
      `-A ${FW} -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 203.0.113.0/25 -j ${EXT}`,
      `-A ${FW} -m comment --comment "other traffic to ns1/svc1:p80 will be dropped by KUBE-PROXY-FIREWALL"`,
    ]);
    expect(r.rules('filter', 'KUBE-PROXY-FIREWALL')).toEqual([
      `-A KUBE-PROXY-FIREWALL -m comment --comment "ns1/svc1:p80 traffic not accepted by ${FW}" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP`,
    ]);
    // NodePorts are not subject to source ranges
    expect(r.rules('nat', 'KUBE-NODEPORTS')).toEqual([
      `-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 30080 -j ${EXT}`,
    ]);
  });

  it('adds "-s <lbIP>" when a source range contains the node IP', () => {
    const r = restoreOf(docs(NODE, lbWith('203.0.113.0/25, 192.168.0.0/24'), ONE_EP));
    expect(r.rules('nat', FW)).toEqual([
      `-A ${FW} -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 203.0.113.0/25 -j ${EXT}`,
      `-A ${FW} -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 192.168.0.0/24 -j ${EXT}`,
      `-A ${FW} -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 5.6.7.8 -j ${EXT}`,
      `-A ${FW} -m comment --comment "other traffic to ns1/svc1:p80 will be dropped by KUBE-PROXY-FIREWALL"`,
    ]);
  });

  it('no FW chain without LB ingress IPs', () => {
    const np = svc(
      '  type: LoadBalancer\n  clusterIP: 172.30.0.41\n  loadBalancerSourceRanges: [203.0.113.0/25]\n  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30080}]\n',
    );
    const r = restoreOf(docs(NODE, np, ONE_EP));
    expect(r.chains('nat')).not.toContain(FW);
    expect(r.rules('filter', 'KUBE-PROXY-FIREWALL')).toEqual([]);
  });
});

describe('internalTrafficPolicy Local (reference §1.4, §1.5)', () => {
  const ITP = svc('  clusterIP: 172.30.0.41\n  internalTrafficPolicy: Local\n  ports: [{name: p80, port: 80, protocol: TCP}]\n');

  it('no local endpoint: filter DROP "has no local endpoints", no nat chains', () => {
    const r = restoreOf(docs(NODE, ITP, ONE_EP));
    expect(r.rules('filter', 'KUBE-SERVICES')).toEqual([
      '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 has no local endpoints" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j DROP',
    ]);
    expect(r.rules('nat', 'KUBE-SERVICES')).toEqual([`-A KUBE-SERVICES ${LAST_COMMENT} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`]);
    expect(r.chains('nat').filter((c) => /^KUBE-(SVC|SVL|EXT|FW|SEP)-/.test(c))).toEqual([]);
  });

  it('with a local endpoint: cluster IP jumps to KUBE-SVL, which holds the masquerade rule', () => {
    const eps = slice('- {addresses: [10.180.0.1], nodeName: test-node}\n- {addresses: [10.180.0.2], nodeName: node2}\n');
    const r = restoreOf(docs(NODE, ITP, eps));
    expect(r.rules('nat', 'KUBE-SERVICES')[0]).toBe(
      `-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j ${SVL}`,
    );
    expect(r.rules('nat', SVL)).toEqual([
      `-A ${SVL} -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ`,
      `-A ${SVL} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j ${SEP1}`,
    ]);
    expect(r.chains('nat')).not.toContain(SVC);
    expect(r.chains('nat')).not.toContain(sep('10.180.0.2:80'));
    expect(r.rules('filter', 'KUBE-SERVICES')).toEqual([]);
  });
});

describe('compiled metadata', () => {
  it('counts service ports with no local endpoints per direction', () => {
    const itp = svc('  clusterIP: 172.30.0.41\n  internalTrafficPolicy: Local\n  ports: [{name: p80, port: 80, protocol: TCP}]\n');
    const etp = svc(
      '  type: NodePort\n  clusterIP: 172.30.0.42\n  externalTrafficPolicy: Local\n  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30080}]\n',
      { name: 'svc2' },
    );
    const eps2 = slice('- {addresses: [10.180.0.2], nodeName: node2}\n', { service: 'svc2' });
    const [compiled] = compileYaml(docs(NODE, itp, ONE_EP, etp, eps2));
    expect(compiled?.noLocalEndpoints).toEqual({ internal: 1, external: 1 });
  });
});
