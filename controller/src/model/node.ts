/**
 * v1 Node → NodeInfo: what the proxy needs of its own node (name, addresses, zone, pod CIDRs).
 */
import { arrayAt, metadataOf, objectAt, stringAt, type JsonObject } from './fields.ts';
import { formatCIDR, formatIP, parseCIDR, parseIP } from './ip.ts';
import { FieldError, quote } from './problem.ts';

export const ZONE_LABEL = 'topology.kubernetes.io/zone';

export interface NodeInfo {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Canonical InternalIP addresses then ExternalIP addresses, in status order. */
  readonly addresses: readonly string[];
  /** Canonical spec.podCIDRs (falling back to spec.podCIDR). */
  readonly podCIDRs: readonly string[];
}

export function readNode(obj: JsonObject): NodeInfo {
  const meta = metadataOf(obj, { namespaced: false });
  const spec = objectAt(obj.spec, 'spec') ?? {};
  const status = objectAt(obj.status, 'status') ?? {};
  const internal: string[] = [];
  const external: string[] = [];
  arrayAt(status.addresses, 'status.addresses').forEach((entry, i) => {
    const f = `status.addresses[${String(i)}]`;
    const a = objectAt(entry, f) ?? {};
    const type = stringAt(a.type, `${f}.type`) ?? '';
    if (type !== 'InternalIP' && type !== 'ExternalIP') return;
    const text = stringAt(a.address, `${f}.address`) ?? '';
    const ip = parseIP(text);
    if (ip === undefined) throw new FieldError(`${f}.address`, `${quote(text)} is not a valid IP address`);
    (type === 'InternalIP' ? internal : external).push(formatIP(ip));
  });
  let cidrTexts = arrayAt(spec.podCIDRs, 'spec.podCIDRs').map((v, i) => ({ v, f: `spec.podCIDRs[${String(i)}]` }));
  if (cidrTexts.length === 0 && spec.podCIDR !== undefined) cidrTexts = [{ v: spec.podCIDR, f: 'spec.podCIDR' }];
  const podCIDRs = cidrTexts.map(({ v, f }) => {
    const text = stringAt(v, f) ?? '';
    const cidr = parseCIDR(text);
    if (cidr === undefined) throw new FieldError(f, `${quote(text)} is not a valid CIDR`);
    return formatCIDR(cidr);
  });
  return { name: meta.name, labels: meta.labels, addresses: [...new Set([...internal, ...external])], podCIDRs };
}
