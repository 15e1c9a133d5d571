import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { isRescaleError } from '../../../contracts/errors.js';
import {
  agreementMetrics,
  cohenKappa,
  confusionMatrix,
  kappaFromConfusion,
} from '../../../study/evaluation/agreement-metrics.js';

const TOL = 1e-6;

function close(actual: number, expected: number, tol = TOL): void {
  assert.ok(Math.abs(actual - expected) <= tol, `expected ${expected}, got ${actual}`);
}

function repeat(label: string, times: number): string[] {
  return new Array<string>(times).fill(label);
}

function throwsCode(fn: () => unknown, code: 'INPUT_INVALID' | 'CONFIG_INVALID', pattern: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(isRescaleError(error, code), `expected ${code}, got ${String(error)}`);
    assert.match(error.message, pattern);
    return true;
  });
}

describe('confusionMatrix', () => {
  it('puts gold on rows and predicted on columns, in label-list order', () => {
    const m = confusionMatrix(['a', 'a', 'b', 'c'], ['a', 'b', 'b', 'a'], ['a', 'b', 'c']);
    assert.deepEqual(m.counts, [
      [1, 1, 0],
      [0, 1, 0],
      [1, 0, 0],
    ]);
    assert.equal(m.total, 4);
  });

  it('rejects empty input with a clear INPUT_INVALID error', () => {
    throwsCode(() => confusionMatrix([], [], ['a']), 'INPUT_INVALID', /empty/);
  });

  it('names a label outside the label list and where it is', () => {
    throwsCode(
      () => confusionMatrix(['pos', 'neg', 'pos'], ['pos', 'neg', 'neutral'], ['pos', 'neg']),
      'INPUT_INVALID',
      /predicted\[2\] is "neutral"/,
    );
    throwsCode(
      () => confusionMatrix(['pos', 'x'], ['pos', 'pos'], ['pos', 'neg']),
      'INPUT_INVALID',
      /gold\[1\] is "x"/,
    );
  });

  it('rejects unequal lengths, an empty label list and duplicated labels', () => {
    throwsCode(
      () => confusionMatrix(['a'], ['a', 'a'], ['a']),
      'INPUT_INVALID',
      /gold has 1 labels but predicted has 2/,
    );
    throwsCode(() => confusionMatrix(['a'], ['a'], []), 'CONFIG_INVALID', /label list is empty/);
    throwsCode(() => confusionMatrix(['a'], ['a'], ['a', 'b', 'a']), 'CONFIG_INVALID', /"a" twice/);
  });
});

describe('agreementMetrics', () => {
  it('matches scikit-learn f1_score docstring example (macro 0.2667, weighted 0.2667, per class [0.8, 0, 0])', () => {
    // sklearn.metrics.f1_score docstring: y_true = [0, 1, 2, 0, 1, 2], y_pred = [0, 2, 1, 0, 0, 1].
    const m = agreementMetrics(['0', '1', '2', '0', '1', '2'], ['0', '2', '1', '0', '0', '1'], ['0', '1', '2']);
    close(m.macroF1, 4 / 15);
    close(m.weightedF1, 4 / 15);
    close(m.accuracy, 1 / 3); // = micro F1 in sklearn's example
    assert.deepEqual(
      m.perClass.map((c) => c.f1),
      [0.8, 0, 0],
    );
  });

  it('matches scikit-learn precision_recall_fscore_support docstring (cat/dog/pig)', () => {
    // macro and weighted: precision 0.222, recall 0.333, F1 0.267.
    const m = agreementMetrics(
      ['cat', 'dog', 'pig', 'cat', 'dog', 'pig'],
      ['cat', 'pig', 'dog', 'cat', 'cat', 'dog'],
      ['cat', 'dog', 'pig'],
    );
    close(m.macroPrecision, 2 / 9);
    close(m.macroRecall, 1 / 3);
    close(m.macroF1, 4 / 15);
    close(m.weightedPrecision, 2 / 9);
    close(m.weightedRecall, 1 / 3);
    close(m.weightedF1, 4 / 15);
  });

  it('reproduces a hand-computed confusion matrix with unequal supports', () => {
    // Rows gold, cols predicted: A [4,1,0], B [1,2,0], C [1,0,1].
    // F1: A = 2·(4/6)(4/5)/(4/6+4/5) = 8/11; B = 2/3; C = 2·1·(1/2)/(3/2) = 2/3.
    // macro = (8/11 + 4/3)/3 = 68/99; weighted = (5·8/11 + 3·2/3 + 2·2/3)/10 = 23/33; accuracy 7/10.
    // kappa: p_o = 0.7, p_e = (5·6 + 3·3 + 2·1)/100 = 0.41, kappa = 0.29/0.59 = 29/59.
    const gold = ['A', 'A', 'A', 'A', 'A', 'B', 'B', 'B', 'C', 'C'];
    const pred = ['A', 'A', 'A', 'A', 'B', 'B', 'B', 'A', 'C', 'A'];
    const m = agreementMetrics(gold, pred, ['A', 'B', 'C']);
    assert.deepEqual(m.confusion.counts, [
      [4, 1, 0],
      [1, 2, 0],
      [1, 0, 1],
    ]);
    close(m.accuracy, 7 / 10);
    close(m.perClass[0]?.f1 ?? NaN, 8 / 11);
    close(m.perClass[1]?.f1 ?? NaN, 2 / 3);
    close(m.perClass[2]?.f1 ?? NaN, 2 / 3);
    close(m.perClass[2]?.precision ?? NaN, 1);
    close(m.perClass[2]?.recall ?? NaN, 1 / 2);
    close(m.macroF1, 68 / 99);
    close(m.weightedF1, 23 / 33);
    close(m.cohenKappa, 29 / 59);
    assert.deepEqual(
      m.perClass.map((c) => [c.support, c.predicted]),
      [
        [5, 6],
        [3, 3],
        [2, 1],
      ],
    );
  });

  it('gives precision 0 to a class that is never predicted', () => {
    const m = agreementMetrics(['A', 'B', 'C'], ['A', 'B', 'B'], ['A', 'B', 'C']);
    const c = m.perClass[2];
    assert.deepEqual(c, { label: 'C', precision: 0, recall: 0, f1: 0, support: 1, predicted: 0 });
    close(m.macroF1, (1 + 2 / 3 + 0) / 3);
  });

  it('averages over present labels by default and over all labels on request', () => {
    const gold = ['A', 'B', 'A'];
    const pred = ['A', 'B', 'B'];
    const present = agreementMetrics(gold, pred, ['A', 'B', 'D']);
    assert.deepEqual(present.averagedLabels, ['A', 'B']);
    close(present.macroF1, (2 / 3 + 2 / 3) / 2);
    const all = agreementMetrics(gold, pred, ['A', 'B', 'D'], { averageOver: 'all' });
    assert.deepEqual(all.averagedLabels, ['A', 'B', 'D']);
    close(all.macroF1, (2 / 3 + 2 / 3 + 0) / 3);
    // Weighted averages use gold support, so the absent label changes nothing.
    close(all.weightedF1, present.weightedF1);
  });

  it('handles a single class: accuracy and F1 are 1, kappa is NaN (undefined)', () => {
    const m = agreementMetrics(['x', 'x', 'x'], ['x', 'x', 'x'], ['x']);
    assert.equal(m.accuracy, 1);
    assert.equal(m.macroF1, 1);
    assert.equal(m.weightedF1, 1);
    assert.ok(Number.isNaN(m.cohenKappa));
  });
});

describe('cohenKappa', () => {
  // Values from scikit-learn's test_cohen_kappa (sklearn/metrics/tests/test_classification.py), which cites
  // Artstein & Poesio (2008); the exact fractions are worked out from the confusion matrices below.
  it('reproduces Artstein & Poesio (2008) Table 1: 0.348', () => {
    const y1 = [...repeat('0', 40), ...repeat('1', 60)];
    const y2 = [...repeat('0', 20), ...repeat('1', 20), ...repeat('0', 10), ...repeat('1', 50)];
    // p_o = 0.7, p_e = 0.4·0.3 + 0.6·0.7 = 0.54 → 0.16/0.46 = 8/23
    const kappa = cohenKappa(y1, y2, ['0', '1']);
    close(kappa, 8 / 23);
    assert.equal(Math.round(kappa * 1000) / 1000, 0.348);
    assert.equal(cohenKappa(y2, y1, ['0', '1']), kappa);
  });

  it('reproduces Artstein & Poesio (2008) Table 4 multiclass: 0.8013', () => {
    const y1 = [...repeat('0', 46), ...repeat('1', 44), ...repeat('2', 10)];
    const y2 = [...repeat('0', 52), ...repeat('1', 32), ...repeat('2', 16)];
    const kappa = cohenKappa(y1, y2, ['0', '1', '2']);
    close(kappa, 121 / 151);
    assert.equal(Math.round(kappa * 1e4) / 1e4, 0.8013);
  });

  it('reproduces scikit-learn weighted kappa: none 0.9315, linear 0.9412, quadratic 0.9541', () => {
    // O = [[46,0,0],[4,40,0],[0,0,10]], rows (46,44,10), cols (50,40,10).
    // none: (0.96 − 0.416)/(1 − 0.416) = 68/73; linear: 1 − 4/68 = 16/17; quadratic: 1 − 4/87.2 = 104/109.
    const y1 = [...repeat('0', 46), ...repeat('1', 44), ...repeat('2', 10)];
    const y2 = [...repeat('0', 50), ...repeat('1', 40), ...repeat('2', 10)];
    const labels = ['0', '1', '2'];
    close(cohenKappa(y1, y2, labels), 68 / 73);
    close(cohenKappa(y1, y2, labels, { weights: 'linear' }), 16 / 17);
    close(cohenKappa(y1, y2, labels, { weights: 'quadratic' }), 104 / 109);
    assert.equal(Math.round(cohenKappa(y1, y2, labels, { weights: 'linear' }) * 1e4) / 1e4, 0.9412);
    assert.equal(Math.round(cohenKappa(y1, y2, labels, { weights: 'quadratic' }) * 1e4) / 1e4, 0.9541);
  });

  it('weights by position in the label list, so the label order matters for weighted kappa only', () => {
    const gold = ['lo', 'lo', 'mid', 'hi', 'hi', 'mid', 'lo', 'hi', 'mid', 'lo'];
    const pred = ['mid', 'lo', 'hi', 'hi', 'lo', 'mid', 'lo', 'mid', 'mid', 'hi'];
    const ordered = cohenKappa(gold, pred, ['lo', 'mid', 'hi'], { weights: 'quadratic' });
    const shuffled = cohenKappa(gold, pred, ['mid', 'hi', 'lo'], { weights: 'quadratic' });
    assert.ok(Math.abs(ordered - shuffled) > 0.1, `${ordered} vs ${shuffled}`);
    close(cohenKappa(gold, pred, ['lo', 'mid', 'hi']), cohenKappa(gold, pred, ['mid', 'hi', 'lo']));
  });

  it('is 1 for perfect agreement and NaN when both sides use one label', () => {
    assert.equal(cohenKappa(['a', 'b', 'a'], ['a', 'b', 'a'], ['a', 'b']), 1);
    assert.ok(Number.isNaN(cohenKappa(['a', 'a'], ['a', 'a'], ['a', 'b'])));
  });

  it('computes from a confusion matrix directly and rejects a malformed one', () => {
    close(
      kappaFromConfusion({
        labels: ['0', '1'],
        counts: [
          [20, 20],
          [10, 50],
        ],
        total: 100,
      }),
      8 / 23,
    );
    throwsCode(() => kappaFromConfusion({ labels: ['0', '1'], counts: [[1, 2]], total: 3 }), 'INPUT_INVALID', /2 × 2/);
  });
});
