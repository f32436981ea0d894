/**
 * YAML or JSON text → Kubernetes objects: one object, several documents, or a `kind: List`
 * (what `kubectl get ... -o yaml` prints).
 */
import { parseAllDocuments } from 'yaml';
import { isObject, type JsonObject } from './fields.ts';

export interface SourcedObject {
  readonly object: JsonObject;
  /** `file.yaml#2` (second document), `file.yaml#2.items[3]` inside a List. */
  readonly source: string;
}

/** The input text itself cannot be read; callers report it and stop (exit 2). */
export class InputError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'InputError';
  }
}

function expandLists(value: unknown, source: string, out: SourcedObject[]): void {
  if (Array.isArray(value)) {
    // A bare JSON array of objects reads like a List.
    value.forEach((item, i) => {
      expandLists(item, `${source}[${String(i)}]`, out);
    });
    return;
  }
  if (!isObject(value)) {
    if (value === null || value === undefined) return; // empty document
    throw new InputError(`${source}: a document must be an object with apiVersion and kind, got ${JSON.stringify(value)}`);
  }
  const kind = value.kind;
  if (typeof kind === 'string' && kind.endsWith('List') && Array.isArray(value.items)) {
    value.items.forEach((item, i) => {
      expandLists(item, `${source}.items[${String(i)}]`, out);
    });
    return;
  }
  out.push({ object: value, source });
}

export function decodeDocuments(text: string, name: string): SourcedObject[] {
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: false });
  const list = Array.isArray(docs) ? docs : [docs];
  const out: SourcedObject[] = [];
  list.forEach((doc, i) => {
    const source = list.length > 1 ? `${name}#${String(i + 1)}` : name;
    const error = doc.errors[0];
    if (error !== undefined) {
      const line = error.linePos?.[0].line;
      const where = line === undefined ? source : `${name}:${String(line)}`;
      throw new InputError(`${where}: not valid YAML or JSON: ${error.message.split('\n')[0] ?? ''}`, { cause: error });
    }
    expandLists(doc.toJS({ maxAliasCount: 100 }), source, out);
  });
  return out;
}
