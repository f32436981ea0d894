/**
 * A tiny authoritative DNS server on UDP for the helm test hook's offline check: answers A queries
 * for the names it is given, NXDOMAIN for other names, and an empty NOERROR answer for other types
 * of a known name (what CoreDNS does for AAAA in an IPv4 cluster). It records every question.
 */
import { createSocket } from 'node:dgram';

export interface FakeDns {
  /** "127.0.0.1:<port>", as a resolv.conf nameserver line kpx's test script hands to setServers. */
  readonly server: string;
  /** The questions received, as "<name> <type>" (type 1 = A, 28 = AAAA). */
  readonly questions: readonly string[];
  close(): Promise<void>;
}

const TYPE_A = 1;

function questionName(message: Buffer): { name: string; end: number } {
  const labels: string[] = [];
  let at = 12;
  for (let length = message[at] ?? 0; length !== 0; length = message[at] ?? 0) {
    labels.push(message.subarray(at + 1, at + 1 + length).toString('ascii'));
    at += 1 + length;
  }
  return { name: labels.join('.').toLowerCase(), end: at + 1 };
}

function answer(query: Buffer, records: ReadonlyMap<string, string>, questions: string[]): Buffer {
  const { name, end } = questionName(query);
  const type = query.readUInt16BE(end);
  questions.push(`${name} ${String(type)}`);
  const address = records.get(name);
  const rdata = type === TYPE_A && address !== undefined ? Buffer.from(address.split('.').map(Number)) : undefined;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0); // the query's id
  header.writeUInt16BE(0x8180 | (address === undefined ? 3 : 0), 2); // response, RD, RA; NXDOMAIN for unknown names
  header.writeUInt16BE(1, 4); // the question, echoed
  header.writeUInt16BE(rdata === undefined ? 0 : 1, 6);
  const question = query.subarray(12, end + 4);
  if (rdata === undefined) return Buffer.concat([header, question]);
  const record = Buffer.alloc(12);
  record.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
  record.writeUInt16BE(TYPE_A, 2);
  record.writeUInt16BE(1, 4); // class IN
  record.writeUInt32BE(30, 6); // TTL
  record.writeUInt16BE(rdata.length, 10);
  return Buffer.concat([header, question, record, rdata]);
}

/** Starts the server on 127.0.0.1 (a free port); records maps lower-case names to IPv4 addresses. */
export async function startFakeDns(records: Readonly<Record<string, string>>): Promise<FakeDns> {
  const table = new Map(Object.entries(records).map(([name, address]) => [name.toLowerCase(), address]));
  const questions: string[] = [];
  const socket = createSocket('udp4');
  socket.on('message', (query, peer) => {
    socket.send(answer(query, table, questions), peer.port, peer.address);
  });
  await new Promise<void>((resolve) => {
    socket.bind(0, '127.0.0.1', resolve);
  });
  return {
    server: `127.0.0.1:${String(socket.address().port)}`,
    questions,
    close: () =>
      new Promise<void>((resolve) => {
        socket.close(() => {
          resolve();
        });
      }),
  };
}
