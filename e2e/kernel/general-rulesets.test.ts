/**
 * General netfilter rulesets (not kpx's) that `kpx trace` must handle: a host firewall with
 * connection-state rules, a SNAT/MASQUERADE gateway, Docker's port mapping, a transparent
 * REDIRECT to a local proxy, and NOTRACK in raw. Each ruleset is loaded into a gateway namespace
 * with plain iptables-restore; real connections cross it, and what the kernel did (who answered,
 * the source it saw, where the connection landed, refused or timed out) is compared with
 * `traceNewConnection` over parseDump(ruleset) and over the kernel's own iptables-save read-back,
 * with a NodeNetwork read from the gateway's interfaces. See docs/simulator-validation.md.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatIP } from '../../controller/src/model/ip.ts';
import { entryOf } from '../../controller/src/sim/conntrack.ts';
import type { EngineContext } from '../../controller/src/sim/engine.ts';
import { traceNewConnection, type TracePacket } from '../../controller/src/sim/netfilter.ts';
import type { NodeNetwork } from '../../controller/src/sim/packet.ts';
import { parseDump } from '../../controller/src/sim/parse.ts';
import { kernelTestMode } from './netns.ts';
import { compareBurst, conntrackEntries, distributionOf, simulatedEntry } from './traffic/compare.ts';
import {
  buildGatewayTopology,
  CONTAINER_IP,
  GW_LAN_IP,
  GW_WAN_IP,
  GW_WAN_SECONDARY_IP,
  LAN_IP,
  LAN_SECOND_IP,
  WAN_IP,
  type GatewayTopology,
} from './traffic/gateway.ts';
import { Testbed, type Namespace } from './traffic/testbed.ts';
import { ipOf, kernelLocalAddresses, nodeNetworkOf } from './traffic/topology.ts';

const mode = kernelTestMode();
if (mode.kind === 'skip') process.stderr.write(`kpx: ${mode.reason}\n`);

/** Connections per probe: the rules are deterministic, every one must end the same way. */
const PROBE_CONNECTIONS = 20;
const DROP_TIMEOUT_MS = 1200;

type From = 'lan' | 'lan (second address)' | 'wan' | 'gateway itself' | 'container';

interface Probe {
  readonly name: string;
  readonly from: From;
  readonly proto: 'tcp' | 'udp';
  readonly host: string;
  readonly port: number;
  /** What the kernel must show (besides agreeing with the simulator): a server's name, or refused/timeout. */
  readonly expect: string;
  /** For answered probes: the source address the server must see. */
  readonly seen?: string;
}

interface RulesetCase {
  readonly name: string;
  readonly rules: string;
  readonly probes: readonly Probe[];
}

/** Servers that run in the gateway namespace itself (the simulator's delivery 'local'). */
const GATEWAY_SERVERS = new Set(['gw', 'proxy']);

const EMPTY_TABLES = `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
`;

const NAT_HEADER = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]`;

const CASES: readonly RulesetCase[] = [
  {
    name: 'host firewall: default DROP, state/ctstate rules, one open port',
    rules: `*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT DROP [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A INPUT -i lan0 -p tcp -m tcp --dport 2222 -m conntrack --ctstate NEW -j ACCEPT
-A INPUT -p tcp -m tcp --dport 2224 -j REJECT --reject-with tcp-reset
-A INPUT -s 10.88.0.0/24 -p udp -m udp --dport 5353 -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A OUTPUT -o lo -j ACCEPT
-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
`,
    probes: [
      { name: 'allowed port from the LAN', from: 'lan', proto: 'tcp', host: GW_LAN_IP, port: 2222, expect: 'gw', seen: LAN_IP },
      { name: 'allowed UDP port from the LAN', from: 'lan', proto: 'udp', host: GW_LAN_IP, port: 5353, expect: 'gw', seen: LAN_IP },
      { name: 'closed port (policy DROP)', from: 'lan', proto: 'tcp', host: GW_LAN_IP, port: 2223, expect: 'timeout' },
      { name: 'rejected port (tcp-reset)', from: 'lan', proto: 'tcp', host: GW_LAN_IP, port: 2224, expect: 'refused' },
      { name: 'allowed port, but not from the WAN interface', from: 'wan', proto: 'tcp', host: GW_WAN_IP, port: 2222, expect: 'timeout' },
      { name: 'the host to its own closed port: over lo, accepted by -i lo', from: 'gateway itself', proto: 'tcp', host: GW_LAN_IP, port: 2223, expect: 'gw', seen: GW_LAN_IP },
    ],
  },
  {
    name: 'SNAT/MASQUERADE gateway with a default-DROP FORWARD',
    rules: `${NAT_HEADER}
-A POSTROUTING -s 10.88.0.3/32 -o wan0 -j SNAT --to-source ${GW_WAN_SECONDARY_IP}
-A POSTROUTING -s 10.88.0.0/24 -o wan0 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i lan0 -o wan0 -j ACCEPT
COMMIT
`,
    probes: [
      { name: 'LAN to WAN, TCP, masqueraded', from: 'lan', proto: 'tcp', host: WAN_IP, port: 80, expect: 'wan', seen: GW_WAN_IP },
      { name: 'LAN to WAN, UDP, masqueraded', from: 'lan', proto: 'udp', host: WAN_IP, port: 80, expect: 'wan', seen: GW_WAN_IP },
      { name: 'LAN to WAN, SNAT to the secondary address', from: 'lan (second address)', proto: 'tcp', host: WAN_IP, port: 80, expect: 'wan', seen: GW_WAN_SECONDARY_IP },
      { name: 'WAN to LAN, new connection (FORWARD DROP)', from: 'wan', proto: 'tcp', host: LAN_IP, port: 80, expect: 'timeout' },
    ],
  },
  {
    name: "Docker's port mapping (-p 8080:80) with its FORWARD accept",
    rules: `${NAT_HEADER}
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
`,
    probes: [
      { name: 'WAN to the published port: DNAT to the container, client IP kept', from: 'wan', proto: 'tcp', host: GW_WAN_IP, port: 8080, expect: 'ctr', seen: WAN_IP },
      { name: 'LAN to the published port on the LAN address', from: 'lan', proto: 'tcp', host: GW_LAN_IP, port: 8080, expect: 'ctr', seen: LAN_IP },
      { name: 'the host itself to its published port (nat OUTPUT)', from: 'gateway itself', proto: 'tcp', host: GW_WAN_IP, port: 8080, expect: 'ctr', seen: GW_WAN_IP },
      { name: 'an unpublished port reaches the host', from: 'wan', proto: 'tcp', host: GW_WAN_IP, port: 8081, expect: 'gw', seen: WAN_IP },
      { name: 'container to the WAN, masqueraded', from: 'container', proto: 'tcp', host: WAN_IP, port: 80, expect: 'wan', seen: GW_WAN_IP },
      { name: 'LAN to WAN is not forwarded (FORWARD DROP)', from: 'lan', proto: 'tcp', host: WAN_IP, port: 80, expect: 'timeout' },
    ],
  },
  {
    name: 'REDIRECT to a local transparent proxy',
    rules: `${NAT_HEADER}
-A PREROUTING -i lan0 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128
COMMIT
`,
    probes: [
      { name: 'LAN web traffic lands on the proxy port', from: 'lan', proto: 'tcp', host: WAN_IP, port: 80, expect: 'proxy', seen: LAN_IP },
      { name: 'LAN UDP to the same port is not redirected', from: 'lan', proto: 'udp', host: WAN_IP, port: 80, expect: 'wan', seen: LAN_IP },
    ],
  },
  {
    name: 'NOTRACK in raw: untracked packets skip NAT',
    rules: `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i lan0 -p tcp -m tcp --dport 9000 -j CT --notrack
-A PREROUTING -i lan0 -p tcp -m tcp --dport 9003 -j NOTRACK
COMMIT
${NAT_HEADER}
-A PREROUTING -i lan0 -p tcp -m tcp --dport 9000:9001 -j DNAT --to-destination ${WAN_IP}:80
-A PREROUTING -i lan0 -p tcp -m tcp --dport 9003 -j DNAT --to-destination ${WAN_IP}:80
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -m conntrack --ctstate UNTRACKED -j ACCEPT
COMMIT
`,
    probes: [
      { name: 'CT --notrack: the DNAT rule does not apply, the host answers', from: 'lan', proto: 'tcp', host: GW_LAN_IP, port: 9000, expect: 'gw', seen: LAN_IP },
      { name: 'NOTRACK target: the same', from: 'lan', proto: 'tcp', host: GW_LAN_IP, port: 9003, expect: 'gw', seen: LAN_IP },
      { name: 'tracked port: DNAT to the WAN server', from: 'lan', proto: 'tcp', host: GW_LAN_IP, port: 9001, expect: 'wan', seen: LAN_IP },
      { name: 'tracked, not NATed, NEW: INPUT policy DROP', from: 'lan', proto: 'tcp', host: GW_LAN_IP, port: 9002, expect: 'timeout' },
    ],
  },
];

describe.skipIf(mode.kind === 'skip')('kernel vs simulator: general netfilter rulesets with real traffic', () => {
  const bed = new Testbed();
  let topo: GatewayTopology;
  let net: NodeNetwork;

  const clientOf = (from: From): { ns: Namespace; bind: string | undefined } => {
    switch (from) {
      case 'lan':
        return { ns: topo.lan, bind: LAN_IP };
      case 'lan (second address)':
        return { ns: topo.lan, bind: LAN_SECOND_IP };
      case 'wan':
        return { ns: topo.wan, bind: WAN_IP };
      case 'gateway itself':
        return { ns: topo.gw, bind: undefined };
      case 'container':
        return { ns: topo.ctr, bind: CONTAINER_IP };
    }
  };
  const contextOf = (text: string): EngineContext => {
    const dump = parseDump(text);
    return { ruleset: dump.ruleset, net, now: 0, lines: dump.lines, policies: dump.policies };
  };
  /** Loads a case's rules on empty tables and an empty conntrack table. */
  const load = async (rules: string): Promise<void> => {
    await topo.gw.check('iptables-restore', [], { input: EMPTY_TABLES });
    await topo.gw.check('iptables-restore', [], { input: rules });
    await topo.gw.check('conntrack', ['-F']);
  };

  beforeAll(async () => {
    if (mode.kind === 'fail') throw new Error(mode.reason);
    await Testbed.removeStale();
    topo = await buildGatewayTopology(bed);
    await bed.echoServer(topo.gw, { name: 'gw', tcp: [2222, 2223, 2224, 8081, 9000, 9002, 9003] });
    await bed.echoServer(topo.gw, { name: 'gw', bind: GW_LAN_IP, udp: [5353] });
    await bed.echoServer(topo.gw, { name: 'proxy', tcp: [3128] });
    await bed.echoServer(topo.wan, { name: 'wan', bind: WAN_IP, tcp: [80], udp: [80] });
    await bed.echoServer(topo.ctr, { name: 'ctr', bind: CONTAINER_IP, tcp: [80] });
    await bed.echoServer(topo.lan, { name: 'lan', tcp: [80] });
    net = await nodeNetworkOf(topo.gw);
  });

  afterAll(async () => {
    await bed.dispose();
  });

  it("mirrors the gateway: the simulator's local addresses are the kernel's", async () => {
    const local = (await kernelLocalAddresses(topo.gw)).filter((a) => !a.startsWith('127.'));
    const simulated = net.interfaces.flatMap((i) => i.addresses.map((a) => formatIP(a.ip)));
    expect(simulated.sort()).toEqual(local);
    expect(net.interfaces.map((i) => i.name)).toEqual(['lan0', 'wan0', 'docker0']);
    // The primary wan0 address comes first: it is the one MASQUERADE picks.
    expect(net.interfaces[1]?.addresses.map((a) => a.ip.value)).toEqual([ipOf(GW_WAN_IP).value, ipOf(GW_WAN_SECONDARY_IP).value]);
  });

  describe.each(CASES)('$name', (c) => {
    let written: EngineContext;
    let readBack: EngineContext;

    beforeAll(async () => {
      await load(c.rules);
      written = contextOf(c.rules);
      readBack = contextOf((await topo.gw.check('iptables-save', [])).stdout);
    });

    it.each(c.probes)('$name', async (p) => {
      await topo.gw.check('conntrack', ['-F']);
      const { ns, bind } = clientOf(p.from);
      const expectAnswer = p.expect !== 'timeout' && p.expect !== 'refused';
      const report = await bed.burst(ns, {
        proto: p.proto,
        host: p.host,
        port: p.port,
        count: PROBE_CONNECTIONS,
        concurrency: PROBE_CONNECTIONS,
        timeoutMs: expectAnswer || p.expect === 'refused' ? 3000 : DROP_TIMEOUT_MS,
        ...(bind === undefined ? {} : { bind }),
      });
      expect(report.reusedAfterAnswer).toBe(0);
      const src = bind ?? report.clientAddresses[0] ?? '';
      expect(report.clientAddresses).toEqual([src]);
      const packet: TracePacket = { protocol: p.proto, src: ipOf(src), dst: ipOf(p.host), sport: report.sampleClientPort, dport: p.port };
      const outcomes = traceNewConnection(written, packet, { withReply: true });
      // Hand-written rules without statistic matches: one outcome.
      expect(outcomes).toHaveLength(1);
      const [outcome] = outcomes;
      if (outcome === undefined) throw new Error('no outcome');
      expect(compareBurst(report, outcomes, packet).problems).toEqual([]);

      // The kernel did what the probe says (so agreement is not vacuous)...
      const kernelServers = report.rows.map((r) => (r.outcome === 'answered' ? r.server : r.outcome));
      expect(kernelServers).toEqual([p.expect]);
      if (p.seen !== undefined) expect(report.rows.map((r) => r.seenAddress)).toEqual([p.seen]);
      // ...the simulator delivers locally exactly when a server of the gateway answered...
      if (expectAnswer) {
        expect(outcome.delivery === 'local').toBe(GATEWAY_SERVERS.has(p.expect));
        // ...and the first reply makes it back through conntrack.
        expect(outcome.reply?.verdict).toBe('ACCEPT');
      }
      // The kernel's read-back of the ruleset traces the same.
      expect(distributionOf(traceNewConnection(readBack, packet), packet)).toEqual(distributionOf(outcomes, packet));
    });
  });

  describe('address selection and ranges', () => {
    /** Extra addresses for one test, removed again afterwards. */
    const withAddresses = async (adds: readonly [Namespace, string, string][], body: () => Promise<void>): Promise<void> => {
      const done: [Namespace, string, string][] = [];
      try {
        for (const [ns, cidr, dev] of adds) {
          await ns.ip('addr', 'add', cidr, 'dev', dev);
          done.push([ns, cidr, dev]);
        }
        await body();
      } finally {
        for (const [ns, cidr, dev] of done.reverse()) await ns.ip('addr', 'del', cidr, 'dev', dev);
        net = await nodeNetworkOf(topo.gw);
      }
    };

    it('MASQUERADE on an interface with two subnets picks the address in the next hop\'s subnet', async () => {
      await withAddresses([[topo.gw, '203.0.113.1/24', 'wan0'], [topo.wan, '203.0.113.2/24', 'eth0']], async () => {
        await bed.echoServer(topo.wan, { name: 'wan', bind: '203.0.113.2', tcp: [80] });
        const rules = `${NAT_HEADER}\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n`;
        await load(rules);
        net = await nodeNetworkOf(topo.gw);
        const report = await bed.burst(topo.lan, { proto: 'tcp', host: '203.0.113.2', port: 80, count: 5, concurrency: 5, timeoutMs: 3000, bind: LAN_IP });
        const outcomes = traceNewConnection(contextOf(rules), { protocol: 'tcp', src: ipOf(LAN_IP), dst: ipOf('203.0.113.2'), sport: report.sampleClientPort, dport: 80 });
        // Kernel: nf_nat_masquerade_ipv4 → inet_select_addr(wan0, next hop 203.0.113.2): the
        // primary address whose subnet holds the next hop.
        expect(report.rows.map((r) => [r.server, r.seenAddress])).toEqual([['wan', '203.0.113.1']]);
        expect(outcomes.map((o) => [o.verdict, o.source])).toEqual([['ACCEPT', '203.0.113.1']]);
      });
    });

    it('SNAT to an address range: the kernel hashes each source/destination pair onto the range, which the simulator refuses to guess', async () => {
      const range = ['198.51.100.4', '198.51.100.5', '198.51.100.6'];
      const clients = ['10.88.0.4', '10.88.0.5', '10.88.0.6', '10.88.0.7', '10.88.0.8', '10.88.0.9'];
      await withAddresses(
        [...range.map((a): [Namespace, string, string] => [topo.gw, `${a}/24`, 'wan0']), ...clients.map((a): [Namespace, string, string] => [topo.lan, `${a}/24`, 'eth0'])],
        async () => {
          const rules = `${NAT_HEADER}\n-A POSTROUTING -o wan0 -j SNAT --to-source ${range[0] ?? ''}-${range.at(-1) ?? ''}\nCOMMIT\n`;
          await load(rules);
          net = await nodeNetworkOf(topo.gw);
          const kernel = new Set<string>();
          for (const client of clients) {
            const report = await bed.burst(topo.lan, { proto: 'tcp', host: WAN_IP, port: 80, count: 3, concurrency: 3, timeoutMs: 3000, bind: client });
            // One address per pair (nf_nat find_best_ips_proto: jhash2 of the source, keyed by the destination)...
            expect(report.rows).toHaveLength(1);
            for (const r of report.rows) kernel.add(r.seenAddress);
            expect(() => traceNewConnection(contextOf(rules), { protocol: 'tcp', src: ipOf(client), dst: ipOf(WAN_IP), sport: report.sampleClientPort, dport: 80 })).toThrow(
              /NAT to a range \("198\.51\.100\.4-198\.51\.100\.6"\) is not modelled/,
            );
          }
          // ...spread over the range by the kernel: no single answer the simulator could give.
          expect(kernel.size).toBeGreaterThan(1);
          for (const a of kernel) expect(range).toContain(a);
        },
      );
    });
  });

  it('REDIRECT: the conntrack entry keeps the original destination (what SO_ORIGINAL_DST returns)', async () => {
    const redirect = CASES.find((c) => c.name.startsWith('REDIRECT'));
    if (redirect === undefined) throw new Error('no REDIRECT case');
    await load(redirect.rules);
    const held = await bed.hold(topo.lan, { host: WAN_IP, port: 80, bind: LAN_IP, timeoutMs: 2000 });
    const answer = await held.ping();
    expect(answer).toMatchObject({ server: 'proxy', localAddress: GW_LAN_IP, localPort: 3128 });
    const packet: TracePacket = { protocol: 'tcp', src: ipOf(LAN_IP), dst: ipOf(WAN_IP), sport: held.localPort, dport: 80 };
    const [outcome] = traceNewConnection(contextOf(redirect.rules), packet);
    if (outcome === undefined) throw new Error('no outcome');
    const entries = await conntrackEntries(topo.gw, 'tcp', LAN_IP, held.localPort);
    expect(entries).toEqual([simulatedEntry(entryOf(packet, outcome, 0))]);
    expect(entries[0]?.original).toMatchObject({ dst: WAN_IP, dport: 80 });
  });
});
