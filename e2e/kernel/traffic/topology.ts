/**
 * The kpx node topology of the differential tests, and the simulator's view of a namespace's
 * interfaces read back from the kernel.
 *
 *   external client ns                    node ns (kpx rules, ip_forward=1)                 pod ns ×N
 *   eth0 192.0.2.10/24  ── veth ──  eth0 192.0.2.1/24 (node IP)                          ┌ eth0 10.244.1.10/32
 *        192.0.2.200/24                 cbr0 10.244.1.1/24 (pod bridge) ── vpodN ──────┤ ...
 *   default via 192.0.2.1               default via 192.0.2.10 (eth0)       vcli ─────── client pod 10.244.1.20/32
 *
 * Pods have /32 addresses and an on-link route to the gateway, so every packet between two pods
 * (and every reply) is routed by the node: conntrack sees both directions and no frame is bridged
 * pod-to-pod. That is the L3 path the simulator models; bridge netfilter is switched off in the
 * node namespace (net.bridge.bridge-nf-call-iptables=0) so bridged frames never enter iptables.
 */
import { parseCIDR, parseIP, type IPAddress } from '../../../controller/src/model/ip.ts';
import type { Interface, NodeNetwork } from '../../../controller/src/sim/packet.ts';
import type { Namespace, Testbed } from './testbed.ts';

export const NODE_NAME = 'kpxd-node';
export const NODE_IP = '192.0.2.1';
export const BRIDGE_IP = '10.244.1.1';
export const POD_CIDR = '10.244.1.0/24';
export const CLUSTER_CIDR = '10.244.0.0/16';
/** External client addresses: one inside the LB source range used by the tests, one outside. */
export const EXTERNAL_IP = '192.0.2.10';
export const EXTERNAL_BLOCKED_IP = '192.0.2.200';
export const CLIENT_POD_IP = '10.244.1.20';
/** Every echo server listens here, TCP and UDP. */
export const POD_PORT = 8080;

export interface Pod {
  readonly name: string;
  readonly ip: string;
  readonly ns: Namespace;
}

export interface NodeTopology {
  readonly node: Namespace;
  readonly external: Namespace;
  readonly client: Pod;
  readonly pods: readonly Pod[];
}

async function addPod(bed: Testbed, node: Namespace, name: string, ip: string, hostSide: string): Promise<Pod> {
  const ns = await bed.namespace(name);
  await bed.veth(node, hostSide, ns, 'eth0');
  await node.ip('link', 'set', hostSide, 'master', 'cbr0');
  await ns.ip('addr', 'add', `${ip}/32`, 'dev', 'eth0');
  await ns.ip('route', 'add', BRIDGE_IP, 'dev', 'eth0', 'scope', 'link');
  await ns.ip('route', 'add', 'default', 'via', BRIDGE_IP, 'dev', 'eth0');
  return { name, ip, ns };
}

/** Builds the node, the external client and `podCount` pods plus a client pod. */
export async function buildNodeTopology(bed: Testbed, podCount: number): Promise<NodeTopology> {
  const node = await bed.namespace('node');
  const external = await bed.namespace('ext');
  await node.sysctl('net.ipv4.ip_forward', '1');
  // A routed pod-to-pod hop leaves by the interface it came in on; a redirect would teach the
  // pod a direct path that bypasses the node (and conntrack).
  await node.sysctl('net.ipv4.conf.all.send_redirects', '0');
  await node.sysctl('net.ipv4.conf.default.send_redirects', '0');
  if ((await node.readSysctl('net.bridge.bridge-nf-call-iptables')) !== undefined) await node.sysctl('net.bridge.bridge-nf-call-iptables', '0');
  await unlimitIcmp(node);

  await bed.veth(node, 'eth0', external, 'eth0');
  await node.ip('addr', 'add', `${NODE_IP}/24`, 'dev', 'eth0');
  await external.ip('addr', 'add', `${EXTERNAL_IP}/24`, 'dev', 'eth0');
  await external.ip('addr', 'add', `${EXTERNAL_BLOCKED_IP}/24`, 'dev', 'eth0');
  await external.ip('route', 'add', 'default', 'via', NODE_IP);
  await node.ip('route', 'add', 'default', 'via', EXTERNAL_IP, 'dev', 'eth0');

  await node.ip('link', 'add', 'cbr0', 'type', 'bridge');
  await node.ip('addr', 'add', `${BRIDGE_IP}/24`, 'dev', 'cbr0');
  await node.ip('link', 'set', 'cbr0', 'up');
  const pods: Pod[] = [];
  for (let i = 0; i < podCount; i++) pods.push(await addPod(bed, node, `pod${String(i)}`, `10.244.1.${String(10 + i)}`, `vpod${String(i)}`));
  const client = await addPod(bed, node, 'client', CLIENT_POD_IP, 'vcli');
  return { node, external, client, pods };
}

/**
 * The kernel rate-limits ICMP errors (about 6 per destination, then one a second): a burst of
 * connections to a REJECTed port would see most of them time out instead of being refused. The
 * tests count every connection, so a namespace that REJECTs sends every ICMP error.
 */
export async function unlimitIcmp(ns: Namespace): Promise<void> {
  await ns.sysctl('net.ipv4.icmp_ratemask', '0');
  await ns.sysctl('net.ipv4.icmp_ratelimit', '0');
}

interface IpAddrJson {
  readonly ifname: string;
  readonly addr_info?: readonly { readonly family: string; readonly local: string; readonly prefixlen: number }[];
}

/**
 * The simulator's NodeNetwork for a namespace, read from the kernel: every interface with an
 * IPv4 address (addresses in the kernel's order, primary first, which is the one MASQUERADE and
 * REDIRECT use), the interface holding the default route first (the simulator routes unknown
 * destinations to the first interface). Loopback is implicit in the simulator.
 */
export async function nodeNetworkOf(ns: Namespace): Promise<NodeNetwork> {
  const addrs = JSON.parse((await ns.check('ip', ['-j', '-4', 'addr', 'show'])).stdout) as IpAddrJson[];
  const routes = JSON.parse((await ns.check('ip', ['-j', '-4', 'route', 'show', 'default'])).stdout) as { dev?: string }[];
  const defaultDev = routes[0]?.dev;
  const interfaces: Interface[] = [];
  for (const a of addrs) {
    if (a.ifname === 'lo') continue;
    const addresses = (a.addr_info ?? []).filter((i) => i.family === 'inet').map((i) => {
      const ip = parseIP(i.local);
      const prefix = parseCIDR(`${i.local}/${String(i.prefixlen)}`);
      if (ip === undefined || prefix === undefined) throw new Error(`${ns.name}: cannot read address ${i.local}/${String(i.prefixlen)} of ${a.ifname}`);
      return { ip, prefix };
    });
    if (addresses.length > 0) interfaces.push({ name: a.ifname, addresses });
  }
  interfaces.sort((x, y) => Number(y.name === defaultDev) - Number(x.name === defaultDev));
  return { interfaces, extraLocal: [] };
}

/** The addresses the kernel treats as local (type `local` in the local routing table). */
export async function kernelLocalAddresses(ns: Namespace): Promise<string[]> {
  const routes = JSON.parse((await ns.check('ip', ['-j', '-4', 'route', 'show', 'table', 'local'])).stdout) as { type?: string; dst: string }[];
  return routes.filter((r) => r.type === 'local').map((r) => r.dst).sort();
}

export function ipOf(text: string): IPAddress {
  const ip = parseIP(text);
  if (ip === undefined) throw new Error(`"${text}" is not an IP address`);
  return ip;
}
