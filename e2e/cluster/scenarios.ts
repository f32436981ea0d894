/**
 * The conformance scenario matrix: each scenario lives in its own namespace (`cf-<name>`) of one
 * shared cluster, creates its pods (rule-only pods: a real netns and address, no server process)
 * and Services, patches statuses, deletes or un-readies pods, then says which EndpointSlice state
 * it waits for and what kube-proxy must have programmed for it (so a scenario that silently
 * exercised nothing cannot pass). The comparison with kpx is in conformance.test.ts.
 *
 * Nodes: node-1 (10.200.0.11, zone-a) and node-2 (10.200.0.12, zone-b); pods of node N get
 * 10.244.N.x. Addresses that are not pods or nodes come from the documentation ranges
 * (192.0.2.0/24 external IPs, 198.51.100.0/24 load-balancer IPs, 203.0.113.0/24 client ranges);
 * no traffic is sent anywhere.
 */
import type { Cluster } from './cluster.ts';
import { createPods, deletePod, setPodReady, type PodSet } from './pods.ts';

export const NODE_1 = 'node-1';
export const NODE_2 = 'node-2';

/** The EndpointSlice state a scenario waits for before the comparison. */
export interface EndpointExpectation {
  readonly service: string;
  /** Endpoints with ready=true. */
  readonly ready: number;
  /** Endpoints with terminating=true (default 0). */
  readonly terminating?: number;
  /** Endpoints with ready=false and serving=false (default 0). */
  readonly notReady?: number;
  /** Every endpoint carries these hints (default: none required). */
  readonly hints?: 'zone' | 'node';
}

/** kube-proxy's rules for one scenario on one node (canonical `table -A CHAIN ...` lines). */
export interface RuleView {
  readonly node: string;
  readonly lines: readonly string[];
}

export interface Scenario {
  /** Short name; the namespace is `cf-<name>`. */
  readonly name: string;
  /** One line for the matrix in docs/conformance.md. */
  readonly title: string;
  readonly setup: (ctx: ScenarioContext) => Promise<void>;
  readonly endpoints: readonly EndpointExpectation[];
  /** What kube-proxy must have programmed on `view.node` for this scenario: returns the broken expectations. */
  readonly expect: (view: RuleView) => string[];
}

export function namespaceOf(scenario: Pick<Scenario, 'name'>): string {
  return `cf-${scenario.name}`;
}

type Json = Readonly<Record<string, unknown>>;

export class ScenarioContext {
  readonly cluster: Cluster;
  readonly namespace: string;

  constructor(cluster: Cluster, namespace: string) {
    this.cluster = cluster;
    this.namespace = namespace;
  }

  /** Rule-only pods `<name>-<i>` placed on `nodes[i]`, labelled app=<name>, Ready unless told. */
  pods(nodes: readonly string[], name = 'web', ready = true): Promise<PodSet> {
    return createPods(this.cluster, { name, namespace: this.namespace, replicas: nodes.length, nodes, serve: false, ready });
  }

  /** Creates Service `name` (default `svc`) with this spec. */
  async service(spec: Json, options: { name?: string; labels?: Record<string, string>; annotations?: Record<string, string> } = {}): Promise<void> {
    await this.cluster.api.create(`/api/v1/namespaces/${this.namespace}/services`, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: {
        name: options.name ?? 'svc',
        namespace: this.namespace,
        ...(options.labels === undefined ? {} : { labels: options.labels }),
        ...(options.annotations === undefined ? {} : { annotations: options.annotations }),
      },
      spec,
    });
  }

  /** Sets status.loadBalancer.ingress through the status subresource (what a cloud controller does). */
  async loadBalancerStatus(ingress: readonly Json[], name = 'svc'): Promise<void> {
    await this.cluster.api.patch(`/api/v1/namespaces/${this.namespace}/services/${name}/status`, { status: { loadBalancer: { ingress } } });
  }

  /** Graceful delete: the pod stays terminating (no kubelet finishes it). */
  async terminate(pod: string): Promise<void> {
    await deletePod(this.cluster, { namespace: this.namespace, name: pod }, { graceful: true });
  }

  async notReady(pod: string): Promise<void> {
    await setPodReady(this.cluster, { namespace: this.namespace, name: pod }, false);
  }

  async endpointSlice(object: Json): Promise<void> {
    await this.cluster.api.create(`/apis/discovery.k8s.io/v1/namespaces/${this.namespace}/endpointslices`, object);
  }
}

// ---- expectation helpers over kube-proxy's lines ----

/** Endpoints (`ip:port`) of the dispatch rules in KUBE-SVC-* (cluster) or KUBE-SVL-* (local) chains. */
function dispatched(view: RuleView, kind: 'SVC' | 'SVL'): string[] {
  const out: string[] = [];
  for (const line of view.lines) {
    const m = new RegExp(`^nat -A KUBE-${kind}-\\S+ .*-> ([0-9.]+:[0-9]+)".* -j KUBE-SEP-`).exec(line);
    if (m?.[1] !== undefined && !line.includes('--rcheck')) out.push(m[1]);
  }
  return out.sort();
}

function onNode(ips: readonly string[], node: string): boolean {
  const prefix = node === NODE_1 ? '10.244.1.' : '10.244.2.';
  return ips.every((ip) => ip.startsWith(prefix));
}

/** A small checker: each failed check adds a message. */
class Checks {
  readonly failures: string[] = [];
  readonly view: RuleView;
  constructor(view: RuleView) {
    this.view = view;
  }
  count(re: RegExp): number {
    return this.view.lines.filter((l) => re.test(l)).length;
  }
  has(re: RegExp, times?: number): this {
    const n = this.count(re);
    if (times === undefined ? n === 0 : n !== times) this.failures.push(`${this.view.node}: expected ${times === undefined ? 'a' : String(times)} rule(s) matching ${String(re)}, found ${String(n)}`);
    return this;
  }
  lacks(re: RegExp): this {
    return this.has(re, 0);
  }
  endpoints(kind: 'SVC' | 'SVL', n: number, where?: string): this {
    const eps = dispatched(this.view, kind);
    if (eps.length !== n) this.failures.push(`${this.view.node}: expected ${String(n)} endpoints in KUBE-${kind}, found ${String(eps.length)} (${eps.join(' ')})`);
    if (where !== undefined && !onNode(eps, where)) this.failures.push(`${this.view.node}: expected only ${where}'s endpoints in KUBE-${kind}, found ${eps.join(' ')}`);
    return this;
  }
  empty(): this {
    if (this.view.lines.length > 0) this.failures.push(`${this.view.node}: expected no rules, found ${String(this.view.lines.length)}: ${this.view.lines.slice(0, 3).join(' | ')}`);
    return this;
  }
  when(node: string, f: (c: this) => void): this {
    if (this.view.node === node) f(this);
    return this;
  }
}

function check(view: RuleView, f: (c: Checks) => void): string[] {
  const c = new Checks(view);
  f(c);
  return c.failures;
}

const http = { name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 } as const;
const selector = { app: 'web' } as const;

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'clusterip',
    title: 'ClusterIP, TCP, named targetPort, 3 endpoints on 2 nodes',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2, NODE_1]);
      await s.service({ type: 'ClusterIP', selector, ports: [{ ...http, targetPort: 'http' }] });
    },
    endpoints: [{ service: 'svc', ready: 3 }],
    expect: (v) => check(v, (c) => c.has(/^nat -A KUBE-SERVICES .*cluster IP.* -j KUBE-SVC-/, 1).endpoints('SVC', 3).lacks(/KUBE-NODEPORTS/)),
  },
  {
    name: 'one-endpoint',
    title: 'ClusterIP with exactly 1 endpoint (no statistic match)',
    setup: async (s) => {
      await s.pods([NODE_2]);
      await s.service({ selector, ports: [http] });
    },
    endpoints: [{ service: 'svc', ready: 1 }],
    expect: (v) => check(v, (c) => c.endpoints('SVC', 1).lacks(/statistic/)),
  },
  {
    name: 'hundred',
    title: 'NodePort with 100 endpoints (50 per node; probabilities 1/100 .. 1/2)',
    setup: async (s) => {
      await s.pods(Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? NODE_1 : NODE_2)));
      await s.service({ type: 'NodePort', selector, ports: [http] });
    },
    endpoints: [{ service: 'svc', ready: 100 }],
    expect: (v) => check(v, (c) => c.endpoints('SVC', 100).has(/^nat -A KUBE-SVC-.* -m statistic --mode random/, 99).has(/^nat -A KUBE-SEP-/, 200)),
  },
  {
    name: 'unnamed-port',
    title: 'ClusterIP with a single unnamed port (service port name `ns/svc` without `:port`)',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ selector, ports: [{ protocol: 'TCP', port: 8000, targetPort: 8080 }] });
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) => check(v, (c) => c.has(/--comment "cf-unnamed-port\/svc cluster IP"/, 2).endpoints('SVC', 2)),
  },
  {
    name: 'nodeport',
    title: 'NodePort, externalTrafficPolicy Cluster',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ type: 'NodePort', selector, ports: [http] });
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) => check(v, (c) => c.has(/^nat -A KUBE-NODEPORTS .* -j KUBE-EXT-/, 1).has(/masquerade traffic for cf-nodeport\/svc:http external/, 1).endpoints('SVC', 2)),
  },
  {
    name: 'multiport',
    title: 'NodePort with TCP 80, UDP 80 and TCP 8443 ports (3 service ports)',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({
        type: 'NodePort',
        selector,
        ports: [http, { name: 'udp', protocol: 'UDP', port: 80, targetPort: 8080 }, { name: 'alt', protocol: 'TCP', port: 8443, targetPort: 8080 }],
      });
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) => check(v, (c) => c.has(/^nat -A KUBE-NODEPORTS /, 3).has(/^nat -A KUBE-SERVICES .*-p udp/, 1).has(/^nat -A KUBE-SEP-/, 12)),
  },
  {
    name: 'udp',
    title: 'NodePort with a UDP port only',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ type: 'NodePort', selector, ports: [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 8080 }] });
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) => check(v, (c) => c.has(/^nat -A KUBE-NODEPORTS -p udp .*--dport/, 1).has(/-j DNAT --to-destination 10\.244\.\d+\.\d+:8080/, 2).lacks(/-p tcp/)),
  },
  {
    name: 'sctp',
    title: 'NodePort with an SCTP port',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ type: 'NodePort', selector, ports: [{ name: 'sctp', protocol: 'SCTP', port: 9999, targetPort: 9999 }] });
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) => check(v, (c) => c.has(/^nat -A KUBE-NODEPORTS -p sctp .*--dport/, 1).has(/^nat -A KUBE-SEP-\S+ -p sctp .* -j DNAT/, 2)),
  },
  {
    name: 'lb',
    title: 'LoadBalancer, externalTrafficPolicy Cluster, 2 ingress IPs (status subresource)',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ type: 'LoadBalancer', selector, ports: [http] });
      await s.loadBalancerStatus([{ ip: '198.51.100.10' }, { ip: '198.51.100.11' }]);
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) => check(v, (c) => c.has(/^nat -A KUBE-SERVICES -d 198\.51\.100\.1[01]\/32 .*loadbalancer IP.* -j KUBE-EXT-/, 2).has(/^nat -A KUBE-NODEPORTS /, 1).lacks(/KUBE-FW-/)),
  },
  {
    name: 'lb-local',
    title: 'LoadBalancer, externalTrafficPolicy Local with healthCheckNodePort, endpoints on node-1 only',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_1]);
      await s.service({ type: 'LoadBalancer', externalTrafficPolicy: 'Local', selector, ports: [http] });
      await s.loadBalancerStatus([{ ip: '198.51.100.20' }]);
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) =>
      check(v, (c) =>
        c
          .has(/^filter -A KUBE-NODEPORTS .*health check node port.* -j ACCEPT/, 1)
          .has(/pod traffic for cf-lb-local\/svc:http external destinations/, 1)
          .when(NODE_1, (n) => n.endpoints('SVL', 2, NODE_1).has(/^nat -A KUBE-EXT-\S+ -j KUBE-SVL-/, 1))
          .when(NODE_2, (n) => n.endpoints('SVL', 0).has(/^filter -A KUBE-EXTERNAL-SERVICES .*has no local endpoints.* -j DROP/, 2)),
      ),
  },
  {
    name: 'lb-src-in',
    title: 'LoadBalancer with loadBalancerSourceRanges 10.200.0.0/24 (holds both node IPs) and 203.0.113.0/25',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ type: 'LoadBalancer', loadBalancerSourceRanges: ['10.200.0.0/24', '203.0.113.0/25'], selector, ports: [http] });
      await s.loadBalancerStatus([{ ip: '198.51.100.30' }]);
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) =>
      check(v, (c) =>
        c
          .has(/^nat -A KUBE-FW-\S+ -s (10\.200\.0\.0\/24|203\.0\.113\.0\/25|198\.51\.100\.30\/32) .* -j KUBE-EXT-/, 3)
          .has(/^filter -A KUBE-PROXY-FIREWALL -d 198\.51\.100\.30\/32 .* -j DROP/, 1),
      ),
  },
  {
    name: 'lb-src-out',
    title: 'LoadBalancer with loadBalancerSourceRanges 203.0.113.0/25 only (holds no node IP)',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ type: 'LoadBalancer', loadBalancerSourceRanges: ['203.0.113.0/25'], selector, ports: [http] });
      await s.loadBalancerStatus([{ ip: '198.51.100.31' }]);
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) => check(v, (c) => c.has(/^nat -A KUBE-FW-\S+ -s 203\.0\.113\.0\/25 /, 1).lacks(/^nat -A KUBE-FW-\S+ -s 198\.51\.100\.31/)),
  },
  {
    name: 'lb-src-node1',
    title: "LoadBalancer with loadBalancerSourceRanges 10.200.0.11/32 (node-1's IP, not node-2's)",
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ type: 'LoadBalancer', loadBalancerSourceRanges: ['10.200.0.11/32'], selector, ports: [http] });
      await s.loadBalancerStatus([{ ip: '198.51.100.32' }]);
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) =>
      check(v, (c) =>
        c
          .when(NODE_1, (n) => n.has(/^nat -A KUBE-FW-\S+ -s 198\.51\.100\.32\/32 /, 1))
          .when(NODE_2, (n) => n.lacks(/^nat -A KUBE-FW-\S+ -s 198\.51\.100\.32\/32 /)),
      ),
  },
  {
    name: 'lb-ipmode',
    title: 'LoadBalancer ingress with ipMode VIP, ipMode Proxy (not short-circuited) and a hostname-only entry',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ type: 'LoadBalancer', selector, ports: [http] });
      await s.loadBalancerStatus([{ ip: '198.51.100.50', ipMode: 'VIP' }, { ip: '198.51.100.51', ipMode: 'Proxy' }, { hostname: 'lb.example.test' }]);
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) => check(v, (c) => c.has(/-d 198\.51\.100\.50\/32 .*loadbalancer IP/, 1).lacks(/198\.51\.100\.51/)),
  },
  {
    name: 'lb-no-nodeports',
    title: 'LoadBalancer with allocateLoadBalancerNodePorts false',
    setup: async (s) => {
      await s.pods([NODE_1]);
      await s.service({ type: 'LoadBalancer', allocateLoadBalancerNodePorts: false, selector, ports: [http] });
      await s.loadBalancerStatus([{ ip: '198.51.100.60' }]);
    },
    endpoints: [{ service: 'svc', ready: 1 }],
    expect: (v) => check(v, (c) => c.has(/loadbalancer IP/, 1).lacks(/KUBE-NODEPORTS/)),
  },
  {
    name: 'nodeport-local',
    title: 'NodePort, externalTrafficPolicy Local, endpoints on both nodes (2 + 1)',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2, NODE_1]);
      await s.service({ type: 'NodePort', externalTrafficPolicy: 'Local', selector, ports: [http] });
    },
    endpoints: [{ service: 'svc', ready: 3 }],
    expect: (v) =>
      check(v, (c) =>
        c
          .endpoints('SVC', 3)
          .lacks(/health check node port/)
          .when(NODE_1, (n) => n.endpoints('SVL', 2, NODE_1))
          .when(NODE_2, (n) => n.endpoints('SVL', 1, NODE_2)),
      ),
  },
  {
    name: 'externalips',
    title: 'ClusterIP with 2 externalIPs, externalTrafficPolicy Cluster',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ externalIPs: ['192.0.2.10', '192.0.2.11'], selector, ports: [http] });
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) => check(v, (c) => c.has(/^nat -A KUBE-SERVICES -d 192\.0\.2\.1[01]\/32 .*external IP.* -j KUBE-EXT-/, 2)),
  },
  {
    name: 'externalips-local',
    title: 'ClusterIP with an externalIP, externalTrafficPolicy Local, endpoints on node-2 only',
    setup: async (s) => {
      await s.pods([NODE_2]);
      await s.service({ externalIPs: ['192.0.2.20'], externalTrafficPolicy: 'Local', selector, ports: [http] });
    },
    endpoints: [{ service: 'svc', ready: 1 }],
    expect: (v) =>
      check(v, (c) =>
        c
          .when(NODE_1, (n) => n.has(/^filter -A KUBE-EXTERNAL-SERVICES -d 192\.0\.2\.20\/32 .*has no local endpoints.* -j DROP/, 1))
          .when(NODE_2, (n) => n.endpoints('SVL', 1, NODE_2).lacks(/has no local endpoints/)),
      ),
  },
  {
    name: 'itp-local',
    title: 'ClusterIP, internalTrafficPolicy Local, endpoints on node-1 only',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_1]);
      await s.service({ internalTrafficPolicy: 'Local', selector, ports: [http] });
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) =>
      check(v, (c) =>
        c
          .lacks(/KUBE-SVC-/)
          .when(NODE_1, (n) => n.endpoints('SVL', 2, NODE_1).has(/^nat -A KUBE-SERVICES .*cluster IP.* -j KUBE-SVL-/, 1))
          .when(NODE_2, (n) => n.has(/^filter -A KUBE-SERVICES .*has no local endpoints.* -j DROP/, 1).lacks(/KUBE-SEP-/)),
      ),
  },
  {
    name: 'itp-local-nodeport',
    title: 'NodePort, internalTrafficPolicy Local and externalTrafficPolicy Cluster, endpoints on node-1 only',
    setup: async (s) => {
      await s.pods([NODE_1]);
      await s.service({ type: 'NodePort', internalTrafficPolicy: 'Local', selector, ports: [http] });
    },
    endpoints: [{ service: 'svc', ready: 1 }],
    expect: (v) =>
      check(v, (c) =>
        c
          .endpoints('SVC', 1, NODE_1)
          .has(/^nat -A KUBE-NODEPORTS /, 1)
          .when(NODE_2, (n) => n.has(/^filter -A KUBE-SERVICES .*has no local endpoints.* -j DROP/, 1)),
      ),
  },
  {
    name: 'affinity',
    title: 'NodePort, sessionAffinity ClientIP with timeoutSeconds 600',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2, NODE_1]);
      await s.service({ type: 'NodePort', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } }, selector, ports: [http] });
    },
    endpoints: [{ service: 'svc', ready: 3 }],
    expect: (v) => check(v, (c) => c.has(/^nat -A KUBE-SVC-.*--rcheck --seconds 600 --reap/, 3).has(/^nat -A KUBE-SEP-.* --set /, 3)),
  },
  {
    name: 'affinity-local',
    title: 'NodePort, externalTrafficPolicy Local, sessionAffinity ClientIP (default timeout 10800)',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ type: 'NodePort', externalTrafficPolicy: 'Local', sessionAffinity: 'ClientIP', selector, ports: [http] });
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) => check(v, (c) => c.has(/^nat -A KUBE-SVL-.*--rcheck --seconds 10800 --reap/, 1).has(/^nat -A KUBE-SVC-.*--rcheck --seconds 10800 --reap/, 2)),
  },
  {
    name: 'terminating',
    title: '3 pods, 1 deleted gracefully (terminating, still serving): only the 2 ready ones are used',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2, NODE_1]);
      await s.service({ type: 'NodePort', selector, ports: [http] });
      await s.terminate('web-0');
    },
    endpoints: [{ service: 'svc', ready: 2, terminating: 1 }],
    expect: (v) => check(v, (c) => c.endpoints('SVC', 2)),
  },
  {
    name: 'terminating-all',
    title: 'all pods deleted gracefully: fallback to the serving terminating endpoints',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ type: 'NodePort', selector, ports: [http] });
      await s.terminate('web-0');
      await s.terminate('web-1');
    },
    endpoints: [{ service: 'svc', ready: 0, terminating: 2 }],
    expect: (v) => check(v, (c) => c.endpoints('SVC', 2).lacks(/has no endpoints/)),
  },
  {
    name: 'terminating-local',
    title: "NodePort, externalTrafficPolicy Local, node-1's only pod terminating: node-1 falls back to it locally",
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ type: 'NodePort', externalTrafficPolicy: 'Local', selector, ports: [http] });
      await s.terminate('web-0');
    },
    endpoints: [{ service: 'svc', ready: 1, terminating: 1 }],
    expect: (v) =>
      check(v, (c) =>
        c
          .endpoints('SVC', 1, NODE_2)
          .when(NODE_1, (n) => n.endpoints('SVL', 1, NODE_1).has(/^nat -A KUBE-SEP-/, 4))
          .when(NODE_2, (n) => n.endpoints('SVL', 1, NODE_2)),
      ),
  },
  {
    name: 'not-ready',
    title: '3 pods, 1 not ready (ready=false, serving=false)',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2, NODE_1]);
      await s.service({ selector, ports: [http] });
      await s.notReady('web-1');
    },
    endpoints: [{ service: 'svc', ready: 2, notReady: 1 }],
    expect: (v) => check(v, (c) => c.endpoints('SVC', 2, NODE_1)),
  },
  {
    name: 'publish-not-ready',
    title: 'publishNotReadyAddresses with 1 of 2 pods not ready (both published ready)',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ publishNotReadyAddresses: true, selector, ports: [http] });
      await s.notReady('web-1');
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) => check(v, (c) => c.endpoints('SVC', 2)),
  },
  {
    name: 'no-endpoints',
    title: 'LoadBalancer with an externalIP and no endpoints: REJECT for cluster IP, external IP, LB IP and NodePort',
    setup: async (s) => {
      await s.service({ type: 'LoadBalancer', externalIPs: ['192.0.2.30'], selector: { app: 'nothing' }, ports: [http] });
      await s.loadBalancerStatus([{ ip: '198.51.100.70' }]);
    },
    endpoints: [{ service: 'svc', ready: 0 }],
    expect: (v) =>
      check(v, (c) =>
        c
          .has(/^filter -A KUBE-SERVICES .*has no endpoints.* -j REJECT/, 1)
          .has(/^filter -A KUBE-EXTERNAL-SERVICES .*has no endpoints.* -j REJECT/, 3)
          .lacks(/^nat /),
      ),
  },
  {
    name: 'no-endpoints-local',
    title: 'LoadBalancer, externalTrafficPolicy Local, no endpoints (REJECT, and the health check port stays open)',
    setup: async (s) => {
      await s.service({ type: 'LoadBalancer', externalTrafficPolicy: 'Local', selector: { app: 'nothing' }, ports: [http] });
      await s.loadBalancerStatus([{ ip: '198.51.100.71' }]);
    },
    endpoints: [{ service: 'svc', ready: 0 }],
    expect: (v) => check(v, (c) => c.has(/-j REJECT/, 3).has(/health check node port/, 1).lacks(/^nat /)),
  },
  {
    name: 'topology-zone',
    title: 'trafficDistribution PreferSameZone, 2 pods per zone: zone hints, each node keeps its zone',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2, NODE_1, NODE_2]);
      await s.service({ trafficDistribution: 'PreferSameZone', selector, ports: [http] });
    },
    endpoints: [{ service: 'svc', ready: 4, hints: 'zone' }],
    expect: (v) => check(v, (c) => c.when(NODE_1, (n) => n.endpoints('SVC', 2, NODE_1)).when(NODE_2, (n) => n.endpoints('SVC', 2, NODE_2))),
  },
  {
    name: 'topology-one-zone',
    title: "trafficDistribution PreferSameZone, pods in zone-a only: node-2 (zone-b) has no hint for its zone and uses all",
    setup: async (s) => {
      await s.pods([NODE_1, NODE_1]);
      await s.service({ trafficDistribution: 'PreferSameZone', selector, ports: [http] });
    },
    endpoints: [{ service: 'svc', ready: 2, hints: 'zone' }],
    expect: (v) => check(v, (c) => c.endpoints('SVC', 2, NODE_1)),
  },
  {
    name: 'topology-node',
    title: 'trafficDistribution PreferSameNode: node hints, each node keeps its own endpoints',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2, NODE_1]);
      await s.service({ trafficDistribution: 'PreferSameNode', selector, ports: [http] });
    },
    endpoints: [{ service: 'svc', ready: 3, hints: 'node' }],
    expect: (v) => check(v, (c) => c.when(NODE_1, (n) => n.endpoints('SVC', 2, NODE_1)).when(NODE_2, (n) => n.endpoints('SVC', 1, NODE_2))),
  },
  {
    name: 'topology-auto',
    title: 'annotation service.kubernetes.io/topology-mode: Auto, 3 pods per zone',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2, NODE_1, NODE_2, NODE_1, NODE_2]);
      await s.service({ selector, ports: [http] }, { annotations: { 'service.kubernetes.io/topology-mode': 'Auto' } });
    },
    endpoints: [{ service: 'svc', ready: 6, hints: 'zone' }],
    expect: (v) => check(v, (c) => c.when(NODE_1, (n) => n.endpoints('SVC', 3, NODE_1)).when(NODE_2, (n) => n.endpoints('SVC', 3, NODE_2))),
  },
  {
    name: 'manual-slice',
    title: 'Service without selector and a hand-written EndpointSlice (no nodeName/zone; one endpoint ready=false)',
    setup: async (s) => {
      await s.service({ ports: [http] });
      await s.endpointSlice({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'svc-manual', namespace: s.namespace, labels: { 'kubernetes.io/service-name': 'svc', 'endpointslice.kubernetes.io/managed-by': 'kpx-e2e' } },
        addressType: 'IPv4',
        endpoints: [{ addresses: ['192.0.2.100'] }, { addresses: ['192.0.2.101'], conditions: { ready: false } }, { addresses: ['192.0.2.102'], conditions: { ready: true } }],
        ports: [{ name: 'http', protocol: 'TCP', port: 80 }],
      });
    },
    endpoints: [{ service: 'svc', ready: 2, notReady: 1 }],
    expect: (v) => check(v, (c) => c.has(/-j DNAT --to-destination 192\.0\.2\.10[02]:80/, 2).lacks(/192\.0\.2\.101/)),
  },
  {
    name: 'headless',
    title: 'headless Service (clusterIP None) with 2 endpoints: no rules',
    setup: async (s) => {
      await s.pods([NODE_1, NODE_2]);
      await s.service({ clusterIP: 'None', selector, ports: [http] });
    },
    endpoints: [{ service: 'svc', ready: 2 }],
    expect: (v) => check(v, (c) => c.empty()),
  },
  {
    name: 'externalname',
    title: 'ExternalName Service: no rules',
    setup: async (s) => {
      await s.service({ type: 'ExternalName', externalName: 'example.test', ports: [http] });
    },
    endpoints: [],
    expect: (v) => check(v, (c) => c.empty()),
  },
  {
    name: 'proxy-name',
    title: 'Service labelled service.kubernetes.io/service-proxy-name (another proxy\'s): no rules',
    setup: async (s) => {
      await s.pods([NODE_1]);
      await s.service({ type: 'NodePort', selector, ports: [http] }, { labels: { 'service.kubernetes.io/service-proxy-name': 'someone-else' } });
    },
    endpoints: [{ service: 'svc', ready: 1 }],
    expect: (v) => check(v, (c) => c.empty()),
  },
];
