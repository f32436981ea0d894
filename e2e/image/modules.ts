/**
 * What a Node entry point loads at run time, read statically from the sources: relative imports
 * (static, `export ... from`, dynamic `import('...')` with a literal), the packages it imports,
 * and files it reads relative to itself (`new URL('...', import.meta.url)`). Type-only imports
 * are erased by Node's type stripping, so they load nothing and are skipped.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const STATIC_IMPORT = /(?:^|[;}\n])\s*(?:import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"\n]+)['"]/g;
const DYNAMIC_IMPORT = /\bimport\(\s*['"]([^'"\n]+)['"]\s*\)/g;
const FILE_URL = /new URL\(\s*['"]([^'"\n]+)['"]\s*,\s*import\.meta\.url\s*\)/g;

export interface ModuleGraph {
  /** Repository-relative paths of every module loaded, the entry included. */
  readonly modules: readonly string[];
  /** Repository-relative paths of data files the modules read relative to themselves. */
  readonly files: readonly string[];
  /** Package names imported (not `node:` builtins), e.g. `execa`, `@kubernetes/client-node`. */
  readonly packages: readonly string[];
}

function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? specifier);
}

/** Walks the graph from `entry` (repository-relative) under `root`. */
export function moduleGraph(root: string, entry: string): ModuleGraph {
  const modules = new Set<string>();
  const files = new Set<string>();
  const packages = new Set<string>();
  const pending = [entry];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (modules.has(next)) continue;
    modules.add(next);
    const text = readFileSync(join(root, next), 'utf8');
    const resolve = (specifier: string): string => relative(root, join(root, dirname(next), specifier));
    const specifiers = [...[...text.matchAll(STATIC_IMPORT)].filter((m) => m[1] === undefined).map((m) => m[2] ?? ''), ...[...text.matchAll(DYNAMIC_IMPORT)].map((m) => m[1] ?? '')];
    for (const specifier of specifiers) {
      if (specifier.startsWith('.')) pending.push(resolve(specifier));
      else if (!specifier.startsWith('node:')) packages.add(packageName(specifier));
    }
    for (const m of text.matchAll(FILE_URL)) files.add(resolve(m[1] ?? ''));
  }
  return { modules: [...modules].sort(), files: [...files].sort(), packages: [...packages].sort() };
}
