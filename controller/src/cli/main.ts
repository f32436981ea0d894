/**
 * The `kpx` entry point: dispatches subcommands and maps errors to exit codes. Nothing below this
 * file prints or exits; a stack trace never reaches the user.
 */
import { readFileSync } from 'node:fs';
import { InputError } from '../model/documents.ts';
import { UsageError } from './args.ts';
import type { CommandIO } from './io.ts';
import { previewCommand } from './preview.ts';
import { traceCommand } from './trace.ts';
import { verifyCommand } from './verify.ts';
import { diffCommand } from './diff.ts';
import { runCommand } from './run.ts';

const USAGE = `Usage: kpx <command> [options]

Commands:
  preview   compile Services and EndpointSlices into iptables rules and verify them
  trace     trace a packet through the rules, with exact probabilities
  verify    prove compiled rules, or check a node's dump against the desired state
  diff      which Service frontends behave differently between two states or dumps
  run       the node agent: keep this node's rules right

Run "kpx <command> --help" for a command's options.
`;

export async function runCli(argv: readonly string[], io: CommandIO): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'preview':
        return previewCommand(rest, io);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.stdout(USAGE);
        return command === undefined ? 2 : 0;
      case 'trace':
        return traceCommand(rest, io);
      case 'verify':
        return verifyCommand(rest, io);
      case 'diff':
        return diffCommand(rest, io);
      case 'run':
        return await runCommand(rest, io);
      default:
        io.stderr(`kpx: unknown command "${command}"\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    if (error instanceof UsageError || error instanceof InputError) {
      io.stderr(`kpx: ${error.message}\n`);
      return 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    io.stderr(`kpx: internal error: ${message} (please report this with the input that caused it)\n`);
    if (process.env.KPX_DEBUG === '1' && error instanceof Error) io.stderr(`${error.stack ?? ''}\n`);
    return 70;
  }
}

export const processIO: CommandIO = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  readStdin: () => readFileSync(0, 'utf8'),
};
