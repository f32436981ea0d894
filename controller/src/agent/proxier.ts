/**
 * The sync at the heart of `kpx run`: tracked objects → models → compile → verify (the gate) →
 * plan → iptables-restore → bookkeeping, per IP family (DESIGN.md architecture, reference §4).
 *
 * The proxier knows nothing about the apiserver or HTTP: the agent feeds it object changes and
 * observes what it does through a ProxierObserver (metrics, health, status, events).
 */
import { CompileMemo, compileFamily, type CompiledFamily } from '../compile/compile.ts';
import { ruleArgv } from '../compile/render.ts';
import type { TableName } from '../compile/ruleset.ts';
import { staleFlows, type Conntrack } from '../dataplane/conntrack.ts';
import type { Iptables } from '../dataplane/iptables.ts';
import { ChangeTracker } from '../kube/trackers.ts';
import { buildProxyModels, ModelMemo, type ProxyModels } from '../model/cluster.ts';
import type { ProxyConfigOverrides } from '../model/config.ts';
import type { SourcedObject } from '../model/documents.ts';
import type { JsonObject } from '../model/fields.ts';
import type { IPFamily } from '../model/ip.ts';
import { formatProblem } from '../model/problem.ts';
import type { FamilyModel } from '../model/proxy-model.ts';
import { AppliedRules, planFull, planPartial, PLAN_TABLES, type AppliedState, type KernelDump, type SyncPlan } from '../plan/plan.ts';
import { ReadbackChecker } from '../plan/readback.ts';
import { servingEndpointsOf } from '../sim/conntrack.ts';
import { formatViolation, verifyCompiled } from '../sim/verify.ts';
import type { Clock } from './clock.ts';
import { injectFaults } from './faults.ts';
import type { Logger } from './log.ts';

/** kpx's canary chain: created in mangle, nat and filter; gone means someone flushed the tables. */
export const CANARY_CHAIN = 'KPX-CANARY';
const CANARY_TABLES: readonly TableName[] = ['mangle', 'nat', 'filter'];

/** kube-proxy's FullSyncPeriod: a full sync at least once an hour. */
export const FULL_SYNC_PERIOD_MS = 3_600_000;

export type SyncKind = 'full' | 'partial';

/** How drift was seen: the canary chain gone, a jump from a built-in chain gone, or kpx's chains read back. */
export type DriftReason = 'canary' | 'jump' | 'readback';

/**
 * The read-back of kpx's chains (iptables-save and a comparison) may take at most this share of
 * wall-clock time: at 10,000 Services one takes seconds, so it runs less often than the drift
 * check itself, whose canary and jump checks cost milliseconds and still catch flushes at once.
 */
export const READBACK_TIME_SHARE = 0.1;

export interface FamilySyncReport {
  readonly family: IPFamily;
  readonly kind: SyncKind;
  readonly durationMs: number;
  readonly verifyMs: number;
  readonly checks: number;
  readonly ruleCounts: Readonly<Record<'filter' | 'nat', number>>;
  readonly writtenChains: readonly string[];
  readonly deletedChains: readonly string[];
  /** Tables replaced whole (a full sync with many differing chains). */
  readonly replacedTables: readonly string[];
  readonly payloadBytes: number;
  readonly rulesetHash: string;
  readonly noLocalEndpoints: { readonly internal: number; readonly external: number };
}

export interface SyncSummary {
  readonly kind: SyncKind;
  readonly durationMs: number;
  readonly families: readonly FamilySyncReport[];
  readonly services: number;
  readonly servicePorts: number;
  readonly endpoints: number;
  /** `namespace/name` → healthCheckNodePort, for the health-check servers. */
  readonly healthCheckNodePorts: ReadonlyMap<string, number>;
  /** `namespace/name` → local ready endpoints (distinct IPs). */
  readonly localEndpoints: ReadonlyMap<string, number>;
  /** Trigger times (ms) of the changes this sync applied (network programming latency). */
  readonly triggerTimes: readonly number[];
}

export type FailureStage = 'verify' | 'restore' | 'read';

export interface ProxierObserver {
  synced?(summary: SyncSummary): void;
  familyFailed?(family: IPFamily, stage: FailureStage, kind: SyncKind, message: string, violations: readonly string[]): void;
  drift?(family: IPFamily, reason: DriftReason, detail: string): void;
  conntrackCleaned?(family: IPFamily, deleted: number, durationMs: number): void;
  changesPending?(services: number, endpointSlices: number): void;
}

export interface FamilyDataplane {
  readonly iptables: Pick<Iptables, 'restore' | 'save' | 'ensureChain' | 'ensureRule' | 'chainExists' | 'hasRule'>;
}

export interface ProxierOptions {
  /** Flags and the KubeProxyConfiguration file's objects. */
  readonly overrides: ProxyConfigOverrides;
  readonly configObjects: readonly SourcedObject[];
  readonly dataplane: (family: IPFamily) => FamilyDataplane;
  readonly conntrack?: Pick<Conntrack, 'listUdp' | 'deleteFlows'>;
  readonly log: Logger;
  readonly clock: Clock;
  readonly observer?: ProxierObserver;
  /** Compute, verify and report, but never touch the node. */
  readonly dryRun?: boolean;
  /** Test hook: honour `kpx.dev/test-fault` annotations (see faults.ts). */
  readonly faultInjection?: boolean;
  /** Full syncs replace a table when more existing chains than this differ (default: the planner's). */
  readonly replaceThreshold?: number;
}

/** Thrown by a failed sync; the runner retries (as a full sync). */
export class SyncError extends Error {
  readonly stage: FailureStage;
  constructor(stage: FailureStage, message: string) {
    super(message);
    this.name = 'SyncError';
    this.stage = stage;
  }
}

const TRIGGER_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';

function union<T>(...sets: readonly ReadonlySet<T>[]): Set<T> {
  const out = new Set<T>();
  for (const s of sets) for (const v of s) out.add(v);
  return out;
}

export class Proxier {
  readonly #o: ProxierOptions;
  readonly #services = new ChangeTracker('Service');
  readonly #slices = new ChangeTracker('EndpointSlice');
  #node: JsonObject | undefined;
  #servicesSynced = false;
  #slicesSynced = false;
  #nodeSynced = false;
  #needFullSync = true;
  #lastFullSync: number | undefined;
  readonly #applied = new Map<IPFamily, AppliedRules>();
  readonly #lastCompiled = new Map<IPFamily, CompiledFamily>();
  #reportedProblems = new Set<string>();
  /** Changed services not yet applied (kept across failures so the retry still sees them). */
  #pendingServices = new Set<string>();
  #pendingTriggers: number[] = [];
  #busy: Promise<unknown> = Promise.resolve();
  #canariesReady = new Set<IPFamily>();
  /** Services with UDP ports at the last sync, per family (a removed one still needs its entries cleaned). */
  readonly #lastUdpServices = new Map<IPFamily, Set<string>>();
  /** Unchanged objects are not read, modelled or compiled again (a partial sync costs what changed). */
  readonly #modelMemo = new ModelMemo();
  readonly #compileMemos = new Map<IPFamily, CompileMemo>();
  /** When each family's chains were last read back, and how long that took (ms). */
  readonly #readBacks = new Map<IPFamily, { readonly at: number; readonly durationMs: number }>();
  /** Per family: remembers the chains a read-back found equal, so the next parses only what changed. */
  readonly #readBackCheckers = new Map<IPFamily, ReadbackChecker>();

  constructor(options: ProxierOptions) {
    this.#o = options;
  }

  /** Both Services and EndpointSlices (and the Node) have synced: syncing may begin. */
  get ready(): boolean {
    return this.#servicesSynced && this.#slicesSynced && this.#nodeSynced;
  }

  get needFullSync(): boolean {
    return this.#needFullSync;
  }

  /** What kpx last applied per family (for tests and drift checks). */
  applied(family: IPFamily): AppliedState | undefined {
    return this.#applied.get(family)?.state;
  }

  lastCompiled(family: IPFamily): CompiledFamily | undefined {
    return this.#lastCompiled.get(family);
  }

  /** Returns true when the change is real (the caller then asks the runner for a sync). */
  onServiceChange(previous: JsonObject | undefined, current: JsonObject | undefined): boolean {
    const pending = this.#services.update(previous, current);
    this.#reportPending();
    return pending;
  }

  onEndpointSliceChange(previous: JsonObject | undefined, current: JsonObject | undefined): boolean {
    const pending = this.#slices.update(previous, current);
    const trigger = current?.metadata !== undefined ? (current.metadata as { annotations?: Record<string, unknown> }).annotations?.[TRIGGER_ANNOTATION] : undefined;
    if (typeof trigger === 'string') {
      const t = Date.parse(trigger);
      if (Number.isFinite(t)) this.#pendingTriggers.push(t);
    }
    this.#reportPending();
    return pending;
  }

  /** The agent's own Node; a change of labels or addresses needs a full sync. Returns true if it did change. */
  onNodeChange(node: JsonObject | undefined): boolean {
    const before = JSON.stringify({ l: (this.#node?.metadata as JsonObject | undefined)?.labels, s: (this.#node?.status as JsonObject | undefined)?.addresses, p: this.#node?.spec });
    const after = JSON.stringify({ l: (node?.metadata as JsonObject | undefined)?.labels, s: (node?.status as JsonObject | undefined)?.addresses, p: node?.spec });
    this.#node = node;
    if (before === after) return false;
    this.#needFullSync = true;
    return true;
  }

  setSynced(what: 'services' | 'endpointSlices' | 'node'): void {
    if (what === 'services') this.#servicesSynced = true;
    else if (what === 'endpointSlices') this.#slicesSynced = true;
    else this.#nodeSynced = true;
  }

  /** Forces the next sync to be a full one (after drift, a failure, or a node change). */
  forceFullSync(): void {
    this.#needFullSync = true;
  }

  #reportPending(): void {
    this.#o.observer?.changesPending?.(this.#services.pending, this.#slices.pending);
  }

  /** Serialises syncs and drift checks. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#busy.then(fn, fn);
    this.#busy = run.catch(() => undefined);
    return run;
  }

  #models(): ProxyModels {
    const source = 'apiserver';
    const wrap = (object: JsonObject): SourcedObject => ({ source, object });
    const models = buildProxyModels(
      {
        services: this.#services.objects().map(wrap),
        endpointSlices: this.#slices.objects().map(wrap),
        nodes: this.#node === undefined ? [] : [wrap({ apiVersion: 'v1', kind: 'Node', ...this.#node })],
        proxyConfigurations: this.#o.configObjects,
      },
      { overrides: this.#o.overrides, memo: this.#modelMemo },
    );
    const seen = new Set<string>();
    for (const p of models.problems) {
      if (p.kind === 'note') continue;
      const line = formatProblem(p);
      seen.add(line);
      if (!this.#reportedProblems.has(line)) this.#o.log.warn(p.kind === 'invalid' ? 'object not used' : 'object ignored', { problem: line });
    }
    this.#reportedProblems = seen;
    return models;
  }

  /** One sync of every family. Rejects (SyncError) when a family could not be verified or applied. */
  sync(): Promise<SyncSummary | undefined> {
    return this.#exclusive(() => this.#sync());
  }

  async #sync(): Promise<SyncSummary | undefined> {
    if (!this.ready) return undefined;
    const clock = this.#o.clock;
    const start = clock.now();
    const drained = union(this.#services.drain().updatedServices, this.#slices.drain().updatedServices);
    this.#reportPending();
    const changed = union(this.#pendingServices, drained);
    this.#pendingServices = changed;
    const triggers = this.#pendingTriggers;
    const full = this.#needFullSync || this.#lastFullSync === undefined || start - this.#lastFullSync > FULL_SYNC_PERIOD_MS;
    const kind: SyncKind = full ? 'full' : 'partial';
    const models = this.#models();
    const reports: FamilySyncReport[] = [];
    let failure: SyncError | undefined;
    for (const model of models.families) {
      try {
        reports.push(await this.#syncFamily(model, kind, changed));
      } catch (error) {
        const e = error instanceof SyncError ? error : new SyncError('restore', (error as Error).message);
        failure ??= e;
      }
    }
    if (failure !== undefined) {
      this.#needFullSync = true;
      throw failure;
    }
    this.#needFullSync = false;
    if (kind === 'full') this.#lastFullSync = start;
    this.#pendingServices = new Set();
    this.#pendingTriggers = this.#pendingTriggers.slice(triggers.length);
    const summary = this.#summary(models, kind, clock.now() - start, reports, triggers);
    this.#o.observer?.synced?.(summary);
    if (this.#o.conntrack !== undefined && !this.#o.dryRun) await this.#cleanConntrack(models, changed);
    return summary;
  }

  async #syncFamily(model: FamilyModel, kind: SyncKind, changed: ReadonlySet<string>): Promise<FamilySyncReport> {
    const clock = this.#o.clock;
    const start = clock.now();
    const family = model.family;
    const fail = (stage: FailureStage, message: string, violations: readonly string[] = []): SyncError => {
      this.#o.observer?.familyFailed?.(family, stage, kind, message, violations);
      this.#o.log.error('sync failed', { family, stage, kind, error: message, violations: violations.slice(0, 20) });
      return new SyncError(stage, `${family}: ${message}`);
    };
    let memo = this.#compileMemos.get(family);
    if (memo === undefined) {
      memo = new CompileMemo();
      this.#compileMemos.set(family, memo);
    }
    let compiled = compileFamily(model, { memo });
    if (this.#o.faultInjection === true) compiled = injectFaults(compiled, this.#services.objects());

    // The gate: a partial sync proves what changed; a full sync proves everything.
    const verifyStart = clock.now();
    const only = kind === 'partial' ? new Set(compiled.servicePorts.filter((sp) => changed.has(`${sp.servicePort.namespace}/${sp.servicePort.serviceName}`)).map((sp) => sp.servicePort.key)) : undefined;
    const report = verifyCompiled(compiled, only === undefined ? {} : { only });
    const verifyMs = clock.now() - verifyStart;
    if (report.violations.length > 0) {
      // Service-port violations first: they name what an operator changed.
      const lines = [...report.violations.filter((v) => v.servicePort !== 'ruleset'), ...report.violations.filter((v) => v.servicePort === 'ruleset')].map(formatViolation);
      throw fail('verify', `${String(lines.length)} verification violation(s); keeping the last good rules: ${lines[0] ?? ''}`, lines);
    }

    const dp = this.#o.dataplane(family);
    const previous = this.#applied.get(family);
    const previousCompiled = this.#lastCompiled.get(family);
    let plan: SyncPlan;
    if (kind === 'partial' && previous !== undefined && previousCompiled !== undefined) {
      plan = planPartial({ compiled, previous: previous.state, previousCompiled, changedServices: changed });
    } else {
      // Like kube-proxy, a full sync ensures the jump rules first (their target chains created
      // empty if missing), so the restore that fills the chains takes effect at once; and before
      // the read, so a table replacement planned from that dump keeps them.
      if (this.#o.dryRun !== true) {
        try {
          await this.#ensureJumps(compiled, dp);
        } catch (error) {
          throw fail('restore', (error as Error).message);
        }
      }
      let kernel: KernelDump;
      try {
        kernel = { filter: await dp.iptables.save('filter'), nat: await dp.iptables.save('nat') };
      } catch (error) {
        throw fail('read', (error as Error).message);
      }
      plan = planFull({ compiled, kernel, ...(this.#o.replaceThreshold === undefined ? {} : { replaceThreshold: this.#o.replaceThreshold }) });
    }

    let payloadBytes = plan.noflushPayload.length;
    for (const p of plan.replacePayloads.values()) payloadBytes += p.length;
    if (this.#o.dryRun !== true) {
      try {
        for (const [table, text] of plan.replacePayloads) await dp.iptables.restore(text, { noflush: false, table });
        if (plan.noflushPayload !== '') await dp.iptables.restore(plan.noflushPayload, { noflush: true });
      } catch (error) {
        throw fail('restore', (error as Error).message);
      }
    }
    const applied = previous ?? new AppliedRules();
    applied.apply(plan);
    this.#applied.set(family, applied);
    this.#lastCompiled.set(family, compiled);
    const written = plan.tables.flatMap((t) => t.written);
    const deleted = plan.tables.flatMap((t) => t.deleted);
    const durationMs = clock.now() - start;
    this.#o.log.info('synced', { family, kind, durationMs, verifyMs, checks: report.checks, writtenChains: written.length, deletedChains: deleted.length, payloadBytes, replaced: [...plan.replacePayloads.keys()] });
    return {
      family,
      kind,
      durationMs,
      verifyMs,
      checks: report.checks,
      ruleCounts: plan.ruleCounts,
      writtenChains: written,
      deletedChains: deleted,
      replacedTables: [...plan.replacePayloads.keys()],
      payloadBytes,
      rulesetHash: applied.hash,
      noLocalEndpoints: compiled.noLocalEndpoints,
    };
  }

  /** Jump rules from the built-in chains (reference §1.2) and the canaries; full syncs only. */
  async #ensureJumps(compiled: CompiledFamily, dp: FamilyDataplane): Promise<void> {
    for (const j of compiled.jumps) {
      const target = j.rule.target.kind === 'jump' ? j.rule.target.chain : undefined;
      if (target !== undefined) await dp.iptables.ensureChain(j.table, target);
      await dp.iptables.ensureRule('prepend', j.table, j.chain, ruleArgv(j.rule));
    }
    for (const table of CANARY_TABLES) await dp.iptables.ensureChain(table, CANARY_CHAIN);
    this.#canariesReady.add(compiled.family);
  }

  #summary(models: ProxyModels, kind: SyncKind, durationMs: number, families: readonly FamilySyncReport[], triggers: readonly number[]): SyncSummary {
    const primary = models.families[0];
    const healthCheckNodePorts = new Map<string, number>();
    const localEndpoints = new Map<string, number>();
    let endpoints = 0;
    if (primary !== undefined) {
      for (const sp of primary.servicePorts) {
        const eps = primary.endpoints.get(sp.key) ?? [];
        endpoints += eps.length;
        if (sp.healthCheckNodePort === 0) continue;
        const name = `${sp.namespace}/${sp.serviceName}`;
        healthCheckNodePorts.set(name, sp.healthCheckNodePort);
        localEndpoints.set(name, new Set(eps.filter((e) => e.isLocal && e.ready).map((e) => e.ip)).size);
      }
    }
    return {
      kind,
      durationMs,
      families,
      services: models.serviceCount,
      servicePorts: primary?.servicePorts.length ?? 0,
      endpoints,
      healthCheckNodePorts,
      localEndpoints,
      triggerTimes: triggers,
    };
  }

  /** Deletes UDP conntrack entries whose reply source no longer serves (reference §5, reconciler). */
  async #cleanConntrack(models: ProxyModels, changed: ReadonlySet<string>): Promise<void> {
    const conntrack = this.#o.conntrack;
    if (conntrack === undefined) return;
    for (const model of models.families) {
      const touchesUdp = model.servicePorts.some((sp) => sp.protocol === 'UDP' && changed.has(`${sp.namespace}/${sp.serviceName}`));
      const hadUdp = [...(this.#lastUdpServices.get(model.family) ?? [])].some((s) => changed.has(s));
      this.#lastUdpServices.set(model.family, new Set(model.servicePorts.filter((sp) => sp.protocol === 'UDP').map((sp) => `${sp.namespace}/${sp.serviceName}`)));
      if (!touchesUdp && !hadUdp) continue;
      const start = this.#o.clock.now();
      try {
        const stale = staleFlows(await conntrack.listUdp(model.family), servingEndpointsOf(model));
        let deleted = 0;
        const done = new Set<string>();
        for (const f of stale) {
          const key = `${f.origDst}|${String(f.origDport)}|${f.replySrc}`;
          if (done.has(key)) continue;
          done.add(key);
          deleted += await conntrack.deleteFlows(model.family, { origDst: f.origDst, origDport: f.origDport, replySrc: f.replySrc });
        }
        this.#o.observer?.conntrackCleaned?.(model.family, deleted, this.#o.clock.now() - start);
        if (deleted > 0) this.#o.log.info('deleted stale UDP conntrack entries', { family: model.family, deleted });
      } catch (error) {
        this.#o.log.warn('conntrack cleanup failed', { family: model.family, error: (error as Error).message });
      }
    }
  }


  /**
   * Drift check (every sync period): the canary tells a table flush, the jumps from the built-in
   * chains tell a flush of the chains or a removed entrance, both for a few milliseconds; a
   * read-back of kpx's chains tells edits, and runs when due (READBACK_TIME_SHARE). Any of them
   * forces a full sync; returns whether drift was found. `readBack: 'now'` reads back whether due or not.
   */
  checkDrift(options: { readonly readBack?: 'due' | 'now' } = {}): Promise<boolean> {
    return this.#exclusive(async () => {
      const drifts: DriftReason[] = [];
      const report = (family: IPFamily, reason: DriftReason, detail: string): void => {
        drifts.push(reason);
        this.#o.observer?.drift?.(family, reason, detail);
        this.#o.log.warn('drift: kpx rules changed behind its back', { family, reason, detail });
      };
      for (const [family, applied] of this.#applied) {
        if (this.#o.dryRun === true || !this.#canariesReady.has(family)) continue;
        const dp = this.#o.dataplane(family);
        if (!(await dp.iptables.chainExists('mangle', CANARY_CHAIN))) {
          this.#canariesReady.delete(family);
          report(family, 'canary', `chain ${CANARY_CHAIN} is gone from the mangle table: the tables were flushed`);
          continue;
        }
        const missing = await this.#missingJumps(family, dp);
        if (missing.length > 0) {
          report(family, 'jump', `${missing.join(', ')} gone`);
          continue;
        }
        const now = this.#o.clock.now();
        const last = this.#readBacks.get(family);
        if (options.readBack !== 'now' && last !== undefined && now - last.at < last.durationMs / READBACK_TIME_SHARE) continue;
        const kernel: KernelDump = { filter: await dp.iptables.save('filter'), nat: await dp.iptables.save('nat') };
        let checker = this.#readBackCheckers.get(family);
        if (checker === undefined) this.#readBackCheckers.set(family, (checker = new ReadbackChecker(family)));
        const drift: { table: string; chains: string[] }[] = [];
        for (const table of PLAN_TABLES) {
          const r = checker.compare(table, applied.chains(table), kernel[table]);
          if (r.differing.length + r.stale.length > 0) drift.push({ table, chains: [...r.differing, ...r.stale] });
        }
        this.#readBacks.set(family, { at: now, durationMs: this.#o.clock.now() - now });
        if (drift.length > 0) {
          const detail = drift.map((d) => `${d.table}: ${d.chains.slice(0, 5).join(', ')}${d.chains.length > 5 ? ` and ${String(d.chains.length - 5)} more` : ''}`).join('; ');
          report(family, 'readback', `kpx chains differ from what was applied: ${detail}`);
        }
      }
      if (drifts.length > 0) this.#needFullSync = true;
      return drifts.length > 0;
    });
  }

  /** The jumps from built-in chains into kpx's chains that are no longer there (`-C` each). */
  async #missingJumps(family: IPFamily, dp: FamilyDataplane): Promise<string[]> {
    const compiled = this.#lastCompiled.get(family);
    const missing: string[] = [];
    for (const j of compiled?.jumps ?? []) {
      if (!(await dp.iptables.hasRule(j.table, j.chain, ruleArgv(j.rule)))) {
        const to = j.rule.target.kind === 'jump' ? j.rule.target.chain : j.rule.target.kind;
        missing.push(`the jump from ${j.table} ${j.chain} to ${to}`);
      }
    }
    return missing;
  }
}
