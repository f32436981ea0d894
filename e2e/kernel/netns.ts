/**
 * Network namespaces for kernel tests: each test suite gets its own netfilter tables and
 * conntrack table, so nothing it loads touches the host. Programs run with argument arrays
 * (`ip netns exec NAME PROGRAM ARGS...`), never through a shell; rules go in on stdin.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { execa } from 'execa';

/** Every namespace the tests create starts with this, so a leftover one is easy to attribute. */
export const NAMESPACE_PREFIX = 'kpxt-';

export interface RunResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Text fed to the program's stdin (rules for iptables-restore). */
  readonly input?: string;
}

let counter = 0;

/** Runs a program inside namespace `name` (argument array, input on stdin). */
export async function runInNamespace(name: string, file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const result = await execa('ip', ['netns', 'exec', name, file, ...args], { reject: false, input: options.input ?? '', stripFinalNewline: false });
  return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** Throws with the program's stderr when a run failed; returns the result otherwise. */
export function checkInNamespace(name: string, result: RunResult, file: string, args: readonly string[]): RunResult {
  if (result.exitCode !== 0) {
    throw new Error(`${file} ${args.join(' ')} failed in ${name} (exit ${String(result.exitCode)}): ${result.stderr.trim()}`);
  }
  return result;
}

export class NetworkNamespace {
  readonly name: string;
  #deleted = false;

  private constructor(name: string) {
    this.name = name;
  }

  /** Creates a fresh namespace named `kpxt-<purpose>-<pid>-<n>` with its loopback up. */
  static async create(purpose: string): Promise<NetworkNamespace> {
    counter += 1;
    const name = `${NAMESPACE_PREFIX}${purpose}-${String(process.pid)}-${String(counter)}`;
    await execa('ip', ['netns', 'add', name]);
    const ns = new NetworkNamespace(name);
    try {
      await execa('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    } catch (error) {
      await ns.delete();
      throw error;
    }
    return ns;
  }

  /** Runs a program inside the namespace; a non-zero exit is returned, not thrown. */
  async run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    if (this.#deleted) throw new Error(`Network namespace ${this.name} was already deleted`);
    return runInNamespace(this.name, file, args, options);
  }

  /** Like run(), but throws with the program's stderr when it fails. */
  async check(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    return checkInNamespace(this.name, await this.run(file, args, options), file, args);
  }

  /** Deletes the namespace; safe to call twice. */
  async delete(): Promise<void> {
    if (this.#deleted) return;
    this.#deleted = true;
    await execa('ip', ['netns', 'delete', this.name], { reject: false });
  }
}

export type KernelTestMode = { readonly kind: 'run' } | { readonly kind: 'skip' | 'fail'; readonly reason: string };

/**
 * Kernel tests need root (network namespaces, netfilter). Without it they fail loudly, unless
 * KPX_SKIP_KERNEL=1 says skipping is intended (developer machines without root).
 */
export function kernelTestMode(): KernelTestMode {
  const uid = process.getuid?.();
  if (uid === 0) return { kind: 'run' };
  const reason = `kernel tests need root (uid ${uid === undefined ? 'unknown' : String(uid)}): they create network namespaces and load iptables rules`;
  if (process.env.KPX_SKIP_KERNEL === '1') return { kind: 'skip', reason: `${reason}; skipped because KPX_SKIP_KERNEL=1` };
  return { kind: 'fail', reason: `${reason}. Run them as root, or set KPX_SKIP_KERNEL=1 to skip them` };
}

/** Whether a program is on PATH or in the sbin directories (e.g. the optional `nfacct` tool). */
export function hasProgram(name: string): boolean {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'].filter((d) => d !== '');
  return dirs.some((dir) => {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}
