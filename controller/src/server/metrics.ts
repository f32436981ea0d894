/**
 * The agent's Prometheus metrics: every kube-proxy (iptables mode) metric with upstream's names,
 * types, labels and buckets, so existing dashboards work unchanged, plus kpx's own `kpx_*` metrics
 * for verification and drift. All live in a private Registry (never the global one).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { IPFamily } from '../model/ip.ts';

/** Reads the packet count of an nfacct object; undefined when it does not exist. */
export type NfacctReader = (name: string) => Promise<number | undefined>;

export interface ProxyMetrics {
  readonly registry: Registry;
  readonly syncProxyRulesDuration: Histogram<'ip_family'>;
  readonly syncFullProxyRulesDuration: Histogram<'ip_family'>;
  readonly syncPartialProxyRulesDuration: Histogram<'ip_family'>;
  readonly networkProgrammingDuration: Histogram<'ip_family'>;
  readonly syncProxyRulesLastTimestamp: Gauge<'ip_family'>;
  readonly syncProxyRulesLastQueuedTimestamp: Gauge<'ip_family'>;
  readonly syncProxyRulesEndpointChangesPending: Gauge;
  readonly syncProxyRulesEndpointChangesTotal: Counter;
  readonly syncProxyRulesServiceChangesPending: Gauge;
  readonly syncProxyRulesServiceChangesTotal: Counter;
  readonly syncProxyRulesIptablesRestoreFailuresTotal: Counter<'ip_family'>;
  readonly syncProxyRulesIptablesPartialRestoreFailuresTotal: Counter<'ip_family'>;
  readonly syncProxyRulesIptablesTotal: Gauge<'table' | 'ip_family'>;
  readonly syncProxyRulesIptablesLast: Gauge<'table' | 'ip_family'>;
  readonly syncProxyRulesNoLocalEndpointsTotal: Gauge<'traffic_policy' | 'ip_family'>;
  readonly proxyHealthzTotal: Counter<'code'>;
  readonly proxyLivezTotal: Counter<'code'>;
  /** Collected from nfacct at scrape time (read-only for callers). */
  readonly iptablesCtStateInvalidDroppedPacketsTotal: Counter;
  /** Collected from nfacct at scrape time (read-only for callers). */
  readonly iptablesLocalhostNodeportsAcceptedPacketsTotal: Counter;
  readonly conntrackReconcilerSyncDuration: Histogram<'ip_family'>;
  readonly conntrackReconcilerDeletedEntriesTotal: Counter<'ip_family'>;
  readonly verificationFailuresTotal: Counter<'ip_family'>;
  readonly verificationDuration: Histogram<'ip_family'>;
  readonly verificationChecksTotal: Counter<'ip_family'>;
  readonly driftRepairsTotal: Counter<'ip_family' | 'reason'>;
  readonly lastVerifiedRulesetInfo: Gauge<'ip_family' | 'hash'>;
  readonly syncRestoreBytes: Gauge<'ip_family' | 'kind'>;
  /** Sets kpx_last_verified_ruleset_info{ip_family,hash} to 1 for `hash`, dropping the family's previous hash series. */
  setLastVerifiedHash(family: IPFamily, hash: string): void;
}

const linear = (start: number, width: number, count: number): number[] => Array.from({ length: count }, (_, i) => start + i * width);

/** prometheus.ExponentialBuckets(0.001, 2, 15): 0.001 … 16.384 s. */
export const SYNC_DURATION_BUCKETS: readonly number[] = Array.from({ length: 15 }, (_, i) => 0.001 * 2 ** i);

/**
 * Upstream builds these with component-base's MergeBuckets, which starts from a 0 bucket:
 * 0, 0.25, 0.5, 1…59, 60…115 step 5, 120…300 step 30.
 */
export const NETWORK_PROGRAMMING_BUCKETS: readonly number[] = [0, ...linear(0.25, 0.25, 2), ...linear(1, 1, 59), ...linear(60, 5, 12), ...linear(120, 30, 7)];

/** A counter whose only sample is read from an nfacct object when scraped (no sample when unknown). */
class NfacctCounter extends Counter {
  readonly #read: (() => Promise<number | undefined>) | undefined;

  constructor(options: { name: string; help: string; registry: Registry; nfacct: NfacctReader | undefined; object: string }) {
    super({ name: options.name, help: options.help, registers: [options.registry] });
    const nfacct = options.nfacct;
    this.#read = nfacct === undefined ? undefined : () => nfacct(options.object);
  }

  override async get(): ReturnType<Counter['get']> {
    const base = await super.get();
    const value = await this.#read?.().catch(() => undefined);
    return { ...base, values: value === undefined ? [] : [{ value, labels: {} }] };
  }
}

export function createMetrics(options: { nfacct?: NfacctReader } = {}): ProxyMetrics {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });

  const histogram = <L extends string>(name: string, help: string, labelNames: readonly L[], buckets: readonly number[]): Histogram<L> =>
    new Histogram<L>({ name, help, labelNames, buckets: [...buckets], registers });
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> => new Gauge<L>({ name, help, labelNames, registers });
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> => new Counter<L>({ name, help, labelNames, registers });
  const family = ['ip_family'] as const;

  const lastVerifiedRulesetInfo = gauge('kpx_last_verified_ruleset_info', 'Hash of the last ruleset that passed verification (value 1)', ['ip_family', 'hash']);
  const verifiedHash = new Map<IPFamily, string>();

  return {
    registry,
    syncProxyRulesDuration: histogram('kubeproxy_sync_proxy_rules_duration_seconds', 'SyncProxyRules latency in seconds', family, SYNC_DURATION_BUCKETS),
    syncFullProxyRulesDuration: histogram('kubeproxy_sync_full_proxy_rules_duration_seconds', 'SyncProxyRules latency in seconds for full resyncs', family, SYNC_DURATION_BUCKETS),
    syncPartialProxyRulesDuration: histogram('kubeproxy_sync_partial_proxy_rules_duration_seconds', 'SyncProxyRules latency in seconds for partial resyncs', family, SYNC_DURATION_BUCKETS),
    networkProgrammingDuration: histogram('kubeproxy_network_programming_duration_seconds', 'In Cluster Network Programming Latency in seconds', family, NETWORK_PROGRAMMING_BUCKETS),
    syncProxyRulesLastTimestamp: gauge('kubeproxy_sync_proxy_rules_last_timestamp_seconds', 'The last time proxy rules were successfully synced', family),
    syncProxyRulesLastQueuedTimestamp: gauge('kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds', 'The last time a sync of proxy rules was queued', family),
    syncProxyRulesEndpointChangesPending: gauge('kubeproxy_sync_proxy_rules_endpoint_changes_pending', 'Pending proxy rules Endpoint changes', []),
    syncProxyRulesEndpointChangesTotal: counter('kubeproxy_sync_proxy_rules_endpoint_changes_total', 'Cumulative proxy rules Endpoint changes', []),
    syncProxyRulesServiceChangesPending: gauge('kubeproxy_sync_proxy_rules_service_changes_pending', 'Pending proxy rules Service changes', []),
    syncProxyRulesServiceChangesTotal: counter('kubeproxy_sync_proxy_rules_service_changes_total', 'Cumulative proxy rules Service changes', []),
    syncProxyRulesIptablesRestoreFailuresTotal: counter('kubeproxy_sync_proxy_rules_iptables_restore_failures_total', 'Cumulative proxy iptables restore failures', family),
    syncProxyRulesIptablesPartialRestoreFailuresTotal: counter('kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total', 'Cumulative proxy iptables partial restore failures', family),
    syncProxyRulesIptablesTotal: gauge('kubeproxy_sync_proxy_rules_iptables_total', 'Total number of iptables rules owned by kpx', ['table', 'ip_family']),
    syncProxyRulesIptablesLast: gauge('kubeproxy_sync_proxy_rules_iptables_last', 'Number of iptables rules written by kpx in last sync', ['table', 'ip_family']),
    syncProxyRulesNoLocalEndpointsTotal: gauge('kubeproxy_sync_proxy_rules_no_local_endpoints_total', 'Number of services with a Local traffic policy and no endpoints', ['traffic_policy', 'ip_family']),
    proxyHealthzTotal: counter('kubeproxy_proxy_healthz_total', 'Cumulative proxy healthz HTTP status', ['code']),
    proxyLivezTotal: counter('kubeproxy_proxy_livez_total', 'Cumulative proxy livez HTTP status', ['code']),
    iptablesCtStateInvalidDroppedPacketsTotal: new NfacctCounter({
      name: 'kubeproxy_iptables_ct_state_invalid_dropped_packets_total',
      help: 'packets dropped by iptables to work around conntrack problems',
      registry,
      nfacct: options.nfacct,
      object: 'ct_state_invalid_dropped_pkts',
    }),
    iptablesLocalhostNodeportsAcceptedPacketsTotal: new NfacctCounter({
      name: 'kubeproxy_iptables_localhost_nodeports_accepted_packets_total',
      help: 'Number of packets accepted on nodeports of loopback interface',
      registry,
      nfacct: options.nfacct,
      object: 'localhost_nps_accepted_pkts',
    }),
    conntrackReconcilerSyncDuration: histogram('kubeproxy_conntrack_reconciler_sync_duration_seconds', 'Conntrack reconciler latency in seconds', family, SYNC_DURATION_BUCKETS),
    conntrackReconcilerDeletedEntriesTotal: counter('kubeproxy_conntrack_reconciler_deleted_entries_total', 'Cumulative conntrack flows deleted by conntrack reconciler', family),
    verificationFailuresTotal: counter('kpx_verification_failures_total', 'Rulesets rejected by the verifier (not applied)', family),
    verificationDuration: histogram('kpx_verification_duration_seconds', 'Verification latency in seconds', family, SYNC_DURATION_BUCKETS),
    verificationChecksTotal: counter('kpx_verification_checks_total', 'Invariant checks run by the verifier', family),
    driftRepairsTotal: counter('kpx_drift_repairs_total', 'Repairs of rules changed outside kpx, by how the drift was detected', ['ip_family', 'reason']),
    lastVerifiedRulesetInfo,
    syncRestoreBytes: gauge('kpx_sync_restore_bytes', 'Size of the last iptables-restore payload in bytes, by sync kind (full|partial)', ['ip_family', 'kind']),
    setLastVerifiedHash(ipFamily, hash) {
      const previous = verifiedHash.get(ipFamily);
      if (previous !== undefined && previous !== hash) lastVerifiedRulesetInfo.remove({ ip_family: ipFamily, hash: previous });
      verifiedHash.set(ipFamily, hash);
      lastVerifiedRulesetInfo.set({ ip_family: ipFamily, hash }, 1);
    },
  };
}
