/**
 * Compile benchmark: build the model, compile and render a full ruleset for synthetic clusters.
 * Reports wall time per stage and heap growth; figures are for comparison within one run.
 */
import { compileFamily } from '../controller/src/compile/compile.ts';
import { renderRestore } from '../controller/src/compile/render.ts';
import { buildProxyModels } from '../controller/src/model/cluster.ts';
import { syntheticCluster } from './synthetic.ts';

function time<T>(run: () => T): [T, number] {
  const start = process.hrtime.bigint();
  const value = run();
  return [value, Number(process.hrtime.bigint() - start) / 1e6];
}

const sizes = (process.env.KPX_BENCH_SIZES ?? '1000,10000').split(',').map(Number);
console.log('services  endpoints  model ms  compile ms  render ms  rules  payload MB  heap MB');
for (const services of sizes) {
  const state = syntheticCluster({ services, endpoints: 10 });
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const [models, modelMs] = time(() => buildProxyModels(state, { overrides: { nodeName: 'node-0' } }));
  const model = models.families[0];
  if (model === undefined) throw new Error('no model');
  const [compiled, compileMs] = time(() => compileFamily(model));
  const [text, renderMs] = time(() => renderRestore(compiled));
  const heapMB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
  const rules = compiled.ruleset.tables.reduce((n, t) => n + t.chains.reduce((m, c) => m + c.rules.length, 0), 0);
  console.log(
    [String(services).padStart(8), String(services * 10).padStart(9), modelMs.toFixed(0).padStart(8), compileMs.toFixed(0).padStart(10), renderMs.toFixed(0).padStart(9), String(rules).padStart(6), (text.length / 2 ** 20).toFixed(1).padStart(10), heapMB.toFixed(0).padStart(7)].join('  '),
  );
}
