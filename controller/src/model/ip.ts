/**
 * IP addresses and CIDRs as Kubernetes and kube-proxy read them.
 *
 * Parsing follows k8s.io/utils/net ParseIPSloppy / ParseCIDRSloppy (the forms the apiserver has
 * accepted for years): IPv4 parts may carry leading zeros and are read as decimal, IPv6 is
 * case-insensitive, and an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) is an IPv4 address.
 * Formatting is canonical (Go's net.IP.String): what kube-proxy writes into rules.
 */

export type IPFamily = 'IPv4' | 'IPv6';

export interface IPAddress {
  readonly family: IPFamily;
  /** The address as an unsigned integer of 32 or 128 bits. */
  readonly value: bigint;
}

export interface CIDR {
  readonly family: IPFamily;
  /** The network address (host bits cleared). */
  readonly network: bigint;
  readonly prefix: number;
}

export function familyBits(family: IPFamily): number {
  return family === 'IPv4' ? 32 : 128;
}

function parseIPv4Parts(text: string): bigint | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    // Sloppy parsing: decimal digits, leading zeros allowed, each part at most 255.
    if (!/^[0-9]{1,10}$/.test(part)) return undefined;
    const n = Number.parseInt(part, 10);
    if (n > 255) return undefined;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseIPv6(text: string): bigint | undefined {
  if (text.includes('%')) return undefined; // zones are not valid in Kubernetes objects
  let head = text;
  let tailV4: bigint | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tailV4 = parseIPv4Parts(text.slice(lastColon + 1));
    if (tailV4 === undefined) return undefined;
    // "64:ff9b::1.2.3.4" keeps its "::"; "::ffff:1.2.3.4" drops the separator before the tail.
    head = text[lastColon - 1] === ':' ? text.slice(0, lastColon + 1) : text.slice(0, lastColon);
  }
  const groupsNeeded = tailV4 === undefined ? 8 : 6;
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const parseGroups = (s: string): bigint[] | undefined => {
    if (s === '') return [];
    const out: bigint[] = [];
    for (const g of s.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(BigInt(Number.parseInt(g, 16)));
    }
    return out;
  };
  let groups: bigint[];
  if (halves.length === 2) {
    const left = parseGroups(halves[0] ?? '');
    const right = parseGroups(halves[1] ?? '');
    if (left === undefined || right === undefined) return undefined;
    const missing = groupsNeeded - left.length - right.length;
    if (missing < 1) return undefined;
    groups = [...left, ...Array<bigint>(missing).fill(0n), ...right];
  } else {
    const all = parseGroups(head);
    if (all?.length !== groupsNeeded) return undefined;
    groups = all;
  }
  let value = 0n;
  for (const g of groups) value = (value << 16n) | g;
  if (tailV4 !== undefined) value = (value << 32n) | tailV4;
  return value;
}

/** Parses an IP address the way the apiserver and kube-proxy do; undefined if it is not one. */
export function parseIP(text: string): IPAddress | undefined {
  if (text.includes(':')) {
    const value = parseIPv6(text);
    if (value === undefined) return undefined;
    // Go treats IPv4-mapped IPv6 addresses as IPv4 (net.IP.To4() != nil).
    if (value >> 32n === 0xffffn) return { family: 'IPv4', value: value & 0xffffffffn };
    return { family: 'IPv6', value };
  }
  const v4 = parseIPv4Parts(text);
  return v4 === undefined ? undefined : { family: 'IPv4', value: v4 };
}

const formatted = new Map<bigint, string>();
const formattedV6 = new Map<bigint, string>();

/** Canonical text of an address (Go's net.IP.String). */
export function formatIP(ip: IPAddress): string {
  const cache = ip.family === 'IPv4' ? formatted : formattedV6;
  let text = cache.get(ip.value);
  if (text === undefined) {
    text = formatUncached(ip);
    if (cache.size > 100_000) cache.clear();
    cache.set(ip.value, text);
  }
  return text;
}

function formatUncached(ip: IPAddress): string {
  if (ip.family === 'IPv4') {
    const v = ip.value;
    return [24n, 16n, 8n, 0n].map((s) => ((v >> s) & 0xffn).toString()).join('.');
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952 as Go does it: compress the longest run (>= 2 groups) of zeros, the first on ties.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number[]): string => g.map((n) => n.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** For constants the code itself spells: a bad one is a programming error. */
export function ipLiteral(text: string): IPAddress {
  const ip = parseIP(text);
  if (ip === undefined) throw new TypeError(`"${text}" is not an IP address`);
  return ip;
}

export function cidrLiteral(text: string): CIDR {
  const c = parseCIDR(text);
  if (c === undefined) throw new TypeError(`"${text}" is not a CIDR`);
  return c;
}

/** Parses and re-formats; undefined if the text is not an IP address. */
export function canonicalIP(text: string): string | undefined {
  const ip = parseIP(text);
  return ip === undefined ? undefined : formatIP(ip);
}

export function ipFamilyOf(text: string): IPFamily | undefined {
  return parseIP(text)?.family;
}

/** Parses a CIDR (sloppy IP part, decimal prefix), clearing host bits as Go's ParseCIDR does. */
export function parseCIDR(text: string): CIDR | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ipText = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(prefixText)) return undefined;
  let prefix = Number.parseInt(prefixText, 10);
  const ip = parseIP(ipText);
  if (ip === undefined) return undefined;
  let { family } = ip;
  if (family === 'IPv4' && ipText.includes(':')) {
    // "::ffff:a.b.c.d/n" is a 128-bit mask over a mapped address; only /96 and longer map to IPv4.
    if (prefix < 96 || prefix > 128) return undefined;
    prefix -= 96;
    family = 'IPv4';
  }
  const bits = familyBits(family);
  if (prefix > bits) return undefined;
  return { family, network: maskValue(ip.value, prefix, bits), prefix };
}

function maskValue(value: bigint, prefix: number, bits: number): bigint {
  const hostBits = BigInt(bits - prefix);
  return (value >> hostBits) << hostBits;
}

export function formatCIDR(cidr: CIDR): string {
  return `${formatIP({ family: cidr.family, value: cidr.network })}/${String(cidr.prefix)}`;
}

export function cidrContains(cidr: CIDR, ip: IPAddress): boolean {
  if (cidr.family !== ip.family) return false;
  if (cidr.family === 'IPv4') {
    // 32-bit arithmetic on numbers: BigInt shifts cost far more on the simulator's hot path.
    if (cidr.prefix === 0) return true;
    const shift = 32 - cidr.prefix;
    return Number(ip.value) >>> shift === Number(cidr.network) >>> shift;
  }
  return maskValue(ip.value, cidr.prefix, 128) === cidr.network;
}

/** A single-address CIDR (/32 or /128) for an address. */
export function hostCIDR(ip: IPAddress): CIDR {
  return { family: ip.family, network: ip.value, prefix: familyBits(ip.family) };
}

/** Parses `a.b.c.d`, `a.b.c.d/n`, `v6` or `v6/n` (an address is a host CIDR). */
export function parseAddressOrCIDR(text: string): CIDR | undefined {
  if (text.includes('/')) return parseCIDR(text);
  const ip = parseIP(text);
  return ip === undefined ? undefined : hostCIDR(ip);
}

export const LOOPBACK_V4: IPAddress = { family: 'IPv4', value: 0x7f000001n };
export const LOOPBACK_V6: IPAddress = { family: 'IPv6', value: 1n };

/** True if the address is in 127.0.0.0/8 or is ::1. */
export function isLoopback(ip: IPAddress): boolean {
  return ip.family === 'IPv4' ? ip.value >> 24n === 127n : ip.value === 1n;
}

/** Go's net.JoinHostPort: brackets around IPv6 hosts. */
export function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${String(port)}` : `${host}:${String(port)}`;
}
