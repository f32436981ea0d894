/**
 * The embedded example cluster (examples/cluster.yaml) for unit tests of the planner and the
 * read-back: compiled as node-a (IPv4), one change of it, and a dump as the node would print it.
 */
import { readFileSync } from 'node:fs';
import { compileFamily, type CompiledFamily } from '../compile/compile.ts';
import { renderSave } from '../compile/render.ts';
import { buildProxyModels, classifyObjects } from '../model/cluster.ts';
import { decodeDocuments, type SourcedObject } from '../model/documents.ts';
import type { KernelDump } from '../plan/plan.ts';

export const EXAMPLE = decodeDocuments(readFileSync(new URL('../../../examples/cluster.yaml', import.meta.url), 'utf8'), 'example');

/** The IPv4 rules of node-a for these objects. */
export function compileExample(objects: readonly SourcedObject[]): CompiledFamily {
  const { state } = classifyObjects(objects);
  const family = buildProxyModels(state, { overrides: { nodeName: 'node-a', ipFamily: 'IPv4' } }).families[0];
  if (family === undefined) throw new Error('no family');
  return compileFamily(family);
}

/** The example with shop/frontend's first IPv4 endpoint removed. */
export function withoutFirstFrontendEndpoint(): SourcedObject[] {
  return EXAMPLE.map((o) => {
    const meta = o.object.metadata as { name?: string } | undefined;
    if (o.object.kind !== 'EndpointSlice' || meta?.name !== 'frontend-v4') return o;
    const copy = structuredClone(o.object) as { endpoints: unknown[] };
    return { ...o, object: { ...copy, endpoints: copy.endpoints.slice(1) } };
  });
}

/** A dump as the node would print it: each table of renderSave, as `iptables-save -t T`. */
export function dumpOf(compiled: CompiledFamily): KernelDump {
  const text = renderSave(compiled);
  const table = (name: string): string => {
    const start = text.indexOf(`*${name}\n`);
    return text.slice(start, text.indexOf('COMMIT\n', start) + 'COMMIT\n'.length);
  };
  return { filter: table('filter'), nat: table('nat') };
}
