import { describe, expect, it } from 'vitest';
import type { CompiledFamily } from '../compile/compile.ts';
import { AppliedRules, detectDrift, planFull, planPartial, type AppliedState, type KernelDump, type SyncPlan } from './plan.ts';
import { compileExample, dumpOf, EXAMPLE, withoutFirstFrontendEndpoint } from '../testing/example.ts';

/** What the node holds after `plans` were applied in order. */
function appliedAfter(...plans: SyncPlan[]): AppliedState {
  const rules = new AppliedRules();
  for (const p of plans) rules.apply(p);
  return rules.state;
}

const EMPTY: KernelDump = { filter: '*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n', nat: '*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n' };

describe('planFull', () => {
  it('writes every chain into an empty node', () => {
    const compiled = compileExample(EXAMPLE);
    const plan = planFull({ compiled, kernel: EMPTY });
    const chains = compiled.ruleset.tables.flatMap((t) => t.chains.map((c) => c.name));
    expect(plan.tables.flatMap((t) => t.written).sort()).toEqual([...chains].sort());
    expect(plan.noflushPayload).toContain(':KUBE-SERVICES - [0:0]');
    expect(plan.replacePayloads.size).toBe(0);
  });

  it('writes nothing when the node already holds exactly the desired chains', () => {
    const compiled = compileExample(EXAMPLE);
    const plan = planFull({ compiled, kernel: dumpOf(compiled) });
    expect(plan.noflushPayload).toBe('');
    expect(plan.tables.flatMap((t) => [...t.written, ...t.deleted])).toEqual([]);
  });

  it('rewrites only the differing chains and deletes the stale one', () => {
    const before = compileExample(EXAMPLE);
    const after = compileExample(withoutFirstFrontendEndpoint());
    const plan = planFull({ compiled: after, kernel: dumpOf(before) });
    const nat = plan.tables.find((t) => t.table === 'nat');
    expect(nat?.deleted).toHaveLength(1);
    expect(nat?.deleted[0]).toMatch(/^KUBE-SEP-/);
    expect(nat?.written.length).toBeGreaterThan(0);
    expect(nat?.written.every((c) => /^KUBE-(SVC|EXT|SVL)-/.test(c))).toBe(true);
    expect(plan.noflushPayload).toContain(`-X ${nat?.deleted[0] ?? ''}`);
  });

  it('replaces the whole table, keeping foreign chains and rules, when many existing chains differ', () => {
    const compiled = compileExample(EXAMPLE);
    const flushed = dumpOf(compiled).nat.split('\n').filter((l) => !l.startsWith('-A KUBE-')).join('\n');
    const foreign = flushed.replace('COMMIT', ':FOREIGN - [0:0]\n-A PREROUTING -j FOREIGN\n-A FOREIGN -p tcp -j RETURN\nCOMMIT');
    const plan = planFull({ compiled, kernel: { filter: dumpOf(compiled).filter, nat: foreign }, replaceThreshold: 3 });
    const payload = plan.replacePayloads.get('nat') ?? '';
    expect(payload).toContain(':FOREIGN - [0:0]');
    expect(payload).toContain('-A FOREIGN -p tcp -j RETURN');
    expect(payload).toContain('-A PREROUTING -j FOREIGN');
    expect(payload).toContain('-A KUBE-SERVICES ');
    expect(plan.noflushPayload).toBe('');
  });
});

describe('planPartial', () => {
  it('writes nothing when nothing changed', () => {
    const compiled = compileExample(EXAMPLE);
    const applied = appliedAfter(planFull({ compiled, kernel: EMPTY }));
    const plan = planPartial({ compiled: compileExample(EXAMPLE), previous: applied, previousCompiled: compiled, changedServices: new Set(['shop/frontend']) });
    expect(plan.noflushPayload).toBe('');
  });

  it('writes the changed service chains, deletes the gone endpoint, and leaves KUBE-SERVICES alone', () => {
    const before = compileExample(EXAMPLE);
    const applied = appliedAfter(planFull({ compiled: before, kernel: EMPTY }));
    const after = compileExample(withoutFirstFrontendEndpoint());
    const plan = planPartial({ compiled: after, previous: applied, previousCompiled: before, changedServices: new Set(['shop/frontend']) });
    const nat = plan.tables.find((t) => t.table === 'nat');
    expect(nat?.written).not.toContain('KUBE-SERVICES');
    expect(nat?.written.length).toBeGreaterThan(0);
    expect(nat?.deleted).toHaveLength(1);
    expect(plan.noflushPayload).not.toMatch(/^-A KUBE-SERVICES/m);
    expect(plan.tables.find((t) => t.table === 'filter')?.written).toEqual([]);
    // Applied on top of the previous state, it gives what a full plan of the new compile gives.
    expect(appliedAfter(planFull({ compiled: before, kernel: EMPTY }), plan)).toEqual(appliedAfter(planFull({ compiled: after, kernel: EMPTY })));
  });

  it('removes every chain of a deleted Service and its KUBE-SERVICES rules', () => {
    const before = compileExample(EXAMPLE);
    const applied = appliedAfter(planFull({ compiled: before, kernel: EMPTY }));
    const after = compileExample(EXAMPLE.filter((o) => (o.object.metadata as { name?: string } | undefined)?.name !== 'frontend'));
    const plan = planPartial({ compiled: after, previous: applied, previousCompiled: before, changedServices: new Set(['shop/frontend']) });
    const frontendChains = before.servicePorts.filter((sp) => sp.servicePort.serviceName === 'frontend').flatMap((sp) => sp.natChains);
    expect(frontendChains.length).toBeGreaterThan(2);
    expect(plan.tables.find((t) => t.table === 'nat')?.deleted.toSorted()).toEqual(frontendChains.toSorted());
    expect(plan.tables.find((t) => t.table === 'nat')?.written).toContain('KUBE-SERVICES');
    expect(appliedAfter(planFull({ compiled: before, kernel: EMPTY }), plan)).toEqual(appliedAfter(planFull({ compiled: after, kernel: EMPTY })));
  });

  it('does not look at chains of services it was not told changed (kube-proxy partial-sync semantics)', () => {
    const before = compileExample(EXAMPLE);
    const applied = appliedAfter(planFull({ compiled: before, kernel: EMPTY }));
    const plan = planPartial({ compiled: compileExample(withoutFirstFrontendEndpoint()), previous: applied, previousCompiled: before, changedServices: new Set(['shop/payments']) });
    expect(plan.tables.flatMap((t) => t.written)).toEqual([]);
    expect(plan.tables.flatMap((t) => t.deleted)).toEqual([]);
  });
});

describe('AppliedRules', () => {
  it('hashes the chains, not the order they were applied in, and follows partial plans', () => {
    const before = compileExample(EXAMPLE);
    const after = compileExample(withoutFirstFrontendEndpoint());
    const full = (c: CompiledFamily): AppliedRules => {
      const r = new AppliedRules();
      r.apply(planFull({ compiled: c, kernel: EMPTY }));
      return r;
    };
    const stepped = full(before);
    const hashBefore = stepped.hash;
    expect(hashBefore).toMatch(/^[0-9a-f]{16}$/);
    stepped.apply(planPartial({ compiled: after, previous: stepped.state, previousCompiled: before, changedServices: new Set(['shop/frontend']) }));
    expect(stepped.hash).not.toBe(hashBefore);
    expect(stepped.hash).toBe(full(after).hash);
    expect(full(before).hash).toBe(hashBefore);
  });
});

describe('detectDrift', () => {
  it('sees nothing when the node holds what was applied, and names an edited chain', () => {
    const compiled = compileExample(EXAMPLE);
    const applied = appliedAfter(planFull({ compiled, kernel: EMPTY }));
    const dump = dumpOf(compiled);
    expect(detectDrift('IPv4', applied, dump)).toEqual([]);
    const edited = dump.nat.split('\n').filter((l) => !l.startsWith('-A KUBE-NODEPORTS')).join('\n');
    expect(detectDrift('IPv4', applied, { ...dump, nat: edited })).toEqual([{ table: 'nat', chains: ['KUBE-NODEPORTS'] }]);
  });
});
