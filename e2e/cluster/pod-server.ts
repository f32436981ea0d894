/**
 * The process every harness pod runs (inside the pod's network namespace, with the project's Node):
 * an HTTP server on each --tcp port and a UDP echo on each --udp port, all answering one JSON line
 * that says which pod answered and which source address it saw. HTTP requests for `/keep/...` keep
 * their connection open, so a client can hold one TCP connection to one pod across many requests.
 *
 *   node pod-server.ts --name web-0 --node node-1 --tcp 8080 --udp 8080
 *
 * Prints `ready` on stdout once every socket listens.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

export interface PodReply {
  readonly pod: string;
  readonly node: string;
  readonly protocol: 'tcp' | 'udp';
  /** The port the request arrived on (the pod's targetPort). */
  readonly port: number;
  /** Source address and port as the pod saw them (after any SNAT). */
  readonly sourceIP: string;
  readonly sourcePort: number;
  /** HTTP: the request path; UDP: the datagram text. */
  readonly request: string;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      name: { type: 'string' },
      node: { type: 'string', default: '' },
      tcp: { type: 'string', multiple: true, default: [] },
      udp: { type: 'string', multiple: true, default: [] },
    },
  });
  const pod = values.name;
  if (pod === undefined) throw new Error('--name is required');
  const node = values.node;
  const ports = (list: string[]): number[] => list.map((p) => Number.parseInt(p, 10));
  const pending: Promise<void>[] = [];

  for (const port of ports(values.tcp)) {
    const server = createServer((req, res) => {
      const reply: PodReply = {
        pod,
        node,
        protocol: 'tcp',
        port,
        sourceIP: (req.socket.remoteAddress ?? '').replace(/^::ffff:/, ''),
        sourcePort: req.socket.remotePort ?? 0,
        request: req.url ?? '',
      };
      // `/keep/...` requests keep the connection open (a long-lived client); everything else closes it.
      const keep = reply.request.startsWith('/keep/');
      res.writeHead(200, { 'content-type': 'application/json', ...(keep ? {} : { connection: 'close' }) });
      res.end(`${JSON.stringify(reply)}\n`);
    });
    server.keepAliveTimeout = 60_000;
    pending.push(new Promise((resolve) => server.listen(port, '0.0.0.0', resolve)));
  }

  for (const port of ports(values.udp)) {
    const socket = createSocket('udp4');
    socket.on('message', (message, remote) => {
      const reply: PodReply = { pod, node, protocol: 'udp', port, sourceIP: remote.address, sourcePort: remote.port, request: message.toString('utf8') };
      socket.send(`${JSON.stringify(reply)}\n`, remote.port, remote.address);
    });
    pending.push(new Promise((resolve) => socket.bind(port, '0.0.0.0', resolve)));
  }

  void Promise.all(pending).then(() => {
    process.stdout.write('ready\n');
  });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => process.exit(0));
}

if (import.meta.main) main();
