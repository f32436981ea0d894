/**
 * `kpx run`: the node agent. Wires informers → proxier → runner, the dataplane, the HTTP servers,
 * status and events, and shuts down gracefully (never flushing rules) on SIGTERM.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { detectBackend, type BackendFlag } from '../dataplane/backend.ts';
import { execaRunner } from '../dataplane/exec.ts';
import { Conntrack } from '../dataplane/conntrack.ts';
import { Iptables } from '../dataplane/iptables.ts';
import { ensureNfacct, nfacctAvailable, readNfacct } from '../dataplane/nfacct.ts';
import { ensureSysctl, readSysctl } from '../dataplane/sysctl.ts';
import { NFACCT_CT_STATE_INVALID, NFACCT_LOCALHOST_NODEPORTS } from '../compile/compile.ts';
import { NodeEventRecorder } from '../kube/events.ts';
import { endpointSlicesInformer, nodeInformer, servicesInformer, type InformerHandlers, type KubeObject, type SupervisedInformer } from '../kube/informer.ts';
import { loadKubeConfig, type KubeconfigOptions } from '../kube/kubeconfig.ts';
import { NodeProxyStatusWriter, type NodeProxyCondition, type NodeProxyStatusBody } from '../kube/status.ts';
import { buildProxyModels } from '../model/cluster.ts';
import type { ProxyConfig, ProxyConfigOverrides } from '../model/config.ts';
import { decodeDocuments, type SourcedObject } from '../model/documents.ts';
import type { JsonObject } from '../model/fields.ts';
import type { IPFamily } from '../model/ip.ts';
import { nodeEligible, ProxyHealth } from '../server/health.ts';
import { startHealthServer, startMetricsServer, type RunningServer } from '../server/http.ts';
import { createMetrics, type ProxyMetrics } from '../server/metrics.ts';
import { ServiceHealthServers } from '../server/service-health.ts';
import { cleanupRules } from './cleanup.ts';
import { systemClock, type Clock } from './clock.ts';
import type { Logger } from './log.ts';
import { FULL_SYNC_PERIOD_MS, Proxier, type ProxierObserver, type SyncSummary } from './proxier.ts';
import { BoundedFrequencyRunner } from './runner.ts';

export interface AgentOptions extends KubeconfigOptions {
  /** KubeProxyConfiguration file (`--config`). */
  readonly configFile?: string;
  /** Flag overrides (they win over the file). */
  readonly overrides: ProxyConfigOverrides;
  readonly dryRun: boolean;
  readonly cleanup: boolean;
  /** `--iptables-backend`: `auto` detects it like upstream iptables-wrapper (dataplane/backend.ts). */
  readonly iptablesBackend: BackendFlag;
  /** `--healthz-bind-address`; else the config file's healthzBindAddress; else 0.0.0.0:10256. */
  readonly healthzBindAddress?: string;
  /** `--metrics-bind-address`; else the config file's metricsBindAddress; else 127.0.0.1:10249. */
  readonly metricsBindAddress?: string;
  readonly faultInjection: boolean;
  readonly log: Logger;
  /** Resolves when the agent must stop (SIGTERM); the CLI passes a signal listener. */
  readonly stopSignal: Promise<string>;
}

function splitHostPort(text: string, source: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  const port = Number(m?.[3]);
  if (m === null || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${source} "${text}" must be HOST:PORT`);
  return { host: m[1] ?? m[2] ?? '', port };
}

/** A bind address: the flag, else the config file's field (as kube-proxy reads it), else the default. */
function bindAddress(flagValue: string | undefined, flag: string, configObjects: readonly SourcedObject[], field: string, fallback: string): { host: string; port: number } {
  if (flagValue !== undefined) return splitHostPort(flagValue, `--${flag}`);
  for (const { object, source } of configObjects) {
    const value = object[field];
    if (typeof value === 'string' && value !== '') return splitHostPort(value, `${source}: ${field}`);
  }
  return splitHostPort(fallback, `--${flag}`);
}

function readConfigObjects(path: string | undefined): SourcedObject[] {
  if (path === undefined) return [];
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`--config ${path}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`, { cause: error });
  }
  return decodeDocuments(text, path).filter((o) => o.object.kind === 'KubeProxyConfiguration');
}

/** The node's name: --hostname-override / hostnameOverride, then NODE_NAME, then the host name. */
function resolveNodeName(options: AgentOptions, fileConfig: ProxyConfig): string {
  if (options.overrides.nodeName !== undefined && options.overrides.nodeName !== '') return options.overrides.nodeName;
  if (fileConfig.nodeName !== '') return fileConfig.nodeName;
  const env = process.env.NODE_NAME;
  return env !== undefined && env !== '' ? env : hostname().toLowerCase();
}

function condition(type: NodeProxyCondition['type'], ok: boolean, reason: string, message: string, now: string): NodeProxyCondition {
  return { type, status: ok ? 'True' : 'False', reason, message, lastTransitionTime: now };
}

/** Runs the agent until the stop signal; returns the exit code. */
export async function runAgent(options: AgentOptions): Promise<number> {
  const log = options.log;
  const clock: Clock = systemClock();
  const runner = execaRunner();
  const families: IPFamily[] = ['IPv4', 'IPv6'];
  // Decided once, before --cleanup too: it must remove the rules from the backend that holds them.
  const choice = await detectBackend(runner, options.iptablesBackend);
  log.info('iptables backend chosen', { backend: choice.backend, reason: choice.reason, flag: options.iptablesBackend, ...(choice.scans === undefined ? {} : { scans: choice.scans }) });
  const iptables = new Map(families.map((f) => [f, new Iptables(f, runner, { backend: choice.backend })] as const));

  if (options.cleanup) {
    for (const [family, ipt] of iptables) {
      try {
        const removed = await cleanupRules(ipt);
        log.info('removed kpx rules', { family, ...removed });
      } catch (error) {
        log.warn('cleanup incomplete', { family, error: (error as Error).message });
      }
    }
    return 0;
  }

  const configObjects = readConfigObjects(options.configFile);
  // The file's configuration over the defaults, read once (the proxier re-reads it with each state).
  const fileConfig = buildProxyModels({ services: [], endpointSlices: [], nodes: [], proxyConfigurations: configObjects }).config;
  const nodeName = resolveNodeName(options, fileConfig);
  const baseConfig: ProxyConfig = { ...fileConfig, ...options.overrides };
  const overrides: ProxyConfigOverrides = { ...options.overrides, nodeName };
  // Bad credentials stop the agent before it touches the node.
  const kubeConfig = loadKubeConfig(options);

  // Node facts kube-proxy reads at start (reference §4.6).
  if (!options.dryRun) {
    try {
      overrides.conntrackTCPBeLiberal = (await readSysctl('net/netfilter/nf_conntrack_tcp_be_liberal')).trim() !== '0';
    } catch {
      // no conntrack module loaded yet: the default (strict) applies
    }
    if (baseConfig.localhostNodePorts && baseConfig.ipFamily !== 'IPv6') {
      try {
        if (await ensureSysctl('net/ipv4/conf/all/route_localnet', '1')) log.info('set sysctl net.ipv4.conf.all.route_localnet=1 for localhost NodePorts');
      } catch (error) {
        log.warn('cannot enable route_localnet; localhost NodePorts will not answer', { error: (error as Error).message });
      }
    }
    if (await nfacctAvailable(runner)) {
      try {
        await ensureNfacct(runner, NFACCT_CT_STATE_INVALID);
        await ensureNfacct(runner, NFACCT_LOCALHOST_NODEPORTS);
        overrides.nfacct = true;
      } catch (error) {
        log.info('nfacct counters unavailable', { error: (error as Error).message });
      }
    }
  }

  const metrics: ProxyMetrics = createMetrics(overrides.nfacct === true ? { nfacct: (name) => readNfacct(runner, name) } : {});
  const syncPeriodMs = baseConfig.syncPeriodMs;
  const health = new ProxyHealth({ clock, healthTimeoutMs: 2 * syncPeriodMs, metrics });
  const statusWriter = new NodeProxyStatusWriter({ kubeConfig, nodeName, log: log.child({ component: 'status' }), clock });
  const events = new NodeEventRecorder({ kubeConfig, nodeName, log: log.child({ component: 'events' }), clock });
  const hcServers = new ServiceHealthServers({ addresses: ['0.0.0.0'], health, log: log.child({ component: 'healthcheck' }) });

  let driftDetections = 0;
  let repairPending = false;
  let lastDrift: { time: string; reason: string } | undefined;
  let lastFailure: { time: string; violations: readonly string[]; message: string } | undefined;
  let lastSummary: SyncSummary | undefined;
  let lastSyncTime = '';
  const iso = (): string => new Date(clock.now()).toISOString();

  /** The status after the latest sync attempt: `error` set when it failed. */
  const writeStatus = (error?: string): void => {
    const now = iso();
    const s = lastSummary;
    const failedVerification = error !== undefined && lastFailure !== undefined && lastFailure.violations.length > 0;
    const body: NodeProxyStatusBody = {
      ...(s === undefined
        ? {}
        : {
            lastSyncTime: lastSyncTime,
            lastSyncKind: s.kind,
            lastSyncDurationSeconds: s.durationMs / 1000,
            rulesPerTable: { filter: s.families[0]?.ruleCounts.filter ?? 0, nat: s.families[0]?.ruleCounts.nat ?? 0 },
            rulesetHash: s.families.map((f) => f.rulesetHash).join(','),
            services: s.services,
            servicePorts: s.servicePorts,
            endpoints: s.endpoints,
            families: s.families.map((f) => f.family),
          }),
      verification: {
        verdict: failedVerification ? 'Failed' : 'Passed',
        checks: s?.families.reduce((n, f) => n + f.checks, 0) ?? 0,
        ...(lastFailure === undefined || lastFailure.violations.length === 0 ? {} : { violations: lastFailure.violations.slice(0, 20), lastFailureTime: lastFailure.time }),
      },
      drift: { detections: driftDetections, ...(lastDrift === undefined ? {} : { lastDetectionTime: lastDrift.time, lastReason: lastDrift.reason }) },
      ...(error === undefined ? {} : { lastError: error }),
      conditions: [
        condition('Ready', error === undefined, error === undefined ? 'RulesApplied' : 'SyncFailed', error ?? 'the node programs every Service kpx owns', now),
        condition('Verified', !failedVerification, failedVerification ? 'VerificationFailed' : 'Proven', failedVerification ? `last good rules kept: ${lastFailure?.violations[0] ?? ''}` : 'the applied rules passed every invariant', now),
        condition('Drifted', lastDrift !== undefined, lastDrift === undefined ? 'NoDrift' : 'DriftRepaired', lastDrift?.reason ?? 'no external change seen', now),
      ],
    };
    statusWriter.update(body);
  };

  const observer: ProxierObserver = {
    synced(summary) {
      lastSummary = summary;
      lastSyncTime = iso();
      for (const f of summary.families) {
        const labels = { ip_family: f.family };
        metrics.syncProxyRulesDuration.observe(labels, f.durationMs / 1000);
        (f.kind === 'full' ? metrics.syncFullProxyRulesDuration : metrics.syncPartialProxyRulesDuration).observe(labels, f.durationMs / 1000);
        metrics.syncProxyRulesLastTimestamp.set(labels, clock.now() / 1000);
        metrics.syncProxyRulesIptablesTotal.set({ ...labels, table: 'filter' }, f.ruleCounts.filter);
        metrics.syncProxyRulesIptablesTotal.set({ ...labels, table: 'nat' }, f.ruleCounts.nat);
        metrics.syncProxyRulesIptablesLast.set({ ...labels, table: 'filter' }, f.ruleCounts.filter);
        metrics.syncProxyRulesIptablesLast.set({ ...labels, table: 'nat' }, f.ruleCounts.nat);
        metrics.syncProxyRulesNoLocalEndpointsTotal.set({ ...labels, traffic_policy: 'internal' }, f.noLocalEndpoints.internal);
        metrics.syncProxyRulesNoLocalEndpointsTotal.set({ ...labels, traffic_policy: 'external' }, f.noLocalEndpoints.external);
        metrics.verificationDuration.observe(labels, f.verifyMs / 1000);
        metrics.verificationChecksTotal.inc(labels, f.checks);
        metrics.setLastVerifiedHash(f.family, f.rulesetHash);
        metrics.syncRestoreBytes.set({ ...labels, kind: f.kind }, f.payloadBytes);
        for (const t of summary.triggerTimes) metrics.networkProgrammingDuration.observe(labels, Math.max(0, clock.now() - t) / 1000);
        health.updated(f.family);
      }
      void hcServers.syncServices(summary.healthCheckNodePorts);
      hcServers.syncEndpoints(summary.localEndpoints);
      if (repairPending) events.record('Normal', 'DriftRepaired', `kpx rules repaired after ${lastDrift?.reason ?? 'drift'}`);
      repairPending = false;
      lastFailure = undefined;
      writeStatus();
    },
    familyFailed(family, stage, kind, message, violations) {
      const labels = { ip_family: family };
      if (stage === 'verify') {
        metrics.verificationFailuresTotal.inc(labels);
        events.record('Warning', 'VerificationFailed', `${family}: ${String(violations.length)} violation(s), last good rules kept: ${violations[0] ?? message}`);
      } else if (stage === 'restore') {
        metrics.syncProxyRulesIptablesRestoreFailuresTotal.inc(labels);
        if (kind === 'partial') metrics.syncProxyRulesIptablesPartialRestoreFailuresTotal.inc(labels);
        events.record('Warning', 'SyncFailed', `${family}: ${message}`);
      } else {
        events.record('Warning', 'SyncFailed', `${family}: reading the node's rules failed: ${message}`);
      }
      lastFailure = { time: iso(), violations, message };
      writeStatus(message);
    },
    drift(family, reason, detail) {
      driftDetections++;
      repairPending = true;
      lastDrift = { time: iso(), reason: `${reason}: ${detail}` };
      metrics.driftRepairsTotal.inc({ ip_family: family, reason });
      events.record('Warning', 'DriftDetected', `${family}: ${reason}: ${detail}; repairing with a full sync`);
    },
    conntrackCleaned(family, deleted, durationMs) {
      metrics.conntrackReconcilerDeletedEntriesTotal.inc({ ip_family: family }, deleted);
      metrics.conntrackReconcilerSyncDuration.observe({ ip_family: family }, durationMs / 1000);
    },
    changesPending(services, slices) {
      metrics.syncProxyRulesServiceChangesPending.set(services);
      metrics.syncProxyRulesEndpointChangesPending.set(slices);
    },
  };

  const proxier = new Proxier({
    overrides,
    configObjects,
    dataplane: (family) => {
      const ipt = iptables.get(family);
      if (ipt === undefined) throw new Error(`no iptables for ${family}`);
      return { iptables: ipt };
    },
    conntrack: new Conntrack(runner),
    log,
    clock,
    observer,
    dryRun: options.dryRun,
    faultInjection: options.faultInjection,
  });

  const syncRunner = new BoundedFrequencyRunner({
    name: 'sync-runner',
    fn: async () => {
      await proxier.sync();
    },
    minIntervalMs: baseConfig.minSyncPeriodMs,
    retryIntervalMs: syncPeriodMs,
    maxIntervalMs: FULL_SYNC_PERIOD_MS,
    clock,
    onError: (error) => {
      log.debug('sync will be retried', { error: error instanceof Error ? error.message : String(error), retryInMs: syncPeriodMs });
    },
  });

  const queue = (): void => {
    for (const f of families) health.queuedUpdate(f);
    for (const f of families) metrics.syncProxyRulesLastQueuedTimestamp.set({ ip_family: f }, clock.now() / 1000);
    if (proxier.ready) syncRunner.run();
  };
  const handlers = (onChange: (p: JsonObject | undefined, c: JsonObject | undefined) => boolean, counter: () => void): InformerHandlers<KubeObject> => ({
    add: (o) => {
      counter();
      if (onChange(undefined, o)) queue();
    },
    update: (p, c) => {
      counter();
      if (onChange(p, c)) queue();
    },
    delete: (o) => {
      counter();
      if (onChange(o, undefined)) queue();
    },
  });
  const informerLog = log.child({ component: 'informer' });
  const informers: SupervisedInformer[] = [
    servicesInformer(kubeConfig, handlers((p, c) => proxier.onServiceChange(p, c), () => { metrics.syncProxyRulesServiceChangesTotal.inc(); }), informerLog),
    endpointSlicesInformer(kubeConfig, handlers((p, c) => proxier.onEndpointSliceChange(p, c), () => { metrics.syncProxyRulesEndpointChangesTotal.inc(); }), informerLog),
  ];
  const onNode = (node: KubeObject | undefined): void => {
    if (node !== undefined) {
      const uid = node.metadata?.uid;
      if (typeof uid === 'string') {
        statusWriter.setNodeUID(uid);
        events.setNodeUID(uid);
      }
    }
    health.setNodeEligible(nodeEligible(node));
    if (proxier.onNodeChange(node)) queue();
  };
  const nodeWatch = nodeInformer(kubeConfig, nodeName, { add: onNode, update: (_p, c) => { onNode(c); }, delete: () => { onNode(undefined); } }, informerLog);
  informers.push(nodeWatch);

  const hh = bindAddress(options.healthzBindAddress, 'healthz-bind-address', configObjects, 'healthzBindAddress', '0.0.0.0:10256');
  const hp = bindAddress(options.metricsBindAddress, 'metrics-bind-address', configObjects, 'metricsBindAddress', '127.0.0.1:10249');
  const servers: RunningServer[] = [];
  servers.push(await startHealthServer({ host: hh.host, port: hh.port, health, log }));
  servers.push(await startMetricsServer({ host: hp.host, port: hp.port, metrics, log, proxyMode: 'iptables', configz: () => ({ ...baseConfig, nodeName }) }));

  log.info('kpx starting', { node: nodeName, dryRun: options.dryRun, syncPeriodMs, minSyncPeriodMs: baseConfig.minSyncPeriodMs });
  syncRunner.start();
  for (const i of informers) i.start();

  // Nothing is programmed until Services, EndpointSlices and the Node have synced.
  void Promise.all(informers.map((i) => i.whenSynced())).then(() => {
    proxier.setSynced('services');
    proxier.setSynced('endpointSlices');
    proxier.setSynced('node');
    log.info('informers synced; programming the node');
    queue();
  });

  // Drift: every sync period, the canary and a read-back of kpx's chains.
  let driftTimer = clock.setTimeout(function check() {
    void proxier
      .checkDrift()
      .then((drifted) => {
        if (drifted) syncRunner.run();
      })
      .catch((error: unknown) => {
        log.warn('drift check failed', { error: (error as Error).message });
      })
      .finally(() => {
        driftTimer = clock.setTimeout(check, syncPeriodMs);
      });
  }, syncPeriodMs);

  const reason = await options.stopSignal;
  log.info('kpx stopping; rules stay in place', { reason });
  clock.clearTimeout(driftTimer);
  await Promise.all(informers.map((i) => i.stop()));
  await syncRunner.stop();
  await Promise.allSettled([statusWriter.flush(), events.flush()]);
  await Promise.allSettled([statusWriter.stop(), events.stop(), hcServers.close(), ...servers.map((s) => s.close())]);
  return 0;
}
