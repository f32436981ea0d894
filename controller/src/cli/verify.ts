/**
 * `kpx verify`: prove the rules kpx compiles for the inputs, or check a node's iptables-save dump
 * against the state it should implement, by simulation. Exit 0 when everything holds, 3 when
 * something does not, 2 for bad input.
 */
import { parseArgs } from 'node:util';
import { compileFamily } from '../compile/compile.ts';
import { standaloneRuleset } from '../compile/render.ts';
import { SERVICE_CHAIN_PREFIXES } from '../compile/hash.ts';
import { diffRulesets, formatChainDifference } from '../plan/diff.ts';
import { formatViolation, verifyCompiled, type VerificationReport } from '../sim/verify.ts';
import { PROXY_OPTIONS, UsageError } from './args.ts';
import { readDumpFile } from './inputs.ts';
import type { CommandIO } from './io.ts';
import { loadModels } from './pipeline.ts';

export const VERIFY_USAGE = `Usage: kpx verify [-f FILE]... [--rules SAVEFILE] [node and proxy options] [-o text|json]

Without --rules: compiles the inputs (or the embedded example) and proves the rules by simulating
every service port from every kind of client (pods, the node, external clients) to every frontend.
With --rules: checks a node's iptables-save dump (for --ip-family ipv6, an ip6tables-save dump)
against the state the inputs describe: every difference in behaviour is a violation, and rule
differences in kpx's chains are listed too.

Exit status: 0 all checks hold, 3 violations found, 2 bad input or usage.
`;

const OPTIONS = { ...PROXY_OPTIONS, rules: { type: 'string' } } as const;

const KPX_TOP_CHAINS = new Set(['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ', 'KUBE-FORWARD', 'KUBE-PROXY-FIREWALL']);
const isKpxChain = (_table: string, chain: string): boolean => KPX_TOP_CHAINS.has(chain) || SERVICE_CHAIN_PREFIXES.some((p) => chain.startsWith(p));

export function verifyCommand(args: readonly string[], io: CommandIO): number {
  let values;
  try {
    ({ values } = parseArgs({ args: [...args], options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new UsageError((error as Error).message.split('\n')[0] ?? 'invalid arguments', { cause: error });
  }
  if (values.help === true) {
    io.stdout(VERIFY_USAGE);
    return 0;
  }
  const output = values.output ?? 'text';
  if (output !== 'text' && output !== 'json') throw new UsageError(`-o "${output}" is not one of text, json`);
  const { models, problems, description } = loadModels(values, io);
  const reports: { report: VerificationReport; differences: string[] }[] = [];
  const families = values.rules === undefined ? models.families : models.families.filter((m) => m.family === (models.config.ipFamily ?? models.families[0]?.family));
  for (const model of families) {
    const compiled = compileFamily(model);
    if (values.rules === undefined) {
      reports.push({ report: verifyCompiled(compiled), differences: [] });
      continue;
    }
    const dump = readDumpFile(values.rules, model.family);
    const report = verifyCompiled(compiled, { ruleset: dump.ruleset, policies: dump.policies });
    const differences = diffRulesets(standaloneRuleset(compiled), dump.ruleset, { chains: isKpxChain }).map(formatChainDifference);
    reports.push({ report, differences });
  }
  const violations = reports.reduce((n, r) => n + r.report.violations.length, 0);
  if (output === 'json') {
    io.stdout(
      `${JSON.stringify(
        {
          version: 1,
          rules: values.rules ?? null,
          families: reports.map(({ report, differences }) => ({
            family: report.family,
            checks: report.checks,
            passed: report.violations.length === 0,
            violations: report.violations,
            ruleDifferences: differences,
          })),
        },
        null,
        2,
      )}\n`,
    );
  } else {
    const against = values.rules === undefined ? `the rules kpx compiles for ${description}` : `${values.rules} against ${description}`;
    const out: string[] = [`kpx verify: ${against}`];
    for (const { report, differences } of reports) {
      out.push('', `${report.family}: ${String(report.checks)} simulated connections, ${String(report.violations.length)} violations`);
      for (const v of report.violations) out.push(`  VIOLATION ${formatViolation(v)}`);
      if (differences.length > 0) {
        out.push(`  ${String(differences.length)} of kpx's chains differ from the desired rules:`);
        for (const d of differences) out.push(...d.split('\n').map((l) => `    ${l}`));
      }
    }
    out.push('', violations === 0 ? 'verdict: every check holds' : `verdict: ${String(violations)} violations`);
    io.stdout(out.join('\n') + '\n');
  }
  if (violations > 0) return 3;
  return problems.some((p) => p.kind === 'invalid') ? 2 : 0;
}
