/**
 * The real helm binary (pinned by e2e/build/build-binaries.sh) driving charts/kpx: render the chart
 * with given values and parse the manifests, or run any helm command (lint, package, install into
 * the real-cluster harness's apiserver with --kubeconfig). Argument arrays only, never a shell;
 * values go to helm on stdin (`--values -`).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { tryRun, type RunResult } from '../cluster/sys.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = join(HERE, '..', '..');
export const CHART_DIR = join(REPO_ROOT, 'charts', 'kpx');
const BUILD_SCRIPT = join(REPO_ROOT, 'e2e', 'build', 'build-binaries.sh');

/** The release name and namespace every doc and test uses (.scratch contract, docs/install.md). */
export const RELEASE = 'kpx';
export const NAMESPACE = 'kube-system';

/** A rendered Kubernetes object; only the fields every object has are typed. */
export interface KubeObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly labels?: Readonly<Record<string, string>>; readonly annotations?: Readonly<Record<string, string>> };
  readonly [field: string]: unknown;
}

let cachedBinary: Promise<string> | undefined;

async function locateHelm(): Promise<string> {
  let dir = process.env.KPX_BIN_HELM;
  if (dir === undefined) {
    // --print-env exits 3 when any pinned binary is missing; the helm line is printed regardless.
    const result = await tryRun('bash', [BUILD_SCRIPT, '--print-env']);
    dir = /^KPX_BIN_HELM=(.+)$/m.exec(result.stdout)?.[1];
  }
  const path = dir === undefined ? undefined : join(dir, 'helm');
  if (path === undefined || !existsSync(path)) {
    throw new Error(`helm is not built (${path ?? 'no KPX_BIN_HELM'}); run: bash e2e/build/build-binaries.sh (or set KPX_BIN_HELM to a directory holding helm)`);
  }
  return path;
}

/** The pinned helm: $KPX_BIN_HELM/helm, else the directory e2e/build/build-binaries.sh --print-env reports. */
export function helmBinary(): Promise<string> {
  cachedBinary ??= locateHelm();
  return cachedBinary;
}

// charts/kpx/crds is a symbolic link to the repository's crds/; helm follows it and logs this line on
// every command that loads the chart from its directory.
const SYMLINK_NOTICE = /^walk\.go:\d+: found symbolic link in path: .*\n?/gm;

/** Runs helm; a non-zero exit is returned, not thrown. stderr is without helm's symlink notice. */
export async function helm(args: readonly string[], input?: string): Promise<RunResult> {
  const result = await tryRun(await helmBinary(), args, input);
  return { ...result, stderr: result.stderr.replace(SYMLINK_NOTICE, '') };
}

/** Runs helm and throws with its stderr when it fails; returns stdout. */
export async function helmOrThrow(args: readonly string[], input?: string): Promise<string> {
  const result = await helm(args, input);
  if (result.exitCode !== 0) throw new Error(`helm ${args.join(' ')} failed (exit ${String(result.exitCode)}): ${result.stderr.trim()}`);
  return result.stdout;
}

/** Every object of a multi-document YAML stream (empty documents dropped). */
export function parseManifests(text: string): KubeObject[] {
  const objects: KubeObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`invalid YAML in rendered manifests: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = doc.toJS();
    if (value !== null && value !== undefined) objects.push(value as KubeObject);
  }
  return objects;
}

export interface RenderOptions {
  /** Values merged over the chart's values.yaml (like a `-f` file). */
  readonly values?: Readonly<Record<string, unknown>>;
  /** Values files (`-f`), applied before `values`. */
  readonly valuesFiles?: readonly string[];
  /** `--set` expressions, applied last. */
  readonly set?: readonly string[];
  /** Include the CRDs from crds/ (`--include-crds`). */
  readonly includeCrds?: boolean;
  readonly release?: string;
  readonly namespace?: string;
  /** Anything else for `helm template` (e.g. `--kube-version 1.29.0`). */
  readonly extraArgs?: readonly string[];
}

/** The `helm template` arguments for options (chart and release included). */
export function templateArgs(options: RenderOptions = {}): string[] {
  return [
    'template',
    options.release ?? RELEASE,
    CHART_DIR,
    '--namespace',
    options.namespace ?? NAMESPACE,
    ...(options.includeCrds === true ? ['--include-crds'] : []),
    ...(options.valuesFiles ?? []).flatMap((file) => ['--values', file]),
    ...(options.values === undefined ? [] : ['--values', '-']),
    ...(options.set ?? []).flatMap((expression) => ['--set', expression]),
    ...(options.extraArgs ?? []),
  ];
}

/** Runs `helm template` for options; a failed render is returned (exit code and stderr), not thrown. */
export function helmTemplate(options: RenderOptions = {}): Promise<RunResult> {
  return helm(templateArgs(options), options.values === undefined ? undefined : stringify(options.values));
}

/** `helm template` output as raw text; throws with helm's message when rendering fails. */
export async function renderChartText(options: RenderOptions = {}): Promise<string> {
  const result = await helmTemplate(options);
  if (result.exitCode !== 0) throw new Error(`helm template failed (exit ${String(result.exitCode)}): ${result.stderr.trim()}`);
  return result.stdout;
}

/** The objects `helm template` renders (hooks such as the test Pod included). */
export async function renderChart(options: RenderOptions = {}): Promise<KubeObject[]> {
  return parseManifests(await renderChartText(options));
}

/** The one object of this kind and name; throws (listing what was rendered) when absent. */
export function findObject(objects: readonly KubeObject[], kind: string, name: string): KubeObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (found === undefined) throw new Error(`no ${kind} ${name} among ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return found;
}
