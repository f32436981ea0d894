/**
 * A TCP and UDP echo server for kernel tests. Runs inside a network namespace:
 *
 *   ip netns exec NS node echo-server.ts --name pod0 [--bind ADDR] [--tcp PORT,...] [--udp PORT,...]
 *
 * Every request (a line over TCP, a datagram over UDP) gets one JSON line back (EchoAnswer): the
 * server's name and the addresses it saw, so a client can tell which endpoint answered, whether
 * the connection was masqueraded and where DNAT sent it. Prints `ready` once every port listens;
 * runs until killed.
 */
import { createSocket } from 'node:dgram';
import { createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import type { EchoAnswer } from './protocol.ts';

const { values } = parseArgs({
  options: {
    name: { type: 'string' },
    bind: { type: 'string', default: '0.0.0.0' },
    tcp: { type: 'string', default: '' },
    udp: { type: 'string', default: '' },
  },
});
const name = values.name ?? 'server';
const bind = values.bind;
const ports = (text: string): number[] => text.split(',').filter((p) => p !== '').map(Number);

function answer(proto: EchoAnswer['proto'], remoteAddress: string, remotePort: number, localAddress: string, localPort: number): string {
  const a: EchoAnswer = { server: name, proto, remoteAddress, remotePort, localAddress, localPort };
  return `${JSON.stringify(a)}\n`;
}

function serveTcp(socket: Socket): void {
  let pending = '';
  socket.setEncoding('utf8');
  socket.setNoDelay(true);
  socket.on('data', (chunk: string) => {
    pending += chunk;
    for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
      pending = pending.slice(i + 1);
      socket.write(answer('tcp', socket.remoteAddress ?? '', socket.remotePort ?? 0, socket.localAddress ?? '', socket.localPort ?? 0));
    }
  });
  socket.on('end', () => socket.end());
  socket.on('error', () => socket.destroy());
}

function listenTcp(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer(serveTcp);
    server.once('error', reject);
    server.listen({ host: bind, port, backlog: 4096 }, () => {
      resolve();
    });
  });
}

function listenUdp(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', reject);
    socket.on('message', (_msg, rinfo) => {
      // An unconnected socket cannot tell which local address a datagram reached; the bound
      // address is reported (bind to the namespace's own address for exact answers).
      socket.send(answer('udp', rinfo.address, rinfo.port, bind, port), rinfo.port, rinfo.address);
    });
    socket.bind({ address: bind, port }, () => {
      resolve();
    });
  });
}

await Promise.all([...ports(values.tcp).map(listenTcp), ...ports(values.udp).map(listenUdp)]);
process.stdout.write('ready\n');
