/**
 * The gateway topology of the general-ruleset tests: one namespace whose rules are under test
 * (a host firewall, a NAT gateway, a Docker host...) between a LAN, a WAN and a container.
 *
 *   lan ns                        gw ns (rules under test, ip_forward=1)            wan ns
 *   eth0 10.88.0.2/24, .3/24 ── lan0 10.88.0.1/24      wan0 198.51.100.1/24 ── eth0 198.51.100.2/24
 *   default via 10.88.0.1                                   198.51.100.3/24       10.88.0.0/24 via .1
 *                                 docker0 172.17.0.1/16
 *                                      │                                         ctr ns
 *                                      └──────────────────────────────────── eth0 172.17.0.2/16
 *                                                                                 default via 172.17.0.1
 *
 * The WAN host has no default route: it can answer the LAN only through the route to
 * 10.88.0.0/24 via the gateway, and anything else (a SNAT address) only because the gateway's
 * conntrack undoes the translation.
 */
import type { Namespace, Testbed } from './testbed.ts';
import { unlimitIcmp } from './topology.ts';

export const GW_LAN_IP = '10.88.0.1';
export const GW_WAN_IP = '198.51.100.1';
export const GW_WAN_SECONDARY_IP = '198.51.100.3';
export const GW_DOCKER_IP = '172.17.0.1';
export const LAN_IP = '10.88.0.2';
export const LAN_SECOND_IP = '10.88.0.3';
export const WAN_IP = '198.51.100.2';
export const CONTAINER_IP = '172.17.0.2';

export interface GatewayTopology {
  readonly gw: Namespace;
  readonly lan: Namespace;
  readonly wan: Namespace;
  readonly ctr: Namespace;
}

export async function buildGatewayTopology(bed: Testbed): Promise<GatewayTopology> {
  const gw = await bed.namespace('gw');
  const lan = await bed.namespace('lan');
  const wan = await bed.namespace('wan');
  const ctr = await bed.namespace('ctr');
  await gw.sysctl('net.ipv4.ip_forward', '1');
  await gw.sysctl('net.ipv4.conf.all.send_redirects', '0');
  await unlimitIcmp(gw);

  await bed.veth(gw, 'lan0', lan, 'eth0');
  await gw.ip('addr', 'add', `${GW_LAN_IP}/24`, 'dev', 'lan0');
  await lan.ip('addr', 'add', `${LAN_IP}/24`, 'dev', 'eth0');
  await lan.ip('addr', 'add', `${LAN_SECOND_IP}/24`, 'dev', 'eth0');
  await lan.ip('route', 'add', 'default', 'via', GW_LAN_IP);

  await bed.veth(gw, 'wan0', wan, 'eth0');
  await gw.ip('addr', 'add', `${GW_WAN_IP}/24`, 'dev', 'wan0');
  await gw.ip('addr', 'add', `${GW_WAN_SECONDARY_IP}/24`, 'dev', 'wan0');
  await wan.ip('addr', 'add', `${WAN_IP}/24`, 'dev', 'eth0');
  await wan.ip('route', 'add', '10.88.0.0/24', 'via', GW_WAN_IP);

  await bed.veth(gw, 'docker0', ctr, 'eth0');
  await gw.ip('addr', 'add', `${GW_DOCKER_IP}/16`, 'dev', 'docker0');
  await ctr.ip('addr', 'add', `${CONTAINER_IP}/16`, 'dev', 'eth0');
  await ctr.ip('route', 'add', 'default', 'via', GW_DOCKER_IP);
  return { gw, lan, wan, ctr };
}
