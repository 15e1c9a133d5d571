// `rescale calibrate` for a multi-label question: the routing rules the fallback applies to it (each reading the
// question's own column of its name: `__confidence`, `__margin`, and a list question's `__unscored_mass`), swept
// against gold label sets. A document counts as right when its local set equals the gold set (exact-set match), so
// the threshold table and the recommendation are those of a single-label question with exact-set accuracy; each
// table row adds the local answers' exact match, Jaccard and Hamming loss on the kept and the routed documents. With
// the fallback's own label sets for the labelled documents (--fallback-predictions), a routed document counts with the
// fallback's set, and each row adds the fallback's figures on the routed documents and the hybrid's on all.

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

/**
 * The fallback's label set per gold row, from --fallback-predictions (its `labelColumn`, read by id); INPUT_INVALID
 * naming the file and column when it answers none of the labelled documents or lists a label outside the question's.
 */
function fallbackSetsByGoldRow(
  gold: GoldLabels,
  fallback: Predictions,
  question: string,
  labels: readonly string[],
): Map<number, string[]> {
  const where = `--fallback-predictions ${fallback.file}, column "${fallback.labelColumn}"`;
  const join = joinByIds(gold, fallback);
  if (join.goldRows.length === 0) {
    throw new RescaleError(
      'INPUT_INVALID',
      `${where}, holds a label set for none of the labelled documents of ${gold.file} (by id: ` +
        `${join.coverage.missingPredictions} missing, ${join.coverage.notInGold} ids not in the gold file); run the ` +
        `fallback on (a sample of) the labelled documents and check --id-column`,
    );
  }
  const sets = predictedLabelSets(fallback);
  const known = new Set(labels);
  const out = new Map<number, string[]>();
  join.goldRows.forEach((g, i) => {
    const row = join.predictionRows[i] as number;
    const set = sets[row] as string[];
    const unknown = set.find((l) => !known.has(l));
    if (unknown !== undefined) {
      throw new RescaleError(
        'INPUT_INVALID',
        `${where}, id ${fallback.keys[row]}, holds the label ${JSON.stringify(unknown)}, which is not a label of ` +
          `question ${question} (${labels.map((l) => JSON.stringify(l)).join(', ')}); pass the fallback's result ` +
          'file for this codebook',
      );
    }
    out.set(g, set);
  });
  return out;
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
  const fallback = options.fallback.kind === 'predictions' ? options.fallback.predictions : null;
  const fallbackSets = fallback === null ? null : fallbackSetsByGoldRow(gold, fallback, q, options.labels);
  const goldKept: string[][] = [];
  const predictedKept: string[][] = [];
  /** The fallback's set per scored document, null where it gave none (or without its predictions). */
  const fallbackKept: (string[] | null)[] = [];
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
    fallbackKept.push(fallbackSets?.get(g) ?? null);
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
  const fallbackAt = (i: number): string[] | null => fallbackKept[i] ?? null;
  if (fallback !== null && fallbackKept.every((set) => set === null)) {
    throw new RescaleError(
      'INPUT_INVALID',
      `--fallback-predictions ${fallback.file}, column "${fallback.labelColumn}", holds a label set for none of ` +
        `the labelled documents the local model scored for question ${q}; run the fallback on the same documents`,
    );
  }
  const all = scored.map((_, i) => i);
  // The fallback's sets against gold on the documents it answered (positions into `answered`'s encoding).
  const answered = fallbackSets === null ? null : all.filter((i) => fallbackAt(i) !== null);
  const fallbackEncoded =
    answered === null
      ? null
      : encodeLabelSets(
          answered.map((i) => goldKept[i] as string[]),
          answered.map((i) => fallbackAt(i) as string[]),
          options.labels,
        );
  const answeredAt = new Map((answered ?? []).map((i, j) => [i, j]));
  const items: (RoutingItem & CalibrationItem)[] = scored.map((s, i) => {
    const j = answeredAt.get(i);
    return {
      // Equal sets share a distinct-set id: exact-set match.
      correct: encoded.goldSet[i] === encoded.predictedSet[i],
      confidence: s.confidence,
      margin: predictions.margin?.[s.row] ?? null,
      unscoredMass: options.unscoredMass?.[s.row] ?? null,
      fallbackCorrect:
        fallbackEncoded === null || j === undefined
          ? null
          : fallbackEncoded.goldSet[j] === fallbackEncoded.predictedSet[j],
    };
  });
  const result = calibrateItems(
    items,
    { predictions: predictions.file, gold: gold.file, coverage: join.coverage },
    options,
    true,
  );
  const low = keepsLowScores(rule);
  /** The fallback on the routed documents it answered; the hybrid on all when it answered every routed one. */
  const fallbackQuality = (
    kept: readonly number[],
    routed: readonly number[],
  ): { fallback: LabelSetQuality | null; hybrid: LabelSetQuality | null } => {
    const routedAnswered = routed.filter((i) => answeredAt.has(i)).map((i) => answeredAt.get(i) as number);
    const everyRouted = routedAnswered.length === routed.length;
    const keptSet = new Set(kept);
    return {
      fallback: quality(fallbackEncoded as EncodedLabelSets, routedAnswered),
      hybrid: everyRouted
        ? quality(
            encodeLabelSets(
              goldKept,
              all.map((i) => (keptSet.has(i) ? predictedKept[i] : fallbackAt(i)) as string[]),
              options.labels,
            ),
            all,
          )
        : null,
    };
  };
  const table = result.table.map((point) => {
    // Kept as thresholdSweep keeps: score ≥ t (confidence, margin) or ≤ t (unscored mass).
    const kept = all.filter((i) => {
      const score = (scored[i] as { score: number }).score;
      return low ? score <= point.threshold : score >= point.threshold;
    });
    const keptSet = new Set(kept);
    const routed = all.filter((i) => !keptSet.has(i));
    if (kept.length !== point.kept) throw new RescaleError('INTERNAL', 'kept documents disagree with the sweep');
    const row = { threshold: point.threshold, kept: quality(encoded, kept), routed: quality(encoded, routed) };
    return answered === null ? row : { ...row, ...fallbackQuality(kept, routed) };
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
      ...(fallbackEncoded === null
        ? {}
        : {
            fallback: quality(
              fallbackEncoded,
              Array.from(answered ?? [], (_, j) => j),
            ) as LabelSetQuality,
          }),
      table,
    },
  };
}
