/**
 * kube-proxy's ProxyHealthServer semantics as a pure state machine (the HTTP side is in http.ts).
 *
 * Per IP family: `lastUpdated` (set by updated() after each successful sync) and
 * `oldestPendingQueued` (set by queuedUpdate() only if unset, cleared by updated()). The proxy is
 * healthy iff every family that has synced at least once either has no pending update or has had
 * one pending for less than the health timeout; before any sync it is healthy. /healthz also
 * requires the Node to be eligible (not being deleted, not tainted for scale-down); /livez does not.
 * Bodies are exactly what upstream's handlers marshal, with Go's time.Time JSON (RFC 3339, UTC).
 */
import type { Clock } from '../agent/clock.ts';
import type { IPFamily } from '../model/ip.ts';
import { isObject } from '../model/fields.ts';
import type { JsonObject } from '../model/fields.ts';
import type { ProxyMetrics } from './metrics.ts';

export type { IPFamily } from '../model/ip.ts';

export interface HealthResponse {
  readonly status: 200 | 503;
  readonly body: string;
}

/** The taint the cluster autoscaler puts on a Node it is about to delete. */
export const TO_BE_DELETED_TAINT = 'ToBeDeletedByClusterAutoscaler';

/** False for a missing Node, one with a deletionTimestamp, or one tainted ToBeDeletedByClusterAutoscaler. */
export function nodeEligible(node: JsonObject | undefined): boolean {
  if (node === undefined) return false;
  const { metadata, spec } = node;
  if (isObject(metadata) && metadata.deletionTimestamp !== undefined && metadata.deletionTimestamp !== null) return false;
  const taints = isObject(spec) ? spec.taints : undefined;
  return !(Array.isArray(taints) && taints.some((t) => isObject(t) && t.key === TO_BE_DELETED_TAINT));
}

/** Go's time.Time MarshalJSON for a UTC instant: RFC 3339 with trailing fractional zeros dropped. */
function goTime(ms: number | undefined): string {
  if (ms === undefined) return '0001-01-01T00:00:00Z';
  return new Date(ms).toISOString().replace(/\.(\d*?)0*Z$/, (_, digits: string) => (digits === '' ? 'Z' : `.${digits}Z`));
}

const FAMILIES: readonly IPFamily[] = ['IPv4', 'IPv6'];

export class ProxyHealth {
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #metrics: ProxyMetrics | undefined;
  readonly #lastUpdated = new Map<IPFamily, number>();
  readonly #oldestPendingQueued = new Map<IPFamily, number>();
  #nodeEligible = true;

  constructor(options: { clock: Clock; healthTimeoutMs: number; metrics?: ProxyMetrics }) {
    this.#clock = options.clock;
    this.#timeoutMs = options.healthTimeoutMs;
    this.#metrics = options.metrics;
  }

  /** A change for `family` is waiting to be synced. */
  queuedUpdate(family: IPFamily): void {
    if (!this.#oldestPendingQueued.has(family)) this.#oldestPendingQueued.set(family, this.#clock.now());
  }

  /** `family`'s rules now reflect the current state. */
  updated(family: IPFamily): void {
    this.#oldestPendingQueued.delete(family);
    this.#lastUpdated.set(family, this.#clock.now());
  }

  setNodeEligible(eligible: boolean): void {
    this.#nodeEligible = eligible;
  }

  /** The proxier's own health (ignores node eligibility), as /livez and healthCheckNodePorts see it. */
  get healthy(): boolean {
    const now = this.#clock.now();
    return FAMILIES.every((f) => this.#familyHealthy(f, now));
  }

  /** The most recent successful sync of any family (ms since the epoch). */
  get lastUpdated(): number | undefined {
    const times = [...this.#lastUpdated.values()];
    return times.length === 0 ? undefined : Math.max(...times);
  }

  healthz(): HealthResponse {
    return this.#respond(this.#nodeEligible, this.#metrics?.proxyHealthzTotal);
  }

  livez(): HealthResponse {
    return this.#respond(undefined, this.#metrics?.proxyLivezTotal);
  }

  #familyHealthy(family: IPFamily, now: number): boolean {
    if (!this.#lastUpdated.has(family)) return true;
    const queued = this.#oldestPendingQueued.get(family);
    return queued === undefined || now - queued < this.#timeoutMs;
  }

  /** `eligible` is undefined for /livez, which neither checks nor reports node eligibility. */
  #respond(eligible: boolean | undefined, counter: ProxyMetrics['proxyHealthzTotal'] | undefined): HealthResponse {
    const now = this.#clock.now();
    const healthy = this.healthy;
    const status: Record<string, { lastUpdated: string; healthy: boolean }> = {};
    for (const family of FAMILIES) {
      const last = this.#lastUpdated.get(family);
      if (last !== undefined) status[family] = { lastUpdated: goTime(last), healthy: this.#familyHealthy(family, now) };
    }
    const ok = healthy && eligible !== false;
    const body = {
      lastUpdated: goTime(ok ? now : this.lastUpdated),
      currentTime: goTime(now),
      ...(eligible === undefined ? {} : { nodeEligible: eligible }),
      healthy,
      ...(Object.keys(status).length === 0 ? {} : { status }),
    };
    const code = ok ? 200 : 503;
    counter?.inc({ code: String(code) });
    return { status: code, body: JSON.stringify(body) };
  }
}
