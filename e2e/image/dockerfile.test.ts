/**
 * The container image, checked without a Docker engine (these machines have none; the kind
 * workflow builds it): hadolint at its strictest, the entrypoint being the very kpx.js the
 * real-cluster harness runs, every module and file that entrypoint loads reaching /app through
 * the COPY instructions and .dockerignore, and the Node version being the project's.
 *   npx vitest run --config e2e/cluster/vitest.config.ts e2e/image
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { contextCopies, DockerIgnore, execForm, imagePathOf, parseDockerfile, type Stage } from './dockerfile.ts';
import { hadolint } from './hadolint.ts';
import { moduleGraph } from './modules.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DOCKERFILE = join(ROOT, 'Dockerfile');
const TEXT = readFileSync(DOCKERFILE, 'utf8');
const STAGES = parseDockerfile(TEXT);
const FINAL: Stage = ((): Stage => {
  const last = STAGES.at(-1);
  if (last === undefined) throw new Error('the Dockerfile has no FROM');
  return last;
})();
const IGNORE = new DockerIgnore(readFileSync(join(ROOT, '.dockerignore'), 'utf8'));
const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; license: string; engines: { node: string }; dependencies: Record<string, string>; devDependencies: Record<string, string> };
const LOCK = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> };

const ENTRYPOINT = ['/usr/local/bin/node', '/app/controller/bin/kpx.js'];

const isDirectory = (path: string): boolean => {
  try {
    return statSync(join(ROOT, path)).isDirectory();
  } catch {
    return false;
  }
};

/** Every file below a repository directory, repository-relative. */
function filesUnder(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(ROOT, join(e.parentPath, e.name)))
    .sort();
}

const only = <T>(items: readonly T[], what: string): T => {
  if (items.length !== 1) throw new Error(`expected one ${what}, found ${String(items.length)}`);
  return items[0] as T;
};
const instructions = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);

describe('the Dockerfile passes hadolint', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'kpx-dockerfile-'));
  afterAll(() => {
    rmSync(scratch, { recursive: true, force: true });
  });

  it('exits 0 with no finding at any level', async () => {
    const result = await hadolint(DOCKERFILE);
    expect(result.findings).toEqual([]);
    expect(result.exitCode, result.stderr).toBe(0);
  });

  it('each ignore pragma follows a comment that says why, and hides a finding (none is stale)', async () => {
    const lines = TEXT.split('\n');
    const pragmas = lines.flatMap((l, i) => {
      const m = /^#\s*hadolint\s+ignore=(\S+)\s*$/.exec(l.trim());
      return m === null ? [] : [{ line: i + 1, codes: (m[1] ?? '').split(','), justification: lines[i - 1]?.trim() ?? '' }];
    });
    for (const p of pragmas) expect(p.justification, `the line above the pragma on line ${String(p.line)}`).toMatch(/^#\s*\S.{20,}/);
    const hidden = (await hadolint(DOCKERFILE, { honourPragmas: false })).findings;
    expect(hidden.map((f) => `${String(f.line)} ${f.code}`).sort()).toEqual(pragmas.flatMap((p) => p.codes.map((c) => `${String(p.line + 1)} ${c}`)).sort());
  });

  it('would flag an unpinned base, a shell-form CMD and unpinned apt packages (so the lint can fail)', async () => {
    const variants: [string, string, string][] = [
      ['latest', TEXT.replace(/^FROM node:\S+/m, 'FROM node:latest'), 'DL3007'],
      ['shell CMD', TEXT.replace(/^CMD .*$/m, 'CMD node /app/controller/bin/kpx.js --help'), 'DL3025'],
      ['unpinned apt', TEXT.replace('iptables=1.8.9-2', 'iptables'), 'DL3008'],
    ];
    for (const [name, text, code] of variants) {
      expect(text, name).not.toBe(TEXT);
      const file = join(scratch, `Dockerfile.${name.replace(/ /g, '-')}`);
      writeFileSync(file, text);
      const result = await hadolint(file);
      expect(result.findings.map((f) => f.code), name).toContain(code);
      expect(result.exitCode, name).toBe(1);
    }
  });
});

describe('the image runs what the real-cluster harness runs', () => {
  it('ENTRYPOINT is node on /app/controller/bin/kpx.js in exec form, and no CMD needs a shell', () => {
    expect(execForm(only(instructions(FINAL, 'ENTRYPOINT'), 'ENTRYPOINT'))).toEqual(ENTRYPOINT);
    for (const stage of STAGES) for (const ins of [...instructions(stage, 'CMD'), ...instructions(stage, 'ENTRYPOINT')]) expect(execForm(ins), `line ${String(ins.line)}: ${ins.args}`).toBeDefined();
  });

  it("/app/controller/bin/kpx.js is the repository's controller/bin/kpx.js, the KPX_BIN e2e/cluster/kpx-agent.ts starts with node", () => {
    const agentSource = readFileSync(join(ROOT, 'e2e/cluster/kpx-agent.ts'), 'utf8');
    const url = /const KPX_BIN = fileURLToPath\(new URL\('([^']+)', import\.meta\.url\)\);/.exec(agentSource)?.[1];
    expect(url, 'KPX_BIN in e2e/cluster/kpx-agent.ts').toBeDefined();
    const harnessBin = relative(ROOT, join(ROOT, 'e2e/cluster', url ?? ''));
    expect(harnessBin).toBe('controller/bin/kpx.js');
    // The harness runs `<node> KPX_BIN run ...`: the same program and script, the chart adds `run ...`.
    expect(agentSource).toMatch(/process\.execPath,\s*\[\s*KPX_BIN,\s*'run',/);
    const copies = contextCopies(FINAL);
    expect(imagePathOf(copies, harnessBin, isDirectory)).toBe(ENTRYPOINT[1]);
    expect(IGNORE.includes(harnessBin)).toBe(true);
  });

  it('every module and file the entrypoint loads is in the build context and lands at the same path under /app', () => {
    const graph = moduleGraph(ROOT, 'controller/bin/kpx.js');
    expect(graph.modules.length).toBeGreaterThan(40);
    expect(graph.modules).toContain('controller/src/agent/agent.ts');
    expect(graph.files).toContain('examples/cluster.yaml');
    const copies = contextCopies(FINAL);
    // package.json too: its "type": "module" makes Node load kpx.js as an ES module.
    const needed = ['package.json', ...graph.modules, ...graph.files];
    const problems = needed.flatMap((file) => {
      if (!statSync(join(ROOT, file), { throwIfNoEntry: false })?.isFile()) return [`${file}: not in the repository`];
      if (!IGNORE.includes(file)) return [`${file}: excluded by .dockerignore (${IGNORE.decidingPattern(file)?.text ?? ''})`];
      const at = imagePathOf(copies, file, isDirectory);
      return at === `/app/${file}` ? [] : [`${file}: lands at ${at ?? 'nowhere'} instead of /app/${file}`];
    });
    expect(problems).toEqual([]);
    // Imported packages come from `npm ci --omit=dev`: they must be production dependencies.
    expect(graph.packages.filter((p) => PACKAGE.dependencies[p] === undefined)).toEqual([]);
    const build = only(STAGES.filter((s) => s.name === 'build'), 'build stage');
    expect(instructions(build, 'RUN').map((r) => r.args).join('\n')).toMatch(/\bnpm ci --omit=dev\b/);
    expect(instructions(FINAL, 'COPY').map((c) => c.args)).toContain('--from=build /app/node_modules ./node_modules');
  });
});

describe('the build context', () => {
  it('every COPY source exists and keeps at least one file through .dockerignore', () => {
    const sources = STAGES.flatMap((s) => contextCopies(s).flatMap((c) => c.sources.map((source) => ({ source, line: c.line }))));
    expect(sources.length).toBeGreaterThan(0);
    for (const { source, line } of sources) {
      const files = isDirectory(source) ? filesUnder(source) : statSync(join(ROOT, source), { throwIfNoEntry: false })?.isFile() === true ? [source] : [];
      expect(files.length, `COPY ${source} (line ${String(line)}) names nothing in the repository`).toBeGreaterThan(0);
      expect(files.filter((f) => IGNORE.includes(f)).length, `.dockerignore leaves nothing of COPY ${source} (line ${String(line)})`).toBeGreaterThan(0);
    }
  });

  it('tests and test fixtures stay out of the image, and nothing else of controller/src does', () => {
    const testFiles = (f: string): boolean => f.endsWith('.test.ts') || f.split('/').includes('testdata');
    const all = filesUnder('controller/src');
    expect(all.filter(testFiles).length).toBeGreaterThan(10);
    expect(all.filter((f) => testFiles(f) && IGNORE.includes(f))).toEqual([]);
    expect(all.filter((f) => !testFiles(f) && !IGNORE.includes(f))).toEqual([]);
    expect(['controller/test-setup.ts', 'e2e/kernel/netns.ts', 'node_modules/execa/package.json', '.git/HEAD', '.scratch/contract.md'].filter((f) => IGNORE.includes(f))).toEqual([]);
  });

  it('follows Docker .dockerignore semantics (parents, re-inclusion, last match wins, **)', () => {
    const ignore = new DockerIgnore('*\n!keep/\nkeep/**/*.tmp\n!keep/x/important.tmp\n# comment\n/rooted\n');
    expect(['keep/a.ts', 'keep/x/important.tmp'].filter((f) => !ignore.includes(f))).toEqual([]);
    expect(['other/a.ts', 'top.ts', 'keep/b.tmp', 'keep/x/y/c.tmp', 'rooted/z'].filter((f) => ignore.includes(f))).toEqual([]);
    expect(new DockerIgnore('docs\n').includes('docs/x/y.md')).toBe(false);
    expect(new DockerIgnore('d?cs/[a-c]*.md\n').includes('docs/b.md')).toBe(false);
    expect(new DockerIgnore('d?cs/[a-c]*.md\n').includes('docs/x.md')).toBe(true);
  });
});

describe('base images, Node and packages', () => {
  const nodeVersion = LOCK.packages['node_modules/node']?.version ?? '';

  it("builds on the exact Node release of the project's node devDependency, on a pinned bookworm slim image", () => {
    expect(nodeVersion).toMatch(/^24\.\d+\.\d+$/);
    const build = only(STAGES.filter((s) => s.name === 'build'), 'build stage');
    expect(build.image).toBe(`node:${nodeVersion}-bookworm-slim\${NODE_DIGEST}`);
    // package.json's range (^X.Y.Z) and engines (>=24 <25) both admit that release.
    expect(PACKAGE.devDependencies.node).toBe(`^${nodeVersion}`);
    expect(PACKAGE.engines.node).toBe(`>=${nodeVersion.split('.')[0] ?? ''}.0.0 <${String(Number(nodeVersion.split('.')[0]) + 1)}`);
    // The runtime's node is that build stage's binary.
    expect(instructions(FINAL, 'COPY').map((c) => c.args)).toContain('--from=build /usr/local/bin/node /usr/local/bin/node');
  });

  it('pins the runtime base to a Debian 12 (bookworm) slim point release, with optional digests as build args', () => {
    expect(FINAL.image).toMatch(/^debian:12\.\d+-slim\$\{DEBIAN_DIGEST\}$/);
    for (const arg of ['NODE_DIGEST', 'DEBIAN_DIGEST']) expect(TEXT, arg).toMatch(new RegExp(`^ARG ${arg}=""$`, 'm'));
    expect(STAGES.map((s) => s.image).filter((i) => /:latest\b|^[^:]+$/.test(i))).toEqual([]);
  });

  it('installs iptables (both backends, ip6tables) and conntrack pinned, without recommends, and checks they run', () => {
    const run = instructions(FINAL, 'RUN').map((r) => r.args).join('\n');
    expect(run).toMatch(/apt-get install -y --no-install-recommends /);
    expect(run).toMatch(/\biptables=\S+/);
    expect(run).toMatch(/\bconntrack=\S+/);
    for (const tool of ['iptables-nft', 'iptables-nft-restore', 'iptables-nft-save', 'iptables-legacy', 'iptables-legacy-restore', 'iptables-legacy-save', 'ip6tables-nft-restore', 'ip6tables-legacy-restore', 'conntrack']) {
      expect(run, tool).toMatch(new RegExp(`(^|\\s)${tool} --version`));
    }
    expect(run).toContain('rm -rf /var/lib/apt/lists/*');
  });

  it('states root explicitly with the reason, works in /app, and carries OCI labels matching package.json', () => {
    const user = instructions(FINAL, 'USER').at(-1);
    expect(user?.args).toMatch(/^(root|0|0:0)$/);
    const above = TEXT.split('\n').slice(0, (user?.line ?? 1) - 1).reverse().find((l) => !/^#\s*hadolint /.test(l.trim()));
    expect(above, 'the comment above USER').toMatch(/^#.*/);
    expect(instructions(FINAL, 'WORKDIR').map((w) => w.args)).toEqual(['/app']);
    const labels = instructions(FINAL, 'LABEL').map((l) => l.args).join(' ');
    for (const key of ['title', 'description', 'version', 'licenses', 'source']) expect(labels).toContain(`org.opencontainers.image.${key}=`);
    expect(labels).toContain(`org.opencontainers.image.licenses="${PACKAGE.license}"`);
    expect(TEXT).toMatch(new RegExp(`^ARG VERSION=${PACKAGE.version.replace(/\./g, '\\.')}$`, 'm'));
  });
});
