import { describe, expect, it } from 'vitest';
import { buildProxyModels, classifyObjects, type BuildOptions, type ProxyModels } from './cluster.ts';
import { decodeDocuments } from './documents.ts';
import { formatProblem, type Problem } from './problem.ts';
import type { FamilyModel } from './proxy-model.ts';

function build(yaml: string, options: BuildOptions = {}): ProxyModels & { classifyProblems: Problem[] } {
  const { state, problems } = classifyObjects(decodeDocuments(yaml, 'cluster.yaml'));
  return { ...buildProxyModels(state, options), classifyProblems: problems };
}

function family(models: ProxyModels, f: 'IPv4' | 'IPv6'): FamilyModel {
  const m = models.families.find((x) => x.family === f);
  if (m === undefined) throw new Error(`no ${f} model`);
  return m;
}

const NODE_V4 = `apiVersion: v1
kind: Node
metadata:
  name: test-node
  labels: {topology.kubernetes.io/zone: zone-a}
status:
  addresses:
  - {type: InternalIP, address: 192.168.0.2}
`;

const NODE_DUAL = `apiVersion: v1
kind: Node
metadata: {name: test-node}
status:
  addresses:
  - {type: InternalIP, address: 192.168.0.2}
  - {type: InternalIP, address: "fd00:1::2"}
`;

const GOOD_SVC = `apiVersion: v1
kind: Service
metadata: {namespace: ns1, name: good}
spec:
  clusterIP: 172.30.0.41
  ports: [{name: p80, port: 80}]
`;

function svcDoc(name: string, spec: string): string {
  return `apiVersion: v1
kind: Service
metadata: {namespace: ns1, name: ${name}}
spec:
${spec}`;
}

const docs = (...parts: string[]): string => parts.join('---\n');

describe('buildProxyModels: invalid Services', () => {
  it('reports one invalid problem naming source, object and field, and drops the whole Service', () => {
    const bad = svcDoc(
      'bad',
      `  clusterIPs: [172.30.0.50, "fd00:ab34::50"]
  clusterIP: 172.30.0.50
  ipFamilies: [IPv4, IPv6]
  ports:
  - {name: a, port: 80}
  - {name: b, port: 70000}
`,
    );
    const models = build(docs(NODE_DUAL, GOOD_SVC, bad));
    expect(models.classifyProblems).toEqual([]);
    expect(models.problems).toHaveLength(1);
    const [problem] = models.problems;
    if (problem === undefined) throw new Error('no problem');
    expect(problem.kind).toBe('invalid');
    expect(problem.source).toBe('cluster.yaml#3');
    expect(problem.object).toBe('Service "ns1/bad"');
    const line = formatProblem(problem);
    expect(line.startsWith('cluster.yaml#3: Service "ns1/bad": spec.ports[1].port: ')).toBe(true);
    expect(line).toContain('70000');
    expect(line.endsWith('; skipped')).toBe(true);
    expect(models.families.map((f) => f.family)).toEqual(['IPv4', 'IPv6']);
    for (const f of models.families) {
      expect(f.servicePorts.filter((sp) => sp.serviceName === 'bad')).toEqual([]);
    }
    expect(family(models, 'IPv4').servicePorts.map((sp) => sp.spn)).toEqual(['ns1/good:p80']);
    expect(models.serviceCount).toBe(1);
  });

  it.each([
    ['protocol ICMP', '  clusterIP: 172.30.0.50\n  ports: [{port: 80, protocol: ICMP}]\n', 'spec.ports[0].protocol', '"ICMP"'],
    ['bad clusterIP', '  clusterIP: 172.30.0.500\n  ports: [{port: 80}]\n', 'spec.clusterIPs[0]', '"172.30.0.500"'],
    [
      'clusterIP family not matching ipFamilies',
      '  clusterIP: 172.30.0.50\n  ipFamilies: [IPv6]\n  ports: [{port: 80}]\n',
      'spec.clusterIPs[0]',
      '"172.30.0.50"',
    ],
    ['bad externalIP', '  clusterIP: 172.30.0.50\n  externalIPs: [192.168.99.x]\n  ports: [{port: 80}]\n', 'spec.externalIPs[0]', '"192.168.99.x"'],
    [
      'bad loadBalancerSourceRanges entry',
      '  type: LoadBalancer\n  clusterIP: 172.30.0.50\n  loadBalancerSourceRanges: [203.0.113.0/25, 203.0.113.0]\n  ports: [{port: 80}]\n',
      'spec.loadBalancerSourceRanges[1]',
      '"203.0.113.0"',
    ],
    [
      'affinity timeout 0',
      '  clusterIP: 172.30.0.50\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n  ports: [{port: 80}]\n',
      'spec.sessionAffinityConfig.clientIP.timeoutSeconds',
      '0',
    ],
    [
      'affinity timeout 86401',
      '  clusterIP: 172.30.0.50\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}\n  ports: [{port: 80}]\n',
      'spec.sessionAffinityConfig.clientIP.timeoutSeconds',
      '86401',
    ],
    [
      'duplicate port names',
      '  clusterIP: 172.30.0.50\n  ports: [{name: web, port: 80}, {name: web, port: 81}]\n',
      'spec.ports[1].name',
      '"web"',
    ],
    ['multi-port without names', '  clusterIP: 172.30.0.50\n  ports: [{port: 80}, {port: 81}]\n', 'spec.ports[0].name', 'more than one port'],
  ])('%s → one invalid problem for the field, no service port', (_label, spec, field, value) => {
    const models = build(docs(NODE_V4, GOOD_SVC, svcDoc('bad', spec)));
    expect(models.problems).toHaveLength(1);
    const [problem] = models.problems;
    if (problem === undefined) throw new Error('no problem');
    expect(problem.kind).toBe('invalid');
    const line = formatProblem(problem);
    expect(line.startsWith(`cluster.yaml#3: Service "ns1/bad": ${field}`)).toBe(true);
    expect(line).toContain(value);
    expect(line.endsWith('; skipped')).toBe(true);
    for (const f of models.families) expect(f.servicePorts.map((sp) => sp.serviceName)).toEqual(['good']);
  });

  it('reports a bad EndpointSlice address and uses none of its endpoints', () => {
    const slice = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: ns1, name: good-abc, labels: {kubernetes.io/service-name: good}}
addressType: IPv4
ports: [{name: p80, port: 80}]
endpoints:
- addresses: [10.180.0.1]
- addresses: ["fd00::1"]
`;
    const models = build(docs(NODE_V4, GOOD_SVC, slice));
    expect(models.problems).toHaveLength(1);
    const [problem] = models.problems;
    if (problem === undefined) throw new Error('no problem');
    expect(formatProblem(problem)).toBe(
      'cluster.yaml#3: EndpointSlice "ns1/good-abc": endpoints[1].addresses[0]: "fd00::1" is not a valid IPv4 address; skipped',
    );
    expect(family(models, 'IPv4').endpoints.size).toBe(0);
    expect(models.endpointSliceCount).toBe(0);
  });

  it('reports an invalid KubeProxyConfiguration and keeps the defaults', () => {
    const cfg = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
clusterCIDR: 10.0.0.0/8
`;
    const models = build(docs(NODE_V4, cfg));
    expect(models.problems).toHaveLength(1);
    const [problem] = models.problems;
    if (problem === undefined) throw new Error('no problem');
    expect(problem.kind).toBe('invalid');
    expect(formatProblem(problem)).toContain('KubeProxyConfiguration');
    expect(formatProblem(problem)).toContain('mode: "ipvs"');
    expect(models.config.clusterCIDRs).toEqual([]);
  });
});

describe('buildProxyModels: ignored objects', () => {
  it('reports ignored Services (headless, ExternalName, other proxy) with "; ignored"', () => {
    const models = build(
      docs(
        NODE_V4,
        svcDoc('headless', '  clusterIP: None\n  ports: [{port: 80}]\n'),
        svcDoc('ext', '  type: ExternalName\n  externalName: example.com\n'),
        `apiVersion: v1
kind: Service
metadata: {namespace: ns1, name: other, labels: {service.kubernetes.io/service-proxy-name: other}}
spec: {clusterIP: 172.30.0.9, ports: [{port: 80}]}
`,
      ),
    );
    expect(models.problems.map((p) => p.kind)).toEqual(['ignored', 'ignored', 'ignored']);
    expect(models.problems.map((p) => p.object)).toEqual(['Service "ns1/headless"', 'Service "ns1/ext"', 'Service "ns1/other"']);
    for (const p of models.problems) expect(formatProblem(p).endsWith('; ignored')).toBe(true);
    expect(family(models, 'IPv4').servicePorts).toEqual([]);
  });

  it('uses a Service labelled with the configured service-proxy-name', () => {
    const yaml = docs(
      NODE_V4,
      `apiVersion: v1
kind: Service
metadata: {namespace: ns1, name: mine, labels: {service.kubernetes.io/service-proxy-name: kpx}}
spec: {clusterIP: 172.30.0.9, ports: [{port: 80}]}
`,
    );
    expect(family(build(yaml, { overrides: { serviceProxyName: 'kpx' } }), 'IPv4').servicePorts.map((s) => s.spn)).toEqual(['ns1/mine']);
    expect(family(build(yaml), 'IPv4').servicePorts).toEqual([]);
  });

  it('uses the EndpointSlices of a Service labelled with the configured service-proxy-name', () => {
    // The EndpointSlice controller copies the Service's labels (service-proxy-name included) to
    // its slices; the reference (§1.0) drops only headless-labelled slices.
    const yaml = docs(
      NODE_V4,
      `apiVersion: v1
kind: Service
metadata: {namespace: ns1, name: mine, labels: {service.kubernetes.io/service-proxy-name: kpx}}
spec: {clusterIP: 172.30.0.9, ports: [{name: p80, port: 80}]}
`,
      `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: ns1, name: mine-x, labels: {kubernetes.io/service-name: mine, service.kubernetes.io/service-proxy-name: kpx}}
addressType: IPv4
ports: [{name: p80, port: 80}]
endpoints: [{addresses: [10.0.0.5]}]
`,
    );
    const models = build(yaml, { overrides: { serviceProxyName: 'kpx' } });
    expect(models.problems).toEqual([]);
    const eps = family(models, 'IPv4').endpoints.get('ns1/mine:p80/TCP') ?? [];
    expect(eps.map((e) => e.endpoint)).toEqual(['10.0.0.5:80']);
  });

  it('classifyObjects ignores other kinds and other apiVersions', () => {
    const { state, problems } = classifyObjects(
      decodeDocuments(
        docs(
          'apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: ns1, name: cm}\n',
          'apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {namespace: ns1, name: s}\naddressType: IPv4\n',
          GOOD_SVC,
        ),
        'in.yaml',
      ),
    );
    expect(state.services).toHaveLength(1);
    expect(state.endpointSlices).toHaveLength(0);
    expect(problems.map((p) => [p.kind, p.source, p.object])).toEqual([
      ['ignored', 'in.yaml#1', 'ConfigMap "ns1/cm"'],
      ['ignored', 'in.yaml#2', 'EndpointSlice "ns1/s"'],
    ]);
    expect(problems[1]?.message).toContain('discovery.k8s.io/v1beta1');
  });

  it('expands a kind: List and names items by index', () => {
    const objects = decodeDocuments(
      'apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {namespace: ns1, name: a}, spec: {clusterIP: 172.30.0.1, ports: [{port: 80}]}}\n- {apiVersion: v1, kind: Service, metadata: {namespace: ns1, name: b}, spec: {clusterIP: 172.30.0.2, ports: [{port: 70000}]}}\n',
      'list.yaml',
    );
    expect(objects.map((o) => o.source)).toEqual(['list.yaml.items[0]', 'list.yaml.items[1]']);
    const { state } = classifyObjects(objects);
    const models = buildProxyModels(state);
    expect(models.problems.map(formatProblem)).toEqual([
      'list.yaml.items[1]: Service "ns1/b": spec.ports[0].port: 70000 is out of range (1-65535); skipped',
    ]);
    expect(family(models, 'IPv4').servicePorts.map((s) => s.spn)).toEqual(['ns1/a']);
  });

  it('reports ignored slices (no service-name label, FQDN)', () => {
    const models = build(
      docs(
        NODE_V4,
        'apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {namespace: ns1, name: orphan}\naddressType: IPv4\n',
        'apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {namespace: ns1, name: fq, labels: {kubernetes.io/service-name: good}}\naddressType: FQDN\nendpoints: [{addresses: [a.example.com]}]\n',
      ),
    );
    expect(models.problems.map((p) => [p.kind, p.object])).toEqual([
      ['ignored', 'EndpointSlice "ns1/orphan"'],
      ['ignored', 'EndpointSlice "ns1/fq"'],
    ]);
  });
});

describe('buildProxyModels: configuration and node context', () => {
  it('defaults: mark 0x00004000, ClusterCIDR mode without CIDR → no-op detector, all node-port addresses', () => {
    const m = family(build(NODE_V4), 'IPv4');
    expect(m.node.masqueradeMark).toBe('0x00004000');
    expect(m.node.detector).toEqual({ kind: 'none' });
    expect(m.node.nodePortAddresses).toBe('all');
    expect(m.node.localhostNodePorts).toBe(true);
    expect(m.node.name).toBe('test-node');
    expect(m.node.zone).toBe('zone-a');
    expect(m.node.primaryIP).toBe('192.168.0.2');
    expect(m.node.localIPs).toEqual(['192.168.0.2']);
  });

  it('reads the KubeProxyConfiguration; flags override it', () => {
    const cfg = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clusterCIDR: 10.0.0.0/8,fd00:10::/64
iptables: {masqueradeBit: 3, masqueradeAll: true}
`;
    const models = build(docs(NODE_DUAL, cfg));
    expect(models.problems).toEqual([]);
    expect(family(models, 'IPv4').node.detector).toEqual({ kind: 'cidr', cidr: '10.0.0.0/8' });
    expect(family(models, 'IPv6').node.detector).toEqual({ kind: 'cidr', cidr: 'fd00:10::/64' });
    expect(family(models, 'IPv4').node.masqueradeMark).toBe('0x00000008');
    expect(family(models, 'IPv4').node.masqueradeAll).toBe(true);
    const overridden = build(docs(NODE_DUAL, cfg), { overrides: { masqueradeBit: 0, masqueradeAll: false } });
    expect(family(overridden, 'IPv4').node.masqueradeMark).toBe('0x00000001');
    expect(family(overridden, 'IPv4').node.masqueradeAll).toBe(false);
    expect(family(build(NODE_V4, { masqueradeMark: '0x4000' }), 'IPv4').node.masqueradeMark).toBe('0x4000');
  });

  it('builds one model per node family; IPv6 never has localhost NodePorts', () => {
    const models = build(NODE_DUAL);
    expect(models.families.map((f) => f.family)).toEqual(['IPv4', 'IPv6']);
    expect(family(models, 'IPv4').node.localhostNodePorts).toBe(true);
    expect(family(models, 'IPv6').node.localhostNodePorts).toBe(false);
    expect(family(models, 'IPv6').node.primaryIP).toBe('fd00:1::2');
    expect(build(NODE_DUAL, { overrides: { ipFamily: 'IPv6' } }).families.map((f) => f.family)).toEqual(['IPv6']);
  });

  it('NodeCIDR mode uses the Node pod CIDR of the family', () => {
    const node = `apiVersion: v1
kind: Node
metadata: {name: test-node}
spec: {podCIDRs: [10.244.1.0/24, "fd00:10:244:1::/64"]}
status: {addresses: [{type: InternalIP, address: 192.168.0.2}, {type: InternalIP, address: "fd00:1::2"}]}
`;
    const models = build(node, { overrides: { detectLocalMode: 'NodeCIDR' } });
    expect(family(models, 'IPv4').node.detector).toEqual({ kind: 'cidr', cidr: '10.244.1.0/24' });
    expect(family(models, 'IPv6').node.detector).toEqual({ kind: 'cidr', cidr: 'fd00:10:244:1::/64' });
  });

  it('interface detectors: BridgeInterface and InterfaceNamePrefix (with "+")', () => {
    const bridge = build(NODE_V4, { overrides: { detectLocalMode: 'BridgeInterface', bridgeInterface: 'br0' } });
    expect(family(bridge, 'IPv4').node.detector).toEqual({ kind: 'interface', name: 'br0' });
    const prefix = build(NODE_V4, { overrides: { detectLocalMode: 'InterfaceNamePrefix', interfaceNamePrefix: 'veth' } });
    expect(family(prefix, 'IPv4').node.detector).toEqual({ kind: 'interface', name: 'veth+' });
  });

  it('reports BridgeInterface without a bridge as an invalid configuration', () => {
    const models = build(NODE_V4, { overrides: { detectLocalMode: 'BridgeInterface' } });
    expect(models.problems.map((p) => [p.kind, p.object])).toEqual([['invalid', 'proxy configuration']]);
    expect(models.problems.map(formatProblem).join('\n')).toContain('detectLocal.bridgeInterface');
  });

  it('explicit nodePortAddresses: the local IPs inside the CIDRs, loopback only with localhost NodePorts', () => {
    const overrides = { nodeIPs: ['192.168.0.2', '10.1.0.5'], nodePortAddresses: ['192.168.0.0/24', '127.0.0.0/8'] };
    expect(family(build(NODE_V4, { overrides }), 'IPv4').node.nodePortAddresses).toEqual(['192.168.0.2', '127.0.0.1']);
    expect(family(build(NODE_V4, { overrides: { ...overrides, localhostNodePorts: false } }), 'IPv4').node.nodePortAddresses).toEqual([
      '192.168.0.2',
    ]);
    // without loopback in the CIDRs, localhost NodePorts are off (no KUBE-FIREWALL, reference §1.0/§1.3)
    const noLoop = family(build(NODE_V4, { overrides: { ...overrides, nodePortAddresses: ['10.0.0.0/8'] } }), 'IPv4');
    expect(noLoop.node.nodePortAddresses).toEqual(['10.1.0.5']);
    expect(noLoop.node.localhostNodePorts).toBe(false);
    // a zero CIDR means "all"
    expect(family(build(NODE_V4, { overrides: { nodePortAddresses: ['0.0.0.0/0'] } }), 'IPv4').node.nodePortAddresses).toBe('all');
  });

  it('explicit nodePortAddresses for IPv6 skip ::1', () => {
    const m = family(build(NODE_DUAL, { overrides: { nodePortAddresses: ['fd00:1::/64', '::1/128'] } }), 'IPv6');
    expect(m.node.nodePortAddresses).toEqual(['fd00:1::2']);
    // the IPv4 family has no CIDR of its own: all addresses
    expect(family(build(NODE_DUAL, { overrides: { nodePortAddresses: ['fd00:1::/64'] } }), 'IPv4').node.nodePortAddresses).toBe('all');
  });

  it('nodePortAddresses "primary" is the primary node IP', () => {
    const m = family(build(NODE_V4, { overrides: { nodeIPs: ['192.168.0.2', '192.168.0.3'], nodePortAddresses: ['primary'] } }), 'IPv4');
    expect(m.node.nodePortAddresses).toEqual(['192.168.0.2']);
  });

  it('picks the first Node, notes the choice when there are several, honours --node-name', () => {
    const two = docs(NODE_V4, 'apiVersion: v1\nkind: Node\nmetadata: {name: other-node}\nstatus: {addresses: [{type: InternalIP, address: 192.168.0.3}]}\n');
    const models = build(two);
    expect(models.config.nodeName).toBe('test-node');
    expect(models.problems.map((p) => p.kind)).toEqual(['note']);
    const chosen = build(two, { overrides: { nodeName: 'other-node' } });
    expect(family(chosen, 'IPv4').node.primaryIP).toBe('192.168.0.3');
    expect(chosen.problems).toEqual([]);
  });
});

describe('buildProxyModels: service ports and endpoints', () => {
  it('splits a dual-stack Service per family with family-filtered external addresses', () => {
    const svc = svcDoc(
      'dual',
      `  type: LoadBalancer
  clusterIPs: [172.30.0.50, "fd00:ab34::50"]
  ipFamilies: [IPv4, IPv6]
  externalIPs: [192.168.99.22, "2001:db8::22"]
  loadBalancerSourceRanges: [203.0.113.0/25, "2001:db8:1::/48"]
  ports: [{name: p80, port: 80, nodePort: 30080}]
status: {loadBalancer: {ingress: [{ip: 1.2.3.4}, {ip: "2001:db8::4"}]}}
`,
    );
    const models = build(docs(NODE_DUAL, svc));
    const v4 = family(models, 'IPv4').servicePorts[0];
    const v6 = family(models, 'IPv6').servicePorts[0];
    expect(v4).toMatchObject({
      key: 'ns1/dual:p80/TCP',
      spn: 'ns1/dual:p80',
      clusterIP: '172.30.0.50',
      externalIPs: ['192.168.99.22'],
      loadBalancerIPs: ['1.2.3.4'],
      loadBalancerSourceRanges: ['203.0.113.0/25'],
      nodePort: 30080,
    });
    expect(v6).toMatchObject({
      clusterIP: 'fd00:ab34::50',
      externalIPs: ['2001:db8::22'],
      loadBalancerIPs: ['2001:db8::4'],
      loadBalancerSourceRanges: ['2001:db8:1::/48'],
    });
  });

  it('an IPv6-only Service contributes nothing to the IPv4 model', () => {
    const models = build(docs(NODE_DUAL, svcDoc('v6', '  clusterIP: "fd00:ab34::9"\n  ports: [{port: 80}]\n')));
    expect(family(models, 'IPv4').servicePorts).toEqual([]);
    expect(family(models, 'IPv6').servicePorts.map((s) => s.clusterIP)).toEqual(['fd00:ab34::9']);
  });

  it.each([
    ['LoadBalancer', 'Local', 30000],
    ['NodePort', 'Local', 0],
    ['LoadBalancer', 'Cluster', 0],
  ])('healthCheckNodePort for type %s eTP %s → %i', (type, etp, expected) => {
    const svc = svcDoc(
      's',
      `  type: ${type}\n  clusterIP: 172.30.0.50\n  externalTrafficPolicy: ${etp}\n  healthCheckNodePort: 30000\n  ports: [{port: 80, nodePort: 30080}]\n`,
    );
    expect(family(build(docs(NODE_V4, svc)), 'IPv4').servicePorts[0]?.healthCheckNodePort).toBe(expected);
  });

  it('externalPolicyLocal needs an externally accessible type (or external IPs)', () => {
    const plain = svcDoc('a', '  clusterIP: 172.30.0.50\n  externalTrafficPolicy: Local\n  ports: [{port: 80}]\n');
    const withExt = svcDoc('b', '  clusterIP: 172.30.0.51\n  externalTrafficPolicy: Local\n  externalIPs: [192.168.99.1]\n  ports: [{port: 80}]\n');
    const ports = family(build(docs(NODE_V4, plain, withExt)), 'IPv4').servicePorts;
    expect(ports.map((p) => [p.spn, p.externalPolicyLocal])).toEqual([
      ['ns1/a', false],
      ['ns1/b', true],
    ]);
  });

  it('sorts endpoints by plain string order and dedups across slices (a local copy wins)', () => {
    const svc = svcDoc('web', '  clusterIP: 172.30.0.50\n  ports: [{name: http, port: 80}]\n');
    const slice = (name: string, eps: string): string => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: ns1, name: ${name}, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}, {name: http, port: 9090, protocol: UDP}, {name: other, port: 7070}]
endpoints:
${eps}`;
    const a = slice('web-a', '- {addresses: [10.0.0.2], nodeName: test-node}\n- {addresses: [10.0.0.10], nodeName: other}\n');
    const b = slice('web-b', '- {addresses: [10.0.0.2], nodeName: other}\n- {addresses: [10.0.0.10], nodeName: test-node}\n- {addresses: [10.0.0.1]}\n');
    const m = family(build(docs(NODE_V4, svc, a, b)), 'IPv4');
    const eps = m.endpoints.get('ns1/web:http/TCP') ?? [];
    // plain string order: "10.0.0.10:8080" < "10.0.0.1:8080" ('0' < ':') < "10.0.0.2:8080"
    expect(eps.map((e) => [e.endpoint, e.isLocal])).toEqual([
      ['10.0.0.10:8080', true],
      ['10.0.0.1:8080', false],
      ['10.0.0.2:8080', true],
    ]);
    expect([...m.endpoints.keys()]).toEqual(['ns1/web:http/TCP']);
  });

  it('switches to large-cluster mode above 1000 endpoints in total', () => {
    const svc = (n: number): string => svcDoc(`s${String(n)}`, `  clusterIP: 172.30.1.${String(n)}\n  ports: [{port: 80}]\n`);
    const slice = (n: number, count: number, notReady = false): string => {
      const eps: string[] = [];
      const cond = notReady ? ', conditions: {ready: false, serving: false}' : '';
      for (let i = 0; i < count; i++) eps.push(`- {addresses: [10.${String(n)}.${String(Math.floor(i / 250))}.${String((i % 250) + 1)}]${cond}}`);
      return `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {namespace: ns1, name: s${String(n)}-x, labels: {kubernetes.io/service-name: s${String(n)}}}
addressType: IPv4
ports: [{name: "", port: 80}]
endpoints:
${eps.join('\n')}
`;
    };
    const at1000 = family(build(docs(NODE_V4, svc(1), svc(2), slice(1, 600), slice(2, 400))), 'IPv4');
    expect(at1000.largeClusterMode).toBe(false);
    const at1001 = family(build(docs(NODE_V4, svc(1), svc(2), slice(1, 600), slice(2, 401))), 'IPv4');
    expect(at1001.largeClusterMode).toBe(true);
    // every endpoint counts, ready or not (reference §4.4)
    const notReady = family(build(docs(NODE_V4, svc(1), svc(2), slice(1, 600), slice(2, 401, true))), 'IPv4');
    expect(notReady.largeClusterMode).toBe(true);
    // endpoints of a Service kpx does not know do not count
    const unknown = family(build(docs(NODE_V4, svc(1), slice(1, 600), slice(2, 401))), 'IPv4');
    expect(unknown.largeClusterMode).toBe(false);
  });

  it('a later object with the same name replaces an earlier one', () => {
    const first = svcDoc('web', '  clusterIP: 172.30.0.50\n  ports: [{port: 80}]\n');
    const second = svcDoc('web', '  clusterIP: 172.30.0.51\n  ports: [{port: 81}]\n');
    const ports = family(build(docs(NODE_V4, first, second)), 'IPv4').servicePorts;
    expect(ports.map((p) => [p.clusterIP, p.port])).toEqual([['172.30.0.51', 81]]);
  });
});
