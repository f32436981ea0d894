/**
 * `kpx diff OLD NEW`: which Service frontends change behaviour, for which clients, between two
 * cluster states (YAML/JSON) or two iptables-save dumps (or one of each).
 * Exit 0 when they behave the same, 1 when they differ, 2 for bad input.
 */
import { parseArgs } from 'node:util';
import { compileFamily } from '../compile/compile.ts';
import { standaloneRuleset } from '../compile/render.ts';
import type { Ruleset } from '../compile/ruleset.ts';
import { cidrLiteral, ipLiteral, parseCIDR, parseIP, type CIDR, type IPAddress, type IPFamily } from '../model/ip.ts';
import type { FamilyModel } from '../model/proxy-model.ts';
import { behaviouralDiff, type ProbeClient } from '../sim/behaviour.ts';
import type { EngineContext } from '../sim/engine.ts';
import type { NodeNetwork } from '../sim/packet.ts';
import { PROXY_OPTIONS, UsageError } from './args.ts';
import { parseDumpText, readInputFile } from './inputs.ts';
import type { CommandIO } from './io.ts';
import { loadModels } from './pipeline.ts';

export const DIFF_USAGE = `Usage: kpx diff OLD NEW [node and proxy options] [-o text|json]

OLD and NEW are cluster states (YAML or JSON, as for kpx preview) or iptables-save dumps. Every
Service frontend either side has (cluster IPs, external and load-balancer IPs, node ports) is
probed from a pod, the node itself and an external client, and the outcome distributions are
compared. For two dumps, --node-ip and --cluster-cidr say which addresses are the node's and the
pods'.

Exit status: 0 same behaviour, 1 differences found, 2 bad input or usage.
`;

interface Side {
  readonly ruleset: Ruleset;
  readonly policies: EngineContext['policies'];
  readonly model: FamilyModel | undefined;
}

function looksLikeDump(text: string): boolean {
  const first = text.split('\n').map((l) => l.trim()).find((l) => l !== '' && !l.startsWith('#'));
  return first?.startsWith('*') === true;
}

export function diffCommand(args: readonly string[], io: CommandIO): number {
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options: PROXY_OPTIONS, strict: true, allowPositionals: true });
  } catch (error) {
    throw new UsageError((error as Error).message.split('\n')[0] ?? 'invalid arguments', { cause: error });
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    io.stdout(DIFF_USAGE);
    return 0;
  }
  if (positionals.length !== 2) throw new UsageError('kpx diff needs two files: OLD NEW');
  const output = values.output ?? 'text';
  if (output !== 'text' && output !== 'json') throw new UsageError(`-o "${output}" is not one of text, json`);
  const wanted: IPFamily | undefined = values['ip-family'] === undefined ? undefined : values['ip-family'].toLowerCase() === 'ipv6' ? 'IPv6' : 'IPv4';

  const load = (path: string): Side => {
    const text = readInputFile(path);
    if (looksLikeDump(text)) {
      const dump = parseDumpText(path, text, wanted ?? 'IPv4');
      return { ruleset: dump.ruleset, policies: dump.policies, model: undefined };
    }
    const { models } = loadModels({ ...values, file: [path] }, io);
    const model = models.families.find((m) => m.family === (wanted ?? models.families[0]?.family));
    if (model === undefined) throw new UsageError(`${path}: no ${wanted ?? 'IPv4'} service ports`);
    return { ruleset: standaloneRuleset(compileFamily(model)), policies: new Map(), model };
  };
  const [oldPath = '', newPath = ''] = positionals;
  const oldSide = load(oldPath);
  const newSide = load(newPath);
  const family: IPFamily = wanted ?? oldSide.model?.family ?? newSide.model?.family ?? 'IPv4';
  const model = oldSide.model ?? newSide.model;
  const v4 = family === 'IPv4';

  const flagIP = values['node-ip']?.flatMap((s) => s.split(',')).map((s) => parseIP(s.trim())).find((ip) => ip?.family === family);
  const nodeIP: IPAddress = flagIP ?? (model?.node.primaryIP === undefined ? undefined : parseIP(model.node.primaryIP)) ?? ipLiteral(v4 ? '192.0.2.1' : '2001:db8::1');
  const detector = model?.node.detector;
  const flagCIDR = values['cluster-cidr']?.flatMap((s) => s.split(',')).map((s) => parseCIDR(s.trim())).find((c) => c?.family === family);
  const podRange: CIDR = flagCIDR ?? (detector?.kind === 'cidr' ? parseCIDR(detector.cidr) : undefined) ?? cidrLiteral(v4 ? '10.244.0.0/16' : 'fd00:244::/48');
  const podIface = detector?.kind === 'interface' ? detector.name.replace(/\+$/, '0') : 'kpxpod0';
  const hostBits = v4 ? 32 : 128;
  const net: NodeNetwork = {
    interfaces: [
      { name: 'eth0', addresses: [{ ip: nodeIP, prefix: { family, network: nodeIP.value, prefix: hostBits } }] },
      { name: podIface, addresses: [{ ip: { family, value: podRange.network + 1n }, prefix: podRange }] },
    ],
    extraLocal: [],
  };
  const clients: ProbeClient[] = [
    { name: 'a pod on this node', ip: { family, value: podRange.network + 77n }, inIface: podIface },
    { name: 'the node itself', ip: nodeIP, inIface: undefined },
    { name: 'an external client', ip: ipLiteral(v4 ? '203.0.113.77' : '2001:db8:ffff::77'), inIface: 'eth0' },
  ];
  const result = behaviouralDiff({ old: oldSide, new: newSide, net, nodeIP, clients });
  if (output === 'json') {
    io.stdout(`${JSON.stringify({ version: 1, old: oldPath, new: newPath, family, probes: result.probes, differences: result.differences }, null, 2)}\n`);
  } else {
    const out = [`kpx diff ${oldPath} -> ${newPath} (${family}): ${String(result.probes)} probes, ${String(result.differences.length)} behave differently`];
    for (const d of result.differences) out.push('', `${d.frontend} from ${d.client}:`, `  - ${d.old}`, `  + ${d.new}`);
    io.stdout(out.join('\n') + '\n');
  }
  return result.differences.length > 0 ? 1 : 0;
}
