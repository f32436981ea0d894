/**
 * Agent sync benchmark: the real Proxier (compile → verify → plan → iptables-restore) against real
 * netfilter, one fresh network namespace per cluster size (synthetic cluster, 10 endpoints per
 * Service). Steps, each checked against the kernel before its number is printed:
 *   0. floor: plain `iptables-restore` of the same ruleset (save form) into another empty namespace,
 *      what loading it costs without --noflush (reference harness §4: 0.87 s at 1k services);
 *   1. first full sync into an empty node;
 *   2. a restarted agent (new Proxier over the same kernel state): its full sync writes 0 chains;
 *   3. partial syncs after one Service's endpoints change, then after 1% of the Services change;
 *   4. a full sync after every endpoint changed (whole-table replacement, not --noflush per chain);
 *   5. the drift check with a read-back (twice: the second parses only what changed) and between
 *      read-backs (canary and jumps only), then a drift repair after an external chain flush;
 *   6. baseline (small sizes only, it is quadratic): the same full ruleset re-applied with plain
 *      `iptables-restore --noflush` over the existing rules, as a naive full sync does;
 *   7. an external `iptables -t nat -F` (issue 5's fault): detected, and repaired by a full sync.
 * After each step the kernel's nat table is read back and checked (KUBE-SVC and KUBE-SEP chain
 * counts, every DNAT destination, the jumps from the built-in chains). A step's figure is printed
 * only once its check passed; a failed check ends that size (its namespace is deleted), the next
 * size still runs, and the bench exits non-zero. There are no timing asserts.
 *
 *   node bench/agent-sync.bench.ts [SIZE...]       (root; default sizes below)
 *   KPX_BENCH_AGENT_SIZES=1000,5000  KPX_BENCH_NAIVE_MAX=2000 (0: no baseline)
 */
import { execa } from 'execa';
import { loadavg } from 'node:os';
import { systemClock } from '../controller/src/agent/clock.ts';
import { silentLogger } from '../controller/src/agent/log.ts';
import { Proxier, type FamilyDataplane, type FamilySyncReport, type SyncSummary } from '../controller/src/agent/proxier.ts';
import { compileFamily } from '../controller/src/compile/compile.ts';
import { renderRestore, renderSave } from '../controller/src/compile/render.ts';
import { execaRunner } from '../controller/src/dataplane/exec.ts';
import { Iptables } from '../controller/src/dataplane/iptables.ts';
import { buildProxyModels } from '../controller/src/model/cluster.ts';
import type { JsonObject } from '../controller/src/model/fields.ts';
import { TABLE_REPLACE_THRESHOLD } from '../controller/src/plan/plan.ts';
import { checkInNamespace, hasProgram, runInNamespace } from '../e2e/kernel/netns.ts';
import { ip, syntheticCluster } from './synthetic.ts';

const DEFAULT_SIZES = [1000, 5000, 10000];
const ENDPOINTS = 10;
const TARGET_PORT = 8080;

class BenchFailure extends Error {}

function check(ok: boolean, what: string): void {
  if (!ok) throw new BenchFailure(what);
}

function parseSizes(text: string, what: string): number[] {
  const sizes = text.split(/[\s,]+/).filter((s) => s !== '').map(Number);
  for (const n of sizes) if (!Number.isInteger(n) || n < 100) throw new BenchFailure(`${what}: sizes must be integers >= 100, got "${text}"`);
  return sizes;
}

async function timed<T>(run: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await run();
  return [value, (performance.now() - start) / 1000];
}

const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');

interface SliceShape {
  endpoints: { addresses: string[] }[];
}

/** The slice with its first `count` endpoints moved to fresh addresses (pods replaced). */
function readdressed(slice: JsonObject, count: number, next: () => string): JsonObject {
  const copy = structuredClone(slice);
  for (const e of (copy as unknown as SliceShape).endpoints.slice(0, count)) e.addresses = [next()];
  return copy;
}

function destinationsOf(slices: readonly JsonObject[]): Set<string> {
  const out = new Set<string>();
  for (const s of slices) for (const e of (s as unknown as SliceShape).endpoints) for (const a of e.addresses) out.add(`${a}:${String(TARGET_PORT)}`);
  return out;
}

/** The jumps from nat's built-in chains into kpx's (reference §1.2): without them nothing is proxied. */
const NAT_JUMPS = [
  ['PREROUTING', 'KUBE-SERVICES'],
  ['OUTPUT', 'KUBE-SERVICES'],
  ['POSTROUTING', 'KUBE-POSTROUTING'],
] as const;

interface NatSnapshot {
  readonly sep: number;
  readonly svc: number;
  readonly destinations: Set<string>;
  /** `PREROUTING->KUBE-SERVICES` → how many such rules. */
  readonly jumps: Map<string, number>;
}

/** What the kernel's nat table holds: per-service chain counts, every DNAT destination, the jumps. */
async function natSnapshot(ipt: Iptables): Promise<NatSnapshot> {
  let sep = 0;
  let svc = 0;
  const destinations = new Set<string>();
  const jumps = new Map<string, number>();
  for (const line of (await ipt.save('nat')).split('\n')) {
    if (line.startsWith(':KUBE-SEP-')) sep++;
    else if (line.startsWith(':KUBE-SVC-')) svc++;
    else if (line.startsWith('-A KUBE-SEP-')) {
      const m = / --to-destination (\S+)/.exec(line);
      if (m?.[1] !== undefined) destinations.add(m[1]);
    } else {
      const m = /^-A (PREROUTING|OUTPUT|POSTROUTING) .*-j (KUBE-\S+)$/.exec(line);
      if (m?.[1] !== undefined && m[2] !== undefined) jumps.set(`${m[1]}->${m[2]}`, (jumps.get(`${m[1]}->${m[2]}`) ?? 0) + 1);
    }
  }
  return { sep, svc, destinations, jumps };
}

function ipv4(summary: SyncSummary | undefined): FamilySyncReport {
  const r = summary?.families.find((f) => f.family === 'IPv4');
  if (r === undefined) throw new BenchFailure('the sync returned no IPv4 report (not ready?)');
  return r;
}

/** Iptables for the proxier, adding up the time spent in iptables programs (save, restore, -C/-N/-I). */
type DataplaneIptables = FamilyDataplane['iptables'];

class TimedIptables implements DataplaneIptables {
  readonly #inner: Iptables;
  ms = 0;

  constructor(inner: Iptables) {
    this.#inner = inner;
  }

  async #timed<T>(run: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await run();
    } finally {
      this.ms += performance.now() - start;
    }
  }

  restore(...args: Parameters<Iptables['restore']>): Promise<void> {
    return this.#timed(() => this.#inner.restore(...args));
  }

  save(...args: Parameters<Iptables['save']>): Promise<string> {
    return this.#timed(() => this.#inner.save(...args));
  }

  ensureChain(...args: Parameters<Iptables['ensureChain']>): Promise<boolean> {
    return this.#timed(() => this.#inner.ensureChain(...args));
  }

  ensureRule(...args: Parameters<Iptables['ensureRule']>): Promise<boolean> {
    return this.#timed(() => this.#inner.ensureRule(...args));
  }

  chainExists(...args: Parameters<Iptables['chainExists']>): Promise<boolean> {
    return this.#timed(() => this.#inner.chainExists(...args));
  }

  hasRule(...args: Parameters<Iptables['hasRule']>): Promise<boolean> {
    return this.#timed(() => this.#inner.hasRule(...args));
  }
}

interface Row {
  readonly step: string;
  readonly seconds: number;
  /** Of `seconds`, the time spent in iptables programs (the rest is kpx: model, compile, verify, plan). */
  readonly kernelSeconds?: number;
  readonly report?: FamilySyncReport;
}

function printHeader(services: number): void {
  console.log(`\n${String(services)} services × ${String(ENDPOINTS)} endpoints`);
  console.log('  step                                     time s  iptables s  verify s  written  deleted  mode              payload MB');
}

function printRow(r: Row): void {
  const rep = r.report;
  const mode = rep === undefined ? '-' : `${rep.kind}${rep.replacedTables.length > 0 ? ` (replace ${rep.replacedTables.join(',')})` : ''}`;
  console.log(
    [
      `  ${r.step.padEnd(39)}`,
      r.seconds.toFixed(3).padStart(7),
      (r.kernelSeconds?.toFixed(3) ?? '-').padStart(10),
      (rep === undefined ? '-' : (rep.verifyMs / 1000).toFixed(3)).padStart(8),
      (rep === undefined ? '-' : String(rep.writtenChains.length)).padStart(7),
      (rep === undefined ? '-' : String(rep.deletedChains.length)).padStart(7),
      mode.padEnd(17),
      (rep === undefined ? '-' : (rep.payloadBytes / 2 ** 20).toFixed(2)).padStart(10),
    ].join('  '),
  );
}

interface SizeResult {
  readonly services: number;
  /** The rows whose checks passed. */
  readonly rows: readonly Row[];
  /** Why the size stopped early, if it did. */
  readonly failure?: string;
  readonly loadBefore: string;
  readonly loadAfter: string;
}

/** Seconds of the checked row whose step starts with `step` ("1 ", "3a ", ...). */
function secondsOf(r: SizeResult, step: string): number | undefined {
  return r.rows.find((row) => row.step.startsWith(step))?.seconds;
}

async function createNamespace(name: string): Promise<void> {
  await execa('ip', ['netns', 'add', name]);
  await execa('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
}

async function deleteNamespace(name: string): Promise<void> {
  await execa('ip', ['netns', 'delete', name], { reject: false });
}

async function benchSize(services: number, naive: boolean): Promise<SizeResult> {
  const loadBefore = load();
  const ns = `kpx-bench-${String(services)}-${String(process.pid)}`;
  const state = syntheticCluster({ services, endpoints: ENDPOINTS });
  const serviceObjects = state.services.map((o) => o.object);
  const slices = state.endpointSlices.map((o) => o.object);
  const node = state.nodes[0]?.object;
  let fresh = 0;
  const nextAddress = (): string => ip(11, ++fresh);

  const rows: Row[] = [];
  let printed = 0;
  /** Rows are printed once the kernel check after them passed: no figure for broken behaviour. */
  const printChecked = (): void => {
    for (const r of rows.slice(printed)) printRow(r);
    printed = rows.length;
  };
  let failure: string | undefined;

  printHeader(services);
  await createNamespace(ns);
  try {
    const runner = execaRunner({ prefix: ['ip', 'netns', 'exec', ns] });
    const ipt = new Iptables('IPv4', runner);
    const v4 = new TimedIptables(ipt);
    const v6 = new TimedIptables(new Iptables('IPv6', runner));
    const newProxier = (): Proxier => {
      const p = new Proxier({
        overrides: { nodeName: 'node-0' },
        configObjects: [],
        dataplane: (family) => ({ iptables: family === 'IPv4' ? v4 : v6 }),
        log: silentLogger,
        clock: systemClock(),
      });
      for (const s of serviceObjects) p.onServiceChange(undefined, s);
      for (const s of slices) p.onEndpointSliceChange(undefined, s);
      p.onNodeChange(node);
      p.setSynced('services');
      p.setSynced('endpointSlices');
      p.setSynced('node');
      return p;
    };
    /** The node holds exactly the Services and endpoints the slices say, as kpx applied them. */
    const expectKernel = async (after: string, on: Iptables = ipt): Promise<void> => {
      const snap = await natSnapshot(on);
      const want = destinationsOf(slices);
      check(snap.svc === services, `${after}: the nat table holds ${String(snap.svc)} KUBE-SVC chains, expected ${String(services)}`);
      check(snap.sep === want.size, `${after}: the nat table holds ${String(snap.sep)} KUBE-SEP chains, expected ${String(want.size)}`);
      const missing = [...want].filter((d) => !snap.destinations.has(d));
      check(missing.length === 0 && snap.destinations.size === want.size, `${after}: DNAT destinations differ from the endpoints (${String(missing.length)} missing, e.g. ${missing[0] ?? '-'}; ${String(snap.destinations.size)} on the node)`);
      for (const [from, to] of NAT_JUMPS) {
        const n = snap.jumps.get(`${from}->${to}`) ?? 0;
        check(n === 1, `${after}: nat ${from} holds ${String(n)} jump(s) to ${to}, expected 1`);
      }
      printChecked();
    };
    /** Moves `count` endpoints of each listed Service to new addresses, telling the proxier. */
    const changeEndpoints = (p: Proxier, indexes: readonly number[], count: number): void => {
      for (const i of indexes) {
        const before = slices[i];
        if (before === undefined) throw new BenchFailure(`no slice ${String(i)}`);
        const after = readdressed(before, count, nextAddress);
        check(p.onEndpointSliceChange(before, after), `the change of slice ${String(i)} was not seen as a change`);
        slices[i] = after;
      }
    };
    /** Times `run`, and how much of that the proxier spent in iptables programs. */
    const measure = async <T>(run: () => Promise<T>): Promise<{ value: T; seconds: number; kernelSeconds: number }> => {
      const before = v4.ms + v6.ms;
      const [value, seconds] = await timed(run);
      return { value, seconds, kernelSeconds: (v4.ms + v6.ms - before) / 1000 };
    };
    /** Times one sync; a failed sync fails the size, naming the step. */
    const timedSync = async (step: string, p: Proxier): Promise<{ value: SyncSummary | undefined; seconds: number; kernelSeconds: number }> => {
      try {
        return await measure(() => p.sync());
      } catch (error) {
        throw new BenchFailure(`step "${step}": the sync failed: ${error instanceof Error ? error.message : String(error)}`);
      }
    };
    const sync = async (step: string, p: Proxier): Promise<FamilySyncReport> => {
      const { value, seconds, kernelSeconds } = await timedSync(step, p);
      const report = ipv4(value);
      rows.push({ step, seconds, kernelSeconds, report });
      return report;
    };

    // 0. The floor: the same ruleset loaded without --noflush into an empty namespace.
    const model = buildProxyModels(state, { overrides: { nodeName: 'node-0' } }).families.find((f) => f.family === 'IPv4');
    if (model === undefined) throw new BenchFailure('the synthetic cluster has no IPv4 model');
    const save = renderSave(compileFamily(model));
    const floorNs = `${ns}-floor`;
    await createNamespace(floorNs);
    try {
      const floorIpt = new Iptables('IPv4', execaRunner({ prefix: ['ip', 'netns', 'exec', floorNs] }));
      const [, floorSeconds] = await timed(() => floorIpt.restore(save, { noflush: false }));
      rows.push({ step: '0 floor: plain restore, empty netns', seconds: floorSeconds });
      await expectKernel('plain restore', floorIpt);
    } finally {
      await deleteNamespace(floorNs);
    }

    // 1. First full sync into an empty node.
    const first = newProxier();
    const r1 = await sync('1 first full sync (empty node)', first);
    check(r1.kind === 'full', `first sync was ${r1.kind}`);
    check(r1.writtenChains.length >= services * (ENDPOINTS + 1), `first sync wrote ${String(r1.writtenChains.length)} chains, expected at least ${String(services * (ENDPOINTS + 1))}`);
    await expectKernel('first full sync');

    // 2. A restarted agent over the same kernel state writes nothing.
    const agent = newProxier();
    const restartStep = '2 restart: full sync over own rules';
    const restart = await timedSync(restartStep, agent);
    rows.push({ step: restartStep, seconds: restart.seconds, kernelSeconds: restart.kernelSeconds, report: ipv4(restart.value) });
    for (const f of restart.value?.families ?? []) {
      check(f.kind === 'full', `restart sync (${f.family}) was ${f.kind}`);
      check(f.writtenChains.length === 0 && f.deletedChains.length === 0 && f.replacedTables.length === 0, `restart sync (${f.family}) wrote ${String(f.writtenChains.length)}, deleted ${String(f.deletedChains.length)} chains and replaced [${f.replacedTables.join(',')}]; expected nothing`);
    }
    await expectKernel('restart');

    // 3. Partial syncs: one Service (one endpoint replaced), then 1% of the Services (all endpoints replaced).
    const one = 1; // a ClusterIP Service (every 10th, from 0, is a NodePort)
    changeEndpoints(agent, [one], 1);
    const r3 = await sync('3a partial: 1 service, 1 endpoint', agent);
    check(r3.kind === 'partial', `one-service sync was ${r3.kind}`);
    check(r3.deletedChains.length === 1 && r3.deletedChains[0]?.startsWith('KUBE-SEP-') === true, `one-service sync deleted [${r3.deletedChains.join(',')}], expected one KUBE-SEP chain`);
    check(r3.writtenChains.length === 2 && r3.writtenChains.every((c) => /^KUBE-(SVC|SEP)-/.test(c)), `one-service sync wrote [${r3.writtenChains.join(',')}], expected its KUBE-SVC chain and one KUBE-SEP chain`);
    await expectKernel('one-service partial sync');

    const percent = Array.from({ length: Math.max(1, Math.floor(services / 100)) }, (_, k) => (k * 100 + 2) % services);
    changeEndpoints(agent, percent, ENDPOINTS);
    const r3b = await sync(`3b partial: 1% (${String(percent.length)} services)`, agent);
    check(r3b.kind === 'partial', `1% sync was ${r3b.kind}`);
    check(r3b.deletedChains.length === percent.length * ENDPOINTS, `1% sync deleted ${String(r3b.deletedChains.length)} chains, expected ${String(percent.length * ENDPOINTS)}`);
    check(!r3b.writtenChains.includes('KUBE-SERVICES'), '1% sync rewrote KUBE-SERVICES although no Service changed');
    check(r3b.writtenChains.length <= percent.length * (ENDPOINTS + 3), `1% sync wrote ${String(r3b.writtenChains.length)} chains, more than the changed Services' chains`);
    await expectKernel('1% partial sync');

    // 4. Every endpoint changed, full sync: the nat table is replaced in one transaction.
    changeEndpoints(agent, slices.map((_, i) => i), ENDPOINTS);
    agent.forceFullSync();
    const r4 = await sync('4 full sync, every endpoint changed', agent);
    // Every KUBE-SVC chain differs; above the planner's threshold the nat table is replaced whole.
    const replaces = services > TABLE_REPLACE_THRESHOLD;
    check(r4.kind === 'full' && r4.replacedTables.includes('nat') === replaces, `the all-changed full sync was ${r4.kind}, replacing [${r4.replacedTables.join(',')}]; expected ${replaces ? 'a nat replacement' : 'no replacement'}`);
    check(r4.deletedChains.length === services * ENDPOINTS, `the all-changed full sync removed ${String(r4.deletedChains.length)} stale chains, expected ${String(services * ENDPOINTS)}`);
    await expectKernel('all-changed full sync');

    // 5. Drift check on a clean node, then an external flush of one chain detected and repaired.
    const drift = await measure(() => agent.checkDrift({ readBack: 'now' }));
    rows.push({ step: '5a drift check with read-back (canary, jumps, read-back)', seconds: drift.seconds, kernelSeconds: drift.kernelSeconds });
    check(!drift.value, 'the drift check reported drift on an untouched node');
    const again = await measure(() => agent.checkDrift({ readBack: 'now' }));
    rows.push({ step: '5c drift check with read-back, again (nothing changed since the last)', seconds: again.seconds, kernelSeconds: again.kernelSeconds });
    check(!again.value, 'the second drift check reported drift on an untouched node');
    // Right after a read-back the next one is not due (READBACK_TIME_SHARE): the check every sync period costs this.
    const cheap = await measure(() => agent.checkDrift());
    rows.push({ step: '5d drift check between read-backs (canary, jumps)', seconds: cheap.seconds, kernelSeconds: cheap.kernelSeconds });
    check(!cheap.value, 'the drift check between read-backs reported drift on an untouched node');
    const victim = [...(agent.applied('IPv4')?.nat.keys() ?? [])].find((c) => c.startsWith('KUBE-SVC-'));
    if (victim === undefined) throw new BenchFailure('no KUBE-SVC chain in what kpx applied');
    const flushArgs = ['-t', 'nat', '-F', victim];
    checkInNamespace(ns, await runInNamespace(ns, 'iptables', flushArgs), 'iptables', flushArgs);
    check(await agent.checkDrift({ readBack: 'now' }), `the drift check missed the flush of ${victim}`);
    const r5 = await sync('5b drift repair: full sync, 1 chain', agent);
    check(r5.kind === 'full' && r5.writtenChains.length === 1 && r5.writtenChains[0] === victim && r5.replacedTables.length === 0, `the repair wrote [${r5.writtenChains.slice(0, 5).join(',')}] (replacing [${r5.replacedTables.join(',')}]), expected only ${victim}`);
    check(!(await agent.checkDrift({ readBack: 'now' })), 'drift remains after the repair');
    await expectKernel('drift repair');

    // 6. Baseline: what a naive full sync does, the whole ruleset again under --noflush.
    if (naive) {
      const compiled = agent.lastCompiled('IPv4');
      if (compiled === undefined) throw new BenchFailure('no compiled IPv4 ruleset');
      const text = renderRestore(compiled);
      const [, naiveSeconds] = await timed(() => ipt.restore(text, { noflush: true }));
      rows.push({ step: '6 naive: whole ruleset, --noflush', seconds: naiveSeconds });
      check(!(await agent.checkDrift({ readBack: 'now' })), 'the naive re-apply left rules that differ from what kpx applied');
      await expectKernel('naive re-apply');
    }


    // 7. An external flush of the whole nat table (built-in chains included): detected, repaired.
    const flushAll = ['-t', 'nat', '-F'];
    checkInNamespace(ns, await runInNamespace(ns, 'iptables', flushAll), 'iptables', flushAll);
    // Caught by the jump check alone: the read-back is not due right after the last one.
    check(await agent.checkDrift(), 'the drift check (between read-backs) missed `iptables -t nat -F`');
    const r7 = await sync('7 repair after `iptables -t nat -F`', agent);
    check(r7.kind === 'full', `the repair after a nat flush was ${r7.kind}`);
    check(!(await agent.checkDrift({ readBack: 'now' })), 'drift remains after repairing the nat flush');
    await expectKernel('repair after `iptables -t nat -F`');
  } catch (error) {
    failure = error instanceof Error ? error.message : String(error);
    if (!(error instanceof BenchFailure) && error instanceof Error && error.stack !== undefined) console.error(error.stack);
    console.log(`  FAILED: ${failure}`);
  } finally {
    await deleteNamespace(ns);
  }
  const result: SizeResult = { services, rows: rows.slice(0, printed), ...(failure === undefined ? {} : { failure }), loadBefore, loadAfter: load() };
  console.log(`  ${ratioLine(result)}`);
  console.log(`  load average (1/5/15 min) before ${loadBefore}, after ${result.loadAfter}`);
  return result;
}

/** The ratios, by step prefix; a ratio is left out when either step has no checked figure. */
const RATIOS: readonly (readonly [label: string, numerator: string, denominator: string])[] = [
  ['first/floor', '1 ', '0 '],
  ['partial(1 svc)/full', '3a ', '1 '],
  ['partial(1%)/full', '3b ', '1 '],
  ['restart/full', '2 ', '1 '],
  ['replace/first', '4 ', '1 '],
  ['drift-check/full', '5a ', '1 '],
  ['drift-check-again/full', '5c ', '1 '],
  ['drift-check-between/partial(1 svc)', '5d ', '3a '],
  ['nat-flush-repair/full', '7 ', '1 '],
  ['replace/naive', '4 ', '6 '],
  ['restart/naive', '2 ', '6 '],
];

function ratioLine(r: SizeResult): string {
  const parts: string[] = [];
  for (const [label, num, den] of RATIOS) {
    const a = secondsOf(r, num);
    const b = secondsOf(r, den);
    if (a !== undefined && b !== undefined) parts.push(`${label} ${(a / b).toFixed(3)}`);
  }
  return parts.length === 0 ? 'no ratios (no checked figures)' : parts.join('  ');
}

function skipReason(): string | undefined {
  const uid = process.getuid?.();
  if (uid !== 0) return `needs root (uid ${uid === undefined ? 'unknown' : String(uid)}): it creates network namespaces and loads iptables rules`;
  const missing = ['ip', 'iptables', 'iptables-restore', 'iptables-save', 'ip6tables-restore', 'ip6tables-save'].filter((p) => !hasProgram(p));
  if (missing.length > 0) return `needs ${missing.join(', ')} on PATH`;
  return undefined;
}

async function main(): Promise<void> {
  const skip = skipReason();
  if (skip !== undefined) {
    console.log(`agent-sync bench skipped: ${skip}`);
    return;
  }
  const argv = process.argv.slice(2).join(',');
  const sizes = argv !== '' ? parseSizes(argv, 'arguments') : process.env.KPX_BENCH_AGENT_SIZES !== undefined ? parseSizes(process.env.KPX_BENCH_AGENT_SIZES, 'KPX_BENCH_AGENT_SIZES') : DEFAULT_SIZES;
  const naiveMax = Number(process.env.KPX_BENCH_NAIVE_MAX ?? '2000');
  const version = await execa('iptables', ['--version']);
  console.log(`agent sync against real netfilter (${version.stdout.trim()}), ${String(ENDPOINTS)} endpoints per Service; times are wall clock of Proxier.sync() (model, compile, verify, plan, iptables programs; both families), "iptables s" the part spent in iptables-save/-restore/-C/-N/-I`);
  console.log('ratios: floor = step 0 (plain restore into an empty netns, not a sync); full = step 1 (first full sync); replace = step 4; naive = step 6 (plain --noflush re-apply, sizes <= KPX_BENCH_NAIVE_MAX)');
  const results: SizeResult[] = [];
  for (const services of sizes) results.push(await benchSize(services, services <= naiveMax));
  console.log('\nsummary (seconds; "-" = not run or not checked)');
  const columns: readonly (readonly [title: string, step: string])[] = [
    ['floor', '0 '],
    ['first', '1 '],
    ['restart', '2 '],
    ['partial-1', '3a '],
    ['partial-1%', '3b '],
    ['replace', '4 '],
    ['drift', '5a '],
    ['drift-again', '5c '],
    ['drift-cheap', '5d '],
    ['naive', '6 '],
    ['nat-F', '7 '],
  ];
  console.log(`  services  ${columns.map(([t]) => t.padStart(11)).join('')}  load before → after`);
  for (const r of results) {
    const cells = columns.map(([, step]) => (secondsOf(r, step)?.toFixed(3) ?? '-').padStart(11)).join('');
    console.log(`  ${String(r.services).padStart(8)}  ${cells}  ${r.loadBefore} → ${r.loadAfter}${r.failure === undefined ? '' : `  FAILED: ${r.failure}`}`);
  }
  if (results.some((r) => r.failure !== undefined)) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(`agent-sync bench FAILED: ${error instanceof Error ? (error instanceof BenchFailure ? error.message : (error.stack ?? error.message)) : String(error)}`);
  process.exitCode = 1;
});
