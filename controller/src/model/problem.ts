/**
 * Problems found while reading input: one line each, naming the source, the object and the field,
 * written for an operator. `invalid` means the object was rejected (as the apiserver would reject
 * it) and skipped; `ignored` means it is valid but not something kpx programs (headless Services,
 * other kinds, ...), exactly as kube-proxy ignores it.
 */

export type ProblemKind = 'invalid' | 'ignored' | 'note';

export interface Problem {
  readonly kind: ProblemKind;
  /** Where the object came from, e.g. `cluster.yaml#3` (document 3); empty when unknown. */
  readonly source: string;
  /** `Service "ns/web"`, `EndpointSlice "ns/web-abc"`, ... */
  readonly object: string;
  readonly message: string;
}

export function formatProblem(problem: Problem): string {
  const where = problem.source === '' ? '' : `${problem.source}: `;
  const verdict = problem.kind === 'invalid' ? '; skipped' : problem.kind === 'ignored' ? '; ignored' : '';
  return `${where}${problem.object}: ${problem.message}${verdict}`;
}

/** A field of an object failed validation. `field` is the JSON path, e.g. `spec.ports[1].port`. */
export class FieldError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'FieldError';
    this.field = field;
  }
}

/** Quotes a value for a message: strings in double quotes, everything else as JSON. */
export function quote(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === undefined) return 'undefined';
  // Values come from decoded YAML/JSON, so they always have a JSON spelling.
  return JSON.stringify(value);
}

export function objectLabel(kind: string, metadata: { namespace?: string; name?: string }): string {
  const name = metadata.name ?? '<unnamed>';
  return metadata.namespace === undefined || metadata.namespace === ''
    ? `${kind} "${name}"`
    : `${kind} "${metadata.namespace}/${name}"`;
}
