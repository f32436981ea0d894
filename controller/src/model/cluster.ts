/**
 * ClusterState (the raw objects) → validated per-family models, with every problem reported
 * as one line naming the object and field. Invalid objects are skipped, never half-used.
 */
import {
  checkProxyConfig,
  DEFAULT_PROXY_CONFIG,
  masqueradeMarkOf,
  readKubeProxyConfiguration,
  type ProxyConfig,
  type ProxyConfigOverrides,
} from './config.ts';
import type { SourcedObject } from './documents.ts';
import { readEndpointSlice, type EndpointSliceInfo, type EndpointSliceReading } from './endpointslice.ts';
import type { JsonObject } from './fields.ts';
import { parseIP, type IPFamily } from './ip.ts';
import { readNode, type NodeInfo } from './node.ts';
import { FieldError, objectLabel, type Problem } from './problem.ts';
import { buildFamilyModel, FamilyModelMemo, nodeAddresses, nodeContext, type FamilyModel } from './proxy-model.ts';
import { readService, type ServiceInfo, type ServiceReading } from './service.ts';

export interface ClusterState {
  readonly services: readonly SourcedObject[];
  readonly endpointSlices: readonly SourcedObject[];
  readonly nodes: readonly SourcedObject[];
  readonly proxyConfigurations: readonly SourcedObject[];
}

const KINDS = {
  Service: { apiVersion: 'v1', bucket: 'services' },
  EndpointSlice: { apiVersion: 'discovery.k8s.io/v1', bucket: 'endpointSlices' },
  Node: { apiVersion: 'v1', bucket: 'nodes' },
  KubeProxyConfiguration: { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', bucket: 'proxyConfigurations' },
} as const;

const CLUSTER_SCOPED = new Set(['Node', 'KubeProxyConfiguration', 'Namespace']);

function labelOf(obj: JsonObject): string {
  const kind = typeof obj.kind === 'string' ? obj.kind : 'object';
  const meta = (typeof obj.metadata === 'object' && obj.metadata !== null ? obj.metadata : {}) as { name?: unknown; namespace?: unknown };
  // Namespaced objects without a namespace are read as "default" (metadataOf), so name them so.
  const namespace = typeof meta.namespace === 'string' && meta.namespace !== '' ? meta.namespace : CLUSTER_SCOPED.has(kind) ? undefined : 'default';
  return objectLabel(kind, {
    ...(typeof meta.name === 'string' ? { name: meta.name } : {}),
    ...(namespace === undefined ? {} : { namespace }),
  });
}

/** Sorts decoded objects by kind; anything else is reported as ignored. */
export function classifyObjects(objects: readonly SourcedObject[]): { state: ClusterState; problems: Problem[] } {
  const buckets: Record<keyof ClusterState, SourcedObject[]> = { services: [], endpointSlices: [], nodes: [], proxyConfigurations: [] };
  const problems: Problem[] = [];
  for (const o of objects) {
    const kind = o.object.kind;
    const apiVersion = o.object.apiVersion;
    const known = typeof kind === 'string' && Object.hasOwn(KINDS, kind) ? KINDS[kind as keyof typeof KINDS] : undefined;
    if (known === undefined) {
      problems.push({ kind: 'ignored', source: o.source, object: labelOf(o.object), message: 'kpx reads only Services, EndpointSlices, Nodes and a KubeProxyConfiguration' });
    } else if (apiVersion !== known.apiVersion) {
      problems.push({
        kind: 'ignored',
        source: o.source,
        object: labelOf(o.object),
        message: `apiVersion ${JSON.stringify(apiVersion)} is not read (expected ${known.apiVersion})`,
      });
    } else {
      buckets[known.bucket].push(o);
    }
  }
  return { state: buckets, problems };
}

export interface BuildOptions {
  /** Flags; they override the KubeProxyConfiguration, which overrides the defaults. */
  readonly overrides?: ProxyConfigOverrides;
  /** The mark text, when it must differ from Go's `%#08x` (upstream's tests inject `0x4000`). */
  readonly masqueradeMark?: string;
  /** Kept between builds by a caller that rebuilds often (the agent); see ModelMemo. */
  readonly memo?: ModelMemo;
}

type Reading<T> = { readonly value: T } | { readonly error: FieldError };

/**
 * What a build leaves for the next one: an object read before (the same object, under the same
 * configuration) is not read again, and each family's per-Service results are reused (so an
 * unchanged Service yields the very same ServicePort and Endpoint objects).
 */
export class ModelMemo {
  #configKey: string | undefined;
  #services = new WeakMap<JsonObject, Reading<ServiceReading>>();
  readonly #slices = new WeakMap<JsonObject, Reading<EndpointSliceReading>>();
  #families = new Map<IPFamily, FamilyModelMemo>();

  /** Services are read under a configuration: another one forgets them. */
  forConfig(config: ProxyConfig): void {
    const key = JSON.stringify(config);
    if (key === this.#configKey) return;
    this.#configKey = key;
    this.#services = new WeakMap();
    this.#families = new Map();
  }

  service(obj: JsonObject, config: ProxyConfig): Reading<ServiceReading> {
    return remembered(this.#services, obj, () => readService(obj, config));
  }

  endpointSlice(obj: JsonObject): Reading<EndpointSliceReading> {
    return remembered(this.#slices, obj, () => readEndpointSlice(obj));
  }

  family(family: IPFamily): FamilyModelMemo {
    let memo = this.#families.get(family);
    if (memo === undefined) {
      memo = new FamilyModelMemo();
      this.#families.set(family, memo);
    }
    return memo;
  }
}

function remembered<T>(cache: WeakMap<JsonObject, Reading<T>>, obj: JsonObject, read: () => T): Reading<T> {
  let known = cache.get(obj);
  if (known === undefined) {
    known = attempt(read);
    cache.set(obj, known);
  }
  return known;
}

function attempt<T>(read: () => T): Reading<T> {
  try {
    return { value: read() };
  } catch (error) {
    if (!(error instanceof FieldError)) throw error;
    return { error };
  }
}

export interface ProxyModels {
  readonly config: ProxyConfig;
  readonly node: NodeInfo | undefined;
  readonly families: readonly FamilyModel[];
  readonly problems: readonly Problem[];
  readonly serviceCount: number;
  readonly endpointSliceCount: number;
}

/** Runs `read` on one object, turning a FieldError into a problem line. */
function guarded<T>(o: SourcedObject, kind: string, problems: Problem[], read: (obj: JsonObject) => T): T | undefined {
  return used(o, kind, problems, attempt(() => read(o.object)));
}

/** The value of a reading, or a problem line naming the object and field. */
function used<T>(o: SourcedObject, kind: string, problems: Problem[], reading: Reading<T>): T | undefined {
  if ('value' in reading) return reading.value;
  problems.push({ kind: 'invalid', source: o.source, object: labelOf({ ...o.object, kind }), message: reading.error.message });
  return undefined;
}

/** Later objects with the same identity replace earlier ones (like applying them in order). */
function latestByName<T extends { namespace?: string; name: string }>(items: readonly T[]): T[] {
  const map = new Map<string, T>();
  for (const item of items) map.set(`${item.namespace ?? ''}/${item.name}`, item);
  return [...map.values()];
}

export function buildProxyModels(state: ClusterState, options: BuildOptions = {}): ProxyModels {
  const problems: Problem[] = [];
  let fileConfig: ProxyConfigOverrides = {};
  for (const o of state.proxyConfigurations) {
    const read = guarded(o, 'KubeProxyConfiguration', problems, readKubeProxyConfiguration);
    if (read !== undefined) fileConfig = { ...fileConfig, ...read };
  }
  let config: ProxyConfig = { ...DEFAULT_PROXY_CONFIG, ...fileConfig, ...options.overrides };

  const nodes = latestByName(state.nodes.flatMap((o) => guarded(o, 'Node', problems, readNode) ?? []));
  if (config.nodeName === '' && nodes.length > 0) {
    const first = nodes[0];
    if (first !== undefined) {
      config = { ...config, nodeName: first.name };
      if (nodes.length > 1) {
        problems.push({ kind: 'note', source: '', object: `Node "${first.name}"`, message: 'previewed as this node (the first Node; choose another with --node-name)' });
      }
    }
  }
  const node = nodes.find((n) => n.name === config.nodeName);
  try {
    checkProxyConfig(config);
  } catch (error) {
    if (!(error instanceof FieldError)) throw error;
    problems.push({ kind: 'invalid', source: '', object: 'proxy configuration', message: error.message });
    config = { ...config, detectLocalMode: 'ClusterCIDR', nodeIPs: config.nodeIPs.filter((ip) => parseIP(ip) !== undefined) };
  }

  const memo = options.memo;
  memo?.forConfig(config);
  const services: ServiceInfo[] = [];
  for (const o of state.services) {
    const read = used(o, 'Service', problems, memo?.service(o.object, config) ?? attempt(() => readService(o.object, config)));
    if (read === undefined) continue;
    if (read.kind === 'ignored') problems.push({ kind: 'ignored', source: o.source, object: labelOf({ ...o.object, kind: 'Service' }), message: read.reason });
    else services.push(read.service);
  }
  const slices: EndpointSliceInfo[] = [];
  for (const o of state.endpointSlices) {
    const read = used(o, 'EndpointSlice', problems, memo?.endpointSlice(o.object) ?? attempt(() => readEndpointSlice(o.object)));
    if (read === undefined) continue;
    const label = labelOf({ ...o.object, kind: 'EndpointSlice' });
    if (read.kind === 'ignored') {
      problems.push({ kind: 'ignored', source: o.source, object: label, message: read.reason });
      continue;
    }
    for (const note of read.notes) problems.push({ kind: 'ignored', source: o.source, object: label, message: note });
    slices.push(read.slice);
  }

  const addresses = nodeAddresses(config, node);
  const nodeFamilies = [...new Set(addresses.map((a) => parseIP(a)?.family).filter((f) => f !== undefined))];
  const families: IPFamily[] = config.ipFamily !== undefined ? [config.ipFamily] : nodeFamilies.length > 0 ? nodeFamilies : ['IPv4'];
  const mark = options.masqueradeMark ?? masqueradeMarkOf(config.masqueradeBit);
  const uniqueServices = latestByName(services);
  const uniqueSlices = latestByName(slices);
  return {
    config,
    node,
    families: families.map((family) =>
      buildFamilyModel({
        services: uniqueServices,
        slices: uniqueSlices,
        node: nodeContext({ config, node, family, masqueradeMark: mark }),
      }, memo?.family(family)),
    ),
    problems,
    serviceCount: uniqueServices.length,
    endpointSliceCount: uniqueSlices.length,
  };
}
