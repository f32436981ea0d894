/**
 * The real kernel accepts what kpx compiles (DESIGN.md, "Real components in tests"):
 * 1. every restore payload (goldens, the embedded example, random clusters; IPv4 and IPv6) passes
 *    `iptables-restore --noflush --test` and really loads with `--noflush` into empty tables;
 * 2. the `-o save` form loads with plain `iptables-restore` into an empty namespace, and what
 *    `iptables-save` prints back, parsed and normalised, equals the standalone ruleset;
 * 3. `kpx preview -o save` piped into iptables-restore succeeds.
 * Runs as root; see kernelTestMode() for the KPX_SKIP_KERNEL escape hatch.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileFamily, type CompiledFamily } from '../../controller/src/compile/compile.ts';
import { renderRestore, renderRuleset, renderSave, standaloneRuleset } from '../../controller/src/compile/render.ts';
import { isBuiltinChain, type Ruleset } from '../../controller/src/compile/ruleset.ts';
import { EMBEDDED_EXAMPLE } from '../../controller/src/cli/inputs.ts';
import { buildProxyModels, classifyObjects, type BuildOptions } from '../../controller/src/model/cluster.ts';
import { decodeDocuments } from '../../controller/src/model/documents.ts';
import { normalizeRuleset } from '../../controller/src/sim/normalize.ts';
import { parseRuleset } from '../../controller/src/sim/parse.ts';
import { clusterStateOf, validClusterArbitrary } from '../../controller/src/testing/arbitrary.ts';
import { hasProgram, kernelTestMode, NetworkNamespace } from './netns.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TESTDATA = fileURLToPath(new URL('../../controller/src/compile/testdata/', import.meta.url));

/** Fixed, so a failure names a reproducible case: fc.sample(validClusterArbitrary(), {seed, numRuns})[i]. */
const RANDOM_SEED = 0x6b7078;
const RANDOM_CLUSTERS = 300;
const PARALLEL = 4;

const NFACCT_OBJECTS = ['ct_state_invalid_dropped_pkts', 'localhost_nps_accepted_pkts'];

interface Case {
  readonly name: string;
  readonly compiled: CompiledFamily;
  /** Uses `-m nfacct`: needs the accounting objects to exist. */
  readonly nfacct: boolean;
}

function compileObjects(text: string, source: string, options: BuildOptions): CompiledFamily[] {
  const { state, problems } = classifyObjects(decodeDocuments(text, source));
  const models = buildProxyModels(state, options);
  const invalid = [...problems, ...models.problems].filter((p) => p.kind === 'invalid');
  if (invalid.length > 0) throw new Error(`${source} has invalid objects: ${JSON.stringify(invalid)}`);
  return models.families.map((m) => compileFamily(m));
}

// The options of controller/src/compile/golden.test.ts (upstream's fake proxier, reference §7.1).
const UPSTREAM_FAKE: BuildOptions = { masqueradeMark: '0x4000', overrides: { nodeName: 'test-node', nfacct: true, masqueradeRandomFully: false } };
const UPSTREAM_FAKE_NO_NFACCT: BuildOptions = { ...UPSTREAM_FAKE, overrides: { ...UPSTREAM_FAKE.overrides, nfacct: false } };

function fixedCases(): Case[] {
  const cases: Case[] = [];
  const add = (name: string, compiled: readonly CompiledFamily[], nfacct: boolean): void => {
    for (const c of compiled) cases.push({ name: `${name} (${c.family})`, compiled: c, nfacct });
  };
  for (const golden of ['overall-iptables-rules.yaml', 'ipv6-localhost-nodeports.yaml']) {
    const text = readFileSync(join(TESTDATA, golden), 'utf8');
    add(`golden ${golden} with nfacct`, compileObjects(text, golden, UPSTREAM_FAKE), true);
    add(`golden ${golden} without nfacct`, compileObjects(text, golden, UPSTREAM_FAKE_NO_NFACCT), false);
  }
  add('embedded example', compileObjects(readFileSync(EMBEDDED_EXAMPLE, 'utf8'), 'examples/cluster.yaml', {}), false);
  return cases;
}

function randomCases(): Case[] {
  const clusters = fc.sample(validClusterArbitrary(), { seed: RANDOM_SEED, numRuns: RANDOM_CLUSTERS });
  return clusters.flatMap((cluster, i) =>
    buildProxyModels(clusterStateOf(cluster.objects)).families.map((m) => ({
      name: `random cluster #${String(i)} (${m.family})`,
      compiled: compileFamily(m),
      nfacct: false,
    })),
  );
}

const restoreProgram = (c: Case): string => (c.compiled.family === 'IPv4' ? 'iptables-restore' : 'ip6tables-restore');
const saveProgram = (c: Case): string => (c.compiled.family === 'IPv4' ? 'iptables-save' : 'ip6tables-save');

/** The failing payload line an iptables-restore error names ("line 12 failed", "at line: 12"). */
function describeFailure(c: Case, payload: string, stderr: string): string {
  const line = /line:? (\d+)/.exec(stderr)?.[1];
  const text = line === undefined ? undefined : payload.split('\n')[Number(line) - 1];
  return `${c.name}: ${stderr.trim()}${text === undefined ? '' : `\n    line ${line ?? ''}: ${text}`}`;
}

/** Runs fn over items with one worker per namespace; each namespace handles one item at a time. */
async function overWorkers<T, R>(items: readonly T[], workers: readonly NetworkNamespace[], fn: (ns: NetworkNamespace, item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  let next = 0;
  const work = async (ns: NetworkNamespace): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      const item = items[i];
      if (item !== undefined) out[i] = await fn(ns, item);
    }
  };
  await Promise.all(workers.map(work));
  return out;
}

/** Plain iptables-restore of this empties filter and nat (every rule and user chain goes). */
const EMPTY_TABLES = '*filter\nCOMMIT\n*nat\nCOMMIT\n';

/**
 * With the nf_tables backend `iptables-restore --test` only parses: it never reaches the kernel,
 * so a jump to a missing chain or a missing nfacct object passes it. The payload is therefore
 * also really loaded (`--noflush`, as a full sync does) into emptied tables.
 */
async function restoreFailure(ns: NetworkNamespace, c: Case): Promise<string | undefined> {
  const payload = renderRestore(c.compiled);
  const tested = await ns.run(restoreProgram(c), ['--noflush', '--test'], { input: payload });
  if (tested.exitCode !== 0) return describeFailure(c, payload, `--test: ${tested.stderr}`);
  await ns.check(restoreProgram(c), [], { input: EMPTY_TABLES });
  const loaded = await ns.run(restoreProgram(c), ['--noflush'], { input: payload });
  return loaded.exitCode === 0 ? undefined : describeFailure(c, payload, `--noflush: ${loaded.stderr}`);
}

/** kpx's part of a dump: filter and nat, built-in chains and KUBE-* chains. */
function kpxView(ruleset: Ruleset): Ruleset {
  return {
    family: ruleset.family,
    tables: ruleset.tables
      .filter((t) => t.name === 'filter' || t.name === 'nat')
      .map((t) => ({ name: t.name, chains: t.chains.filter((c) => isBuiltinChain(t.name, c.name) || c.name.startsWith('KUBE-')) })),
  };
}

/** Lines only in one of two rulesets (as restore text), or "" when they are deeply equal. */
function rulesetDifference(expected: Ruleset, actual: Ruleset): string {
  if (isDeepStrictEqual(expected, actual)) return '';
  const e = renderRuleset(expected).split('\n');
  const a = renderRuleset(actual).split('\n');
  const lines = [
    ...e.filter((l) => !a.includes(l)).map((l) => `    - ${l}`),
    ...a.filter((l) => !e.includes(l)).map((l) => `    + ${l}`),
  ];
  return lines.length > 0 ? lines.join('\n') : '    (same lines in a different order, or a difference the text does not show)';
}

const mode = kernelTestMode();
if (mode.kind === 'skip') process.stderr.write(`kpx: ${mode.reason}\n`);
const nfacctTool = hasProgram('nfacct');
const NFACCT_SKIP = 'the nfacct tool is not installed (apt-get install nfacct), so the -m nfacct objects cannot be created';

describe.skipIf(mode.kind === 'skip')('kernel: iptables-restore accepts what kpx compiles', () => {
  const namespaces: NetworkNamespace[] = [];
  let plain: NetworkNamespace;
  let withNfacct: NetworkNamespace | undefined;
  let cases: Case[] = [];

  const fresh = async (purpose: string): Promise<NetworkNamespace> => {
    const ns = await NetworkNamespace.create(purpose);
    namespaces.push(ns);
    return ns;
  };

  beforeAll(async () => {
    if (mode.kind === 'fail') throw new Error(mode.reason);
    cases = [...fixedCases(), ...randomCases()];
    plain = await fresh('restore');
    if (nfacctTool) {
      withNfacct = await fresh('nfacct');
      for (const name of NFACCT_OBJECTS) await withNfacct.check('nfacct', ['add', name]);
    }
  });

  afterAll(async () => {
    await Promise.all(namespaces.map((ns) => ns.delete()));
  });

  it('covers both families and every fixed payload', () => {
    const families = new Set(cases.map((c) => c.compiled.family));
    expect([...families].sort()).toEqual(['IPv4', 'IPv6']);
    expect(cases.filter((c) => c.name.startsWith('random')).length).toBeGreaterThanOrEqual(RANDOM_CLUSTERS);
  });

  it('accepts every restore payload without nfacct (--test, then a real --noflush load)', async () => {
    const workers = await Promise.all(Array.from({ length: PARALLEL }, (_, i) => fresh(`restore${String(i)}`)));
    const failures = await overWorkers(
      cases.filter((c) => !c.nfacct),
      workers,
      restoreFailure,
    );
    expect(failures.filter((f) => f !== undefined)).toEqual([]);
  });

  it.skipIf(!nfacctTool)(`accepts the nfacct golden payloads once the accounting objects exist${nfacctTool ? '' : ` (skipped: ${NFACCT_SKIP})`}`, async () => {
    const ns = withNfacct;
    if (ns === undefined) throw new Error(NFACCT_SKIP);
    const nfacctCases = cases.filter((c) => c.nfacct);
    expect(nfacctCases.length).toBeGreaterThan(0);
    for (const c of nfacctCases) {
      expect(renderRestore(c.compiled)).toContain('-m nfacct');
      expect(await restoreFailure(ns, c)).toBeUndefined();
      // The same load fails where the objects do not exist: the check above really is the kernel's.
      expect(await restoreFailure(plain, c)).toMatch(/--noflush: .*failed/s);
    }
  });

  it('loads every save form into an empty namespace and reads it back unchanged', async () => {
    // Plain iptables-restore replaces filter and nat wholesale, so one namespace per kind serves
    // every case in turn: each load starts from an empty table.
    const failures: string[] = [];
    for (const c of cases) {
      const ns = c.nfacct ? withNfacct : plain;
      if (ns === undefined) continue; // the nfacct golden without the nfacct tool (see above)
      const payload = renderSave(c.compiled);
      const loaded = await ns.run(restoreProgram(c), [], { input: payload });
      if (loaded.exitCode !== 0) {
        failures.push(describeFailure(c, payload, loaded.stderr));
        continue;
      }
      const saved = await ns.check(saveProgram(c), []);
      let actual: Ruleset;
      try {
        actual = normalizeRuleset(kpxView(parseRuleset(saved.stdout, c.compiled.family)));
      } catch (error) {
        failures.push(`${c.name}: iptables-save output does not parse: ${(error as Error).message}`);
        continue;
      }
      const expected = normalizeRuleset(standaloneRuleset(c.compiled));
      const difference = rulesetDifference(expected, actual);
      if (difference !== '') failures.push(`${c.name}: read-back differs:\n${difference}`);
    }
    expect(failures.slice(0, 5).join('\n\n'), `${String(failures.length)} of ${String(cases.length)} cases failed`).toBe('');
  });

  it.each([
    { family: 'IPv4', args: [], restore: 'iptables-restore', save: 'iptables-save' },
    { family: 'IPv6', args: ['--ip-family', 'ipv6'], restore: 'ip6tables-restore', save: 'ip6tables-save' },
  ])('pipes `kpx preview -o save` ($family) into $restore', async ({ args, restore, save }) => {
    const ns = await fresh('cli');
    // npm run puts node_modules/.bin (Node 24 from the `node` package) first on PATH.
    const env = { PATH: [join(REPO_ROOT, 'node_modules', '.bin'), dirname(process.execPath), process.env.PATH ?? ''].join(':') };
    await execa('npm', ['run', '--silent', 'kpx', '--', 'preview', '-o', 'save', ...args], { cwd: REPO_ROOT, env }).pipe(
      'ip',
      ['netns', 'exec', ns.name, restore],
    );
    const saved = await ns.check(save, []);
    expect(saved.stdout).toContain(':KUBE-SERVICES - [0:0]');
    expect(saved.stdout).toMatch(/-A PREROUTING .*-j KUBE-SERVICES/);
  });
});
