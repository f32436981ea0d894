import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildProxyModels, classifyObjects } from '../model/cluster.ts';
import { decodeDocuments } from '../model/documents.ts';
import { servingEndpointsOf, type ServingEndpoints } from '../sim/conntrack.ts';
import { parseConntrackList, staleFlows, type ConntrackFlow } from './conntrack.ts';

// Real output of conntrack v1.4.7 (`-L -p udp -f ipv4|ipv6`, plain and `-o extended`).
const PLAIN = `udp      17 29 src=10.244.1.50 dst=10.96.0.10 sport=41000 dport=53 src=10.244.1.3 dst=10.244.1.50 sport=53 dport=41000 mark=0 use=1
udp      17 59 src=10.0.0.1 dst=10.96.0.10 sport=1234 dport=53 [UNREPLIED] src=10.244.2.4 dst=10.0.0.1 sport=5353 dport=1234 mark=0 use=1
udp      17 118 src=192.0.2.7 dst=10.89.0.10 sport=40000 dport=30053 src=10.244.9.9 dst=10.89.0.10 sport=53 dport=40000 [ASSURED] mark=0 zone=3 use=2
`;
const EXTENDED = `ipv6     10 udp      17 59 src=fd00::1 dst=fd00:96::a sport=1234 dport=53 [UNREPLIED] src=fd00:244::5 dst=fd00::1 sport=53 dport=1234 mark=0 use=1
ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.96.0.1 sport=5000 dport=443 src=10.89.0.2 dst=10.0.0.1 sport=6443 dport=5000 [ASSURED] mark=0 use=1 id=3754962726
ipv4     2 icmp     1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=7 src=10.0.0.2 dst=10.0.0.1 type=0 code=0 id=7 mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.
`;

const flow = (origDst: string, origDport: number, replySrc: string, replySport = 53): ConntrackFlow => ({
  protocol: 'udp',
  origSrc: '10.244.1.50',
  origDst,
  origSport: 41000,
  origDport,
  replySrc,
  replyDst: '10.244.1.50',
  replySport,
  replyDport: 41000,
});

describe('parseConntrackList', () => {
  it('reads the original and reply tuples of plain output, whatever flags and fields follow', () => {
    expect(parseConntrackList(PLAIN)).toEqual([
      { protocol: 'udp', origSrc: '10.244.1.50', origDst: '10.96.0.10', origSport: 41000, origDport: 53, replySrc: '10.244.1.3', replyDst: '10.244.1.50', replySport: 53, replyDport: 41000 },
      { protocol: 'udp', origSrc: '10.0.0.1', origDst: '10.96.0.10', origSport: 1234, origDport: 53, replySrc: '10.244.2.4', replyDst: '10.0.0.1', replySport: 5353, replyDport: 1234 },
      { protocol: 'udp', origSrc: '192.0.2.7', origDst: '10.89.0.10', origSport: 40000, origDport: 30053, replySrc: '10.244.9.9', replyDst: '10.89.0.10', replySport: 53, replyDport: 40000 },
    ]);
  });

  it('reads extended output (family prefix, TCP state) and skips entries without ports and summary lines', () => {
    expect(parseConntrackList(EXTENDED)).toEqual([
      { protocol: 'udp', origSrc: 'fd00::1', origDst: 'fd00:96::a', origSport: 1234, origDport: 53, replySrc: 'fd00:244::5', replyDst: 'fd00::1', replySport: 53, replyDport: 1234 },
      { protocol: 'tcp', origSrc: '10.0.0.1', origDst: '10.96.0.1', origSport: 5000, origDport: 443, replySrc: '10.89.0.2', replyDst: '10.0.0.1', replySport: 6443, replyDport: 5000 },
    ]);
  });

  it('returns nothing for an empty table', () => {
    expect(parseConntrackList('')).toEqual([]);
  });
});

describe('staleFlows', () => {
  // kube-dns (10.96.0.10:53 UDP) is served by 10.244.1.3 and 10.244.2.4; the second state drops 10.244.1.3.
  const example = readFileSync(new URL('../../../examples/cluster.yaml', import.meta.url), 'utf8');
  const servingOf = (yaml: string): ServingEndpoints => {
    const [m] = buildProxyModels(classifyObjects(decodeDocuments(yaml, 'x.yaml')).state).families;
    if (m === undefined) throw new Error('no model');
    return servingEndpointsOf(m);
  };
  const before = servingOf(example);
  const after = servingOf(example.replace('- {addresses: [10.244.1.3], nodeName: node-a, conditions: {ready: true}}\n', ''));
  const toGone = flow('10.96.0.10', 53, '10.244.1.3');
  const toKept = flow('10.96.0.10', 53, '10.244.2.4');

  it('selects the flows of a Service frontend whose reply source no longer serves it', () => {
    expect(staleFlows([toGone, toKept], before)).toEqual([]);
    expect(staleFlows([toGone, toKept], after)).toEqual([toGone]);
  });

  it('leaves non-UDP flows, other ports of the same IP and non-Service destinations alone', () => {
    const unrelated = [{ ...toGone, protocol: 'tcp' }, flow('10.96.0.10', 54, '10.244.1.3'), flow('192.0.2.1', 53, '10.244.1.3')];
    expect(staleFlows(unrelated, after)).toEqual([]);
  });

  it('matches node ports by destination port only, whatever node address the client used', () => {
    const serving: ServingEndpoints = { byFrontend: new Map(), byNodePort: new Map([[30053, new Set(['10.244.2.4'])]]) };
    const viaNodeIP = flow('10.89.0.10', 30053, '10.244.1.3');
    const viaOtherIP = flow('172.18.0.2', 30053, '10.244.1.3');
    const healthy = flow('10.89.0.10', 30053, '10.244.2.4');
    expect(staleFlows([viaNodeIP, viaOtherIP, healthy], serving)).toEqual([viaNodeIP, viaOtherIP]);
  });

  it('prefers the frontend over a node port with the same number (as upstream)', () => {
    const serving: ServingEndpoints = {
      byFrontend: new Map([['10.96.0.10:30053', new Set(['10.244.1.3'])]]),
      byNodePort: new Map([[30053, new Set(['10.244.2.4'])]]),
    };
    expect(staleFlows([flow('10.96.0.10', 30053, '10.244.1.3')], serving)).toEqual([]);
    expect(staleFlows([flow('10.96.0.10', 30053, '10.244.2.4')], serving)).toHaveLength(1);
  });

  it('compares IPv6 addresses by value, not by spelling', () => {
    const serving: ServingEndpoints = { byFrontend: new Map([['[fd00:96::a]:53', new Set(['fd00:244::5'])]]), byNodePort: new Map() };
    const sameSpelledLong = flow('fd00:96:0:0:0:0:0:a', 53, 'FD00:244:0::5');
    const stale = flow('fd00:96::a', 53, 'fd00:244::6');
    expect(staleFlows([sameSpelledLong, stale], serving)).toEqual([stale]);
    const longKeys: ServingEndpoints = { byFrontend: new Map([['[fd00:0096:0::000a]:53', new Set(['fd00:244:0:0::5'])]]), byNodePort: new Map() };
    expect(staleFlows([sameSpelledLong, stale], longKeys)).toEqual([stale]);
  });
});
