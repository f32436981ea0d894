// Expectations follow reference §7.3 (upstream's packet-flow tests) and DESIGN.md's simulator
// section; the simulator adds exact probabilities, conntrack replies and the node's real path.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileFamily } from '../compile/compile.ts';
import { renderedLines, standaloneRuleset } from '../compile/render.ts';
import { buildProxyModels, classifyObjects } from '../model/cluster.ts';
import { decodeDocuments } from '../model/documents.ts';
import { parseIP, type IPAddress } from '../model/ip.ts';
import type { EngineContext } from './engine.ts';
import { frontendsOfRuleset } from './behaviour.ts';
import { traceNewConnection, type Outcome } from './netfilter.ts';
import { parseDump } from './parse.ts';
import { singleInterfaceNetwork, type SimProtocol } from './packet.ts';

const ip = (text: string): IPAddress => {
  const v = parseIP(text);
  if (v === undefined) throw new Error(text);
  return v;
};

function exampleContext(): EngineContext {
  const text = readFileSync(new URL('../../../examples/cluster.yaml', import.meta.url), 'utf8');
  const [model] = buildProxyModels(classifyObjects(decodeDocuments(text, 'cluster.yaml')).state).families;
  if (model === undefined) throw new Error('no model');
  const ruleset = standaloneRuleset(compileFamily(model));
  return { ruleset, net: singleInterfaceNetwork([ip('10.89.0.10')]), now: 0, lines: renderedLines(ruleset), policies: new Map() };
}

const ctx = exampleContext();
const trace = (src: string, dst: string, dport: number, protocol: SimProtocol = 'tcp'): Outcome[] =>
  traceNewConnection(ctx, { protocol, src: ip(src), dst: ip(dst), sport: 40000, dport }, { withReply: true });
const summary = (outs: Outcome[]) => outs.map((o) => [o.probability, o.verdict, o.destination, o.masquerade]);

describe('traceNewConnection on the example cluster (node-a, 10.89.0.10, pods 10.244.0.0/16)', () => {
  it('pod → ClusterIP: every endpoint with probability 1/n, no masquerade', () => {
    expect(summary(trace('10.244.1.5', '10.96.0.10', 53, 'udp'))).toEqual([
      [0.5, 'ACCEPT', '10.244.1.3:53', false],
      [0.5, 'ACCEPT', '10.244.2.4:53', false],
    ]);
  });

  it('three endpoints split exactly into thirds (1/3, then 1/2 of the rest)', () => {
    const outs = trace('10.244.1.5', '10.96.12.34', 80);
    expect(outs.map((o) => o.destination).sort()).toEqual(['10.244.1.21:8080', '10.244.1.22:8080', '10.244.2.23:8080']);
    for (const o of outs) expect(Math.abs(o.probability - 1 / 3)).toBeLessThan(1e-9);
  });

  it('external client → NodePort: endpoints, masqueraded to the node IP; the reply comes from the NodePort', () => {
    const outs = trace('203.0.113.7', '10.89.0.10', 30081);
    expect(summary(outs)).toEqual([
      [0.5, 'ACCEPT', '10.244.1.31:8080', true],
      [0.5, 'ACCEPT', '10.244.2.32:8080', true],
    ]);
    expect(outs[0]?.source).toBe('10.89.0.10');
    expect(outs[0]?.reply).toMatchObject({ verdict: 'ACCEPT', source: '10.89.0.10:30081', destination: '203.0.113.7:40000' });
    // PREROUTING → KUBE-SERVICES → (last rule) KUBE-NODEPORTS → EXT (mark, then SVC) → statistic → SEP
    // DNAT; FORWARD visits KUBE-PROXY-FIREWALL (no match) then KUBE-FORWARD accepts the marked
    // packet; POSTROUTING clears the mark and masquerades.
    expect(outs[0]?.path.map((s) => `${s.table}/${s.chain}`)).toEqual([
      'nat/PREROUTING', 'nat/KUBE-SERVICES', 'nat/KUBE-NODEPORTS', 'nat/KUBE-EXT-FAXFPGMJVQWLKPGL', 'nat/KUBE-MARK-MASQ',
      'nat/KUBE-EXT-FAXFPGMJVQWLKPGL', 'nat/KUBE-SVC-FAXFPGMJVQWLKPGL', 'nat/KUBE-SEP-MPUOALNE6M5W3UNY',
      'filter/FORWARD', 'filter/FORWARD', 'filter/KUBE-FORWARD', 'nat/POSTROUTING', 'nat/KUBE-POSTROUTING', 'nat/KUBE-POSTROUTING',
    ]);
  });

  it('no endpoints → REJECT; ITP Local without a local endpoint → DROP', () => {
    expect(summary(trace('10.244.1.5', '10.96.90.9', 80))).toEqual([[1, 'REJECT', null, false]]);
    expect(summary(trace('10.89.0.10', '10.96.50.5', 9090))).toEqual([[1, 'DROP', null, false]]);
  });

  it('LB IP with source ranges: outside → DROP by KUBE-PROXY-FIREWALL; inside → endpoints, masqueraded', () => {
    const blocked = trace('203.0.113.7', '203.0.113.20', 443);
    expect(summary(blocked)).toEqual([[1, 'DROP', null, false]]);
    expect(blocked[0]?.path.at(-1)?.chain).toBe('KUBE-PROXY-FIREWALL');
    expect(summary(trace('198.51.100.7', '203.0.113.20', 443))).toEqual([
      [0.5, 'ACCEPT', '10.244.1.40:8443', true],
      [0.5, 'ACCEPT', '10.244.2.41:8443', true],
    ]);
  });

  it('eTP Local LB: external clients keep their IP and reach only local endpoints', () => {
    const outs = trace('203.0.113.7', '203.0.113.10', 80);
    expect(summary(outs)).toEqual([
      [0.5, 'ACCEPT', '10.244.1.21:8080', false],
      [0.5, 'ACCEPT', '10.244.1.22:8080', false],
    ]);
    expect(outs[0]?.source).toBe('203.0.113.7');
  });

  it('hairpin: a pod reaching itself through its Service is masqueraded', () => {
    const outs = trace('10.244.1.3', '10.96.0.10', 53, 'udp');
    const self = outs.find((o) => o.destination === '10.244.1.3:53');
    const other = outs.find((o) => o.destination === '10.244.2.4:53');
    expect(self?.masquerade).toBe(true);
    expect(other?.masquerade).toBe(false);
  });

  it('traffic that is not Service traffic passes untouched (SSH to the node)', () => {
    expect(trace('203.0.113.7', '10.89.0.10', 22).map((o) => [o.probability, o.verdict, o.matched, o.destination, o.delivery])).toEqual([
      [1, 'ACCEPT', false, null, 'local'],
    ]);
  });

  it('the node itself → ClusterIP is masqueraded (it is not a pod)', () => {
    expect(summary(trace('10.89.0.10', '10.96.60.6', 8080))).toEqual([
      [0.5, 'ACCEPT', '10.244.1.61:8080', true],
      [0.5, 'ACCEPT', '10.244.2.62:8080', true],
    ]);
  });
});

describe('without path recording (hooks memoised per kind of flow)', () => {
  const plain = (outs: Outcome[]) =>
    outs.map((o) => ({ ...o, path: [], flow: { ...o.flow, path: undefined }, reply: o.reply === undefined ? undefined : { ...o.reply, path: [] } }));
  const sameOutcomes = (recorded: EngineContext, dsts: readonly { ip: IPAddress; port: number; protocol: SimProtocol }[], clients: readonly string[]): number => {
    const quiet: EngineContext = { ...recorded, recordPath: false };
    let packets = 0;
    for (const d of dsts) {
      for (const src of clients) {
        const packet = { protocol: d.protocol, src: ip(src), dst: d.ip, sport: 40000, dport: d.port };
        expect(plain(traceNewConnection(quiet, packet, { withReply: true }))).toEqual(plain(traceNewConnection(recorded, packet, { withReply: true })));
        packets++;
      }
    }
    return packets;
  };

  it('every packet to a Service has the outcomes, replies included, of the recorded trace', () => {
    const dsts = frontendsOfRuleset(ctx.ruleset).map((f) => ({ ip: f.ip ?? ip('10.89.0.10'), port: f.port, protocol: f.protocol }));
    expect(sameOutcomes(ctx, dsts, ['10.244.1.5', '10.244.2.5', '10.89.0.10', '203.0.113.7', '198.51.100.7', '10.244.1.3', '127.0.0.1'])).toBeGreaterThan(100);
  });

  it('so does every packet through hooks that DNAT, REDIRECT, mark, masquerade and untrack', () => {
    const dump = parseDump(`*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 9000 -j NOTRACK
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:PORTS - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j PORTS
-A PREROUTING -s 10.88.0.0/24 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128
-A PORTS -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
-A PORTS -p udp -m multiport --dports 53,5300:5310 -j DNAT --to-destination 172.17.0.3
-A POSTROUTING -m mark --mark 0x1/0x1 -j MASQUERADE
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j SNAT --to-source 192.0.2.1
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate DNAT -j MARK --or-mark 0x1
-A FORWARD -o docker0 -j ACCEPT
-A FORWARD -i docker0 -j ACCEPT
COMMIT
`);
    const net = { interfaces: [
      { name: 'eth0', addresses: [{ ip: ip('192.0.2.1'), prefix: { family: 'IPv4' as const, network: ip('192.0.2.0').value, prefix: 24 } }] },
      { name: 'lan0', addresses: [{ ip: ip('10.88.0.1'), prefix: { family: 'IPv4' as const, network: ip('10.88.0.0').value, prefix: 24 } }] },
      { name: 'docker0', addresses: [{ ip: ip('172.17.0.1'), prefix: { family: 'IPv4' as const, network: ip('172.17.0.0').value, prefix: 16 } }] },
    ], extraLocal: [] };
    const recorded: EngineContext = { ruleset: dump.ruleset, net, now: 0, lines: dump.lines, policies: dump.policies };
    const dsts = ['192.0.2.1', '10.88.0.1', '172.17.0.2', '198.51.100.9'].flatMap((d) =>
      [80, 53, 5305, 8080, 9000].flatMap((port) => (['tcp', 'udp'] as const).map((protocol) => ({ ip: ip(d), port, protocol }))),
    );
    expect(sameOutcomes(recorded, dsts, ['10.88.0.5', '10.88.0.6', '192.0.2.1', '198.51.100.7', '172.17.0.2'])).toBe(200);
  });
});

describe('general netfilter rulesets', () => {
  it('honours chain policies, -m state and REDIRECT keeping the original destination in conntrack', () => {
    const dump = parseDump(`*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m tcp --dport 3128 -j ACCEPT
COMMIT
`);
    const c: EngineContext = { ruleset: dump.ruleset, net: singleInterfaceNetwork([ip('192.0.2.1')]), now: 0, lines: dump.lines, policies: dump.policies };
    const web = traceNewConnection(c, { protocol: 'tcp', src: ip('198.51.100.9'), dst: ip('203.0.113.80'), sport: 5555, dport: 80 }, { withReply: true });
    expect(web.map((o) => [o.verdict, o.destination, o.delivery])).toEqual([['ACCEPT', '192.0.2.1:3128', 'local']]);
    expect(web[0]?.reply).toMatchObject({ verdict: 'ACCEPT', source: '203.0.113.80:80' });
    const ssh = traceNewConnection(c, { protocol: 'tcp', src: ip('198.51.100.9'), dst: ip('192.0.2.1'), sport: 5555, dport: 22 });
    expect(ssh.map((o) => [o.verdict, o.path.length, o.matched])).toEqual([['DROP', 0, false]]);
    expect(ssh[0]?.delivery).toBe('dropped');
  });
});

describe('matches beyond kube-proxy\'s', () => {
  const firewall = parseDump(`# a host firewall as iptables-save prints one
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -j DROP
-A INPUT -p tcp -m multiport --dports 22,80,8000:8100 -j ACCEPT
-A INPUT -p udp -m multiport --sports 53 -j ACCEPT
-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A INPUT -p icmp -m icmp --icmp-type destination-unreachable -j ACCEPT
COMMIT
`);
  const c: EngineContext = { ruleset: firewall.ruleset, net: singleInterfaceNetwork([ip('192.0.2.1')]), now: 0, lines: firewall.lines, policies: firewall.policies };
  const verdict = (protocol: SimProtocol, dport: number, sport = 40000): string =>
    traceNewConnection(c, { protocol, src: ip('198.51.100.9'), dst: ip('192.0.2.1'), sport, dport }).map((o) => `${o.verdict}@${String(o.path.at(-1)?.line ?? 0)}`).join();

  it('multiport --dports with ranges and --sports', () => {
    expect(verdict('tcp', 22)).toBe('ACCEPT@8');
    expect(verdict('tcp', 8050)).toBe('ACCEPT@8');
    expect(verdict('tcp', 8101)).toBe('DROP@0');
    expect(verdict('udp', 9999, 53)).toBe('ACCEPT@9');
    expect(verdict('udp', 9999, 54)).toBe('DROP@0');
  });

  it('icmp types by number and by name; a new connection opens with a SYN', () => {
    expect(verdict('icmp', 0)).toBe('ACCEPT@10');
    const unreachable = traceNewConnection(c, { protocol: 'icmp', src: ip('198.51.100.9'), dst: ip('192.0.2.1'), sport: 0, dport: 0, mark: 0 });
    expect(unreachable.map((o) => o.verdict)).toEqual(['ACCEPT']);
    // The first packet is a SYN, so the "NEW but not SYN" drop rule (line 7) does not fire.
    expect(verdict('tcp', 80)).toBe('ACCEPT@8');
  });
});
