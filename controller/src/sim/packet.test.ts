// The simulator's fast address paths must agree exactly with the model's parsing and formatting.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatIP, parseAddressOrCIDR, parseIP } from '../model/ip.ts';
import { endpointText, parseAddress, parseAddressOrPrefix } from './packet.ts';

const part = fc.oneof(fc.integer({ min: 0, max: 300 }).map(String), fc.stringMatching(/^[0-9]{0,5}$/));
const dotted = fc.tuple(part, part, part, part, fc.constantFrom('', '/32', '/24', '/033', '/')).map(([a, b, c, d, suffix]) => `${a}.${b}.${c}.${d}${suffix}`);
const text = fc.oneof(dotted, fc.stringMatching(/^[0-9a-f.:/[\]]{0,20}$/), fc.constantFrom('::1', '::ffff:1.2.3.4', '10.0.0.1', '1.2.3', '1.2.3.4.5'));

describe('address fast paths', () => {
  it('parseAddress and parseAddressOrPrefix agree with parseIP and parseAddressOrCIDR', () => {
    fc.assert(
      fc.property(text, (t) => {
        expect(parseAddress(t)).toEqual(parseIP(t));
        expect(parseAddressOrPrefix(t)).toEqual(parseAddressOrCIDR(t));
      }),
      { numRuns: 2000 },
    );
  });

  it('endpointText writes the address as formatIP does', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 0xffffffffn }), fc.integer({ min: 0, max: 65535 }), (value, port) => {
        expect(endpointText({ family: 'IPv4', value }, port)).toBe(`${formatIP({ family: 'IPv4', value })}:${String(port)}`);
      }),
    );
    expect(endpointText({ family: 'IPv6', value: 1n }, 53)).toBe('[::1]:53');
  });
});
