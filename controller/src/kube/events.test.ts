import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../agent/clock.ts';
import { jsonLogger } from '../agent/log.ts';
import { AGGREGATION_WINDOW_MS, NodeEventRecorder, SPAM_BURST, SPAM_REFILL_MS } from './events.ts';
import { TestApiServer } from './test-apiserver.ts';

const EVENTS = '/api/v1/namespaces/default/events';

interface Request {
  readonly method: string;
  readonly path: string;
  readonly contentType: string;
  readonly body: Record<string, unknown>;
}

/** Just enough of the apiserver for Events: create and merge patch, with an injectable failure. */
class FakeEventsApi extends TestApiServer {
  readonly requests: Request[] = [];
  readonly events = new Map<string, Record<string, unknown>>();
  failWith: number | undefined;

  creates(): Record<string, unknown>[] {
    return this.requests.filter((r) => r.method === 'POST').map((r) => r.body);
  }

  protected handle(req: IncomingMessage, res: ServerResponse, text: string): void {
    const path = new URL(req.url ?? '/', 'http://fake').pathname;
    const body = (text === '' ? {} : JSON.parse(text)) as Record<string, unknown>;
    this.requests.push({ method: req.method ?? '', path, contentType: req.headers['content-type'] ?? '', body });
    const [code, payload] = this.#answer(req.method ?? '', path, body);
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(payload));
  }

  #answer(method: string, path: string, body: Record<string, unknown>): [number, unknown] {
    if (this.failWith !== undefined) return [this.failWith, { kind: 'Status', status: 'Failure', message: 'injected failure', code: this.failWith }];
    if (method === 'POST' && path === EVENTS) {
      this.events.set((body.metadata as { name: string }).name, body);
      return [201, body];
    }
    const name = path.slice(EVENTS.length + 1);
    const event = this.events.get(name);
    if (method !== 'PATCH' || event === undefined) return [404, { kind: 'Status', status: 'Failure', message: `events "${name}" not found`, code: 404, details: { name, kind: 'events' } }];
    Object.assign(event, body);
    return [200, event];
  }
}

describe('NodeEventRecorder', () => {
  let api: FakeEventsApi;
  let clock: FakeClock;
  let logs: { level: string; msg: string; code?: number }[];
  let recorder: NodeEventRecorder;

  beforeEach(async () => {
    api = new FakeEventsApi();
    await api.start();
    clock = new FakeClock(Date.parse('2026-03-01T10:00:00Z'));
    logs = [];
    const log = jsonLogger({ level: 'debug', write: (line) => logs.push(JSON.parse(line) as (typeof logs)[number]) });
    recorder = new NodeEventRecorder({ kubeConfig: api.kubeConfig(), nodeName: 'node-1', log, clock });
  });

  afterEach(async () => {
    await recorder.stop();
    await api.close();
  });

  it('creates a Node event, and aggregates an identical one into count 2', async () => {
    recorder.setNodeUID('uid-1');
    recorder.record('Warning', 'VerificationFailed', 'rules not applied: 2 violations');
    clock.advance(30_000);
    recorder.record('Warning', 'VerificationFailed', 'rules not applied: 2 violations');
    await recorder.flush();

    expect(api.requests.map((r) => `${r.method} ${r.path === EVENTS ? 'events' : 'event'} ${r.contentType}`)).toEqual(['POST events application/json', 'PATCH event application/merge-patch+json']);
    const [event] = [...api.events.values()];
    expect(event).toEqual({
      metadata: { name: expect.stringMatching(/^node-1\.[0-9a-f]+$/) as unknown, namespace: 'default' },
      involvedObject: { apiVersion: 'v1', kind: 'Node', name: 'node-1', uid: 'uid-1' },
      type: 'Warning',
      reason: 'VerificationFailed',
      message: 'rules not applied: 2 violations',
      source: { component: 'kpx', host: 'node-1' },
      reportingComponent: 'kpx',
      reportingInstance: 'node-1',
      firstTimestamp: '2026-03-01T10:00:00.000Z',
      lastTimestamp: '2026-03-01T10:00:30.000Z',
      count: 2,
    });
  });

  it('creates a new event for another message, and once the aggregation window has passed', async () => {
    recorder.record('Normal', 'DriftRepaired', 'nat table flushed; rules restored');
    recorder.record('Normal', 'DriftRepaired', 'filter table flushed; rules restored');
    await recorder.flush();
    clock.advance(AGGREGATION_WINDOW_MS + 1);
    recorder.record('Normal', 'DriftRepaired', 'nat table flushed; rules restored');
    await recorder.flush();
    expect(api.creates().map((e) => e.message)).toEqual(['nat table flushed; rules restored', 'filter table flushed; rules restored', 'nat table flushed; rules restored']);
    expect(api.requests.filter((r) => r.method === 'PATCH')).toEqual([]);
    expect(new Set(api.creates().map((e) => (e.metadata as { name: string }).name)).size).toBe(3);
  });

  it('rate limits per reason: a burst of 25, then one more every 5 minutes', async () => {
    for (let i = 0; i < SPAM_BURST + 5; i++) recorder.record('Warning', 'SyncFailed', `iptables-restore failed (attempt ${String(i)})`);
    recorder.record('Warning', 'VerificationFailed', 'another reason has its own bucket');
    await recorder.flush();
    expect(api.creates().filter((e) => e.reason === 'SyncFailed')).toHaveLength(SPAM_BURST);
    expect(api.creates().filter((e) => e.reason === 'VerificationFailed')).toHaveLength(1);

    clock.advance(SPAM_REFILL_MS);
    recorder.record('Warning', 'SyncFailed', 'after the refill 1');
    recorder.record('Warning', 'SyncFailed', 'after the refill 2');
    await recorder.flush();
    expect(api.creates().filter((e) => e.reason === 'SyncFailed').map((e) => e.message).slice(SPAM_BURST)).toEqual(['after the refill 1']);
  });

  it('never throws: a failed write is logged and the next event still goes out; an expired event is recreated', async () => {
    api.failWith = 500;
    expect(() => { recorder.record('Warning', 'SyncFailed', 'first'); }).not.toThrow();
    await recorder.flush();
    expect(logs).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'Could not record Event on the Node; dropped', code: 500 }));

    api.failWith = undefined;
    recorder.record('Warning', 'SyncFailed', 'second');
    await recorder.flush();
    api.events.clear(); // the apiserver's event TTL expired it
    recorder.record('Warning', 'SyncFailed', 'second');
    await recorder.flush();
    expect(api.requests.map((r) => `${r.method} ${r.path === EVENTS ? 'events' : 'event'}`)).toEqual(['POST events', 'POST events', 'PATCH event', 'POST events']);
    expect([...api.events.values()]).toMatchObject([{ message: 'second', count: 1 }]);
  });
});
