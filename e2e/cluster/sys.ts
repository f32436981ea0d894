/**
 * Small system helpers for the real-cluster harness: running programs with argument arrays
 * (execa, never a shell), long-running daemons in their own process group with output to a log file,
 * killing those groups by pid (after checking the pid still runs the program we started), and
 * polling.
 */
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';

export { sleep };

/** PATH for everything the harness starts: iptables, conntrack and ip live in the sbin directories. */
export const SYSTEM_PATH = [process.env.PATH ?? '', '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin', '/bin']
  .filter((d) => d !== '')
  .join(':');

export interface RunResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program; a non-zero exit is returned, not thrown. */
export async function tryRun(file: string, args: readonly string[], input?: string): Promise<RunResult> {
  const result = await execa(file, args, { reject: false, input: input ?? '', env: { PATH: SYSTEM_PATH } });
  return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** Runs a program and throws (with its stderr) when it fails. */
export async function run(file: string, args: readonly string[], input?: string): Promise<string> {
  const result = await tryRun(file, args, input);
  if (result.exitCode !== 0) {
    throw new Error(`${file} ${args.join(' ')} failed (exit ${String(result.exitCode)}): ${result.stderr.trim() || result.stdout.trim()}`);
  }
  return result.stdout;
}

/** `ip netns exec NAME FILE ARGS...` as an argument array. */
export function inNetns(netns: string | undefined, file: string, args: readonly string[]): [string, string[]] {
  return netns === undefined ? [file, [...args]] : ['ip', ['netns', 'exec', netns, file, ...args]];
}

/** What the state file remembers about a daemon, enough to kill it from another process. */
export interface ProcessRecord {
  readonly name: string;
  readonly pid: number;
  /** The program path; checked against /proc/PID/cmdline before killing, so a reused pid is left alone. */
  readonly program: string;
  readonly log: string;
  readonly netns?: string;
}

export interface Daemon {
  readonly record: ProcessRecord;
  /** Resolves with the exit code (or null when killed by a signal) once the process ends. */
  readonly exited: Promise<number | null>;
  /** Throws with the tail of the log if the process has already ended. */
  assertAlive(): void;
}

export interface DaemonOptions {
  readonly log: string;
  readonly netns?: string;
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * Starts a daemon in a new session/process group (pid = pgid), stdin closed, stdout and stderr
 * appended to a log file. Inside a network namespace `ip netns exec` replaces itself with the
 * program, so the pid is the program's.
 */
export function startDaemon(name: string, program: string, args: readonly string[], options: DaemonOptions): Daemon {
  const fd = openSync(options.log, 'a');
  const [file, argv] = inNetns(options.netns, program, args);
  let exitCode: number | null | undefined;
  // node:child_process rather than execa here: the daemon must write straight into the log file's
  // descriptor (execa pipes `{file}` outputs through this process, and its types accept only fds 3-9),
  // so that `cluster-up` can exit while etcd, the apiserver and the rest keep running.
  const child = spawn(file, argv, { detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, PATH: SYSTEM_PATH, ...options.env } });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => {
    child.once('error', () => {
      exitCode = null;
      resolve(null);
    });
    child.once('exit', (code) => {
      exitCode = code;
      resolve(code);
    });
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${name} (${program}); see ${options.log}`);
  const record: ProcessRecord = { name, pid, program, log: options.log, ...(options.netns === undefined ? {} : { netns: options.netns }) };
  return {
    record,
    exited,
    assertAlive(): void {
      if (exitCode !== undefined) {
        throw new Error(`${name} exited (code ${String(exitCode)}); last lines of ${options.log}:\n${tailFile(options.log, 25)}`);
      }
    },
  };
}

/** The last `lines` lines of a file ('' when missing). */
export function tailFile(path: string, lines: number): string {
  if (!existsSync(path)) return '';
  return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

/** Whether `pid` is alive (not a zombie) and still runs `program`. */
export function isOurProcess(pid: number, program: string): boolean {
  try {
    const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') return false;
    const argv = readFileSync(`/proc/${String(pid)}/cmdline`, 'utf8').split('\0');
    return argv.includes(program);
  } catch {
    return false;
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** SIGTERM to the process group, SIGKILL after `graceMs`; a no-op when the pid no longer runs `program`. */
export async function killProcess(record: Pick<ProcessRecord, 'pid' | 'program'>, graceMs = 5000): Promise<void> {
  if (!isOurProcess(record.pid, record.program)) return;
  signalGroup(record.pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isOurProcess(record.pid, record.program)) return;
    await sleep(50);
  }
  signalGroup(record.pid, 'SIGKILL');
  for (let i = 0; i < 40 && isOurProcess(record.pid, record.program); i++) await sleep(50);
}

export interface WaitOptions {
  readonly timeoutMs: number;
  readonly intervalMs?: number;
  /** Called before each attempt; throw from it to abort early (e.g. a daemon died). */
  readonly check?: () => void;
}

/**
 * Polls `attempt` until it returns a value other than undefined. Errors thrown by `attempt`
 * count as "not yet"; the last one is reported on timeout.
 */
export async function waitFor<T>(what: string, attempt: () => Promise<T | undefined>, options: WaitOptions): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let last: unknown;
  for (;;) {
    options.check?.();
    try {
      const value = await attempt();
      if (value !== undefined) return value;
      last = undefined;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) {
      const why = last instanceof Error ? `: ${last.message}` : last === undefined ? '' : `: ${JSON.stringify(last)}`;
      throw new Error(`timed out after ${String(options.timeoutMs)} ms waiting for ${what}${why}`);
    }
    await sleep(options.intervalMs ?? 200);
  }
}

/** Whether the current process is root (the harness needs network namespaces and netfilter). */
export function requireRoot(): void {
  const uid = process.getuid?.();
  if (uid !== 0) {
    throw new Error(
      `the real-cluster harness needs root (uid is ${uid === undefined ? 'unknown' : String(uid)}): it creates network namespaces, ` +
        'a host bridge and veth links, and runs kube-proxy which programs iptables. Run it as root (e.g. sudo make cluster-up).',
    );
  }
}
