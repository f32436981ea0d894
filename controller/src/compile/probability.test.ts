import { describe, expect, it } from 'vitest';
import { formatFixedHalfEven, probability } from './probability.ts';

describe('probability(n): Go fmt.Sprintf("%0.10f", 1.0/float64(n)) (reference §3)', () => {
  it('agrees with toFixed(10) for n = 1..5000 except the tie at n = 2048', () => {
    const mismatches: { n: number; got: string; toFixed: string }[] = [];
    for (let n = 1; n <= 5000; n++) {
      const got = probability(n);
      const toFixed = (1 / n).toFixed(10);
      if (got !== toFixed) mismatches.push({ n, got, toFixed });
    }
    expect(mismatches).toEqual([{ n: 2048, got: '0.0004882812', toFixed: '0.0004882813' }]);
  });

  it('rounds 1/2048 = 0.00048828125 (an exact tie) half-to-even', () => {
    expect(probability(2048)).toBe('0.0004882812');
  });

  it.each([
    [1, '1.0000000000'],
    [2, '0.5000000000'],
    [3, '0.3333333333'],
    [4, '0.2500000000'],
    [6, '0.1666666667'],
    [7, '0.1428571429'],
    [1000, '0.0010000000'],
    [1024, '0.0009765625'],
    [4096, '0.0002441406'],
  ])('probability(%i) = %s', (n, expected) => {
    expect(probability(n)).toBe(expected);
  });

  it('returns the same text on repeated calls (cache)', () => {
    expect(probability(3)).toBe('0.3333333333');
    expect(probability(3)).toBe('0.3333333333');
  });

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])('throws a RangeError for n = %s', (n) => {
    expect(() => probability(n)).toThrow(RangeError);
  });
});

describe('formatFixedHalfEven', () => {
  it.each([
    [0.125, 2, '0.12'],
    [0.375, 2, '0.38'],
    [0.625, 2, '0.62'],
    [0.875, 2, '0.88'],
    [2.5, 0, '2'],
    [3.5, 0, '4'],
    [0.5, 0, '0'],
    [1.5, 0, '2'],
    [0.25, 1, '0.2'],
    [0.75, 1, '0.8'],
  ])('formatFixedHalfEven(%d, %i) = %s (exact binary ties go to even)', (value, decimals, expected) => {
    expect(formatFixedHalfEven(value, decimals)).toBe(expected);
  });

  it('rounds the exact binary value, not the decimal literal (0.1 + 0.2 → 0.3000000000)', () => {
    expect(formatFixedHalfEven(0.1 + 0.2)).toBe('0.3000000000');
    // 1.005 is stored as 1.00499999999999989...: rounds down at 2 decimals.
    expect(formatFixedHalfEven(1.005, 2)).toBe('1.00');
  });

  it('defaults to 10 decimals and formats 0 and integers', () => {
    expect(formatFixedHalfEven(0)).toBe('0.0000000000');
    expect(formatFixedHalfEven(1)).toBe('1.0000000000');
    expect(formatFixedHalfEven(12, 3)).toBe('12.000');
  });

  it('formats subnormal and very small values as zero', () => {
    expect(formatFixedHalfEven(Number.MIN_VALUE)).toBe('0.0000000000');
    expect(formatFixedHalfEven(1e-11)).toBe('0.0000000000');
    expect(formatFixedHalfEven(6e-11)).toBe('0.0000000001');
  });

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY])('throws a RangeError for %s', (value) => {
    expect(() => formatFixedHalfEven(value)).toThrow(RangeError);
  });
});
