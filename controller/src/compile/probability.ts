/**
 * The statistic-match probabilities kube-proxy writes: Go's `fmt.Sprintf("%0.10f", 1.0/float64(n))`.
 *
 * Go rounds the exact binary value of the double half-to-even; JavaScript's toFixed differs on
 * exact ties (n = 2048: Go `0.0004882812`, toFixed `0.0004882813`, reference §3), so the decimal
 * expansion is done here exactly with BigInt.
 */

const DECIMALS = 10n;
const SCALE = 10n ** DECIMALS;

/** Formats a finite, non-negative double with `decimals` digits, rounding half-to-even exactly. */
export function formatFixedHalfEven(value: number, decimals = 10): string {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`Cannot format ${String(value)} as a probability`);
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, value);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const exponentBits = (hi >>> 20) & 0x7ff;
  let mantissa = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let exponent: number;
  if (exponentBits === 0) {
    exponent = -1074; // subnormal
  } else {
    mantissa |= 1n << 52n;
    exponent = exponentBits - 1075;
  }
  const scale = decimals === 10 ? SCALE : 10n ** BigInt(decimals);
  // value = mantissa * 2^exponent; we want round_half_even(value * scale).
  let scaled = mantissa * scale;
  let q: bigint;
  if (exponent >= 0) {
    q = scaled << BigInt(exponent);
  } else {
    const shift = BigInt(-exponent);
    q = scaled >> shift;
    const remainder = scaled - (q << shift);
    const half = 1n << (shift - 1n);
    if (remainder > half || (remainder === half && (q & 1n) === 1n)) q += 1n;
  }
  scaled = q;
  const intPart = scaled / scale;
  const frac = (scaled % scale).toString().padStart(decimals, '0');
  return decimals === 0 ? intPart.toString() : `${intPart.toString()}.${frac}`;
}

const cache: string[] = [];

/** Probability text for the rule that picks one of `n` remaining endpoints: 1/n. */
export function probability(n: number): string {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`Cannot compute a probability for ${String(n)} endpoints`);
  let p = cache[n];
  if (p === undefined) {
    p = formatFixedHalfEven(1 / n);
    cache[n] = p;
  }
  return p;
}
