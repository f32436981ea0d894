/**
 * The offline pipeline shared by the commands: read inputs, build the models, report problems.
 */
import { buildProxyModels, classifyObjects, type ProxyModels } from '../model/cluster.ts';
import { formatProblem, type Problem } from '../model/problem.ts';
import { proxyOverrides, type ProxyFlagValues } from './args.ts';
import { loadInputs } from './inputs.ts';
import type { CommandIO } from './io.ts';

export interface LoadedModels {
  readonly models: ProxyModels;
  readonly problems: readonly Problem[];
  readonly description: string;
}

/** Reads `-f` inputs (or the embedded example) and prints each problem on stderr. */
export function loadModels(values: Pick<ProxyFlagValues, keyof ProxyFlagValues>, io: CommandIO): LoadedModels {
  const overrides = proxyOverrides(values);
  const inputs = loadInputs(values.file, io.readStdin);
  const { state, problems: classifyProblems } = classifyObjects(inputs.objects);
  const models = buildProxyModels(state, { overrides });
  const problems = [...classifyProblems, ...models.problems];
  for (const p of problems) io.stderr(`kpx: ${p.kind === 'invalid' ? 'error' : 'note'}: ${formatProblem(p)}\n`);
  return { models, problems, description: inputs.description };
}
