/**
 * The harness's network, built from network namespaces and veth pairs:
 *
 *   host: kpxc-br0 10.200.0.1/24 (apiserver binds here), routes to each pod CIDR via its node
 *     ├─ kpxc-n1 ── eth0 10.200.0.11/24   node netns kpxc-node-1 (ip_forward=1), default via 10.200.0.1
 *     │                cbr0 10.244.1.1/24 (pod bridge) ── vpN ── eth0 10.244.1.X/32  pod netns
 *     │                route 10.244.2.0/24 via 10.200.0.12 (one per other node)
 *     ├─ kpxc-n2 ── eth0 10.200.0.12/24   node netns kpxc-node-2 ... cbr0 10.244.2.1/24
 *     └─ kpxc-ext ─ eth0 10.200.0.100/24  external client netns kpxc-ext, default via 10.200.0.1
 *
 * Pods have /32 addresses with an on-link route to the pod gateway, so every packet between two
 * pods on one node (and every reply) is routed by the node, never bridged: conntrack sees both
 * directions, as with a routed CNI. Bridge netfilter is off in the nodes and on the host bridge.
 * Every resource is recorded in the state file before it is created.
 */
import type { ClusterState, NodeState, PodState } from './state.ts';
import { RESOURCE_PREFIX } from './state.ts';
import { run, tryRun } from './sys.ts';

export const HOST_BRIDGE = `${RESOURCE_PREFIX}br0`;
export const BRIDGE_SUBNET_PREFIX = '10.200.0';
export const BRIDGE_IP = `${BRIDGE_SUBNET_PREFIX}.1`;
export const EXTERNAL_IP = `${BRIDGE_SUBNET_PREFIX}.100`;
export const CLUSTER_CIDR = '10.244.0.0/16';
export const POD_BRIDGE = 'cbr0';
/** First host number handed out to pods in a node's /24. */
export const FIRST_POD_HOST = 10;

export function nodePlan(index: number, zone: string): NodeState {
  const n = String(index);
  return {
    name: `node-${n}`,
    netns: `${RESOURCE_PREFIX}node-${n}`,
    ip: `${BRIDGE_SUBNET_PREFIX}.${String(10 + index)}`,
    zone,
    podCIDR: `10.244.${n}.0/24`,
    podGateway: `10.244.${n}.1`,
    hostLink: `${RESOURCE_PREFIX}n${n}`,
    nextPodHost: FIRST_POD_HOST,
    nextPodLink: 0,
  };
}

type Persist = () => void;

async function ipIn(netns: string, ...args: string[]): Promise<void> {
  await run('ip', ['-n', netns, ...args]);
}

async function sysctls(netns: string, settings: Readonly<Record<string, string>>): Promise<void> {
  await run('ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', ...Object.entries(settings).map(([k, v]) => `${k}=${v}`)]);
}

/** Creates a network namespace (recorded first) with loopback up. */
export async function addNetns(state: ClusterState, persist: Persist, name: string): Promise<void> {
  state.netns.push(name);
  persist();
  await run('ip', ['netns', 'add', name]);
  await ipIn(name, 'link', 'set', 'lo', 'up');
}

async function addHostVeth(state: ClusterState, persist: Persist, hostLink: string, netns: string, ip: string): Promise<void> {
  state.hostLinks.push(hostLink);
  persist();
  await run('ip', ['link', 'add', hostLink, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
  await run('ip', ['link', 'set', hostLink, 'master', state.bridge.name, 'up']);
  await ipIn(netns, 'addr', 'add', `${ip}/${String(state.bridge.prefixLength)}`, 'dev', 'eth0');
  await ipIn(netns, 'link', 'set', 'eth0', 'up');
  await ipIn(netns, 'route', 'add', 'default', 'via', state.bridge.ip, 'dev', 'eth0');
}

async function setupNode(state: ClusterState, persist: Persist, node: NodeState): Promise<void> {
  await addNetns(state, persist, node.netns);
  await sysctls(node.netns, {
    'net.ipv4.ip_forward': '1',
    // A routed hop that leaves by the interface it came in on must not teach the sender a shortcut.
    'net.ipv4.conf.all.send_redirects': '0',
    'net.ipv4.conf.default.send_redirects': '0',
    'net.bridge.bridge-nf-call-iptables': '0',
    'net.bridge.bridge-nf-call-ip6tables': '0',
  });
  await addHostVeth(state, persist, node.hostLink, node.netns, node.ip);
  await ipIn(node.netns, 'link', 'add', POD_BRIDGE, 'type', 'bridge');
  await ipIn(node.netns, 'addr', 'add', `${node.podGateway}/24`, 'dev', POD_BRIDGE);
  await ipIn(node.netns, 'link', 'set', POD_BRIDGE, 'up');
  for (const other of state.nodes) {
    if (other.name !== node.name) await ipIn(node.netns, 'route', 'add', other.podCIDR, 'via', other.ip, 'dev', 'eth0');
  }
  // The host routes pod CIDRs to their nodes (apiserver replies to pods); the route dies with the bridge.
  await run('ip', ['route', 'add', node.podCIDR, 'via', node.ip, 'dev', state.bridge.name]);
}

/** The host bridge, every node namespace and the external client namespace. */
export async function createNetwork(state: ClusterState, persist: Persist): Promise<void> {
  state.hostLinks.push(state.bridge.name);
  persist();
  await run('ip', ['link', 'add', state.bridge.name, 'type', 'bridge']);
  // Frames bridged between nodes must not go through the host's own iptables/conntrack (best effort: older kernels lack the option).
  await tryRun('ip', ['link', 'set', state.bridge.name, 'type', 'bridge', 'nf_call_iptables', '0', 'nf_call_ip6tables', '0']);
  await run('ip', ['addr', 'add', `${state.bridge.ip}/${String(state.bridge.prefixLength)}`, 'dev', state.bridge.name]);
  await run('ip', ['link', 'set', state.bridge.name, 'up']);
  for (const node of state.nodes) await setupNode(state, persist, node);
  await addNetns(state, persist, state.external.netns);
  await addHostVeth(state, persist, state.external.hostLink, state.external.netns, state.external.ip);
}

/** Allocates a pod's address and node-side veth name on `node` (synchronous, so parallel callers never collide). */
export function allocatePod(node: NodeState, namespace: string, name: string): PodState {
  if (node.nextPodHost > 254) throw new Error(`node ${node.name} has no free pod address left in ${node.podCIDR}`);
  const host = node.nextPodHost++;
  const link = `vp${String(node.nextPodLink++)}`;
  return {
    namespace,
    name,
    node: node.name,
    ip: node.podCIDR.replace(/0\/24$/, String(host)),
    netns: `${RESOURCE_PREFIX}pod-${namespace}-${name}`,
    nodeLink: link,
  };
}

/** A pod's network namespace behind its node's pod bridge. */
export async function createPodNetwork(state: ClusterState, persist: Persist, node: NodeState, pod: PodState): Promise<void> {
  await addNetns(state, persist, pod.netns);
  await ipIn(node.netns, 'link', 'add', pod.nodeLink, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.netns);
  await ipIn(node.netns, 'link', 'set', pod.nodeLink, 'master', POD_BRIDGE, 'up');
  await ipIn(pod.netns, 'addr', 'add', `${pod.ip}/32`, 'dev', 'eth0');
  await ipIn(pod.netns, 'link', 'set', 'eth0', 'up');
  await ipIn(pod.netns, 'route', 'add', node.podGateway, 'dev', 'eth0', 'scope', 'link');
  await ipIn(pod.netns, 'route', 'add', 'default', 'via', node.podGateway, 'dev', 'eth0');
}

/** Deletes a pod's namespace (its veth pair goes with it). */
export async function deletePodNetwork(state: ClusterState, persist: Persist, pod: PodState): Promise<void> {
  await tryRun('ip', ['netns', 'delete', pod.netns]);
  state.netns = state.netns.filter((n) => n !== pod.netns);
  persist();
}
