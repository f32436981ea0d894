import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { JsonObject } from '../model/fields.ts';
import { FieldError } from '../model/problem.ts';
import { ChangeTracker, endpointSliceServiceKey, objectKey, semanticallyEqual } from './trackers.ts';

function service(namespace: string, name: string, extra: { rv?: string; spec?: JsonObject; labels?: Record<string, string> } = {}): JsonObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace, name, resourceVersion: extra.rv ?? '1', labels: extra.labels ?? {} },
    spec: extra.spec ?? { clusterIP: '10.96.0.10', ports: [{ port: 80, protocol: 'TCP' }] },
  };
}

function slice(namespace: string, name: string, serviceName: string | undefined, ips: string[] = ['10.244.1.5'], rv = '1'): JsonObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      namespace,
      name,
      resourceVersion: rv,
      labels: serviceName === undefined ? {} : { 'kubernetes.io/service-name': serviceName },
    },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

function withMetadata(obj: JsonObject, metadata: Record<string, unknown>): JsonObject {
  return { ...obj, metadata: { ...(obj.metadata as JsonObject), ...metadata } };
}

describe('keys', () => {
  it('keys objects by namespace/name, defaulting the namespace', () => {
    expect(objectKey(service('ns1', 'web'))).toBe('ns1/web');
    expect(objectKey({ metadata: { name: 'web' } })).toBe('default/web');
    expect(() => objectKey({ metadata: {} })).toThrow(FieldError);
  });

  it("keys an EndpointSlice's service by its service-name label", () => {
    expect(endpointSliceServiceKey(slice('ns1', 'web-abc', 'web'))).toBe('ns1/web');
    expect(endpointSliceServiceKey(slice('ns1', 'web-abc', undefined))).toBeUndefined();
    expect(endpointSliceServiceKey(slice('ns1', 'web-abc', ''))).toBeUndefined();
  });
});

describe('semanticallyEqual', () => {
  const base = slice('ns1', 'web-abc', 'web', ['10.0.0.1', '10.0.0.2']);

  it('ignores resourceVersion, generation, managedFields and selfLink only', () => {
    const bookkeeping = withMetadata(base, { resourceVersion: '99', generation: 7, managedFields: [{ manager: 'x' }], selfLink: '/x' });
    expect(semanticallyEqual(base, bookkeeping)).toBe(true);
    expect(semanticallyEqual(base, withMetadata(base, { labels: { 'kubernetes.io/service-name': 'web', extra: 'y' } }))).toBe(false);
    expect(semanticallyEqual(base, withMetadata(base, { annotations: { a: 'b' } }))).toBe(false);
    expect(semanticallyEqual(base, withMetadata(base, { uid: 'u2' }))).toBe(false);
    expect(semanticallyEqual(base, { ...base, status: {} })).toBe(false);
  });

  it('compares arrays in order and nested values deeply', () => {
    expect(semanticallyEqual(base, slice('ns1', 'web-abc', 'web', ['10.0.0.1', '10.0.0.2'], '5'))).toBe(true);
    expect(semanticallyEqual(base, slice('ns1', 'web-abc', 'web', ['10.0.0.2', '10.0.0.1']))).toBe(false);
    expect(semanticallyEqual(base, slice('ns1', 'web-abc', 'web', ['10.0.0.1']))).toBe(false);
    const notReady = { ...base, endpoints: [{ addresses: ['10.0.0.1'], conditions: { ready: false } }, { addresses: ['10.0.0.2'], conditions: { ready: true } }] };
    expect(semanticallyEqual(base, notReady)).toBe(false);
    expect(semanticallyEqual({ a: [1] }, { a: { 0: 1 } })).toBe(false);
    expect(semanticallyEqual({ a: { 0: 1 } }, { a: [1] })).toBe(false);
    expect(semanticallyEqual({ a: null }, { a: {} })).toBe(false);
    expect(semanticallyEqual({ a: null }, {})).toBe(false);
  });

  it('treats undefined-valued properties as absent', () => {
    expect(semanticallyEqual({ a: 1, b: undefined }, { a: 1 })).toBe(true);
    expect(semanticallyEqual({ a: 1 }, { a: 1, b: { c: undefined } })).toBe(false);
    expect(semanticallyEqual({ spec: { x: 1 } }, { spec: { x: 1, y: undefined } })).toBe(true);
    expect(semanticallyEqual({ spec: { x: 1 } }, { spec: { x: 1, y: 2 } })).toBe(false);
    expect(semanticallyEqual(base, undefined)).toBe(false);
    expect(semanticallyEqual(undefined, undefined)).toBe(true);
  });
});

describe('ChangeTracker', () => {
  it('reports an added Service on drain and then applies it', () => {
    const t = new ChangeTracker('Service');
    expect(t.update(undefined, service('ns1', 'web'))).toBe(true);
    expect(t.pending).toBe(1);
    expect(t.objects()).toEqual([]);
    const result = t.drain();
    expect([...result.updatedServices]).toEqual(['ns1/web']);
    expect(result.changes).toBe(1);
    expect(t.pending).toBe(0);
    expect(t.objects()).toEqual([service('ns1', 'web')]);
    const again = t.drain();
    expect(again.changes).toBe(0);
    expect(again.updatedServices.size).toBe(0);
  });

  it('drops an add followed by a delete before the drain', () => {
    const t = new ChangeTracker('Service');
    t.update(undefined, service('ns1', 'web'));
    expect(t.update(service('ns1', 'web'), undefined)).toBe(false);
    expect(t.pending).toBe(0);
    expect(t.drain()).toEqual({ updatedServices: new Set(), changes: 0 });
    expect(t.objects()).toEqual([]);
  });

  it('drops bookkeeping-only updates and changes reverted before the drain', () => {
    const t = new ChangeTracker('Service');
    const v1 = service('ns1', 'web');
    t.update(undefined, v1);
    t.drain();
    expect(t.update(v1, service('ns1', 'web', { rv: '2' }))).toBe(false);
    const changed = service('ns1', 'web', { rv: '3', spec: { clusterIP: '10.96.0.11' } });
    expect(t.update(service('ns1', 'web', { rv: '2' }), changed)).toBe(true);
    expect(t.update(changed, service('ns1', 'web', { rv: '4' }))).toBe(false);
    expect(t.drain().changes).toBe(0);
  });

  it('reports label and spec changes, and deletes', () => {
    const t = new ChangeTracker('Service');
    const v1 = service('ns1', 'web');
    t.update(undefined, v1);
    t.update(undefined, service('ns1', 'db'));
    t.drain();
    const labelled = service('ns1', 'web', { labels: { 'service.kubernetes.io/service-proxy-name': 'other' } });
    t.update(v1, labelled);
    t.update(service('ns1', 'db'), undefined);
    expect(t.pending).toBe(2);
    const result = t.drain();
    expect([...result.updatedServices].sort()).toEqual(['ns1/db', 'ns1/web']);
    expect(t.objects()).toEqual([labelled]);
  });

  it('keeps the first previous: a slice moved twice before a drain touches only its first and last service', () => {
    const t = new ChangeTracker('EndpointSlice');
    const a = slice('ns1', 's-1', 'a');
    t.update(undefined, a);
    t.drain();
    const b = slice('ns1', 's-1', 'b');
    const c = slice('ns1', 's-1', 'c');
    t.update(a, b);
    t.update(b, c);
    expect(t.pending).toBe(1);
    expect([...t.drain().updatedServices].sort()).toEqual(['ns1/a', 'ns1/c']);
  });

  it("reports the previous object's service even when its add was never seen", () => {
    const t = new ChangeTracker('EndpointSlice');
    t.update(slice('ns1', 's-1', 'a'), slice('ns1', 's-1', 'b'));
    expect([...t.drain().updatedServices].sort()).toEqual(['ns1/a', 'ns1/b']);
  });

  it('reports both services when a slice moves to another service', () => {
    const t = new ChangeTracker('EndpointSlice');
    const a = slice('ns1', 's-1', 'a');
    t.update(undefined, a);
    t.drain();
    t.update(a, slice('ns1', 's-1', 'b'));
    expect([...t.drain().updatedServices].sort()).toEqual(['ns1/a', 'ns1/b']);
  });

  it('tracks slices without a service label but reports no service for them', () => {
    const t = new ChangeTracker('EndpointSlice');
    const orphan = slice('ns1', 'orphan', undefined);
    t.update(undefined, orphan);
    t.update(undefined, slice('ns1', 'web-1', 'web'));
    const result = t.drain();
    expect(result.changes).toBe(2);
    expect([...result.updatedServices]).toEqual(['ns1/web']);
    expect(t.objects()).toContain(orphan);
    t.update(orphan, slice('ns1', 'orphan', undefined, ['10.244.9.9']));
    expect(t.drain()).toEqual({ updatedServices: new Set(), changes: 1 });
  });

  it('refuses an update whose previous and current are different objects', () => {
    const t = new ChangeTracker('Service');
    expect(() => t.update(service('ns1', 'a'), service('ns1', 'b'))).toThrow(/ns1\/b.*ns1\/a/);
  });

  it('orders objects by namespace then name and recomputes the order after changes', () => {
    const t = new ChangeTracker('Service');
    for (const [ns, name] of [['b', 'x'], ['a-b', 'y'], ['a', 'z'], ['a', 'm']] as const) t.update(undefined, service(ns, name));
    t.drain();
    const keys = (): string[] => t.objects().map(objectKey);
    expect(keys()).toEqual(['a/m', 'a/z', 'a-b/y', 'b/x']);
    t.objects().length = 0;
    expect(keys()).toEqual(['a/m', 'a/z', 'a-b/y', 'b/x']);
    t.update(undefined, service('a', 'n'));
    t.update(service('a', 'z'), undefined);
    expect(keys()).toEqual(['a/m', 'a/z', 'a-b/y', 'b/x']);
    t.drain();
    expect(keys()).toEqual(['a/m', 'a/n', 'a-b/y', 'b/x']);
  });

  it('handles 20k slices', () => {
    const t = new ChangeTracker('EndpointSlice');
    const n = 20_000;
    for (let i = 0; i < n; i++) t.update(undefined, slice(`ns${String(i % 100)}`, `s-${String(i)}`, `svc-${String(i % 10_000)}`));
    const result = t.drain();
    expect(result.changes).toBe(n);
    expect(result.updatedServices.size).toBe(10_000);
    const objects = t.objects();
    expect(objects).toHaveLength(n);
    expect(t.objects()).toEqual(objects);
  });

  // Model check: drive the tracker with a random informer event stream and compare every drain with
  // the net difference between the states at consecutive drains.
  it('drains exactly the net semantic changes of any event stream', () => {
    const variant = (name: string, v: number): JsonObject => slice('ns1', name, ['a', 'b', undefined][v % 3], [`10.0.0.${String(v % 2)}`], String(v));
    const op = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), name: fc.constantFrom('s1', 's2', 's3'), v: fc.nat(11) }),
      fc.record({ kind: fc.constant('delete' as const), name: fc.constantFrom('s1', 's2', 's3') }),
      fc.record({ kind: fc.constant('drain' as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const t = new ChangeTracker('EndpointSlice');
        const live = new Map<string, JsonObject>();
        let atDrain = new Map<string, JsonObject>();
        const check = (): void => {
          const expected = new Set<string>();
          let changes = 0;
          for (const name of new Set([...live.keys(), ...atDrain.keys()])) {
            const before = atDrain.get(name);
            const after = live.get(name);
            if (semanticallyEqual(before, after)) continue;
            changes++;
            for (const obj of [before, after]) {
              const key = obj === undefined ? undefined : endpointSliceServiceKey(obj);
              if (key !== undefined) expected.add(key);
            }
          }
          expect(t.pending).toBe(changes);
          expect(t.drain()).toEqual({ updatedServices: expected, changes });
          const objects = t.objects();
          const want = [...live.entries()].sort(([x], [y]) => (x < y ? -1 : 1)).map(([, obj]) => obj);
          expect(objects).toHaveLength(want.length);
          objects.forEach((obj, i) => {
            expect(semanticallyEqual(obj, want[i])).toBe(true);
          });
          atDrain = new Map(live);
        };
        for (const o of ops) {
          if (o.kind === 'drain') {
            check();
            continue;
          }
          const previous = live.get(o.name);
          const current = o.kind === 'set' ? variant(o.name, o.v) : undefined;
          if (previous === undefined && current === undefined) continue;
          if (current === undefined) live.delete(o.name);
          else live.set(o.name, current);
          t.update(previous, current);
        }
        check();
      }),
    );
  });
});
