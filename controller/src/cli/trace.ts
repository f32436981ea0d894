/**
 * `kpx trace`: one new connection through the rules compiled from the inputs, or through a
 * node's iptables-save dump; every outcome with its exact probability and the path that led there.
 */
import { parseArgs } from 'node:util';
import { compileFamily } from '../compile/compile.ts';
import { renderedLines, ruleText, standaloneRuleset } from '../compile/render.ts';
import type { Rule, Ruleset } from '../compile/ruleset.ts';
import { formatIP, parseIP, type IPAddress, type IPFamily } from '../model/ip.ts';
import { SimulationError, type EngineContext, type PathStep, type TableVerdict } from '../sim/engine.ts';
import { traceNewConnection, type Outcome } from '../sim/netfilter.ts';
import { endpointText, parseInterfaceSpec, singleInterfaceNetwork, type Interface, type NodeNetwork, type SimProtocol } from '../sim/packet.ts';
import { PROXY_OPTIONS, UsageError } from './args.ts';
import { readDumpFile } from './inputs.ts';
import type { CommandIO } from './io.ts';
import { loadModels } from './pipeline.ts';

export const TRACE_USAGE = `Usage: kpx trace [-f FILE]... [options] --src IP --dst IP [--dport N] [--proto tcp|udp|sctp|icmp]
                 [--sport N] [--rules SAVEFILE] [--iface NAME=ADDR/PREFIX[,...]]... [--in-iface NAME]
                 [--with-reply] [-o text|json]

Traces the first packet of a new connection through the rules kpx compiles from the inputs (or
the embedded example), or through an iptables-save dump taken from a node (--rules; then
--node-ip says which addresses are local). Prints every possible outcome with its exact
probability: verdict, destination after DNAT, masquerading, and the rules on the way.

  --src IP, --dst IP      the packet's addresses
  --dport N, --sport N    ports (--sport defaults to 40000)
  --proto P               tcp (default), udp, sctp or icmp
  --iface NAME=ADDR/PFX   a node interface: each address is local, each prefix a connected route;
                          the first interface holds the default route (repeatable). Default: one
                          interface eth0 holding the node IPs.
  --in-iface NAME         where the packet arrives. Default: locally generated when --src is a
                          local address, else the interface whose prefix holds --src.
  --with-reply            also trace the first reply back through conntrack
  --route-localnet BOOL   the node routes 127.0.0.0/8 sources off lo (default: as kpx or, for a
                          dump, kube-proxy would have set it for localhost NodePorts)
  -o text|json            output format (json: see docs/cli.md)
  Node and proxy options as for kpx preview (--node-name, --node-ip, --cluster-cidr, ...).
`;

const TRACE_OPTIONS = {
  ...PROXY_OPTIONS,
  src: { type: 'string' },
  dst: { type: 'string' },
  dport: { type: 'string' },
  sport: { type: 'string' },
  proto: { type: 'string' },
  rules: { type: 'string' },
  iface: { type: 'string', multiple: true },
  'in-iface': { type: 'string' },
  'with-reply': { type: 'boolean' },
  'route-localnet': { type: 'string' },
} as const;

function parse(args: readonly string[]) {
  try {
    return parseArgs({ args: [...args], options: TRACE_OPTIONS, strict: true, allowPositionals: false });
  } catch (error) {
    throw new UsageError((error as Error).message.split('\n')[0] ?? 'invalid arguments', { cause: error });
  }
}

function address(flag: string, text: string | undefined): IPAddress {
  if (text === undefined) throw new UsageError(`--${flag} is required`);
  const ip = parseIP(text);
  if (ip === undefined) throw new UsageError(`--${flag} "${text}" is not a valid IP address`);
  return ip;
}

function port(flag: string, text: string | undefined, fallback: number | undefined): number {
  if (text === undefined) {
    if (fallback === undefined) throw new UsageError(`--${flag} is required for this protocol`);
    return fallback;
  }
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || n < 1 || n > 65535) throw new UsageError(`--${flag} "${text}" is not a port (1-65535)`);
  return n;
}

interface RulesSource {
  readonly ruleset: Ruleset;
  readonly lines: ReadonlyMap<Rule, number>;
  readonly policies: EngineContext['policies'];
  readonly localIPs: readonly IPAddress[];
  /** Whether the node routes 127.0.0.0/8 sources off lo (net.ipv4.conf.all.route_localnet). */
  readonly routeLocalnet: boolean;
}

/** kube-proxy's localhost-NodePort guard rule means it set route_localnet=1 on that node. */
function hasLocalnetGuard(ruleset: Ruleset): boolean {
  return ruleset.tables.some((t) => t.name === 'filter' && t.chains.some((c) => c.name === 'KUBE-FIREWALL' && c.rules.length > 0));
}

function fromDump(path: string, family: IPFamily, nodeIPs: readonly string[] | undefined): RulesSource {
  const dump = readDumpFile(path, family);
  const localIPs = (nodeIPs ?? []).flatMap((s) => s.split(',')).map((s) => address('node-ip', s.trim()));
  return { ruleset: dump.ruleset, lines: dump.lines, policies: dump.policies, localIPs, routeLocalnet: hasLocalnetGuard(dump.ruleset) };
}

type TraceValues = ReturnType<typeof parse>['values'];

function fromInputs(values: TraceValues, family: IPFamily, io: CommandIO): RulesSource {
  const { models } = loadModels({ ...values, 'ip-family': family === 'IPv4' ? 'ipv4' : 'ipv6' }, io);
  const model = models.families.find((m) => m.family === family);
  if (model === undefined) throw new UsageError(`no ${family} rules to trace through`);
  const ruleset = standaloneRuleset(compileFamily(model));
  const localIPs = model.node.localIPs.map((s) => address('node-ip', s));
  return { ruleset, lines: renderedLines(ruleset), policies: new Map(), localIPs, routeLocalnet: model.node.localhostNodePorts };
}

function network(values: TraceValues, localIPs: readonly IPAddress[], routeLocalnet: boolean): NodeNetwork {
  const flag = values['route-localnet'];
  if (flag !== undefined && flag !== 'true' && flag !== 'false') throw new UsageError(`--route-localnet must be true or false, got "${flag}"`);
  const localnet = flag === undefined ? routeLocalnet : flag === 'true';
  return { ...networkOf(values, localIPs), routeLocalnet: localnet };
}

function networkOf(values: TraceValues, localIPs: readonly IPAddress[]): NodeNetwork {
  if (values.iface === undefined) return singleInterfaceNetwork(localIPs);
  const interfaces: Interface[] = values.iface.map((spec) => {
    const i = parseInterfaceSpec(spec);
    if (typeof i === 'string') throw new UsageError(`--iface ${i}`);
    return i;
  });
  return { interfaces, extraLocal: localIPs };
}

const percent = (p: number): string => `${(p * 100).toFixed(p === 1 || p === 0 ? 0 : 2)}%`;

function verdictLine(o: Outcome): string {
  const parts: string[] = [o.verdict];
  if (o.destination !== null) parts.push(`DNAT to ${o.destination}`);
  if (o.masquerade) parts.push(`masqueraded to ${o.source}`);
  if (o.verdict === 'ACCEPT') parts.push(o.delivery === 'local' ? 'delivered to the node' : `forwarded via ${o.outIface ?? '?'}`);
  if (!o.matched) parts.push('no rule acted on it (chain policies only)');
  return parts.join(', ');
}

const VERDICT_MEANING: Record<TableVerdict, string> = {
  ACCEPT: '',
  DROP: ' (silently dropped: the client times out)',
  REJECT: ' (rejected: the client gets "connection refused")',
};

function renderText(packetLine: string, outcomes: readonly Outcome[]): string {
  const out = [packetLine, '', `${String(outcomes.length)} possible outcome${outcomes.length === 1 ? '' : 's'}:`];
  for (const o of outcomes) {
    out.push('', `[${percent(o.probability)}] ${verdictLine(o)}${VERDICT_MEANING[o.verdict]}`);
    for (const s of o.path) out.push(`    ${`${s.table}/${s.chain}`.padEnd(36)} line ${String(s.line).padStart(4)}  ${ruleText(s.rule)}`);
    if (o.reply !== undefined) {
      out.push(`  reply: ${o.reply.verdict}, ${o.reply.source} -> ${o.reply.destination}`);
      for (const s of o.reply.path) out.push(`    ${`${s.table}/${s.chain}`.padEnd(36)} line ${String(s.line).padStart(4)}  ${ruleText(s.rule)}`);
    }
  }
  return out.join('\n') + '\n';
}

export function traceCommand(args: readonly string[], io: CommandIO): number {
  const { values } = parse(args);
  if (values.help === true) {
    io.stdout(TRACE_USAGE);
    return 0;
  }
  const output = values.output ?? 'text';
  if (output !== 'text' && output !== 'json') throw new UsageError(`-o "${output}" is not one of text, json`);
  const src = address('src', values.src);
  const dst = address('dst', values.dst);
  if (src.family !== dst.family) throw new UsageError('--src and --dst must be of the same IP family');
  const proto = (values.proto ?? 'tcp').toLowerCase();
  if (!['tcp', 'udp', 'sctp', 'icmp'].includes(proto)) throw new UsageError(`--proto "${proto}" is not one of tcp, udp, sctp, icmp`);
  const protocol: SimProtocol = proto === 'icmp' && src.family === 'IPv6' ? 'icmpv6' : (proto as SimProtocol);
  const ported = protocol !== 'icmp' && protocol !== 'icmpv6';
  const dport = ported ? port('dport', values.dport, undefined) : 0;
  const sport = ported ? port('sport', values.sport, 40000) : 0;

  const source = values.rules !== undefined ? fromDump(values.rules, src.family, values['node-ip']) : fromInputs(values, src.family, io);
  const ctx: EngineContext = { ruleset: source.ruleset, net: network(values, source.localIPs, source.routeLocalnet), now: 0, lines: source.lines, policies: source.policies };
  let outcomes: Outcome[];
  try {
    outcomes = traceNewConnection(ctx, { protocol, src, dst, sport, dport, inIface: values['in-iface'] }, { withReply: values['with-reply'] === true });
  } catch (error) {
    if (error instanceof SimulationError) throw new UsageError(`cannot trace: ${error.message}`, { cause: error });
    throw error;
  }
  const from = ported ? endpointText(src, sport) : formatIP(src);
  const to = ported ? endpointText(dst, dport) : formatIP(dst);
  const arrival = outcomes[0]?.flow.packet.inIface;
  if (output === 'json') {
    io.stdout(`${JSON.stringify(traceJson({ protocol, from, to, inIface: values['in-iface'] ?? arrival }, outcomes), null, 2)}\n`);
  } else {
    const how = values['in-iface'] !== undefined ? `arriving on ${values['in-iface']}` : source.localIPs.some((ip) => ip.value === src.value) || src.value === (src.family === 'IPv4' ? 0x7f000001n : 1n) ? 'sent by the node itself' : 'arriving from outside the node';
    const lines = values.rules === undefined ? 'line numbers are those of `kpx preview -o save` for the same inputs' : `line numbers are those of ${values.rules}`;
    io.stdout(renderText(`Packet: ${protocol} ${from} -> ${to}, ${how} (${lines})`, outcomes));
  }
  return 0;
}

const stepJson = (s: PathStep): unknown => ({ table: s.table, chain: s.chain, rule: ruleText(s.rule), line: s.line });

/** The documented, versioned JSON shape (docs/cli.md). */
export function traceJson(packet: { protocol: string; from: string; to: string; inIface: string | undefined }, outcomes: readonly Outcome[]): unknown {
  return {
    version: 1,
    packet: { protocol: packet.protocol, source: packet.from, destination: packet.to, inInterface: packet.inIface ?? null },
    outcomes: outcomes.map((o) => ({
      probability: o.probability,
      verdict: o.verdict,
      matched: o.matched,
      destination: o.destination,
      masquerade: o.masquerade,
      source: o.source,
      path: o.path.map(stepJson),
      ...(o.reply === undefined ? {} : { reply: { verdict: o.reply.verdict, source: o.reply.source, destination: o.reply.destination, path: o.reply.path.map(stepJson) } }),
    })),
  };
}
