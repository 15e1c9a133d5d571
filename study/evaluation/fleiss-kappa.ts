// Fleiss' kappa (Fleiss 1971): chance-corrected agreement of a fixed number of raters per subject over nominal
// categories, from the subjects × categories table of how many raters chose each category.

import { RescaleError } from '../../contracts/errors.js';

export interface FleissKappaResult {
  /** (P̄ − P̄e) / (1 − P̄e); NaN when every rating is one category (P̄e = 1: agreement beyond chance undefined). */
  readonly kappa: number;
  /** P̄: the mean share of agreeing rater pairs per subject. */
  readonly observedAgreement: number;
  /** P̄e: Σ p_j², p_j the share of all ratings in category j. */
  readonly expectedAgreement: number;
  readonly subjects: number;
  readonly raters: number;
}

/**
 * Fleiss' kappa from counts[i][j], the raters who put subject i in category j. Every subject must have the same number
 * of raters, at least two; throws INPUT_INVALID naming the subject otherwise.
 */
export function fleissKappa(counts: readonly (readonly number[])[]): FleissKappaResult {
  const first = counts[0];
  if (first === undefined) throw new RescaleError('INPUT_INVALID', "Fleiss' kappa needs at least one subject");
  const categories = first.length;
  const raters = first.reduce((a, b) => a + b, 0);
  if (raters < 2) {
    throw new RescaleError('INPUT_INVALID', `subject 0 has ${raters} ratings; Fleiss' kappa needs at least two`);
  }
  const totals = new Array<number>(categories).fill(0);
  let agreement = 0;
  counts.forEach((row, i) => {
    if (row.length !== categories) {
      throw new RescaleError('INPUT_INVALID', `subject ${i} has ${row.length} categories, subject 0 has ${categories}`);
    }
    let n = 0;
    let squares = 0;
    row.forEach((count, j) => {
      if (!Number.isInteger(count) || count < 0) {
        throw new RescaleError('INPUT_INVALID', `subject ${i}, category ${j}: ${count} is not a count`);
      }
      n += count;
      squares += count * count;
      totals[j] = (totals[j] as number) + count;
    });
    if (n !== raters) {
      throw new RescaleError(
        'INPUT_INVALID',
        `subject ${i} has ${n} ratings, subject 0 has ${raters}; Fleiss' kappa needs the same raters per subject`,
      );
    }
    agreement += (squares - raters) / (raters * (raters - 1));
  });
  const all = raters * counts.length;
  const observed = agreement / counts.length;
  const expected = totals.reduce((sum, t) => sum + (t / all) * (t / all), 0);
  const kappa = expected === 1 ? Number.NaN : (observed - expected) / (1 - expected);
  return { kappa, observedAgreement: observed, expectedAgreement: expected, subjects: counts.length, raters };
}
