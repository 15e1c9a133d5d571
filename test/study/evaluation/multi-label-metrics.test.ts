// Multi-label agreement: scikit-learn's documented examples, NLTK's MASI example, the paper's any-overlap accuracy,
// the empty-set conventions, and an independent brute-force computation on random data.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isRescaleError } from '../../../contracts/errors.js';
import { multiLabelMetrics, type MultiLabelMetrics } from '../../../study/evaluation/multi-label-metrics.js';
import { jaccardDistance, masiDistance } from '../../../study/evaluation/set-distance.js';
import { krippendorffAlphaWithDistance } from '../../../study/evaluation/krippendorff-alpha.js';
import { createSeededRandom } from '../../../study/evaluation/seeded-random.js';

const TOL = 1e-9;
const close = (actual: number, expected: number, what = ''): void =>
  assert.ok(Math.abs(actual - expected) <= TOL, `${what}: expected ${expected}, got ${actual}`);

/** Indicator rows (scikit-learn's label-indicator matrix) to label sets over labels '0', '1', .... */
const fromIndicators = (rows: readonly (readonly number[])[]): string[][] =>
  rows.map((row) => row.flatMap((v, j) => (v === 1 ? [String(j)] : [])));
const columns = (k: number): string[] => Array.from({ length: k }, (_, j) => String(j));

describe('multiLabelMetrics against scikit-learn documentation', () => {
  it('jaccard_score: samples 0.5833…, macro 0.6666…, None [0.5, 0.5, 1.], micro 0.6', () => {
    // https://scikit-learn.org/stable/modules/generated/sklearn.metrics.jaccard_score.html (Examples):
    // y_true = [[0, 1, 1], [1, 1, 0]], y_pred = [[1, 1, 1], [1, 0, 0]]
    // average='samples' → 0.5833..., average='macro' → 0.6666..., average=None → array([0.5, 0.5, 1. ]),
    // average='micro' → 0.6. Exact values: 7/12, 2/3, [1/2, 1/2, 1], 3/5.
    const m = multiLabelMetrics(
      fromIndicators([
        [0, 1, 1],
        [1, 1, 0],
      ]),
      fromIndicators([
        [1, 1, 1],
        [1, 0, 0],
      ]),
      columns(3),
    );
    close(m.samples.jaccard, 7 / 12, 'samples');
    close(m.macro.jaccard, 2 / 3, 'macro');
    [1 / 2, 1 / 2, 1].forEach((v, j) => close(m.perLabel[j]?.jaccard ?? NaN, v, `label ${j}`));
    close(m.micro.jaccard, 3 / 5, 'micro');
  });

  it('hamming_loss: [[0, 1], [1, 1]] against all zeros is 0.75', () => {
    // https://scikit-learn.org/stable/modules/generated/sklearn.metrics.hamming_loss.html (Examples):
    // hamming_loss(np.array([[0, 1], [1, 1]]), np.zeros((2, 2))) → 0.75
    const m = multiLabelMetrics(
      fromIndicators([
        [0, 1],
        [1, 1],
      ]),
      [[], []],
      columns(2),
    );
    close(m.hammingLoss, 0.75);
  });

  it('f1_score multilabel, average=None: [0.66666667, 1., 0.66666667]; and the other averages', () => {
    // https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html (Examples):
    // y_true = [[0, 0, 0], [1, 1, 1], [0, 1, 1]], y_pred = [[0, 0, 0], [1, 1, 1], [1, 1, 0]]
    // f1_score(y_true, y_pred, average=None) → array([0.66666667, 1., 0.66666667])
    const m = multiLabelMetrics(
      fromIndicators([
        [0, 0, 0],
        [1, 1, 1],
        [0, 1, 1],
      ]),
      fromIndicators([
        [0, 0, 0],
        [1, 1, 1],
        [1, 1, 0],
      ]),
      columns(3),
    );
    [2 / 3, 1, 2 / 3].forEach((v, j) => close(m.perLabel[j]?.f1 ?? NaN, v, `f1 label ${j}`));
    // precision_recall_fscore_support(average=None): precision [1/2, 1, 1], recall [1, 1, 1/2], support [1, 2, 2].
    [1 / 2, 1, 1].forEach((v, j) => close(m.perLabel[j]?.precision ?? NaN, v, `precision label ${j}`));
    [1, 1, 1 / 2].forEach((v, j) => close(m.perLabel[j]?.recall ?? NaN, v, `recall label ${j}`));
    assert.deepEqual(
      m.perLabel.map((c) => c.support),
      [1, 2, 2],
    );
    // micro: tp 4, fp 1, fn 1 → 0.8 each; macro f1 = mean(2/3, 1, 2/3) = 7/9; weighted f1 = (2/3 + 2 + 4/3) / 5 = 4/5.
    close(m.micro.f1, 4 / 5, 'micro f1');
    close(m.macro.f1, 7 / 9, 'macro f1');
    close(m.weighted.f1, 4 / 5, 'weighted f1');
    // samples: document 1 has both sets empty → 0 (zero_division=0); document 2 → 1; document 3 → P 1/2, R 1/2.
    close(m.samples.precision, (0 + 1 + 1 / 2) / 3, 'samples precision');
    close(m.samples.f1, (0 + 1 + 1 / 2) / 3, 'samples f1');
    close(m.exactMatch, 2 / 3, 'exact match');
  });
});

describe('set distances and alpha for label sets', () => {
  it("matches NLTK's masi_distance doctest: {1, 2} against {1, 2, 3, 4} is 0.665", () => {
    // nltk/metrics/distance.py, masi_distance docstring.
    close(masiDistance(new Set([1, 2]), new Set([1, 2, 3, 4])), 0.665);
    close(jaccardDistance(new Set([1, 2]), new Set([1, 2, 3, 4])), 0.5);
    close(masiDistance(new Set([1, 2]), new Set([2, 3])), 1 - (1 / 3) * 0.33);
    assert.equal(masiDistance(new Set(), new Set()), 0);
    assert.equal(masiDistance(new Set(), new Set([1])), 1);
    assert.equal(jaccardDistance(new Set(), new Set()), 0);
  });

  it('alpha with set distances equals nominal alpha when every set holds one label', () => {
    const gold = [['a'], ['b'], ['a'], ['c'], ['b'], ['a']];
    const predicted = [['a'], ['a'], ['a'], ['c'], ['b'], ['b']];
    const m = multiLabelMetrics(gold, predicted, ['a', 'b', 'c']);
    const nominal = krippendorffAlphaWithDistance(
      [gold.map((s) => s[0] as string), predicted.map((s) => s[0] as string)],
      (x, y) => (x === y ? 0 : 1),
      (x) => x,
    ).alpha;
    close(m.alphaMasi, nominal, 'masi');
    close(m.alphaJaccard, nominal, 'jaccard');
  });
});

describe('multiLabelMetrics conventions', () => {
  it("computes the paper's any-overlap accuracy: some gold label predicted; an empty gold set is never correct", () => {
    const m = multiLabelMetrics(
      [['a'], ['a', 'b'], ['b'], [], ['c']],
      [['a', 'c'], ['b'], [], [], ['a']],
      ['a', 'b', 'c'],
    );
    close(m.anyOverlapAccuracy, 2 / 5);
    close(m.exactMatch, 1 / 5); // the two empty sets match
    assert.equal(m.emptyGold, 1);
    assert.equal(m.emptyPredicted, 2);
    // Jaccard per document: 1/2, 1/2, 0, 0 (both empty), 0.
    close(m.samples.jaccard, 1 / 5);
  });

  it('rejects a label outside the list, naming the side and the document', () => {
    assert.throws(
      () => multiLabelMetrics([['a']], [['z']], ['a', 'b']),
      (e: unknown) => isRescaleError(e, 'INPUT_INVALID') && /predicted\[0\] holds "z"/.test(e.message),
    );
    assert.throws(
      () => multiLabelMetrics([['a']], [], ['a', 'b']),
      (e: unknown) => isRescaleError(e, 'INPUT_INVALID') && /1 label sets but predicted has 0/.test(e.message),
    );
  });
});

// ---- An independent computation, written differently: indicator matrices, per-cell loops, and alpha by enumerating
// every ordered pair of pairable values (no coincidence matrix).

interface BruteForce {
  readonly hamming: number;
  readonly exact: number;
  readonly anyOverlap: number;
  readonly microF1: number;
  readonly macroF1: number;
  readonly weightedF1: number;
  readonly samplesF1: number;
  readonly samplesJaccard: number;
  readonly macroJaccard: number;
  readonly alphaMasi: number;
  readonly alphaJaccard: number;
}

function bruteForce(gold: number[][], pred: number[][], k: number): BruteForce {
  const n = gold.length;
  let wrong = 0;
  let exact = 0;
  let anyOverlap = 0;
  let samplesF1 = 0;
  let samplesJaccard = 0;
  for (let i = 0; i < n; i++) {
    const g = gold[i] as number[];
    const p = pred[i] as number[];
    let same = true;
    let inter = 0;
    let uni = 0;
    for (let j = 0; j < k; j++) {
      if ((g[j] === 1) !== (p[j] === 1)) {
        wrong++;
        same = false;
      }
      if (g[j] === 1 && p[j] === 1) inter++;
      if (g[j] === 1 || p[j] === 1) uni++;
    }
    if (same) exact++;
    if (inter > 0) anyOverlap++;
    const gs = g.filter((v) => v === 1).length;
    const ps = p.filter((v) => v === 1).length;
    samplesF1 += gs + ps === 0 ? 0 : (2 * inter) / (gs + ps);
    samplesJaccard += uni === 0 ? 0 : inter / uni;
  }
  const f1s: number[] = [];
  const jaccards: number[] = [];
  const supports: number[] = [];
  let tpAll = 0;
  let fpAll = 0;
  let fnAll = 0;
  for (let j = 0; j < k; j++) {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    for (let i = 0; i < n; i++) {
      const gv = (gold[i] as number[])[j] === 1;
      const pv = (pred[i] as number[])[j] === 1;
      if (gv && pv) tp++;
      else if (pv) fp++;
      else if (gv) fn++;
    }
    const precision = tp + fp === 0 ? 0 : tp / (tp + fp);
    const recall = tp + fn === 0 ? 0 : tp / (tp + fn);
    f1s.push(precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall));
    jaccards.push(tp + fp + fn === 0 ? 0 : tp / (tp + fp + fn));
    supports.push(tp + fn);
    tpAll += tp;
    fpAll += fp;
    fnAll += fn;
  }
  const microP = tpAll / (tpAll + fpAll);
  const microR = tpAll / (tpAll + fnAll);
  const totalSupport = supports.reduce((a, b) => a + b, 0);
  const toSet = (row: number[]): Set<number> => new Set(row.flatMap((v, j) => (v === 1 ? [j] : [])));
  const values = [...gold.map(toSet), ...pred.map(toSet)];
  const alpha = (distance: (a: Set<number>, b: Set<number>) => number): number => {
    // D_o: within each document, the two ordered pairs (gold, pred) and (pred, gold), each weighted 1/(m − 1) = 1.
    let observed = 0;
    for (let i = 0; i < n; i++) observed += 2 * distance(values[i] as Set<number>, values[n + i] as Set<number>);
    observed /= 2 * n;
    let expected = 0;
    for (let a = 0; a < 2 * n; a++) {
      for (let b = 0; b < 2 * n; b++)
        if (a !== b) expected += distance(values[a] as Set<number>, values[b] as Set<number>);
    }
    expected /= 2 * n * (2 * n - 1);
    return 1 - observed / expected;
  };
  return {
    hamming: wrong / (n * k),
    exact: exact / n,
    anyOverlap: anyOverlap / n,
    microF1: (2 * microP * microR) / (microP + microR),
    macroF1: f1s.reduce((a, b) => a + b, 0) / k,
    weightedF1: f1s.reduce((s, f, j) => s + f * (supports[j] as number), 0) / totalSupport,
    samplesF1: samplesF1 / n,
    samplesJaccard: samplesJaccard / n,
    macroJaccard: jaccards.reduce((a, b) => a + b, 0) / k,
    alphaMasi: alpha((a, b) => masiReference(a, b)),
    alphaJaccard: alpha((a, b) => {
      const inter = [...a].filter((x) => b.has(x)).length;
      const uni = new Set([...a, ...b]).size;
      return uni === 0 ? 0 : 1 - inter / uni;
    }),
  };
}

/** NLTK's masi_distance, transcribed case by case. */
function masiReference(a: Set<number>, b: Set<number>): number {
  const inter = [...a].filter((x) => b.has(x)).length;
  const uni = new Set([...a, ...b]).size;
  if (uni === 0) return 0;
  let m = 0;
  if (a.size === b.size && a.size === inter) m = 1;
  else if (inter === Math.min(a.size, b.size)) m = 0.67;
  else if (inter > 0) m = 0.33;
  return 1 - (inter / uni) * m;
}

describe('multiLabelMetrics against a brute-force computation', () => {
  it('agrees to 1e-9 on 20 random data sets (up to 60 documents, 2–7 labels, empty sets included)', () => {
    const random = createSeededRandom(20261204);
    for (let trial = 0; trial < 20; trial++) {
      const k = 2 + random.nextInt(6);
      const n = 5 + random.nextInt(56);
      const row = (density: number): number[] =>
        Array.from({ length: k }, () => (random.nextFloat() < density ? 1 : 0));
      const gold = Array.from({ length: n }, () => row(0.35));
      // Predictions copy gold with noise, so agreement is neither 0 nor 1.
      const pred = gold.map((g) => g.map((v) => (random.nextFloat() < 0.2 ? 1 - v : v)));
      const labels = columns(k);
      const m: MultiLabelMetrics = multiLabelMetrics(fromIndicators(gold), fromIndicators(pred), labels);
      const b = bruteForce(gold, pred, k);
      const at = `trial ${trial}`;
      close(m.hammingLoss, b.hamming, `${at} hamming`);
      close(m.exactMatch, b.exact, `${at} exact`);
      close(m.anyOverlapAccuracy, b.anyOverlap, `${at} any-overlap`);
      close(m.micro.f1, b.microF1, `${at} micro f1`);
      close(m.macro.f1, b.macroF1, `${at} macro f1`);
      close(m.weighted.f1, b.weightedF1, `${at} weighted f1`);
      close(m.samples.f1, b.samplesF1, `${at} samples f1`);
      close(m.samples.jaccard, b.samplesJaccard, `${at} samples jaccard`);
      close(m.macro.jaccard, b.macroJaccard, `${at} macro jaccard`);
      close(m.alphaMasi, b.alphaMasi, `${at} alpha masi`);
      close(m.alphaJaccard, b.alphaJaccard, `${at} alpha jaccard`);
    }
  });
});
