/**
 * Supervised list+watch of one resource, delivering add/update/delete to handlers.
 *
 * Why not client-node's `makeInformer`/`ListWatch`: it stops for good on any watch or list error other
 * than 410, lets a throwing handler reject an unobserved promise (the process dies) or silently skip
 * the rest of a watch event, and mixes object shapes: its list functions (the generated API clients)
 * deserialise into model classes (timestamps become Date objects, fields unknown to the client are
 * dropped) while its watch events are the raw JSON. kpx keeps the library's HTTP plumbing (`Watch`,
 * `RequestContext`, the fetch library, the KubeConfig's authentication) and owns the loop:
 *
 * - Objects are delivered exactly as the API server sends them (plain JSON, camelCase, timestamps as
 *   strings, unknown fields kept), from lists and watch events alike.
 * - Any list or watch failure (HTTP status, 410 Gone, connection error, an ERROR event) restarts with a
 *   relist after a full-jitter exponential backoff; it never gives up. The relist is reconciled against
 *   the cache: vanished objects produce `delete`, changed ones `update`, new ones `add`.
 * - The backoff attempt counter resets when a watch proves healthy (it delivers an event or ends cleanly
 *   after running a while), not merely after a successful list: an API server that lists fine but
 *   fails every watch would otherwise be relisted in a hot loop.
 * - A watch the server ends cleanly (or the library's inactivity timeout) continues from the last
 *   resourceVersion without a relist; bookmarks are requested so that version stays fresh.
 * - Watchdog: with no event and no successful list for `watchdogMs`, a stuck watch is reopened from
 *   the last resourceVersion and a stuck list is aborted and retried.
 * - Handler exceptions are logged and swallowed.
 */
import { HttpMethod, IsomorphicFetchHttpLibrary, RequestContext, Watch, type KubeConfig } from '@kubernetes/client-node';
import { systemClock, type Clock, type TimerHandle } from '../agent/clock.ts';
import type { Logger } from '../agent/log.ts';

/** A Kubernetes object as the API server sends it (JSON). */
export interface KubeObject {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata?: {
    readonly name?: string;
    readonly namespace?: string;
    readonly resourceVersion?: string;
    readonly [field: string]: unknown;
  };
  readonly [field: string]: unknown;
}

export interface KubeList<T extends KubeObject> {
  readonly metadata?: { readonly resourceVersion?: string };
  readonly items: readonly T[];
}

/** Lists the resource; aborting `signal` must abandon the request. */
export type ListFunction<T extends KubeObject> = (signal: AbortSignal) => Promise<KubeList<T>>;

export interface InformerHandlers<T> {
  add(obj: T): void;
  update(previous: T, current: T): void;
  delete(obj: T): void;
}

export interface Selectors {
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
}

export interface SupervisedInformerOptions<T extends KubeObject> extends Selectors {
  /** For logs and metrics: "services", "endpointslices", "node". */
  readonly name: string;
  readonly kubeConfig: KubeConfig;
  /** Collection path, e.g. `/api/v1/services`. */
  readonly path: string;
  /** Default: `listObjects` of `path` with the selectors. */
  readonly list?: ListFunction<T>;
  readonly handlers: InformerHandlers<T>;
  readonly log: Logger;
  /** Default `systemClock()`. */
  readonly clock?: Clock;
  /** Full-jitter exponential backoff between restarts; default 500 ms doubling up to 30 s. */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Restart a list or watch after this long without an event or a successful list; default 5 min. */
  readonly watchdogMs?: number;
  /** For jitter; default Math.random. */
  readonly random?: () => number;
}

/** Tuning the per-kind factories pass through. */
export type InformerTuning = Pick<SupervisedInformerOptions<KubeObject>, 'clock' | 'backoff' | 'watchdogMs' | 'random'>;

/** A failed API request, with the HTTP status when there was one. */
export class KubeRequestError extends Error {
  readonly statusCode: number | undefined;
  constructor(message: string, statusCode: number | undefined, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KubeRequestError';
    this.statusCode = statusCode;
  }
}

/** A watch shorter than this that delivered nothing counts as a failure (no hot reconnect loop). */
const MIN_HEALTHY_WATCH_MS = 1000;

function isRecord(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isKubeObject(value: unknown): value is KubeObject {
  return isRecord(value) && isRecord(value.metadata) && typeof value.metadata.name === 'string' && value.metadata.name !== '';
}

function keyOf(obj: KubeObject): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}

/** One line for logs: status code, message and the network cause (ECONNREFUSED...). */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const status = 'statusCode' in err && typeof err.statusCode === 'number' && !(err instanceof KubeRequestError) ? `${String(err.statusCode)} ` : '';
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${status}${err.message}${cause}`;
}

/** `code reason: message` of a Status object (an error response body or a watch ERROR event). */
function describeStatus(value: unknown): string {
  if (!isRecord(value)) return 'no status';
  return [value.code, value.reason, value.message].filter((part) => typeof part === 'string' || typeof part === 'number').map(String).join(' ');
}

/** Lists `path` and returns the JSON the API server sent, through the KubeConfig's authentication. */
export async function listObjects(kc: KubeConfig, path: string, selectors: Selectors, signal: AbortSignal): Promise<KubeList<KubeObject>> {
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new KubeRequestError('no current cluster in the kubeconfig', undefined);
  const url = new URL(cluster.server + path);
  if (selectors.labelSelector !== undefined) url.searchParams.set('labelSelector', selectors.labelSelector);
  if (selectors.fieldSelector !== undefined) url.searchParams.set('fieldSelector', selectors.fieldSelector);
  const request = new RequestContext(url.toString(), HttpMethod.GET);
  request.setHeaderParam('Accept', 'application/json');
  request.setSignal(signal);
  await kc.applySecurityAuthentication(request);
  const response = await new IsomorphicFetchHttpLibrary().send(request).toPromise();
  const text = await response.body.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (response.httpStatusCode !== 200) {
    const detail = isRecord(body) && typeof body.message === 'string' ? body.message : firstLine(text);
    throw new KubeRequestError(`list ${path}: ${String(response.httpStatusCode)} ${detail}`, response.httpStatusCode);
  }
  if (!isRecord(body) || !Array.isArray(body.items)) throw new KubeRequestError(`list ${path}: response is not a list`, 200);
  const items: KubeObject[] = body.items.filter(isKubeObject);
  const resourceVersion = isRecord(body.metadata) && typeof body.metadata.resourceVersion === 'string' ? body.metadata.resourceVersion : undefined;
  return resourceVersion === undefined ? { items } : { metadata: { resourceVersion }, items };
}

function firstLine(text: string): string {
  return (text.split('\n')[0] ?? '').slice(0, 200);
}

type Phase = 'idle' | 'listing' | 'watching' | 'waiting' | 'stopped';

interface WatchAttempt {
  readonly startedAt: number;
  events: number;
}

export class SupervisedInformer<T extends KubeObject = KubeObject> {
  readonly #name: string;
  readonly #path: string;
  readonly #selectors: Selectors;
  readonly #list: ListFunction<T>;
  readonly #handlers: InformerHandlers<T>;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #backoff: { readonly initialMs: number; readonly maxMs: number };
  readonly #watchdogMs: number;
  readonly #random: () => number;
  readonly #watch: Watch;

  readonly #cache = new Map<string, T>();
  #phase: Phase = 'idle';
  /** Bumped whenever a list or watch is abandoned; callbacks of older generations are ignored. */
  #generation = 0;
  #resourceVersion = '';
  #failures = 0;
  #restarts = 0;
  #lastEventAt: number | undefined;
  #lastListAt: number | undefined;
  /** Last sign of progress: an attempt started, a list succeeded, an event arrived. */
  #activeAt = 0;
  #listAbort: AbortController | undefined;
  #listDone: Promise<void> | undefined;
  #watchRequest: AbortController | undefined;
  #retryTimer: TimerHandle | undefined;
  #watchdogTimer: TimerHandle | undefined;
  #synced = false;
  readonly #syncedPromise: Promise<void>;
  #settleSynced: (error?: Error) => void = () => undefined;

  constructor(options: SupervisedInformerOptions<T>) {
    this.#name = options.name;
    this.#path = options.path;
    this.#selectors = {
      ...(options.labelSelector === undefined ? {} : { labelSelector: options.labelSelector }),
      ...(options.fieldSelector === undefined ? {} : { fieldSelector: options.fieldSelector }),
    };
    const kc = options.kubeConfig;
    // Without a list function T is KubeObject (the per-kind factories), which is what listObjects returns.
    this.#list = options.list ?? ((signal) => listObjects(kc, this.#path, this.#selectors, signal) as Promise<KubeList<T>>);
    this.#handlers = options.handlers;
    this.#log = options.log.child({ informer: options.name });
    this.#clock = options.clock ?? systemClock();
    this.#backoff = options.backoff ?? { initialMs: 500, maxMs: 30_000 };
    this.#watchdogMs = options.watchdogMs ?? 5 * 60_000;
    this.#random = options.random ?? Math.random;
    this.#watch = new Watch(kc);
    this.#syncedPromise = new Promise<void>((resolve, reject) => {
      this.#settleSynced = (error) => {
        if (error === undefined) resolve();
        else reject(error);
      };
    });
    // Rejected on stop before sync; only callers of whenSynced() observe it.
    this.#syncedPromise.catch(() => undefined);
  }

  get hasSynced(): boolean {
    return this.#synced;
  }

  get restarts(): number {
    return this.#restarts;
  }

  get lastEventAt(): number | undefined {
    return this.#lastEventAt;
  }

  get lastListAt(): number | undefined {
    return this.#lastListAt;
  }

  /** Resolves after the first successful list delivered its adds; rejects if stopped before that. */
  whenSynced(): Promise<void> {
    return this.#syncedPromise;
  }

  /** The current cache. */
  list(): T[] {
    return [...this.#cache.values()];
  }

  /** Returns at once; listing and watching continue in the background until stop(). */
  start(): void {
    if (this.#phase !== 'idle') throw new Error(`informer ${this.#name} was already started`);
    this.#startList();
  }

  /** Cancels timers and requests; no handler is called after this resolves. */
  async stop(): Promise<void> {
    if (this.#phase === 'stopped') return;
    this.#phase = 'stopped';
    this.#abandon();
    this.#clearRetry();
    this.#clearWatchdog();
    if (!this.#synced) this.#settleSynced(new Error(`informer ${this.#name} stopped before it synced`));
    await this.#listDone;
  }

  #now(): number {
    return this.#clock.now();
  }

  /** Invalidates the current attempt and cancels its requests. */
  #abandon(): void {
    this.#generation++;
    this.#listAbort?.abort();
    this.#listAbort = undefined;
    this.#watchRequest?.abort();
    this.#watchRequest = undefined;
  }

  #startList(): void {
    const generation = ++this.#generation;
    this.#phase = 'listing';
    this.#activeAt = this.#now();
    this.#armWatchdog();
    const abort = new AbortController();
    this.#listAbort = abort;
    this.#listDone = this.#runList(generation, abort.signal);
  }

  async #runList(generation: number, signal: AbortSignal): Promise<void> {
    let list: KubeList<T>;
    try {
      list = await this.#list(signal);
    } catch (err) {
      if (generation === this.#generation) this.#fail(`list failed: ${describeError(err)}`);
      return;
    }
    if (generation !== this.#generation) return;
    this.#listAbort = undefined;
    this.#reconcile(list.items);
    if (this.#phase === 'stopped') return; // a handler stopped the informer
    this.#resourceVersion = list.metadata?.resourceVersion ?? '';
    this.#lastListAt = this.#now();
    this.#activeAt = this.#lastListAt;
    if (!this.#synced) {
      this.#synced = true;
      this.#settleSynced();
      this.#log.info('informer synced', { objects: this.#cache.size, resourceVersion: this.#resourceVersion });
    }
    this.#startWatch();
  }

  /** Makes the cache equal to a fresh list, delivering the differences. */
  #reconcile(items: readonly T[]): void {
    const fresh = new Map<string, T>();
    for (const item of items) {
      if (isKubeObject(item)) fresh.set(keyOf(item), item);
      else this.#log.warn('list item without metadata.name ignored');
    }
    for (const [key, old] of this.#cache) {
      if (fresh.has(key)) continue;
      this.#cache.delete(key);
      this.#deliver('delete', old, () => {
        this.#handlers.delete(old);
      });
    }
    for (const [key, obj] of fresh) this.#upsert(key, obj);
  }

  #upsert(key: string, obj: T): void {
    const old = this.#cache.get(key);
    this.#cache.set(key, obj);
    if (old === undefined) {
      this.#deliver('add', obj, () => {
        this.#handlers.add(obj);
      });
    } else if (old.metadata?.resourceVersion === undefined || old.metadata.resourceVersion !== obj.metadata?.resourceVersion) {
      this.#deliver('update', obj, () => {
        this.#handlers.update(old, obj);
      });
    }
  }

  #deliver(handler: keyof InformerHandlers<T>, obj: T, call: () => void): void {
    if (this.#phase === 'stopped') return;
    try {
      call();
    } catch (err) {
      this.#log.error('event handler failed; event dropped', {
        handler,
        namespace: obj.metadata?.namespace,
        name: obj.metadata?.name,
        error: describeError(err),
      });
    }
  }

  #startWatch(): void {
    const generation = ++this.#generation;
    this.#phase = 'watching';
    this.#activeAt = this.#now();
    this.#armWatchdog();
    const attempt: WatchAttempt = { startedAt: this.#activeAt, events: 0 };
    const query = { resourceVersion: this.#resourceVersion, allowWatchBookmarks: true, ...this.#selectors };
    this.#watch
      .watch(
        this.#path,
        query,
        (type: string, object: unknown) => {
          if (generation === this.#generation) this.#onEvent(type, object, attempt);
        },
        (err: unknown) => {
          if (generation === this.#generation) this.#onWatchEnd(err, attempt);
        },
      )
      .then(
        (request) => {
          if (generation === this.#generation) this.#watchRequest = request;
          else request.abort();
        },
        (err: unknown) => {
          if (generation === this.#generation) this.#fail(`watch failed: ${describeError(err)}`);
        },
      );
  }

  #onEvent(type: string, object: unknown, attempt: WatchAttempt): void {
    if (type === 'ERROR') {
      // 410 Expired/Gone among them: the relist after the restart catches up.
      this.#fail(`watch error: ${describeStatus(object)}`);
      return;
    }
    this.#lastEventAt = this.#now();
    this.#activeAt = this.#lastEventAt;
    attempt.events++;
    this.#failures = 0;
    if (!isKubeObject(object)) {
      this.#log.warn('watch event without an object ignored', { type });
      return;
    }
    // Watch events carry objects of the watched resource: the same JSON a list returns.
    const obj = object as T;
    const key = keyOf(obj);
    switch (type) {
      case 'ADDED':
      case 'MODIFIED':
        this.#upsert(key, obj);
        break;
      case 'DELETED':
        if (this.#cache.delete(key)) {
          this.#deliver('delete', obj, () => {
            this.#handlers.delete(obj);
          });
        }
        break;
      default: // BOOKMARK: only the resourceVersion moves
    }
    const rv = obj.metadata?.resourceVersion;
    if (rv !== undefined && rv !== '') this.#resourceVersion = rv;
  }

  #onWatchEnd(err: unknown, attempt: WatchAttempt): void {
    this.#watchRequest = undefined;
    const clean = err === null || err === undefined || (err instanceof Error && err.name === 'TimeoutError');
    if (!clean) {
      this.#fail(`watch failed: ${describeError(err)}`);
    } else if (attempt.events > 0 || this.#now() - attempt.startedAt >= MIN_HEALTHY_WATCH_MS) {
      this.#failures = 0;
      this.#log.debug('watch ended; continuing', { resourceVersion: this.#resourceVersion });
      this.#startWatch();
    } else {
      this.#fail('watch closed at once without events');
    }
  }

  /** Abandons the current attempt and relists after a backoff. */
  #fail(reason: string): void {
    this.#abandon();
    this.#clearWatchdog();
    const cap = Math.min(this.#backoff.maxMs, this.#backoff.initialMs * 2 ** Math.min(this.#failures, 30));
    const delay = Math.round(this.#random() * cap);
    this.#failures++;
    this.#restarts++;
    this.#phase = 'waiting';
    this.#log.warn('list/watch failed; relisting after backoff', { reason, attempt: this.#failures, retryInMs: delay });
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = undefined;
      this.#startList();
    }, delay);
  }

  #armWatchdog(delay = this.#watchdogMs): void {
    if (this.#watchdogTimer !== undefined) return;
    this.#watchdogTimer = this.#clock.setTimeout(() => {
      this.#watchdogTimer = undefined;
      this.#onWatchdog();
    }, delay);
  }

  #onWatchdog(): void {
    const idle = this.#now() - this.#activeAt;
    if (idle < this.#watchdogMs) {
      this.#armWatchdog(this.#watchdogMs - idle);
    } else if (this.#phase === 'listing') {
      this.#fail(`list got no answer in ${String(idle)} ms`);
    } else if (this.#phase === 'watching') {
      this.#restarts++;
      this.#log.warn('watch silent; reopening it', { idleMs: idle, resourceVersion: this.#resourceVersion });
      this.#abandon();
      this.#startWatch();
    }
  }

  #clearWatchdog(): void {
    if (this.#watchdogTimer !== undefined) this.#clock.clearTimeout(this.#watchdogTimer);
    this.#watchdogTimer = undefined;
  }

  #clearRetry(): void {
    if (this.#retryTimer !== undefined) this.#clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
  }
}

/** Services of all namespaces. */
export function servicesInformer(kc: KubeConfig, handlers: InformerHandlers<KubeObject>, log: Logger, tuning: InformerTuning = {}): SupervisedInformer {
  return new SupervisedInformer({ ...tuning, name: 'services', kubeConfig: kc, path: '/api/v1/services', handlers, log });
}

/** EndpointSlices of all namespaces, except those of headless Services (kube-proxy ignores them too). */
export function endpointSlicesInformer(kc: KubeConfig, handlers: InformerHandlers<KubeObject>, log: Logger, tuning: InformerTuning = {}): SupervisedInformer {
  return new SupervisedInformer({
    ...tuning,
    name: 'endpointslices',
    kubeConfig: kc,
    path: '/apis/discovery.k8s.io/v1/endpointslices',
    labelSelector: '!service.kubernetes.io/headless',
    handlers,
    log,
  });
}

/** The agent's own Node. */
export function nodeInformer(kc: KubeConfig, nodeName: string, handlers: InformerHandlers<KubeObject>, log: Logger, tuning: InformerTuning = {}): SupervisedInformer {
  return new SupervisedInformer({
    ...tuning,
    name: 'node',
    kubeConfig: kc,
    path: '/api/v1/nodes',
    fieldSelector: `metadata.name=${nodeName}`,
    handlers,
    log,
  });
}
