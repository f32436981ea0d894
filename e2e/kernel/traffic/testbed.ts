/**
 * Namespaces, links and processes for traffic tests, all owned by one Testbed that removes them
 * again (dispose(), from afterAll, also after a failure). Every namespace is named
 * `kpxd-<role>-<pid>`; links live only inside those namespaces (veth pairs are created straight
 * between two of them), so deleting the namespaces removes every link and address, and nothing
 * is ever created in the host's own namespace. Programs run with argument arrays, never a shell.
 */
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { execa } from 'execa';
import { checkInNamespace, runInNamespace, type RunOptions, type RunResult } from '../netns.ts';
import type { BurstReport, BurstSpec, EchoAnswer, HoldEvent, HoldSpec } from './protocol.ts';

export const TESTBED_PREFIX = 'kpxd-';

const ECHO_SERVER = fileURLToPath(new URL('./echo-server.ts', import.meta.url));
const LOAD_CLIENT = fileURLToPath(new URL('./load-client.ts', import.meta.url));

/** A program started in a namespace, with its stderr kept for error messages and its exit awaited. */
interface Child {
  readonly process: ChildProcessWithoutNullStreams;
  readonly exited: Promise<number | null>;
  stderr: string;
}

/** Namespaces created by this process (every Testbed): keeps names unique per process. */
let created = 0;

export class Namespace {
  readonly name: string;

  constructor(name: string) {
    this.name = name;
  }

  /** Runs a program inside the namespace; a non-zero exit is returned, not thrown. */
  async run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    return runInNamespace(this.name, file, args, options);
  }

  /** Like run(), but throws with the program's stderr when it fails. */
  async check(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    return checkInNamespace(this.name, await this.run(file, args, options), file, args);
  }

  /** `ip -n NAME ARGS` (iproute2 switches namespace itself). */
  async ip(...args: string[]): Promise<string> {
    const result = await execa('ip', ['-n', this.name, ...args], { reject: false });
    if (result.exitCode !== 0) throw new Error(`ip -n ${this.name} ${args.join(' ')} failed: ${result.stderr.trim()}`);
    return result.stdout;
  }

  async sysctl(key: string, value: string): Promise<void> {
    await this.check('sysctl', ['-q', '-w', `${key}=${value}`]);
  }

  /** The value of a sysctl, or undefined where the namespace does not have it. */
  async readSysctl(key: string): Promise<string | undefined> {
    const r = await this.run('sysctl', ['-n', key]);
    return r.exitCode === 0 ? r.stdout.trim() : undefined;
  }
}

/** A long-lived TCP connection held open by a load client in `hold` mode. */
export interface HeldConnection {
  readonly localAddress: string;
  readonly localPort: number;
  /** Sends one request; resolves with the answer, or undefined when none came in time. */
  ping(): Promise<EchoAnswer | undefined>;
}

export class Testbed {
  readonly #namespaces: Namespace[] = [];
  readonly #children: Child[] = [];

  /**
   * Deletes namespaces an earlier run of these tests left behind when it was killed before its
   * afterAll (named `kpxd-<role>-<pid>...` with a pid that no longer runs). Never touches a
   * namespace whose creating process is alive.
   */
  static async removeStale(): Promise<void> {
    const listed = await execa('ip', ['netns', 'list'], { reject: false });
    for (const line of listed.stdout.split('\n')) {
      const name = line.split(' ')[0] ?? '';
      const pid = new RegExp(`^${TESTBED_PREFIX}[a-z0-9]+-([0-9]+)(-[0-9]+)?$`).exec(name)?.[1];
      if (pid === undefined || Number(pid) === process.pid || processAlive(Number(pid))) continue;
      await execa('ip', ['netns', 'delete', name], { reject: false });
    }
  }

  /** Creates `kpxd-<role>-<pid>[-n]` with loopback up. */
  async namespace(role: string): Promise<Namespace> {
    created++;
    const name = `${TESTBED_PREFIX}${role}-${String(process.pid)}${created > 1 ? `-${String(created)}` : ''}`;
    await execa('ip', ['netns', 'add', name]);
    const ns = new Namespace(name);
    this.#namespaces.push(ns);
    await ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  /** A veth pair between two namespaces (or inside one), both ends up. */
  async veth(a: Namespace, aName: string, b: Namespace, bName: string): Promise<void> {
    await a.ip('link', 'add', aName, 'type', 'veth', 'peer', 'name', bName, 'netns', b.name);
    await a.ip('link', 'set', aName, 'up');
    await b.ip('link', 'set', bName, 'up');
  }

  #spawn(ns: Namespace, script: string, args: readonly string[]): Child {
    const proc = spawn('ip', ['netns', 'exec', ns.name, process.execPath, script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const child: Child = {
      process: proc,
      exited: new Promise((resolve) => {
        proc.once('close', (code) => {
          resolve(code);
        });
        proc.once('error', () => {
          resolve(null);
        });
      }),
      stderr: '',
    };
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk: string) => {
      child.stderr += chunk;
    });
    this.#children.push(child);
    return child;
  }

  /** Starts an echo server (runs until dispose()); resolves once it listens. */
  async echoServer(ns: Namespace, options: { name: string; bind?: string; tcp?: readonly number[]; udp?: readonly number[] }): Promise<void> {
    const args = ['--name', options.name, '--tcp', (options.tcp ?? []).join(','), '--udp', (options.udp ?? []).join(',')];
    if (options.bind !== undefined) args.push('--bind', options.bind);
    const child = this.#spawn(ns, ECHO_SERVER, args);
    const first = await firstLine(child);
    if (first !== 'ready') {
      await child.exited;
      throw new Error(`echo server ${options.name} in ${ns.name} did not start: ${child.stderr}`);
    }
  }

  /** Runs a burst of connections from `ns` and returns the client's report. */
  async burst(ns: Namespace, spec: Omit<BurstSpec, 'mode'>): Promise<BurstReport> {
    const result = await execa('ip', ['netns', 'exec', ns.name, process.execPath, LOAD_CLIENT, JSON.stringify({ mode: 'burst', ...spec })], { reject: false });
    if (result.exitCode !== 0) throw new Error(`load client in ${ns.name} failed (exit ${String(result.exitCode)}): ${result.stderr}`);
    return JSON.parse(result.stdout) as BurstReport;
  }

  /** Opens one long-lived TCP connection from `ns` (closed by dispose()). */
  async hold(ns: Namespace, spec: Omit<HoldSpec, 'mode'>): Promise<HeldConnection> {
    const child = this.#spawn(ns, LOAD_CLIENT, [JSON.stringify({ mode: 'hold', ...spec })]);
    const lines = createInterface({ input: child.process.stdout });
    const queue: string[] = [];
    const waiters: ((line: string) => void)[] = [];
    lines.on('line', (line) => {
      const w = waiters.shift();
      if (w === undefined) queue.push(line);
      else w(line);
    });
    const nextEvent = (): Promise<HoldEvent> =>
      new Promise((resolve, reject) => {
        const take = (line: string): void => {
          resolve(JSON.parse(line) as HoldEvent);
        };
        const queued = queue.shift();
        if (queued !== undefined) take(queued);
        else {
          waiters.push(take);
          void child.exited.then(() => {
            if (waiters.includes(take)) reject(new Error(`held connection in ${ns.name} ended: ${child.stderr}`));
          });
        }
      });
    const first = await nextEvent();
    if (first.event !== 'connected') throw new Error(`held connection from ${ns.name} to ${spec.host}:${String(spec.port)} did not connect: ${JSON.stringify(first)}`);
    return {
      localAddress: first.localAddress,
      localPort: first.localPort,
      ping: async () => {
        child.process.stdin.write('ping\n');
        const e = await nextEvent();
        if (e.event === 'answer') return e.answer;
        if (e.event === 'no-answer') return undefined;
        throw new Error(`held connection from ${ns.name}: unexpected ${JSON.stringify(e)}`);
      },
    };
  }

  /** Stops every process, then deletes every namespace (and with them every link). */
  async dispose(): Promise<void> {
    const children = this.#children.splice(0);
    for (const child of children) child.process.kill('SIGKILL');
    await Promise.allSettled(children.map((c) => c.exited));
    const namespaces = this.#namespaces.splice(0);
    await Promise.allSettled(namespaces.map((ns) => execa('ip', ['netns', 'delete', ns.name], { reject: false })));
  }
}

function firstLine(child: Child): Promise<string> {
  return new Promise((resolve) => {
    const lines = createInterface({ input: child.process.stdout });
    let settled = false;
    lines.once('line', (line) => {
      settled = true;
      lines.close();
      resolve(line);
    });
    void child.exited.then(() => {
      if (!settled) resolve('');
    });
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
