/**
 * kube-proxy's CategorizeEndpoints (reference §1.13): which endpoints the Cluster-policy chain
 * and the Local-policy chain use, with terminating-endpoint fallback and topology hints.
 */
import {
  compareStrings,
  usesClusterEndpoints,
  usesLocalEndpoints,
  type Endpoint,
  type NodeContext,
  type ServicePort,
} from './proxy-model.ts';

export type TopologyMode = '' | 'PreferSameNode' | 'PreferSameZone';

export interface EndpointCategories {
  readonly clusterEndpoints: readonly Endpoint[];
  readonly localEndpoints: readonly Endpoint[];
  /** Every endpoint some chain of this service port may reach: one KUBE-SEP chain each. */
  readonly allReachable: readonly Endpoint[];
  readonly hasAnyEndpoints: boolean;
  readonly topologyMode: TopologyMode;
}

/** kube-proxy 1.33+: node hints (PreferSameTrafficDistribution, GA) before zone hints. */
export function topologyModeFromHints(endpoints: readonly Endpoint[], nodeName: string, zone: string): TopologyMode {
  let hasEndpointForNode = false;
  let allHaveNodeHints = true;
  let hasEndpointForZone = false;
  let allHaveZoneHints = true;
  for (const ep of endpoints) {
    if (!ep.ready) continue;
    if (ep.nodeHints.length === 0) allHaveNodeHints = false;
    else if (ep.nodeHints.includes(nodeName)) hasEndpointForNode = true;
    if (ep.zoneHints.length === 0) allHaveZoneHints = false;
    else if (ep.zoneHints.includes(zone)) hasEndpointForZone = true;
  }
  if (allHaveNodeHints && hasEndpointForNode) return 'PreferSameNode';
  if (allHaveZoneHints && hasEndpointForZone) return 'PreferSameZone';
  return '';
}

function availableForTopology(ep: Endpoint, mode: TopologyMode, nodeName: string, zone: string): boolean {
  switch (mode) {
    case '':
      return true;
    case 'PreferSameNode':
      return ep.nodeHints.includes(nodeName);
    case 'PreferSameZone':
      return ep.zoneHints.includes(zone);
  }
}

export function categorizeEndpoints(
  endpoints: readonly Endpoint[],
  sp: ServicePort,
  node: Pick<NodeContext, 'name' | 'zone'>,
): EndpointCategories {
  let clusterEndpoints: Endpoint[] = [];
  let localEndpoints: Endpoint[] = [];
  let hasAnyEndpoints = false;
  let topologyMode: TopologyMode = '';

  if (usesClusterEndpoints(sp)) {
    topologyMode = topologyModeFromHints(endpoints, node.name, node.zone);
    clusterEndpoints = endpoints.filter((ep) => ep.ready && availableForTopology(ep, topologyMode, node.name, node.zone));
    // No ready endpoint anywhere: fall back to serving-and-terminating ones (topology ignored).
    if (clusterEndpoints.length === 0) clusterEndpoints = endpoints.filter((ep) => ep.serving && ep.terminating);
    hasAnyEndpoints = clusterEndpoints.length > 0;
  }
  if (!usesLocalEndpoints(sp)) {
    return { clusterEndpoints, localEndpoints, allReachable: clusterEndpoints, hasAnyEndpoints, topologyMode };
  }

  let hasLocalReady = false;
  let hasLocalServingTerminating = false;
  for (const ep of endpoints) {
    if (ep.ready) {
      hasAnyEndpoints = true;
      if (ep.isLocal) hasLocalReady = true;
    } else if (ep.serving && ep.terminating) {
      hasAnyEndpoints = true;
      if (ep.isLocal) hasLocalServingTerminating = true;
    }
  }
  let useServingTerminating = false;
  if (hasLocalReady) {
    localEndpoints = endpoints.filter((ep) => ep.isLocal && ep.ready);
  } else if (hasLocalServingTerminating) {
    useServingTerminating = true;
    localEndpoints = endpoints.filter((ep) => ep.isLocal && ep.serving && ep.terminating);
  }
  if (!usesClusterEndpoints(sp)) {
    return { clusterEndpoints, localEndpoints, allReachable: localEndpoints, hasAnyEndpoints, topologyMode };
  }
  if (topologyMode === '' && !useServingTerminating) {
    // clusterEndpoints holds every ready endpoint, so it already contains the local ones.
    return { clusterEndpoints, localEndpoints, allReachable: clusterEndpoints, hasAnyEndpoints, topologyMode };
  }
  const union = new Map<string, Endpoint>();
  for (const ep of [...clusterEndpoints, ...localEndpoints]) union.set(ep.endpoint, ep);
  const allReachable = [...union.values()].sort((a, b) => compareStrings(a.endpoint, b.endpoint));
  return { clusterEndpoints, localEndpoints, allReachable, hasAnyEndpoints, topologyMode };
}
