/**
 * What the echo server answers and what the load client reports: shared by the two scripts
 * (which run inside network namespaces under `ip netns exec`) and the tests that read them.
 * Types only, so the scripts import nothing at run time.
 */

/** One answer of the echo server: who answered, and the addresses it saw. */
export interface EchoAnswer {
  /** The server's name (the pod or namespace it runs in). */
  readonly server: string;
  readonly proto: 'tcp' | 'udp';
  /** The connection's source as the server saw it (after any SNAT). */
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** The address and port the connection reached (after any DNAT). */
  readonly localAddress: string;
  readonly localPort: number;
}

/**
 * How one connection ended: answered by a server, refused (TCP RST or ICMP port unreachable:
 * a REJECT), timed out (nothing came back: a DROP), or something else (`error:CODE`, `closed`),
 * which no test expects.
 */
export type ConnectionOutcome = 'answered' | 'refused' | 'timeout' | `error:${string}` | 'closed';

/** Many short connections, each from a new source port (so each is a new conntrack entry). */
export interface BurstSpec {
  readonly mode: 'burst';
  readonly proto: 'tcp' | 'udp';
  readonly host: string;
  readonly port: number;
  readonly count: number;
  readonly concurrency: number;
  /** Per connection; a TCP connect that gets no answer in this time counts as a timeout. */
  readonly timeoutMs: number;
  /** Source address to bind; the kernel picks one when absent. */
  readonly bind?: string;
  /** UDP only: datagrams per connection (same socket, same source port) before giving up. */
  readonly udpAttempts?: number;
}

/** One row of a burst's tally: connections that ended the same way at the same server. */
export interface TallyRow {
  readonly outcome: ConnectionOutcome;
  /** For answered connections: the server's name, the source it saw, and where it was reached. */
  readonly server: string;
  readonly seenAddress: string;
  readonly reached: string;
  readonly count: number;
  /** Answered connections whose server saw the client's own source port (no port rewrite). */
  readonly sourcePortKept: number;
  readonly maxMs: number;
}

export interface BurstReport {
  readonly rows: readonly TallyRow[];
  /** Every source address the client's connections used (as its sockets reported them). */
  readonly clientAddresses: readonly string[];
  /** One source port the client used (a representative for the simulator's packet). */
  readonly sampleClientPort: number;
  /** How many distinct source ports the connections used. */
  readonly distinctClientPorts: number;
  /**
   * Connections from a source port an earlier answered connection had used (0 means every
   * answered connection had a port of its own). Answered and timed-out connections keep their
   * ports until the burst ends; only a refused connection's port may come round again (its first
   * packet was rejected before conntrack confirmed an entry, so it left nothing behind).
   */
  readonly reusedAfterAnswer: number;
  readonly elapsedMs: number;
}

/** One long-lived TCP connection, driven over stdin: each `ping` line sends one request. */
export interface HoldSpec {
  readonly mode: 'hold';
  readonly host: string;
  readonly port: number;
  readonly bind?: string;
  /** How long a ping waits for its answer. */
  readonly timeoutMs: number;
}

/** What the held connection prints: once `connected`, then one line per ping. */
export type HoldEvent =
  | { readonly event: 'connected'; readonly localAddress: string; readonly localPort: number }
  | { readonly event: 'failed'; readonly outcome: ConnectionOutcome }
  | { readonly event: 'answer'; readonly answer: EchoAnswer }
  | { readonly event: 'no-answer' };

export type ClientSpec = BurstSpec | HoldSpec;
