/**
 * UDP conntrack cleanup through the `conntrack` CLI (reference §5, the reconciler): list the
 * family's UDP entries, find those whose reply source is not a serving endpoint of the frontend
 * they were addressed to, delete exactly those.
 */
import { canonicalIP, joinHostPort, type IPFamily } from '../model/ip.ts';
import type { ServingEndpoints } from '../sim/conntrack.ts';
import { commandError, runChecked, type CommandRunner } from './exec.ts';

export interface ConntrackFlow {
  readonly protocol: string;
  readonly origSrc: string;
  readonly origDst: string;
  readonly origSport: number;
  readonly origDport: number;
  readonly replySrc: string;
  readonly replyDst: string;
  readonly replySport: number;
  readonly replyDport: number;
}

const TUPLE_KEYS = ['src', 'dst', 'sport', 'dport'] as const;
type TupleKey = (typeof TUPLE_KEYS)[number];

/**
 * Parses `conntrack -L` output, plain (`udp 17 29 src=… dst=… sport=… dport=… [UNREPLIED] src=…`)
 * or `-o extended` (the same after `ipv4 2`). The first src/dst/sport/dport are the original
 * tuple, the second the reply tuple. Lines without ports (icmp) or that are not entries are skipped.
 */
export function parseConntrackList(text: string): ConntrackFlow[] {
  const flows: ConntrackFlow[] = [];
  for (const line of text.split('\n')) {
    const words = line.trim().split(/\s+/);
    const protocol = words[0] === 'ipv4' || words[0] === 'ipv6' ? words[2] : words[0];
    if (protocol === undefined || protocol === '') continue;
    const orig: Partial<Record<TupleKey, string>> = {};
    const reply: Partial<Record<TupleKey, string>> = {};
    for (const word of words) {
      const eq = word.indexOf('=');
      const key = word.slice(0, eq);
      if (eq < 0 || !(TUPLE_KEYS as readonly string[]).includes(key)) continue;
      const tuple = orig[key as TupleKey] === undefined ? orig : reply;
      tuple[key as TupleKey] ??= word.slice(eq + 1);
    }
    const { src: origSrc, dst: origDst, sport: origSport, dport: origDport } = orig;
    const { src: replySrc, dst: replyDst, sport: replySport, dport: replyDport } = reply;
    if (origSrc === undefined || origDst === undefined || origSport === undefined || origDport === undefined) continue;
    if (replySrc === undefined || replyDst === undefined || replySport === undefined || replyDport === undefined) continue;
    flows.push({
      protocol,
      origSrc,
      origDst,
      origSport: Number(origSport),
      origDport: Number(origDport),
      replySrc,
      replyDst,
      replySport: Number(replySport),
      replyDport: Number(replyDport),
    });
  }
  return flows;
}

/** Selects the entries to delete; at least one field must be set. */
export interface FlowFilter {
  readonly origDst?: string;
  readonly origDport?: number;
  readonly replySrc?: string;
  readonly replySport?: number;
}

const familyArg = (family: IPFamily): string => (family === 'IPv4' ? 'ipv4' : 'ipv6');

export class Conntrack {
  readonly #runner: CommandRunner;

  constructor(runner: CommandRunner) {
    this.#runner = runner;
  }

  async listUdp(family: IPFamily): Promise<ConntrackFlow[]> {
    const { stdout } = await runChecked(this.#runner, 'conntrack', ['-L', '-p', 'udp', '-f', familyArg(family)]);
    return parseConntrackList(stdout);
  }

  /** Deletes the family's UDP entries matching `filter`; returns how many went. */
  async deleteFlows(family: IPFamily, filter: FlowFilter): Promise<number> {
    const args = ['-D', '-p', 'udp', '-f', familyArg(family)];
    if (filter.origDst !== undefined) args.push('--orig-dst', filter.origDst);
    if (filter.origDport !== undefined) args.push('--orig-port-dst', String(filter.origDport));
    if (filter.replySrc !== undefined) args.push('--reply-src', filter.replySrc);
    if (filter.replySport !== undefined) args.push('--reply-port-src', String(filter.replySport));
    if (args.length === 5) throw new TypeError('conntrack deleteFlows needs a filter: without one it would delete every UDP entry');
    const result = await this.#runner.run('conntrack', args);
    // conntrack exits 1 when nothing matched; the summary on stderr tells that apart from a failure.
    const deleted = /(\d+) flow entries have been deleted/.exec(result.stderr)?.[1];
    if (deleted !== undefined && (result.exitCode === 0 || deleted === '0')) return Number(deleted);
    throw commandError('conntrack', args, result);
  }
}

/** Canonical text (model/ip.ts) of an address, so conntrack's and the model's spellings compare. */
const canonical = (ip: string): string => canonicalIP(ip) ?? ip;

/**
 * UDP flows addressed to a Service frontend (`ip:port`), or else to a node port (by destination
 * port only, as upstream), whose reply source is not one of that frontend's serving endpoints
 * (reference §5 reconciler; the same decision as sim/conntrack.ts staleUdpEntries).
 */
export function staleFlows(flows: readonly ConntrackFlow[], serving: ServingEndpoints): ConntrackFlow[] {
  const canonicalSet = (ips: ReadonlySet<string>): Set<string> => new Set([...ips].map(canonical));
  const byFrontend = new Map(
    [...serving.byFrontend].map(([key, ips]) => {
      const colon = key.lastIndexOf(':');
      const host = key.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
      return [joinHostPort(canonical(host), Number(key.slice(colon + 1))), canonicalSet(ips)] as const;
    }),
  );
  const byNodePort = new Map([...serving.byNodePort].map(([port, ips]) => [port, canonicalSet(ips)] as const));
  return flows.filter((f) => {
    if (f.protocol !== 'udp') return false;
    const replySrc = canonical(f.replySrc);
    const frontend = byFrontend.get(joinHostPort(canonical(f.origDst), f.origDport));
    if (frontend !== undefined) return !frontend.has(replySrc);
    const nodePort = byNodePort.get(f.origDport);
    return nodePort !== undefined && !nodePort.has(replySrc);
  });
}
