/**
 * `-o summary`: a table an operator reads at a glance.
 */
import type { ProxyModels } from '../model/cluster.ts';
import { joinHostPort } from '../model/ip.ts';
import type { Endpoint, ServicePort } from '../model/proxy-model.ts';
import type { FamilyReport } from './preview.ts';

function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

function frontends(sp: ServicePort): string {
  const parts: string[] = [];
  if (sp.nodePort !== 0) parts.push(`nodePort ${String(sp.nodePort)}`);
  for (const ip of sp.externalIPs) parts.push(`external ${ip}`);
  for (const ip of sp.loadBalancerIPs) parts.push(`lb ${ip}`);
  if (sp.loadBalancerSourceRanges.length > 0) parts.push(`ranges ${sp.loadBalancerSourceRanges.join(',')}`);
  if (sp.healthCheckNodePort !== 0) parts.push(`hc ${String(sp.healthCheckNodePort)}`);
  return parts.length === 0 ? '-' : parts.join(', ');
}

function endpointSummary(all: readonly Endpoint[], used: readonly Endpoint[]): string {
  if (all.length === 0) return 'none';
  const local = used.filter((e) => e.isLocal).length;
  const terminating = used.filter((e) => e.terminating).length;
  const extra = [`${String(local)} local`, ...(terminating > 0 ? [`${String(terminating)} terminating`] : [])];
  return `${String(used.length)}/${String(all.length)} used (${extra.join(', ')})`;
}

export interface SummaryInput {
  readonly models: ProxyModels;
  readonly reports: readonly FamilyReport[];
  readonly inputs: string;
}

export function renderSummary({ models, reports, inputs }: SummaryInput): string {
  const out: string[] = [];
  const node = models.config.nodeName === '' ? '(none: no endpoint is local)' : models.config.nodeName;
  out.push(`kpx preview of ${inputs}`);
  out.push(`node ${node}; ${String(models.serviceCount)} services, ${String(models.endpointSliceCount)} endpoint slices read`);
  for (const { compiled, checks, violations } of reports) {
    const n = compiled.model.node;
    out.push('');
    out.push(`${compiled.family}: node IP ${n.primaryIP ?? 'unknown'}, local traffic ${n.detector.kind === 'cidr' ? `from ${n.detector.cidr}` : n.detector.kind === 'interface' ? `on ${n.detector.name}` : 'not detected'}, mark ${n.masqueradeMark}${compiled.model.largeClusterMode ? ', large-cluster mode' : ''}`);
    const rows: string[][] = [['SERVICE PORT', 'PROTO', 'CLUSTER IP', 'FRONTENDS', 'POLICY (int/ext)', 'ENDPOINTS', 'RESULT']];
    for (const sp of compiled.servicePorts) {
      const s = sp.servicePort;
      const all = compiled.model.endpoints.get(s.key) ?? [];
      const result = !sp.categories.hasAnyEndpoints ? 'REJECT (no endpoints)' : !sp.hasInternal ? 'DROP internal (no local endpoints)' : !sp.hasExternal ? 'DROP external (no local endpoints)' : 'DNAT';
      rows.push([
        s.spn,
        s.protocol,
        joinHostPort(s.clusterIP, s.port),
        frontends(s),
        `${s.internalPolicyLocal ? 'Local' : 'Cluster'}/${s.externalPolicyLocal ? 'Local' : 'Cluster'}${s.affinityTimeoutSeconds > 0 ? ' +affinity' : ''}`,
        endpointSummary(all, sp.categories.allReachable),
        result,
      ]);
    }
    out.push(table(rows));
    const counts = compiled.ruleset.tables.map((t) => `${t.name} ${String(t.chains.length)} chains / ${String(t.chains.reduce((n, c) => n + c.rules.length, 0))} rules`);
    out.push(`rules: ${counts.join(', ')} (+${String(compiled.jumps.length)} jumps from built-in chains)`);
    out.push(violations.length === 0 ? `verification: passed (${String(checks)} simulated connections, structure)` : `verification: FAILED, ${String(violations.length)} violations (see stderr)`);
  }
  const invalid = models.problems.filter((p) => p.kind === 'invalid').length;
  if (invalid > 0) out.push(`\n${String(invalid)} invalid objects were skipped (see stderr)`);
  return out.join('\n') + '\n';
}
