// `rescale calibrate` for a multi-label question: the routing rules the fallback applies to it (each reading the
// question's own column of its name: `__confidence`, `__margin`, and a list question's `__unscored_mass`), swept
// against gold label sets. A document counts as right when its local set equals the gold set (exact-set match), so
// the threshold table and the recommendation are those of a single-label question with exact-set accuracy; each
// table row adds the local answers' exact match, Jaccard and Hamming loss on the kept and the routed documents.

import { RescaleError } from '../../contracts/errors.js';
import { goldLabelSets, predictedLabelSets } from '../evaluation/evaluate-multi-label.js';
import { joinByIds, type GoldLabels, type Predictions } from '../evaluation/labelled-predictions.js';
import { encodeLabelSets, multiLabelMetricsOf, type EncodedLabelSets } from '../evaluation/multi-label-metrics.js';
import { keepsLowScores, type CalibrationItem, type RoutingItem } from './calibration.js';
import {
  calibrateItems,
  type CalibrateOptions,
  type CalibrationResult,
  type LabelSetQuality,
} from './routing-calibration.js';

export interface LabelSetCalibrateOptions extends CalibrateOptions {
  /** The question's name, for messages. */
  readonly question: string;
  readonly form: 'per_label' | 'list';
  /** The label list in codebook order (the sets are encoded over it). */
  readonly labels: readonly string[];
  /** Splits a gold string into labels; null when the gold column is a list column. */
  readonly separator: string | null;
  /** The question's `__unscored_mass` per prediction row (list questions), for --rule unscored_mass. */
  readonly unscoredMass?: readonly (number | null)[] | null;
}

function quality(data: EncodedLabelSets, docs: readonly number[]): LabelSetQuality | null {
  if (docs.length === 0) return null;
  const m = multiLabelMetricsOf(data, docs);
  return { documents: docs.length, exactMatch: m.exactMatch, jaccard: m.samples.jaccard, hammingLoss: m.hammingLoss };
}

/** A multi-label question's fallback is judged by an assumed exact-set accuracy only, never by its predictions. */
export function fallbackPredictionsRefused(question: string): RescaleError {
  return new RescaleError(
    'CONFIG_INVALID',
    `--fallback-predictions is not read for the multi-label question ${question}; pass --fallback-accuracy A, the ` +
      `share of documents whose label set you expect the fallback to get exactly right`,
  );
}

export function calibrateLabelSets(
  gold: GoldLabels,
  predictions: Predictions,
  options: LabelSetCalibrateOptions,
): CalibrationResult {
  const rule = options.rule ?? 'confidence';
  const q = options.question;
  const rules = options.form === 'list' ? 'confidence, margin or unscored_mass' : 'confidence or margin';
  if (rule === 'entropy' || (rule === 'unscored_mass' && options.form !== 'list')) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `--rule ${rule} does not apply to question ${q}: a ${options.form} multi-label question ` +
        `${rule === 'entropy' ? 'has no entropy' : 'has no unscored mass (only list questions do)'}; ` +
        `use --rule ${rules}`,
    );
  }
  if (options.fallback.kind !== 'assumed') throw fallbackPredictionsRefused(q);
  const column = rule === 'unscored_mass' ? 'unscored_mass' : rule;
  const scores =
    rule === 'confidence'
      ? predictions.confidence
      : rule === 'margin'
        ? predictions.margin
        : (options.unscoredMass ?? null);
  if (scores === null || predictions.confidence === null) {
    const missing = scores === null ? column : 'confidence';
    throw new RescaleError(
      'COLUMN_MISSING',
      `--predictions ${predictions.file} has no "${q}__${missing}" column, which calibrating question ${q} by ` +
        `${rule} needs; pass a rescale result file`,
    );
  }
  const join = joinByIds(gold, predictions);
  const goldSets = goldLabelSets(gold, options.separator);
  const predictedSets = predictedLabelSets(predictions);
  const known = new Set(options.labels);
  const goldKept: string[][] = [];
  const predictedKept: string[][] = [];
  const scored: { score: number; confidence: number; row: number }[] = [];
  join.goldRows.forEach((g, i) => {
    const p = join.predictionRows[i] as number;
    const score = scores[p];
    const confidence = predictions.confidence?.[p];
    if (score === null || score === undefined || confidence === null || confidence === undefined) return;
    const goldSet = goldSets[g] as string[];
    const predictedSet = predictedSets[p] as string[];
    const unknown = goldSet.find((l) => !known.has(l));
    if (unknown !== undefined) {
      throw new RescaleError(
        'INPUT_INVALID',
        `--gold ${gold.file}, column "${gold.labelColumn}", id ${gold.keys[g]}, holds the label ` +
          `${JSON.stringify(unknown)}, which is not a label of question ${q} (` +
          `${options.labels.map((l) => JSON.stringify(l)).join(', ')}); map it to a codebook label or pass --labels`,
      );
    }
    goldKept.push(goldSet);
    predictedKept.push(predictedSet);
    scored.push({ score, confidence, row: p });
  });
  if (scored.length === 0) {
    throw new RescaleError(
      'INPUT_INVALID',
      `no labelled document of ${gold.file} has a scored answer to question ${q} in ${predictions.file}; check ` +
        `the ids (--id-column) and that the run finished`,
    );
  }
  const encoded = encodeLabelSets(goldKept, predictedKept, options.labels);
  const items: (RoutingItem & CalibrationItem)[] = scored.map((s, i) => ({
    // Equal sets share a distinct-set id: exact-set match.
    correct: encoded.goldSet[i] === encoded.predictedSet[i],
    confidence: s.confidence,
    margin: predictions.margin?.[s.row] ?? null,
    unscoredMass: options.unscoredMass?.[s.row] ?? null,
    fallbackCorrect: null,
  }));
  const result = calibrateItems(
    items,
    { predictions: predictions.file, gold: gold.file, coverage: join.coverage },
    options,
  );
  const low = keepsLowScores(rule);
  const all = scored.map((_, i) => i);
  const table = result.table.map((point) => {
    // Kept as thresholdSweep keeps: score ≥ t (confidence, margin) or ≤ t (unscored mass).
    const kept = all.filter((i) => {
      const score = (scored[i] as { score: number }).score;
      return low ? score <= point.threshold : score >= point.threshold;
    });
    const keptSet = new Set(kept);
    const routed = all.filter((i) => !keptSet.has(i));
    if (kept.length !== point.kept) throw new RescaleError('INTERNAL', 'kept documents disagree with the sweep');
    return { threshold: point.threshold, kept: quality(encoded, kept), routed: quality(encoded, routed) };
  });
  return {
    ...result,
    question: q,
    labelSets: {
      form: options.form,
      labels: [...options.labels],
      goldColumn: gold.labelColumn,
      separator: options.separator,
      local: quality(encoded, all) as LabelSetQuality,
      table,
    },
  };
}
