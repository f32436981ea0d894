/**
 * Property tests over random cluster states (controller/src/testing/arbitrary.ts): whatever valid
 * objects come in, the model reports no invalid object, the compiler never throws and its output
 * is structurally sound and reads back through the parser unchanged; whatever single object is
 * broken, the model reports it, skips it entirely and still compiles the rest.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildProxyModels, type ProxyModels } from '../model/cluster.ts';
import type { JsonObject } from '../model/fields.ts';
import { objectLabel } from '../model/problem.ts';
import { parseRuleset } from '../sim/parse.ts';
import { checkStructure, formatStructureViolation } from '../sim/structure.ts';
import {
  clusterStateOf,
  invalidClusterArbitrary,
  sourceOf,
  validClusterArbitrary,
  type InvalidCase,
} from '../testing/arbitrary.ts';
import { compileFamily, type CompiledFamily } from './compile.ts';
import { renderRestore, renderSave, standaloneRuleset } from './render.ts';

const NUM_RUNS = 200;

function compileAll(models: ProxyModels): CompiledFamily[] {
  return models.families.map((m) => compileFamily(m));
}

function violationsOf(compiled: readonly CompiledFamily[]): string[] {
  return compiled.flatMap((c) => checkStructure(standaloneRuleset(c)).map((v) => `${c.family} ${formatStructureViolation(v)}`));
}

/** The label a Problem uses for an object: kind plus whatever name and namespace it still has. */
function expectedLabel(kind: string, object: JsonObject): string {
  const meta = (typeof object.metadata === 'object' && object.metadata !== null ? object.metadata : {}) as Record<string, unknown>;
  return objectLabel(kind, {
    ...(typeof meta.name === 'string' ? { name: meta.name } : {}),
    ...(typeof meta.namespace === 'string' ? { namespace: meta.namespace } : {}),
  });
}

/** What the compiler sees of a model: everything but the problem list. */
function modelView(models: ProxyModels): unknown {
  return { config: models.config, node: models.node, families: models.families, services: models.serviceCount, slices: models.endpointSliceCount };
}

describe('random valid clusters', () => {
  it('are read without an invalid problem', () => {
    fc.assert(
      fc.property(validClusterArbitrary(), (cluster) => {
        const models = buildProxyModels(clusterStateOf(cluster.objects));
        expect(models.problems.filter((p) => p.kind === 'invalid')).toEqual([]);
        expect(models.families.map((f) => f.family)).toEqual(cluster.nodeFamilies);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('compile without throwing into structurally sound rulesets', () => {
    fc.assert(
      fc.property(validClusterArbitrary(), (cluster) => {
        const compiled = compileAll(buildProxyModels(clusterStateOf(cluster.objects)));
        expect(violationsOf(compiled)).toEqual([]);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('read back through the parser unchanged, restore and save forms', () => {
    fc.assert(
      fc.property(validClusterArbitrary(), (cluster) => {
        for (const c of compileAll(buildProxyModels(clusterStateOf(cluster.objects)))) {
          expect(parseRuleset(renderRestore(c), c.family)).toEqual(c.ruleset);
          expect(parseRuleset(renderSave(c), c.family)).toEqual(standaloneRuleset(c));
        }
      }),
      { numRuns: NUM_RUNS },
    );
  });
});

describe('random clusters with one invalid object', () => {
  const withoutBadObject = (c: InvalidCase): JsonObject[] => c.objects.filter((_, i) => i !== c.index);

  it('report the object as invalid, naming it, and never throw', () => {
    fc.assert(
      fc.property(invalidClusterArbitrary(), (c) => {
        const bad = c.objects[c.index];
        if (bad === undefined) throw new Error('mutated index out of range');
        const models = buildProxyModels(clusterStateOf(c.objects));
        const reported = models.problems.filter((p) => p.kind === 'invalid' && p.source === sourceOf(c.index));
        expect(reported.map((p) => p.object), `after ${c.kind} ${c.mutation}`).toEqual([expectedLabel(c.kind, bad)]);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('skip the object entirely: the model equals the one without it', () => {
    fc.assert(
      fc.property(invalidClusterArbitrary(), (c) => {
        const withBad = buildProxyModels(clusterStateOf(c.objects));
        const without = buildProxyModels(clusterStateOf(withoutBadObject(c)));
        expect(modelView(withBad), `after ${c.kind} ${c.mutation}`).toEqual(modelView(without));
        if (c.kind === 'Service') {
          const meta = (c.objects[c.index]?.metadata ?? {}) as Record<string, unknown>;
          const ports = withBad.families.flatMap((f) => f.servicePorts);
          expect(ports.filter((sp) => sp.namespace === meta.namespace && sp.serviceName === meta.name)).toEqual([]);
        }
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('still compile into structurally sound rulesets', () => {
    fc.assert(
      fc.property(invalidClusterArbitrary(), (c) => {
        const compiled = compileAll(buildProxyModels(clusterStateOf(c.objects)));
        expect(violationsOf(compiled), `after ${c.kind} ${c.mutation}`).toEqual([]);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
