/**
 * The scenario cluster of the differential tests: Services whose endpoints are the pods of the
 * node topology (topology.ts), compiled by kpx for that node (its name, node IP and cluster
 * CIDR), exactly as `kpx preview -o save` would for the same YAML.
 */
import { compileFamily, type CompiledFamily } from '../../../controller/src/compile/compile.ts';
import { buildProxyModels, classifyObjects } from '../../../controller/src/model/cluster.ts';
import { decodeDocuments } from '../../../controller/src/model/documents.ts';
import { CLUSTER_CIDR, NODE_IP, NODE_NAME, POD_CIDR, POD_PORT } from './topology.ts';

/** An endpoint: a pod of this node, or an address on another node (never reachable here). */
export interface EndpointSpec {
  readonly ip: string;
  readonly nodeName: string;
}

export const REMOTE_NODE = 'kpxd-other-node';

export const WEB_IP = '10.96.0.10';
export const NODEPORT_IP = '10.96.0.20';
export const NODEPORT = 30080;
export const LB_IP = '203.0.113.10';
export const LB_SOURCE_RANGE = '192.0.2.0/25';
export const LOCAL_LB_IP = '203.0.113.20';
export const LOCAL_NODEPORT = 30100;
export const STICKY_IP = '10.96.0.50';
export const EMPTY_IP = '10.96.0.60';
export const EMPTY_NODEPORT = 30110;
export const REMOTE_ONLY_NODEPORT = 30120;
export const HOSTNET_IP = '10.96.0.80';
/** Every Service port is 80, targeting the pods' POD_PORT. */
export const SERVICE_PORT = 80;

export interface ClusterEndpoints {
  /** ClusterIP `web` (TCP and UDP). */
  readonly web: readonly EndpointSpec[];
  /** NodePort `np` (TCP and UDP). */
  readonly nodePort: readonly EndpointSpec[];
  /** LoadBalancer `lb` with loadBalancerSourceRanges. */
  readonly lb: readonly EndpointSpec[];
  /** LoadBalancer `local` with externalTrafficPolicy Local. */
  readonly local: readonly EndpointSpec[];
  /** ClusterIP `sticky` with ClientIP session affinity. */
  readonly sticky: readonly EndpointSpec[];
  /** NodePort `remote-only`, externalTrafficPolicy Local, endpoints only on another node. */
  readonly remoteOnly: readonly EndpointSpec[];
  /** ClusterIP `hostnet`: endpoints on the node's own address (hostNetwork pods). */
  readonly hostNetwork: readonly EndpointSpec[];
}

interface PortSpec {
  readonly name: string;
  readonly protocol: 'TCP' | 'UDP';
  readonly nodePort?: number;
}

function service(name: string, spec: Record<string, unknown>, ports: readonly PortSpec[], status?: Record<string, unknown>): string {
  const doc = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: 'diff', name },
    spec: {
      ...spec,
      ports: ports.map((p) => ({ name: p.name, port: SERVICE_PORT, protocol: p.protocol, targetPort: POD_PORT, ...(p.nodePort === undefined ? {} : { nodePort: p.nodePort }) })),
    },
    ...(status === undefined ? {} : { status }),
  };
  return JSON.stringify(doc);
}

function slice(serviceName: string, ports: readonly PortSpec[], endpoints: readonly EndpointSpec[]): string {
  return JSON.stringify({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: 'diff', name: `${serviceName}-1`, labels: { 'kubernetes.io/service-name': serviceName } },
    addressType: 'IPv4',
    ports: ports.map((p) => ({ name: p.name, port: POD_PORT, protocol: p.protocol })),
    endpoints: endpoints.map((e) => ({ addresses: [e.ip], nodeName: e.nodeName, conditions: { ready: true } })),
  });
}

const TCP: readonly PortSpec[] = [{ name: 'http', protocol: 'TCP' }];

/** The cluster as YAML (JSON documents), for these endpoints. */
export function scenarioClusterYaml(eps: ClusterEndpoints): string {
  const npPorts: PortSpec[] = [
    { name: 'http', protocol: 'TCP', nodePort: NODEPORT },
    { name: 'udp', protocol: 'UDP', nodePort: NODEPORT },
  ];
  const webPorts: PortSpec[] = [
    { name: 'http', protocol: 'TCP' },
    { name: 'udp', protocol: 'UDP' },
  ];
  const docs = [
    JSON.stringify({ apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration', hostnameOverride: NODE_NAME, clusterCIDR: CLUSTER_CIDR }),
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: NODE_NAME },
      spec: { podCIDRs: [POD_CIDR] },
      status: { addresses: [{ type: 'InternalIP', address: NODE_IP }] },
    }),
    service('web', { clusterIP: WEB_IP }, webPorts),
    slice('web', webPorts, eps.web),
    service('np', { type: 'NodePort', clusterIP: NODEPORT_IP }, npPorts),
    slice('np', npPorts, eps.nodePort),
    service('lb', { type: 'LoadBalancer', clusterIP: '10.96.0.30', loadBalancerSourceRanges: [LB_SOURCE_RANGE] }, [{ name: 'http', protocol: 'TCP', nodePort: 30090 }], {
      loadBalancer: { ingress: [{ ip: LB_IP }] },
    }),
    slice('lb', TCP, eps.lb),
    service(
      'local',
      { type: 'LoadBalancer', clusterIP: '10.96.0.40', externalTrafficPolicy: 'Local', healthCheckNodePort: 32000 },
      [{ name: 'http', protocol: 'TCP', nodePort: LOCAL_NODEPORT }],
      { loadBalancer: { ingress: [{ ip: LOCAL_LB_IP }] } },
    ),
    slice('local', TCP, eps.local),
    service('sticky', { clusterIP: STICKY_IP, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 10800 } } }, TCP),
    slice('sticky', TCP, eps.sticky),
    // No EndpointSlice at all: REJECT for the cluster IP and the node port.
    service('empty', { type: 'NodePort', clusterIP: EMPTY_IP }, [
      { name: 'http', protocol: 'TCP', nodePort: EMPTY_NODEPORT },
      { name: 'udp', protocol: 'UDP', nodePort: EMPTY_NODEPORT },
    ]),
    service('remote-only', { type: 'NodePort', clusterIP: '10.96.0.70', externalTrafficPolicy: 'Local' }, [{ name: 'http', protocol: 'TCP', nodePort: REMOTE_ONLY_NODEPORT }]),
    slice('remote-only', TCP, eps.remoteOnly),
    service('hostnet', { clusterIP: HOSTNET_IP }, TCP),
    slice('hostnet', TCP, eps.hostNetwork),
  ];
  return docs.join('\n---\n') + '\n';
}

/** Compiles the cluster for the topology's node (IPv4 only: the topology is IPv4). */
export function compileCluster(yaml: string): CompiledFamily {
  const { state, problems } = classifyObjects(decodeDocuments(yaml, 'scenario.yaml'));
  const models = buildProxyModels(state);
  const invalid = [...problems, ...models.problems].filter((p) => p.kind === 'invalid');
  if (invalid.length > 0) throw new Error(`the scenario cluster has invalid objects: ${JSON.stringify(invalid)}`);
  const [model, ...others] = models.families;
  if (model === undefined || others.length > 0 || model.family !== 'IPv4') throw new Error('the scenario cluster must compile to exactly one IPv4 family');
  return compileFamily(model);
}
