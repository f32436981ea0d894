/**
 * Test support: a real HTTP server on 127.0.0.1 standing in for the apiserver in unit tests of
 * the status and event writers. Subclasses decide the answers; this class records nothing itself.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';

export abstract class TestApiServer {
  readonly #server: Server;

  constructor() {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.handle(req, res, Buffer.concat(chunks).toString('utf8'));
      });
    });
  }

  protected abstract handle(req: IncomingMessage, res: ServerResponse, body: string): void;

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => { resolve(); }));
  }

  /** A kubeconfig pointing at this server over plain HTTP. */
  kubeConfig(): KubeConfig {
    const { port } = this.#server.address() as AddressInfo;
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: `http://127.0.0.1:${String(port)}`, skipTLSVerify: true }],
      users: [{ name: 'kpx', token: 'test' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'kpx' }],
      currentContext: 'fake',
    });
    return kc;
  }
}
