/**
 * Behaviour of a ruleset as a set of probes: for each Service frontend found in the rules and each
 * kind of client, the outcome distribution of a new connection. Two rulesets behave the same when
 * every probe has the same distribution; `kpx diff` prints the probes that differ.
 */
import type { Ruleset } from '../compile/ruleset.ts';
import { formatIP, parseAddressOrCIDR, type CIDR, type IPAddress } from '../model/ip.ts';
import type { EngineContext } from './engine.ts';
import { traceNewConnection, type Outcome } from './netfilter.ts';
import { endpointText, type NodeNetwork, type SimProtocol } from './packet.ts';

export interface ProbeFrontend {
  /** What the rules call it, e.g. `shop/web:http cluster IP`. */
  readonly label: string;
  readonly protocol: SimProtocol;
  /** undefined for a NodePort: probed on the node's address. */
  readonly ip: IPAddress | undefined;
  readonly port: number;
}

export interface ProbeClient {
  readonly name: string;
  readonly ip: IPAddress;
  /** undefined: sent by the node itself. */
  readonly inIface: string | undefined;
}

/** Service frontends kube-proxy-style rules dispatch on: KUBE-SERVICES and KUBE-NODEPORTS in nat. */
export function frontendsOfRuleset(ruleset: Ruleset): ProbeFrontend[] {
  const nat = ruleset.tables.find((t) => t.name === 'nat');
  const out = new Map<string, ProbeFrontend>();
  for (const chainName of ['KUBE-SERVICES', 'KUBE-NODEPORTS']) {
    for (const rule of nat?.chains.find((c) => c.name === chainName)?.rules ?? []) {
      let protocol: SimProtocol | undefined;
      let ip: IPAddress | undefined;
      let port: number | undefined;
      let label = '';
      for (const c of rule.clauses) {
        if (c.kind === 'protocol' && !c.negate && (c.protocol === 'tcp' || c.protocol === 'udp' || c.protocol === 'sctp')) protocol = c.protocol;
        if (c.kind === 'destination' && !c.negate) {
          const cidr: CIDR | undefined = parseAddressOrCIDR(c.cidr);
          const hostBits = cidr?.family === 'IPv4' ? 32 : 128;
          if (cidr?.prefix === hostBits) ip = { family: cidr.family, value: cidr.network };
        }
        if (c.kind === 'destinationPort' && !c.negate && c.from === c.to) port = c.from;
        if (c.kind === 'comment') label = c.text;
      }
      if (protocol === undefined || port === undefined) continue;
      if (chainName === 'KUBE-NODEPORTS') {
        if (ip !== undefined) continue; // the localhost variant of a NodePort rule
        label = `${label} node port`;
      } else if (ip === undefined) continue;
      const key = `${protocol} ${ip === undefined ? 'node' : formatIP(ip)} ${String(port)}`;
      if (!out.has(key)) out.set(key, { label: label || key, protocol, ip, port });
    }
  }
  return [...out.values()];
}

/** One line per outcome, sorted: the comparable form of a distribution. */
export function distributionText(outs: readonly Outcome[]): string {
  const merged = new Map<string, number>();
  for (const o of outs) {
    const key = `${o.verdict}${o.destination === null ? '' : ` to ${o.destination}`}${o.masquerade ? ' (masqueraded)' : ''}`;
    merged.set(key, (merged.get(key) ?? 0) + o.probability);
  }
  return [...merged]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, p]) => `${k} p=${String(+p.toFixed(6))}`)
    .join('; ');
}

export interface ProbeResult {
  readonly frontend: string;
  readonly client: string;
  readonly old: string;
  readonly new: string;
}

export interface BehaviourInput {
  readonly old: { readonly ruleset: Ruleset; readonly policies: EngineContext['policies'] };
  readonly new: { readonly ruleset: Ruleset; readonly policies: EngineContext['policies'] };
  readonly net: NodeNetwork;
  readonly nodeIP: IPAddress;
  readonly clients: readonly ProbeClient[];
}

/** Probes both rulesets with every frontend either of them has; returns the probes that differ. */
export function behaviouralDiff(input: BehaviourInput): { probes: number; differences: ProbeResult[] } {
  const frontends = new Map<string, ProbeFrontend>();
  for (const f of [...frontendsOfRuleset(input.old.ruleset), ...frontendsOfRuleset(input.new.ruleset)]) {
    frontends.set(`${f.protocol} ${f.ip === undefined ? '' : formatIP(f.ip)} ${String(f.port)}`, f);
  }
  const ctx = (side: BehaviourInput['old']): EngineContext => ({ ruleset: side.ruleset, policies: side.policies, net: input.net, now: 0, lines: new Map(), recordPath: false });
  const oldCtx = ctx(input.old);
  const newCtx = ctx(input.new);
  const differences: ProbeResult[] = [];
  let probes = 0;
  for (const f of frontends.values()) {
    const dst = f.ip ?? input.nodeIP;
    for (const client of input.clients) {
      if (client.ip.family !== dst.family) continue;
      probes++;
      const packet = { protocol: f.protocol, src: client.ip, dst, sport: 40000, dport: f.port, inIface: client.inIface };
      const before = distributionText(traceNewConnection(oldCtx, packet));
      const after = distributionText(traceNewConnection(newCtx, packet));
      if (before !== after) {
        differences.push({ frontend: `${f.label} (${f.protocol} ${endpointText(dst, f.port)})`, client: `${client.name} (${formatIP(client.ip)})`, old: before, new: after });
      }
    }
  }
  return { probes, differences };
}
