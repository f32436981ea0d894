/**
 * What the chart's documentation must say, in checkable form: docs/install.md's kind quick start
 * (the exact commands the contract fixes; e2e/kind uses the same ones) and its values
 * table, which must list every leaf of charts/kpx/values.yaml, and a comment on every value in
 * values.yaml itself.
 */

/** The kind quick start, verbatim (docs/install.md shows it in one code block). */
export const KIND_QUICK_START = `kind create cluster --name kpx --config e2e/kind/kind-config.yaml
docker build -t kpx:dev .
kind load docker-image kpx:dev --name kpx
helm install kpx ./charts/kpx --namespace kube-system \\
  --set image.repository=kpx --set image.tag=dev --set image.pullPolicy=IfNotPresent \\
  --set apiServer.host=kpx-control-plane --set apiServer.port=6443 --wait
kubectl -n kube-system rollout status ds/kpx
helm test kpx --namespace kube-system
`;

/** The commands of a shell snippet, continuation lines joined. */
export function shellCommands(text: string): string[] {
  return text
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
}

type JsonSchema = Readonly<Record<string, unknown>>;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A schema node with its local "$ref" (#/definitions/...) followed. */
function resolve(node: unknown, root: JsonSchema): JsonSchema {
  if (!isPlainObject(node)) return {};
  const ref = node.$ref;
  if (typeof ref !== 'string') return node;
  const target = ref
    .replace(/^#\//, '')
    .split('/')
    .reduce<unknown>((at, key) => (isPlainObject(at) ? at[key] : undefined), root);
  return resolve(target, root);
}

/**
 * The dotted paths of values.yaml's leaves: a value is a leaf unless it is a non-empty map the chart
 * defines field by field (its schema has "properties"); free-form maps such as nodeSelector or
 * resources.requests, lists and empty maps are leaves themselves.
 */
export function leafValuePaths(values: Readonly<Record<string, unknown>>, schema: JsonSchema): string[] {
  const walk = (value: unknown, node: JsonSchema, path: string): string[] => {
    const properties = node.properties;
    if (!isPlainObject(value) || Object.keys(value).length === 0 || !isPlainObject(properties)) return [path];
    return Object.entries(value).flatMap(([key, child]) => walk(child, resolve(properties[key], schema), `${path}.${key}`));
  };
  const top = schema.properties;
  return Object.entries(values).flatMap(([key, value]) => walk(value, resolve(isPlainObject(top) ? top[key] : undefined, schema), key));
}

/** The keys (first cell, in backticks) of the table under docs/install.md's "## Values" heading. */
export function valuesTableKeys(markdown: string): string[] {
  const section = /^## Values\n([\s\S]*?)(?=^## |(?![\s\S]))/m.exec(markdown)?.[1] ?? '';
  return [...section.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1] ?? '');
}

/**
 * The dotted paths of values.yaml keys that hold a value (a scalar, `[]`, `{}` or a list) but have
 * no comment, neither on the line before nor at the end of their line. Keys that only open a
 * section of nested keys need none.
 */
export function uncommentedValues(valuesYaml: string): string[] {
  const lines = valuesYaml.split('\n');
  const path: { indent: number; key: string }[] = [];
  const missing: string[] = [];
  lines.forEach((line, i) => {
    const m = /^( *)([^\s#-][^:]*):(?: +(.*))?$/.exec(line);
    if (m === null) return;
    const indent = (m[1] ?? '').length;
    while (path.length > 0 && (path.at(-1)?.indent ?? 0) >= indent) path.pop();
    path.push({ indent, key: m[2] ?? '' });
    const value = m[3] ?? '';
    const next = lines.slice(i + 1).find((l) => l.trim() !== '' && !l.trim().startsWith('#')) ?? '';
    const opensSection = value === '' && !next.trim().startsWith('- ');
    const commented = (lines[i - 1] ?? '').trim().startsWith('#') || value.includes(' #');
    if (!opensSection && !commented) missing.push(path.map((p) => p.key).join('.'));
  });
  return missing;
}
