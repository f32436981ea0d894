/**
 * The sync runner, with the semantics of kube-proxy's BoundedFrequencyRunner (1.33+): `fn` never
 * runs concurrently with itself, run() requests coalesce, consecutive runs start at least
 * minIntervalMs apart (start-to-start), a successful run schedules the next unrequested one
 * maxIntervalMs after it finishes, and a failed one schedules a retry min(retryIntervalMs,
 * maxIntervalMs) after it finishes. Time comes only from the injected Clock.
 */
import type { Clock, TimerHandle } from './clock.ts';

export interface RunnerOptions {
  readonly name: string;
  /** The sync; a rejection (or throw) means "retry after retryIntervalMs". */
  readonly fn: () => Promise<void>;
  /** Min time between run starts; 0 = no limit. */
  readonly minIntervalMs: number;
  readonly retryIntervalMs: number;
  /** Run at least this often even without requests. */
  readonly maxIntervalMs: number;
  readonly clock: Clock;
  /** Called with each failure; must not throw. */
  readonly onError?: (error: unknown) => void;
}

export class BoundedFrequencyRunner {
  readonly #options: RunnerOptions;
  #started = false;
  #stopped = false;
  #requested = false;
  #lastStart: number | undefined;
  /** When the next unrequested run (periodic or retry) is due. */
  #dueAt = 0;
  #timer: TimerHandle | undefined;
  #current: Promise<void> | undefined;
  #runs = 0;

  constructor(options: RunnerOptions) {
    const { name, minIntervalMs, retryIntervalMs, maxIntervalMs } = options;
    if (!(minIntervalMs >= 0 && retryIntervalMs >= 0 && maxIntervalMs >= minIntervalMs)) {
      throw new Error(`runner ${name}: need 0 <= minIntervalMs <= maxIntervalMs and retryIntervalMs >= 0`);
    }
    this.#options = options;
  }

  /** Begins the loop. fn first runs on a run() request (also one made before start) or after maxIntervalMs. */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#dueAt = this.#options.clock.now() + this.#options.maxIntervalMs;
    this.#schedule();
  }

  /** Requests a run as soon as minIntervalMs allows; coalesces with pending requests; never blocks. */
  run(): void {
    if (this.#stopped) return;
    this.#requested = true;
    this.#schedule();
  }

  /** Waits for a running fn to finish; nothing runs afterwards. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#clearTimer();
    await this.#current;
  }

  /** True from the moment a run is launched until fn settles. */
  get running(): boolean {
    return this.#current !== undefined;
  }

  /** Number of times fn has been called. */
  get runs(): number {
    return this.#runs;
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Launches a run now, or sets the one timer for the next moment a run is due. */
  #schedule(): void {
    this.#clearTimer();
    if (!this.#started || this.#stopped || this.#current !== undefined) return;
    const { clock, minIntervalMs } = this.#options;
    const now = clock.now();
    const earliest = this.#lastStart === undefined ? now : this.#lastStart + minIntervalMs;
    const at = Math.max(earliest, this.#requested ? now : this.#dueAt);
    if (at <= now) {
      this.#lastStart = now;
      this.#current = this.#execute();
    } else {
      this.#timer = clock.setTimeout(() => {
        this.#timer = undefined;
        this.#schedule();
      }, at - now);
    }
  }

  async #execute(): Promise<void> {
    // fn starts on a later microtask: never inside the caller of run(), and not at all after stop().
    await Promise.resolve();
    let failed = false;
    let failure: unknown;
    if (!this.#stopped) {
      // Requests made until fn begins are served by this run.
      this.#requested = false;
      this.#runs++;
      try {
        await this.#options.fn();
      } catch (error) {
        failed = true;
        failure = error;
      }
    }
    const { clock, retryIntervalMs, maxIntervalMs, onError } = this.#options;
    this.#dueAt = clock.now() + (failed ? Math.min(retryIntervalMs, maxIntervalMs) : maxIntervalMs);
    this.#current = undefined;
    this.#schedule();
    if (failed) onError?.(failure);
  }
}
