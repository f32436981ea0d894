/**
 * `kpx preview`: compile a cluster state into kpx's rules, verify them, print them.
 * Exit 0 when verification passes, 3 on violations, 2 for bad input or usage.
 */
import { compileFamily, type CompiledFamily } from '../compile/compile.ts';
import { renderRestore, renderSave, ruleText } from '../compile/render.ts';
import type { ProxyModels } from '../model/cluster.ts';
import { formatViolation, verifyCompiled, type Violation } from '../sim/verify.ts';
import { parseProxyArgs, UsageError } from './args.ts';
import type { CommandIO } from './io.ts';
import { loadModels } from './pipeline.ts';
import { renderSummary } from './summary.ts';

export const PREVIEW_USAGE = `Usage: kpx preview [-f FILE]... [node and proxy options] [-o restore|save|json|summary]

Compiles Services, EndpointSlices and Nodes (YAML or JSON; -f - reads stdin) into the iptables
rules kpx programs, verifies them, and prints them. Without -f, the embedded example cluster.

Output (-o):
  restore   the payload a full sync feeds iptables-restore --noflush (default)
  save      a complete iptables-save style dump that loads into an empty network namespace
  json      the ruleset and the verification report
  summary   services, endpoints, chains and rules per table, and the verdict

Node and proxy options (override a KubeProxyConfiguration in the input):
  --node-name NAME              this node (default: the Node in the input)
  --node-ip IP                  a local address of the node, primary first (repeatable)
  --cluster-cidr CIDR           pod CIDR, one per family (repeatable)
  --detect-local-mode MODE      ClusterCIDR | NodeCIDR | BridgeInterface | InterfaceNamePrefix
  --pod-bridge-interface NAME   for BridgeInterface
  --pod-interface-name-prefix P for InterfaceNamePrefix
  --masquerade-all              masquerade all traffic to cluster IPs
  --masquerade-bit N            mark bit for masquerading (default 14)
  --localhost-nodeports BOOL    accept NodePorts on 127.0.0.1 (default true, IPv4 only)
  --nodeport-addresses CIDRS    addresses NodePorts answer on (default: all local)
  --ip-family ipv4|ipv6         which family to print (default: the primary node IP's)
  --service-proxy-name NAME     handle Services labelled service.kubernetes.io/service-proxy-name=NAME
  --nfacct BOOL                 the nfacct counters exist (default false)
  --masquerade-random-fully BOOL  MASQUERADE --random-fully (default true)
  --conntrack-tcp-be-liberal BOOL omit the INVALID drop rule (default false)

Exit status: 0 verified, 3 verification found violations, 2 bad input or usage.
`;

export interface FamilyReport {
  readonly compiled: CompiledFamily;
  readonly checks: number;
  readonly violations: readonly Violation[];
}

export function compileAndVerify(models: ProxyModels): FamilyReport[] {
  return models.families.map((model) => {
    const compiled = compileFamily(model);
    const report = verifyCompiled(compiled);
    return { compiled, checks: report.checks, violations: report.violations };
  });
}

function jsonReport(models: ProxyModels, reports: readonly FamilyReport[]): unknown {
  return {
    version: 1,
    node: { name: models.config.nodeName, addresses: models.node?.addresses ?? models.config.nodeIPs },
    families: reports.map(({ compiled, checks, violations }) => ({
      family: compiled.family,
      largeClusterMode: compiled.model.largeClusterMode,
      ruleset: {
        tables: compiled.ruleset.tables.map((t) => ({
          name: t.name,
          chains: t.chains.map((c) => ({ name: c.name, rules: c.rules.map(ruleText) })),
        })),
      },
      jumps: compiled.jumps.map((j) => ({ table: j.table, chain: j.chain, rule: ruleText(j.rule) })),
      servicePorts: compiled.servicePorts.map((sp) => ({
        servicePort: sp.servicePort.spn,
        protocol: sp.servicePort.protocol,
        chains: sp.natChains,
        endpoints: {
          cluster: sp.categories.clusterEndpoints.map((e) => e.endpoint),
          local: sp.categories.localEndpoints.map((e) => e.endpoint),
        },
      })),
      verification: { passed: violations.length === 0, checks, violations },
    })),
    problems: models.problems.map((p) => ({ kind: p.kind, source: p.source, object: p.object, message: p.message })),
  };
}

export function previewCommand(args: readonly string[], io: CommandIO): number {
  const { values } = parseProxyArgs(args);
  if (values.help === true) {
    io.stdout(PREVIEW_USAGE);
    return 0;
  }
  const output = values.output ?? 'restore';
  if (!['restore', 'save', 'json', 'summary'].includes(output)) {
    throw new UsageError(`-o "${output}" is not one of restore, save, json, summary`);
  }
  const { models, problems, description } = loadModels(values, io);
  const reports = compileAndVerify(models);
  const primary = reports[0];
  if (primary === undefined) throw new UsageError('no IP family to compile');
  switch (output) {
    case 'restore':
      io.stdout(renderRestore(primary.compiled));
      break;
    case 'save':
      io.stdout(renderSave(primary.compiled));
      break;
    case 'json':
      io.stdout(`${JSON.stringify(jsonReport(models, reports), null, 2)}\n`);
      break;
    case 'summary':
      io.stdout(renderSummary({ models, reports, inputs: description }));
      break;
  }
  const violations = reports.flatMap((r) => r.violations.map((v) => `${r.compiled.family} ${formatViolation(v)}`));
  for (const v of violations) io.stderr(`kpx: verification: ${v}\n`);
  if (violations.length > 0) return 3;
  return problems.some((p) => p.kind === 'invalid') ? 2 : 0;
}
