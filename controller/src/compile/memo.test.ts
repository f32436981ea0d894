/**
 * The agent's memos (ModelMemo, CompileMemo) must never change what is compiled: after every
 * change in a sequence, the memoised build equals a fresh build of the same objects, and what a
 * change did not touch is reused (the same chain objects), which is what makes partial syncs cheap.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildProxyModels, classifyObjects, ModelMemo } from '../model/cluster.ts';
import { decodeDocuments, type SourcedObject } from '../model/documents.ts';
import type { JsonObject } from '../model/fields.ts';
import { CompileMemo, compileFamily, type CompiledFamily } from './compile.ts';
import { renderRestore } from './render.ts';

const EXAMPLE = decodeDocuments(readFileSync(new URL('../../../examples/cluster.yaml', import.meta.url), 'utf8'), 'example');

const nameOf = (o: SourcedObject): string => (o.object.metadata as { name?: string } | undefined)?.name ?? '';

type Step = readonly [string, (objects: SourcedObject[]) => SourcedObject[]];

/** Replaces the object named `name` of `kind` with a changed copy (a new object, as an informer delivers). */
function edit(kind: string, name: string, change: (o: JsonObject) => void): (objects: SourcedObject[]) => SourcedObject[] {
  return (objects) => {
    const at = objects.findIndex((o) => o.object.kind === kind && nameOf(o) === name);
    const target = objects[at];
    if (target === undefined) throw new Error(`no ${kind} ${name} in the example`);
    const copy = structuredClone(target.object);
    change(copy);
    return objects.with(at, { ...target, object: copy });
  };
}

interface SliceEndpointShape { addresses: string[]; conditions?: Record<string, boolean> }
interface ServicePortShape { port: number }

/** The first element of a list the example is known to have. */
function first<T>(list: readonly T[] | undefined): T {
  const item = list?.[0];
  if (item === undefined) throw new Error('the example changed: an expected list is empty');
  return item;
}

const STEPS: readonly Step[] = [
  ['an endpoint of frontend moves', edit('EndpointSlice', 'frontend-v4', (o) => { first(o.endpoints as SliceEndpointShape[] | undefined).addresses = ['10.244.2.99']; })],
  ['a kube-dns endpoint becomes not ready', edit('EndpointSlice', 'kube-dns-x7k2p', (o) => { first(o.endpoints as SliceEndpointShape[] | undefined).conditions = { ready: false, serving: false, terminating: true }; })],
  ['the kubernetes Service changes port', edit('Service', 'kubernetes', (o) => { first((o.spec as { ports?: ServicePortShape[] } | undefined)?.ports).port = 8443; })],
  ['frontend is deleted', (objects) => objects.filter((o) => !(o.object.kind === 'Service' && nameOf(o) === 'frontend'))],
  ['frontend comes back', (objects) => [...objects, ...EXAMPLE.filter((o) => o.object.kind === 'Service' && nameOf(o) === 'frontend')]],
  ['a slice is deleted', (objects) => objects.filter((o) => !(o.object.kind === 'EndpointSlice' && nameOf(o) === 'kube-dns-x7k2p'))],
  ['the node gets another label (node context changes)', edit('Node', 'node-a', (o) => { ((o.metadata as JsonObject).labels as Record<string, string>).extra = 'x'; })],
  ['nothing changes', (objects) => objects],
];

function fresh(objects: readonly SourcedObject[]): CompiledFamily[] {
  const { state } = classifyObjects(objects);
  return buildProxyModels(state).families.map((m) => compileFamily(m));
}

describe('ModelMemo and CompileMemo', () => {
  it('compile exactly what a fresh build compiles after every change, and reuse what a change left alone', () => {
    const modelMemo = new ModelMemo();
    const compileMemos = new Map<string, CompileMemo>();
    const memoised = (objects: readonly SourcedObject[]): CompiledFamily[] => {
      const { state } = classifyObjects(objects);
      return buildProxyModels(state, { memo: modelMemo }).families.map((m) => {
        let memo = compileMemos.get(m.family);
        if (memo === undefined) compileMemos.set(m.family, (memo = new CompileMemo()));
        return compileFamily(m, { memo });
      });
    };
    let objects = [...EXAMPLE];
    let previous = memoised(objects);
    expect(previous.map((c) => renderRestore(c))).toEqual(fresh(objects).map((c) => renderRestore(c)));
    for (const [what, step] of STEPS) {
      objects = step(objects);
      const now = memoised(objects);
      expect(now.map((c) => renderRestore(c)), what).toEqual(fresh(objects).map((c) => renderRestore(c)));
      expect(now.map((c) => c.servicePorts.map((sp) => sp.servicePort.key)), what).toEqual(fresh(objects).map((c) => c.servicePorts.map((sp) => sp.servicePort.key)));
      // Reuse: a chain that renders the same is the same object, unless the node context changed.
      const v4 = (list: CompiledFamily[]): CompiledFamily | undefined => list.find((c) => c.family === 'IPv4');
      const before = new Map((v4(previous)?.ruleset.tables.find((t) => t.name === 'nat')?.chains ?? []).map((c) => [c.name, c]));
      const perService = (v4(now)?.ruleset.tables.find((t) => t.name === 'nat')?.chains ?? []).filter((c) => c.name.startsWith('KUBE-SEP-') || c.name.startsWith('KUBE-SVC-'));
      const reused = perService.filter((c) => before.get(c.name) === c).length;
      if (what.startsWith('the node')) expect(reused, what).toBe(0);
      else expect(reused, what).toBeGreaterThan(perService.length / 2);
      previous = now;
    }
  });
});
