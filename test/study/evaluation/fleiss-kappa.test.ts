import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isRescaleError } from '../../../contracts/errors.js';
import { fleissKappa } from '../../../study/evaluation/fleiss-kappa.js';

/** Fleiss (1971) as worked on Wikipedia ("Fleiss' kappa"): 10 subjects, 14 raters, 5 categories; kappa 0.210. */
const WORKED_EXAMPLE = [
  [0, 0, 0, 0, 14],
  [0, 2, 6, 4, 2],
  [0, 0, 3, 5, 6],
  [0, 3, 9, 2, 0],
  [2, 2, 8, 1, 1],
  [7, 7, 0, 0, 0],
  [3, 2, 6, 3, 0],
  [2, 5, 3, 2, 2],
  [6, 5, 2, 1, 0],
  [0, 2, 2, 3, 7],
];

describe('fleissKappa', () => {
  it('reproduces the worked example: P̄ = 688/1820, P̄e = 4170/19600, kappa 0.210', () => {
    const result = fleissKappa(WORKED_EXAMPLE);
    // Exact fractions: Σ_i Σ_j n_ij(n_ij − 1) = 688 over 10·14·13; category totals 20, 28, 39, 21, 32 of 140.
    const observed = 688 / 1820;
    const expected = (20 * 20 + 28 * 28 + 39 * 39 + 21 * 21 + 32 * 32) / (140 * 140);
    assert.ok(Math.abs(result.observedAgreement - observed) < 1e-12);
    assert.ok(Math.abs(result.expectedAgreement - expected) < 1e-12);
    assert.ok(Math.abs(result.kappa - (observed - expected) / (1 - expected)) < 1e-9);
    assert.equal(result.kappa.toFixed(3), '0.210');
    assert.equal(result.subjects, 10);
    assert.equal(result.raters, 14);
  });

  it('is 1 for perfect agreement over several categories and NaN when every rating is one category', () => {
    assert.equal(
      fleissKappa([
        [3, 0],
        [0, 3],
        [3, 0],
      ]).kappa,
      1,
    );
    assert.ok(
      Number.isNaN(
        fleissKappa([
          [3, 0],
          [3, 0],
        ]).kappa,
      ),
    );
  });

  it('equals Cohen-style chance correction for two raters: (po − pe)/(1 − pe) with pooled marginals', () => {
    // Two raters, 4 subjects: agree on 2 (a, b), disagree on 2 (a/b twice). Pooled p_a = p_b = 1/2.
    const result = fleissKappa([
      [2, 0],
      [0, 2],
      [1, 1],
      [1, 1],
    ]);
    assert.ok(Math.abs(result.kappa - (0.5 - 0.5) / (1 - 0.5)) < 1e-12);
  });

  it('refuses subjects with different numbers of raters, naming the subject', () => {
    assert.throws(
      () =>
        fleissKappa([
          [2, 1],
          [1, 1],
        ]),
      (error: unknown) => isRescaleError(error) && /subject 1 has 2 ratings/.test(error.message),
    );
  });
});
