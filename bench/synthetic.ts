/**
 * A deterministic synthetic cluster: `services` ClusterIP/NodePort Services with `endpoints`
 * endpoints each, spread over `nodes` nodes, as the Kubernetes objects kpx reads.
 */
import type { SourcedObject } from '../controller/src/model/documents.ts';
import type { ClusterState } from '../controller/src/model/cluster.ts';

export interface SyntheticOptions {
  readonly services: number;
  readonly endpoints: number;
  readonly nodes?: number;
  /** Every n-th Service is a NodePort (0: none). */
  readonly nodePortEvery?: number;
}

/** The n-th address of the /8 `base` (the generator's Service and pod addresses). */
export const ip = (base: number, n: number): string => `${String(base)}.${String((n >> 16) & 255)}.${String((n >> 8) & 255)}.${String(n & 255)}`;

export function syntheticCluster(options: SyntheticOptions): ClusterState {
  const nodes = options.nodes ?? 10;
  const nodePortEvery = options.nodePortEvery ?? 10;
  const services: SourcedObject[] = [];
  const endpointSlices: SourcedObject[] = [];
  let pod = 0;
  for (let s = 0; s < options.services; s++) {
    const name = `svc-${String(s)}`;
    const namespace = `ns-${String(s % 50)}`;
    const nodePort = nodePortEvery > 0 && s % nodePortEvery === 0 ? 30000 + (s / nodePortEvery) % 2768 : 0;
    services.push({
      source: 'synthetic',
      object: {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { namespace, name },
        spec: {
          type: nodePort === 0 ? 'ClusterIP' : 'NodePort',
          clusterIP: ip(172, s + 1),
          ports: [{ name: 'http', port: 80, protocol: 'TCP', ...(nodePort === 0 ? {} : { nodePort }) }],
        },
      },
    });
    const eps = [];
    for (let e = 0; e < options.endpoints; e++) {
      pod++;
      eps.push({ addresses: [ip(10, pod)], nodeName: `node-${String(pod % nodes)}`, conditions: { ready: true } });
    }
    endpointSlices.push({
      source: 'synthetic',
      object: {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { namespace, name: `${name}-abcde`, labels: { 'kubernetes.io/service-name': name } },
        addressType: 'IPv4',
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
        endpoints: eps,
      },
    });
  }
  const nodeObjects: SourcedObject[] = [
    { source: 'synthetic', object: { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-0' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.0.10' }] } } },
  ];
  return { services, endpointSlices, nodes: nodeObjects, proxyConfigurations: [] };
}
