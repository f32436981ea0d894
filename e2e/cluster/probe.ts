/**
 * A traffic probe run inside a network namespace (a pod, a node, the external client): sends
 * `count` independent requests (a new TCP connection or a new UDP socket each, so each one is a
 * new conntrack flow and a new load-balancing decision) and prints one JSON array of results.
 *
 *   node probe.ts '{"protocol":"tcp","host":"10.96.0.10","port":80,"count":30}'
 */
import { createSocket } from 'node:dgram';
import { Agent, request } from 'node:http';
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

function httpOnce(spec: ProbeSpec, n: number, agent?: Agent): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: spec.host,
        port: spec.port,
        path: agent === undefined ? `/probe/${String(n)}` : `/keep/${String(n)}`,
        agent: agent ?? false,
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

/**
 * Long-lived connections: opens keep-alive HTTP connections one at a time until `connections` of
 * them reached `pod` (others are closed; at most `maxAttempts`), then sends `count` requests over
 * each held connection, `intervalMs` apart. Each request on a connection reuses its one TCP socket
 * (an agent with a single socket), so the pod sees the same source port for as long as it lasts.
 */
export interface HeldSpec extends ProbeSpec {
  readonly protocol: 'tcp';
  readonly hold: { readonly pod: string; readonly connections: number; readonly maxAttempts: number };
}

export interface HeldConnection {
  readonly pod: string;
  readonly results: readonly ProbeResult[];
}

export async function probeHeld(spec: HeldSpec): Promise<HeldConnection[]> {
  const held: { agent: Agent; first: ProbeResult & { ok: true } }[] = [];
  for (let attempt = 0; attempt < spec.hold.maxAttempts && held.length < spec.hold.connections; attempt++) {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const first = await httpOnce(spec, 0, agent);
    if (first.ok && first.reply.pod === spec.hold.pod) held.push({ agent, first });
    else agent.destroy();
  }
  const connections = await Promise.all(
    held.map(async ({ agent, first }) => {
      const results: ProbeResult[] = [first];
      for (let n = 1; n < spec.count; n++) {
        if (spec.intervalMs !== undefined) await new Promise((resolve) => setTimeout(resolve, spec.intervalMs));
        results.push(await httpOnce(spec, n, agent));
      }
      agent.destroy();
      return { pod: first.reply.pod, results };
    }),
  );
  return connections;
}

if (import.meta.main) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as ProbeSpec | HeldSpec;
  const output = 'hold' in spec ? await probeHeld(spec) : await probe(spec);
  process.stdout.write(`${JSON.stringify(output)}\n`);
}
