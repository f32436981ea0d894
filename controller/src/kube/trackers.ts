/**
 * Change trackers (kube-proxy's ServiceChangeTracker / EndpointsChangeTracker): informer events go in
 * as previous→current pairs, accumulate per object until the next sync drains them, and the drain
 * says which Services changed so a partial sync rewrites only their chains.
 */
import { isObject, metadataOf, type JsonObject } from '../model/fields.ts';

export type TrackedKind = 'Service' | 'EndpointSlice';

export interface DrainResult {
  /** `namespace/name` of the Services whose Service or EndpointSlices changed since the last drain. */
  readonly updatedServices: ReadonlySet<string>;
  /** Number of pending object changes drained. */
  readonly changes: number;
}

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/**
 * Metadata fields that are API-server bookkeeping and never change what kpx programs. Everything
 * else counts, including labels, annotations, spec, status and endpoints.
 */
const IGNORED_METADATA: ReadonlySet<string> = new Set(['resourceVersion', 'generation', 'managedFields', 'selfLink']);

/** `namespace/name` of an object (namespace `default` when absent). Throws FieldError on bad metadata. */
export function objectKey(obj: JsonObject): string {
  const meta = metadataOf(obj, { namespaced: true });
  return `${meta.namespace}/${meta.name}`;
}

/** `namespace/<kubernetes.io/service-name>` of an EndpointSlice, undefined without that label. */
export function endpointSliceServiceKey(obj: JsonObject): string | undefined {
  const meta = metadataOf(obj, { namespaced: true });
  const service = meta.labels[SERVICE_NAME_LABEL];
  return service === undefined || service === '' ? undefined : `${meta.namespace}/${service}`;
}

/** JSON deep equality; properties whose value is undefined count as absent. */
function jsonEqual(a: unknown, b: unknown, ignored?: ReadonlySet<string>): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (!isObject(a) || !isObject(b)) return false;
  for (const key in a) {
    if (ignored?.has(key) !== true && !jsonEqual(a[key], b[key])) return false;
  }
  for (const key in b) {
    if (b[key] !== undefined && ignored?.has(key) !== true && !Object.hasOwn(a, key)) return false;
  }
  return true;
}

/** Equal except for the bookkeeping fields in IGNORED_METADATA. */
export function semanticallyEqual(a: JsonObject | undefined, b: JsonObject | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a === b) return true;
  for (const key in a) {
    if (key !== 'metadata' && !jsonEqual(a[key], b[key])) return false;
  }
  for (const key in b) {
    if (key !== 'metadata' && b[key] !== undefined && !Object.hasOwn(a, key)) return false;
  }
  return jsonEqual(a.metadata ?? {}, b.metadata ?? {}, IGNORED_METADATA);
}

interface Pending {
  /** The first `previous` seen since the last drain. */
  readonly previous: JsonObject | undefined;
  current: JsonObject | undefined;
}

interface Applied {
  readonly namespace: string;
  readonly name: string;
  readonly object: JsonObject;
}

export class ChangeTracker {
  readonly #serviceKey: (obj: JsonObject) => string | undefined;
  readonly #pending = new Map<string, Pending>();
  readonly #applied = new Map<string, Applied>();
  #sorted: readonly JsonObject[] | undefined;

  constructor(kind: TrackedKind) {
    this.#serviceKey = kind === 'Service' ? objectKey : endpointSliceServiceKey;
  }

  /**
   * Records previous→current for one object (undefined previous = add, undefined current = delete).
   * A net change that leaves the object as applied (semantically) is dropped. Returns true if
   * something is pending afterwards.
   */
  update(previous: JsonObject | undefined, current: JsonObject | undefined): boolean {
    const subject = current ?? previous;
    if (subject === undefined) return this.#pending.size > 0;
    const key = objectKey(subject);
    if (previous !== undefined && current !== undefined && objectKey(previous) !== key) {
      throw new Error(`update of ${key} has a previous object ${objectKey(previous)}`);
    }
    const entry = this.#pending.get(key);
    if (semanticallyEqual(this.#applied.get(key)?.object, current)) this.#pending.delete(key);
    else if (entry === undefined) this.#pending.set(key, { previous, current });
    else entry.current = current;
    return this.#pending.size > 0;
  }

  /** Objects with a pending net change. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Moves pending changes into the applied state and reports which Services they touch. */
  drain(): DrainResult {
    const updatedServices = new Set<string>();
    const touch = (obj: JsonObject | undefined): void => {
      const service = obj === undefined ? undefined : this.#serviceKey(obj);
      if (service !== undefined) updatedServices.add(service);
    };
    for (const [key, { previous, current }] of this.#pending) {
      touch(previous);
      touch(this.#applied.get(key)?.object);
      touch(current);
      if (current === undefined) this.#applied.delete(key);
      else {
        const meta = metadataOf(current, { namespaced: true });
        this.#applied.set(key, { namespace: meta.namespace, name: meta.name, object: current });
      }
    }
    const changes = this.#pending.size;
    if (changes > 0) this.#sorted = undefined;
    this.#pending.clear();
    return { updatedServices, changes };
  }

  /** The applied objects ordered by (namespace, name); the order is cached until the next change. */
  objects(): JsonObject[] {
    this.#sorted ??= [...this.#applied.values()]
      .sort((a, b) => compare(a.namespace, b.namespace) || compare(a.name, b.name))
      .map((a) => a.object);
    return [...this.#sorted];
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
