import { describe, expect, it } from 'vitest';
import { checkStructure, formatStructureViolation } from './structure.ts';
import { parseRuleset } from './parse.ts';

const check = (nat: string, filter = ''): string[] =>
  checkStructure(parseRuleset(`*filter\n:INPUT ACCEPT [0:0]\n${filter}COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n${nat}COMMIT\n`)).map(formatStructureViolation);

const healthy = `:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-B - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.1 -p tcp -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A -j KUBE-SEP-B
-A KUBE-SEP-B -p tcp -m tcp -j DNAT --to-destination 10.1.0.1:80
`;

describe('checkStructure', () => {
  it('accepts a well-formed ruleset, including an idle KUBE-MARK-MASQ', () => {
    expect(check(healthy)).toEqual([]);
  });

  it('finds a jump to a missing chain', () => {
    expect(check(healthy.replace('-A KUBE-SVC-A -j KUBE-SEP-B', '-A KUBE-SVC-A -j KUBE-SEP-GONE'))).toEqual([
      'nat/KUBE-SVC-A: rule 1 of KUBE-SVC-A jumps to KUBE-SEP-GONE, which does not exist',
      'nat/KUBE-SEP-B: chain KUBE-SEP-B is never jumped to',
    ]);
  });

  it('finds an empty or orphaned service chain', () => {
    expect(check(`${healthy}:KUBE-SVL-C - [0:0]\n`)).toEqual([
      'nat/KUBE-SVL-C: chain KUBE-SVL-C is never jumped to',
      'nat/KUBE-SVL-C: service chain KUBE-SVL-C has no rules',
    ]);
  });

  it('finds jump loops', () => {
    expect(check(`${healthy}-A KUBE-SEP-B -j KUBE-SVC-A\n`)).toEqual(['nat/KUBE-SVC-A: jump loop KUBE-SVC-A -> KUBE-SEP-B -> KUBE-SVC-A']);
  });

  it('finds NAT targets outside the nat table and jumps to built-in chains', () => {
    expect(check(healthy, '-A INPUT -j DNAT --to-destination 1.2.3.4\n-A INPUT -j INPUT\n')).toEqual([
      'filter/INPUT: rule 1 of INPUT uses DNAT, which works only in the nat table',
      'filter/INPUT: rule 2 of INPUT jumps to the built-in chain INPUT',
    ]);
  });
});
