/**
 * Verification cost against compile + restore cost, for a full ruleset (issue target: verifying
 * 10,000 services × 10 endpoints costs less than a fifth of compiling and restoring it).
 * The restore is a real `iptables-restore` of the full save form into an empty network namespace
 * (root needed; without root the restore column is skipped and no ratio is claimed).
 * `partial s` is a partial sync's verification of 10 service ports of the same ruleset.
 */
import { execa } from 'execa';
import { compileFamily } from '../controller/src/compile/compile.ts';
import { renderSave } from '../controller/src/compile/render.ts';
import { buildProxyModels } from '../controller/src/model/cluster.ts';
import { verifyCompiled } from '../controller/src/sim/verify.ts';
import { syntheticCluster } from './synthetic.ts';

const seconds = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e9;

async function restoreSeconds(text: string): Promise<number | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const ns = `kpxbench-${String(process.pid)}`;
  await execa('ip', ['netns', 'add', ns]);
  try {
    const start = process.hrtime.bigint();
    await execa('ip', ['netns', 'exec', ns, 'iptables-restore'], { input: text });
    return seconds(start);
  } finally {
    await execa('ip', ['netns', 'del', ns]);
  }
}

const sizes = (process.env.KPX_BENCH_VERIFY_SIZES ?? '1000,10000').split(',').map(Number);
console.log('services  compile s  restore s  verify s  checks  verify/(compile+restore)  partial s');
for (const services of sizes) {
  const state = syntheticCluster({ services, endpoints: 10 });
  let start = process.hrtime.bigint();
  const model = buildProxyModels(state, { overrides: { nodeName: 'node-0' } }).families[0];
  if (model === undefined) throw new Error('no model');
  const compiled = compileFamily(model);
  const text = renderSave(compiled);
  const compileS = seconds(start);
  const restoreS = await restoreSeconds(text);
  start = process.hrtime.bigint();
  const report = verifyCompiled(compiled);
  const verifyS = seconds(start);
  if (report.violations.length > 0) throw new Error(`verification failed: ${String(report.violations.length)} violations`);
  const changed = new Set(compiled.servicePorts.slice(0, 10).map((csp) => csp.servicePort.key));
  start = process.hrtime.bigint();
  verifyCompiled(compiled, { only: changed });
  const partialS = seconds(start);
  const ratio = restoreS === undefined ? 'n/a (not root)' : (verifyS / (compileS + restoreS)).toFixed(3);
  console.log(
    [String(services).padStart(8), compileS.toFixed(2).padStart(9), (restoreS?.toFixed(2) ?? '-').padStart(9), verifyS.toFixed(2).padStart(8), String(report.checks).padStart(6), ratio.padStart(24), partialS.toFixed(3).padStart(9)].join('  '),
  );
}
