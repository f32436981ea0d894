import { describe, expect, it } from 'vitest';
import {
  canonicalIP,
  cidrContains,
  familyBits,
  formatCIDR,
  formatIP,
  hostCIDR,
  ipFamilyOf,
  isLoopback,
  joinHostPort,
  LOOPBACK_V4,
  LOOPBACK_V6,
  parseAddressOrCIDR,
  parseCIDR,
  parseIP,
  type CIDR,
  type IPAddress,
} from './ip.ts';

function mustIP(text: string): IPAddress {
  const ip = parseIP(text);
  if (ip === undefined) throw new Error(`test setup: ${text} is not an IP`);
  return ip;
}

function mustCIDR(text: string): CIDR {
  const cidr = parseCIDR(text);
  if (cidr === undefined) throw new Error(`test setup: ${text} is not a CIDR`);
  return cidr;
}

describe('parseIP / formatIP: IPv4', () => {
  it('parses dotted quads into a 32-bit value', () => {
    expect(parseIP('10.0.0.1')).toEqual({ family: 'IPv4', value: 0x0a000001n });
    expect(parseIP('255.255.255.255')).toEqual({ family: 'IPv4', value: 0xffffffffn });
    expect(parseIP('0.0.0.0')).toEqual({ family: 'IPv4', value: 0n });
  });

  it('reads leading zeros as decimal, not octal (ParseIPSloppy)', () => {
    expect(canonicalIP('010.000.000.001')).toBe('10.0.0.1');
    expect(canonicalIP('192.168.000.010')).toBe('192.168.0.10');
    expect(canonicalIP('0177.0.0.1')).toBe('177.0.0.1');
    expect(canonicalIP('008.009.0.1')).toBe('8.9.0.1');
  });

  it.each(['1.2.3', '256.0.0.1', '1.2.3.4.5', '1.2.3.4 ', ' 1.2.3.4', '', '1..2.3', '1.2.3.-4', '1.2.3.0x4', 'a.b.c.d', '1.2.3.4/32'])(
    'rejects %j',
    (text) => {
      expect(parseIP(text)).toBeUndefined();
      expect(canonicalIP(text)).toBeUndefined();
      expect(ipFamilyOf(text)).toBeUndefined();
    },
  );
});

describe('parseIP / formatIP: IPv6 (canonical as Go net.IP.String, RFC 5952)', () => {
  it.each([
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of two equal runs
    ['2001:0db8::0001', '2001:db8::1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not compressed
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longest run wins
    ['0:0:0:0:0:0:0:1', '::1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['fd00:10:0:0:0:0:0:0', 'fd00:10::'],
    ['2001:DB8::ABCD', '2001:db8::abcd'], // upper case accepted, printed lower case
    ['FF06::C1', 'ff06::c1'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['::ffff:0:1.2.3.4', '::ffff:0:102:304'],
  ])('%s → %s', (input, expected) => {
    expect(canonicalIP(input)).toBe(expected);
    expect(ipFamilyOf(input)).toBe('IPv6');
  });

  it('treats an IPv4-mapped address as IPv4', () => {
    expect(parseIP('::ffff:1.2.3.4')).toEqual({ family: 'IPv4', value: 0x01020304n });
    expect(canonicalIP('::ffff:1.2.3.4')).toBe('1.2.3.4');
    expect(canonicalIP('::FFFF:102:304')).toBe('1.2.3.4');
    expect(ipFamilyOf('::ffff:10.0.0.1')).toBe('IPv4');
  });

  it('keeps an embedded IPv4 tail of a non-mapped prefix as IPv6', () => {
    expect(canonicalIP('64:ff9b::1.2.3.4')).toBe('64:ff9b::102:304');
    expect(ipFamilyOf('64:ff9b::1.2.3.4')).toBe('IPv6');
    expect(canonicalIP('::1.2.3.4')).toBe('::102:304');
  });

  it.each([
    '::1::',
    'gggg::',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7::8', // "::" must stand for at least one group
    '12345::',
    '::ffff:1.2.3',
    '::ffff:256.1.2.3',
    '1:2:3:4:5:6:7:1.2.3.4',
    'fe80::1%eth0',
    ':::',
    '2001:db8::1 ',
  ])('rejects %j', (text) => {
    expect(parseIP(text)).toBeUndefined();
  });
});

describe('parseCIDR / formatCIDR', () => {
  it('clears host bits as Go ParseCIDR does', () => {
    expect(formatCIDR(mustCIDR('203.0.113.5/25'))).toBe('203.0.113.0/25');
    expect(formatCIDR(mustCIDR('203.0.113.200/25'))).toBe('203.0.113.128/25');
    expect(formatCIDR(mustCIDR('10.1.2.3/8'))).toBe('10.0.0.0/8');
    expect(formatCIDR(mustCIDR('2001:db8::1/32'))).toBe('2001:db8::/32');
    expect(formatCIDR(mustCIDR('fd00:10::ff/64'))).toBe('fd00:10::/64');
  });

  it('keeps the exact prefix and canonicalises the address', () => {
    expect(mustCIDR('010.000.000.000/8')).toEqual({ family: 'IPv4', network: 0x0a000000n, prefix: 8 });
    expect(formatCIDR(mustCIDR('0.0.0.0/0'))).toBe('0.0.0.0/0');
    expect(formatCIDR(mustCIDR('::/0'))).toBe('::/0');
    expect(formatCIDR(mustCIDR('1.2.3.4/32'))).toBe('1.2.3.4/32');
    expect(formatCIDR(mustCIDR('::1/128'))).toBe('::1/128');
    expect(formatCIDR(mustCIDR('2001:DB8:0:0:1::/80'))).toBe('2001:db8:0:0:1::/80');
  });

  it('reads an IPv4-mapped CIDR with a /96+ prefix as IPv4', () => {
    expect(formatCIDR(mustCIDR('::ffff:1.2.3.4/120'))).toBe('1.2.3.0/24');
    expect(mustCIDR('::ffff:1.2.3.4/120').family).toBe('IPv4');
  });

  it.each(['1.2.3.4/33', '::/129', '1.2.3.4/-1', '1.2.3.4/', '1.2.3.4', '/24', '1.2.3/24', '1.2.3.4/24/1', '1.2.3.4/ 24', '1.2.3.4/x'])(
    'rejects %j',
    (text) => {
      expect(parseCIDR(text)).toBeUndefined();
    },
  );
});

describe('containment and helpers', () => {
  it('cidrContains checks the network bits', () => {
    const c = mustCIDR('203.0.113.0/25');
    expect(cidrContains(c, mustIP('203.0.113.0'))).toBe(true);
    expect(cidrContains(c, mustIP('203.0.113.127'))).toBe(true);
    expect(cidrContains(c, mustIP('203.0.113.128'))).toBe(false);
    expect(cidrContains(c, mustIP('203.0.114.1'))).toBe(false);
    expect(cidrContains(mustCIDR('0.0.0.0/0'), mustIP('8.8.8.8'))).toBe(true);
    expect(cidrContains(mustCIDR('fd00:10::/64'), mustIP('fd00:10::5'))).toBe(true);
    expect(cidrContains(mustCIDR('fd00:10::/64'), mustIP('fd00:11::5'))).toBe(false);
  });

  it('never matches across families', () => {
    expect(cidrContains(mustCIDR('::/0'), mustIP('1.2.3.4'))).toBe(false);
    expect(cidrContains(mustCIDR('0.0.0.0/0'), mustIP('::1'))).toBe(false);
    // an IPv4-mapped address is IPv4, so an IPv4 CIDR contains it
    expect(cidrContains(mustCIDR('1.2.3.0/24'), mustIP('::ffff:1.2.3.9'))).toBe(true);
  });

  it('hostCIDR and parseAddressOrCIDR', () => {
    expect(formatCIDR(hostCIDR(mustIP('10.0.0.1')))).toBe('10.0.0.1/32');
    expect(formatCIDR(hostCIDR(mustIP('fd00::1')))).toBe('fd00::1/128');
    const a = parseAddressOrCIDR('192.168.0.2');
    const b = parseAddressOrCIDR('192.168.0.0/16');
    expect(a === undefined ? undefined : formatCIDR(a)).toBe('192.168.0.2/32');
    expect(b === undefined ? undefined : formatCIDR(b)).toBe('192.168.0.0/16');
    expect(parseAddressOrCIDR('nope')).toBeUndefined();
    expect(parseAddressOrCIDR('1.2.3.4/40')).toBeUndefined();
  });

  it('isLoopback covers 127.0.0.0/8 and ::1 only', () => {
    expect(isLoopback(mustIP('127.0.0.1'))).toBe(true);
    expect(isLoopback(mustIP('127.255.0.9'))).toBe(true);
    expect(isLoopback(mustIP('128.0.0.1'))).toBe(false);
    expect(isLoopback(mustIP('::1'))).toBe(true);
    expect(isLoopback(mustIP('::2'))).toBe(false);
    expect(isLoopback(LOOPBACK_V4)).toBe(true);
    expect(isLoopback(LOOPBACK_V6)).toBe(true);
    expect(formatIP(LOOPBACK_V4)).toBe('127.0.0.1');
    expect(formatIP(LOOPBACK_V6)).toBe('::1');
  });

  it('familyBits', () => {
    expect(familyBits('IPv4')).toBe(32);
    expect(familyBits('IPv6')).toBe(128);
  });

  it('joinHostPort brackets IPv6 hosts like Go net.JoinHostPort', () => {
    expect(joinHostPort('10.180.0.1', 80)).toBe('10.180.0.1:80');
    expect(joinHostPort('ff06::c1', 80)).toBe('[ff06::c1]:80');
    expect(joinHostPort('::1', 65535)).toBe('[::1]:65535');
  });
});
