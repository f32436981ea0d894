/**
 * core/v1 Events on the agent's Node (`kubectl describe node` shows them), recorded the way
 * client-go's recorder does it:
 * - an identical event (same type, reason and message) within 10 minutes of the previous one
 *   increments `count` and `lastTimestamp` of the existing Event instead of creating another;
 * - a token bucket per reason (burst 25, one token back every 5 minutes, client-go's spam filter)
 *   drops the excess, so a crash-looping sync cannot flood etcd;
 * - record() never blocks and never throws: events go through a bounded queue, written one at a
 *   time; a failed write is logged and dropped (events are best effort).
 */
import { CoreV1Api, CoreV1Event, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { systemClock, type Clock } from '../agent/clock.ts';
import type { Logger } from '../agent/log.ts';
import { apiFailure } from './status.ts';

export type EventType = 'Normal' | 'Warning';

/** Node events live in the default namespace, like the kubelet's. */
const EVENT_NAMESPACE = 'default';
const COMPONENT = 'kpx';
export const AGGREGATION_WINDOW_MS = 10 * 60_000;
export const SPAM_BURST = 25;
export const SPAM_REFILL_MS = 5 * 60_000;
/** client-go's maxQueuedEvents. */
const MAX_QUEUED = 1000;
/** Identical events remembered for aggregation (client-go's LRU holds 4096). */
const MAX_REMEMBERED = 4096;

export interface NodeEventRecorderOptions {
  readonly kubeConfig: KubeConfig;
  readonly nodeName: string;
  readonly log: Logger;
  readonly clock?: Clock;
}

interface Pending {
  readonly type: EventType;
  readonly reason: string;
  readonly message: string;
  readonly at: number;
}

interface Recorded {
  readonly name: string;
  readonly count: number;
  readonly last: number;
}

/** The fields of a core/v1 Event kpx sets. */
interface EventBody {
  readonly metadata: { readonly name: string; readonly namespace: string };
  readonly involvedObject: { readonly apiVersion: string; readonly kind: string; readonly name: string; readonly uid?: string };
  readonly type: EventType;
  readonly reason: string;
  readonly message: string;
  readonly source: { readonly component: string; readonly host: string };
  readonly reportingComponent: string;
  readonly reportingInstance: string;
  readonly firstTimestamp: Date;
  readonly lastTimestamp: Date;
  readonly count: number;
}

interface Bucket {
  tokens: number;
  refilledAt: number;
}

export class NodeEventRecorder {
  readonly #api: CoreV1Api;
  readonly #node: string;
  readonly #log: Logger;
  readonly #clock: Clock;
  #nodeUID: string | undefined;
  readonly #queue: Pending[] = [];
  readonly #recorded = new Map<string, Recorded>();
  readonly #buckets = new Map<string, Bucket>();
  #draining: Promise<void> | undefined;
  #seq = 0;
  #stopped = false;

  constructor(options: NodeEventRecorderOptions) {
    this.#api = options.kubeConfig.makeApiClient(CoreV1Api);
    this.#node = options.nodeName;
    this.#log = options.log.child({ component: 'events' });
    this.#clock = options.clock ?? systemClock();
  }

  setNodeUID(uid: string): void {
    this.#nodeUID = uid;
  }

  record(type: EventType, reason: string, message: string): void {
    if (this.#stopped) return;
    const at = this.#clock.now();
    if (!this.#take(reason, at)) {
      this.#log.debug('Event dropped by the rate limit', { reason, message });
      return;
    }
    if (this.#queue.length >= MAX_QUEUED) {
      this.#log.warn('Event queue full; event dropped', { reason, message });
      return;
    }
    this.#queue.push({ type, reason, message, at });
    this.#kick();
  }

  /** Resolves when every event recorded so far has been written (or has failed). */
  async flush(): Promise<void> {
    while (this.#draining !== undefined) await this.#draining;
  }

  /** Ignores further events and waits for the queued ones. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.flush();
  }

  /** client-go's spam filter: one token per event, per reason (the involved object is always this Node). */
  #take(reason: string, now: number): boolean {
    const bucket = this.#buckets.get(reason) ?? { tokens: SPAM_BURST, refilledAt: now };
    const refill = Math.floor((now - bucket.refilledAt) / SPAM_REFILL_MS);
    if (refill > 0) {
      bucket.tokens = Math.min(SPAM_BURST, bucket.tokens + refill);
      bucket.refilledAt = bucket.tokens === SPAM_BURST ? now : bucket.refilledAt + refill * SPAM_REFILL_MS;
    }
    this.#buckets.set(reason, bucket);
    if (bucket.tokens === 0) return false;
    bucket.tokens--;
    return true;
  }

  #kick(): void {
    if (this.#draining !== undefined || this.#queue.length === 0) return;
    this.#draining = this.#drain().finally(() => {
      this.#draining = undefined;
      this.#kick();
    });
  }

  async #drain(): Promise<void> {
    for (let next = this.#queue.shift(); next !== undefined; next = this.#queue.shift()) {
      try {
        await this.#write(next);
      } catch (error) {
        const failure = apiFailure(error);
        this.#log.warn('Could not record Event on the Node; dropped', { reason: next.reason, message: next.message, code: failure.code, error: failure.message });
      }
    }
  }

  async #write(event: Pending): Promise<void> {
    const key = `${event.type}\u0000${event.reason}\u0000${event.message}`;
    const seen = this.#recorded.get(key);
    if (seen !== undefined && event.at - seen.last <= AGGREGATION_WINDOW_MS) {
      const count = seen.count + 1;
      try {
        await this.#api.patchNamespacedEvent(
          { name: seen.name, namespace: EVENT_NAMESPACE, body: { count, lastTimestamp: new Date(event.at).toISOString() } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
        this.#remember(key, { name: seen.name, count, last: event.at });
        return;
      } catch (error) {
        // The Event expired (the apiserver keeps them an hour by default): start a new one.
        if (apiFailure(error).code !== 404) throw error;
      }
    }
    const body = this.#event(event);
    await this.#api.createNamespacedEvent({ namespace: EVENT_NAMESPACE, body: Object.assign(new CoreV1Event(), body) });
    this.#remember(key, { name: body.metadata.name, count: 1, last: event.at });
  }

  #remember(key: string, recorded: Recorded): void {
    this.#recorded.delete(key);
    this.#recorded.set(key, recorded);
    if (this.#recorded.size > MAX_REMEMBERED) {
      const oldest = this.#recorded.keys().next();
      if (oldest.done !== true) this.#recorded.delete(oldest.value);
    }
  }

  #event(event: Pending): EventBody {
    const time = new Date(event.at);
    // client-go's naming: <object>.<hex nanoseconds>; the sequence keeps two events in one millisecond apart.
    const name = `${this.#node}.${(BigInt(event.at) * 1_000_000n + BigInt(this.#seq++ % 1_000_000)).toString(16)}`;
    return {
      metadata: { name, namespace: EVENT_NAMESPACE },
      involvedObject: { apiVersion: 'v1', kind: 'Node', name: this.#node, ...(this.#nodeUID === undefined ? {} : { uid: this.#nodeUID }) },
      type: event.type,
      reason: event.reason,
      message: event.message,
      source: { component: COMPONENT, host: this.#node },
      reportingComponent: COMPONENT,
      reportingInstance: this.#node,
      firstTimestamp: time,
      lastTimestamp: time,
      count: 1,
    };
  }
}
