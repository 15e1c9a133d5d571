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
  const interval = bootstrapCis(units, (sample) => [metric(sample)], options)[0] as BootstrapInterval;
  if (interval.undefinedResamples === interval.resamples) {
    throw new RescaleError(
      'INPUT_INVALID',
      `the metric was undefined (not finite) on all ${interval.resamples} resamples; check it on the full data first`,
    );
  }
  return interval;
}

/**
 * bootstrapCi for several metrics at once, all computed on the same resamples (one pass, and intervals that are
 * mutually consistent, e.g. for a table or for paired differences). `metrics` returns one value per metric, always
 * the same number of them; interval i equals bootstrapCi with metric i and the same options, bit for bit. A metric
 * undefined on every resample gets NaN bounds (undefinedResamples = resamples) instead of an error. The sample array
 * handed to `metrics` is reused between resamples: copy it to keep it.
 */
export function bootstrapCis<Unit>(
  units: readonly Unit[],
  metrics: (sample: readonly Unit[]) => readonly number[],
  options: BootstrapOptions,
): BootstrapInterval[] {
  const resamples = options.resamples ?? DEFAULT_BOOTSTRAP_RESAMPLES;
  const confidence = options.confidence ?? DEFAULT_CONFIDENCE;
  if (!Number.isInteger(resamples) || resamples < MIN_RESAMPLES) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `resamples must be an integer of at least ${MIN_RESAMPLES} (got ${String(resamples)}); 2,000 is the default`,
    );
  }
  if (!(confidence > 0 && confidence < 1)) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `confidence must be between 0 and 1, e.g. 0.95 (got ${String(confidence)})`,
    );
  }
  if (units.length === 0) {
    throw new RescaleError('INPUT_INVALID', 'no units to resample; the bootstrap needs at least one unit');
  }
  const random = createSeededRandom(options.seed);
  const estimates = metrics(units);
  const k = estimates.length;
  const n = units.length;
  const values: number[][] = Array.from({ length: k }, () => []);
  const undefinedResamples = new Array<number>(k).fill(0);
  const sample = new Array<Unit>(n);
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < n; i++) sample[i] = units[random.nextInt(n)] as Unit;
    const resampled = metrics(sample);
    if (resampled.length !== k) {
      throw new RescaleError(
        'INTERNAL',
        `the metrics function returned ${resampled.length} values on a resample but ${k} on the data`,
      );
    }
    for (let m = 0; m < k; m++) {
      const value = resampled[m] as number;
      if (Number.isFinite(value)) (values[m] as number[]).push(value);
      else undefinedResamples[m] = (undefinedResamples[m] as number) + 1;
    }
  }
  const tail = (1 - confidence) / 2;
  return estimates.map((estimate, m) => {
    const sorted = Float64Array.from(values[m] as number[]).sort();
    return {
      estimate,
      lower: quantile(sorted, tail),
      upper: quantile(sorted, 1 - tail),
      confidence,
      resamples,
      undefinedResamples: undefinedResamples[m] as number,
      seed: options.seed,
      method: 'percentile' as const,
    };
  });
}
