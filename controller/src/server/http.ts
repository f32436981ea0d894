/**
 * The agent's two HTTP servers, as kube-proxy serves them: the health server (/healthz, /livez;
 * default 0.0.0.0:10256) and the metrics server (/metrics, /healthz, /proxyMode, /configz;
 * default 127.0.0.1:10249).
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Logger } from '../agent/log.ts';
import { joinHostPort } from '../model/ip.ts';
import type { HealthResponse } from './health.ts';
import type { ProxyMetrics } from './metrics.ts';

export interface RunningServer {
  /** The bound port (the ephemeral one when 0 was asked for). */
  readonly port: number;
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

const NOSNIFF = { 'X-Content-Type-Options': 'nosniff' } as const;

export function send(res: ServerResponse, status: number, contentType: string, body: string, headers: Readonly<Record<string, string>> = {}): void {
  res.writeHead(status, { 'Content-Type': contentType, ...NOSNIFF, ...headers, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** Binds `server` to host:port; a failure is one line naming the address. */
export function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new Error(`cannot listen on ${joinHostPort(host, port)}: ${err.code ?? err.message}`));
    };
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => {
      resolve();
    });
    server.closeIdleConnections();
  });
}

async function serve(name: string, host: string, port: number, log: Logger, routes: ReadonlyMap<string, Handler>): Promise<RunningServer> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const handler = routes.get(path);
    if (handler === undefined) {
      send(res, 404, 'text/plain; charset=utf-8', '404 page not found\n');
      return;
    }
    Promise.resolve(handler(req, res)).catch((err: unknown) => {
      log.error('request failed', { server: name, path, error: err });
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  });
  const bound = await listen(server, host, port);
  log.info(`${name} server listening`, { address: joinHostPort(host, bound) });
  return { port: bound, close: () => closeServer(server) };
}

function sendHealth(res: ServerResponse, response: HealthResponse): void {
  send(res, response.status, 'application/json', response.body);
}

export function startHealthServer(options: {
  host: string;
  port: number;
  health: { healthz(): HealthResponse; livez(): HealthResponse };
  log: Logger;
}): Promise<RunningServer> {
  const { health } = options;
  const routes = new Map<string, Handler>([
    ['/healthz', (_req, res) => {
      sendHealth(res, health.healthz());
    }],
    ['/livez', (_req, res) => {
      sendHealth(res, health.livez());
    }],
  ]);
  return serve('health', options.host, options.port, options.log, routes);
}

export function startMetricsServer(options: {
  host: string;
  port: number;
  metrics: Pick<ProxyMetrics, 'registry'>;
  log: Logger;
  proxyMode: 'iptables';
  configz?: () => unknown;
}): Promise<RunningServer> {
  const { registry } = options.metrics;
  const text = 'text/plain; charset=utf-8';
  const routes = new Map<string, Handler>([
    ['/metrics', async (_req, res) => {
      send(res, 200, registry.contentType, await registry.metrics());
    }],
    ['/healthz', (_req, res) => {
      send(res, 200, text, 'ok');
    }],
    ['/proxyMode', (_req, res) => {
      send(res, 200, text, options.proxyMode);
    }],
  ]);
  const configz = options.configz;
  if (configz !== undefined) {
    routes.set('/configz', (_req, res) => {
      send(res, 200, 'application/json', JSON.stringify(configz()));
    });
  }
  return serve('metrics', options.host, options.port, options.log, routes);
}
