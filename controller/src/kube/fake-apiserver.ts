/**
 * Test double of the API server's list and watch endpoints: a real HTTP server on 127.0.0.1 with a
 * global resourceVersion counter, an event history for watches that resume from a version, and
 * switches to make requests fail or hang. Used only by tests.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import type { KubeObject } from './informer.ts';

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface StoredEvent {
  readonly type: EventType;
  readonly object: KubeObject;
  readonly rv: number;
}

interface Resource {
  readonly listKind: string;
  readonly apiVersion: string;
  readonly objects: Map<string, KubeObject>;
  readonly history: StoredEvent[];
}

interface OpenWatch {
  readonly path: string;
  readonly query: URLSearchParams;
  readonly res: ServerResponse;
}

export interface RecordedRequest {
  readonly path: string;
  readonly watch: boolean;
  readonly query: URLSearchParams;
}

const RESOURCES: Readonly<Record<string, { listKind: string; apiVersion: string }>> = {
  '/api/v1/services': { listKind: 'ServiceList', apiVersion: 'v1' },
  '/api/v1/nodes': { listKind: 'NodeList', apiVersion: 'v1' },
  '/apis/discovery.k8s.io/v1/endpointslices': { listKind: 'EndpointSliceList', apiVersion: 'discovery.k8s.io/v1' },
};

function keyOf(obj: KubeObject): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}

/** `a`, `!a`, `a=b`, `a==b`, `a!=b`, comma-separated (the subset kpx uses). */
function matchesLabels(selector: string | null, obj: KubeObject): boolean {
  if (selector === null || selector === '') return true;
  const raw = obj.metadata?.labels;
  const labels = typeof raw === 'object' && raw !== null ? (raw as Readonly<Record<string, string>>) : {};
  return selector.split(',').every((term) => {
    const t = term.trim();
    const ne = /^([^!=]+)!=(.*)$/.exec(t);
    if (ne?.[1] !== undefined) return labels[ne[1]] !== ne[2];
    const eq = /^([^!=]+)==?(.*)$/.exec(t);
    if (eq?.[1] !== undefined) return labels[eq[1]] === eq[2];
    if (t.startsWith('!')) return !Object.hasOwn(labels, t.slice(1));
    return Object.hasOwn(labels, t);
  });
}

/** `metadata.name=x`, `metadata.namespace=y`, comma-separated. */
function matchesFields(selector: string | null, obj: KubeObject): boolean {
  if (selector === null || selector === '') return true;
  return selector.split(',').every((term) => {
    const [field, value] = term.split('=');
    if (field === 'metadata.name') return obj.metadata?.name === value;
    if (field === 'metadata.namespace') return obj.metadata?.namespace === value;
    throw new Error(`fake apiserver: unsupported field selector ${term}`);
  });
}

function status(code: number, reason: string, message: string): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

export class FakeApiServer {
  readonly #server: Server;
  readonly #resources = new Map<string, Resource>();
  readonly #watches = new Set<OpenWatch>();
  readonly #hungLists = new Set<ServerResponse>();
  #rv = 100;
  #compactedRv = 0;

  /** Every request, in arrival order. */
  readonly requests: RecordedRequest[] = [];
  /** Fail every request with this status, or reset the connection. */
  failRequests: number | 'reset' | undefined;
  /** Fail watch requests only with this status (410: the version is too old). */
  failWatches: number | undefined;
  /** Hold list requests open without answering. */
  hangLists = false;
  /** Send watch headers but no events, on open and new watches (events made meanwhile are not resent). */
  hangWatches = false;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<FakeApiServer> {
    const server = createServer();
    const fake = new FakeApiServer(server);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      fake.#handle(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get url(): string {
    const { port } = this.#server.address() as AddressInfo;
    return `http://127.0.0.1:${String(port)}`;
  }

  /** A KubeConfig pointing at this server (plain HTTP needs insecure-skip-tls-verify in client-node). */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'kpx', token: 'test-token' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'kpx' }],
      currentContext: 'fake',
    });
    return kc;
  }

  /** Watch requests whose response is still open. */
  get openWatches(): number {
    return this.#watches.size;
  }

  /** List requests held open by `hangLists` whose connection is still open. */
  get hungLists(): number {
    return this.#hungLists.size;
  }

  get resourceVersion(): string {
    return String(this.#rv);
  }

  listRequests(path?: string): number {
    return this.requests.filter((r) => !r.watch && (path === undefined || r.path === path)).length;
  }

  watchRequests(path?: string): number {
    return this.requests.filter((r) => r.watch && (path === undefined || r.path === path)).length;
  }

  /** Creates or replaces an object; returns it as stored (with its new resourceVersion). */
  put(path: string, obj: KubeObject): KubeObject {
    const resource = this.#resource(path);
    const stored: KubeObject = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++this.#rv) } };
    const key = keyOf(stored);
    const type = resource.objects.has(key) ? 'MODIFIED' : 'ADDED';
    resource.objects.set(key, stored);
    this.#record(path, { type, object: stored, rv: this.#rv });
    return stored;
  }

  remove(path: string, namespace: string | undefined, name: string): void {
    const resource = this.#resource(path);
    const key = `${namespace ?? ''}/${name}`;
    const old = resource.objects.get(key);
    if (old === undefined) throw new Error(`fake apiserver: ${key} does not exist`);
    resource.objects.delete(key);
    const object: KubeObject = { ...old, metadata: { ...old.metadata, resourceVersion: String(++this.#rv) } };
    this.#record(path, { type: 'DELETED', object, rv: this.#rv });
  }

  /** Forgets history: watches from an older version get a 410 Expired ERROR event. */
  compact(): void {
    this.#compactedRv = this.#rv;
    for (const resource of this.#resources.values()) resource.history.length = 0;
  }

  /** Ends open watch responses cleanly (as the API server does at its watch timeout). */
  endWatches(): void {
    for (const w of this.#watches) w.res.end();
  }

  /** Resets the connections of open watches. */
  dropWatches(): void {
    for (const w of this.#watches) w.res.socket?.destroy();
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => { resolve(); }));
  }

  #resource(path: string): Resource {
    let resource = this.#resources.get(path);
    if (resource === undefined) {
      const kind = RESOURCES[path];
      if (kind === undefined) throw new Error(`fake apiserver: unknown resource ${path}`);
      resource = { ...kind, objects: new Map(), history: [] };
      this.#resources.set(path, resource);
    }
    return resource;
  }

  #record(path: string, event: StoredEvent): void {
    this.#resource(path).history.push(event);
    for (const w of this.#watches) if (w.path === path && !this.hangWatches) this.#send(w, event);
  }

  #send(w: OpenWatch, event: StoredEvent): void {
    if (!matchesLabels(w.query.get('labelSelector'), event.object) || !matchesFields(w.query.get('fieldSelector'), event.object)) return;
    w.res.write(`${JSON.stringify({ type: event.type, object: event.object })}\n`);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const watch = url.searchParams.get('watch') === 'true';
    this.requests.push({ path: url.pathname, watch, query: url.searchParams });
    const reply = (code: number, body: object): void => {
      res.writeHead(code, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (this.failRequests === 'reset') {
      req.socket.destroy();
      return;
    }
    if (this.failRequests !== undefined) {
      reply(this.failRequests, status(this.failRequests, 'InternalError', 'injected failure'));
      return;
    }
    if (!Object.hasOwn(RESOURCES, url.pathname)) {
      reply(404, status(404, 'NotFound', `no resource ${url.pathname}`));
      return;
    }
    const resource = this.#resource(url.pathname);
    if (!watch) {
      if (this.hangLists) {
        this.#hungLists.add(res);
        res.on('close', () => this.#hungLists.delete(res));
        return;
      }
      const items = [...resource.objects.values()].filter(
        (o) => matchesLabels(url.searchParams.get('labelSelector'), o) && matchesFields(url.searchParams.get('fieldSelector'), o),
      );
      reply(200, { kind: resource.listKind, apiVersion: resource.apiVersion, metadata: { resourceVersion: String(this.#rv) }, items });
      return;
    }
    if (this.failWatches !== undefined) {
      reply(this.failWatches, status(this.failWatches, this.failWatches === 410 ? 'Expired' : 'InternalError', 'injected watch failure'));
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const open: OpenWatch = { path: url.pathname, query: url.searchParams, res };
    this.#watches.add(open);
    res.on('close', () => this.#watches.delete(open));
    if (this.hangWatches) return;
    const from = Number(url.searchParams.get('resourceVersion') ?? '');
    if (Number.isInteger(from) && from > 0 && from < this.#compactedRv) {
      res.end(`${JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${String(from)} (${String(this.#compactedRv)})`) })}\n`);
      return;
    }
    for (const event of resource.history) if (event.rv > from) this.#send(open, event);
  }
}
