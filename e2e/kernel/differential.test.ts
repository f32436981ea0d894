/**
 * Differential test: kpx's simulator against the real kernel, with real traffic.
 *
 * A node namespace holds the rules kpx compiles for a scenario cluster (loaded with plain
 * iptables-restore from `renderSave`), pods behind a bridge run echo servers, and clients (a pod,
 * the node itself, an external host) open thousands of new connections. For every scenario the
 * kernel's observations are compared with `traceNewConnection` on the same rules and the same
 * node network (read back from the kernel):
 *   (a) the endpoint distribution, chi-square goodness of fit, rejected only if p < 1e-6;
 *   (b) the set of reachable endpoints;
 *   (c) the source address the endpoint saw (masquerade or not);
 *   (d) refused vs timed out (REJECT vs DROP).
 * Then (e): an established connection keeps its endpoint across a rules change exactly when
 * `connectionSurvives` says so. See docs/simulator-validation.md.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CompiledFamily } from '../../controller/src/compile/compile.ts';
import { renderedLines, renderSave, standaloneRuleset } from '../../controller/src/compile/render.ts';
import type { Ruleset } from '../../controller/src/compile/ruleset.ts';
import { formatIP } from '../../controller/src/model/ip.ts';
import { connectionSurvives, entryOf } from '../../controller/src/sim/conntrack.ts';
import type { EngineContext } from '../../controller/src/sim/engine.ts';
import { traceNewConnection, type Outcome, type TracePacket } from '../../controller/src/sim/netfilter.ts';
import type { NodeNetwork } from '../../controller/src/sim/packet.ts';
import { parseDump } from '../../controller/src/sim/parse.ts';
import { kernelTestMode } from './netns.ts';
import {
  compileCluster,
  EMPTY_IP,
  EMPTY_NODEPORT,
  HOSTNET_IP,
  LB_IP,
  LOCAL_LB_IP,
  LOCAL_NODEPORT,
  NODEPORT,
  REMOTE_NODE,
  REMOTE_ONLY_NODEPORT,
  scenarioClusterYaml,
  SERVICE_PORT,
  STICKY_IP,
  WEB_IP,
  type ClusterEndpoints,
  type EndpointSpec,
} from './traffic/cluster.ts';
import { compareBurst, conntrackEntries, distributionOf, simulatedEntry } from './traffic/compare.ts';
import type { BurstReport } from './traffic/protocol.ts';
import { Testbed, type Namespace } from './traffic/testbed.ts';
import {
  buildNodeTopology,
  CLIENT_POD_IP,
  EXTERNAL_BLOCKED_IP,
  EXTERNAL_IP,
  ipOf,
  kernelLocalAddresses,
  NODE_IP,
  NODE_NAME,
  nodeNetworkOf,
  POD_PORT,
  type NodeTopology,
} from './traffic/topology.ts';

const mode = kernelTestMode();
if (mode.kind === 'skip') process.stderr.write(`kpx: ${mode.reason}\n`);

const POD_COUNT = 4;
/** Connections that must be answered never wait this long; a DROP is declared after it. */
const ANSWER_TIMEOUT_MS = 3000;
const DROP_TIMEOUT_MS = 1500;
const CONCURRENCY = 64;

type Client = 'client pod' | 'pod0' | 'node' | 'external' | 'external (blocked range)';

interface Scenario {
  readonly name: string;
  readonly from: Client;
  readonly proto: 'tcp' | 'udp';
  readonly host: string;
  readonly port: number;
  readonly count: number;
  /**
   * What the kernel must show, beyond agreeing with the simulator (guards against a vacuous
   * pass); `mixed`: some connections answered, some timed out (endpoints on another node).
   */
  readonly expect: 'answered' | 'refused' | 'timeout' | 'mixed';
  /** The source the kernel picks for the node's own connections (default: the node IP). */
  readonly nodeSource?: string;
  /** Node sysctls for this scenario only (set before, restored after). */
  readonly sysctls?: Readonly<Record<string, string>>;
}

/** Endpoints on another node: DNAT sends connections off the node, where nobody answers. */
const REMOTE_ENDPOINTS = ['10.244.2.7', '10.244.2.8'];
const ROUTE_LOCALNET = 'net.ipv4.conf.all.route_localnet';

const SCENARIOS: readonly Scenario[] = [
  { name: 'ClusterIP, TCP, from a pod on the node', from: 'client pod', proto: 'tcp', host: WEB_IP, port: SERVICE_PORT, count: 3000, expect: 'answered' },
  { name: 'ClusterIP, UDP, from a pod on the node', from: 'client pod', proto: 'udp', host: WEB_IP, port: SERVICE_PORT, count: 2000, expect: 'answered' },
  { name: 'ClusterIP, TCP, from the node itself (masqueraded)', from: 'node', proto: 'tcp', host: WEB_IP, port: SERVICE_PORT, count: 2000, expect: 'answered' },
  { name: 'ClusterIP with a hostNetwork endpoint on the node, from a pod (local delivery)', from: 'client pod', proto: 'tcp', host: HOSTNET_IP, port: SERVICE_PORT, count: 300, expect: 'answered' },
  { name: 'NodePort, TCP, from an external client (masqueraded)', from: 'external', proto: 'tcp', host: NODE_IP, port: NODEPORT, count: 3000, expect: 'answered' },
  { name: 'NodePort, UDP, from an external client (masqueraded)', from: 'external', proto: 'udp', host: NODE_IP, port: NODEPORT, count: 2000, expect: 'answered' },
  { name: 'NodePort, TCP, from a pod on the node', from: 'client pod', proto: 'tcp', host: NODE_IP, port: NODEPORT, count: 1000, expect: 'answered' },
  { name: 'NodePort, TCP, from the node itself', from: 'node', proto: 'tcp', host: NODE_IP, port: NODEPORT, count: 1000, expect: 'answered' },
  {
    name: 'NodePort on 127.0.0.1 from the node (route_localnet=1, as kube-proxy sets it)',
    from: 'node',
    proto: 'tcp',
    host: '127.0.0.1',
    port: NODEPORT,
    count: 1000,
    expect: 'answered',
    nodeSource: '127.0.0.1',
    sysctls: { [ROUTE_LOCALNET]: '1' },
  },
  { name: 'LoadBalancer with source ranges, allowed client', from: 'external', proto: 'tcp', host: LB_IP, port: SERVICE_PORT, count: 2000, expect: 'answered' },
  { name: 'LoadBalancer with source ranges, blocked client (DROP)', from: 'external (blocked range)', proto: 'tcp', host: LB_IP, port: SERVICE_PORT, count: 64, expect: 'timeout' },
  { name: 'LoadBalancer with source ranges, from the node (its IP is inside a range)', from: 'node', proto: 'tcp', host: LB_IP, port: SERVICE_PORT, count: 1000, expect: 'answered' },
  { name: 'LoadBalancer with source ranges, from a pod outside the ranges (DROP)', from: 'client pod', proto: 'tcp', host: LB_IP, port: SERVICE_PORT, count: 64, expect: 'timeout' },
  { name: 'externalTrafficPolicy Local, NodePort (client IP kept, local endpoints only)', from: 'external', proto: 'tcp', host: NODE_IP, port: LOCAL_NODEPORT, count: 2000, expect: 'answered' },
  { name: 'externalTrafficPolicy Local, LoadBalancer IP', from: 'external', proto: 'tcp', host: LOCAL_LB_IP, port: SERVICE_PORT, count: 1000, expect: 'answered' },
  {
    name: 'externalTrafficPolicy Local, LoadBalancer IP from a pod: short-circuited to every endpoint, remote ones included',
    from: 'client pod',
    proto: 'tcp',
    host: LOCAL_LB_IP,
    port: SERVICE_PORT,
    count: 600,
    expect: 'mixed',
  },
  { name: 'externalTrafficPolicy Local without a local endpoint (DROP)', from: 'external', proto: 'tcp', host: NODE_IP, port: REMOTE_ONLY_NODEPORT, count: 64, expect: 'timeout' },
  { name: 'hairpin: a pod reaching itself through the ClusterIP is masqueraded, TCP', from: 'pod0', proto: 'tcp', host: WEB_IP, port: SERVICE_PORT, count: 2000, expect: 'answered' },
  { name: 'hairpin, UDP', from: 'pod0', proto: 'udp', host: WEB_IP, port: SERVICE_PORT, count: 1000, expect: 'answered' },
  { name: 'no endpoints, ClusterIP, TCP (REJECT)', from: 'client pod', proto: 'tcp', host: EMPTY_IP, port: SERVICE_PORT, count: 300, expect: 'refused' },
  { name: 'no endpoints, ClusterIP, UDP (REJECT)', from: 'client pod', proto: 'udp', host: EMPTY_IP, port: SERVICE_PORT, count: 300, expect: 'refused' },
  { name: 'no endpoints, ClusterIP, TCP, from the node (REJECT in OUTPUT)', from: 'node', proto: 'tcp', host: EMPTY_IP, port: SERVICE_PORT, count: 100, expect: 'refused' },
  { name: 'no endpoints, ClusterIP, UDP, from the node (REJECT in OUTPUT)', from: 'node', proto: 'udp', host: EMPTY_IP, port: SERVICE_PORT, count: 100, expect: 'refused' },
  { name: 'no endpoints, NodePort, TCP (REJECT)', from: 'external', proto: 'tcp', host: NODE_IP, port: EMPTY_NODEPORT, count: 300, expect: 'refused' },
];

function contextOf(ruleset: Ruleset, net: NodeNetwork, lines: EngineContext['lines'], policies: EngineContext['policies'] = new Map()): EngineContext {
  return { ruleset, net, now: 0, lines, policies };
}

describe.skipIf(mode.kind === 'skip')('kernel vs simulator: kpx rules with real traffic', () => {
  const bed = new Testbed();
  let topo: NodeTopology;
  let net: NodeNetwork;
  let baseEndpoints: ClusterEndpoints;
  let compiled: CompiledFamily;
  let ctx: EngineContext;
  /** The same rules, as the kernel's iptables-save prints them back. */
  let readBack: EngineContext;
  const podNames = new Map<string, string>();

  const load = async (text: string): Promise<void> => {
    // Plain iptables-restore replaces filter and nat wholesale; conntrack is left alone.
    await topo.node.check('iptables-restore', [], { input: text });
  };
  const flushConntrack = async (): Promise<void> => {
    await topo.node.check('conntrack', ['-F']);
  };
  const clientOf = (from: Client): { ns: Namespace; bind: string | undefined } => {
    switch (from) {
      case 'client pod':
        return { ns: topo.client.ns, bind: CLIENT_POD_IP };
      case 'pod0': {
        const pod0 = topo.pods[0];
        if (pod0 === undefined) throw new Error('no pods');
        return { ns: pod0.ns, bind: pod0.ip };
      }
      case 'node':
        // No bind: the kernel picks the source (the node IP, by the default route).
        return { ns: topo.node, bind: undefined };
      case 'external':
        return { ns: topo.external, bind: EXTERNAL_IP };
      case 'external (blocked range)':
        return { ns: topo.external, bind: EXTERNAL_BLOCKED_IP };
    }
  };
  const packetOf = (report: BurstReport, s: { proto: 'tcp' | 'udp'; host: string; port: number }, source: string): TracePacket => ({
    protocol: s.proto,
    src: ipOf(source),
    dst: ipOf(s.host),
    sport: report.sampleClientPort,
    dport: s.port,
  });
  const pod = (i: number): EndpointSpec => {
    const p = topo.pods[i];
    if (p === undefined) throw new Error(`no pod ${String(i)}`);
    return { ip: p.ip, nodeName: NODE_NAME };
  };

  beforeAll(async () => {
    if (mode.kind === 'fail') throw new Error(mode.reason);
    await Testbed.removeStale();
    topo = await buildNodeTopology(bed, POD_COUNT);
    // A hostNetwork "pod": a server in the node namespace itself, the endpoint of Service hostnet.
    await bed.echoServer(topo.node, { name: 'node', tcp: [POD_PORT] });
    for (const p of topo.pods) {
      podNames.set(p.ip, p.name);
      await bed.echoServer(p.ns, { name: p.name, bind: p.ip, tcp: [POD_PORT], udp: [POD_PORT] });
    }
    baseEndpoints = {
      web: [0, 1, 2, 3].map(pod),
      nodePort: [1, 2, 3].map(pod),
      lb: [0, 2].map(pod),
      local: [pod(1), pod(3), { ip: REMOTE_ENDPOINTS[0] ?? '', nodeName: REMOTE_NODE }],
      sticky: [0, 1, 2, 3].map(pod),
      remoteOnly: [{ ip: REMOTE_ENDPOINTS[1] ?? '', nodeName: REMOTE_NODE }],
      hostNetwork: [{ ip: NODE_IP, nodeName: NODE_NAME }],
    };
    compiled = compileCluster(scenarioClusterYaml(baseEndpoints));
    await load(renderSave(compiled));
    net = await nodeNetworkOf(topo.node);
    const ruleset = standaloneRuleset(compiled);
    ctx = contextOf(ruleset, net, renderedLines(ruleset));
    const dump = parseDump((await topo.node.check('iptables-save', [])).stdout);
    readBack = contextOf(dump.ruleset, net, dump.lines, dump.policies);
  });

  afterAll(async () => {
    await bed.dispose();
  });

  it("mirrors the node: the simulator's interfaces and local addresses are the kernel's", async () => {
    const local = (await kernelLocalAddresses(topo.node)).filter((a) => !a.startsWith('127.'));
    const simulated = net.interfaces.flatMap((i) => i.addresses.map((a) => formatIP(a.ip)));
    expect(simulated.sort()).toEqual(local);
    expect(net.interfaces.map((i) => i.name)).toEqual(['eth0', 'cbr0']); // eth0 holds the default route
    expect(compiled.model.node.localIPs).toEqual([NODE_IP]);
    // kube-proxy's INVALID drop is there because the kernel is strict about TCP windows.
    expect(await topo.node.readSysctl('net.netfilter.nf_conntrack_tcp_be_liberal')).toBe('0');
    expect(renderSave(compiled)).toContain('-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP');
  });

  /** Runs a burst from a client and compares it with the simulator (all of (a)-(d)). */
  const runScenario = async (s: Scenario): Promise<{ report: BurstReport; packet: TracePacket; outcomes: Outcome[] }> => {
    await flushConntrack();
    const { ns, bind } = clientOf(s.from);
    const report = await bed.burst(ns, {
      proto: s.proto,
      host: s.host,
      port: s.port,
      count: s.count,
      concurrency: CONCURRENCY,
      timeoutMs: s.expect === 'answered' || s.expect === 'refused' ? ANSWER_TIMEOUT_MS : DROP_TIMEOUT_MS,
      ...(bind === undefined ? {} : { bind }),
    });
    // Every connection was new: no source port of an answered connection came round again.
    expect(report.reusedAfterAnswer).toBe(0);
    const source = bind ?? s.nodeSource ?? NODE_IP;
    expect(report.clientAddresses).toEqual([source]);
    if (s.expect === 'refused' || s.expect === 'timeout') {
      // A rejected or dropped first packet never confirms its conntrack entry: nothing is left.
      expect(await conntrackEntries(topo.node, s.proto, source)).toEqual([]);
    }
    if (s.expect !== 'refused') expect(report.distinctClientPorts).toBe(s.count);
    const packet = packetOf(report, s, source);
    // The simulator models route_localnet; tell it what this namespace has now.
    const routeLocalnet = (await topo.node.readSysctl(ROUTE_LOCALNET)) === '1';
    return { report, packet, outcomes: traceNewConnection({ ...ctx, net: { ...ctx.net, routeLocalnet } }, packet) };
  };

  it.each(SCENARIOS)('$name', async (s) => {
    const saved = new Map<string, string | undefined>();
    try {
      for (const [key, value] of Object.entries(s.sysctls ?? {})) {
        saved.set(key, await topo.node.readSysctl(key));
        await topo.node.sysctl(key, value);
      }
      const { report, packet, outcomes } = await runScenario(s);
      const cmp = compareBurst(report, outcomes, packet, { names: podNames, unanswered: new Set(REMOTE_ENDPOINTS) });
      expect(cmp.problems).toEqual([]);
      const keys = [...cmp.observed.keys()];
      const answered = keys.some((k) => k.includes(':'));
      if (s.expect === 'answered') expect(answered).toBe(true);
      else if (s.expect === 'mixed') expect({ answered, timeout: keys.includes('timeout') }).toEqual({ answered: true, timeout: true });
      else expect(keys).toEqual([s.expect]);
      if (s.expect === 'refused') {
        // Refused at once: the first SYN or datagram drew the ICMP error (no retransmission).
        for (const row of report.rows) expect(row.maxMs).toBeLessThan(900);
      }
      // The rules as the kernel holds them trace the same way as kpx's own rendering.
      const routeLocalnet = (await topo.node.readSysctl(ROUTE_LOCALNET)) === '1';
      expect(distributionOf(traceNewConnection({ ...readBack, net: { ...readBack.net, routeLocalnet } }, packet), packet)).toEqual(distributionOf(outcomes, packet));
    } finally {
      for (const [key, value] of saved) if (value !== undefined) await topo.node.sysctl(key, value);
    }
  });

  describe('routing details the simulator models', () => {
    it('route_localnet=0 (the kernel default): a NodePort on 127.0.0.1 is dropped, by the kernel and the simulator', async () => {
      expect(await topo.node.readSysctl(ROUTE_LOCALNET)).toBe('0');
      const { report, outcomes } = await runScenario({ name: 'localhost', from: 'node', proto: 'tcp', host: '127.0.0.1', port: NODEPORT, count: 32, expect: 'timeout', nodeSource: '127.0.0.1' });
      // Kernel: after DNAT the packet from 127.0.0.1 must leave by cbr0, and the reroute refuses
      // a loopback source on a non-loopback device unless route_localnet=1 (kube-proxy sets it).
      expect(report.rows.map((r) => [r.outcome, r.count])).toEqual([['timeout', 32]]);
      // Simulator: the same drop, for every endpoint the statistic rules could have picked.
      expect(outcomes.map((o) => o.verdict)).toEqual(['DROP', 'DROP', 'DROP']);
      expect(outcomes.reduce((sum, o) => sum + o.probability, 0)).toBeCloseTo(1, 9);
    });

    it('MASQUERADE out of lo (node to a Service whose endpoint is the node itself) keeps a global address', async () => {
      const { report, outcomes } = await runScenario({ name: 'hostnet', from: 'node', proto: 'tcp', host: HOSTNET_IP, port: SERVICE_PORT, count: 32, expect: 'answered' });
      // Kernel: inet_select_addr(lo, ...) skips host-scope 127.0.0.1 and falls back to the first
      // universe-scope address of the namespace (eth0's 192.0.2.1).
      expect(report.rows.map((r) => [r.server, r.seenAddress, r.count])).toEqual([['node', NODE_IP, 32]]);
      expect(outcomes.map((o) => [o.destination, o.masquerade, o.outIface, o.source])).toEqual([[`${NODE_IP}:${String(POD_PORT)}`, true, 'lo', NODE_IP]]);
    });
  });

  it('ClientIP affinity: every connection from a client reaches the endpoint its first one picked', async () => {
    await flushConntrack();
    for (const from of ['client pod', 'node'] as const) {
      const { ns, bind } = clientOf(from);
      const spec = { proto: 'tcp' as const, host: STICKY_IP, port: SERVICE_PORT, concurrency: CONCURRENCY, timeoutMs: ANSWER_TIMEOUT_MS, ...(bind === undefined ? {} : { bind }) };
      const first = await bed.burst(ns, { ...spec, count: 1 });
      const packet = packetOf(first, spec, bind ?? NODE_IP);
      const fresh = traceNewConnection(ctx, packet);
      // Before any connection, the simulator spreads the client evenly; the kernel picked one of those.
      expect(compareBurst(first, fresh, packet, { names: podNames }).problems).toEqual([]);
      const picked: Outcome | undefined = fresh.find((o) => o.destination === first.rows[0]?.reached);
      if (picked === undefined) throw new Error(`the first connection reached ${JSON.stringify(first.rows)}, which the simulator does not reach`);
      // With the `-m recent` list that first pick left, the simulator sends everything there...
      const sticky = traceNewConnection(ctx, packet, { recent: picked.flow.recent });
      expect(sticky.map((o) => [o.destination, o.probability])).toEqual([[picked.destination, 1]]);
      // ...and so does the kernel.
      const later = await bed.burst(ns, { ...spec, count: 500 });
      expect(later.distinctClientPorts).toBe(500);
      expect(later.reusedAfterAnswer).toBe(0);
      expect(compareBurst(later, sticky, packetOf(later, spec, bind ?? NODE_IP), { names: podNames }).problems).toEqual([]);
    }
  });

  describe('an established connection across a rules change (conntrack, connectionSurvives)', () => {
    /** Opens a connection from the client pod to the web ClusterIP; the simulator's entry for it. */
    const openHeld = async (): Promise<{ ping: () => Promise<string | undefined>; packet: TracePacket; endpoint: string; entry: ReturnType<typeof entryOf> }> => {
      const held = await bed.hold(topo.client.ns, { host: WEB_IP, port: SERVICE_PORT, bind: CLIENT_POD_IP, timeoutMs: 2000 });
      const ping = async (): Promise<string | undefined> => {
        const a = await held.ping();
        return a === undefined ? undefined : `${a.localAddress}:${String(a.localPort)}`;
      };
      const endpoint = await ping();
      if (endpoint === undefined) throw new Error('the held connection got no first answer');
      const packet: TracePacket = { protocol: 'tcp', src: ipOf(held.localAddress), dst: ipOf(WEB_IP), sport: held.localPort, dport: SERVICE_PORT };
      const outcome = traceNewConnection(ctx, packet).find((o) => o.destination === endpoint);
      if (outcome === undefined) throw new Error(`the held connection reached ${endpoint}, which the simulator does not reach`);
      const entry = entryOf(packet, outcome, 0);
      // The kernel's conntrack entry is the simulator's.
      expect(await conntrackEntries(topo.node, 'tcp', held.localAddress, held.localPort)).toEqual([simulatedEntry(entry)]);
      return { ping, packet, endpoint, entry };
    };

    afterAll(async () => {
      await load(renderSave(compiled));
    });

    it('survives when its endpoint is removed from the Service: conntrack keeps the DNAT', async () => {
      await load(renderSave(compiled));
      await flushConntrack();
      const held = await openHeld();
      const removedIp = held.endpoint.split(':')[0];
      const after = compileCluster(scenarioClusterYaml({ ...baseEndpoints, web: baseEndpoints.web.filter((e) => e.ip !== removedIp) }));
      await load(renderSave(after));
      const afterRules = standaloneRuleset(after);
      const afterCtx = contextOf(afterRules, net, renderedLines(afterRules));
      const survival = connectionSurvives(afterCtx, held.entry);
      expect({ simulator: survival.survives, kernel: await held.ping() }).toEqual({ simulator: true, kernel: held.endpoint });
      // New connections follow the new rules: never the removed endpoint.
      const report = await bed.burst(topo.client.ns, { proto: 'tcp', host: WEB_IP, port: SERVICE_PORT, count: 600, concurrency: CONCURRENCY, timeoutMs: ANSWER_TIMEOUT_MS, bind: CLIENT_POD_IP });
      const packet = packetOf(report, { proto: 'tcp', host: WEB_IP, port: SERVICE_PORT }, CLIENT_POD_IP);
      const outcomes = traceNewConnection(afterCtx, packet);
      expect(outcomes.map((o) => o.destination)).not.toContain(held.endpoint);
      expect(compareBurst(report, outcomes, packet, { names: podNames }).problems).toEqual([]);
    });

    it('does not survive a filter DROP for its endpoint added by the new rules', async () => {
      await load(renderSave(compiled));
      await flushConntrack();
      const held = await openHeld();
      const [ip, port] = held.endpoint.split(':');
      const drop = `-A FORWARD -d ${ip ?? ''}/32 -p tcp -m tcp --dport ${port ?? ''} -j DROP`;
      // First rule of filter FORWARD, ahead of KUBE-FORWARD's ESTABLISHED accept.
      const lines = renderSave(compiled).split('\n');
      const filterAt = lines.indexOf('*filter');
      const firstRule = lines.findIndex((l, i) => i > filterAt && l.startsWith('-A '));
      lines.splice(firstRule, 0, drop);
      const text = lines.join('\n');
      await load(text);
      const dump = parseDump(text);
      const survival = connectionSurvives(contextOf(dump.ruleset, net, dump.lines, dump.policies), held.entry);
      expect({ simulator: survival.survives, kernel: await held.ping() }).toEqual({ simulator: false, kernel: undefined });
      expect(survival.reason).toContain('dropped');
    });
  });
});
