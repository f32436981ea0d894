import { describe, expect, it } from 'vitest';
import type { JsonObject } from './fields.ts';
import { formatCIDR } from './ip.ts';
import { FieldError } from './problem.ts';
import { readService, type ServiceFilter, type ServiceInfo } from './service.ts';

const DEFAULT_FILTER: ServiceFilter = { serviceProxyName: '' };

function svc(spec: Record<string, unknown>, extra: Record<string, unknown> = {}): JsonObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: 'ns1', name: 'svc1', ...(extra.metadata as object | undefined) },
    spec,
    ...(extra.status === undefined ? {} : { status: extra.status }),
  };
}

function read(obj: JsonObject, filter: ServiceFilter = DEFAULT_FILTER): ServiceInfo {
  const r = readService(obj, filter);
  if (r.kind !== 'service') throw new Error(`expected a service, got ignored: ${r.reason}`);
  return r.service;
}

function ignoredReason(obj: JsonObject, filter: ServiceFilter = DEFAULT_FILTER): string {
  const r = readService(obj, filter);
  if (r.kind !== 'ignored') throw new Error('expected the Service to be ignored');
  return r.reason;
}

function fieldError(obj: JsonObject, filter: ServiceFilter = DEFAULT_FILTER): FieldError {
  try {
    readService(obj, filter);
  } catch (error) {
    if (error instanceof FieldError) return error;
    throw error;
  }
  throw new Error('expected a FieldError');
}

const basic = { clusterIP: '172.30.0.41', ports: [{ name: 'p80', port: 80 }] };

describe('readService: defaults', () => {
  it('defaults protocol TCP, type ClusterIP, policies Cluster, no affinity, no node port', () => {
    const s = read(svc(basic));
    expect(s).toEqual({
      namespace: 'ns1',
      name: 'svc1',
      type: 'ClusterIP',
      clusterIPs: { IPv4: '172.30.0.41' },
      ports: [{ name: 'p80', port: 80, protocol: 'TCP', nodePort: 0 }],
      externalIPs: [],
      loadBalancerIPs: [],
      loadBalancerSourceRanges: [],
      affinityTimeoutSeconds: 0,
      externalTrafficPolicyLocal: false,
      internalTrafficPolicyLocal: false,
      healthCheckNodePort: 0,
    });
  });

  it('defaults the namespace to "default"', () => {
    const s = read({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: basic });
    expect(s.namespace).toBe('default');
  });

  it('defaults the ClientIP affinity timeout to 10800 without sessionAffinityConfig', () => {
    expect(read(svc({ ...basic, sessionAffinity: 'ClientIP' })).affinityTimeoutSeconds).toBe(10800);
    expect(read(svc({ ...basic, sessionAffinity: 'ClientIP', sessionAffinityConfig: {} })).affinityTimeoutSeconds).toBe(10800);
  });

  it('reads an explicit affinity timeout, up to 86400', () => {
    const withTimeout = (t: number): JsonObject =>
      svc({ ...basic, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: t } } });
    expect(read(withTimeout(1)).affinityTimeoutSeconds).toBe(1);
    expect(read(withTimeout(86400)).affinityTimeoutSeconds).toBe(86400);
  });

  it('has no affinity for sessionAffinity None even with a config', () => {
    const s = read(svc({ ...basic, sessionAffinity: 'None', sessionAffinityConfig: { clientIP: { timeoutSeconds: 99 } } }));
    expect(s.affinityTimeoutSeconds).toBe(0);
  });

  it('defaults clusterIPs from clusterIP and canonicalises it', () => {
    expect(read(svc({ clusterIP: '172.030.000.041', ports: [{ port: 80 }] })).clusterIPs).toEqual({ IPv4: '172.30.0.41' });
    expect(read(svc({ clusterIP: 'FD00:AB34:0:0::20', ports: [{ port: 80 }] })).clusterIPs).toEqual({ IPv6: 'fd00:ab34::20' });
  });

  it('reads dual-stack clusterIPs per family', () => {
    const s = read(
      svc({
        clusterIP: '172.30.0.41',
        clusterIPs: ['172.30.0.41', 'fd00:ab34::20'],
        ipFamilies: ['IPv4', 'IPv6'],
        ports: [{ port: 80 }],
      }),
    );
    expect(s.clusterIPs).toEqual({ IPv4: '172.30.0.41', IPv6: 'fd00:ab34::20' });
  });

  it('accepts a single unnamed port and reads UDP, SCTP and node ports', () => {
    expect(read(svc({ clusterIP: '172.30.0.41', ports: [{ port: 53, protocol: 'UDP' }] })).ports).toEqual([
      { name: '', port: 53, protocol: 'UDP', nodePort: 0 },
    ]);
    const s = read(
      svc({
        type: 'NodePort',
        clusterIP: '172.30.0.41',
        ports: [
          { name: 'a', port: 80, protocol: 'SCTP', nodePort: 30080 },
          { name: 'b', port: 81, protocol: 'TCP' },
        ],
      }),
    );
    expect(s.type).toBe('NodePort');
    expect(s.ports).toEqual([
      { name: 'a', port: 80, protocol: 'SCTP', nodePort: 30080 },
      { name: 'b', port: 81, protocol: 'TCP', nodePort: 0 },
    ]);
  });

  it('reads traffic policies, external IPs, LB ingress, source ranges and the health check node port', () => {
    const s = read(
      svc(
        {
          type: 'LoadBalancer',
          clusterIP: '172.30.0.42',
          externalIPs: ['192.168.99.22', '2001:DB8::1'],
          externalTrafficPolicy: 'Local',
          internalTrafficPolicy: 'Local',
          healthCheckNodePort: 30000,
          loadBalancerSourceRanges: [' 203.0.113.5/25', '198.51.100.0/24 '],
          ports: [{ name: 'p80', port: 80, nodePort: 3001 }],
        },
        {
          status: {
            loadBalancer: {
              ingress: [
                { ip: '1.2.3.4' },
                { ip: '5.6.7.8', ipMode: 'Proxy' },
                { hostname: 'lb.example.com' },
                { ip: '9.10.11.12', ipMode: 'VIP' },
              ],
            },
          },
        },
      ),
    );
    expect(s.externalIPs).toEqual(['192.168.99.22', '2001:db8::1']);
    // ipMode Proxy ingress IPs are ignored, hostname-only ones carry nothing (reference §1.0)
    expect(s.loadBalancerIPs).toEqual(['1.2.3.4', '9.10.11.12']);
    // whitespace trimmed, printed via CIDR.String() (host bits cleared)
    expect(s.loadBalancerSourceRanges.map(formatCIDR)).toEqual(['203.0.113.0/25', '198.51.100.0/24']);
    expect(s.externalTrafficPolicyLocal).toBe(true);
    expect(s.internalTrafficPolicyLocal).toBe(true);
    expect(s.healthCheckNodePort).toBe(30000);
  });
});

describe('readService: ignored Services', () => {
  it('ignores headless Services (clusterIP None)', () => {
    expect(ignoredReason(svc({ clusterIP: 'None', ports: [{ port: 80 }] }))).toContain('headless');
    expect(ignoredReason(svc({ clusterIP: 'None', clusterIPs: ['None'], ports: [{ port: 80 }] }))).toContain('headless');
  });

  it('ignores ExternalName Services', () => {
    expect(ignoredReason(svc({ type: 'ExternalName', externalName: 'example.com' }))).toContain('ExternalName');
  });

  it('ignores Services with no cluster IP', () => {
    expect(ignoredReason(svc({ clusterIP: '', ports: [{ port: 80 }] }))).toContain('no cluster IP');
    expect(ignoredReason(svc({ ports: [{ port: 80 }] }))).toContain('no cluster IP');
  });

  it('ignores Services labelled service-proxy-name when kpx has no name', () => {
    const obj = svc(basic, { metadata: { labels: { 'service.kubernetes.io/service-proxy-name': 'other' } } });
    expect(ignoredReason(obj)).toContain('service.kubernetes.io/service-proxy-name');
    expect(ignoredReason(obj)).toContain('"other"');
  });

  it('ignores Services labelled with a different service-proxy-name', () => {
    const obj = svc(basic, { metadata: { labels: { 'service.kubernetes.io/service-proxy-name': 'other' } } });
    expect(ignoredReason(obj, { serviceProxyName: 'kpx' })).toContain('"other"');
  });

  it('reads Services labelled with kpx own service-proxy-name', () => {
    const obj = svc(basic, { metadata: { labels: { 'service.kubernetes.io/service-proxy-name': 'kpx' } } });
    expect(read(obj, { serviceProxyName: 'kpx' }).name).toBe('svc1');
  });

  it('reads unlabelled Services whatever kpx own service-proxy-name', () => {
    expect(read(svc(basic), { serviceProxyName: 'kpx' }).clusterIPs).toEqual({ IPv4: '172.30.0.41' });
  });

  it('ignores a headless Service even when its ports are invalid (nothing to validate)', () => {
    expect(ignoredReason(svc({ clusterIP: 'None', ports: [{ port: 70000 }] }))).toContain('headless');
  });
});

describe('readService: validation (FieldError path and value)', () => {
  it('rejects an out-of-range port', () => {
    const e = fieldError(
      svc({ clusterIP: '172.30.0.41', ports: [{ name: 'a', port: 80 }, { name: 'b', port: 70000 }] }),
    );
    expect(e.field).toBe('spec.ports[1].port');
    expect(e.message).toContain('70000');
    expect(e.message.startsWith('spec.ports[1].port: ')).toBe(true);
  });

  it('rejects port 0 and a missing port', () => {
    expect(fieldError(svc({ clusterIP: '172.30.0.41', ports: [{ port: 0 }] })).field).toBe('spec.ports[0].port');
    const missing = fieldError(svc({ clusterIP: '172.30.0.41', ports: [{ name: 'x' }] }));
    expect(missing.field).toBe('spec.ports[0].port');
    expect(missing.message).toContain('required');
  });

  it('rejects a non-integer port, naming the value', () => {
    const e = fieldError(svc({ clusterIP: '172.30.0.41', ports: [{ port: 'http' }] }));
    expect(e.field).toBe('spec.ports[0].port');
    expect(e.message).toContain('"http"');
  });

  it('rejects an out-of-range node port', () => {
    const e = fieldError(svc({ type: 'NodePort', clusterIP: '172.30.0.41', ports: [{ port: 80, nodePort: 65536 }] }));
    expect(e.field).toBe('spec.ports[0].nodePort');
    expect(e.message).toContain('65536');
  });

  it('rejects protocol ICMP', () => {
    const e = fieldError(svc({ clusterIP: '172.30.0.41', ports: [{ port: 80, protocol: 'ICMP' }] }));
    expect(e.field).toBe('spec.ports[0].protocol');
    expect(e.message).toContain('"ICMP"');
  });

  it('rejects a lower-case protocol (the API enum is case-sensitive)', () => {
    const e = fieldError(svc({ clusterIP: '172.30.0.41', ports: [{ port: 80, protocol: 'tcp' }] }));
    expect(e.field).toBe('spec.ports[0].protocol');
    expect(e.message).toContain('"tcp"');
  });

  it('rejects duplicate port names', () => {
    const e = fieldError(
      svc({ clusterIP: '172.30.0.41', ports: [{ name: 'http', port: 80 }, { name: 'http', port: 8080 }] }),
    );
    expect(e.field).toBe('spec.ports[1].name');
    expect(e.message).toContain('"http"');
  });

  it('requires names when there is more than one port', () => {
    const e = fieldError(svc({ clusterIP: '172.30.0.41', ports: [{ port: 80 }, { name: 'b', port: 81 }] }));
    expect(e.field).toBe('spec.ports[0].name');
    const e2 = fieldError(svc({ clusterIP: '172.30.0.41', ports: [{ name: 'a', port: 80 }, { port: 81 }] }));
    expect(e2.field).toBe('spec.ports[1].name');
  });

  it('rejects a bad clusterIP, naming the value', () => {
    const e = fieldError(svc({ clusterIP: '172.30.0.300', ports: [{ port: 80 }] }));
    expect(e.field).toBe('spec.clusterIPs[0]'); // as the apiserver reports it (clusterIPs defaulted from clusterIP)
    expect(e.message).toContain('"172.30.0.300"');
  });

  it('rejects a bad entry of clusterIPs', () => {
    const e = fieldError(
      svc({ clusterIP: '172.30.0.41', clusterIPs: ['172.30.0.41', 'fd00::zz'], ports: [{ port: 80 }] }),
    );
    expect(e.field).toBe('spec.clusterIPs[1]');
    expect(e.message).toContain('"fd00::zz"');
  });

  it('rejects clusterIP differing from clusterIPs[0]', () => {
    const e = fieldError(svc({ clusterIP: '172.30.0.41', clusterIPs: ['172.30.0.42'], ports: [{ port: 80 }] }));
    expect(e.field).toBe('spec.clusterIP');
    expect(e.message).toContain('"172.30.0.41"');
  });

  it('rejects a clusterIP whose family does not match ipFamilies', () => {
    const e = fieldError(
      svc({ clusterIP: '172.30.0.41', clusterIPs: ['172.30.0.41'], ipFamilies: ['IPv6'], ports: [{ port: 80 }] }),
    );
    expect(e.field).toBe('spec.clusterIPs[0]');
    expect(e.message).toContain('"172.30.0.41"');
    expect(e.message).toContain('IPv6');
  });

  it('rejects two cluster IPs of the same family', () => {
    const e = fieldError(
      svc({ clusterIP: '172.30.0.41', clusterIPs: ['172.30.0.41', '172.30.0.42'], ports: [{ port: 80 }] }),
    );
    expect(e.field).toBe('spec.clusterIPs[1]');
    expect(e.message).toContain('"172.30.0.42"');
  });

  it('rejects a bad ipFamilies entry', () => {
    const e = fieldError(svc({ clusterIP: '172.30.0.41', ipFamilies: ['IPv5'], ports: [{ port: 80 }] }));
    expect(e.field).toBe('spec.ipFamilies[0]');
    expect(e.message).toContain('"IPv5"');
  });

  it('rejects a bad externalIP', () => {
    const e = fieldError(svc({ ...basic, externalIPs: ['192.168.99.22', '192.168.99.256'] }));
    expect(e.field).toBe('spec.externalIPs[1]');
    expect(e.message).toContain('"192.168.99.256"');
  });

  it('rejects an externalIP with surrounding whitespace', () => {
    const e = fieldError(svc({ ...basic, externalIPs: [' 192.168.99.22'] }));
    expect(e.field).toBe('spec.externalIPs[0]');
    expect(e.message).toContain('" 192.168.99.22"');
  });

  it('rejects a bad loadBalancerSourceRanges entry', () => {
    const e = fieldError(
      svc({ ...basic, type: 'LoadBalancer', loadBalancerSourceRanges: ['203.0.113.0/25', '203.0.113.0/33'] }),
    );
    expect(e.field).toBe('spec.loadBalancerSourceRanges[1]');
    expect(e.message).toContain('"203.0.113.0/33"');
  });

  it('rejects a bad load-balancer ingress IP', () => {
    const e = fieldError(svc({ ...basic, type: 'LoadBalancer' }, { status: { loadBalancer: { ingress: [{ ip: '1.2.3' }] } } }));
    expect(e.field).toBe('status.loadBalancer.ingress[0].ip');
    expect(e.message).toContain('"1.2.3"');
  });

  it.each([0, 86401, -5])('rejects affinity timeout %i', (t) => {
    const e = fieldError(
      svc({ ...basic, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: t } } }),
    );
    expect(e.field).toBe('spec.sessionAffinityConfig.clientIP.timeoutSeconds');
    expect(e.message).toContain(String(t));
  });

  it('rejects an unknown sessionAffinity, type and traffic policy', () => {
    const a = fieldError(svc({ ...basic, sessionAffinity: 'Cookie' }));
    expect(a.field).toBe('spec.sessionAffinity');
    expect(a.message).toContain('"Cookie"');
    const t = fieldError(svc({ ...basic, type: 'Ingress' }));
    expect(t.field).toBe('spec.type');
    expect(t.message).toContain('"Ingress"');
    const p = fieldError(svc({ ...basic, externalTrafficPolicy: 'Nearest' }));
    expect(p.field).toBe('spec.externalTrafficPolicy');
    expect(p.message).toContain('"Nearest"');
    const i = fieldError(svc({ ...basic, internalTrafficPolicy: 'local' }));
    expect(i.field).toBe('spec.internalTrafficPolicy');
  });

  it('rejects a Service without a name', () => {
    const e = fieldError({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'ns1' }, spec: basic });
    expect(e.field).toBe('metadata.name');
  });

  it('rejects ports that are not a list', () => {
    const e = fieldError(svc({ clusterIP: '172.30.0.41', ports: 'http' }));
    expect(e.field).toBe('spec.ports');
    expect(e.message).toContain('"http"');
  });
});
