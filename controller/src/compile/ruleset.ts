/**
 * The structured Ruleset: tables → chains → rules, each rule an ordered list of match clauses and
 * one target. The compiler builds it, render.ts turns it into iptables-restore text, and the
 * simulator's parser reads text back into the same shape.
 *
 * Clause order is part of the data: it is the token order kube-proxy writes (reference §3,
 * "Match-token order conventions"), so rendering is a plain walk over the list.
 */

export type TableName = 'raw' | 'mangle' | 'nat' | 'filter';

/** Netfilter's built-in chains per table. */
export const BUILTIN_CHAINS: Readonly<Record<TableName, readonly string[]>> = {
  raw: ['PREROUTING', 'OUTPUT'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
};

export type L4Protocol = 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv6' | 'all';

export type Clause =
  /** `-m comment --comment TEXT` */
  | { readonly kind: 'comment'; readonly text: string }
  /** `[!] -p PROTO`, preceded by `-m PROTO` when `module` (kube-proxy writes `-m tcp -p tcp`). */
  | { readonly kind: 'protocol'; readonly protocol: L4Protocol; readonly negate: boolean; readonly module: boolean }
  /** `[!] -s CIDR` */
  | { readonly kind: 'source'; readonly cidr: string; readonly negate: boolean }
  /** `[!] -d CIDR` */
  | { readonly kind: 'destination'; readonly cidr: string; readonly negate: boolean }
  /** `[!] --sport N[:M]` */
  | { readonly kind: 'sourcePort'; readonly from: number; readonly to: number; readonly negate: boolean }
  /** `[!] --dport N[:M]` */
  | { readonly kind: 'destinationPort'; readonly from: number; readonly to: number; readonly negate: boolean }
  /** `[!] -i NAME` / `[!] -o NAME` (a trailing `+` is a prefix wildcard) */
  | { readonly kind: 'inInterface'; readonly name: string; readonly negate: boolean }
  | { readonly kind: 'outInterface'; readonly name: string; readonly negate: boolean }
  /** `-m addrtype [!] --src-type T` / `[!] --dst-type T` */
  | { readonly kind: 'addrtype'; readonly direction: 'src' | 'dst'; readonly type: string; readonly negate: boolean }
  /** `-m statistic --mode random --probability P` (P kept as text: its exact spelling matters). */
  | { readonly kind: 'statisticRandom'; readonly probability: string }
  /** `-m statistic --mode nth --every N --packet P` */
  | { readonly kind: 'statisticNth'; readonly every: number; readonly packet: number }
  /** `-m recent --name N (--set | --rcheck [--seconds S] [--reap] | --update ...)` */
  | {
      readonly kind: 'recent';
      readonly name: string;
      readonly action: 'set' | 'rcheck' | 'update' | 'remove';
      readonly seconds: number | undefined;
      readonly reap: boolean;
      readonly side: 'rsource' | 'rdest' | undefined;
      readonly mask: string | undefined;
    }
  /** `-m mark [!] --mark V[/M]` */
  | { readonly kind: 'mark'; readonly value: string; readonly mask: string | undefined; readonly negate: boolean }
  /** `-m conntrack [!] --ctstate A,B` */
  | { readonly kind: 'ctstate'; readonly states: readonly string[]; readonly negate: boolean; readonly module: 'conntrack' | 'state' }
  /** `-m nfacct --nfacct-name N` */
  | { readonly kind: 'nfacct'; readonly name: string }
  /** `-m multiport [!] --dports|--sports|--ports P[,P:Q]...` */
  | { readonly kind: 'multiport'; readonly direction: 'dst' | 'src' | 'any'; readonly ranges: readonly { readonly from: number; readonly to: number }[]; readonly negate: boolean }
  /** `[!] --tcp-flags MASK COMP` (`--syn` is `--tcp-flags FIN,SYN,RST,ACK SYN`) */
  | { readonly kind: 'tcpFlags'; readonly mask: readonly string[]; readonly comp: readonly string[]; readonly negate: boolean }
  /** `[!] --icmp-type T` / `--icmpv6-type T` (name or number; `any` matches all) */
  | { readonly kind: 'icmpType'; readonly type: string; readonly negate: boolean; readonly v6: boolean };

export type Target =
  | { readonly kind: 'none' }
  | { readonly kind: 'jump'; readonly chain: string }
  | { readonly kind: 'goto'; readonly chain: string }
  | { readonly kind: 'ACCEPT' }
  | { readonly kind: 'DROP' }
  | { readonly kind: 'RETURN' }
  | { readonly kind: 'REJECT'; readonly rejectWith: string | undefined }
  | { readonly kind: 'DNAT'; readonly toDestination: string }
  | { readonly kind: 'SNAT'; readonly toSource: string; readonly randomFully: boolean }
  | { readonly kind: 'MASQUERADE'; readonly randomFully: boolean; readonly toPorts: string | undefined }
  | { readonly kind: 'REDIRECT'; readonly toPorts: string | undefined }
  | { readonly kind: 'MARK'; readonly op: 'or' | 'xor' | 'set' | 'set-xmark' | 'and'; readonly value: string; readonly mask: string | undefined }
  | { readonly kind: 'LOG'; readonly prefix: string | undefined }
  | { readonly kind: 'NOTRACK' };

export interface Rule {
  readonly clauses: readonly Clause[];
  readonly target: Target;
}

export interface Chain {
  readonly name: string;
  readonly rules: readonly Rule[];
}

export interface Table {
  readonly name: TableName;
  /** Declaration order. Built-in chains are included only in standalone (save) form. */
  readonly chains: readonly Chain[];
}

export interface Ruleset {
  readonly family: 'IPv4' | 'IPv6';
  readonly tables: readonly Table[];
}

export function isBuiltinChain(table: TableName, chain: string): boolean {
  return BUILTIN_CHAINS[table].includes(chain);
}

/** The chain a rule passes control to, if any. */
export function targetChain(target: Target): string | undefined {
  return target.kind === 'jump' || target.kind === 'goto' ? target.chain : undefined;
}

// Small constructors, so compile code reads like the rules it writes.

export const comment = (text: string): Clause => ({ kind: 'comment', text });
export const proto = (protocol: L4Protocol): Clause => ({ kind: 'protocol', protocol, negate: false, module: true });
export const src = (cidr: string, negate = false): Clause => ({ kind: 'source', cidr, negate });
export const dst = (cidr: string, negate = false): Clause => ({ kind: 'destination', cidr, negate });
export const dport = (port: number): Clause => ({ kind: 'destinationPort', from: port, to: port, negate: false });
export const addrtype = (direction: 'src' | 'dst', type = 'LOCAL', negate = false): Clause => ({ kind: 'addrtype', direction, type, negate });
export const ctstate = (states: readonly string[], negate = false): Clause => ({ kind: 'ctstate', states, negate, module: 'conntrack' });
export const markMatch = (value: string, mask: string | undefined, negate = false): Clause => ({ kind: 'mark', value, mask, negate });
export const nfacct = (name: string): Clause => ({ kind: 'nfacct', name });
export const inIface = (name: string, negate = false): Clause => ({ kind: 'inInterface', name, negate });

export const jump = (chain: string): Target => ({ kind: 'jump', chain });
export const ACCEPT: Target = { kind: 'ACCEPT' };
export const DROP: Target = { kind: 'DROP' };
export const RETURN: Target = { kind: 'RETURN' };
export const REJECT: Target = { kind: 'REJECT', rejectWith: undefined };
export const NO_TARGET: Target = { kind: 'none' };

export const rule = (clauses: readonly Clause[], target: Target): Rule => ({ clauses, target });
