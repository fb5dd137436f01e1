/**
 * The experiment report's statistics (src/experiments/results.ts): Student's t quantiles, paired
 * differences to the baseline with their 95 % interval, and the verdict that says "no difference
 * detected" where the interval covers zero.
 */
import { describe, expect, it } from 'vitest';
import { pairedDifference, tQuantile975, verdict } from '../src/experiments/results.ts';
import { formatPaired } from '../src/experiments/report.ts';

describe('tQuantile975', () => {
  it('matches the t table (two-sided 95 %)', () => {
    // Reference values: R qt(0.975, df).
    const table: [number, number][] = [[1, 12.706], [2, 4.303], [4, 2.776], [9, 2.262], [30, 2.042], [40, 2.021], [60, 2.0003], [120, 1.9799], [1000, 1.9623]];
    for (const [df, t] of table) expect(tQuantile975(df)).toBeCloseTo(t, 3);
    expect(tQuantile975(0)).toBeNaN();
  });
});

describe('pairedDifference', () => {
  it('is the mean of a_i − b_i with mean ± t·sd/√n, skipping pairs with a missing value', () => {
    const d = pairedDifference([[3.0, 3.5], [3.1, 3.4], [2.9, 3.45], [NaN, 3.0]]);
    // differences −0.5, −0.3, −0.55: mean −0.45, sd 0.1323, n 3, t(2) 4.303
    expect(d.n).toBe(3);
    expect(d.mean).toBeCloseTo(-0.45, 10);
    expect(d.std).toBeCloseTo(0.132288, 5);
    expect(d.high).toBeCloseTo(-0.45 + (4.303 * 0.132288) / Math.sqrt(3), 4);
    expect(d.low).toBeCloseTo(-0.45 - (4.303 * 0.132288) / Math.sqrt(3), 4);
    expect(verdict(d, false)).toBe('better'); // a lower loss
    expect(verdict(d, true)).toBe('worse'); // a lower BLEU
  });

  it('says "no difference detected" when the interval covers 0, and gives no interval for one seed', () => {
    const d = pairedDifference([[1.0, 1.1], [1.2, 1.1], [1.05, 1.0]]);
    expect(d.low).toBeLessThan(0);
    expect(d.high).toBeGreaterThan(0);
    expect(verdict(d, true)).toBe('no difference detected');
    // differences −0.1, +0.1, +0.05: mean 0.0167, sd 0.1041, half-width 4.303 · 0.1041 / √3 = 0.2586
    expect(formatPaired(d, true, 2)).toBe('+0.02 [-0.24, +0.28] no difference detected');
    const one = pairedDifference([[2, 1]]);
    expect(one.n).toBe(1);
    expect(verdict(one, true)).toBe('one seed: no interval');
    expect(formatPaired(one, true, 1)).toBe('+1.0 (one seed: no interval)');
    expect(formatPaired(null, true, 1)).toBe('');
  });
});
