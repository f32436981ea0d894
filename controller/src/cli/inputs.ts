/**
 * Reads `-f` inputs (files, directories, `-` for stdin) or the embedded example cluster.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeDocuments, type SourcedObject } from '../model/documents.ts';
import { parseDump, RulesetParseError, type ParsedDump } from '../sim/parse.ts';
import { UsageError } from './args.ts';

export const EMBEDDED_EXAMPLE = fileURLToPath(new URL('../../../examples/cluster.yaml', import.meta.url));

const INPUT_EXTENSIONS = ['.yaml', '.yml', '.json'];

function readOne(path: string, stdin: () => string): { text: string; name: string }[] {
  if (path === '-') return [{ text: stdin(), name: '<stdin>' }];
  let stat;
  try {
    stat = statSync(path);
  } catch (error) {
    throw new UsageError(`${path}: cannot read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, { cause: error });
  }
  if (stat.isDirectory()) {
    return readdirSync(path)
      .filter((f) => INPUT_EXTENSIONS.some((e) => f.endsWith(e)))
      .sort()
      .flatMap((f) => readOne(join(path, f), stdin));
  }
  return [{ text: readFileSync(path, 'utf8'), name: path }];
}

export interface LoadedInputs {
  readonly objects: readonly SourcedObject[];
  /** What was read, for messages: the file names, or "the embedded example". */
  readonly description: string;
}

export function loadInputs(files: readonly string[] | undefined, stdin: () => string): LoadedInputs {
  if (files === undefined || files.length === 0) {
    return { objects: decodeDocuments(readFileSync(EMBEDDED_EXAMPLE, 'utf8'), 'examples/cluster.yaml'), description: 'the embedded example (examples/cluster.yaml)' };
  }
  const objects = files.flatMap((f) => readOne(f, stdin)).flatMap(({ text, name }) => decodeDocuments(text, name));
  return { objects, description: files.join(', ') };
}

/** Reads the text of a file named on the command line; a missing file is a usage error. */
export function readInputFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`${path}: cannot read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, { cause: error });
  }
}

/** Parses an iptables-save dump; an unsupported rule is a usage error naming the file and line. */
export function parseDumpText(path: string, text: string, family: 'IPv4' | 'IPv6'): ParsedDump {
  try {
    return parseDump(text, family);
  } catch (error) {
    if (error instanceof RulesetParseError) throw new UsageError(`${path}: ${error.message}`, { cause: error });
    throw error;
  }
}

export function readDumpFile(path: string, family: 'IPv4' | 'IPv6'): ParsedDump {
  return parseDumpText(path, readInputFile(path), family);
}
