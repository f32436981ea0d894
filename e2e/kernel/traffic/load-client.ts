/**
 * The load client for kernel tests. Runs inside a network namespace:
 *
 *   ip netns exec NS node load-client.ts '<ClientSpec as JSON>'
 *
 * burst: opens `count` new connections (each from a new source port, so each is a new conntrack
 * entry and a new pass through the nat table), at most `concurrency` at a time, and prints one
 * JSON BurstReport tallying how each ended: answered (by which server, which source it saw,
 * where it was reached), refused (RST or ICMP port unreachable), or timed out (dropped).
 *
 * hold: opens one TCP connection and keeps it; every `ping` line on stdin sends a request and
 * prints the answer (or `no-answer` after timeoutMs) as a JSON HoldEvent line. Closes on stdin EOF.
 */
import { createSocket, type Socket } from 'node:dgram';
import { connect, type Socket as TcpSocket } from 'node:net';
import { createInterface } from 'node:readline';
import type { BurstReport, BurstSpec, ClientSpec, ConnectionOutcome, EchoAnswer, HoldEvent, HoldSpec, TallyRow } from './protocol.ts';

interface Attempt {
  readonly outcome: ConnectionOutcome;
  readonly answer: EchoAnswer | undefined;
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
  readonly ms: number;
}

function outcomeOfError(error: NodeJS.ErrnoException): ConnectionOutcome {
  return error.code === 'ECONNREFUSED' ? 'refused' : `error:${error.code ?? 'unknown'}`;
}

/**
 * Answered and timed-out TCP connections stay open until the burst ends and are then reset:
 * while open, their source ports cannot be handed out again, so each connection of a burst is a
 * new conntrack entry (a SYN that timed out after being forwarded left an entry behind: a new
 * SYN from the same port would ride it as a retransmission). A reset leaves no TIME_WAIT socket
 * behind; thousands of those per run would make every later bind() and connect() in the
 * namespace scan for a free port (seconds per burst).
 */
const openTcpSockets: TcpSocket[] = [];

function tcpOnce(spec: BurstSpec): Promise<Attempt> {
  return new Promise((resolve) => {
    const start = performance.now();
    const socket = connect({ host: spec.host, port: spec.port, ...(spec.bind === undefined ? {} : { localAddress: spec.bind }), noDelay: true });
    // net.connect() to an IP literal issues connect(2) on the next tick; a tick queued after it
    // sees the bound source port before any I/O runs (a refused socket has no handle afterwards).
    let local: { address: string | undefined; port: number | undefined } = { address: undefined, port: undefined };
    process.nextTick(() => {
      local = { address: socket.localAddress, port: socket.localPort };
    });
    let pending = '';
    let done = false;
    const finish = (outcome: ConnectionOutcome, answer?: EchoAnswer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ outcome, answer, localAddress: socket.localAddress ?? local.address, localPort: socket.localPort ?? local.port, ms: performance.now() - start });
      if (outcome === 'answered' || outcome === 'timeout') openTcpSockets.push(socket);
      else socket.destroy();
    };
    const timer = setTimeout(() => {
      finish('timeout');
    }, spec.timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write('q\n'));
    socket.on('data', (chunk: string) => {
      pending += chunk;
      const i = pending.indexOf('\n');
      if (i >= 0) finish('answered', JSON.parse(pending.slice(0, i)) as EchoAnswer);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      finish(outcomeOfError(error));
    });
    socket.on('close', () => {
      finish('closed');
    });
  });
}

/**
 * UDP sockets stay bound until the burst ends: a closed socket's port could be handed out again,
 * and a datagram from a reused port would ride the old conntrack entry (same endpoint) instead
 * of being a new connection.
 */
const openUdpSockets: Socket[] = [];

function udpOnce(spec: BurstSpec): Promise<Attempt> {
  return new Promise((resolve) => {
    const start = performance.now();
    const socket = createSocket('udp4');
    openUdpSockets.push(socket);
    const attempts = Math.max(1, spec.udpAttempts ?? 3);
    let sent = 0;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    let local: { address: string; port: number } | undefined;
    const finish = (outcome: ConnectionOutcome, answer?: EchoAnswer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ outcome, answer, localAddress: local?.address, localPort: local?.port, ms: performance.now() - start });
    };
    // Retries reuse the socket, so they stay in the same conntrack entry (same endpoint): they
    // only guard against a datagram lost in a queue, never change which endpoint is chosen.
    const send = (): void => {
      if (done) return;
      if (sent >= attempts) {
        finish('timeout');
        return;
      }
      sent++;
      socket.send('q\n');
      timer = setTimeout(send, spec.timeoutMs / attempts);
    };
    socket.on('message', (msg) => {
      finish('answered', JSON.parse(msg.toString('utf8')) as EchoAnswer);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      finish(outcomeOfError(error));
    });
    socket.bind({ address: spec.bind ?? '0.0.0.0', port: 0 }, () => {
      socket.connect(spec.port, spec.host, () => {
        local = socket.address();
        send();
      });
    });
  });
}

async function burst(spec: BurstSpec): Promise<BurstReport> {
  const start = performance.now();
  const rows = new Map<string, { -readonly [K in keyof TallyRow]: TallyRow[K] }>();
  const addresses = new Set<string>();
  const ports = new Set<number>();
  const answeredPorts = new Set<number>();
  let reusedAfterAnswer = 0;
  let sample = 0;
  let next = 0;
  const once = spec.proto === 'tcp' ? tcpOnce : udpOnce;
  const worker = async (): Promise<void> => {
    while (next < spec.count) {
      next++;
      const a = await once(spec);
      if (a.localAddress !== undefined) addresses.add(a.localAddress);
      if (a.localPort !== undefined) {
        ports.add(a.localPort);
        sample = a.localPort;
        if (answeredPorts.has(a.localPort)) reusedAfterAnswer++;
        if (a.outcome === 'answered') answeredPorts.add(a.localPort);
      }
      const server = a.answer?.server ?? '';
      const seenAddress = a.answer?.remoteAddress ?? '';
      const reached = a.answer === undefined ? '' : `${a.answer.localAddress}:${String(a.answer.localPort)}`;
      const key = JSON.stringify([a.outcome, server, seenAddress, reached]);
      const row = rows.get(key) ?? { outcome: a.outcome, server, seenAddress, reached, count: 0, sourcePortKept: 0, maxMs: 0 };
      row.count++;
      if (a.answer !== undefined && a.answer.remotePort === a.localPort) row.sourcePortKept++;
      row.maxMs = Math.max(row.maxMs, Math.round(a.ms));
      rows.set(key, row);
    }
  };
  await Promise.all(Array.from({ length: Math.min(spec.concurrency, spec.count) }, worker));
  for (const s of openUdpSockets.splice(0)) s.close();
  // resetAndDestroy() on a socket still connecting would wait for a connect that never comes.
  for (const s of openTcpSockets.splice(0)) {
    if (s.connecting) s.destroy();
    else s.resetAndDestroy();
  }
  return {
    rows: [...rows.values()],
    clientAddresses: [...addresses].sort(),
    sampleClientPort: sample,
    distinctClientPorts: ports.size,
    reusedAfterAnswer,
    elapsedMs: Math.round(performance.now() - start),
  };
}

function hold(spec: HoldSpec): void {
  const emit = (e: HoldEvent): void => {
    process.stdout.write(`${JSON.stringify(e)}\n`);
  };
  const socket = connect({ host: spec.host, port: spec.port, ...(spec.bind === undefined ? {} : { localAddress: spec.bind }), noDelay: true });
  let pending = '';
  let waiting: ((a: EchoAnswer) => void) | undefined;
  socket.setEncoding('utf8');
  const failTimer = setTimeout(() => {
    emit({ event: 'failed', outcome: 'timeout' });
    process.exit(1);
  }, spec.timeoutMs);
  socket.on('connect', () => {
    clearTimeout(failTimer);
    emit({ event: 'connected', localAddress: socket.localAddress ?? '', localPort: socket.localPort ?? 0 });
  });
  socket.on('data', (chunk: string) => {
    pending += chunk;
    for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      const w = waiting;
      waiting = undefined;
      w?.(JSON.parse(line) as EchoAnswer);
    }
  });
  socket.on('error', (error: NodeJS.ErrnoException) => {
    emit({ event: 'failed', outcome: outcomeOfError(error) });
    process.exit(1);
  });
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line.trim() !== 'ping') return;
    const timer = setTimeout(() => {
      waiting = undefined;
      emit({ event: 'no-answer' });
    }, spec.timeoutMs);
    waiting = (answer) => {
      clearTimeout(timer);
      emit({ event: 'answer', answer });
    };
    socket.write('q\n');
  });
  lines.on('close', () => {
    socket.destroy();
    process.exit(0);
  });
}

const spec = JSON.parse(process.argv[2] ?? '{}') as ClientSpec;
if (spec.mode === 'burst') process.stdout.write(`${JSON.stringify(await burst(spec))}\n`);
else hold(spec);
