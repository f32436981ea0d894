/**
 * kube-proxy's chain names (reference §2): the first 16 characters of
 * base32(sha256(spn + protocol [+ endpoint])), RFC 4648 upper-case alphabet, no separators.
 */
import { createHash } from 'node:crypto';

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 (std alphabet) without padding. */
export function base32(bytes: Uint8Array): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += BASE32_ALPHABET.charAt((buffer >> bits) & 31);
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32_ALPHABET.charAt((buffer << (5 - bits)) & 31);
  return out;
}

function hash16(text: string): string {
  return base32(createHash('sha256').update(text, 'utf8').digest()).slice(0, 16);
}

/** The hash shared by KUBE-SVC-, KUBE-SVL-, KUBE-EXT- and KUBE-FW- chains of one service port. */
export function servicePortHash(spn: string, protocol: string): string {
  return hash16(spn + protocol.toLowerCase());
}

export function serviceChainName(spn: string, protocol: string): string {
  return `KUBE-SVC-${servicePortHash(spn, protocol)}`;
}

export function localChainName(spn: string, protocol: string): string {
  return `KUBE-SVL-${servicePortHash(spn, protocol)}`;
}

export function externalChainName(spn: string, protocol: string): string {
  return `KUBE-EXT-${servicePortHash(spn, protocol)}`;
}

export function firewallChainName(spn: string, protocol: string): string {
  return `KUBE-FW-${servicePortHash(spn, protocol)}`;
}

/** `endpoint` is JoinHostPort(ip, port): `10.180.0.1:80`, `[ff06::c1]:80`. */
export function endpointChainName(spn: string, protocol: string, endpoint: string): string {
  return `KUBE-SEP-${hash16(spn + protocol.toLowerCase() + endpoint)}`;
}

/** Prefixes of per-service chains kpx owns (and deletes when stale). */
export const SERVICE_CHAIN_PREFIXES: readonly string[] = ['KUBE-SVC-', 'KUBE-SVL-', 'KUBE-SEP-', 'KUBE-FW-', 'KUBE-EXT-'];
