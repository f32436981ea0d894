import { describe, expect, it } from 'vitest';
import { FakeClock } from './clock.ts';
import { BoundedFrequencyRunner, type RunnerOptions } from './runner.ts';

/** Lets every pending promise callback run. */
function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Moves the fake clock to `target`, firing timers one at a time and settling promises after each. */
async function advanceTo(clock: FakeClock, target: number): Promise<void> {
  await flush();
  for (let next = clock.nextAt(); next !== undefined && next <= target; next = clock.nextAt()) {
    clock.advance(next - clock.now());
    await flush();
  }
  clock.advance(target - clock.now());
  await flush();
}

interface Harness {
  readonly clock: FakeClock;
  readonly runner: BoundedFrequencyRunner;
  /** Clock time at which each fn call began. */
  readonly starts: number[];
  readonly errors: unknown[];
  /** Highest number of fn calls in flight at once. */
  readonly maxConcurrent: () => number;
}

/**
 * A runner whose fn takes `durationMs` of fake time and fails when `fails(call)` says so
 * ('reject' returns a rejected promise, 'throw' throws before returning one).
 */
function harness(
  options: Partial<Pick<RunnerOptions, 'minIntervalMs' | 'retryIntervalMs' | 'maxIntervalMs'>> = {},
  durationMs = 0,
  fails: (call: number) => 'reject' | 'throw' | undefined = () => undefined,
): Harness {
  const clock = new FakeClock(0);
  const starts: number[] = [];
  const errors: unknown[] = [];
  let inFlight = 0;
  let peak = 0;
  const fn = (): Promise<void> => {
    starts.push(clock.now());
    const failure = fails(starts.length);
    if (failure === 'throw') throw new Error(`thrown ${String(starts.length)}`);
    inFlight++;
    peak = Math.max(peak, inFlight);
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        inFlight--;
        if (failure === 'reject') reject(new Error(`rejected ${String(starts.length)}`));
        else resolve();
      };
      if (durationMs === 0) done();
      else clock.setTimeout(done, durationMs);
    });
  };
  const runner = new BoundedFrequencyRunner({
    name: 'sync',
    fn,
    minIntervalMs: 1000,
    retryIntervalMs: 5000,
    maxIntervalMs: 60_000,
    clock,
    onError: (error) => errors.push(error),
    ...options,
  });
  return { clock, runner, starts, errors, maxConcurrent: () => peak };
}

describe('BoundedFrequencyRunner', () => {
  it('does not run on start, then runs every maxInterval without requests', async () => {
    const { clock, runner, starts } = harness();
    runner.start();
    await advanceTo(clock, 59_999);
    expect(starts).toEqual([]);
    await advanceTo(clock, 200_000);
    expect(starts).toEqual([60_000, 120_000, 180_000]);
    expect(runner.runs).toBe(3);
  });

  it('coalesces a burst of 100 requests into one run, and requests during it into one more after minInterval', async () => {
    const { clock, runner, starts } = harness({}, 300);
    runner.start();
    for (let i = 0; i < 100; i++) runner.run();
    await advanceTo(clock, 100);
    expect(starts).toEqual([0]);
    expect(runner.running).toBe(true);
    for (let i = 0; i < 100; i++) runner.run();
    await advanceTo(clock, 10_000);
    expect(starts).toEqual([0, 1000]);
    expect(runner.running).toBe(false);
  });

  it('respects minInterval start-to-start across many requests', async () => {
    const { clock, runner, starts } = harness({ minIntervalMs: 1000 }, 300);
    runner.start();
    for (let t = 0; t < 5000; t += 100) {
      await advanceTo(clock, t);
      runner.run();
    }
    await advanceTo(clock, 7000);
    expect(starts).toEqual([0, 1000, 2000, 3000, 4000, 5000]);
  });

  it('never overlaps runs when fn takes longer than minInterval', async () => {
    const { clock, runner, starts, maxConcurrent } = harness({ minIntervalMs: 1000 }, 1500);
    runner.start();
    runner.run();
    await advanceTo(clock, 100);
    runner.run();
    await advanceTo(clock, 1400);
    expect(starts).toEqual([0]);
    await advanceTo(clock, 10_000);
    expect(starts).toEqual([0, 1500]);
    expect(maxConcurrent()).toBe(1);
  });

  it('schedules the periodic run maxInterval after the last run finishes', async () => {
    const { clock, runner, starts } = harness({}, 300);
    runner.start();
    await advanceTo(clock, 2000);
    runner.run();
    await advanceTo(clock, 62_299);
    expect(starts).toEqual([2000]);
    await advanceTo(clock, 62_300);
    expect(starts).toEqual([2000, 62_300]);
  });

  it('retries retryInterval after a rejected run and reports the error', async () => {
    const { clock, runner, starts, errors } = harness({}, 0, (call) => (call === 1 ? 'reject' : undefined));
    runner.start();
    runner.run();
    await advanceTo(clock, 4999);
    expect(starts).toEqual([0]);
    expect(errors).toEqual([new Error('rejected 1')]);
    await advanceTo(clock, 100_000);
    // After the successful retry the next run is the periodic one, maxInterval later.
    expect(starts).toEqual([0, 5000, 65_000]);
    expect(errors).toHaveLength(1);
  });

  it('handles fn throwing synchronously and caps the retry at maxInterval', async () => {
    const { clock, runner, starts, errors } = harness({ retryIntervalMs: 5000, maxIntervalMs: 3000 }, 0, (call) =>
      call <= 2 ? 'throw' : undefined,
    );
    runner.start();
    runner.run();
    await advanceTo(clock, 10_000);
    expect(starts).toEqual([0, 3000, 6000, 9000]);
    expect(errors).toEqual([new Error('thrown 1'), new Error('thrown 2')]);
    expect(runner.running).toBe(false);
  });

  it('runs a request made while a retry is pending, respecting minInterval', async () => {
    const { clock, runner, starts } = harness({ retryIntervalMs: 30_000 }, 0, (call) => (call === 1 ? 'reject' : undefined));
    runner.start();
    runner.run();
    await advanceTo(clock, 200);
    runner.run();
    await advanceTo(clock, 999);
    expect(starts).toEqual([0]);
    await advanceTo(clock, 70_000);
    // The successful run at 1000 cancels the retry at 30000.
    expect(starts).toEqual([0, 1000, 61_000]);
  });

  it('stop() during a run waits for it and prevents further runs', async () => {
    const { clock, runner, starts } = harness({}, 300);
    runner.start();
    runner.run();
    await advanceTo(clock, 100);
    runner.run();
    let stopped = false;
    const stopping = runner.stop().then(() => {
      stopped = true;
    });
    await advanceTo(clock, 299);
    expect(stopped).toBe(false);
    expect(runner.running).toBe(true);
    await advanceTo(clock, 300);
    await stopping;
    expect(stopped).toBe(true);
    expect(runner.running).toBe(false);
    runner.run();
    await advanceTo(clock, 500_000);
    expect(starts).toEqual([0]);
    expect(clock.pending).toBe(0);
  });

  it('with minInterval 0 runs a request promptly, without the clock moving', async () => {
    const { clock, runner, starts } = harness({ minIntervalMs: 0 }, 0);
    runner.start();
    runner.run();
    await flush();
    runner.run();
    await flush();
    expect(starts).toEqual([0, 0]);
    expect(clock.now()).toBe(0);
  });

  it('with minInterval 0 runs a request made during a run as soon as it finishes', async () => {
    const { clock, runner, starts } = harness({ minIntervalMs: 0 }, 300);
    runner.start();
    runner.run();
    await advanceTo(clock, 10);
    runner.run();
    await advanceTo(clock, 1000);
    expect(starts).toEqual([0, 300]);
  });

  it('never calls fn inside run(), and honours a request made before start()', async () => {
    const { clock, runner, starts } = harness();
    runner.run();
    await advanceTo(clock, 500);
    expect(starts).toEqual([]);
    runner.start();
    expect(starts).toEqual([]);
    await flush();
    expect(starts).toEqual([500]);
  });

  it('rejects a maxInterval below minInterval', () => {
    expect(() => harness({ minIntervalMs: 2000, maxIntervalMs: 1000 })).toThrow(/minIntervalMs <= maxIntervalMs/);
  });
});
