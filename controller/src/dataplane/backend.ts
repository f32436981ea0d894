/**
 * Which iptables backend (nf_tables or legacy x_tables) kpx drives, chosen like upstream's
 * iptables-wrapper (kubernetes-sigs/iptables-wrappers): a container cannot know which one the
 * node's own tools use, and rules written through the other one would sit in a separate ruleset
 * that the node's firewall, kubelet and kube-proxy never see. The decision is pure
 * (chooseBackend: scans in, backend out); detectBackend() runs the save commands around it.
 */
import type { CommandRunner, ExecResult } from './exec.ts';

/** `nft`/`legacy`: the `iptables-nft*` / `iptables-legacy*` binaries; `default`: plain `iptables*`. */
export type IptablesBackend = 'nft' | 'legacy' | 'default';

/** The values `kpx run --iptables-backend` accepts. */
export const BACKEND_FLAG_VALUES = ['auto', 'nft', 'legacy'] as const;
export type BackendFlag = (typeof BACKEND_FLAG_VALUES)[number];

export function isBackendFlag(text: string): text is BackendFlag {
  return (BACKEND_FLAG_VALUES as readonly string[]).includes(text);
}

/**
 * The chains kubelet (1.17 and later) creates in the mangle table of the backend the node uses:
 * the strongest hint there is, so it wins over rule counts.
 */
export const HINT_CHAINS: readonly string[] = ['KUBE-IPTABLES-HINT', 'KUBE-KUBELET-CANARY'];

/** What one backend's `iptables-save` and `ip6tables-save` showed. */
export interface BackendScan {
  /** Why the backend cannot be used (its IPv4 save did not run); undefined when it can. */
  readonly unusable?: string;
  /** Hint chains found in mangle, as `IPv4 KUBE-IPTABLES-HINT`. */
  readonly hints: readonly string[];
  /** Rules (`-A` lines) over all tables, IPv4 and IPv6 together. */
  readonly rules: number;
}

export interface BackendDecision {
  readonly backend: IptablesBackend;
  /** One sentence for the log: why this backend. */
  readonly reason: string;
}

/** Hint chains declared in the dump's mangle table and the number of rules in all its tables. */
export function scanDump(dump: string): { hints: string[]; rules: number } {
  const hints: string[] = [];
  let rules = 0;
  let table = '';
  for (const line of dump.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1).trim();
    else if (line.startsWith('-')) rules++;
    else if (line.startsWith(':') && table === 'mangle') {
      const chain = line.slice(1).split(' ')[0] ?? '';
      if (HINT_CHAINS.includes(chain)) hints.push(chain);
    }
  }
  return { hints, rules };
}

/**
 * Upstream iptables-wrapper's rule: the backend whose mangle table holds kubelet's hint chains
 * (nft checked first, as upstream does), otherwise the one holding more rules, ties (an empty
 * node included) to nft, the default of every current distribution. A backend whose save
 * command does not run is out; with neither usable, plain `iptables` (whatever the alternatives
 * system points at, e.g. on a developer machine without the -nft/-legacy variants).
 */
export function chooseBackend(scans: { readonly nft: BackendScan; readonly legacy: BackendScan }): BackendDecision {
  const { nft, legacy } = scans;
  if (nft.unusable !== undefined && legacy.unusable !== undefined) {
    return { backend: 'default', reason: `neither variant is usable (${nft.unusable}; ${legacy.unusable}), so plain iptables` };
  }
  if (legacy.unusable !== undefined) return { backend: 'nft', reason: `the only usable variant (${legacy.unusable})` };
  if (nft.unusable !== undefined) return { backend: 'legacy', reason: `the only usable variant (${nft.unusable})` };
  const hinted = (hints: readonly string[], backend: string): string => `kubelet's ${hints.join(', ')} chain${hints.length > 1 ? 's are' : ' is'} in the ${backend} mangle table`;
  if (nft.hints.length > 0) return { backend: 'nft', reason: hinted(nft.hints, 'nft') };
  if (legacy.hints.length > 0) return { backend: 'legacy', reason: hinted(legacy.hints, 'legacy') };
  const counts = `${String(nft.rules)} nft rules, ${String(legacy.rules)} legacy rules`;
  if (legacy.rules > nft.rules) return { backend: 'legacy', reason: `no kubelet hint chains; legacy holds more rules (${counts})` };
  if (nft.rules > legacy.rules) return { backend: 'nft', reason: `no kubelet hint chains; nft holds more rules (${counts})` };
  return { backend: 'nft', reason: `no kubelet hint chains and a tie (${counts}): nft, the default` };
}

/** `iptables-nft-save` is not installed / failed (exit 4): <first stderr line>. */
function whyUnusable(program: string, result: ExecResult): string {
  if (/ENOENT|No such file or directory/.test(result.stderr)) return `${program} is not installed`;
  const first = result.stderr.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? 'no error output';
  return `${program} failed (exit ${String(result.exitCode)}): ${first}`;
}

/**
 * Runs `ip[6]tables-<backend>-save` (all tables: `-t mangle` would make legacy iptables create
 * the table in the kernel, which upstream avoids too) and scans the output.
 */
async function scanBackend(runner: CommandRunner, backend: 'nft' | 'legacy'): Promise<BackendScan> {
  const hints: string[] = [];
  let rules = 0;
  for (const [family, base] of [['IPv4', 'iptables'], ['IPv6', 'ip6tables']] as const) {
    const program = `${base}-${backend}-save`;
    const result = await runner.run(program, []);
    if (result.exitCode !== 0) {
      // Without IPv6 (ipv6.disable=1) only the IPv4 side counts; without IPv4 the backend is out.
      if (family === 'IPv4') return { unusable: whyUnusable(program, result), hints: [], rules: 0 };
      continue;
    }
    const scan = scanDump(result.stdout);
    hints.push(...scan.hints.map((h) => `${family} ${h}`));
    rules += scan.rules;
  }
  return { hints, rules };
}

export interface BackendChoice extends BackendDecision {
  /** The scans behind an `auto` decision, for the log. */
  readonly scans?: { readonly nft: BackendScan; readonly legacy: BackendScan };
}

/**
 * The backend for `--iptables-backend flag`. An explicit nft or legacy is checked to run
 * (`iptables-<flag> --version`), so a node without it fails at start with one clear line
 * rather than at the first sync.
 */
export async function detectBackend(runner: CommandRunner, flag: BackendFlag): Promise<BackendChoice> {
  if (flag !== 'auto') {
    const program = `iptables-${flag}`;
    const result = await runner.run(program, ['--version']);
    if (result.exitCode !== 0) throw new Error(`--iptables-backend ${flag}: ${whyUnusable(program, result)}`);
    return { backend: flag, reason: `--iptables-backend ${flag} (${result.stdout.trim()})` };
  }
  const scans = { nft: await scanBackend(runner, 'nft'), legacy: await scanBackend(runner, 'legacy') };
  return { ...chooseBackend(scans), scans };
}
