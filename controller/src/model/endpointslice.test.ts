import { describe, expect, it } from 'vitest';
import { readEndpointSlice, type EndpointSliceInfo, type EndpointSliceReading } from './endpointslice.ts';
import type { JsonObject } from './fields.ts';
import { FieldError } from './problem.ts';

const SVC_LABEL = { 'kubernetes.io/service-name': 'svc1' };

function slice(body: Record<string, unknown>, labels: Record<string, string> = SVC_LABEL): JsonObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: 'ns1', name: 'svc1-abc', labels },
    addressType: 'IPv4',
    ports: [{ name: 'p80', port: 80, protocol: 'TCP' }],
    ...body,
  };
}

function readSlice(obj: JsonObject): { slice: EndpointSliceInfo; notes: readonly string[] } {
  const r: EndpointSliceReading = readEndpointSlice(obj);
  if (r.kind !== 'slice') throw new Error(`expected a slice, got ignored: ${r.reason}`);
  return { slice: r.slice, notes: r.notes };
}

function ignoredReason(obj: JsonObject): string {
  const r = readEndpointSlice(obj);
  if (r.kind !== 'ignored') throw new Error('expected the slice to be ignored');
  return r.reason;
}

function fieldError(obj: JsonObject): FieldError {
  try {
    readEndpointSlice(obj);
  } catch (error) {
    if (error instanceof FieldError) return error;
    throw error;
  }
  throw new Error('expected a FieldError');
}

describe('readEndpointSlice: reading', () => {
  it('reads ports and endpoints with API defaults for the conditions', () => {
    const { slice: s, notes } = readSlice(
      slice({
        endpoints: [
          { addresses: ['10.180.0.1'], nodeName: 'node-a' },
          { addresses: ['10.180.0.2'], conditions: { ready: false, serving: true, terminating: true } },
          { addresses: ['10.180.0.3'], conditions: { ready: null } },
        ],
      }),
    );
    expect(notes).toEqual([]);
    expect(s).toEqual({
      namespace: 'ns1',
      name: 'svc1-abc',
      serviceName: 'svc1',
      family: 'IPv4',
      ports: [{ name: 'p80', port: 80, protocol: 'TCP' }],
      endpoints: [
        { ip: '10.180.0.1', ready: true, serving: true, terminating: false, nodeName: 'node-a', zoneHints: [], nodeHints: [] },
        { ip: '10.180.0.2', ready: false, serving: true, terminating: true, nodeName: '', zoneHints: [], nodeHints: [] },
        { ip: '10.180.0.3', ready: true, serving: true, terminating: false, nodeName: '', zoneHints: [], nodeHints: [] },
      ],
    });
  });

  it('uses addresses[0] only, canonicalised', () => {
    const { slice: s } = readSlice(slice({ endpoints: [{ addresses: ['010.180.000.001', '10.180.0.9'] }] }));
    expect(s.endpoints.map((e) => e.ip)).toEqual(['10.180.0.1']);
  });

  it('canonicalises IPv6 addresses', () => {
    const { slice: s } = readSlice(slice({ addressType: 'IPv6', endpoints: [{ addresses: ['FF06:0:0::C1'] }] }));
    expect(s.family).toBe('IPv6');
    expect(s.endpoints.map((e) => e.ip)).toEqual(['ff06::c1']);
  });

  it('reads zone and node hints', () => {
    const { slice: s } = readSlice(
      slice({
        endpoints: [
          {
            addresses: ['10.180.0.1'],
            hints: { forZones: [{ name: 'zone-a' }, { name: 'zone-b' }], forNodes: [{ name: 'node-a' }] },
          },
        ],
      }),
    );
    expect(s.endpoints[0]?.zoneHints).toEqual(['zone-a', 'zone-b']);
    expect(s.endpoints[0]?.nodeHints).toEqual(['node-a']);
  });

  it('skips endpoints without addresses', () => {
    const { slice: s } = readSlice(slice({ endpoints: [{ addresses: [] }, { addresses: ['10.180.0.2'] }] }));
    expect(s.endpoints.map((e) => e.ip)).toEqual(['10.180.0.2']);
  });

  it('defaults the port protocol to TCP and keeps an explicit empty name (unnamed service port)', () => {
    const { slice: s } = readSlice(slice({ ports: [{ name: '', port: 8080 }, { name: 'dns', port: 53, protocol: 'UDP' }] }));
    expect(s.ports).toEqual([
      { name: '', port: 8080, protocol: 'TCP' },
      { name: 'dns', port: 53, protocol: 'UDP' },
    ]);
  });

  it('ignores ports with a nil name or a nil/0 port number, with a note naming the port', () => {
    const { slice: s, notes } = readSlice(
      slice({ ports: [{ port: 80 }, { name: 'a' }, { name: 'b', port: 0 }, { name: 'c', port: 81 }] }),
    );
    expect(s.ports).toEqual([{ name: 'c', port: 81, protocol: 'TCP' }]);
    expect(notes).toHaveLength(3);
    expect(notes[0]).toContain('ports[0]');
    expect(notes[1]).toContain('ports[1]');
    expect(notes[2]).toContain('ports[2]');
  });
});

describe('readEndpointSlice: ignored slices', () => {
  it('ignores slices without kubernetes.io/service-name', () => {
    expect(ignoredReason(slice({}, {}))).toContain('kubernetes.io/service-name');
    expect(ignoredReason(slice({}, { 'kubernetes.io/service-name': '' }))).toContain('kubernetes.io/service-name');
  });

  it('ignores headless-labelled slices', () => {
    expect(ignoredReason(slice({}, { ...SVC_LABEL, 'service.kubernetes.io/headless': '' }))).toContain(
      'service.kubernetes.io/headless',
    );
  });

  it('reads slices labelled service-proxy-name: only headless-labelled slices are dropped (reference §1.0)', () => {
    // The EndpointSlice controller copies a Service's labels to its slices, so the slices of a
    // Service labelled with kpx's own service-proxy-name carry that label too.
    const r = readEndpointSlice(
      slice({ endpoints: [{ addresses: ['10.180.0.1'] }] }, { ...SVC_LABEL, 'service.kubernetes.io/service-proxy-name': 'kpx' }),
    );
    expect(r.kind).toBe('slice');
  });

  it('ignores FQDN slices (their addresses are not IPs)', () => {
    expect(ignoredReason(slice({ addressType: 'FQDN', endpoints: [{ addresses: ['web.example.com'] }] }))).toContain('FQDN');
  });
});

describe('readEndpointSlice: validation', () => {
  it('rejects an address that does not match addressType IPv4', () => {
    const e = fieldError(slice({ endpoints: [{ addresses: ['10.180.0.1'] }, { addresses: ['fd00::1'] }] }));
    expect(e.field).toBe('endpoints[1].addresses[0]');
    expect(e.message).toContain('"fd00::1"');
    expect(e.message).toContain('IPv4');
  });

  it('rejects an address that does not match addressType IPv6', () => {
    const e = fieldError(slice({ addressType: 'IPv6', endpoints: [{ addresses: ['10.180.0.1'] }] }));
    expect(e.field).toBe('endpoints[0].addresses[0]');
    expect(e.message).toContain('"10.180.0.1"');
    expect(e.message).toContain('IPv6');
  });

  it('rejects an invalid later address of an endpoint', () => {
    const e = fieldError(slice({ endpoints: [{ addresses: ['10.180.0.1', '10.180.0.999'] }] }));
    expect(e.field).toBe('endpoints[0].addresses[1]');
    expect(e.message).toContain('"10.180.0.999"');
  });

  it('rejects a missing or unknown addressType', () => {
    const obj: Record<string, unknown> = { ...slice({}) };
    delete obj.addressType;
    expect(fieldError(obj).field).toBe('addressType');
    const e = fieldError(slice({ addressType: 'IPv5' }));
    expect(e.field).toBe('addressType');
    expect(e.message).toContain('"IPv5"');
  });

  it('rejects an out-of-range port', () => {
    const e = fieldError(slice({ ports: [{ name: 'a', port: 80 }, { name: 'b', port: 70000 }] }));
    expect(e.field).toBe('ports[1].port');
    expect(e.message).toContain('70000');
  });

  it('rejects a non-integer port', () => {
    const e = fieldError(slice({ ports: [{ name: 'a', port: 'eighty' }] }));
    expect(e.field).toBe('ports[0].port');
    expect(e.message).toContain('"eighty"');
  });

  it('rejects an unknown port protocol', () => {
    const e = fieldError(slice({ ports: [{ name: 'a', port: 80, protocol: 'ICMP' }] }));
    expect(e.field).toBe('ports[0].protocol');
    expect(e.message).toContain('"ICMP"');
  });

  it('rejects non-boolean conditions', () => {
    const e = fieldError(slice({ endpoints: [{ addresses: ['10.180.0.1'], conditions: { ready: 'yes' } }] }));
    expect(e.field).toBe('endpoints[0].conditions.ready');
    expect(e.message).toContain('"yes"');
  });
});
