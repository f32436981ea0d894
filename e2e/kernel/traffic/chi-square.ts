/**
 * Pearson's chi-square goodness-of-fit test at a fixed significance, for comparing how the
 * kernel spread real connections over endpoints with the simulator's exact distribution.
 *
 * The kernel's `-m statistic --mode random` draws from the kernel's own random source, which no
 * test can seed; instead of a seed, each comparison is a hypothesis test whose false-failure
 * probability is fixed in advance (ALPHA). The critical value is computed here, exactly, from the
 * regularized upper incomplete gamma function (chi-square survival Q(k/2, x/2)), and checked
 * against the Wilson–Hilferty approximation, which brackets the root.
 */

/** Reject "the kernel follows the simulator's distribution" only if p < ALPHA. */
export const ALPHA = 1e-6;

/** ln Γ(x), Lanczos approximation (g = 7, n = 9): about 15 significant digits for x > 0. */
function logGamma(x: number): number {
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const z = x - 1;
  let a = c[0] ?? 0;
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += (c[i] ?? 0) / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Regularized upper incomplete gamma Q(a, x) (series below a+1, continued fraction above). */
export function gammaQ(a: number, x: number): number {
  if (x <= 0) return 1;
  const lead = -x + a * Math.log(x) - logGamma(a);
  if (x < a + 1) {
    let sum = 1 / a;
    let term = sum;
    for (let n = 1; n < 1000; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * 1e-16) break;
    }
    return 1 - sum * Math.exp(lead);
  }
  // Lentz's method for the continued fraction.
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(lead) * h;
}

/** P(X > x) for X ~ chi-square with `df` degrees of freedom. */
export function chiSquareSurvival(x: number, df: number): number {
  return gammaQ(df / 2, x / 2);
}

/** Upper standard normal quantile: z with P(Z > z) = p (Acklam's algorithm, |rel. error| < 1.2e-9). */
export function normalUpperQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.928510446969, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const at = (xs: readonly number[], i: number): number => xs[i] ?? 0;
  // Lower tail q = 1 - p; for the small p used here the tail branch applies.
  const q = Math.min(p, 1 - p);
  let z: number;
  if (q < 0.02425) {
    const r = Math.sqrt(-2 * Math.log(q));
    z = -(((((at(c, 0) * r + at(c, 1)) * r + at(c, 2)) * r + at(c, 3)) * r + at(c, 4)) * r + at(c, 5)) / ((((at(d, 0) * r + at(d, 1)) * r + at(d, 2)) * r + at(d, 3)) * r + 1);
  } else {
    const s = q - 0.5;
    const r = s * s;
    z = -(((((at(a, 0) * r + at(a, 1)) * r + at(a, 2)) * r + at(a, 3)) * r + at(a, 4)) * r + at(a, 5)) * s / (((((at(b, 0) * r + at(b, 1)) * r + at(b, 2)) * r + at(b, 3)) * r + at(b, 4)) * r + 1);
  }
  return p <= 0.5 ? z : -z;
}

/** Wilson–Hilferty: (X/k)^(1/3) is nearly normal with mean 1 - 2/(9k) and variance 2/(9k). */
export function wilsonHilfertyCritical(df: number, alpha: number): number {
  const v = 2 / (9 * df);
  return df * (1 - v + normalUpperQuantile(alpha) * Math.sqrt(v)) ** 3;
}

const criticalCache = new Map<string, number>();

/** The x with P(chi-square(df) > x) = alpha, by bisection on the exact survival function. */
export function chiSquareCritical(df: number, alpha: number = ALPHA): number {
  const key = `${String(df)}/${String(alpha)}`;
  const cached = criticalCache.get(key);
  if (cached !== undefined) return cached;
  let lo = 0;
  // Wilson–Hilferty overshoots for small df at tiny alpha; twice it is always past the root.
  let hi = 2 * wilsonHilfertyCritical(df, alpha) + 10;
  for (let i = 0; i < 200 && hi - lo > 1e-9 * hi; i++) {
    const mid = (lo + hi) / 2;
    if (chiSquareSurvival(mid, df) > alpha) lo = mid;
    else hi = mid;
  }
  const x = (lo + hi) / 2;
  criticalCache.set(key, x);
  return x;
}

export interface GoodnessOfFit {
  readonly statistic: number;
  readonly df: number;
  readonly critical: number;
  readonly pValue: number;
  /** True when the observations are consistent with the expected distribution at ALPHA. */
  readonly consistent: boolean;
}

/**
 * Pearson's statistic over the expected categories (probability > 0). Observations outside them
 * are the caller's business (the reachable sets differ: a failure on its own). With a single
 * category there is nothing to test (df = 0): consistent.
 */
export function goodnessOfFit(observed: ReadonlyMap<string, number>, expected: ReadonlyMap<string, number>, alpha: number = ALPHA): GoodnessOfFit {
  const categories = [...expected].filter(([, p]) => p > 0);
  const total = categories.reduce((n, [key]) => n + (observed.get(key) ?? 0), 0);
  const mass = categories.reduce((s, [, p]) => s + p, 0);
  let statistic = 0;
  for (const [key, p] of categories) {
    const e = (total * p) / mass;
    const o = observed.get(key) ?? 0;
    statistic += ((o - e) * (o - e)) / e;
  }
  const df = categories.length - 1;
  if (df <= 0 || total === 0) return { statistic: 0, df: Math.max(df, 0), critical: Infinity, pValue: 1, consistent: true };
  const critical = chiSquareCritical(df, alpha);
  return { statistic, df, critical, pValue: chiSquareSurvival(statistic, df), consistent: statistic <= critical };
}
