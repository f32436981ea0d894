/**
 * Typed access to untyped JSON objects (decoded YAML or API responses), raising FieldError with
 * the exact field path on anything that does not have the expected shape.
 */
import { FieldError, quote } from './problem.ts';

export type JsonObject = Readonly<Record<string, unknown>>;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function objectAt(value: unknown, field: string): JsonObject | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw new FieldError(field, `must be an object, got ${quote(value)}`);
  return value;
}

export function arrayAt(value: unknown, field: string): readonly unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new FieldError(field, `must be a list, got ${quote(value)}`);
  return value;
}

export function stringAt(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new FieldError(field, `must be a string, got ${quote(value)}`);
  return value;
}

export function boolAt(value: unknown, field: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw new FieldError(field, `must be true or false, got ${quote(value)}`);
  return value;
}

export function intAt(value: unknown, field: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new FieldError(field, `must be an integer, got ${quote(value)}`);
  }
  return value;
}

export function portAt(value: unknown, field: string, options: { allowZero?: boolean } = {}): number | undefined {
  const n = intAt(value, field);
  if (n === undefined) return undefined;
  if (n === 0 && options.allowZero === true) return 0;
  if (n < 1 || n > 65535) throw new FieldError(field, `${String(n)} is out of range (1-65535)`);
  return n;
}

export function enumAt<T extends string>(
  value: unknown,
  field: string,
  allowed: readonly T[],
): T | undefined {
  const s = stringAt(value, field);
  if (s === undefined || s === '') return undefined;
  if (!(allowed as readonly string[]).includes(s)) {
    throw new FieldError(field, `${quote(s)} is not one of ${allowed.join(', ')}`);
  }
  return s as T;
}

export function stringMapAt(value: unknown, field: string): Readonly<Record<string, string>> {
  const obj = objectAt(value, field);
  if (obj === undefined) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(obj)) {
    const s = stringAt(v, `${field}.${k}`);
    if (s !== undefined) out[k] = s;
  }
  return out;
}

export interface Metadata {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
}

export function metadataOf(obj: JsonObject, options: { namespaced: boolean }): Metadata {
  const meta = objectAt(obj.metadata, 'metadata') ?? {};
  const name = stringAt(meta.name, 'metadata.name') ?? '';
  if (name === '') throw new FieldError('metadata.name', 'is required');
  let namespace = stringAt(meta.namespace, 'metadata.namespace') ?? '';
  // kubectl applies "default" to namespaced objects without a namespace; so do we.
  if (options.namespaced && namespace === '') namespace = 'default';
  return {
    name,
    namespace,
    labels: stringMapAt(meta.labels, 'metadata.labels'),
    annotations: stringMapAt(meta.annotations, 'metadata.annotations'),
  };
}
