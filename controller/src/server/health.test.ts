import { describe, expect, it } from 'vitest';
import { FakeClock } from '../agent/clock.ts';
import { ProxyHealth, nodeEligible } from './health.ts';
import { createMetrics } from './metrics.ts';

const T0 = Date.UTC(2024, 0, 2, 3, 4, 5, 120); // 2024-01-02T03:04:05.12Z
const TIMEOUT = 60_000;

function setup(): { clock: FakeClock; health: ProxyHealth } {
  const clock = new FakeClock(T0);
  return { clock, health: new ProxyHealth({ clock, healthTimeoutMs: TIMEOUT }) };
}

function parse(body: string): Record<string, unknown> {
  return JSON.parse(body) as Record<string, unknown>;
}

describe('ProxyHealth', () => {
  it('is healthy before any update, with the exact upstream body', () => {
    const { health } = setup();
    expect(health.healthy).toBe(true);
    expect(health.lastUpdated).toBeUndefined();
    expect(health.healthz()).toEqual({
      status: 200,
      body: '{"lastUpdated":"2024-01-02T03:04:05.12Z","currentTime":"2024-01-02T03:04:05.12Z","nodeEligible":true,"healthy":true}',
    });
    expect(health.livez()).toEqual({
      status: 200,
      body: '{"lastUpdated":"2024-01-02T03:04:05.12Z","currentTime":"2024-01-02T03:04:05.12Z","healthy":true}',
    });
  });

  it('ignores queued updates of a family that has never synced', () => {
    const { clock, health } = setup();
    health.queuedUpdate('IPv4');
    clock.advance(10 * TIMEOUT);
    expect(health.healthy).toBe(true);
    expect(health.healthz().status).toBe(200);
  });

  it('turns unhealthy when an update stays queued for the timeout, and healthy again after updated()', () => {
    const { clock, health } = setup();
    health.updated('IPv4');
    clock.advance(1000);
    health.queuedUpdate('IPv4');
    clock.advance(TIMEOUT - 1);
    health.queuedUpdate('IPv4'); // does not move the oldest pending time
    expect(health.healthy).toBe(true);
    expect(health.healthz().status).toBe(200);

    clock.advance(1);
    expect(health.healthy).toBe(false);
    const healthz = health.healthz();
    expect(healthz.status).toBe(503);
    // Unhealthy: lastUpdated is the last successful sync, not the current time.
    expect(healthz.body).toBe(
      '{"lastUpdated":"2024-01-02T03:04:05.12Z","currentTime":"2024-01-02T03:05:06.12Z","nodeEligible":true,"healthy":false,' +
        '"status":{"IPv4":{"lastUpdated":"2024-01-02T03:04:05.12Z","healthy":false}}}',
    );
    expect(health.livez().status).toBe(503);
    expect(health.lastUpdated).toBe(T0);

    clock.advance(500);
    health.updated('IPv4');
    expect(health.healthy).toBe(true);
    expect(health.lastUpdated).toBe(T0 + 1000 + TIMEOUT + 500);
    const body = parse(health.healthz().body);
    expect(body.lastUpdated).toBe(body.currentTime);
    expect(body.status).toEqual({ IPv4: { lastUpdated: '2024-01-02T03:05:06.62Z', healthy: true } });
  });

  it('is unhealthy when any one family is late, and reports both families', () => {
    const { clock, health } = setup();
    health.updated('IPv4');
    health.updated('IPv6');
    clock.advance(2000);
    health.updated('IPv4');
    health.queuedUpdate('IPv6');
    clock.advance(TIMEOUT);
    expect(health.healthy).toBe(false);
    const body = parse(health.livez().body);
    expect(body.lastUpdated).toBe('2024-01-02T03:04:07.12Z');
    expect(body.status).toEqual({
      IPv4: { lastUpdated: '2024-01-02T03:04:07.12Z', healthy: true },
      IPv6: { lastUpdated: '2024-01-02T03:04:05.12Z', healthy: false },
    });
  });

  it('fails healthz but not livez when the node is not eligible', () => {
    const { health } = setup();
    health.updated('IPv4');
    health.setNodeEligible(false);
    const healthz = health.healthz();
    expect(healthz.status).toBe(503);
    expect(parse(healthz.body)).toMatchObject({ nodeEligible: false, healthy: true });
    const livez = health.livez();
    expect(livez.status).toBe(200);
    expect(parse(livez.body)).not.toHaveProperty('nodeEligible');
    health.setNodeEligible(true);
    expect(health.healthz().status).toBe(200);
  });

  it('formats whole seconds without a fraction', () => {
    const clock = new FakeClock(Date.UTC(2024, 5, 1, 0, 0, 0, 0));
    const health = new ProxyHealth({ clock, healthTimeoutMs: TIMEOUT });
    expect(parse(health.livez().body).currentTime).toBe('2024-06-01T00:00:00Z');
    clock.advance(7);
    expect(parse(health.livez().body).currentTime).toBe('2024-06-01T00:00:00.007Z');
  });

  it('counts served responses by code', async () => {
    const clock = new FakeClock(T0);
    const metrics = createMetrics();
    const health = new ProxyHealth({ clock, healthTimeoutMs: TIMEOUT, metrics });
    health.healthz();
    health.livez();
    health.setNodeEligible(false);
    health.healthz();
    health.healthz();
    const text = await metrics.registry.metrics();
    expect(text).toContain('kubeproxy_proxy_healthz_total{code="200"} 1');
    expect(text).toContain('kubeproxy_proxy_healthz_total{code="503"} 2');
    expect(text).toContain('kubeproxy_proxy_livez_total{code="200"} 1');
    expect(text).not.toContain('kubeproxy_proxy_livez_total{code="503"}');
  });
});

describe('nodeEligible', () => {
  it('accepts a plain node and rejects deleted, scale-down tainted or missing ones', () => {
    expect(nodeEligible({ metadata: { name: 'n1' }, spec: { taints: [{ key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' }] } })).toBe(true);
    expect(nodeEligible({ metadata: { name: 'n1' } })).toBe(true);
    expect(nodeEligible({ metadata: { name: 'n1', deletionTimestamp: '2024-01-01T00:00:00Z' } })).toBe(false);
    expect(nodeEligible({ metadata: { name: 'n1' }, spec: { taints: [{ key: 'ToBeDeletedByClusterAutoscaler', value: '1700000000', effect: 'NoSchedule' }] } })).toBe(false);
    expect(nodeEligible(undefined)).toBe(false);
  });
});
