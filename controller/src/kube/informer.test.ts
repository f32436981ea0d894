import { afterEach, describe, expect, it, vi } from 'vitest';
import { FakeClock } from '../agent/clock.ts';
import { jsonLogger, type Logger } from '../agent/log.ts';
import { FakeApiServer } from './fake-apiserver.ts';
import {
  endpointSlicesInformer,
  nodeInformer,
  servicesInformer,
  SupervisedInformer,
  type InformerHandlers,
  type KubeObject,
  type SupervisedInformerOptions,
} from './informer.ts';

const SERVICES = '/api/v1/services';
const SLICES = '/apis/discovery.k8s.io/v1/endpointslices';
const NODES = '/api/v1/nodes';

function service(name: string, port = 80): KubeObject {
  return { apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default', name }, spec: { clusterIP: '10.96.0.10', ports: [{ port }] } };
}

/** Records handler calls as `add default/a`, `update default/a 101->104`, `delete default/b`. */
class Recorder implements InformerHandlers<KubeObject> {
  readonly events: string[] = [];
  readonly objects: KubeObject[] = [];
  throwFor = new Set<string>();

  add(obj: KubeObject): void {
    this.#record(`add ${this.#name(obj)}`, obj);
  }

  update(previous: KubeObject, current: KubeObject): void {
    this.#record(`update ${this.#name(current)} ${previous.metadata?.resourceVersion ?? ''}->${current.metadata?.resourceVersion ?? ''}`, current);
  }

  delete(obj: KubeObject): void {
    this.#record(`delete ${this.#name(obj)}`, obj);
  }

  #name(obj: KubeObject): string {
    return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
  }

  #record(event: string, obj: KubeObject): void {
    if (this.throwFor.has(obj.metadata?.name ?? '')) throw new Error(`handler broke on ${event}`);
    this.events.push(event);
    this.objects.push(obj);
  }
}

interface Captured {
  readonly log: Logger;
  readonly lines: Record<string, unknown>[];
  warnings(): Record<string, unknown>[];
}

function capture(): Captured {
  const lines: Record<string, unknown>[] = [];
  const log = jsonLogger({ level: 'debug', write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, lines, warnings: () => lines.filter((l) => l.level === 'warn') };
}

async function until(condition: () => boolean, what = 'condition'): Promise<void> {
  await vi.waitFor(
    () => {
      if (!condition()) throw new Error(`timed out waiting for ${what}`);
    },
    { timeout: 10_000, interval: 5 },
  );
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startServer(): Promise<FakeApiServer> {
  const server = await FakeApiServer.start();
  cleanups.push(() => server.close());
  return server;
}

type Overrides = Partial<Omit<SupervisedInformerOptions<KubeObject>, 'kubeConfig' | 'handlers' | 'log'>>;

function startInformer(server: FakeApiServer, recorder: InformerHandlers<KubeObject>, log: Logger, overrides: Overrides = {}): SupervisedInformer {
  const informer = new SupervisedInformer({
    name: 'services',
    kubeConfig: server.kubeConfig(),
    path: SERVICES,
    handlers: recorder,
    log,
    backoff: { initialMs: 5, maxMs: 20 },
    ...overrides,
  });
  cleanups.push(() => informer.stop());
  informer.start();
  return informer;
}

describe('SupervisedInformer', () => {
  it('delivers the initial list as adds, in the JSON shape the API server sends, then reports synced', async () => {
    const server = await startServer();
    server.put(SERVICES, { ...service('a'), metadata: { namespace: 'default', name: 'a', creationTimestamp: '2024-05-01T10:00:00Z' }, spec: { futureField: { x: 1 } } });
    server.put(SERVICES, service('b'));
    const recorder = new Recorder();
    const informer = startInformer(server, recorder, capture().log);
    expect(informer.hasSynced).toBe(false);

    await informer.whenSynced();

    expect(informer.hasSynced).toBe(true);
    expect(recorder.events).toEqual(['add default/a', 'add default/b']);
    expect(recorder.objects[0]?.metadata?.creationTimestamp).toBe('2024-05-01T10:00:00Z');
    expect(recorder.objects[0]?.spec).toEqual({ futureField: { x: 1 } });
    expect(informer.list().map((o) => o.metadata?.name).sort()).toEqual(['a', 'b']);
    expect(informer.lastListAt).toBeTypeOf('number');
    expect(server.listRequests(SERVICES)).toBe(1);
  });

  it('delivers watch events as add, update (previous and current) and delete', async () => {
    const server = await startServer();
    const first = server.put(SERVICES, service('a'));
    const recorder = new Recorder();
    const informer = startInformer(server, recorder, capture().log);
    await informer.whenSynced();
    await until(() => server.openWatches === 1, 'the watch');

    server.put(SERVICES, { ...service('b'), metadata: { namespace: 'default', name: 'b', creationTimestamp: '2024-05-01T10:00:00Z' } });
    const second = server.put(SERVICES, service('a', 8080));
    server.remove(SERVICES, 'default', 'b');
    await until(() => recorder.events.length === 4, 'four events');

    const rv = (o: KubeObject): string => o.metadata?.resourceVersion ?? '';
    expect(recorder.events).toEqual(['add default/a', 'add default/b', `update default/a ${rv(first)}->${rv(second)}`, 'delete default/b']);
    expect(recorder.objects[1]?.metadata?.creationTimestamp).toBe('2024-05-01T10:00:00Z');
    expect(recorder.objects[2]?.spec).toEqual(second.spec);
    expect(informer.list()).toEqual([second]);
    expect(informer.lastEventAt).toBeTypeOf('number');
    expect(server.watchRequests(SERVICES)).toBe(1);
    expect(server.requests.find((r) => r.watch)?.query.get('allowWatchBookmarks')).toBe('true');
  });

  it.each([
    ['HTTP 500', 500],
    ['HTTP 403', 403],
    ['connection resets', 'reset'],
  ] as const)('recovers by itself after %s and delivers what changed meanwhile', async (_label, failure) => {
    const server = await startServer();
    server.put(SERVICES, service('a'));
    server.put(SERVICES, service('b'));
    const recorder = new Recorder();
    const logs = capture();
    const informer = startInformer(server, recorder, logs.log);
    await informer.whenSynced();
    await until(() => server.openWatches === 1, 'the watch');

    server.failRequests = failure;
    server.dropWatches();
    await until(() => logs.warnings().length >= 3, 'three failed attempts');
    server.remove(SERVICES, 'default', 'b');
    server.put(SERVICES, service('a', 8080));
    server.put(SERVICES, service('c'));
    server.failRequests = undefined;

    await until(() => recorder.events.length === 5, 'the reconciled changes');
    expect(recorder.events.slice(2)).toEqual(['delete default/b', expect.stringMatching(/^update default\/a /), 'add default/c']);
    expect(informer.list().map((o) => o.metadata?.name)).toEqual(['a', 'c']);
    expect(informer.restarts).toBeGreaterThanOrEqual(3);
    const reasons = logs.warnings().map((l) => String(l.reason));
    if (failure !== 'reset') expect(reasons.some((r) => r.includes(String(failure)))).toBe(true);
    expect(logs.warnings().every((l) => l.informer === 'services')).toBe(true);
    // The informer keeps watching after recovery.
    await until(() => server.openWatches === 1, 'the new watch');
    server.put(SERVICES, service('d'));
    await until(() => recorder.events.includes('add default/d'), 'an event after recovery');
  });

  it('relists when a watch resumes from a compacted version (410 Expired) and reconciles the cache', async () => {
    const server = await startServer();
    server.put(SERVICES, service('a'));
    server.put(SERVICES, service('b'));
    const recorder = new Recorder();
    const logs = capture();
    const informer = startInformer(server, recorder, logs.log);
    await informer.whenSynced();
    await until(() => server.openWatches === 1, 'the watch');
    server.put(SERVICES, service('c'));
    await until(() => recorder.events.includes('add default/c'), 'a watch event');

    // Changes the open watch never sends, then history is compacted and the watch ends.
    server.hangWatches = true;
    server.remove(SERVICES, 'default', 'a');
    server.put(SERVICES, service('b', 8080));
    server.compact();
    server.hangWatches = false;
    server.endWatches();

    await until(() => recorder.events.length === 5, 'the relist');
    expect(recorder.events.slice(3)).toEqual(['delete default/a', expect.stringMatching(/^update default\/b /)]);
    expect(server.listRequests()).toBe(2);
    expect(logs.warnings().map((l) => l.reason)).toEqual([expect.stringMatching(/^watch error: 410 Expired/)]);
  });

  it('relists when the watch request itself answers 410 Gone', async () => {
    const server = await startServer();
    server.put(SERVICES, service('a'));
    const recorder = new Recorder();
    const logs = capture();
    const informer = startInformer(server, recorder, logs.log);
    await informer.whenSynced();
    await until(() => server.openWatches === 1, 'the watch');

    server.failWatches = 410;
    server.dropWatches();
    await until(() => logs.warnings().some((l) => String(l.reason).includes('410')), 'a 410 failure');
    server.put(SERVICES, service('b'));
    server.failWatches = undefined;

    await until(() => recorder.events.includes('add default/b'), 'the relist');
    expect(server.listRequests()).toBeGreaterThanOrEqual(2);
    await until(() => server.openWatches === 1, 'the new watch');
  });

  it('continues a cleanly ended watch from its last resourceVersion without relisting', async () => {
    const server = await startServer();
    const recorder = new Recorder();
    const informer = startInformer(server, recorder, capture().log);
    await informer.whenSynced();
    await until(() => server.openWatches === 1, 'the watch');
    const seen = server.put(SERVICES, service('a'));
    await until(() => recorder.events.length === 1, 'the first event');

    server.endWatches();
    await until(() => server.watchRequests() === 2 && server.openWatches === 1, 'the second watch');
    server.put(SERVICES, service('b'));
    await until(() => recorder.events.length === 2, 'the second event');

    expect(recorder.events).toEqual(['add default/a', 'add default/b']);
    expect(server.listRequests()).toBe(1);
    expect(server.requests.filter((r) => r.watch)[1]?.query.get('resourceVersion')).toBe(seen.metadata?.resourceVersion);
    expect(informer.restarts).toBe(0);
  });

  it('logs a throwing handler with the object and keeps delivering later events', async () => {
    const server = await startServer();
    server.put(SERVICES, service('bad'));
    server.put(SERVICES, service('good'));
    const recorder = new Recorder();
    recorder.throwFor.add('bad');
    const logs = capture();
    const informer = startInformer(server, recorder, logs.log);
    await informer.whenSynced();
    await until(() => server.openWatches === 1, 'the watch');

    server.put(SERVICES, service('bad', 8080));
    server.put(SERVICES, service('later'));
    await until(() => recorder.events.includes('add default/later'), 'the later event');

    expect(recorder.events).toEqual(['add default/good', 'add default/later']);
    const errors = logs.lines.filter((l) => l.level === 'error');
    expect(errors).toMatchObject([
      { informer: 'services', handler: 'add', namespace: 'default', name: 'bad', error: 'handler broke on add default/bad' },
      { informer: 'services', handler: 'update', namespace: 'default', name: 'bad' },
    ]);
    expect(informer.restarts).toBe(0);
    // The failed object is still cached: the next change of it arrives as an update.
    recorder.throwFor.clear();
    server.put(SERVICES, service('bad', 9090));
    await until(() => recorder.events.some((e) => e.startsWith('update default/bad')), 'the update');
  });

  it('reopens a silent watch when the watchdog fires, resuming from the last resourceVersion', async () => {
    const server = await startServer();
    const clock = new FakeClock(1_000_000);
    const recorder = new Recorder();
    const logs = capture();
    const informer = startInformer(server, recorder, logs.log, { clock, watchdogMs: 60_000 });
    await informer.whenSynced();
    await until(() => server.openWatches === 1, 'the watch');

    server.hangWatches = true;
    server.put(SERVICES, service('a'));
    clock.advance(59_999);
    expect(informer.restarts).toBe(0);
    server.hangWatches = false;
    clock.advance(1);

    await until(() => recorder.events.includes('add default/a'), 'the event through the new watch');
    expect(informer.restarts).toBe(1);
    expect(server.watchRequests()).toBe(2);
    expect(server.listRequests()).toBe(1);
    await until(() => server.openWatches === 1, 'the old watch to close');
    expect(logs.warnings()).toMatchObject([{ msg: 'watch silent; reopening it', idleMs: 60_000 }]);
  });

  it('does not restart a watch that keeps delivering events', async () => {
    const server = await startServer();
    const clock = new FakeClock();
    const recorder = new Recorder();
    const informer = startInformer(server, recorder, capture().log, { clock, watchdogMs: 60_000 });
    await informer.whenSynced();
    await until(() => server.openWatches === 1, 'the watch');

    for (const name of ['a', 'b', 'c']) {
      clock.advance(40_000);
      server.put(SERVICES, service(name));
      await until(() => recorder.events.length === ['a', 'b', 'c'].indexOf(name) + 1, `event ${name}`);
    }

    expect(informer.restarts).toBe(0);
    expect(server.watchRequests()).toBe(1);
  });

  it('aborts a list that gets no answer when the watchdog fires, then retries', async () => {
    const server = await startServer();
    server.put(SERVICES, service('a'));
    server.hangLists = true;
    const clock = new FakeClock();
    const recorder = new Recorder();
    const logs = capture();
    const informer = startInformer(server, recorder, logs.log, { clock, watchdogMs: 60_000, random: () => 1 });
    await until(() => server.hungLists === 1, 'the hung list');

    clock.advance(60_000);
    await until(() => server.hungLists === 0, 'the list request to be aborted');
    expect(logs.warnings()).toMatchObject([{ reason: 'list got no answer in 60000 ms', retryInMs: 5 }]);
    server.hangLists = false;
    clock.advance(5);

    await informer.whenSynced();
    expect(recorder.events).toEqual(['add default/a']);
  });

  it('backs off exponentially with full jitter up to the cap, and resets once a watch works', async () => {
    const server = await startServer();
    server.failRequests = 500;
    const clock = new FakeClock();
    const logs = capture();
    let jitter = 1;
    const informer = startInformer(server, new Recorder(), logs.log, {
      clock,
      backoff: { initialMs: 100, maxMs: 1000 },
      random: () => jitter,
    });

    const delays: unknown[] = [];
    for (let attempt = 1; attempt <= 7; attempt++) {
      if (attempt === 7) jitter = 0.25;
      await until(() => logs.warnings().length === attempt, `failure ${String(attempt)}`);
      const retryInMs = logs.warnings()[attempt - 1]?.retryInMs;
      delays.push(retryInMs);
      expect(clock.pending).toBe(1);
      expect(clock.nextAt()).toBe(clock.now() + Number(retryInMs));
      clock.advance(Number(retryInMs));
    }
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000, 250]);
    expect(informer.restarts).toBe(7);
    expect(informer.hasSynced).toBe(false);

    server.failRequests = undefined;
    await informer.whenSynced();
    await until(() => server.openWatches === 1, 'the watch');
    server.put(SERVICES, service('a'));
    await until(() => informer.lastEventAt !== undefined, 'an event');
    jitter = 1;
    server.failRequests = 500;
    server.dropWatches();
    await until(() => logs.warnings().length === 8, 'the next failure');
    expect(logs.warnings()[7]?.retryInMs).toBe(100);
  });

  it('stop() cancels the open watch and pending timers, and no handler runs afterwards', async () => {
    const server = await startServer();
    const clock = new FakeClock();
    const recorder = new Recorder();
    const informer = startInformer(server, recorder, capture().log, { clock });
    await informer.whenSynced();
    await until(() => server.openWatches === 1, 'the watch');
    expect(clock.pending).toBe(1); // the watchdog

    await informer.stop();
    expect(clock.pending).toBe(0);
    await until(() => server.openWatches === 0, 'the watch to close');

    // A second informer sees the change; the stopped one must not.
    server.put(SERVICES, service('after-stop'));
    const witness = new Recorder();
    await startInformer(server, witness, capture().log).whenSynced();
    expect(witness.events).toEqual(['add default/after-stop']);
    await until(() => server.watchRequests() === 2, "the witness's watch");
    expect(recorder.events).toEqual([]);
    expect(server.listRequests()).toBe(2);
  });

  it('stop() called from a handler ends delivery at once, mid-list', async () => {
    const server = await startServer();
    for (const name of ['a', 'b', 'c']) server.put(SERVICES, service(name));
    const recorder = new Recorder();
    let stopped: Promise<void> | undefined;
    const informer = startInformer(server, {
      add: (obj) => {
        recorder.add(obj);
        stopped ??= informer.stop();
      },
      update: () => undefined,
      delete: () => undefined,
    }, capture().log);
    await until(() => stopped !== undefined, 'the first add');
    await stopped;

    expect(recorder.events).toEqual(['add default/a']);
    expect(informer.hasSynced).toBe(false);
    expect(server.watchRequests()).toBe(0);
  });

  it('stop() during a backoff wait or a pending list leaves nothing behind and rejects whenSynced', async () => {
    const server = await startServer();
    server.failRequests = 500;
    const clock = new FakeClock();
    const logs = capture();
    const waiting = startInformer(server, new Recorder(), logs.log, { clock });
    await until(() => logs.warnings().length === 1, 'the first failure');
    expect(clock.pending).toBe(1);
    await waiting.stop();
    expect(clock.pending).toBe(0);
    await expect(waiting.whenSynced()).rejects.toThrow('informer services stopped before it synced');

    server.failRequests = undefined;
    server.hangLists = true;
    const listing = startInformer(server, new Recorder(), capture().log, { clock });
    await until(() => server.hungLists === 1, 'the hung list');
    await listing.stop();
    expect(clock.pending).toBe(0);
    await until(() => server.hungLists === 0, 'the list request to close');
  });

  it('start() twice is a programming error', async () => {
    const server = await startServer();
    const informer = startInformer(server, new Recorder(), capture().log);
    expect(() => {
      informer.start();
    }).toThrow('informer services was already started');
    await informer.whenSynced();
  });
});

describe('per-kind informers', () => {
  it('watch EndpointSlices without those of headless Services', async () => {
    const server = await startServer();
    const slice = (name: string, labels: Record<string, string>): KubeObject => ({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { namespace: 'default', name, labels: { 'kubernetes.io/service-name': 'web', ...labels } },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.244.1.5'] }],
    });
    server.put(SLICES, slice('web-abc', {}));
    server.put(SLICES, slice('headless-abc', { 'service.kubernetes.io/headless': '' }));
    const recorder = new Recorder();
    const informer = endpointSlicesInformer(server.kubeConfig(), recorder, capture().log);
    cleanups.push(() => informer.stop());
    informer.start();
    await informer.whenSynced();
    await until(() => server.openWatches === 1, 'the watch');
    server.put(SLICES, slice('headless-def', { 'service.kubernetes.io/headless': '' }));
    server.put(SLICES, slice('web-def', {}));
    await until(() => recorder.events.length === 2, 'the watch event');

    expect(recorder.events).toEqual(['add default/web-abc', 'add default/web-def']);
    expect(server.requests.every((r) => r.path === SLICES && r.query.get('labelSelector') === '!service.kubernetes.io/headless')).toBe(true);
  });

  it('watch only the named Node', async () => {
    const server = await startServer();
    const node = (name: string): KubeObject => ({ apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { addresses: [] } });
    server.put(NODES, node('node-a'));
    server.put(NODES, node('node-b'));
    const recorder = new Recorder();
    const informer = nodeInformer(server.kubeConfig(), 'node-b', recorder, capture().log);
    cleanups.push(() => informer.stop());
    informer.start();
    await informer.whenSynced();

    expect(recorder.events).toEqual(['add /node-b']);
    expect(server.requests[0]?.query.get('fieldSelector')).toBe('metadata.name=node-b');
  });

  it('watch Services of all namespaces, with the given tuning', async () => {
    const server = await startServer();
    server.put(SERVICES, { ...service('a'), metadata: { namespace: 'kube-system', name: 'a' } });
    server.failRequests = 500;
    const clock = new FakeClock();
    const logs = capture();
    const recorder = new Recorder();
    const informer = servicesInformer(server.kubeConfig(), recorder, logs.log, { clock, backoff: { initialMs: 7, maxMs: 7 }, random: () => 1 });
    cleanups.push(() => informer.stop());
    informer.start();
    await until(() => logs.warnings().length === 1, 'the failure');
    expect(logs.warnings()[0]).toMatchObject({ informer: 'services', retryInMs: 7, reason: 'list failed: list /api/v1/services: 500 injected failure' });
    server.failRequests = undefined;
    clock.advance(7);
    await informer.whenSynced();

    expect(recorder.events).toEqual(['add kube-system/a']);
  });
});
