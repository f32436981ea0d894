/**
 * healthCheckNodePort servers for `externalTrafficPolicy: Local` Services, as kube-proxy runs them:
 * one HTTP server per Service on its healthCheckNodePort (on 0.0.0.0, or on each node IP matching
 * nodePortAddresses), answering 200 when the node has a local ready endpoint and the proxy is
 * healthy, else 503, so cloud load balancers only send traffic to nodes that can serve it.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { Logger } from '../agent/log.ts';
import { closeServer, listen, send } from './http.ts';

interface Instance {
  readonly port: number;
  readonly servers: readonly Server[];
}

/** The body upstream writes: tab-indented JSON without a trailing newline. */
export function serviceHealthBody(service: string, localEndpoints: number, healthy: boolean): string {
  const slash = service.indexOf('/');
  const namespace = service.slice(0, slash);
  const name = service.slice(slash + 1);
  return [
    '{',
    '\t"service": {',
    `\t\t"namespace": ${JSON.stringify(namespace)},`,
    `\t\t"name": ${JSON.stringify(name)}`,
    '\t},',
    `\t"localEndpoints": ${String(localEndpoints)},`,
    `\t"serviceProxyHealthy": ${String(healthy)}`,
    '}',
  ].join('\n');
}

export class ServiceHealthServers {
  readonly #addresses: readonly string[];
  readonly #health: { readonly healthy: boolean };
  readonly #log: Logger;
  readonly #instances = new Map<string, Instance>();
  #counts: ReadonlyMap<string, number> = new Map();
  /** syncServices calls run one after another. */
  #queue: Promise<void> = Promise.resolve();

  constructor(options: { addresses: readonly string[]; health: { readonly healthy: boolean }; log: Logger }) {
    this.#addresses = options.addresses;
    this.#health = options.health;
    this.#log = options.log;
  }

  /** "namespace/name" → port of the listeners that are open now. */
  get listening(): ReadonlyMap<string, number> {
    return new Map([...this.#instances].map(([service, instance]) => [service, instance.port]));
  }

  /**
   * Desired set: "namespace/name" → healthCheckNodePort. Opens new listeners, closes removed ones
   * (and those whose port changed); a port that fails to bind is logged and retried on the next
   * sync (never throws).
   */
  syncServices(ports: ReadonlyMap<string, number>): Promise<void> {
    this.#queue = this.#queue.then(() => this.#sync(ports));
    return this.#queue;
  }

  /** "namespace/name" → number of local ready endpoints (distinct IPs); absent means 0. */
  syncEndpoints(counts: ReadonlyMap<string, number>): void {
    this.#counts = new Map(counts);
  }

  close(): Promise<void> {
    return this.syncServices(new Map());
  }

  async #sync(ports: ReadonlyMap<string, number>): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const [service, instance] of this.#instances) {
      if (ports.get(service) === instance.port) continue;
      this.#log.info('closing healthcheck', { service, port: instance.port });
      this.#instances.delete(service);
      closing.push(...instance.servers.map(closeServer));
    }
    await Promise.all(closing);
    for (const [service, port] of ports) {
      if (this.#instances.has(service)) continue;
      const servers = await this.#open(service, port);
      if (servers !== undefined) this.#instances.set(service, { port, servers });
    }
  }

  /** Listens on every address, or on none (closing what was opened) if one fails. */
  async #open(service: string, port: number): Promise<Server[] | undefined> {
    const servers: Server[] = [];
    try {
      for (const address of this.#addresses) {
        const server = createServer((_req, res) => {
          const count = this.#counts.get(service) ?? 0;
          const healthy = this.#health.healthy;
          send(res, count > 0 && healthy ? 200 : 503, 'application/json', serviceHealthBody(service, count, healthy), {
            'X-Load-Balancing-Endpoint-Weight': String(count),
          });
        });
        servers.push(server);
        await listen(server, address, port);
      }
      this.#log.info('opened healthcheck', { service, port });
      return servers;
    } catch (err) {
      this.#log.error('failed to start healthcheck, will retry on the next sync', { service, port, error: err });
      await Promise.all(servers.filter((s) => s.listening).map(closeServer));
      return undefined;
    }
  }
}
