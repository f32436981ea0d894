/**
 * Packets, the node's network (local addresses, interfaces, routes) and the simulated state a
 * packet carries through netfilter.
 */
import { cidrContains, formatIP, hostCIDR, parseAddressOrCIDR, parseCIDR, parseIP, type CIDR, type IPAddress, type IPFamily } from '../model/ip.ts';

export type SimProtocol = 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv6';

export interface Packet {
  readonly family: IPFamily;
  readonly protocol: SimProtocol;
  readonly src: IPAddress;
  readonly dst: IPAddress;
  /** 0 for protocols without ports. */
  readonly sport: number;
  readonly dport: number;
  /** The interface the packet arrived on; undefined for locally generated packets. */
  readonly inIface: string | undefined;
  /** Set by the routing decision. */
  readonly outIface: string | undefined;
  /** skb->mark */
  readonly mark: number;
  /** TCP flags set on this packet (a connection's first packet is a SYN). */
  readonly tcpFlags?: readonly string[];
  /** ICMP type (echo-request by default for ICMP traces). */
  readonly icmpType?: number;
}

const ICMP_TYPES: Readonly<Record<string, number>> = {
  'echo-reply': 0, pong: 0, 'destination-unreachable': 3, 'source-quench': 4, redirect: 5, 'echo-request': 8, ping: 8,
  'router-advertisement': 9, 'router-solicitation': 10, 'time-exceeded': 11, 'parameter-problem': 12, 'timestamp-request': 13, 'timestamp-reply': 14,
};
const ICMPV6_TYPES: Readonly<Record<string, number>> = {
  'destination-unreachable': 1, 'packet-too-big': 2, 'time-exceeded': 3, 'parameter-problem': 4, 'echo-request': 128, ping: 128, 'echo-reply': 129, pong: 129,
  'router-solicitation': 133, 'router-advertisement': 134, 'neighbour-solicitation': 135, 'neighbor-solicitation': 135, 'neighbour-advertisement': 136, 'neighbor-advertisement': 136,
};

/** The numeric type of an `--icmp-type` value (`8`, `8/0`, `echo-request`); undefined if unknown. */
export function icmpTypeNumber(text: string, v6: boolean): number | undefined {
  const numeric = /^([0-9]+)(?:\/[0-9]+)?$/.exec(text);
  if (numeric !== null) return Number(numeric[1]);
  return (v6 ? ICMPV6_TYPES : ICMP_TYPES)[text];
}

/**
 * parseIP, with a fast path for a plain dotted quad (one to three digits per part): the simulator
 * reads every address of a large ruleset. Anything else is left to parseIP.
 */
export function parseAddress(text: string): IPAddress | undefined {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i) - 48;
    if (c >= 0 && c <= 9 && digits < 3) {
      part = part * 10 + c;
      digits++;
    } else if (c === -2 && digits > 0 && dots < 3 && part <= 255) {
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else {
      return parseIP(text);
    }
  }
  if (dots !== 3 || digits === 0 || part > 255) return parseIP(text);
  return { family: 'IPv4', value: BigInt(value * 256 + part) };
}

/** parseAddressOrCIDR, with parseAddress's fast path for single addresses (`a.b.c.d`, `a.b.c.d/32`). */
export function parseAddressOrPrefix(text: string): CIDR | undefined {
  const slash = text.indexOf('/');
  if (slash < 0 || text.endsWith('/32')) {
    const ip = parseAddress(slash < 0 ? text : text.slice(0, slash));
    if (ip?.family === 'IPv4') return hostCIDR(ip);
  }
  return parseAddressOrCIDR(text);
}

export interface Interface {
  readonly name: string;
  /** Each address is local; each prefix is a connected route via this interface. */
  readonly addresses: readonly { readonly ip: IPAddress; readonly prefix: CIDR }[];
}

export interface NodeNetwork {
  readonly interfaces: readonly Interface[];
  /** Extra local addresses not bound to a listed interface (e.g. LB VIPs on the node). */
  readonly extraLocal: readonly IPAddress[];
  /**
   * net.ipv4.conf.all.route_localnet: whether a packet with a 127.0.0.0/8 source may be routed
   * off the loopback device (after DNAT of a localhost NodePort). Kernel default 0; kube-proxy
   * and kpx set 1 when localhost NodePorts are on.
   */
  readonly routeLocalnet?: boolean;
}

export function isLocalAddress(net: NodeNetwork, ip: IPAddress): boolean {
  // Loopback (127.0.0.0/8, ::1), compared without BigInt shifts.
  if (ip.family === 'IPv4' ? ip.value >= 0x7f000000n && ip.value <= 0x7fffffffn : ip.value === 1n) return true;
  for (const i of net.interfaces) {
    for (const a of i.addresses) if (a.ip.value === ip.value && a.ip.family === ip.family) return true;
  }
  for (const a of net.extraLocal) if (a.value === ip.value && a.family === ip.family) return true;
  return false;
}

/** The interface a packet to `dst` leaves by: loopback for local, a connected prefix, else the default. */
export function routeOut(net: NodeNetwork, dst: IPAddress): string {
  if (isLocalAddress(net, dst)) return 'lo';
  let best: { name: string; prefix: number } | undefined;
  for (const i of net.interfaces) {
    for (const a of i.addresses) {
      if (cidrContains(a.prefix, dst) && (best === undefined || a.prefix.prefix > best.prefix)) best = { name: i.name, prefix: a.prefix.prefix };
    }
  }
  return best?.name ?? net.interfaces[0]?.name ?? 'eth0';
}

/** The interface a packet from `src` arrives on (connected prefix, else the first interface). */
export function arrivalInterface(net: NodeNetwork, src: IPAddress): string {
  if (isLocalAddress(net, src)) return 'lo';
  for (const i of net.interfaces) if (i.addresses.some((a) => cidrContains(a.prefix, src))) return i.name;
  return net.interfaces[0]?.name ?? 'eth0';
}

/** The primary address of an interface (REDIRECT's destination); loopback for `lo`. */
export function interfaceAddress(net: NodeNetwork, name: string, family: IPFamily): IPAddress | undefined {
  if (name === 'lo') return family === 'IPv4' ? { family, value: 0x7f000001n } : { family, value: 1n };
  return net.interfaces.find((i) => i.name === name)?.addresses.find((a) => a.ip.family === family)?.ip;
}

/**
 * The source MASQUERADE picks (the kernel's inet_select_addr): on the outgoing interface, the
 * address whose subnet holds the next hop, else its first address; out of `lo`, where only
 * host-scope addresses live, the first global address of the node.
 */
export function masqueradeAddress(net: NodeNetwork, outIface: string, nextHop: IPAddress): IPAddress | undefined {
  const family = nextHop.family;
  if (outIface === 'lo') return net.interfaces.flatMap((i) => i.addresses).find((a) => a.ip.family === family)?.ip;
  const addresses = net.interfaces.find((i) => i.name === outIface)?.addresses.filter((a) => a.ip.family === family) ?? [];
  return (addresses.find((a) => cidrContains(a.prefix, nextHop)) ?? addresses[0])?.ip;
}

/** Parses `NAME=ADDR/PREFIX[,ADDR/PREFIX]` (the `--iface` flag). */
export function parseInterfaceSpec(spec: string): Interface | string {
  const eq = spec.indexOf('=');
  if (eq <= 0) return `"${spec}" is not NAME=ADDR/PREFIX[,ADDR/PREFIX]`;
  const name = spec.slice(0, eq);
  const addresses = [];
  for (const part of spec.slice(eq + 1).split(',')) {
    const slash = part.indexOf('/');
    const ip = parseIP(slash < 0 ? part : part.slice(0, slash));
    const prefix = parseCIDR(slash < 0 ? `${part}/${part.includes(':') ? '128' : '32'}` : part);
    if (ip === undefined || prefix === undefined) return `"${part}" in --iface ${name} is not ADDR/PREFIX`;
    addresses.push({ ip, prefix });
  }
  return { name, addresses };
}

/** One interface `eth0` holding the given addresses as host routes (the default without --iface). */
export function singleInterfaceNetwork(addresses: readonly IPAddress[]): NodeNetwork {
  return {
    interfaces: [{ name: 'eth0', addresses: addresses.map((ip) => ({ ip, prefix: { family: ip.family, network: ip.value, prefix: ip.family === 'IPv4' ? 32 : 128 } })) }],
    extraLocal: [],
  };
}

export function endpointText(ip: IPAddress, port: number): string {
  if (ip.family === 'IPv4') {
    // formatIP's dotted quad, without its BigInt shifts (verification writes up many endpoints).
    const n = Number(ip.value);
    return `${String(n >>> 24)}.${String((n >>> 16) & 255)}.${String((n >>> 8) & 255)}.${String(n & 255)}:${String(port)}`;
  }
  return `[${formatIP(ip)}]:${String(port)}`;
}
