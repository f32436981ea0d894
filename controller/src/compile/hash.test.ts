import { describe, expect, it } from 'vitest';
import {
  base32,
  endpointChainName,
  externalChainName,
  firewallChainName,
  localChainName,
  SERVICE_CHAIN_PREFIXES,
  serviceChainName,
  servicePortHash,
} from './hash.ts';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('base32 (RFC 4648 §10 test vectors, unpadded)', () => {
  it.each([
    ['', ''],
    ['f', 'MY'],
    ['fo', 'MZXQ'],
    ['foo', 'MZXW6'],
    ['foob', 'MZXW6YQ'],
    ['fooba', 'MZXW6YTB'],
    ['foobar', 'MZXW6YTBOI'],
  ])('base32(%j) = %j', (input, expected) => {
    expect(base32(bytes(input))).toBe(expected);
  });

  it('uses the upper-case A-Z2-7 alphabet for every 5-bit value', () => {
    // 0x00 0x44 0x32 0x14 0xc7 0x42 0x54 0xb6 0x35 0xcf 0x84 0x65 0x3a 0x56 0xd7 0xc6 0x75 0xbe 0x77 0xdf
    // encodes the 32 symbols 0..31 in order.
    const input = Uint8Array.from([
      0x00, 0x44, 0x32, 0x14, 0xc7, 0x42, 0x54, 0xb6, 0x35, 0xcf, 0x84, 0x65, 0x3a, 0x56, 0xd7, 0xc6, 0x75, 0xbe, 0x77,
      0xdf,
    ]);
    expect(base32(input)).toBe('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567');
  });

  it('encodes all-ones bytes', () => {
    expect(base32(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff]))).toBe('77777777');
  });
});

describe('chain names: worked examples of reference §2', () => {
  it('ns1/svc1:p80 tcp → XPGD46QRK7WJZT7O for SVC, SVL, EXT and FW', () => {
    expect(servicePortHash('ns1/svc1:p80', 'TCP')).toBe('XPGD46QRK7WJZT7O');
    expect(serviceChainName('ns1/svc1:p80', 'TCP')).toBe('KUBE-SVC-XPGD46QRK7WJZT7O');
    expect(localChainName('ns1/svc1:p80', 'TCP')).toBe('KUBE-SVL-XPGD46QRK7WJZT7O');
    expect(externalChainName('ns1/svc1:p80', 'TCP')).toBe('KUBE-EXT-XPGD46QRK7WJZT7O');
    expect(firewallChainName('ns1/svc1:p80', 'TCP')).toBe('KUBE-FW-XPGD46QRK7WJZT7O');
  });

  it('ns1/svc1:p80 tcp 10.180.0.1:80 → KUBE-SEP-SXIVWICOYRO3J4NJ', () => {
    expect(endpointChainName('ns1/svc1:p80', 'TCP', '10.180.0.1:80')).toBe('KUBE-SEP-SXIVWICOYRO3J4NJ');
  });

  it('ns2/svc2:p80 tcp → GNZBNJ2PO5MGZ6GT for SVC, EXT, SVL and FW', () => {
    expect(serviceChainName('ns2/svc2:p80', 'TCP')).toBe('KUBE-SVC-GNZBNJ2PO5MGZ6GT');
    expect(externalChainName('ns2/svc2:p80', 'TCP')).toBe('KUBE-EXT-GNZBNJ2PO5MGZ6GT');
    expect(localChainName('ns2/svc2:p80', 'TCP')).toBe('KUBE-SVL-GNZBNJ2PO5MGZ6GT');
    expect(firewallChainName('ns2/svc2:p80', 'TCP')).toBe('KUBE-FW-GNZBNJ2PO5MGZ6GT');
  });

  it('ns2/svc2:p80 tcp 10.180.0.2:80 → KUBE-SEP-RS4RBKLTHTF2IUXJ', () => {
    expect(endpointChainName('ns2/svc2:p80', 'TCP', '10.180.0.2:80')).toBe('KUBE-SEP-RS4RBKLTHTF2IUXJ');
  });

  it('ns5/svc5:p80 tcp → KUBE-SVC-/KUBE-FW-NUKIZ6OKUXPJNT4C', () => {
    expect(serviceChainName('ns5/svc5:p80', 'TCP')).toBe('KUBE-SVC-NUKIZ6OKUXPJNT4C');
    expect(firewallChainName('ns5/svc5:p80', 'TCP')).toBe('KUBE-FW-NUKIZ6OKUXPJNT4C');
  });

  it('ns5/svc5:p80 tcp 10.180.0.3:80 → KUBE-SEP-I77PXRDZVX7PMWMN', () => {
    expect(endpointChainName('ns5/svc5:p80', 'TCP', '10.180.0.3:80')).toBe('KUBE-SEP-I77PXRDZVX7PMWMN');
  });

  it('ns3/svc3:p80 tcp 10.180.0.3:80 → KUBE-SEP-OYPFS5VJICHGATKP (same IP, other service)', () => {
    expect(endpointChainName('ns3/svc3:p80', 'TCP', '10.180.0.3:80')).toBe('KUBE-SEP-OYPFS5VJICHGATKP');
    expect(endpointChainName('ns3/svc3:p80', 'TCP', '10.180.0.3:80')).not.toBe(
      endpointChainName('ns5/svc5:p80', 'TCP', '10.180.0.3:80'),
    );
  });

  it('ns1/svc1 (unnamed port) tcp → KUBE-SVC-AQI2S6QIMU7PVVRP', () => {
    expect(serviceChainName('ns1/svc1', 'TCP')).toBe('KUBE-SVC-AQI2S6QIMU7PVVRP');
  });

  it('ns1/svc1 tcp 10.0.1.1:80 → KUBE-SEP-3JOIVZTXZZRGORX4', () => {
    expect(endpointChainName('ns1/svc1', 'TCP', '10.0.1.1:80')).toBe('KUBE-SEP-3JOIVZTXZZRGORX4');
  });

  it('ns1/svc1:p80 sctp → KUBE-SVC-GFCIFIA5VTFSTMSM', () => {
    expect(serviceChainName('ns1/svc1:p80', 'SCTP')).toBe('KUBE-SVC-GFCIFIA5VTFSTMSM');
  });

  it('ns1/svc1:p80 sctp 10.180.0.1:80 → KUBE-SEP-RFW33Y6OHVBQ4W3M', () => {
    expect(endpointChainName('ns1/svc1:p80', 'SCTP', '10.180.0.1:80')).toBe('KUBE-SEP-RFW33Y6OHVBQ4W3M');
  });

  it('ns1/svc1:p80 tcp [ff06::c1]:80 → KUBE-SEP-LIGRYQQLSZN4UWQ5', () => {
    expect(endpointChainName('ns1/svc1:p80', 'TCP', '[ff06::c1]:80')).toBe('KUBE-SEP-LIGRYQQLSZN4UWQ5');
  });

  it('ns2/svc2:p8080 tcp → KUBE-SVC-2VJB64SDSIJUP5T6 / 10.0.2.1:8080 → KUBE-SEP-UHEGFW77JX3KXTOV', () => {
    expect(serviceChainName('ns2/svc2:p8080', 'TCP')).toBe('KUBE-SVC-2VJB64SDSIJUP5T6');
    expect(endpointChainName('ns2/svc2:p8080', 'TCP', '10.0.2.1:8080')).toBe('KUBE-SEP-UHEGFW77JX3KXTOV');
  });

  it('ns4/svc4:p8082 tcp → KUBE-SVC-EBDQOQU5SJFXRIL3 / 10.4.0.1:8082 → KUBE-SEP-SU5STNODRYEWJAUF', () => {
    expect(serviceChainName('ns4/svc4:p8082', 'TCP')).toBe('KUBE-SVC-EBDQOQU5SJFXRIL3');
    expect(endpointChainName('ns4/svc4:p8082', 'TCP', '10.4.0.1:8082')).toBe('KUBE-SEP-SU5STNODRYEWJAUF');
  });

  it('ns3/svc3:p80 and ns4/svc4:p80 tcp → X27LE4BHSL4DOUIK, 4SW47YFZTEDKD3PK', () => {
    expect(serviceChainName('ns3/svc3:p80', 'TCP')).toBe('KUBE-SVC-X27LE4BHSL4DOUIK');
    expect(serviceChainName('ns4/svc4:p80', 'TCP')).toBe('KUBE-SVC-4SW47YFZTEDKD3PK');
  });
});

describe('chain name properties', () => {
  it('lower-cases the protocol before hashing (tcp and TCP are the same)', () => {
    expect(serviceChainName('ns1/svc1:p80', 'tcp')).toBe('KUBE-SVC-XPGD46QRK7WJZT7O');
    expect(endpointChainName('ns1/svc1:p80', 'tcp', '10.180.0.1:80')).toBe('KUBE-SEP-SXIVWICOYRO3J4NJ');
  });

  it('gives the protocol its own hash (tcp ≠ udp)', () => {
    expect(serviceChainName('ns1/svc1:p80', 'UDP')).not.toBe('KUBE-SVC-XPGD46QRK7WJZT7O');
    expect(servicePortHash('ns1/svc1:p80', 'UDP')).toMatch(/^[A-Z2-7]{16}$/);
  });

  it('keeps every chain name within the 28-character iptables limit', () => {
    for (const name of [
      serviceChainName('a-very-long-namespace-name/with-a-long-service:port', 'SCTP'),
      firewallChainName('x/y', 'TCP'),
      endpointChainName('x/y', 'UDP', '[2001:db8::1]:65535'),
    ]) {
      expect(name.length).toBeLessThanOrEqual(28);
    }
    expect(serviceChainName('x/y', 'TCP')).toHaveLength(25);
    expect(firewallChainName('x/y', 'TCP')).toHaveLength(24);
  });

  it('lists the five per-service prefixes of reference §2', () => {
    expect([...SERVICE_CHAIN_PREFIXES].sort()).toEqual(['KUBE-EXT-', 'KUBE-FW-', 'KUBE-SEP-', 'KUBE-SVC-', 'KUBE-SVL-']);
  });
});
