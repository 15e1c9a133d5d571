// Presence/intensity agreement (the paper's flourishing figures): a hand-worked example, and on random data a
// literal transcription of flourishing/verify-test.R's row expansion (true/llm rows with "not present" and
// "not:<dimension>" labels) to 1e-9.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isRescaleError } from '../../../contracts/errors.js';
import {
  dimensionLevelAgreement,
  presenceLevelAgreement,
  type DimensionLevels,
} from '../../../study/evaluation/ordinal-metrics.js';
import { createSeededRandom } from '../../../study/evaluation/seeded-random.js';

const TOL = 1e-9;
const close = (actual: number, expected: number, what = ''): void =>
  assert.ok(Math.abs(actual - expected) <= TOL, `${what}: expected ${expected}, got ${actual}`);

const LEVELS = ['low', 'medium', 'high'];

describe('presenceLevelAgreement', () => {
  it('scores one ordered question with absent as the lowest label', () => {
    // Codes: 0 absent, 1 low, 2 medium, 3 high.
    const gold = [0, 1, 2, 3, 0, 3];
    const pred = [0, 2, 2, 0, 1, 3];
    const r = presenceLevelAgreement(gold, pred, 0);
    close(r.dimensionAccuracy, 4 / 6, 'presence'); // cells 0, 1, 2, 5
    close(r.intensityAccuracy, 3 / 6, 'level'); // cells 0, 2, 5
    close(r.intensityGivenPresent, 2 / 3, 'given present'); // cells 1, 2, 5 present on both sides
    close(r.falseNegativeRate, 1 / 6, 'FN'); // cell 3
    close(r.falsePositiveRate, 1 / 6, 'FP'); // cell 4
    assert.ok(Number.isNaN(presenceLevelAgreement([0, 0], [0, 1], 0).intensityGivenPresent));
  });
});

describe('dimensionLevelAgreement', () => {
  it('reproduces a hand-worked three-dimension example, including the jac2 "not present" term', () => {
    const dims = ['hope', 'trust', 'pain'];
    const gold: DimensionLevels[] = [new Map([['hope', 'high']]), new Map([['trust', 'low']]), new Map()];
    const pred: DimensionLevels[] = [
      new Map([
        ['hope', 'medium'],
        ['pain', 'low'],
      ]),
      new Map([['trust', 'low']]),
      new Map(),
    ];
    const r = dimensionLevelAgreement(gold, pred, dims, LEVELS);
    assert.equal(r.cells, 9);
    close(r.dimensionAccuracy, 8 / 9, 'accD'); // only doc 0's pain disagrees on presence
    close(r.intensityAccuracy, 7 / 9, 'accI'); // doc 0's hope level and pain presence
    close(r.falsePositiveRate, 1 / 9, 'FP');
    close(r.falseNegativeRate, 0, 'FN');
    // jac: doc 0 {hope} vs {hope, pain} = 1/2; doc 1 = 1; doc 2 both empty = 0.
    close(r.jaccard, (1 / 2 + 1 + 0) / 3, 'jac');
    // jac2: doc 0 has one error → (3 − 1)/(3 + 1); docs 1 and 2 → 3/3.
    close(r.jaccardWithAbsent, (2 / 4 + 1 + 1) / 3, 'jac2');
    close(r.hammingLoss, (1 / 3 + 0 + 0) / 3, 'ham');
  });

  it('names the document, dimension and level at fault', () => {
    assert.throws(
      () => dimensionLevelAgreement([new Map([['hope', 'huge']])], [new Map()], ['hope'], LEVELS),
      (e: unknown) => isRescaleError(e, 'INPUT_INVALID') && /gold\[0\] gives "hope" the level "huge"/.test(e.message),
    );
    assert.throws(
      () => dimensionLevelAgreement([new Map()], [new Map([['fear', 'low']])], ['hope'], LEVELS),
      (e: unknown) => isRescaleError(e, 'INPUT_INVALID') && /predicted\[0\] codes the dimension "fear"/.test(e.message),
    );
  });

  it('agrees to 1e-9 with a literal transcription of verify-test.R on random codings', () => {
    const random = createSeededRandom(46);
    for (let trial = 0; trial < 10; trial++) {
      const dims = Array.from({ length: 3 + random.nextInt(10) }, (_, j) => `dimension ${j}`);
      const n = 3 + random.nextInt(30);
      const coding = (density: number): Map<string, string> =>
        new Map(dims.filter(() => random.nextFloat() < density).map((d) => [d, LEVELS[random.nextInt(3)] as string]));
      const gold = Array.from({ length: n }, () => coding(0.3));
      const pred = gold.map((g) => {
        const p = new Map(g);
        for (const d of dims) {
          if (random.nextFloat() < 0.15) {
            if (p.has(d)) p.delete(d);
            else p.set(d, LEVELS[random.nextInt(3)] as string);
          } else if (p.has(d) && random.nextFloat() < 0.2) p.set(d, LEVELS[random.nextInt(3)] as string);
        }
        return p;
      });
      const r = dimensionLevelAgreement(gold, pred, dims, LEVELS);
      const e = verifyTestR(gold, pred, dims);
      close(r.dimensionAccuracy, e.accD, `trial ${trial} accD`);
      close(r.intensityAccuracy, e.accI, `trial ${trial} accI`);
      close(r.falseNegativeRate, e.FN, `trial ${trial} FN`);
      close(r.falsePositiveRate, e.FP, `trial ${trial} FP`);
      close(r.jaccardWithAbsent, e.jac2, `trial ${trial} jac2`);
      close(r.hammingLoss, e.ham, `trial ${trial} ham`);
      // R's jac is NaN for a document with nothing present on either side; compare where it is defined.
      if (!Number.isNaN(e.jac)) close(r.jaccard, e.jac, `trial ${trial} jac`);
    }
  });
});

/** verify-test.R's per-document expansion into (true, llm) rows, kept as close to the R as TypeScript allows. */
function verifyTestR(
  gold: readonly Map<string, string>[],
  pred: readonly Map<string, string>[],
  categories: readonly string[],
): { accD: number; accI: number; FN: number; FP: number; jac: number; jac2: number; ham: number } {
  const tmp: [string, string][] = []; // values
  const tmpD: [string, string][] = []; // dimensions
  const jac: number[] = [];
  const jac2: number[] = [];
  const ham: number[] = [];
  gold.forEach((g, i) => {
    const p = pred[i] as Map<string, string>;
    const trueDim = [...g.keys()];
    const llmDim = [...p.keys()];
    const union = new Set([...trueDim, ...llmDim]);
    jac.push(trueDim.filter((d) => llmDim.includes(d)).length / union.size);
    const tmpD2: [string, string][] = [];
    const trueNegatives = categories.filter((c) => !llmDim.includes(c) && !trueDim.includes(c));
    for (const d of trueNegatives) {
      tmp.push(['not present', 'not present']);
      tmpD.push([`not:${d}`, `not:${d}`]);
      tmpD2.push([`not:${d}`, `not:${d}`]);
    }
    for (const d of trueDim.filter((x) => llmDim.includes(x))) {
      tmp.push([g.get(d) as string, p.get(d) as string]);
      tmpD.push([d, d]);
      tmpD2.push([d, d]);
    }
    for (const d of trueDim.filter((x) => !llmDim.includes(x))) {
      tmp.push([g.get(d) as string, 'not present']);
      tmpD.push([d, 'not present']);
      tmpD2.push([d, 'not present']);
    }
    for (const d of llmDim.filter((x) => !trueDim.includes(x))) {
      tmp.push(['not present', p.get(d) as string]);
      tmpD.push(['not present', d]);
      tmpD2.push(['not present', d]);
    }
    ham.push(tmpD2.filter(([a, b]) => a !== b).length / categories.length);
    const labels = new Set(tmpD2.flat());
    jac2.push(tmpD2.filter(([a, b]) => a === b).length / labels.size);
    assert.equal(tmpD2.length, categories.length);
  });
  const n = tmpD.length;
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    accD: tmpD.filter(([a, b]) => a === b).length / n,
    accI: tmp.filter(([a, b]) => a === b).length / tmp.length,
    FN: tmpD.filter(([a, b]) => categories.includes(a) && b === 'not present').length / n,
    FP: tmpD.filter(([a, b]) => a === 'not present' && categories.includes(b)).length / n,
    jac: mean(jac),
    jac2: mean(jac2),
    ham: mean(ham),
  };
}
