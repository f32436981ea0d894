import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { jsonLogger } from '../agent/log.ts';
import type { Logger } from '../agent/log.ts';
import { closeServer, listen } from './http.ts';
import { ServiceHealthServers } from './service-health.ts';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(cleanup.splice(0).map((f) => f()));
});

/** A port that was free a moment ago. */
async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = createServer();
  const port = await listen(s, host, 0);
  await closeServer(s);
  return port;
}

async function occupy(host: string, port: number): Promise<Server> {
  const s = createServer();
  await listen(s, host, port);
  cleanup.push(() => closeServer(s));
  return s;
}

function capture(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { lines, log: jsonLogger({ level: 'debug', write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) }) };
}

function servers(options: { addresses?: readonly string[]; health?: { healthy: boolean }; log?: Logger } = {}): ServiceHealthServers {
  const s = new ServiceHealthServers({ addresses: options.addresses ?? ['127.0.0.1'], health: options.health ?? { healthy: true }, log: options.log ?? capture().log });
  cleanup.push(() => s.close());
  return s;
}

async function probe(port: number, host = '127.0.0.1'): Promise<{ status: number; weight: string | null; type: string | null; body: string } | 'refused'> {
  try {
    const res = await fetch(`http://${host}:${String(port)}/`);
    return { status: res.status, weight: res.headers.get('x-load-balancing-endpoint-weight'), type: res.headers.get('content-type'), body: await res.text() };
  } catch {
    return 'refused';
  }
}

describe('ServiceHealthServers', () => {
  it('answers 200 only with local endpoints and a healthy proxy, in upstream format', async () => {
    const health = { healthy: true };
    const hc = servers({ health });
    const port = await freePort();
    await hc.syncServices(new Map([['shop/web', port]]));

    expect(await probe(port)).toEqual({
      status: 503,
      weight: '0',
      type: 'application/json',
      body: '{\n\t"service": {\n\t\t"namespace": "shop",\n\t\t"name": "web"\n\t},\n\t"localEndpoints": 0,\n\t"serviceProxyHealthy": true\n}',
    });

    hc.syncEndpoints(new Map([['shop/web', 2]]));
    const ok = await probe(port);
    expect(ok).toMatchObject({ status: 200, weight: '2' });
    expect(ok !== 'refused' && JSON.parse(ok.body)).toEqual({ service: { namespace: 'shop', name: 'web' }, localEndpoints: 2, serviceProxyHealthy: true });

    health.healthy = false;
    const sick = await probe(port);
    expect(sick).toMatchObject({ status: 503, weight: '2' });
    expect(sick !== 'refused' && JSON.parse(sick.body)).toMatchObject({ localEndpoints: 2, serviceProxyHealthy: false });

    health.healthy = true;
    hc.syncEndpoints(new Map());
    expect(await probe(port)).toMatchObject({ status: 503, weight: '0' });
  });

  it('opens and closes listeners as the desired set changes', async () => {
    const hc = servers();
    const [a, b, c] = [await freePort(), await freePort(), await freePort()];
    await hc.syncServices(new Map([['ns/a', a], ['ns/b', b]]));
    expect(hc.listening).toEqual(new Map([['ns/a', a], ['ns/b', b]]));
    hc.syncEndpoints(new Map([['ns/a', 1], ['ns/b', 1]]));
    expect(await probe(a)).toMatchObject({ status: 200 });
    expect(await probe(b)).toMatchObject({ status: 200 });

    // b removed, a moves to port c.
    await hc.syncServices(new Map([['ns/a', c]]));
    expect(hc.listening).toEqual(new Map([['ns/a', c]]));
    expect(await probe(a)).toBe('refused');
    expect(await probe(b)).toBe('refused');
    expect(await probe(c)).toMatchObject({ status: 200, weight: '1' });

    await hc.close();
    expect(hc.listening.size).toBe(0);
    expect(await probe(c)).toBe('refused');
  });

  it('logs a port that is in use, keeps the others, and retries it on the next sync', async () => {
    const { log, lines } = capture();
    const hc = servers({ log });
    const [busy, free] = [await freePort(), await freePort()];
    const blocker = await occupy('127.0.0.1', busy);

    await expect(hc.syncServices(new Map([['ns/busy', busy], ['ns/free', free]]))).resolves.toBeUndefined();
    expect(hc.listening).toEqual(new Map([['ns/free', free]]));
    expect(lines.filter((l) => l.level === 'error')).toEqual([
      expect.objectContaining({ service: 'ns/busy', port: busy, error: `cannot listen on 127.0.0.1:${String(busy)}: EADDRINUSE` }),
    ]);

    await hc.syncServices(new Map([['ns/busy', busy], ['ns/free', free]]));
    expect(hc.listening.has('ns/busy')).toBe(false);

    await closeServer(blocker);
    await hc.syncServices(new Map([['ns/busy', busy], ['ns/free', free]]));
    expect(hc.listening).toEqual(new Map([['ns/busy', busy], ['ns/free', free]]));
    expect(await probe(busy)).toMatchObject({ status: 503, weight: '0' });
  });

  it('listens on every address, or on none when one of them fails', async () => {
    const hc = servers({ addresses: ['127.0.0.1', '127.0.0.2'] });
    const port = await freePort();
    await hc.syncServices(new Map([['ns/both', port]]));
    hc.syncEndpoints(new Map([['ns/both', 1]]));
    expect(await probe(port, '127.0.0.1')).toMatchObject({ status: 200 });
    expect(await probe(port, '127.0.0.2')).toMatchObject({ status: 200 });

    const other = await freePort();
    await occupy('127.0.0.2', other);
    await hc.syncServices(new Map([['ns/both', port], ['ns/half', other]]));
    expect(hc.listening).toEqual(new Map([['ns/both', port]]));
    // The listener opened on 127.0.0.1 before 127.0.0.2 failed was closed again.
    expect(await probe(other, '127.0.0.1')).toBe('refused');
  });
});
