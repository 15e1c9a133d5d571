// `rescale evaluate`: agreement of one or more prediction files with gold labels — accuracy, F1, kappa and
// Krippendorff's alpha, each with a seeded bootstrap CI — on the documents every file labelled, so files compare
// fairly.

import path from 'node:path';
import { RescaleError } from '../../contracts/errors.js';
import { metricsFromConfusion, kappaFromConfusion, type ConfusionMatrix } from './agreement-metrics.js';
import { bootstrapCis, DEFAULT_BOOTSTRAP_RESAMPLES, DEFAULT_CONFIDENCE, type BootstrapInterval } from './bootstrap.js';
import { alphaFromCoincidences } from './krippendorff-alpha.js';
import { presenceLevelAgreement } from './ordinal-metrics.js';
import { assertSeed } from './seeded-random.js';
import {
  joinCommonDocuments,
  type GoldLabels,
  type JoinCoverage,
  type JoinedPredictions,
  type Predictions,
} from './labelled-predictions.js';

export interface EvaluateOptions {
  /** The label list in order (resolveLabelOrder); ordinal alpha and weighted kappa follow this order. */
  readonly labels: readonly string[];
  readonly seed: number;
  readonly resamples?: number;
  readonly confidence?: number;
  /**
   * Labels are ordered (e.g. negative < neutral < positive): add ordinal and interval alpha (interval on the label
   * positions 0, 1, 2, ...) and quadratic-weighted kappa.
   */
  readonly ordered?: boolean;
  /**
   * For ordered labels whose lowest level means "not present" (e.g. absent < low < medium < high): that label. Adds
   * the paper's dimension accuracy (present/absent right) and the level accuracy where both sides say present.
   */
  readonly absentLabel?: string;
  /** Display name per predictions file (default: the file name). */
  readonly names?: readonly string[];
  /** Training-set size per predictions file, for a learning curve. */
  readonly trainingSizes?: readonly number[];
}

export interface ClassEvaluation {
  readonly label: string;
  readonly support: number;
  readonly predicted: number;
  readonly precision: BootstrapInterval;
  readonly recall: BootstrapInterval;
  readonly f1: BootstrapInterval;
}

export interface SystemEvaluation {
  readonly name: string;
  readonly file: string;
  readonly trainingSize: number | null;
  readonly coverage: JoinCoverage;
  readonly accuracy: BootstrapInterval;
  readonly macroF1: BootstrapInterval;
  readonly weightedF1: BootstrapInterval;
  readonly cohenKappa: BootstrapInterval;
  readonly alphaNominal: BootstrapInterval;
  /** Only for ordered labels. */
  readonly alphaOrdinal: BootstrapInterval | null;
  readonly kappaQuadratic: BootstrapInterval | null;
  /** Only for ordered labels: interval alpha on the label positions. */
  readonly alphaInterval?: BootstrapInterval | null;
  /** Only with an absent label: share of documents where present/absent agrees (flourishing's accD). */
  readonly dimensionAccuracy?: BootstrapInterval | null;
  /** Only with an absent label: level accuracy among documents present on both sides. */
  readonly intensityGivenPresent?: BootstrapInterval | null;
  readonly perClass: readonly ClassEvaluation[];
  readonly confusion: ConfusionMatrix;
}

export interface PairedDifference {
  readonly system: string;
  readonly baseline: string;
  /** system − baseline on the same resamples (a paired bootstrap). */
  readonly accuracy: BootstrapInterval;
  readonly macroF1: BootstrapInterval;
}

export interface EvaluationResult {
  readonly kind: 'rescale.evaluation';
  readonly version: 1;
  readonly gold: {
    readonly file: string;
    readonly idColumn: string;
    readonly labelColumn: string;
    readonly rows: number;
    readonly unlabelled: number;
  };
  readonly labels: readonly string[];
  readonly ordered: boolean;
  /** Documents every predictions file labelled and the gold file labels: where every metric is computed. */
  readonly documents: number;
  readonly bootstrap: {
    readonly seed: number;
    readonly resamples: number;
    readonly confidence: number;
    readonly method: 'percentile';
  };
  readonly systems: readonly SystemEvaluation[];
  /** Each later file against the first. */
  readonly differences: readonly PairedDifference[];
}

/**
 * What every evaluation checks and settles first: at least one predictions file, a valid seed, one display name per
 * file (default: the file name), and the bootstrap settings.
 */
export function evaluationSettings(
  predictions: readonly Predictions[],
  options: {
    readonly seed: number;
    readonly resamples?: number;
    readonly confidence?: number;
    readonly names?: readonly string[];
  },
): { names: string[]; bootstrap: { seed: number; resamples: number; confidence: number } } {
  if (predictions.length === 0)
    throw new RescaleError('CONFIG_INVALID', 'no predictions file given; pass --predictions results.parquet');
  assertSeed(options.seed, '--seed');
  if (options.names !== undefined && options.names.length !== predictions.length) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `--names gives ${options.names.length} names for ${predictions.length} predictions files; give one per ` +
        `--predictions`,
    );
  }
  return {
    names: predictions.map((p, i) => options.names?.[i] ?? path.basename(p.file)),
    bootstrap: {
      seed: options.seed,
      resamples: options.resamples ?? DEFAULT_BOOTSTRAP_RESAMPLES,
      confidence: options.confidence ?? DEFAULT_CONFIDENCE,
    },
  };
}

/**
 * Per-class figures with the intervals a metrics function produced as precision, recall, F1 for each class in turn,
 * from position `base` on.
 */
export function classIntervals(
  classes: readonly { readonly label: string; readonly support: number; readonly predicted: number }[],
  intervals: readonly BootstrapInterval[],
  base: number,
): ClassEvaluation[] {
  const at = (i: number): BootstrapInterval => intervals[i] as BootstrapInterval;
  return classes.map((c, i) => ({
    label: c.label,
    support: c.support,
    predicted: c.predicted,
    precision: at(base + 3 * i),
    recall: at(base + 3 * i + 1),
    f1: at(base + 3 * i + 2),
  }));
}

/**
 * Evaluates each predictions file against the gold labels. Metrics are computed on the documents every file
 * labelled (per-file coverage says what each left out), and all intervals of a file come from the same resamples.
 */
export function evaluatePredictions(
  gold: GoldLabels,
  predictions: readonly Predictions[],
  options: EvaluateOptions,
): EvaluationResult {
  const { names, bootstrap } = evaluationSettings(predictions, options);
  const labels = options.labels;
  const k = labels.length;
  const ordered = options.ordered ?? false;
  if (options.trainingSizes !== undefined && options.trainingSizes.length !== predictions.length) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `--training-sizes gives ${options.trainingSizes.length} sizes for ${predictions.length} predictions files; ` +
        `give one per --predictions`,
    );
  }
  const code = new Map(labels.map((l, i) => [l, i]));
  const { joins, common, predictionRow } = joinCommonDocuments(gold, predictions);
  const n = common.length;
  const goldCodes = Int32Array.from(common, (g) => code.get(gold.labels[g] as string) as number);
  const predictedCodes = predictions.map((p, f) =>
    Int32Array.from(common, (g) => code.get(p.labels[predictionRow(f, g)] as string) as number),
  );
  const units = Array.from({ length: n }, (_, i) => i);

  const confusionOf = (sample: readonly number[], predicted: Int32Array): ConfusionMatrix => {
    const counts = Array.from({ length: k }, () => new Array<number>(k).fill(0));
    for (const u of sample) {
      const row = counts[goldCodes[u] as number] as number[];
      const p = predicted[u] as number;
      row[p] = (row[p] as number) + 1;
    }
    return { labels, counts, total: sample.length };
  };
  // Two coders, no missing values: the coincidence matrix is C + Cᵀ (Krippendorff 2011), so alpha comes from the
  // resample's confusion matrix.
  const positions = labels.map((_, i) => i);
  const alphaOf = (confusion: ConfusionMatrix, level: 'nominal' | 'ordinal' | 'interval'): number => {
    const o = confusion.counts.map((row, i) =>
      row.map((c, j) => c + ((confusion.counts[j] as readonly number[])[i] as number)),
    );
    return alphaFromCoincidences(o, level === 'interval' ? positions : labels, level).alpha;
  };
  const absent = options.absentLabel === undefined ? null : code.get(options.absentLabel);
  if (absent === undefined || (absent !== null && !ordered)) {
    throw new RescaleError(
      'CONFIG_INVALID',
      absent === undefined
        ? `--absent-label ${JSON.stringify(options.absentLabel)} is not one of the labels (${labels.join(', ')})`
        : '--absent-label needs ordered labels; add --ordered (or ordered: true in the codebook)',
    );
  }

  const systems = predictedCodes.map((predicted, f): SystemEvaluation => {
    const metricsOf = (sample: readonly number[]): number[] => {
      const confusion = confusionOf(sample, predicted);
      const m = metricsFromConfusion(confusion);
      const values = [m.accuracy, m.macroF1, m.weightedF1, m.cohenKappa, alphaOf(confusion, 'nominal')];
      if (ordered) {
        values.push(
          alphaOf(confusion, 'ordinal'),
          kappaFromConfusion(confusion, 'quadratic'),
          alphaOf(confusion, 'interval'),
        );
      }
      if (absent !== null) {
        const presence = presenceLevelAgreement(goldCodes, predicted, absent, sample);
        values.push(presence.dimensionAccuracy, presence.intensityGivenPresent);
      }
      for (const c of m.perClass) values.push(c.precision, c.recall, c.f1);
      return values;
    };
    const intervals = bootstrapCis(units, metricsOf, bootstrap);
    const at = (i: number): BootstrapInterval => intervals[i] as BootstrapInterval;
    const confusion = confusionOf(units, predicted);
    const point = metricsFromConfusion(confusion);
    const classBase = 5 + (ordered ? 3 : 0) + (absent !== null ? 2 : 0);
    return {
      name: names[f] as string,
      file: (predictions[f] as Predictions).file,
      trainingSize: options.trainingSizes?.[f] ?? null,
      coverage: (joins[f] as JoinedPredictions).coverage,
      accuracy: at(0),
      macroF1: at(1),
      weightedF1: at(2),
      cohenKappa: at(3),
      alphaNominal: at(4),
      alphaOrdinal: ordered ? at(5) : null,
      kappaQuadratic: ordered ? at(6) : null,
      ...(ordered ? { alphaInterval: at(7) } : {}),
      ...(absent !== null ? { dimensionAccuracy: at(8), intensityGivenPresent: at(9) } : {}),
      perClass: classIntervals(point.perClass, intervals, classBase),
      confusion,
    };
  });

  const differences: PairedDifference[] = [];
  const baseline = predictedCodes[0] as Int32Array;
  for (let f = 1; f < predictedCodes.length; f++) {
    const predicted = predictedCodes[f] as Int32Array;
    const [accuracy, macroF1] = bootstrapCis(
      units,
      (sample) => {
        const a = metricsFromConfusion(confusionOf(sample, predicted));
        const b = metricsFromConfusion(confusionOf(sample, baseline));
        return [a.accuracy - b.accuracy, a.macroF1 - b.macroF1];
      },
      bootstrap,
    ) as [BootstrapInterval, BootstrapInterval];
    differences.push({ system: names[f] as string, baseline: names[0] as string, accuracy, macroF1 });
  }

  return {
    kind: 'rescale.evaluation',
    version: 1,
    gold: {
      file: gold.file,
      idColumn: gold.idColumn,
      labelColumn: gold.labelColumn,
      rows: gold.rows,
      unlabelled: gold.unlabelled,
    },
    labels: [...labels],
    ordered,
    documents: n,
    bootstrap: { ...bootstrap, method: 'percentile' },
    systems,
    differences,
  };
}
