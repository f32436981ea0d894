import { createServer } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../agent/clock.ts';
import { silentLogger } from '../agent/log.ts';
import { ProxyHealth } from './health.ts';
import { closeServer, listen, startHealthServer, startMetricsServer } from './http.ts';
import type { RunningServer } from './http.ts';
import { createMetrics } from './metrics.ts';

const running: RunningServer[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()));
});

async function started(server: Promise<RunningServer>): Promise<string> {
  const s = await server;
  running.push(s);
  return `http://127.0.0.1:${String(s.port)}`;
}

describe('startHealthServer', () => {
  it('serves /healthz and /livez with kube-proxy headers and counts them', async () => {
    const clock = new FakeClock(Date.UTC(2024, 0, 1));
    const metrics = createMetrics();
    const health = new ProxyHealth({ clock, healthTimeoutMs: 1000, metrics });
    const base = await started(startHealthServer({ host: '127.0.0.1', port: 0, health, log: silentLogger }));

    let res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await res.text()).toBe('{"lastUpdated":"2024-01-01T00:00:00Z","currentTime":"2024-01-01T00:00:00Z","nodeEligible":true,"healthy":true}');

    health.updated('IPv4');
    health.queuedUpdate('IPv4');
    clock.advance(1000);
    res = await fetch(`${base}/healthz?verbose=1`);
    expect(res.status).toBe(503);
    expect(JSON.parse(await res.text())).toMatchObject({ healthy: false, lastUpdated: '2024-01-01T00:00:00Z', currentTime: '2024-01-01T00:00:01Z' });

    health.updated('IPv4');
    health.setNodeEligible(false);
    expect((await fetch(`${base}/healthz`)).status).toBe(503);
    res = await fetch(`${base}/livez`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.text()).toBe('{"lastUpdated":"2024-01-01T00:00:01Z","currentTime":"2024-01-01T00:00:01Z","healthy":true,"status":{"IPv4":{"lastUpdated":"2024-01-01T00:00:01Z","healthy":true}}}');

    res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(404);
    expect(await res.text()).toBe('404 page not found\n');

    const text = await metrics.registry.metrics();
    expect(text).toContain('kubeproxy_proxy_healthz_total{code="200"} 1');
    expect(text).toContain('kubeproxy_proxy_healthz_total{code="503"} 2');
    expect(text).toContain('kubeproxy_proxy_livez_total{code="200"} 1');
  });
});

describe('startMetricsServer', () => {
  it('serves /metrics, /healthz, /proxyMode and /configz', async () => {
    const metrics = createMetrics();
    metrics.syncProxyRulesDuration.observe({ ip_family: 'IPv4' }, 0.02);
    const base = await started(
      startMetricsServer({ host: '127.0.0.1', port: 0, metrics, log: silentLogger, proxyMode: 'iptables', configz: () => ({ 'kubeproxy.config.k8s.io': { mode: 'iptables' } }) }),
    );

    let res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    expect(text).toContain('# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram');
    expect(text).toContain('kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.032",ip_family="IPv4"} 1');

    res = await fetch(`${base}/healthz`);
    expect([res.status, res.headers.get('content-type'), await res.text()]).toEqual([200, 'text/plain; charset=utf-8', 'ok']);
    res = await fetch(`${base}/proxyMode`);
    expect([res.status, await res.text()]).toEqual([200, 'iptables']);
    res = await fetch(`${base}/configz`);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toEqual({ 'kubeproxy.config.k8s.io': { mode: 'iptables' } });
  });

  it('has no /configz without a config source', async () => {
    const base = await started(startMetricsServer({ host: '127.0.0.1', port: 0, metrics: createMetrics(), log: silentLogger, proxyMode: 'iptables' }));
    expect((await fetch(`${base}/configz`)).status).toBe(404);
  });

  it('stops answering once closed', async () => {
    const server = await startMetricsServer({ host: '127.0.0.1', port: 0, metrics: createMetrics(), log: silentLogger, proxyMode: 'iptables' });
    const url = `http://127.0.0.1:${String(server.port)}/healthz`;
    expect((await fetch(url)).status).toBe(200);
    await server.close();
    await expect(fetch(url)).rejects.toThrow();
  });

  it('fails with one line naming the address when the port is taken', async () => {
    const blocker = createServer();
    const port = await listen(blocker, '127.0.0.1', 0);
    try {
      const error = await startMetricsServer({ host: '127.0.0.1', port, metrics: createMetrics(), log: silentLogger, proxyMode: 'iptables' }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toBe(`cannot listen on 127.0.0.1:${String(port)}: EADDRINUSE`);
      const health = new ProxyHealth({ clock: new FakeClock(), healthTimeoutMs: 1 });
      await expect(startHealthServer({ host: '2001:db8::1', port: 10256, health, log: silentLogger })).rejects.toThrow(/^cannot listen on \[2001:db8::1\]:10256: E[A-Z]+$/);
    } finally {
      await closeServer(blocker);
    }
  });
});
