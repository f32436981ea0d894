/**
 * A traffic probe run inside a network namespace (a pod, a node, the external client): sends
 * `count` independent requests (a new TCP connection or a new UDP socket each, so each one is a
 * new conntrack flow and a new load-balancing decision) and prints one JSON array of results.
 *
 *   node probe.ts '{"protocol":"tcp","host":"10.96.0.10","port":80,"count":30}'
 */
import { createSocket } from 'node:dgram';
import { request } from 'node:http';
import type { PodReply } from './pod-server.ts';

export interface ProbeSpec {
  readonly protocol: 'tcp' | 'udp';
  readonly host: string;
  readonly port: number;
  readonly count: number;
  /** Per request; default 2000 ms. */
  readonly timeoutMs?: number;
  /** Bind the client socket to this local address. */
  readonly sourceIP?: string;
  /** UDP: send every request from this local port (one conntrack flow, like a resolver's socket). */
  readonly sourcePort?: number;
  /** Pause between requests (ms); default none. */
  readonly intervalMs?: number;
}

export type ProbeResult = { readonly ok: true; readonly reply: PodReply } | { readonly ok: false; readonly error: string };

function httpOnce(spec: ProbeSpec, n: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: spec.host,
        port: spec.port,
        path: `/probe/${String(n)}`,
        agent: false,
        timeout: spec.timeoutMs ?? 2000,
        ...(spec.sourceIP === undefined ? {} : { localAddress: spec.sourceIP }),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => {
          try {
            resolve({ ok: true, reply: JSON.parse(body) as PodReply });
          } catch {
            resolve({ ok: false, error: `bad reply (HTTP ${String(res.statusCode)}): ${body.slice(0, 200)}` });
          }
        });
      },
    );
    req.on('timeout', () => {
      req.destroy(new Error('timeout'));
    });
    req.on('error', (error) => {
      resolve({ ok: false, error: error.message });
    });
    req.end();
  });
}

function udpOnce(spec: ProbeSpec, n: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    const timer = setTimeout(() => {
      finish({ ok: false, error: 'timeout' });
    }, spec.timeoutMs ?? 2000);
    function finish(result: ProbeResult): void {
      clearTimeout(timer);
      socket.close();
      resolve(result);
    }
    socket.on('error', (error) => {
      finish({ ok: false, error: error.message });
    });
    socket.on('message', (message) => {
      try {
        finish({ ok: true, reply: JSON.parse(message.toString('utf8')) as PodReply });
      } catch {
        finish({ ok: false, error: `bad reply: ${message.toString('utf8').slice(0, 200)}` });
      }
    });
    socket.bind(spec.sourcePort ?? 0, spec.sourceIP, () => {
      socket.send(`probe/${String(n)}`, spec.port, spec.host);
    });
  });
}

export async function probe(spec: ProbeSpec): Promise<ProbeResult[]> {
  const results: ProbeResult[] = [];
  for (let n = 0; n < spec.count; n++) {
    if (n > 0 && spec.intervalMs !== undefined) await new Promise((resolve) => setTimeout(resolve, spec.intervalMs));
    results.push(await (spec.protocol === 'tcp' ? httpOnce(spec, n) : udpOnce(spec, n)));
  }
  return results;
}

if (import.meta.main) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as ProbeSpec;
  process.stdout.write(`${JSON.stringify(await probe(spec))}\n`);
}
