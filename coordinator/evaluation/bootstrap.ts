// Seeded percentile-bootstrap confidence intervals for any metric computed over units (documents, or the columns of
// a reliability matrix). The same seed, units and metric give the same interval bit for bit.

import { RescaleError } from '../../contracts/errors.js';
import { createSeededRandom } from './seeded-random.js';

export const DEFAULT_BOOTSTRAP_RESAMPLES = 2000;
export const DEFAULT_CONFIDENCE = 0.95;
// Fewer resamples make the 2.5th/97.5th percentiles rest on a handful of draws.
const MIN_RESAMPLES = 100;

export interface BootstrapOptions {
  /** Integer in [0, 2^32 − 1]; report it next to the interval. */
  readonly seed: number;
  /** Number of resamples (default 2,000; at least 100). */
  readonly resamples?: number;
  /** Two-sided coverage in (0, 1) (default 0.95). */
  readonly confidence?: number;
}

export interface BootstrapInterval {
  /** The metric on the original units. */
  readonly estimate: number;
  readonly lower: number;
  readonly upper: number;
  readonly confidence: number;
  readonly resamples: number;
  /**
   * Resamples where the metric was not finite (e.g. kappa when a resample holds a single label); they are left out
   * of the percentiles, so report this count when it is not 0.
   */
  readonly undefinedResamples: number;
  readonly seed: number;
  readonly method: 'percentile';
}

/** Linear interpolation between order statistics (Hyndman & Fan type 7, numpy's default); `sorted` ascending. */
export function quantile(sorted: ArrayLike<number>, p: number): number {
  const m = sorted.length;
  if (m === 0) return Number.NaN;
  const h = (m - 1) * p;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, m - 1);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (h - lo) * (b - a);
}

/**
 * Percentile bootstrap: resample the units with replacement `resamples` times, compute the metric on each resample,
 * and take the (1 − confidence)/2 and (1 + confidence)/2 quantiles. Units are resampled whole, so a unit holding
 * several coders' values keeps them together.
 */
export function bootstrapCi<Unit>(
  units: readonly Unit[],
  metric: (sample: readonly Unit[]) => number,
  options: BootstrapOptions,
): BootstrapInterval {
  const resamples = options.resamples ?? DEFAULT_BOOTSTRAP_RESAMPLES;
  const confidence = options.confidence ?? DEFAULT_CONFIDENCE;
  if (!Number.isInteger(resamples) || resamples < MIN_RESAMPLES) {
    throw new RescaleError('CONFIG_INVALID', `resamples must be an integer of at least ${MIN_RESAMPLES} (got ${String(resamples)}); 2,000 is the default`);
  }
  if (!(confidence > 0 && confidence < 1)) {
    throw new RescaleError('CONFIG_INVALID', `confidence must be between 0 and 1, e.g. 0.95 (got ${String(confidence)})`);
  }
  if (units.length === 0) {
    throw new RescaleError('INPUT_INVALID', 'no units to resample; the bootstrap needs at least one unit');
  }
  const random = createSeededRandom(options.seed);
  const estimate = metric(units);
  const n = units.length;
  const values: number[] = [];
  let undefinedResamples = 0;
  for (let r = 0; r < resamples; r++) {
    const sample = new Array<Unit>(n);
    for (let i = 0; i < n; i++) sample[i] = units[random.nextInt(n)] as Unit;
    const value = metric(sample);
    if (Number.isFinite(value)) values.push(value);
    else undefinedResamples++;
  }
  if (values.length === 0) {
    throw new RescaleError('INPUT_INVALID', `the metric was undefined (not finite) on all ${resamples} resamples; check it on the full data first`);
  }
  const sorted = Float64Array.from(values).sort();
  const tail = (1 - confidence) / 2;
  return {
    estimate,
    lower: quantile(sorted, tail),
    upper: quantile(sorted, 1 - tail),
    confidence,
    resamples,
    undefinedResamples,
    seed: options.seed,
    method: 'percentile',
  };
}
