import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildProxyModels, classifyObjects } from '../model/cluster.ts';
import { decodeDocuments } from '../model/documents.ts';
import { compileFamily } from './compile.ts';
import { renderRestore } from './render.ts';
import { sortLikeUpstreamTests } from './upstream-order.ts';

const testdata = (name: string): string => readFileSync(new URL(`testdata/${name}`, import.meta.url), 'utf8');

function compileFixture(name: string, overrides: Parameters<typeof buildProxyModels>[1]) {
  const { state, problems } = classifyObjects(decodeDocuments(testdata(name), name));
  expect(problems).toEqual([]);
  const models = buildProxyModels(state, overrides);
  expect(models.problems).toEqual([]);
  return models.families.map((m) => compileFamily(m));
}

// Upstream's fake proxier: node test-node/192.168.0.2, detector 10.0.0.0/8, mark "0x4000",
// localhost NodePorts on, nfacct counters present, no --random-fully (reference §7.1).
const upstreamFake = {
  masqueradeMark: '0x4000',
  overrides: { nodeName: 'test-node', nfacct: true, masqueradeRandomFully: false },
};

describe('golden: upstream TestOverallIPTablesRules (reference §1.15)', () => {
  it('produces the expected restore payload after upstream canonical sort', () => {
    const [compiled] = compileFixture('overall-iptables-rules.yaml', upstreamFake);
    expect(compiled).toBeDefined();
    if (compiled === undefined) return;
    expect(sortLikeUpstreamTests(renderRestore(compiled))).toBe(testdata('overall-iptables-rules.golden'));
  });

  it('matches the v1.28 form without nfacct counters', () => {
    const [compiled] = compileFixture('overall-iptables-rules.yaml', {
      ...upstreamFake,
      overrides: { ...upstreamFake.overrides, nfacct: false },
    });
    if (compiled === undefined) throw new Error('no ruleset');
    const expected = testdata('overall-iptables-rules.golden')
      .split('\n')
      .filter((l) => !l.includes('localhost_nps_accepted_pkts'))
      .join('\n')
      .replace(' -m nfacct --nfacct-name ct_state_invalid_dropped_pkts', '');
    expect(sortLikeUpstreamTests(renderRestore(compiled))).toBe(expected);
  });
});

describe('golden: upstream TestEnableLocalhostNodePortsIPv6 (reference §1.15)', () => {
  it('produces the expected IPv6 nat rules', () => {
    const [compiled] = compileFixture('ipv6-localhost-nodeports.yaml', upstreamFake);
    if (compiled === undefined) throw new Error('no ruleset');
    expect(compiled.family).toBe('IPv6');
    const nat = sortLikeUpstreamTests(renderRestore(compiled))
      .split('\n')
      .filter((l) => l.startsWith('-A '))
      .filter((l) => !/^-A (KUBE-POSTROUTING|KUBE-MARK-MASQ|KUBE-FORWARD) /.test(l));
    expect(nat.join('\n') + '\n').toBe(testdata('ipv6-localhost-nodeports.golden'));
  });
});
