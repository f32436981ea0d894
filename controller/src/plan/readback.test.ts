import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { CompiledFamily } from '../compile/compile.ts';
import { ruleLine } from '../compile/render.ts';
import { detectDrift, PLAN_TABLES, type AppliedState, type DriftReport, type KernelDump, type PlanTable } from './plan.ts';
import { ReadbackChecker } from './readback.ts';
import { compileExample, dumpOf, EXAMPLE, withoutFirstFrontendEndpoint } from '../testing/example.ts';

/** What a sync of `compiled` leaves applied: each chain's `-A` lines as kpx renders them. */
function appliedOf(compiled: CompiledFamily): AppliedState {
  const chains = (table: PlanTable): Map<string, string> => {
    const t = compiled.ruleset.tables.find((x) => x.name === table);
    return new Map((t?.chains ?? []).map((c) => [c.name, c.rules.map((r) => ruleLine(c.name, r)).join('\n')]));
  };
  return { filter: chains('filter'), nat: chains('nat') };
}

/** The nat dump's lines, filtered and with lines added before COMMIT. */
function editNat(dump: KernelDump, keep: (line: string) => boolean, added: readonly string[] = []): KernelDump {
  const lines = dump.nat.split('\n').filter(keep);
  lines.splice(lines.indexOf('COMMIT'), 0, ...added);
  return { ...dump, nat: lines.join('\n') };
}

/** The checker's answer in detectDrift's shape. */
function readback(checker: ReadbackChecker, applied: AppliedState, dump: KernelDump): DriftReport[] {
  const out: DriftReport[] = [];
  for (const table of PLAN_TABLES) {
    const { differing, stale } = checker.compare(table, applied[table], dump[table]);
    const chains = [...differing, ...stale];
    if (chains.length > 0) out.push({ table, chains });
  }
  return out;
}

const COMPILED = compileExample(EXAMPLE);
const APPLIED = appliedOf(COMPILED);
const DUMP = dumpOf(COMPILED);
const NAT_CHAINS = [...APPLIED.nat.keys()];
const firstChain = (prefix: string): string => NAT_CHAINS.find((c) => c.startsWith(prefix)) ?? '';
const lastChain = (prefix: string): string => NAT_CHAINS.findLast((c) => c.startsWith(prefix)) ?? '';
const SVC = firstChain('KUBE-SVC-');
const SEP = lastChain('KUBE-SEP-');
/** Drops the first `-A` line of each chain named. */
const withoutFirstRuleOf = (dump: KernelDump, ...chains: string[]): KernelDump => {
  const seen = new Set<string>();
  return editNat(dump, (l) => {
    const chain = chains.find((c) => l.startsWith(`-A ${c} `));
    if (chain === undefined || seen.has(chain)) return true;
    seen.add(chain);
    return false;
  });
};
const KERNEL_PRINT = readFileSync(new URL('../sim/testdata/example-readback.nft.save', import.meta.url), 'utf8');
const kernelTable = (name: PlanTable): string => {
  const start = KERNEL_PRINT.indexOf(`*${name}\n`);
  return KERNEL_PRINT.slice(start, KERNEL_PRINT.indexOf('COMMIT\n', start) + 'COMMIT\n'.length);
};

interface Case {
  readonly name: string;
  readonly applied: AppliedState;
  readonly dump: KernelDump;
  /** Whether detectDrift reports anything (so the case tests what it claims). */
  readonly drifts: boolean;
}

const CASES: readonly Case[] = [
  { name: 'the untouched dump', applied: APPLIED, dump: DUMP, drifts: false },
  { name: 'a rule removed from one chain', applied: APPLIED, dump: withoutFirstRuleOf(DUMP, 'KUBE-NODEPORTS'), drifts: true },
  { name: 'rules removed from several chains (reported in canonical chain order)', applied: APPLIED, dump: withoutFirstRuleOf(DUMP, SVC, SEP, 'KUBE-SERVICES'), drifts: true },
  { name: 'a kpx chain flushed', applied: APPLIED, dump: editNat(DUMP, (l) => !l.startsWith(`-A ${SVC} `)), drifts: true },
  { name: 'a kpx chain deleted', applied: APPLIED, dump: editNat(DUMP, (l) => !l.startsWith(`-A ${SEP} `) && !l.startsWith(`:${SEP} `)), drifts: true },
  {
    name: 'stale owned chains added',
    applied: APPLIED,
    dump: editNat(DUMP, () => true, [':KUBE-SVC-ZZZZZZZZZZZZZZZZ - [0:0]', ':KUBE-SEP-AAAAAAAAAAAAAAAA - [0:0]', '-A KUBE-SEP-AAAAAAAAAAAAAAAA -j DNAT --to-destination 10.0.0.1:80']),
    drifts: true,
  },
  {
    name: 'foreign chains and rules the parser does not understand',
    applied: APPLIED,
    dump: {
      filter: DUMP.filter.replace('COMMIT', ':FOREIGN - [0:0]\n-A INPUT -m weirdmatch --foo bar -j FOREIGN\n-A FOREIGN -m weirdmatch --foo bar -j ACCEPT\nCOMMIT'),
      nat: editNat(DUMP, () => true, [':FOREIGN - [0:0]', '-A PREROUTING -m weirdmatch --foo bar -j FOREIGN', '-A FOREIGN -m weirdmatch --foo bar -j ACCEPT']).nat,
    },
    drifts: false,
  },
  { name: "probabilities in iptables-save's 11-decimal form", applied: APPLIED, dump: { ...DUMP, nat: DUMP.nat.replaceAll('--probability 0.5000000000 ', '--probability 0.50000000000 ') }, drifts: false },
  { name: 'another probability', applied: APPLIED, dump: { ...DUMP, nat: DUMP.nat.replace('--probability 0.5000000000 ', '--probability 0.25000000000 ') }, drifts: true },
  { name: 'what nf_tables iptables-save printed for the example', applied: APPLIED, dump: { filter: kernelTable('filter'), nat: kernelTable('nat') }, drifts: false },
  { name: 'new rules applied over the old dump', applied: appliedOf(compileExample(withoutFirstFrontendEndpoint())), dump: DUMP, drifts: true },
];

describe('ReadbackChecker', () => {
  it.each(CASES)('agrees with detectDrift: $name', ({ applied, dump, drifts }) => {
    const expected = detectDrift('IPv4', applied, dump);
    expect(expected.length > 0).toBe(drifts);
    expect(readback(new ReadbackChecker('IPv4'), applied, dump)).toEqual(expected);
    // Also with chains remembered from an earlier check of the untouched node.
    const warm = new ReadbackChecker('IPv4');
    readback(warm, APPLIED, DUMP);
    expect(readback(warm, applied, dump)).toEqual(expected);
    expect(readback(warm, applied, dump)).toEqual(expected);
  });

  it('parses nothing on a second check of an unchanged dump', () => {
    const checker = new ReadbackChecker('IPv4');
    expect(checker.compare('nat', APPLIED.nat, DUMP.nat)).toEqual({ differing: [], stale: [] });
    expect(checker.parsedChains).toBe(APPLIED.nat.size);
    expect(checker.compare('filter', APPLIED.filter, DUMP.filter)).toEqual({ differing: [], stale: [] });
    expect(checker.compare('nat', APPLIED.nat, DUMP.nat)).toEqual({ differing: [], stale: [] });
    expect(checker.parsedChains).toBe(0);
    expect(checker.compare('filter', APPLIED.filter, DUMP.filter)).toEqual({ differing: [], stale: [] });
    expect(checker.parsedChains).toBe(0);
  });

  it('parses only the chain whose dump text changed, and finds it equal again once restored', () => {
    const checker = new ReadbackChecker('IPv4');
    checker.compare('nat', APPLIED.nat, DUMP.nat);
    const edited = withoutFirstRuleOf(DUMP, SVC).nat;
    expect(checker.compare('nat', APPLIED.nat, edited)).toEqual({ differing: [SVC], stale: [] });
    expect(checker.parsedChains).toBe(1);
    // A differing chain is not remembered: it is parsed again until it is found equal.
    expect(checker.compare('nat', APPLIED.nat, edited)).toEqual({ differing: [SVC], stale: [] });
    expect(checker.parsedChains).toBe(1);
    expect(checker.compare('nat', APPLIED.nat, DUMP.nat)).toEqual({ differing: [], stale: [] });
    expect(checker.parsedChains).toBe(1);
    expect(checker.compare('nat', APPLIED.nat, DUMP.nat)).toEqual({ differing: [], stale: [] });
    expect(checker.parsedChains).toBe(0);
  });

  it('remembers a chain printed in another spelling once it is found equal', () => {
    const checker = new ReadbackChecker('IPv4');
    checker.compare('nat', APPLIED.nat, DUMP.nat);
    const printed = DUMP.nat.replace('--probability 0.5000000000 ', '--probability 0.50000000000 ');
    expect(checker.compare('nat', APPLIED.nat, printed)).toEqual({ differing: [], stale: [] });
    expect(checker.parsedChains).toBe(1);
    expect(checker.compare('nat', APPLIED.nat, printed)).toEqual({ differing: [], stale: [] });
    expect(checker.parsedChains).toBe(0);
  });

  it('finds stale chains without parsing their rules, and a missing chain without parsing', () => {
    const checker = new ReadbackChecker('IPv4');
    checker.compare('nat', APPLIED.nat, DUMP.nat);
    // A stale chain's rules are never parsed, even ones the parser could not read.
    const stale = editNat(DUMP, () => true, [':KUBE-SEP-AAAAAAAAAAAAAAAA - [0:0]', '-A KUBE-SEP-AAAAAAAAAAAAAAAA -m weirdmatch -j ACCEPT']).nat;
    expect(checker.compare('nat', APPLIED.nat, stale)).toEqual({ differing: [], stale: ['KUBE-SEP-AAAAAAAAAAAAAAAA'] });
    expect(checker.parsedChains).toBe(0);
    const deleted = editNat(DUMP, (l) => !l.startsWith(`-A ${SEP} `) && !l.startsWith(`:${SEP} `)).nat;
    expect(checker.compare('nat', APPLIED.nat, deleted)).toEqual({ differing: [SEP], stale: [] });
    expect(checker.parsedChains).toBe(0);
  });

  it('finds a chain differing when kpx applied new rules the dump does not hold yet', () => {
    const checker = new ReadbackChecker('IPv4');
    checker.compare('nat', APPLIED.nat, DUMP.nat);
    const text = APPLIED.nat.get('KUBE-NODEPORTS') ?? '';
    const nat = new Map(APPLIED.nat).set('KUBE-NODEPORTS', text.split('\n').slice(1).join('\n'));
    const applied = { ...APPLIED, nat };
    expect(checker.compare('nat', nat, DUMP.nat)).toEqual({ differing: ['KUBE-NODEPORTS'], stale: [] });
    expect(checker.parsedChains).toBe(1);
    expect(detectDrift('IPv4', applied, DUMP)).toEqual([{ table: 'nat', chains: ['KUBE-NODEPORTS'] }]);
    // Back to what the dump holds: equal again.
    expect(checker.compare('nat', APPLIED.nat, DUMP.nat)).toEqual({ differing: [], stale: [] });
    expect(checker.parsedChains).toBe(1);
  });

  it('forgets chains no longer applied', () => {
    const checker = new ReadbackChecker('IPv4');
    checker.compare('nat', APPLIED.nat, DUMP.nat);
    const fewer = new Map(APPLIED.nat);
    fewer.delete(SEP);
    expect(checker.compare('nat', fewer, DUMP.nat)).toEqual({ differing: [], stale: [SEP] });
    expect(checker.parsedChains).toBe(0);
    // Applied again, the chain is checked afresh rather than taken from memory.
    expect(checker.compare('nat', APPLIED.nat, DUMP.nat)).toEqual({ differing: [], stale: [] });
    expect(checker.parsedChains).toBe(1);
  });
});
