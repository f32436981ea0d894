/**
 * Static reading of the Dockerfile and .dockerignore, for the checks that need no Docker engine:
 * the instructions by stage (line continuations and comments handled like the builder does, for
 * the subset kpx's Dockerfile uses), where the build context's files land in the final image, and
 * which context files .dockerignore keeps (Docker's rules: Go filepath.Match patterns plus `**`,
 * a pattern also covering everything below a directory it matches, the last matching pattern
 * deciding, `!` re-including).
 */
import { posix } from 'node:path';

export interface Instruction {
  /** Upper case: FROM, COPY, RUN, ... */
  readonly keyword: string;
  /** Everything after the keyword, continuation lines joined with a space. */
  readonly args: string;
  /** 1-based line of the keyword. */
  readonly line: number;
}

export interface Stage {
  readonly from: Instruction;
  /** The image reference: FROM's first word. */
  readonly image: string;
  readonly name: string | undefined;
  readonly instructions: readonly Instruction[];
}

/** Parses a Dockerfile into stages (instructions before the first FROM, global ARGs, are skipped). */
export function parseDockerfile(text: string): Stage[] {
  const instructions: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i]?.trim() ?? '';
    if (first === '' || first.startsWith('#')) continue;
    const start = i;
    let body = first;
    while (body.endsWith('\\') && i + 1 < lines.length) {
      body = body.slice(0, -1).trimEnd();
      i++;
      const next = lines[i]?.trim() ?? '';
      if (next !== '' && !next.startsWith('#')) body += ` ${next}`;
    }
    const m = /^(\S+)\s*(.*)$/.exec(body);
    if (m !== null) instructions.push({ keyword: (m[1] ?? '').toUpperCase(), args: m[2] ?? '', line: start + 1 });
  }
  const stages: Stage[] = [];
  let current: { from: Instruction; instructions: Instruction[] } | undefined;
  const close = (): void => {
    if (current === undefined) return;
    const [image = '', as, name] = current.from.args.split(/\s+/);
    stages.push({ from: current.from, image, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: current.instructions });
  };
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      close();
      current = { from: ins, instructions: [] };
    } else current?.instructions.push(ins);
  }
  close();
  return stages;
}

/** The JSON array of an exec-form instruction (ENTRYPOINT, CMD, RUN), or undefined for shell form. */
export function execForm(ins: Instruction): string[] | undefined {
  if (!ins.args.startsWith('[')) return undefined;
  try {
    const value: unknown = JSON.parse(ins.args);
    return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : undefined;
  } catch {
    return undefined;
  }
}

export interface ContextCopy {
  /** Context paths (relative, normalised, no trailing slash), as written. */
  readonly sources: readonly string[];
  /** Absolute destination in the image (WORKDIR applied). */
  readonly destination: string;
  /** The destination is a directory (written with a trailing `/` or as `.`, or several sources). */
  readonly intoDirectory: boolean;
  readonly line: number;
}

/** The COPY/ADD instructions of a stage that read the build context (no --from), with their destinations resolved. */
export function contextCopies(stage: Stage): ContextCopy[] {
  const copies: ContextCopy[] = [];
  let workdir = '/';
  for (const ins of stage.instructions) {
    if (ins.keyword === 'WORKDIR') workdir = posix.resolve(workdir, ins.args.trim());
    if (ins.keyword !== 'COPY' && ins.keyword !== 'ADD') continue;
    const words = execForm(ins) ?? ins.args.split(/\s+/);
    if (words.some((w) => w.startsWith('--from='))) continue;
    const paths = words.filter((w) => !w.startsWith('--'));
    const destination = paths.at(-1) ?? '';
    const sources = paths.slice(0, -1).map((s) => posix.normalize(s).replace(/(.)\/$/, '$1'));
    copies.push({ sources, destination: posix.resolve(workdir, destination), intoDirectory: /(^|\/)\.?$/.test(destination) || sources.length > 1, line: ins.line });
  }
  return copies;
}

/**
 * Where a context file lands in the image, by Docker's COPY rules: a directory source copies its
 * contents into the destination; a file source goes into a directory destination, or becomes
 * the destination. The last COPY wins. No wildcard sources (kpx's Dockerfile has none).
 */
export function imagePathOf(copies: readonly ContextCopy[], file: string, isDirectory: (path: string) => boolean): string | undefined {
  let found: string | undefined;
  for (const copy of copies) {
    for (const source of copy.sources) {
      if (isDirectory(source)) {
        if (source === '.') found = posix.join(copy.destination, file);
        else if (file.startsWith(`${source}/`)) found = posix.join(copy.destination, file.slice(source.length + 1));
      } else if (file === source) found = copy.intoDirectory ? posix.join(copy.destination, posix.basename(file)) : copy.destination;
    }
  }
  return found;
}

/** One .dockerignore pattern turned into a RegExp over slash-separated context paths. */
function patternRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern.charAt(i);
    if (c === '*' && pattern.charAt(i + 1) === '*') {
      i++;
      if (pattern.charAt(i + 1) === '/') {
        i++;
        re += '(?:.*/)?';
      } else re += '.*';
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) throw new Error(`.dockerignore pattern "${pattern}" has an unclosed [`);
      re += `[${pattern.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\')}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export class DockerIgnore {
  readonly #rules: readonly { readonly exclude: boolean; readonly re: RegExp; readonly text: string }[];

  constructor(text: string) {
    this.#rules = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => {
        const exclude = !l.startsWith('!');
        const cleaned = posix.normalize(exclude ? l : l.slice(1).trim()).replace(/^\/+/, '').replace(/\/$/, '');
        return { exclude, re: patternRegExp(cleaned), text: l };
      });
  }

  /** The pattern that decides `path` (the last one matching it or a parent directory), if any. */
  decidingPattern(path: string): { readonly exclude: boolean; readonly text: string } | undefined {
    const parts = path.split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let decided: { exclude: boolean; text: string } | undefined;
    for (const rule of this.#rules) if (prefixes.some((p) => rule.re.test(p))) decided = rule;
    return decided;
  }

  /** Whether the context file at `path` (relative, slash-separated) is sent to the builder. */
  includes(path: string): boolean {
    return this.decidingPattern(path)?.exclude !== true;
  }
}
