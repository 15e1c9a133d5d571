// Presence and intensity agreement for ordered questions whose lowest level means "absent" (e.g. absent < low <
// medium < high), as the paper's flourishing evaluation (flourishing/verify-test.R) computes them: every document ×
// dimension cell is compared, absent cells included.

import { RescaleError } from '../../contracts/errors.js';

export interface PresenceLevelAgreement {
  /** Document × dimension cells compared. */
  readonly cells: number;
  /** verify-test.R's accD: share of cells where present/absent agrees. */
  readonly dimensionAccuracy: number;
  /**
   * verify-test.R's accI: share of cells whose level agrees over {absent, low, medium, high} (absent cells count).
   * For one question this is plain accuracy.
   */
  readonly intensityAccuracy: number;
  /** Share of the cells present on both sides whose level agrees; NaN when no cell is present on both sides. */
  readonly intensityGivenPresent: number;
  /** verify-test.R's FN: share of cells present in gold and absent in the prediction. */
  readonly falseNegativeRate: number;
  /** verify-test.R's FP: share of cells absent in gold and present in the prediction. */
  readonly falsePositiveRate: number;
}

/**
 * Presence and level agreement over cells given as level codes (positions in the level order); `absent` is the code
 * that means not present. `cells` picks the cells (repeats allowed; default all).
 */
export function presenceLevelAgreement(
  gold: ArrayLike<number>,
  predicted: ArrayLike<number>,
  absent: number,
  cells?: readonly number[],
): PresenceLevelAgreement {
  const count = cells?.length ?? gold.length;
  let presenceAgrees = 0;
  let levelAgrees = 0;
  let bothPresent = 0;
  let bothPresentAgree = 0;
  let falseNegative = 0;
  let falsePositive = 0;
  for (let c = 0; c < count; c++) {
    const i = cells === undefined ? c : (cells[c] as number);
    const g = gold[i] as number;
    const p = predicted[i] as number;
    const gPresent = g !== absent;
    const pPresent = p !== absent;
    if (gPresent === pPresent) presenceAgrees++;
    if (g === p) levelAgrees++;
    if (gPresent && pPresent) {
      bothPresent++;
      if (g === p) bothPresentAgree++;
    }
    if (gPresent && !pPresent) falseNegative++;
    if (!gPresent && pPresent) falsePositive++;
  }
  return {
    cells: count,
    dimensionAccuracy: presenceAgrees / count,
    intensityAccuracy: levelAgrees / count,
    intensityGivenPresent: bothPresent === 0 ? Number.NaN : bothPresentAgree / bothPresent,
    falseNegativeRate: falseNegative / count,
    falsePositiveRate: falsePositive / count,
  };
}

/** One document's coding: dimension → level; a dimension not in the map is absent. */
export type DimensionLevels = ReadonlyMap<string, string>;

export interface DimensionLevelAgreement extends PresenceLevelAgreement {
  readonly documents: number;
  /**
   * verify-test.R's jac: mean per document of |G∩P| / |G∪P| over the present dimensions. A document with no
   * dimension present on either side counts 0 (scikit-learn's zero_division=0; R's mean would be NaN).
   */
  readonly jaccard: number;
  /**
   * verify-test.R's jac2, reproduced exactly: per document, cells whose presence agrees over the distinct row
   * labels of its expansion, which holds one extra "not present" label whenever any cell disagrees, i.e.
   * (D − e) / (D + [e > 0]) for D dimensions and e presence errors.
   */
  readonly jaccardWithAbsent: number;
  /** verify-test.R's ham: mean per document of e / D. */
  readonly hammingLoss: number;
}

/**
 * The flourishing figures of verify-test.R for documents coded on `dimensions`, each present dimension with a level
 * from `levels` (e.g. ['low', 'medium', 'high']). Throws INPUT_INVALID naming the document and dimension for an
 * unknown dimension or level.
 */
export function dimensionLevelAgreement(
  gold: readonly DimensionLevels[],
  predicted: readonly DimensionLevels[],
  dimensions: readonly string[],
  levels: readonly string[],
): DimensionLevelAgreement {
  if (gold.length !== predicted.length) {
    throw new RescaleError(
      'INPUT_INVALID',
      `gold has ${gold.length} documents but predicted has ${predicted.length}; pass one coding per document`,
    );
  }
  if (gold.length === 0 || dimensions.length === 0) {
    throw new RescaleError('INPUT_INVALID', 'no documents or no dimensions to compare');
  }
  const dimensionIndex = new Map(dimensions.map((d, i) => [d, i]));
  const levelCode = new Map(levels.map((l, i) => [l, i + 1])); // 0 is absent
  const d = dimensions.length;
  const n = gold.length;
  const encode = (coding: DimensionLevels, side: string, doc: number, out: Int32Array): void => {
    for (const [dimension, level] of coding) {
      const j = dimensionIndex.get(dimension);
      if (j === undefined) {
        throw new RescaleError(
          'INPUT_INVALID',
          `${side}[${doc}] codes the dimension ${JSON.stringify(dimension)}, which is not in the dimension list`,
        );
      }
      const code = levelCode.get(level);
      if (code === undefined) {
        throw new RescaleError(
          'INPUT_INVALID',
          `${side}[${doc}] gives ${JSON.stringify(dimension)} the level ${JSON.stringify(level)}; use one of ` +
            `${levels.map((l) => JSON.stringify(l)).join(', ')} (leave an absent dimension out)`,
        );
      }
      out[doc * d + j] = code;
    }
  };
  const g = new Int32Array(n * d);
  const p = new Int32Array(n * d);
  let jaccard = 0;
  let jaccardWithAbsent = 0;
  let hamming = 0;
  for (let doc = 0; doc < n; doc++) {
    encode(gold[doc] as DimensionLevels, 'gold', doc, g);
    encode(predicted[doc] as DimensionLevels, 'predicted', doc, p);
    let both = 0;
    let either = 0;
    let errors = 0;
    for (let j = doc * d; j < (doc + 1) * d; j++) {
      const gp = g[j] !== 0;
      const pp = p[j] !== 0;
      if (gp && pp) both++;
      if (gp || pp) either++;
      if (gp !== pp) errors++;
    }
    jaccard += either === 0 ? 0 : both / either;
    jaccardWithAbsent += (d - errors) / (d + (errors > 0 ? 1 : 0));
    hamming += errors / d;
  }
  return {
    ...presenceLevelAgreement(g, p, 0),
    documents: n,
    jaccard: jaccard / n,
    jaccardWithAbsent: jaccardWithAbsent / n,
    hammingLoss: hamming / n,
  };
}
