import { describe, expect, it } from 'vitest';
import { categorizeEndpoints, topologyModeFromHints, type EndpointCategories } from './categorize.ts';
import type { Endpoint, ServicePort } from './proxy-model.ts';

interface EpOptions {
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  local?: boolean;
  zones?: string[];
  nodes?: string[];
}

function ep(ip: string, o: EpOptions = {}): Endpoint {
  return {
    ip,
    port: 80,
    endpoint: `${ip}:80`,
    ready: o.ready ?? true,
    serving: o.serving ?? true,
    terminating: o.terminating ?? false,
    isLocal: o.local ?? false,
    zoneHints: o.zones ?? [],
    nodeHints: o.nodes ?? [],
  };
}

/** A serving, terminating (not ready) endpoint. */
const term = (ip: string, o: EpOptions = {}): Endpoint => ep(ip, { ...o, ready: false, serving: true, terminating: true });

function sp(o: Partial<ServicePort> = {}): ServicePort {
  return {
    key: 'ns1/svc1:p80/TCP',
    spn: 'ns1/svc1:p80',
    namespace: 'ns1',
    serviceName: 'svc1',
    portName: 'p80',
    protocol: 'TCP',
    clusterIP: '172.30.0.41',
    port: 80,
    nodePort: 0,
    affinityTimeoutSeconds: 0,
    externalIPs: [],
    loadBalancerIPs: [],
    loadBalancerSourceRanges: [],
    healthCheckNodePort: 0,
    externalPolicyLocal: false,
    internalPolicyLocal: false,
    ...o,
  };
}

const NODE = { name: 'node-a', zone: 'zone-a' };

const ips = (eps: readonly Endpoint[]): string[] => eps.map((e) => e.endpoint);
const sortedIps = (eps: readonly Endpoint[]): string[] => ips(eps).sort();

function cat(endpoints: Endpoint[], port: ServicePort = sp(), node = NODE): EndpointCategories {
  return categorizeEndpoints(endpoints, port, node);
}

describe('categorizeEndpoints: Cluster policies', () => {
  it('uses every ready endpoint, no local chain', () => {
    const c = cat([ep('10.0.0.1'), ep('10.0.0.2', { local: true }), term('10.0.0.3')]);
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
    expect(c.localEndpoints).toEqual([]);
    expect(ips(c.allReachable)).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
    expect(c.hasAnyEndpoints).toBe(true);
    expect(c.topologyMode).toBe('');
  });

  it('falls back to serving+terminating endpoints only when none is ready', () => {
    const c = cat([
      term('10.0.0.1'),
      ep('10.0.0.2', { ready: false, serving: false, terminating: true }), // terminating, not serving
      ep('10.0.0.3', { ready: false, serving: true, terminating: false }), // serving, not terminating
      ep('10.0.0.4', { ready: false, serving: false, terminating: false }),
      term('10.0.0.5'),
    ]);
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.1:80', '10.0.0.5:80']);
    expect(ips(c.allReachable)).toEqual(['10.0.0.1:80', '10.0.0.5:80']);
    expect(c.hasAnyEndpoints).toBe(true);
  });

  it('does not use terminating endpoints when one endpoint is ready', () => {
    const c = cat([term('10.0.0.1'), ep('10.0.0.2'), term('10.0.0.3')]);
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.2:80']);
  });

  it('has no endpoints when none is ready or serving-terminating', () => {
    const c = cat([ep('10.0.0.1', { ready: false, serving: false, terminating: true }), ep('10.0.0.2', { ready: false, serving: true })]);
    expect(c.clusterEndpoints).toEqual([]);
    expect(c.allReachable).toEqual([]);
    expect(c.hasAnyEndpoints).toBe(false);
    expect(cat([]).hasAnyEndpoints).toBe(false);
  });

  it('ignores eTP Local when the port is not externally accessible (no nodePort, LB IP or external IP)', () => {
    const c = cat([ep('10.0.0.1'), ep('10.0.0.2', { local: true })], sp({ externalPolicyLocal: true }));
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
    expect(c.localEndpoints).toEqual([]);
    expect(ips(c.allReachable)).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
  });
});

describe('categorizeEndpoints: internalTrafficPolicy Local', () => {
  const itp = sp({ internalPolicyLocal: true });

  it('uses only local ready endpoints and no cluster endpoints', () => {
    const c = cat([ep('10.0.0.1'), ep('10.0.0.2', { local: true }), ep('10.0.0.3', { local: true }), term('10.0.0.4', { local: true })], itp);
    expect(c.clusterEndpoints).toEqual([]);
    expect(ips(c.localEndpoints)).toEqual(['10.0.0.2:80', '10.0.0.3:80']);
    expect(ips(c.allReachable)).toEqual(['10.0.0.2:80', '10.0.0.3:80']);
    expect(c.hasAnyEndpoints).toBe(true);
  });

  it('falls back to local serving-terminating endpoints when no local endpoint is ready', () => {
    const c = cat([ep('10.0.0.1'), term('10.0.0.2', { local: true }), ep('10.0.0.3', { local: true, ready: false, serving: false, terminating: true })], itp);
    expect(ips(c.localEndpoints)).toEqual(['10.0.0.2:80']);
    expect(ips(c.allReachable)).toEqual(['10.0.0.2:80']);
    expect(c.hasAnyEndpoints).toBe(true);
  });

  it('has endpoints but no local ones when every endpoint is remote', () => {
    const c = cat([ep('10.0.0.1'), term('10.0.0.2')], itp);
    expect(c.localEndpoints).toEqual([]);
    expect(c.allReachable).toEqual([]);
    expect(c.hasAnyEndpoints).toBe(true);
  });

  it('counts remote serving-terminating endpoints as "any endpoints"', () => {
    const c = cat([term('10.0.0.2')], itp);
    expect(c.hasAnyEndpoints).toBe(true);
    expect(c.localEndpoints).toEqual([]);
  });

  it('has no endpoints at all when none is ready or serving-terminating', () => {
    const c = cat([ep('10.0.0.1', { ready: false, serving: false, local: true })], itp);
    expect(c.hasAnyEndpoints).toBe(false);
    expect(c.localEndpoints).toEqual([]);
  });

  it('uses cluster endpoints too when the port is also externally accessible', () => {
    const c = cat([ep('10.0.0.1'), ep('10.0.0.2', { local: true })], sp({ internalPolicyLocal: true, nodePort: 30080 }));
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
    expect(ips(c.localEndpoints)).toEqual(['10.0.0.2:80']);
    expect(ips(c.allReachable)).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
  });
});

describe('categorizeEndpoints: externalTrafficPolicy Local on an externally accessible port', () => {
  const etp = sp({ externalPolicyLocal: true, nodePort: 30080 });

  it('cluster = all ready, local = local ready, allReachable = cluster endpoints', () => {
    const c = cat([ep('10.0.0.1'), ep('10.0.0.2', { local: true }), term('10.0.0.3', { local: true })], etp);
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
    expect(ips(c.localEndpoints)).toEqual(['10.0.0.2:80']);
    expect(ips(c.allReachable)).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
    expect(c.hasAnyEndpoints).toBe(true);
  });

  it.each([
    ['an LB IP', sp({ externalPolicyLocal: true, loadBalancerIPs: ['1.2.3.4'] })],
    ['an external IP', sp({ externalPolicyLocal: true, externalIPs: ['192.168.99.22'] })],
  ])('uses local endpoints with %s', (_label, port) => {
    const c = cat([ep('10.0.0.1'), ep('10.0.0.2', { local: true })], port);
    expect(ips(c.localEndpoints)).toEqual(['10.0.0.2:80']);
  });

  it('has no local endpoints when all are remote (hasAnyEndpoints stays true)', () => {
    const c = cat([ep('10.0.0.1'), ep('10.0.0.3')], etp);
    expect(c.localEndpoints).toEqual([]);
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.1:80', '10.0.0.3:80']);
    expect(c.hasAnyEndpoints).toBe(true);
  });

  it('serving-terminating local fallback: allReachable is the union of cluster and local endpoints', () => {
    const c = cat([ep('10.0.0.1'), term('10.0.0.2', { local: true }), ep('10.0.0.3')], etp);
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.1:80', '10.0.0.3:80']);
    expect(ips(c.localEndpoints)).toEqual(['10.0.0.2:80']);
    expect(sortedIps(c.allReachable)).toEqual(['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80']);
  });

  it('with no ready endpoint at all, cluster and local both use serving-terminating ones', () => {
    const c = cat([term('10.0.0.1'), term('10.0.0.2', { local: true })], etp);
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
    expect(ips(c.localEndpoints)).toEqual(['10.0.0.2:80']);
    expect(sortedIps(c.allReachable)).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
  });
});

describe('topologyModeFromHints (1.33+)', () => {
  it('PreferSameZone when every ready endpoint has zone hints and one matches the zone', () => {
    expect(topologyModeFromHints([ep('10.0.0.1', { zones: ['zone-a'] }), ep('10.0.0.2', { zones: ['zone-b'] })], 'node-a', 'zone-a')).toBe(
      'PreferSameZone',
    );
  });

  it('PreferSameNode when every ready endpoint has node hints and one matches the node, before zones', () => {
    expect(
      topologyModeFromHints(
        [ep('10.0.0.1', { nodes: ['node-a'], zones: ['zone-a'] }), ep('10.0.0.2', { nodes: ['node-b'], zones: ['zone-b'] })],
        'node-a',
        'zone-a',
      ),
    ).toBe('PreferSameNode');
  });

  it('falls back to zones when some ready endpoint lacks node hints', () => {
    expect(
      topologyModeFromHints(
        [ep('10.0.0.1', { nodes: ['node-a'], zones: ['zone-a'] }), ep('10.0.0.2', { zones: ['zone-b'] })],
        'node-a',
        'zone-a',
      ),
    ).toBe('PreferSameZone');
  });

  it('is "" when some ready endpoint lacks zone hints', () => {
    expect(topologyModeFromHints([ep('10.0.0.1', { zones: ['zone-a'] }), ep('10.0.0.2')], 'node-a', 'zone-a')).toBe('');
  });

  it('is "" when no endpoint is hinted for this zone or node', () => {
    expect(topologyModeFromHints([ep('10.0.0.1', { zones: ['zone-b'], nodes: ['node-b'] })], 'node-a', 'zone-a')).toBe('');
  });

  it('is "" when the node has no zone label', () => {
    expect(topologyModeFromHints([ep('10.0.0.1', { zones: ['zone-a'] })], 'node-a', '')).toBe('');
  });

  it('looks only at ready endpoints', () => {
    expect(topologyModeFromHints([ep('10.0.0.1', { zones: ['zone-a'] }), term('10.0.0.2')], 'node-a', 'zone-a')).toBe('PreferSameZone');
  });
});

describe('categorizeEndpoints: topology', () => {
  it('PreferSameZone keeps the ready endpoints hinted for the node zone', () => {
    const c = cat([
      ep('10.0.0.1', { zones: ['zone-a'] }),
      ep('10.0.0.2', { zones: ['zone-b'] }),
      ep('10.0.0.3', { zones: ['zone-b', 'zone-a'] }),
    ]);
    expect(c.topologyMode).toBe('PreferSameZone');
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.1:80', '10.0.0.3:80']);
    expect(ips(c.allReachable)).toEqual(['10.0.0.1:80', '10.0.0.3:80']);
  });

  it('PreferSameNode keeps the endpoints hinted for this node', () => {
    const c = cat([
      ep('10.0.0.1', { nodes: ['node-b'], zones: ['zone-a'] }),
      ep('10.0.0.2', { nodes: ['node-a'], zones: ['zone-a'] }),
    ]);
    expect(c.topologyMode).toBe('PreferSameNode');
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.2:80']);
  });

  it('ignores hints when some ready endpoint lacks them', () => {
    const c = cat([ep('10.0.0.1', { zones: ['zone-a'] }), ep('10.0.0.2', { zones: ['zone-b'] }), ep('10.0.0.3')]);
    expect(c.topologyMode).toBe('');
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80']);
  });

  it('ignores hints when none matches the node zone', () => {
    const c = cat([ep('10.0.0.1', { zones: ['zone-b'] }), ep('10.0.0.2', { zones: ['zone-c'] })]);
    expect(c.topologyMode).toBe('');
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
  });

  it('ignores topology in the terminating fallback', () => {
    const c = cat([term('10.0.0.1', { zones: ['zone-b'] }), term('10.0.0.2', { zones: ['zone-a'] })]);
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
  });

  it('with eTP Local, allReachable is the union of zone endpoints and local endpoints', () => {
    const c = cat(
      [ep('10.0.0.1', { zones: ['zone-a'] }), ep('10.0.0.2', { zones: ['zone-b'], local: true }), ep('10.0.0.3', { zones: ['zone-b'] })],
      sp({ externalPolicyLocal: true, nodePort: 30080 }),
    );
    expect(c.topologyMode).toBe('PreferSameZone');
    expect(ips(c.clusterEndpoints)).toEqual(['10.0.0.1:80']);
    expect(ips(c.localEndpoints)).toEqual(['10.0.0.2:80']);
    expect(sortedIps(c.allReachable)).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
  });

  it('topology does not filter ITP Local endpoints', () => {
    const c = cat(
      [ep('10.0.0.1', { zones: ['zone-a'] }), ep('10.0.0.2', { zones: ['zone-b'], local: true })],
      sp({ internalPolicyLocal: true }),
    );
    expect(ips(c.localEndpoints)).toEqual(['10.0.0.2:80']);
    expect(ips(c.allReachable)).toEqual(['10.0.0.2:80']);
    expect(c.clusterEndpoints).toEqual([]);
  });
});
