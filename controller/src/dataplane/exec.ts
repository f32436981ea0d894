/**
 * The one way kpx runs programs: execa with an argument array (never a shell), payloads on
 * stdin. Everything in dataplane/ takes a CommandRunner, so tests and the real-cluster harness
 * can aim it at a network namespace (`prefix: ['ip', 'netns', 'exec', NAME]`).
 */
import { execa } from 'execa';

export interface ExecResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CommandRunner {
  /** Runs `file args...` with `input` on stdin; a non-zero exit is returned, not thrown. */
  run(file: string, args: readonly string[], input?: string): Promise<ExecResult>;
}

/** Restore payloads and save dumps of large clusters run to tens of MB; execa's default is 100 MB. */
const MAX_BUFFER = 256 * 1024 * 1024;

export function execaRunner(options: { prefix?: readonly string[] } = {}): CommandRunner {
  const prefix = options.prefix ?? [];
  return {
    async run(file, args, input) {
      const [program, ...argv] = [...prefix, file, ...args] as [string, ...string[]];
      const result = await execa(program, argv, { reject: false, stripFinalNewline: false, maxBuffer: MAX_BUFFER, input: input ?? '' });
      // No exit code: the program could not be started, or a signal ended it.
      if (result.exitCode === undefined) return { exitCode: -1, stdout: result.stdout, stderr: result.stderr === '' ? (result.shortMessage ?? '') : result.stderr };
      return { exitCode: result.exitCode, stdout: result.stdout, stderr: result.stderr };
    },
  };
}

/** One line: the command, its exit code and its stderr. */
export function commandError(file: string, args: readonly string[], result: ExecResult): Error {
  const stderr = result.stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '').join('; ');
  return new Error(`${[file, ...args].join(' ')} failed (exit ${String(result.exitCode)}): ${stderr === '' ? 'no error output' : stderr}`);
}

/** Runs and throws commandError() unless the program exits 0. */
export async function runChecked(runner: CommandRunner, file: string, args: readonly string[], input?: string): Promise<ExecResult> {
  const result = await runner.run(file, args, input);
  if (result.exitCode !== 0) throw commandError(file, args, result);
  return result;
}
