/**
 * discovery.k8s.io/v1 EndpointSlice → EndpointSliceInfo (reference §1.0).
 */
import { arrayAt, boolAt, enumAt, metadataOf, objectAt, portAt, stringAt, type JsonObject } from './fields.ts';
import { formatIP, parseIP, type IPFamily } from './ip.ts';
import { FieldError, quote } from './problem.ts';
import { HEADLESS_LABEL, PROTOCOLS, type Protocol } from './service.ts';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export interface EndpointSlicePort {
  readonly name: string;
  readonly port: number;
  readonly protocol: Protocol;
}

export interface SliceEndpoint {
  /** Canonical addresses[0]. */
  readonly ip: string;
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
  /** "" when unset. */
  readonly nodeName: string;
  readonly zoneHints: readonly string[];
  readonly nodeHints: readonly string[];
}

export interface EndpointSliceInfo {
  readonly namespace: string;
  readonly name: string;
  readonly serviceName: string;
  readonly family: IPFamily;
  readonly ports: readonly EndpointSlicePort[];
  readonly endpoints: readonly SliceEndpoint[];
}

export type EndpointSliceReading =
  | { readonly kind: 'slice'; readonly slice: EndpointSliceInfo; readonly notes: readonly string[] }
  | { readonly kind: 'ignored'; readonly reason: string };

function hintNames(value: unknown, field: string): string[] {
  return arrayAt(value, field).map((h, i) => {
    const f = `${field}[${String(i)}]`;
    return stringAt(objectAt(h, f)?.name, `${f}.name`) ?? '';
  }).filter((n) => n !== '');
}

export function readEndpointSlice(obj: JsonObject): EndpointSliceReading {
  const meta = metadataOf(obj, { namespaced: true });
  const addressType = enumAt(obj.addressType, 'addressType', ['IPv4', 'IPv6', 'FQDN'] as const);
  if (addressType === undefined) throw new FieldError('addressType', 'is required (IPv4, IPv6 or FQDN)');
  const serviceName = meta.labels[SERVICE_NAME_LABEL] ?? '';
  if (serviceName === '') return { kind: 'ignored', reason: `no ${SERVICE_NAME_LABEL} label, so it belongs to no Service` };
  if (meta.labels[HEADLESS_LABEL] !== undefined) return { kind: 'ignored', reason: `labelled ${HEADLESS_LABEL}` };
  // A service-proxy-name label (copied from the Service by the EndpointSlice controller) is not
  // checked here: the Service filter decides, and a foreign Service's slices match no service port.
  if (addressType === 'FQDN') return { kind: 'ignored', reason: 'addressType FQDN is not proxied' };

  const notes: string[] = [];
  const ports: EndpointSlicePort[] = [];
  arrayAt(obj.ports, 'ports').forEach((entry, i) => {
    const f = `ports[${String(i)}]`;
    const p = objectAt(entry, f) ?? {};
    const name = stringAt(p.name, `${f}.name`);
    const port = portAt(p.port, `${f}.port`, { allowZero: true });
    const protocol = enumAt(p.protocol, `${f}.protocol`, PROTOCOLS) ?? 'TCP';
    // kube-proxy skips ports without a name or number (reference §1.0).
    if (name === undefined) {
      notes.push(`${f} has no name, so it matches no Service port; port ignored`);
      return;
    }
    if (port === undefined || port === 0) {
      notes.push(`${f} has no port number; port ignored`);
      return;
    }
    ports.push({ name, port, protocol });
  });

  const endpoints: SliceEndpoint[] = [];
  arrayAt(obj.endpoints, 'endpoints').forEach((entry, i) => {
    const f = `endpoints[${String(i)}]`;
    const ep = objectAt(entry, f) ?? {};
    const addresses = arrayAt(ep.addresses, `${f}.addresses`);
    const first = addresses[0];
    addresses.forEach((a, j) => {
      const af = `${f}.addresses[${String(j)}]`;
      const text = stringAt(a, af) ?? '';
      const ip = parseIP(text);
      if (ip?.family !== addressType) throw new FieldError(af, `${quote(text)} is not a valid ${addressType} address`);
    });
    const conditions = objectAt(ep.conditions, `${f}.conditions`) ?? {};
    const ready = boolAt(conditions.ready, `${f}.conditions.ready`);
    const serving = boolAt(conditions.serving, `${f}.conditions.serving`);
    const terminating = boolAt(conditions.terminating, `${f}.conditions.terminating`);
    const hints = objectAt(ep.hints, `${f}.hints`) ?? {};
    const nodeName = stringAt(ep.nodeName, `${f}.nodeName`) ?? '';
    if (first === undefined) return; // an endpoint without addresses carries nothing to proxy
    const ip = parseIP(first as string);
    if (ip === undefined) return;
    endpoints.push({
      ip: formatIP(ip),
      // Unset ready/serving mean true, unset terminating means false (EndpointSlice API semantics).
      ready: ready ?? true,
      serving: serving ?? true,
      terminating: terminating ?? false,
      nodeName,
      zoneHints: hintNames(hints.forZones, `${f}.hints.forZones`),
      nodeHints: hintNames(hints.forNodes, `${f}.hints.forNodes`),
    });
  });
  return {
    kind: 'slice',
    slice: { namespace: meta.namespace, name: meta.name, serviceName, family: addressType, ports, endpoints },
    notes,
  };
}
