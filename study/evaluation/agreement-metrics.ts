// Agreement between gold (human) labels and predicted labels: accuracy, precision/recall/F1, confusion matrix and
// Cohen's kappa. Zero-division conventions follow scikit-learn (zero_division=0) so every number can be re-checked
// there.

import { RescaleError } from '../../contracts/errors.js';

export type KappaWeights = 'none' | 'linear' | 'quadratic';

/**
 * Which classes macro averages run over.
 * - `present` (default): labels that occur in gold or predicted, as scikit-learn does when `labels` is not given.
 * - `all`: every label in the label list; a label absent from both sides then counts as F1 = 0.
 */
export type AverageOver = 'present' | 'all';

export interface ConfusionMatrix {
  readonly labels: readonly string[];
  /** counts[i][j]: units whose gold label is labels[i] and whose predicted label is labels[j]. */
  readonly counts: readonly (readonly number[])[];
  readonly total: number;
}

export interface ClassMetrics {
  readonly label: string;
  /** 0 when the class is never predicted (0/0), the scikit-learn zero_division=0 convention; check `predicted`. */
  readonly precision: number;
  /** 0 when the class never occurs in gold (0/0); check `support`. */
  readonly recall: number;
  /** Harmonic mean of precision and recall; 0 when both are 0. */
  readonly f1: number;
  /** Gold count of the class. */
  readonly support: number;
  /** Predicted count of the class. */
  readonly predicted: number;
}

export interface AgreementMetrics {
  readonly n: number;
  readonly labels: readonly string[];
  /** Share of units where predicted equals gold (equal to micro-averaged F1 for single-label data). */
  readonly accuracy: number;
  readonly macroPrecision: number;
  readonly macroRecall: number;
  readonly macroF1: number;
  /** Averages weighted by gold support (scikit-learn `average='weighted'`). */
  readonly weightedPrecision: number;
  readonly weightedRecall: number;
  readonly weightedF1: number;
  /** Labels the macro averages ran over (see AverageOver). */
  readonly averagedLabels: readonly string[];
  readonly perClass: readonly ClassMetrics[];
  readonly confusion: ConfusionMatrix;
  /** Unweighted Cohen's kappa; NaN when undefined (both sides use one and the same single label, p_e = 1). */
  readonly cohenKappa: number;
}

export interface AgreementMetricsOptions {
  readonly averageOver?: AverageOver;
}

function describeLabels(labels: readonly string[]): string {
  const shown = labels.slice(0, 20).map((l) => JSON.stringify(l));
  return labels.length > 20 ? `${shown.join(', ')}, … (${labels.length} in all)` : shown.join(', ');
}

/** Label → position, after checking the label list itself (CONFIG_INVALID: it comes from the codebook or options). */
export function labelIndex(labels: readonly string[]): Map<string, number> {
  if (labels.length === 0) {
    throw new RescaleError('CONFIG_INVALID', 'the label list is empty; pass the codebook labels in their order');
  }
  const index = new Map<string, number>();
  labels.forEach((label, i) => {
    if (typeof label !== 'string') {
      throw new RescaleError('CONFIG_INVALID', `label list entry ${i} is not a string (got ${String(label)})`);
    }
    if (index.has(label)) {
      throw new RescaleError(
        'CONFIG_INVALID',
        `the label list names ${JSON.stringify(label)} twice; each label must appear once`,
      );
    }
    index.set(label, i);
  });
  return index;
}

function encode(
  values: readonly string[],
  index: Map<string, number>,
  labels: readonly string[],
  side: string,
): Int32Array {
  const out = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    const position = value === undefined ? undefined : index.get(value);
    if (position === undefined) {
      throw new RescaleError(
        'INPUT_INVALID',
        `${side}[${i}] is ${JSON.stringify(value ?? null)}, which is not in the label list (` +
          `${describeLabels(labels)}); ` +
          'fix the value or add the label to the codebook',
      );
    }
    out[i] = position;
  }
  return out;
}

/** Rows are gold, columns predicted, both in label-list order. */
export function confusionMatrix(
  gold: readonly string[],
  predicted: readonly string[],
  labels: readonly string[],
): ConfusionMatrix {
  const index = labelIndex(labels);
  if (gold.length !== predicted.length) {
    throw new RescaleError(
      'INPUT_INVALID',
      `gold has ${gold.length} labels but predicted has ${predicted.length}; pass one predicted label per ` +
        `gold-labelled unit, in the same order`,
    );
  }
  if (gold.length === 0) {
    throw new RescaleError(
      'INPUT_INVALID',
      'gold and predicted are empty; agreement metrics need at least one labelled unit',
    );
  }
  const g = encode(gold, index, labels, 'gold');
  const p = encode(predicted, index, labels, 'predicted');
  const k = labels.length;
  const counts = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (let i = 0; i < g.length; i++) {
    const row = counts[g[i] as number] as number[];
    row[p[i] as number] = (row[p[i] as number] as number) + 1;
  }
  return { labels: labels.slice(), counts, total: gold.length };
}

function cell(matrix: ConfusionMatrix, i: number, j: number): number {
  return (matrix.counts[i] as readonly number[])[j] as number;
}

function marginals(matrix: ConfusionMatrix): { rows: number[]; cols: number[] } {
  const k = matrix.labels.length;
  const rows = new Array<number>(k).fill(0);
  const cols = new Array<number>(k).fill(0);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const c = cell(matrix, i, j);
      rows[i] = (rows[i] as number) + c;
      cols[j] = (cols[j] as number) + c;
    }
  }
  return { rows, cols };
}

function assertMatrix(matrix: ConfusionMatrix): void {
  const k = matrix.labels.length;
  let total = 0;
  if (matrix.counts.length !== k || matrix.counts.some((row) => row.length !== k)) {
    throw new RescaleError('INPUT_INVALID', `confusion matrix must be ${k} × ${k} to match its ${k} labels`);
  }
  for (const row of matrix.counts) {
    for (const c of row) {
      if (!Number.isFinite(c) || c < 0) {
        throw new RescaleError(
          'INPUT_INVALID',
          `confusion matrix holds ${String(c)}; counts must be finite and non-negative`,
        );
      }
      total += c;
    }
  }
  if (total <= 0)
    throw new RescaleError('INPUT_INVALID', 'confusion matrix is all zeros; metrics need at least one unit');
}

/**
 * Cohen's kappa from a confusion matrix: 1 − Σ w·O / Σ w·E with E the product of the marginals.
 * Unweighted uses w = 1 off the diagonal; linear |i−j|, quadratic (i−j)², i and j being positions in the label list,
 * so weighted kappa assumes the labels are listed in their natural order. NaN when undefined (Σ w·E = 0).
 */
export function kappaFromConfusion(matrix: ConfusionMatrix, weights: KappaWeights = 'none'): number {
  assertMatrix(matrix);
  const k = matrix.labels.length;
  const { rows, cols } = marginals(matrix);
  const n = rows.reduce((a, b) => a + b, 0);
  let observed = 0;
  let expected = 0;
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const d = Math.abs(i - j);
      const w = weights === 'none' ? (d === 0 ? 0 : 1) : weights === 'linear' ? d : d * d;
      if (w === 0) continue;
      observed += w * cell(matrix, i, j);
      expected += (w * (rows[i] as number) * (cols[j] as number)) / n;
    }
  }
  if (expected === 0) return Number.NaN;
  return 1 - observed / expected;
}

export function cohenKappa(
  gold: readonly string[],
  predicted: readonly string[],
  labels: readonly string[],
  options: { readonly weights?: KappaWeights } = {},
): number {
  return kappaFromConfusion(confusionMatrix(gold, predicted, labels), options.weights ?? 'none');
}

export function metricsFromConfusion(matrix: ConfusionMatrix, options: AgreementMetricsOptions = {}): AgreementMetrics {
  assertMatrix(matrix);
  const averageOver = options.averageOver ?? 'present';
  if (averageOver !== 'present' && averageOver !== 'all') {
    throw new RescaleError(
      'CONFIG_INVALID',
      `averageOver must be "present" or "all" (got ${JSON.stringify(averageOver)})`,
    );
  }
  const k = matrix.labels.length;
  const { rows, cols } = marginals(matrix);
  const n = rows.reduce((a, b) => a + b, 0);
  let correct = 0;
  const perClass: ClassMetrics[] = [];
  for (let i = 0; i < k; i++) {
    const tp = cell(matrix, i, i);
    correct += tp;
    const support = rows[i] as number;
    const predictedCount = cols[i] as number;
    const precision = predictedCount === 0 ? 0 : tp / predictedCount;
    const recall = support === 0 ? 0 : tp / support;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    perClass.push({ label: matrix.labels[i] as string, precision, recall, f1, support, predicted: predictedCount });
  }
  const averaged = perClass.filter((c) => averageOver === 'all' || c.support > 0 || c.predicted > 0);
  const mean = (pick: (c: ClassMetrics) => number): number =>
    averaged.reduce((sum, c) => sum + pick(c), 0) / averaged.length;
  const weighted = (pick: (c: ClassMetrics) => number): number =>
    perClass.reduce((sum, c) => sum + pick(c) * c.support, 0) / n;
  return {
    n,
    labels: matrix.labels.slice(),
    accuracy: correct / n,
    macroPrecision: mean((c) => c.precision),
    macroRecall: mean((c) => c.recall),
    macroF1: mean((c) => c.f1),
    weightedPrecision: weighted((c) => c.precision),
    weightedRecall: weighted((c) => c.recall),
    weightedF1: weighted((c) => c.f1),
    averagedLabels: averaged.map((c) => c.label),
    perClass,
    confusion: matrix,
    cohenKappa: kappaFromConfusion(matrix, 'none'),
  };
}

/**
 * Every agreement figure for paired gold and predicted labels. Throws INPUT_INVALID on empty input, unequal lengths,
 * or a label outside the list (naming it); CONFIG_INVALID on an empty or duplicated label list.
 * A single-label list is allowed: accuracy and F1 are then 1 and kappa NaN (agreement beyond chance is undefined).
 */
export function agreementMetrics(
  gold: readonly string[],
  predicted: readonly string[],
  labels: readonly string[],
  options: AgreementMetricsOptions = {},
): AgreementMetrics {
  return metricsFromConfusion(confusionMatrix(gold, predicted, labels), options);
}
