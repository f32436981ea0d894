import { describe, expect, it } from 'vitest';
import { createMetrics } from './metrics.ts';
import type { ProxyMetrics } from './metrics.ts';

// The kube-proxy table (reference §6.1 and §5), written out independently of metrics.ts.
const EXP_BUCKETS = ['0.001', '0.002', '0.004', '0.008', '0.016', '0.032', '0.064', '0.128', '0.256', '0.512', '1.024', '2.048', '4.096', '8.192', '16.384'];
const NETWORK_BUCKETS: string[] = ['0', '0.25', '0.5'];
for (let s = 1; s <= 59; s++) NETWORK_BUCKETS.push(String(s));
for (let s = 60; s <= 115; s += 5) NETWORK_BUCKETS.push(String(s));
for (let s = 120; s <= 300; s += 30) NETWORK_BUCKETS.push(String(s));

interface Expected {
  readonly type: 'histogram' | 'gauge' | 'counter';
  readonly labels: readonly string[];
  readonly buckets?: readonly string[];
}

const KUBE_PROXY: Readonly<Record<string, Expected>> = {
  kubeproxy_sync_proxy_rules_duration_seconds: { type: 'histogram', labels: ['ip_family'], buckets: EXP_BUCKETS },
  kubeproxy_sync_full_proxy_rules_duration_seconds: { type: 'histogram', labels: ['ip_family'], buckets: EXP_BUCKETS },
  kubeproxy_sync_partial_proxy_rules_duration_seconds: { type: 'histogram', labels: ['ip_family'], buckets: EXP_BUCKETS },
  kubeproxy_network_programming_duration_seconds: { type: 'histogram', labels: ['ip_family'], buckets: NETWORK_BUCKETS },
  kubeproxy_sync_proxy_rules_last_timestamp_seconds: { type: 'gauge', labels: ['ip_family'] },
  kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds: { type: 'gauge', labels: ['ip_family'] },
  kubeproxy_sync_proxy_rules_endpoint_changes_pending: { type: 'gauge', labels: [] },
  kubeproxy_sync_proxy_rules_endpoint_changes_total: { type: 'counter', labels: [] },
  kubeproxy_sync_proxy_rules_service_changes_pending: { type: 'gauge', labels: [] },
  kubeproxy_sync_proxy_rules_service_changes_total: { type: 'counter', labels: [] },
  kubeproxy_sync_proxy_rules_iptables_restore_failures_total: { type: 'counter', labels: ['ip_family'] },
  kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total: { type: 'counter', labels: ['ip_family'] },
  kubeproxy_sync_proxy_rules_iptables_total: { type: 'gauge', labels: ['ip_family', 'table'] },
  kubeproxy_sync_proxy_rules_iptables_last: { type: 'gauge', labels: ['ip_family', 'table'] },
  kubeproxy_sync_proxy_rules_no_local_endpoints_total: { type: 'gauge', labels: ['ip_family', 'traffic_policy'] },
  kubeproxy_proxy_healthz_total: { type: 'counter', labels: ['code'] },
  kubeproxy_proxy_livez_total: { type: 'counter', labels: ['code'] },
  kubeproxy_iptables_ct_state_invalid_dropped_packets_total: { type: 'counter', labels: [] },
  kubeproxy_iptables_localhost_nodeports_accepted_packets_total: { type: 'counter', labels: [] },
  kubeproxy_conntrack_reconciler_sync_duration_seconds: { type: 'histogram', labels: ['ip_family'], buckets: EXP_BUCKETS },
  kubeproxy_conntrack_reconciler_deleted_entries_total: { type: 'counter', labels: ['ip_family'] },
};

const KPX: Readonly<Record<string, Expected>> = {
  kpx_verification_failures_total: { type: 'counter', labels: ['ip_family'] },
  kpx_verification_duration_seconds: { type: 'histogram', labels: ['ip_family'], buckets: EXP_BUCKETS },
  kpx_verification_checks_total: { type: 'counter', labels: ['ip_family'] },
  kpx_drift_repairs_total: { type: 'counter', labels: ['ip_family', 'reason'] },
  kpx_last_verified_ruleset_info: { type: 'gauge', labels: ['hash', 'ip_family'] },
  kpx_sync_restore_bytes: { type: 'gauge', labels: ['ip_family', 'kind'] },
};

/** Gives every metric one sample, through the typed API. */
function exercise(m: ProxyMetrics): void {
  const v4 = { ip_family: 'IPv4' } as const;
  for (const h of [m.syncProxyRulesDuration, m.syncFullProxyRulesDuration, m.syncPartialProxyRulesDuration, m.networkProgrammingDuration, m.conntrackReconcilerSyncDuration, m.verificationDuration]) {
    h.observe(v4, 0.003);
  }
  m.syncProxyRulesLastTimestamp.set(v4, 1700000000);
  m.syncProxyRulesLastQueuedTimestamp.set(v4, 1700000000);
  m.syncProxyRulesEndpointChangesPending.set(2);
  m.syncProxyRulesEndpointChangesTotal.inc();
  m.syncProxyRulesServiceChangesPending.set(1);
  m.syncProxyRulesServiceChangesTotal.inc();
  m.syncProxyRulesIptablesRestoreFailuresTotal.inc(v4);
  m.syncProxyRulesIptablesPartialRestoreFailuresTotal.inc(v4);
  m.syncProxyRulesIptablesTotal.set({ table: 'nat', ip_family: 'IPv4' }, 10);
  m.syncProxyRulesIptablesLast.set({ table: 'filter', ip_family: 'IPv4' }, 3);
  m.syncProxyRulesNoLocalEndpointsTotal.set({ traffic_policy: 'internal', ip_family: 'IPv4' }, 0);
  m.proxyHealthzTotal.inc({ code: '200' });
  m.proxyLivezTotal.inc({ code: '503' });
  m.conntrackReconcilerDeletedEntriesTotal.inc(v4, 4);
  m.verificationFailuresTotal.inc(v4);
  m.verificationChecksTotal.inc(v4, 12);
  m.driftRepairsTotal.inc({ ip_family: 'IPv4', reason: 'canary' });
  m.setLastVerifiedHash('IPv4', 'abc');
  m.syncRestoreBytes.set({ ip_family: 'IPv4', kind: 'full' }, 2048);
}

function samples(text: string, name: string): string[] {
  return text.split('\n').filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
}

function labelNames(sample: string): string[] {
  const m = /^[^{ ]+\{([^}]*)\}/.exec(sample);
  if (m?.[1] === undefined) return [];
  return m[1].split(',').map((kv) => kv.slice(0, kv.indexOf('='))).filter((k) => k !== 'le').sort();
}

describe('createMetrics', () => {
  it('exposes every kube-proxy and kpx metric with the right type, labels and buckets', async () => {
    const metrics = createMetrics({ nfacct: () => Promise.resolve(5) });
    exercise(metrics);
    const text = await metrics.registry.metrics();
    for (const [name, expected] of Object.entries({ ...KUBE_PROXY, ...KPX })) {
      expect(text, name).toContain(`\n# TYPE ${name} ${expected.type}\n`);
      const series = expected.type === 'histogram' ? samples(text, `${name}_bucket`) : samples(text, name);
      expect(series.length, name).toBeGreaterThan(0);
      for (const s of series) expect(labelNames(s), s).toEqual(expected.labels);
      if (expected.buckets !== undefined) {
        const les = series.map((s) => /le="([^"]+)"/.exec(s)?.[1]);
        expect(les, name).toEqual([...expected.buckets, '+Inf']);
        expect(text, name).toContain(`${name}_count{ip_family="IPv4"} 1`);
      }
    }
  });

  it('keeps its metrics out of the global registry and apart from other instances', async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.syncProxyRulesServiceChangesTotal.inc(3);
    expect(await a.registry.getSingleMetricAsString('kubeproxy_sync_proxy_rules_service_changes_total')).toContain('kubeproxy_sync_proxy_rules_service_changes_total 3');
    expect(await b.registry.getSingleMetricAsString('kubeproxy_sync_proxy_rules_service_changes_total')).toContain('kubeproxy_sync_proxy_rules_service_changes_total 0');
    const { register } = await import('prom-client');
    expect(register.getSingleMetric('kubeproxy_sync_proxy_rules_duration_seconds')).toBeUndefined();
  });

  it('reads the nfacct counters at scrape time, with no sample when the object is unknown', async () => {
    const values = new Map<string, number>([['ct_state_invalid_dropped_pkts', 42]]);
    const asked: string[] = [];
    const metrics = createMetrics({
      nfacct: (name) => {
        asked.push(name);
        return Promise.resolve(values.get(name));
      },
    });
    let text = await metrics.registry.metrics();
    expect(samples(text, 'kubeproxy_iptables_ct_state_invalid_dropped_packets_total')).toEqual(['kubeproxy_iptables_ct_state_invalid_dropped_packets_total 42']);
    expect(samples(text, 'kubeproxy_iptables_localhost_nodeports_accepted_packets_total')).toEqual([]);
    expect(asked.sort()).toEqual(['ct_state_invalid_dropped_pkts', 'localhost_nps_accepted_pkts']);

    values.set('ct_state_invalid_dropped_pkts', 50);
    values.set('localhost_nps_accepted_pkts', 7);
    text = await metrics.registry.metrics();
    expect(samples(text, 'kubeproxy_iptables_ct_state_invalid_dropped_packets_total')).toEqual(['kubeproxy_iptables_ct_state_invalid_dropped_packets_total 50']);
    expect(samples(text, 'kubeproxy_iptables_localhost_nodeports_accepted_packets_total')).toEqual(['kubeproxy_iptables_localhost_nodeports_accepted_packets_total 7']);
  });

  it('has no nfacct samples without a reader or when the reader fails', async () => {
    for (const metrics of [createMetrics(), createMetrics({ nfacct: () => Promise.reject(new Error('no nfacct')) })]) {
      const text = await metrics.registry.metrics();
      expect(text).toContain('# TYPE kubeproxy_iptables_ct_state_invalid_dropped_packets_total counter');
      expect(samples(text, 'kubeproxy_iptables_ct_state_invalid_dropped_packets_total')).toEqual([]);
      expect(samples(text, 'kubeproxy_iptables_localhost_nodeports_accepted_packets_total')).toEqual([]);
    }
  });

  it('reports only the current verified hash per family', async () => {
    const metrics = createMetrics();
    metrics.setLastVerifiedHash('IPv4', 'aaa');
    metrics.setLastVerifiedHash('IPv6', 'ccc');
    metrics.setLastVerifiedHash('IPv4', 'bbb');
    metrics.setLastVerifiedHash('IPv4', 'bbb');
    const text = await metrics.registry.metrics();
    expect(samples(text, 'kpx_last_verified_ruleset_info').sort()).toEqual([
      'kpx_last_verified_ruleset_info{ip_family="IPv4",hash="bbb"} 1',
      'kpx_last_verified_ruleset_info{ip_family="IPv6",hash="ccc"} 1',
    ]);
  });
});
