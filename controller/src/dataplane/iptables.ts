/**
 * iptables, iptables-restore and iptables-save (ip6tables* for IPv6), as kube-proxy drives them
 * (reference §1.2, §4.1, §4.3, §4.6): whole rulesets go through iptables-restore on stdin, single
 * jump rules through `-C` then `-I`/`-A`, and every command waits for the xtables lock (`-w`).
 * The backend option picks the `-nft` or `-legacy` variants (backend.ts decides which).
 */
import type { TableName } from '../compile/ruleset.ts';
import type { IPFamily } from '../model/ip.ts';
import type { IptablesBackend } from './backend.ts';
import { commandError, runChecked, type CommandRunner, type ExecResult } from './exec.ts';

/** Lines of the payload shown on each side of the one iptables-restore complains about. */
const CONTEXT_LINES = 2;

export class RestoreError extends Error {
  /** The 1-based payload line iptables-restore named, if it named one. */
  readonly line: number | undefined;

  constructor(message: string, line: number | undefined) {
    super(message);
    this.name = 'RestoreError';
    this.line = line;
  }
}

/**
 * Builds the error for a failed restore. iptables-restore names the line in one of three ways:
 * `Error occurred at line: N` (parse errors), `line N failed` (kernel errors, often the COMMIT
 * line), `COMMIT expected at line N`.
 */
function restoreError(command: string, payload: string, result: ExecResult): RestoreError {
  const messages = result.stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('Try `'));
  const match = /\bline:? (\d+)/.exec(result.stderr);
  const line = match?.[1] === undefined ? undefined : Number(match[1]);
  let text = `${command} failed (exit ${String(result.exitCode)})${line === undefined ? '' : ` at line ${String(line)}`}: ${messages.join('; ') || 'no error output'}`;
  if (line !== undefined) {
    const lines = payload.split('\n');
    if (lines.at(-1) === '') lines.pop();
    const last = Math.min(line + CONTEXT_LINES, lines.length);
    for (let n = Math.max(1, line - CONTEXT_LINES); n <= last; n++) {
      text += `\n${n === line ? '>' : ' '} ${String(n).padStart(String(last).length)}: ${lines[n - 1] ?? ''}`;
    }
  }
  return new RestoreError(text, line);
}

export interface RestoreOptions {
  /** `--noflush`: leave tables and chains the payload does not name alone. */
  readonly noflush: boolean;
  /** `--counters`, as kube-proxy passes it. */
  readonly counters?: boolean;
  /** `-T table`: restore only this table of the payload. */
  readonly table?: TableName;
}

export interface IptablesOptions {
  /** `-w` seconds to wait for the xtables lock (default 5). */
  readonly waitSeconds?: number;
  /** Which binaries: `iptables-nft*`, `iptables-legacy*`, or plain `iptables*` (the default). */
  readonly backend?: IptablesBackend;
}

export class Iptables {
  readonly family: IPFamily;
  readonly backend: IptablesBackend;
  readonly #runner: CommandRunner;
  /** `iptables`, `ip6tables-nft`, ...; `-restore` and `-save` are appended for the others. */
  readonly #command: string;
  readonly #wait: readonly string[];

  constructor(family: IPFamily, runner: CommandRunner, options: IptablesOptions = {}) {
    this.family = family;
    this.backend = options.backend ?? 'default';
    this.#runner = runner;
    this.#command = `${family === 'IPv4' ? 'iptables' : 'ip6tables'}${this.backend === 'default' ? '' : `-${this.backend}`}`;
    this.#wait = ['-w', String(options.waitSeconds ?? 5)];
  }

  /** Feeds `payload` to iptables-restore; throws RestoreError naming the failing line. */
  async restore(payload: string, options: RestoreOptions): Promise<void> {
    const file = `${this.#command}-restore`;
    const args = [...this.#wait];
    if (options.noflush) args.push('--noflush');
    if (options.counters === true) args.push('--counters');
    if (options.table !== undefined) args.push('-T', options.table);
    const result = await this.#runner.run(file, args, payload);
    if (result.exitCode !== 0) throw restoreError([file, ...args].join(' '), payload, result);
  }

  /** iptables-save output: all tables, or just `table`. */
  async save(table?: TableName): Promise<string> {
    return (await runChecked(this.#runner, `${this.#command}-save`, table === undefined ? [] : ['-t', table])).stdout;
  }

  /** Creates the chain if it is missing; true if it already existed. */
  async ensureChain(table: TableName, chain: string): Promise<boolean> {
    const result = await this.#run(table, ['-N', chain]);
    if (result.exitCode === 0) return false;
    if (result.exitCode === 1 && /already exists/i.test(result.stderr)) return true;
    throw this.#error(table, ['-N', chain], result);
  }

  /** Adds the rule at the top (`-I`) or bottom (`-A`) of the chain unless `-C` finds it; true if it already existed. */
  async ensureRule(position: 'prepend' | 'append', table: TableName, chain: string, args: readonly string[]): Promise<boolean> {
    if (await this.#check(table, chain, args)) return true;
    await this.#runChecked(table, [position === 'prepend' ? '-I' : '-A', chain, ...args]);
    return false;
  }

  /** `-C`: whether the rule is in the chain (false also when the chain is missing). */
  hasRule(table: TableName, chain: string, args: readonly string[]): Promise<boolean> {
    return this.#check(table, chain, args);
  }

  /** Deletes the rule; false if it (or its chain) was not there. */
  async deleteRule(table: TableName, chain: string, args: readonly string[]): Promise<boolean> {
    if (!(await this.#check(table, chain, args))) return false;
    await this.#runChecked(table, ['-D', chain, ...args]);
    return true;
  }

  async chainExists(table: TableName, chain: string): Promise<boolean> {
    // `-S CHAIN 1` prints at most one rule, so this stays cheap for chains with thousands.
    const result = await this.#run(table, ['-S', chain, '1']);
    if (result.exitCode === 0) return true;
    if (result.exitCode === 1) return false;
    throw this.#error(table, ['-S', chain, '1'], result);
  }

  /** Flushes and deletes the chain; false if it did not exist. */
  async deleteChain(table: TableName, chain: string): Promise<boolean> {
    if (!(await this.chainExists(table, chain))) return false;
    await this.#runChecked(table, ['-F', chain]);
    await this.#runChecked(table, ['-X', chain]);
    return true;
  }

  /** `iptables --version`: `iptables v1.8.9 (nf_tables)`; releases before 1.8 print no backend and are legacy. */
  async version(): Promise<{ version: string; backend: 'nf_tables' | 'legacy' }> {
    const { stdout } = await runChecked(this.#runner, this.#command, ['--version']);
    const version = /v(\d+(?:\.\d+)+)/.exec(stdout)?.[1];
    if (version === undefined) throw new Error(`${this.#command} --version printed no version: ${stdout.trim()}`);
    return { version, backend: stdout.includes('(nf_tables)') ? 'nf_tables' : 'legacy' };
  }

  /** `-C`: exit 0 means present, exit 1 absent (also when the chain is missing). */
  async #check(table: TableName, chain: string, args: readonly string[]): Promise<boolean> {
    const result = await this.#run(table, ['-C', chain, ...args]);
    if (result.exitCode === 0) return true;
    if (result.exitCode === 1) return false;
    throw this.#error(table, ['-C', chain, ...args], result);
  }

  #args(table: TableName, op: readonly string[]): string[] {
    return [...this.#wait, '-t', table, ...op];
  }

  #run(table: TableName, op: readonly string[]): Promise<ExecResult> {
    return this.#runner.run(this.#command, this.#args(table, op));
  }

  async #runChecked(table: TableName, op: readonly string[]): Promise<void> {
    await runChecked(this.#runner, this.#command, this.#args(table, op));
  }

  #error(table: TableName, op: readonly string[], result: ExecResult): Error {
    return commandError(this.#command, this.#args(table, op), result);
  }
}
