// `rescale evaluate` for a multi-label question: gold label sets (a list column, or a delimited string) against each
// predictions file's `<question>__labels` list column, with every multi-label figure and a seeded bootstrap CI, on
// the documents every file labelled.

import { RescaleError } from '../../contracts/errors.js';
import { bootstrapCis, type BootstrapInterval } from './bootstrap.js';
import { joinCommonDocuments, type GoldLabels, type JoinCoverage, type Predictions } from './labelled-predictions.js';
import { encodeLabelSets, multiLabelMetricsOf, type MultiLabelMetrics } from './multi-label-metrics.js';
import {
  classIntervals,
  evaluationSettings,
  type ClassEvaluation,
  type EvaluationResult,
} from './evaluate-predictions.js';

/** The summary figures, in the order they are printed; keys name them in the JSON. */
export const MULTI_LABEL_SUMMARY: readonly {
  readonly key: string;
  readonly name: string;
  readonly pick: (m: MultiLabelMetrics) => number;
}[] = [
  { key: 'anyOverlapAccuracy', name: 'any-overlap accuracy (paper)', pick: (m) => m.anyOverlapAccuracy },
  { key: 'exactMatch', name: 'exact set match', pick: (m) => m.exactMatch },
  { key: 'jaccardSamples', name: 'Jaccard (mean per document)', pick: (m) => m.samples.jaccard },
  { key: 'hammingLoss', name: 'Hamming loss', pick: (m) => m.hammingLoss },
  { key: 'microPrecision', name: 'micro precision', pick: (m) => m.micro.precision },
  { key: 'microRecall', name: 'micro recall', pick: (m) => m.micro.recall },
  { key: 'microF1', name: 'micro-F1', pick: (m) => m.micro.f1 },
  { key: 'macroPrecision', name: 'macro precision', pick: (m) => m.macro.precision },
  { key: 'macroRecall', name: 'macro recall', pick: (m) => m.macro.recall },
  { key: 'macroF1', name: 'macro-F1', pick: (m) => m.macro.f1 },
  { key: 'weightedF1', name: 'weighted-F1', pick: (m) => m.weighted.f1 },
  { key: 'samplesPrecision', name: 'samples precision', pick: (m) => m.samples.precision },
  { key: 'samplesRecall', name: 'samples recall', pick: (m) => m.samples.recall },
  { key: 'samplesF1', name: 'samples-F1', pick: (m) => m.samples.f1 },
  { key: 'alphaMasi', name: "Krippendorff's alpha (MASI)", pick: (m) => m.alphaMasi },
  { key: 'alphaJaccard', name: "Krippendorff's alpha (Jaccard)", pick: (m) => m.alphaJaccard },
];

export interface MultiLabelEvaluateOptions {
  /** The label list in order (codebook order, --labels, or the sorted labels seen). */
  readonly labels: readonly string[];
  readonly seed: number;
  readonly resamples?: number;
  readonly confidence?: number;
  /** Splits a gold string into labels (e.g. ";"); null when the gold column is a list column. */
  readonly separator?: string | null;
  readonly names?: readonly string[];
}

/** Per-label figures, as for a single-label question's classes. */
export type LabelEvaluation = ClassEvaluation;

export interface MultiLabelSystemEvaluation {
  readonly name: string;
  readonly file: string;
  readonly column: string;
  readonly coverage: JoinCoverage;
  /** One interval per MULTI_LABEL_SUMMARY key. */
  readonly metrics: Readonly<Record<string, BootstrapInterval>>;
  readonly perLabel: readonly LabelEvaluation[];
  readonly emptyGold: number;
  readonly emptyPredicted: number;
}

export interface MultiLabelEvaluationResult {
  readonly kind: 'rescale.multi-label-evaluation';
  readonly version: 1;
  readonly gold: {
    readonly file: string;
    readonly idColumn: string;
    readonly labelColumn: string;
    readonly separator: string | null;
    readonly rows: number;
    readonly unlabelled: number;
  };
  readonly labels: readonly string[];
  readonly documents: number;
  readonly bootstrap: EvaluationResult['bootstrap'];
  readonly systems: readonly MultiLabelSystemEvaluation[];
}

/**
 * One cell of a label-set column as a list of labels: a list value as is, a string split on `separator`; null for a
 * null cell (not coded / not scored). `where` names the file, column and row for errors.
 */
export function labelSetOf(value: unknown, separator: string | null, where: () => string): string[] | null {
  if (value === null || value === undefined) return null;
  const text = (v: unknown): string => (v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : String(v));
  if (Array.isArray(value)) {
    return value.map((item) => {
      if (item === null || item === undefined) {
        throw new RescaleError('INPUT_INVALID', `${where()} holds a list with a null label; remove it or fix the row`);
      }
      return text(item);
    });
  }
  if (typeof value === 'string' || value instanceof Uint8Array) {
    if (separator === null) {
      throw new RescaleError(
        'INPUT_INVALID',
        `${where()} holds the string ${JSON.stringify(text(value).slice(0, 60))}, not a list of labels; pass ` +
          '--truth-separator with the character that separates its labels (e.g. ";"), or store a list column',
      );
    }
    return text(value)
      .split(separator)
      .map((s) => s.trim())
      .filter((s) => s !== '');
  }
  throw new RescaleError('INPUT_INVALID', `${where()} holds a ${typeof value}; label sets are lists of strings`);
}

/** Every gold row's label set (null where not coded). */
export function goldLabelSets(gold: GoldLabels, separator: string | null): (string[] | null)[] {
  return gold.values.map((v, row) =>
    labelSetOf(v, separator, () => `--gold ${gold.file}, column "${gold.labelColumn}", row ${row},`),
  );
}

/** Every prediction row's label set (null where not scored); prediction columns are list columns. */
export function predictedLabelSets(predictions: Predictions): (string[] | null)[] {
  return predictions.values.map((v, row) =>
    labelSetOf(v, null, () => `--predictions ${predictions.file}, column "${predictions.labelColumn}", row ${row},`),
  );
}

/**
 * The label list for multi-label evaluation: `explicit` (--labels or the codebook question) when given, else the
 * sorted labels seen on either side.
 */
export function resolveLabelSetOrder(
  goldSets: readonly (readonly string[] | null)[],
  predictedSets: readonly (readonly (readonly string[] | null)[])[],
  explicit: readonly string[] | undefined,
): string[] {
  if (explicit !== undefined && explicit.length > 0) return [...explicit];
  const seen = new Set<string>();
  for (const set of goldSets) for (const l of set ?? []) seen.add(l);
  for (const sets of predictedSets) for (const set of sets) for (const l of set ?? []) seen.add(l);
  return [...seen].sort();
}

export function evaluateMultiLabel(
  gold: GoldLabels,
  predictions: readonly Predictions[],
  options: MultiLabelEvaluateOptions,
): MultiLabelEvaluationResult {
  const { names, bootstrap } = evaluationSettings(predictions, options);
  const separator = options.separator ?? null;
  const goldSets = goldLabelSets(gold, separator);
  const { joins, common, predictionRow } = joinCommonDocuments(gold, predictions);
  const goldCommon = common.map((g) => goldSets[g] as string[]);
  const units = common.map((_, i) => i);
  const known = new Set(options.labels);
  checkLabels(
    goldCommon,
    known,
    options.labels,
    (i) => `--gold ${gold.file}, column "${gold.labelColumn}", id ${gold.keys[common[i] as number]},`,
  );
  const systems = predictions.map((p, f): MultiLabelSystemEvaluation => {
    const sets = predictedLabelSets(p);
    const predictedCommon = common.map((g) => sets[predictionRow(f, g)] as string[]);
    checkLabels(
      predictedCommon,
      known,
      options.labels,
      (i) => `--predictions ${p.file}, column "${p.labelColumn}", id ${gold.keys[common[i] as number]},`,
    );
    const encoded = encodeLabelSets(goldCommon, predictedCommon, options.labels);
    const metricsOf = (sample: readonly number[]): number[] => {
      const m = multiLabelMetricsOf(encoded, sample);
      const values = MULTI_LABEL_SUMMARY.map((s) => s.pick(m));
      for (const c of m.perLabel) values.push(c.precision, c.recall, c.f1);
      return values;
    };
    const intervals = bootstrapCis(units, metricsOf, bootstrap);
    const at = (i: number): BootstrapInterval => intervals[i] as BootstrapInterval;
    const point = multiLabelMetricsOf(encoded);
    return {
      name: names[f] as string,
      file: p.file,
      column: p.labelColumn,
      coverage: (joins[f] as (typeof joins)[number]).coverage,
      metrics: Object.fromEntries(MULTI_LABEL_SUMMARY.map((s, i) => [s.key, at(i)])),
      perLabel: classIntervals(point.perLabel, intervals, MULTI_LABEL_SUMMARY.length),
      emptyGold: point.emptyGold,
      emptyPredicted: point.emptyPredicted,
    };
  });
  return {
    kind: 'rescale.multi-label-evaluation',
    version: 1,
    gold: {
      file: gold.file,
      idColumn: gold.idColumn,
      labelColumn: gold.labelColumn,
      separator,
      rows: gold.rows,
      unlabelled: gold.unlabelled,
    },
    labels: [...options.labels],
    documents: common.length,
    bootstrap: { ...bootstrap, method: 'percentile' },
    systems,
  };
}

/** Throws INPUT_INVALID naming the file, column, document id and label when a label is not in the list. */
function checkLabels(
  sets: readonly (readonly string[])[],
  known: ReadonlySet<string>,
  labels: readonly string[],
  where: (i: number) => string,
): void {
  sets.forEach((set, i) => {
    const unknown = set.find((l) => !known.has(l));
    if (unknown !== undefined) {
      throw new RescaleError(
        'INPUT_INVALID',
        `${where(i)} holds the label ${JSON.stringify(unknown)}, which is not in the label list (` +
          `${labels.map((l) => JSON.stringify(l)).join(', ')}); map it to a codebook label or pass --labels`,
      );
    }
  });
}
