// `rescale calibrate`: how well the local model's confidence predicts its correctness on a labelled validation set
// (ECE, reliability diagram), and what each routing threshold would cost and gain once low-confidence documents go
// to the fallback model — with the threshold that meets the researcher's goal.

import path from 'node:path';
import { RescaleError } from '../../contracts/errors.js';
import { bootstrapCi, DEFAULT_BOOTSTRAP_RESAMPLES, type BootstrapInterval } from '../evaluation/bootstrap.js';
import {
  expectedCalibrationError,
  recommendThreshold,
  keepsLowScores,
  reliabilityBins,
  thresholdSweep,
  type CalibrationItem,
  type ReliabilityBin,
  type RoutingItem,
  type RoutingRule,
  type ThresholdGoal,
  type ThresholdPoint,
} from './calibration.js';
import { joinByIds, type GoldLabels, type JoinCoverage, type Predictions } from '../evaluation/labelled-predictions.js';

export type FallbackEvidence =
  /** An accuracy the researcher assumes (e.g. from the literature). */
  | { readonly kind: 'assumed'; readonly accuracy: number }
  /** The fallback's own labels for (some of) the labelled documents. */
  | { readonly kind: 'predictions'; readonly predictions: Predictions };

export interface CalibrateOptions {
  readonly rule?: RoutingRule;
  readonly fallback: FallbackEvidence;
  /** Documents the threshold will be applied to (default: the labelled documents). */
  readonly corpusSize?: number;
  /** Price of one fallback call; without it, cost is counted in documents sent to the fallback. */
  readonly costPerDocument?: number;
  readonly goal?: ThresholdGoal;
  /** Number of labels, for the entropy grid (max entropy ln k). */
  readonly labelCount: number;
  readonly bins?: number;
  /** Thresholds for the printed table (the recommendation always uses every distinct observed one). */
  readonly tableThresholds?: readonly number[];
  readonly seed: number;
  readonly resamples?: number;
}

export interface FallbackAccuracyUsed {
  /**
   * assumed: a given number; per-document: the fallback's own label for every labelled document; sample: its accuracy
   * on those it labelled; per-routed-document (multi-label questions): each routed document's own outcome at the
   * thresholds whose routed documents it all answered (a hybrid run's own routing and below), else as sample.
   */
  readonly source: 'assumed' | 'per-document' | 'sample' | 'per-routed-document';
  readonly accuracy: number;
  /** Labelled documents the fallback's accuracy was measured on (0 when assumed). */
  readonly documents: number;
  readonly file: string | null;
}

export interface CalibrationResult {
  readonly kind: 'rescale.calibration';
  readonly version: 1;
  /** The question of a multi-question result file this calibrates; absent for a one-question file. */
  readonly question?: string;
  readonly predictions: string;
  readonly gold: string;
  readonly coverage: JoinCoverage;
  /** Labelled documents with a local label and the rule's score. */
  readonly documents: number;
  readonly localAccuracy: number;
  readonly rule: RoutingRule;
  readonly ece: BootstrapInterval;
  readonly bins: readonly ReliabilityBin[];
  readonly fallback: FallbackAccuracyUsed;
  readonly corpusSize: number;
  /** null: cost is counted in documents sent to the fallback. */
  readonly costPerDocument: number | null;
  readonly goal: ThresholdGoal | null;
  readonly recommendation: { readonly point: ThresholdPoint | null; readonly reason: string };
  /** Points at the table thresholds (distinct routed sets only), plus the recommended one. */
  readonly table: readonly ThresholdPoint[];
  /** Every distinct observed threshold. */
  readonly sweep: readonly ThresholdPoint[];
  /**
   * A multi-label question: accuracies above are exact-set match (a document counts as right when its label set
   * equals the gold set), and this adds the local answers' quality on the kept and the routed documents per table row.
   */
  readonly labelSets?: LabelSetCalibration;
}

/** The local answers' agreement with the gold label sets on some documents (study/evaluation's figures). */
export interface LabelSetQuality {
  readonly documents: number;
  readonly exactMatch: number;
  /** Mean per-document Jaccard |G∩P| / |G∪P|. */
  readonly jaccard: number;
  readonly hammingLoss: number;
}

export interface LabelSetCalibration {
  /** The question's multi-label form: which routing rules read which of its columns. */
  readonly form: 'per_label' | 'list';
  readonly labels: readonly string[];
  /** The gold column the sets were read from. */
  readonly goldColumn: string;
  /** How the gold column was split into labels; null for a list column. */
  readonly separator: string | null;
  /** The local answers on every calibrated document. */
  readonly local: LabelSetQuality;
  /** With --fallback-predictions: the fallback's sets on every calibrated document it answered. */
  readonly fallback?: LabelSetQuality;
  /** One row per `table` point (same order): the local answers on the documents it keeps and on those it routes. */
  readonly table: readonly {
    readonly threshold: number;
    readonly kept: LabelSetQuality | null;
    readonly routed: LabelSetQuality | null;
    /** With --fallback-predictions: the fallback's sets on the routed documents it answered (null: none). */
    readonly fallback?: LabelSetQuality | null;
    /**
     * With --fallback-predictions: local sets on the kept documents and the fallback's on the routed ones, over all;
     * null when the fallback did not answer every routed document.
     */
    readonly hybrid?: LabelSetQuality | null;
  }[];
}

/**
 * Default table thresholds: steps of 0.05 over [0, 1] for confidence and margin, 20 steps over [0, ln k] for entropy.
 */
export function defaultTableThresholds(rule: RoutingRule, labelCount: number): number[] {
  if (rule === 'entropy') {
    const max = Math.log(Math.max(2, labelCount));
    return Array.from({ length: 21 }, (_, i) => Number(((max * i) / 20).toFixed(4)));
  }
  return Array.from({ length: 21 }, (_, i) => Number((i * 0.05).toFixed(2)));
}

export function calibrateRouting(
  gold: GoldLabels,
  predictions: Predictions,
  options: CalibrateOptions,
): CalibrationResult {
  const rule = options.rule ?? 'confidence';
  if (rule === 'unscored_mass') {
    throw new RescaleError(
      'CONFIG_INVALID',
      `--rule unscored_mass reads a list multi-label question's "<question>__unscored_mass"; ${predictions.file} ` +
        `is calibrated as a single-label question: use --rule confidence, margin or entropy`,
    );
  }
  const scores =
    rule === 'confidence' ? predictions.confidence : rule === 'margin' ? predictions.margin : predictions.entropy;
  if (scores === null) {
    throw new RescaleError(
      'COLUMN_MISSING',
      `--predictions ${predictions.file} has no "${rule}" column, which --rule ${rule} needs; pass a rescale ` +
        `result file`,
    );
  }
  const join = joinByIds(gold, predictions, (p) => p.localLabels);
  const fallbackLabels = fallbackLabelsFor(options.fallback, gold);

  const items: (RoutingItem & CalibrationItem)[] = [];
  let missingScore = 0;
  join.goldRows.forEach((g, i) => {
    const p = join.predictionRows[i] as number;
    const score = scores[p];
    const confidence = predictions.confidence?.[p];
    if (score === null || score === undefined || confidence === null || confidence === undefined) {
      missingScore++;
      return;
    }
    const truth = gold.labels[g] as string;
    const fallbackLabel = fallbackLabels?.get(gold.keys[g] as string);
    items.push({
      correct: predictions.localLabels[p] === truth,
      confidence,
      margin: predictions.margin?.[p] ?? null,
      entropy: predictions.entropy?.[p] ?? null,
      fallbackCorrect: fallbackLabel === undefined ? null : fallbackLabel === truth,
    });
  });
  if (items.length === 0) {
    throw new RescaleError(
      'INPUT_INVALID',
      `no labelled document of ${gold.file} has a scored prediction in ${predictions.file}; check the ids ` +
        `(--id-column) and that the run finished`,
    );
  }
  if (missingScore > 0 && missingScore === join.goldRows.length) {
    throw new RescaleError('INPUT_INVALID', `${predictions.file}: no row has a ${rule} score`);
  }

  return calibrateItems(items, { predictions: predictions.file, gold: gold.file, coverage: join.coverage }, options);
}

/**
 * The calibration of scored items (each with its local correctness and the rule's score). `perRoutedDocument`: a
 * fallback that answered only some items counts with their own outcomes where it answered every routed one.
 */
export function calibrateItems(
  items: readonly (RoutingItem & CalibrationItem)[],
  files: { readonly predictions: string; readonly gold: string; readonly coverage: JoinCoverage },
  options: CalibrateOptions,
  perRoutedDocument = false,
): CalibrationResult {
  const rule = options.rule ?? 'confidence';
  const fallback = fallbackAccuracy(options.fallback, items, perRoutedDocument);
  const corpusSize = options.corpusSize ?? items.length;
  const cost = options.costPerDocument ?? 1;
  const sweepOptions = {
    rule,
    fallbackAccuracy: fallback.source === 'per-document' ? ('from-items' as const) : fallback.accuracy,
    ...(fallback.source === 'per-routed-document' ? { ownOutcomesWhereAnswered: true } : {}),
    fallbackCostPerDocument: cost,
    corpusSize,
  };
  const sweep = thresholdSweep(items, sweepOptions);
  const goal = options.goal ?? null;
  const recommendation = recommend(sweep, goal);
  const gridThresholds = options.tableThresholds ?? defaultTableThresholds(rule, options.labelCount);
  const grid = thresholdSweep(items, { ...sweepOptions, thresholds: gridThresholds });
  const table: ThresholdPoint[] = [];
  for (const point of grid) if (!table.some((p) => p.routed === point.routed)) table.push(point);
  const chosen = recommendation.point;
  if (chosen !== null && !table.some((p) => p.threshold === chosen.threshold)) {
    table.push(chosen);
    table.sort(
      (a, b) => a.routed - b.routed || (keepsLowScores(rule) ? b.threshold - a.threshold : a.threshold - b.threshold),
    );
  }

  const bins = reliabilityBins(items, options.bins === undefined ? {} : { bins: options.bins });
  const ece = bootstrapCi(
    items,
    (sample) => expectedCalibrationError(sample, options.bins === undefined ? {} : { bins: options.bins }),
    {
      seed: options.seed,
      resamples: options.resamples ?? DEFAULT_BOOTSTRAP_RESAMPLES,
    },
  );
  return {
    kind: 'rescale.calibration',
    version: 1,
    ...files,
    documents: items.length,
    localAccuracy: items.filter((i) => i.correct).length / items.length,
    rule,
    ece,
    bins,
    fallback,
    corpusSize,
    costPerDocument: options.costPerDocument ?? null,
    goal,
    recommendation,
    table,
    sweep,
  };
}

/** The fallback's label per gold id, from a predictions file: `fallback_label` when it has one, else `label`. */
function fallbackLabelsFor(evidence: FallbackEvidence, gold: GoldLabels): Map<string, string> | null {
  if (evidence.kind === 'assumed') return null;
  const p = evidence.predictions;
  const labels = p.fallbackLabels ?? p.labels;
  const out = new Map<string, string>();
  p.keys.forEach((key, row) => {
    const label = labels[row];
    if (key !== null && label !== null && label !== undefined && gold.index.has(key)) out.set(key, label);
  });
  if (out.size === 0) {
    throw new RescaleError(
      'INPUT_INVALID',
      `--fallback-predictions ${p.file} labels none of the gold documents (by id); run the fallback on (a sample ` +
        `of) the labelled documents first`,
    );
  }
  return out;
}

function fallbackAccuracy(
  evidence: FallbackEvidence,
  items: readonly RoutingItem[],
  perRoutedDocument: boolean,
): FallbackAccuracyUsed {
  if (evidence.kind === 'assumed') {
    if (!(evidence.accuracy >= 0 && evidence.accuracy <= 1)) {
      throw new RescaleError(
        'CONFIG_INVALID',
        `--fallback-accuracy must be a share between 0 and 1, e.g. 0.9 (got ${String(evidence.accuracy)})`,
      );
    }
    return { source: 'assumed', accuracy: evidence.accuracy, documents: 0, file: null };
  }
  const covered = items.filter((i) => i.fallbackCorrect !== null && i.fallbackCorrect !== undefined);
  const accuracy = covered.filter((i) => i.fallbackCorrect === true).length / covered.length;
  return {
    // Every document labelled by the fallback: use each one's own outcome, which keeps the correlation between the
    // local model's doubt and the fallback's difficulty; else its accuracy on the sample stands in for all (or, per
    // routed document, only where some routed document lacks an answer).
    source: covered.length === items.length ? 'per-document' : perRoutedDocument ? 'per-routed-document' : 'sample',
    accuracy,
    documents: covered.length,
    file: path.resolve(evidence.predictions.file),
  };
}

function short(value: number): string {
  return Number(value.toPrecision(4)).toString();
}

function recommend(
  sweep: readonly ThresholdPoint[],
  goal: ThresholdGoal | null,
): { point: ThresholdPoint | null; reason: string } {
  if (goal !== null) {
    const { point } = recommendThreshold(sweep, goal);
    if ('targetAccuracy' in goal) {
      const best = Math.max(...sweep.map((p) => p.hybridAccuracy));
      return point === null
        ? {
            point,
            reason:
              `no threshold reaches the target accuracy ${goal.targetAccuracy}; the best expected hybrid accuracy ` +
              `is ${short(best)}`,
          }
        : {
            point,
            reason:
              `the cheapest threshold whose expected accuracy (${short(point.hybridAccuracy)}) reaches the target ` +
              `${goal.targetAccuracy}`,
          };
    }
    const cheapest = Math.min(...sweep.map((p) => p.expectedCost));
    return point === null
      ? {
          point,
          reason: `every threshold costs more than the budget ${goal.budget}; the cheapest costs ${short(cheapest)}`,
        }
      : {
          point,
          reason:
            `the most accurate threshold (expected accuracy ${short(point.hybridAccuracy)}) whose expected cost ` +
            `(${short(point.expectedCost)}) stays within the budget ${goal.budget}`,
        };
  }
  // No goal: the most accurate point, the least routing among ties (routing beyond it stops paying off).
  let best: ThresholdPoint | null = null;
  for (const p of sweep) if (best === null || p.hybridAccuracy > best.hybridAccuracy) best = p;
  const point = best as ThresholdPoint;
  return {
    point,
    reason:
      `no --target-accuracy or --budget given: the highest expected hybrid accuracy ` +
      `(${short(point.hybridAccuracy)}), with the least routing among equals`,
  };
}
