/**
 * Writes the node's NodeProxyStatus (crds/kpx.dev_nodeproxystatuses.yaml): creates the object,
 * owned by the Node so it goes with it, and replaces its status subresource. Writes are rate
 * limited and coalesced: the sync loop calls update() as often as it likes and only the latest
 * status is written, at most once per minIntervalMs.
 */
import { ApiException, CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { systemClock, type Clock, type TimerHandle } from '../agent/clock.ts';
import type { Logger } from '../agent/log.ts';

const GROUP = 'kpx.dev';
const VERSION = 'v1alpha1';
const NODE_PROXY_STATUS_PLURAL = 'nodeproxystatuses';
/** The schema's maxItems for verification.violations. */
export const MAX_VIOLATIONS = 20;
const DEFAULT_MIN_INTERVAL_MS = 10_000;
/** While the CRD is missing, look for it this often. */
const CRD_RETRY_MS = 60_000;

export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface NodeProxyCondition {
  readonly type: 'Ready' | 'Verified' | 'Drifted';
  readonly status: ConditionStatus;
  /** CamelCase, e.g. RulesApplied, VerificationFailed. */
  readonly reason: string;
  readonly message: string;
  /** RFC 3339. The writer keeps the previously written time while the condition's status is unchanged. */
  readonly lastTransitionTime: string;
  readonly observedGeneration?: number;
}

/** `.status` of a NodeProxyStatus, as the CRD schema defines it. Times are RFC 3339 strings. */
export interface NodeProxyStatusBody {
  readonly lastSyncTime?: string;
  readonly lastSyncKind?: 'full' | 'partial';
  readonly lastSyncDurationSeconds?: number;
  readonly rulesPerTable?: { readonly filter: number; readonly nat: number };
  readonly rulesetHash?: string;
  readonly services?: number;
  readonly servicePorts?: number;
  readonly endpoints?: number;
  readonly families?: readonly ('IPv4' | 'IPv6')[];
  readonly verification?: {
    readonly verdict: 'Passed' | 'Failed';
    readonly checks: number;
    readonly violations?: readonly string[];
    readonly lastFailureTime?: string;
  };
  readonly drift?: { readonly detections: number; readonly lastDetectionTime?: string; readonly lastReason?: string };
  readonly lastError?: string;
  readonly conditions?: readonly NodeProxyCondition[];
}

export interface NodeProxyStatusWriterOptions {
  readonly kubeConfig: KubeConfig;
  readonly nodeName: string;
  readonly log: Logger;
  readonly clock?: Clock;
  /** Minimum time between writes (default 10 s); the latest desired status always wins. */
  readonly minIntervalMs?: number;
}

/** The apiserver's answer to a failed request: HTTP code and its Status object, when it sent one. */
export interface ApiFailure {
  readonly code: number;
  readonly message: string;
  /** Status.details.name: set when a named object was not found, absent when the resource type itself is unknown. */
  readonly name: string | undefined;
}

export function apiFailure(error: unknown): ApiFailure {
  if (!(error instanceof ApiException)) return { code: 0, message: error instanceof Error ? error.message : String(error), name: undefined };
  const code = (error as ApiException<unknown>).code;
  const body: unknown = (error as ApiException<unknown>).body;
  let status: { message?: unknown; details?: { name?: unknown } } = {};
  try {
    const parsed: unknown = typeof body === 'string' ? JSON.parse(body) : body;
    if (typeof parsed === 'object' && parsed !== null) status = parsed;
  } catch {
    // not a Status object
  }
  const message = typeof status.message === 'string' ? status.message : typeof body === 'string' && body !== '' ? body.slice(0, 200) : `HTTP ${String(code)}`;
  return { code, message, name: typeof status.details?.name === 'string' ? status.details.name : undefined };
}

/** Keeps the object within the schema's limits (at most MAX_VIOLATIONS violations; the last one counts the rest). */
function fitSchema(status: NodeProxyStatusBody): NodeProxyStatusBody {
  const violations = status.verification?.violations;
  if (status.verification === undefined || violations === undefined || violations.length <= MAX_VIOLATIONS) return status;
  const kept = violations.slice(0, MAX_VIOLATIONS - 1);
  return { ...status, verification: { ...status.verification, violations: [...kept, `... and ${String(violations.length - kept.length)} more violations`] } };
}

export class NodeProxyStatusWriter {
  readonly #api: CustomObjectsApi;
  readonly #node: string;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #minIntervalMs: number;
  #nodeUID: string | undefined;
  #pending: NodeProxyStatusBody | undefined;
  /** The pending status has not been attempted yet (a failed one is kept for the retry, but not fresh). */
  #fresh = false;
  #written: NodeProxyStatusBody | undefined;
  #timer: TimerHandle | undefined;
  #inflight: Promise<void> | undefined;
  #lastAttempt: number | undefined;
  #exists = false;
  /** The owner UID the object is known to carry. */
  #ownerUID: string | undefined;
  #crdMissing = false;
  #stopped = false;
  #writes = 0;
  #failures = 0;

  constructor(options: NodeProxyStatusWriterOptions) {
    this.#api = options.kubeConfig.makeApiClient(CustomObjectsApi);
    this.#node = options.nodeName;
    this.#log = options.log.child({ component: 'nodeproxystatus' });
    this.#clock = options.clock ?? systemClock();
    this.#minIntervalMs = options.minIntervalMs ?? DEFAULT_MIN_INTERVAL_MS;
  }

  /** Successful status writes. */
  get writes(): number {
    return this.#writes;
  }

  /** Failed write attempts. */
  get failures(): number {
    return this.#failures;
  }

  setNodeUID(uid: string): void {
    if (uid === this.#nodeUID) return;
    this.#nodeUID = uid;
    // An object created before the UID was known gets its owner on the next write.
    if (this.#exists && this.#written !== undefined && this.#pending === undefined) this.update(this.#written);
  }

  /** Records the desired status and schedules a write; never blocks, never throws. */
  update(status: NodeProxyStatusBody): void {
    if (this.#stopped) return;
    this.#pending = status;
    this.#fresh = true;
    this.#schedule();
  }

  /** Waits for a write in flight, then writes now if a status given to update() has not been attempted yet. */
  async flush(): Promise<void> {
    if (this.#inflight !== undefined) await this.#inflight;
    if (!this.#fresh || this.#stopped) return;
    this.#cancelTimer();
    await this.#start();
  }

  /** Stops writing (a pending status is dropped: flush() first to keep it) and waits for a write in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#cancelTimer();
    if (this.#inflight !== undefined) await this.#inflight;
  }

  #cancelTimer(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    if (this.#stopped || this.#pending === undefined || this.#timer !== undefined || this.#inflight !== undefined) return;
    const interval = this.#crdMissing ? CRD_RETRY_MS : this.#minIntervalMs;
    const delay = this.#lastAttempt === undefined ? 0 : Math.max(0, this.#lastAttempt + interval - this.#clock.now());
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      void this.#start();
    }, delay);
  }

  #start(): Promise<void> {
    const run = this.#write().finally(() => {
      this.#inflight = undefined;
      this.#schedule();
    });
    this.#inflight = run;
    return run;
  }

  async #write(): Promise<void> {
    const desired = this.#pending;
    if (desired === undefined) return;
    this.#pending = undefined;
    this.#fresh = false;
    this.#lastAttempt = this.#clock.now();
    const status = this.#stableTransitions(fitSchema(desired));
    try {
      await this.#ensureObject();
      // A JSON patch "add" of /status replaces the whole status, so fields the agent no longer reports disappear.
      await this.#api.patchClusterCustomObjectStatus(
        { group: GROUP, version: VERSION, plural: NODE_PROXY_STATUS_PLURAL, name: this.#node, body: [{ op: 'add', path: '/status', value: status }] },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      );
      this.#written = status;
      this.#writes++;
      if (this.#crdMissing) this.#log.info('NodeProxyStatus CRD found; status reporting enabled', { node: this.#node });
      this.#crdMissing = false;
    } catch (error) {
      this.#failed(error, desired);
    }
  }

  async #ensureObject(): Promise<void> {
    const uid = this.#nodeUID;
    const owners = uid === undefined ? [] : [{ apiVersion: 'v1', kind: 'Node', name: this.#node, uid }];
    if (!this.#exists) {
      try {
        await this.#api.createClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: NODE_PROXY_STATUS_PLURAL,
          body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'NodeProxyStatus', metadata: { name: this.#node, ownerReferences: owners } },
        });
        this.#ownerUID = uid;
      } catch (error) {
        if (apiFailure(error).code !== 409) throw error;
        this.#ownerUID = undefined; // someone else's object, or ours from before a restart: set the owner below
      }
      this.#exists = true;
    }
    if (uid !== undefined && this.#ownerUID !== uid) {
      await this.#api.patchClusterCustomObject(
        { group: GROUP, version: VERSION, plural: NODE_PROXY_STATUS_PLURAL, name: this.#node, body: { metadata: { ownerReferences: owners } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      this.#ownerUID = uid;
    }
  }

  #failed(error: unknown, desired: NodeProxyStatusBody): void {
    this.#failures++;
    this.#pending ??= desired;
    const failure = apiFailure(error);
    if (failure.code === 404 && failure.name === undefined) {
      if (!this.#crdMissing) this.#log.warn('NodeProxyStatus CRD not installed; status reporting disabled until it is', { node: this.#node, retryInSeconds: CRD_RETRY_MS / 1000 });
      this.#crdMissing = true;
      this.#exists = false;
      return;
    }
    // The object was deleted (or the Node it belonged to was): create it again next time.
    if (failure.code === 404) this.#exists = false;
    this.#log.warn('Could not write NodeProxyStatus; retrying with the next write', { node: this.#node, code: failure.code, error: failure.message });
  }

  /** metav1.Condition semantics: lastTransitionTime moves only when a condition's status changes. */
  #stableTransitions(status: NodeProxyStatusBody): NodeProxyStatusBody {
    const before = this.#written?.conditions;
    if (status.conditions === undefined || before === undefined) return status;
    return {
      ...status,
      conditions: status.conditions.map((c) => {
        const unchanged = before.find((b) => b.type === c.type && b.status === c.status);
        return unchanged === undefined ? c : { ...c, lastTransitionTime: unchanged.lastTransitionTime };
      }),
    };
  }
}
