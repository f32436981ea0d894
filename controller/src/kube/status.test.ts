import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../agent/clock.ts';
import { jsonLogger, type Logger } from '../agent/log.ts';
import { MAX_VIOLATIONS, NodeProxyStatusWriter, type NodeProxyCondition, type NodeProxyStatusBody } from './status.ts';
import { TestApiServer } from './test-apiserver.ts';

const BASE = '/apis/kpx.dev/v1alpha1/nodeproxystatuses';

interface Request {
  readonly method: string;
  readonly path: string;
  readonly contentType: string;
  readonly body: unknown;
}

type StoredObject = { metadata: { name: string; ownerReferences?: unknown[] }; status?: unknown } & Record<string, unknown>;

/** Just enough of the apiserver for NodeProxyStatus: create, JSON patch of /status, merge patch of the object. */
class FakeStatusApi extends TestApiServer {
  readonly requests: Request[] = [];
  readonly objects = new Map<string, StoredObject>();
  crdInstalled = true;
  failWith: number | undefined;

  statusPatches(): unknown[] {
    return this.requests.filter((r) => r.method === 'PATCH' && r.path.endsWith('/status')).map((r) => r.body);
  }

  protected handle(req: IncomingMessage, res: ServerResponse, text: string): void {
    const path = new URL(req.url ?? '/', 'http://fake').pathname;
    const body: unknown = text === '' ? undefined : JSON.parse(text);
    this.requests.push({ method: req.method ?? '', path, contentType: req.headers['content-type'] ?? '', body });
    const [code, payload] = this.#answer(req.method ?? '', path, body);
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(payload));
  }

  #answer(method: string, path: string, body: unknown): [number, unknown] {
    const failure = (code: number, message: string, details: object = {}): [number, unknown] => [code, { kind: 'Status', apiVersion: 'v1', status: 'Failure', message, code, details }];
    if (this.failWith !== undefined) return failure(this.failWith, 'injected failure');
    if (!this.crdInstalled) return failure(404, 'the server could not find the requested resource');
    if (method === 'POST' && path === BASE) {
      const obj = body as StoredObject;
      if (this.objects.has(obj.metadata.name)) return failure(409, 'already exists', { name: obj.metadata.name });
      this.objects.set(obj.metadata.name, obj);
      return [201, obj];
    }
    const [name = '', sub] = path.slice(BASE.length + 1).split('/');
    const obj = this.objects.get(name);
    if (method !== 'PATCH' || obj === undefined) return failure(404, `nodeproxystatuses.kpx.dev "${name}" not found`, { name, group: 'kpx.dev', kind: 'nodeproxystatuses' });
    if (sub === 'status') {
      const ops = body as { op: string; path: string; value: unknown }[];
      if (ops.length !== 1 || ops[0]?.op !== 'add' || ops[0].path !== '/status') return failure(422, `unexpected patch ${JSON.stringify(body)}`);
      obj.status = ops[0].value;
    } else {
      obj.metadata = { ...obj.metadata, ...(body as StoredObject).metadata };
    }
    return [200, obj];
  }
}

function status(n: number, extra: Partial<NodeProxyStatusBody> = {}): NodeProxyStatusBody {
  return { lastSyncKind: 'partial', rulesetHash: `hash-${String(n)}`, rulesPerTable: { filter: 3, nat: 10 + n }, ...extra };
}

describe('NodeProxyStatusWriter', () => {
  let api: FakeStatusApi;
  let clock: FakeClock;
  let logs: { level: string; msg: string; code?: number }[];
  let log: Logger;
  let writer: NodeProxyStatusWriter;

  beforeEach(async () => {
    api = new FakeStatusApi();
    await api.start();
    clock = new FakeClock(1_000_000);
    logs = [];
    log = jsonLogger({ level: 'debug', write: (line) => logs.push(JSON.parse(line) as (typeof logs)[number]) });
    writer = new NodeProxyStatusWriter({ kubeConfig: api.kubeConfig(), nodeName: 'node-1', log, clock });
  });

  afterEach(async () => {
    await writer.stop();
    await api.close();
  });

  it('writes the first status at once, then at most one per interval, always the latest', async () => {
    writer.update(status(0));
    clock.advance(0);
    await writer.flush();
    expect(api.statusPatches()).toHaveLength(1);

    for (let i = 1; i <= 10; i++) {
      clock.advance(500);
      writer.update(status(i));
    }
    // 5 s after the first write: nothing may be written until 10 s have passed since it.
    expect(clock.nextAt()).toBe(1_000_000 + 10_000);
    clock.advance(4_999);
    expect(api.statusPatches()).toHaveLength(1);
    clock.advance(1);
    await writer.flush();
    expect(api.statusPatches()).toEqual([[{ op: 'add', path: '/status', value: status(0) }], [{ op: 'add', path: '/status', value: status(10) }]]);
    expect(writer.writes).toBe(2);
    expect(clock.pending).toBe(0);
  });

  it('creates the object owned by the Node, then writes the status subresource', async () => {
    writer.setNodeUID('uid-1');
    writer.update(status(1));
    await writer.flush();
    writer.update(status(2));
    await writer.flush();

    expect(api.requests.map((r) => `${r.method} ${r.path} ${r.contentType}`)).toEqual([
      `POST ${BASE} application/json`,
      `PATCH ${BASE}/node-1/status application/json-patch+json`,
      `PATCH ${BASE}/node-1/status application/json-patch+json`,
    ]);
    expect(api.objects.get('node-1')).toEqual({
      apiVersion: 'kpx.dev/v1alpha1',
      kind: 'NodeProxyStatus',
      metadata: { name: 'node-1', ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: 'node-1', uid: 'uid-1' }] },
      status: status(2),
    });
  });

  it('adds the owner once the Node UID is known, and recreates an object deleted behind its back', async () => {
    writer.update(status(1));
    await writer.flush();
    expect(api.objects.get('node-1')?.metadata.ownerReferences).toEqual([]);

    writer.setNodeUID('uid-9');
    clock.advance(10_000);
    await writer.flush();
    expect(api.objects.get('node-1')?.metadata.ownerReferences).toEqual([{ apiVersion: 'v1', kind: 'Node', name: 'node-1', uid: 'uid-9' }]);
    expect(api.objects.get('node-1')?.status).toEqual(status(1));

    api.objects.delete('node-1');
    writer.update(status(2));
    await writer.flush(); // 404 on the object: recreate on the next write
    expect(writer.failures).toBe(1);
    clock.advance(10_000);
    await writer.flush();
    expect(api.objects.get('node-1')).toMatchObject({ metadata: { ownerReferences: [{ uid: 'uid-9' }] }, status: status(2) });
  });

  it('reports a missing CRD once, retries slowly, and picks the CRD up when it appears', async () => {
    api.crdInstalled = false;
    writer.update(status(1));
    await writer.flush();
    clock.advance(10_000);
    expect(api.requests).toHaveLength(1); // no retry at the normal interval
    clock.advance(50_000);
    await writer.flush();
    expect(api.requests).toHaveLength(2);
    expect(writer.failures).toBe(2);
    expect(logs.filter((l) => l.msg === 'NodeProxyStatus CRD not installed; status reporting disabled until it is')).toHaveLength(1);
    expect(logs.filter((l) => l.level === 'warn')).toHaveLength(1);

    api.crdInstalled = true;
    writer.update(status(2));
    clock.advance(60_000);
    await writer.flush();
    expect(writer.writes).toBe(1);
    expect(api.objects.get('node-1')?.status).toEqual(status(2));
    expect(logs.at(-1)).toMatchObject({ level: 'info', msg: 'NodeProxyStatus CRD found; status reporting enabled' });
  });

  it('never throws on server errors: logs, keeps the status and retries at the next interval', async () => {
    api.failWith = 500;
    expect(() => { writer.update(status(1)); }).not.toThrow();
    await writer.flush();
    expect(writer.failures).toBe(1);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'Could not write NodeProxyStatus; retrying with the next write', code: 500 }));

    api.failWith = undefined;
    expect(clock.nextAt()).toBe(1_000_000 + 10_000);
    clock.advance(10_000);
    await writer.flush();
    expect(writer.writes).toBe(1);
    expect(api.objects.get('node-1')?.status).toEqual(status(1));
  });

  it('keeps condition transition times while the status holds, and fits violations into the schema', async () => {
    const ready = (s: 'True' | 'False', at: string): NodeProxyCondition[] => [{ type: 'Ready', status: s, reason: 'RulesApplied', message: 'ok', lastTransitionTime: at }];
    writer.update(status(1, { conditions: ready('True', '2026-01-01T00:00:00Z') }));
    await writer.flush();
    writer.update(status(2, { conditions: ready('True', '2026-01-01T00:05:00Z'), verification: { verdict: 'Failed', checks: 40, violations: Array.from({ length: 25 }, (_, i) => `v${String(i)}`) } }));
    await writer.flush();
    const written = api.objects.get('node-1')?.status as NodeProxyStatusBody;
    expect(written.conditions?.[0]?.lastTransitionTime).toBe('2026-01-01T00:00:00Z');
    expect(written.verification?.violations).toHaveLength(MAX_VIOLATIONS);
    expect(written.verification?.violations?.at(-1)).toBe('... and 6 more violations');

    writer.update(status(3, { conditions: ready('False', '2026-01-01T00:09:00Z') }));
    await writer.flush();
    expect((api.objects.get('node-1')?.status as NodeProxyStatusBody).conditions?.[0]?.lastTransitionTime).toBe('2026-01-01T00:09:00Z');
  });
});
