// How far the local model's confidence can be trusted, and where to cut it: expected calibration error, reliability
// diagram bins, and a threshold sweep that prices routing low-confidence documents to a fallback model.

import { RescaleError } from '../../contracts/errors.js';

export const DEFAULT_CALIBRATION_BINS = 10;

export interface CalibrationItem {
  /** Probability of the predicted label, in [0, 1]. */
  readonly confidence: number;
  /** Whether the predicted label equals the gold label. */
  readonly correct: boolean;
}

export interface ReliabilityBin {
  /** Bin covers (lower, upper]; the first bin also holds confidence 0. */
  readonly lower: number;
  readonly upper: number;
  readonly count: number;
  /** null for an empty bin. */
  readonly meanConfidence: number | null;
  readonly accuracy: number | null;
}

export interface CalibrationOptions {
  /** Number of equal-width bins on [0, 1] (default 10). */
  readonly bins?: number;
}

function binCount(options: CalibrationOptions): number {
  const bins = options.bins ?? DEFAULT_CALIBRATION_BINS;
  if (!Number.isInteger(bins) || bins < 1) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `bins must be a positive integer (got ${String(bins)}); 10 or 15 are usual`,
    );
  }
  return bins;
}

function assertItems(items: readonly CalibrationItem[]): void {
  if (items.length === 0) {
    throw new RescaleError(
      'INPUT_INVALID',
      'no predictions to calibrate; pass at least one (confidence, correct) pair',
    );
  }
  items.forEach((item, i) => {
    if (!(item.confidence >= 0 && item.confidence <= 1)) {
      throw new RescaleError(
        'INPUT_INVALID',
        `item ${i} has confidence ${String(item.confidence)}; confidence must be a probability in [0, 1]`,
      );
    }
    if (typeof item.correct !== 'boolean') {
      throw new RescaleError(
        'INPUT_INVALID',
        `item ${i} has correct = ${String(item.correct)}; it must be true or false`,
      );
    }
  });
}

/** Bin of a confidence for right-closed bins ((b−1)/B, b/B] (Guo et al. 2017), exact at the edges. */
function binOf(confidence: number, bins: number): number {
  let b = Math.max(0, Math.ceil(confidence * bins) - 1);
  // confidence * bins can land one ulp off an edge; compare with the same edges the bins report.
  if (b > 0 && confidence <= b / bins) b--;
  else if (b < bins - 1 && confidence > (b + 1) / bins) b++;
  return Math.min(b, bins - 1);
}

/** Count, mean confidence and accuracy per equal-width bin: the points of a reliability diagram. */
export function reliabilityBins(items: readonly CalibrationItem[], options: CalibrationOptions = {}): ReliabilityBin[] {
  const bins = binCount(options);
  assertItems(items);
  const count = new Array<number>(bins).fill(0);
  const confidenceSum = new Array<number>(bins).fill(0);
  const correctSum = new Array<number>(bins).fill(0);
  for (const item of items) {
    const b = binOf(item.confidence, bins);
    count[b] = (count[b] as number) + 1;
    confidenceSum[b] = (confidenceSum[b] as number) + item.confidence;
    if (item.correct) correctSum[b] = (correctSum[b] as number) + 1;
  }
  return count.map((c, b) => ({
    lower: b / bins,
    upper: (b + 1) / bins,
    count: c,
    meanConfidence: c === 0 ? null : (confidenceSum[b] as number) / c,
    accuracy: c === 0 ? null : (correctSum[b] as number) / c,
  }));
}

/**
 * ECE = Σ_b (n_b / N) · |accuracy_b − mean confidence_b| over equal-width bins (Naeini et al. 2015; Guo et al. 2017).
 */
export function expectedCalibrationError(items: readonly CalibrationItem[], options: CalibrationOptions = {}): number {
  const bins = reliabilityBins(items, options);
  let sum = 0;
  for (const bin of bins) {
    if (bin.count === 0) continue;
    sum += bin.count * Math.abs((bin.accuracy as number) - (bin.meanConfidence as number));
  }
  return sum / items.length;
}

// ---- Routing low-confidence documents to a fallback model ----

/**
 * What a routing threshold is applied to, and which way:
 * - `confidence`: keep the local label when confidence ≥ t, route otherwise;
 * - `margin` (top-1 minus top-2 probability): keep when margin ≥ t;
 * - `entropy` of the label distribution: keep when entropy ≤ t;
 * - `unscored_mass` (a list multi-label question's `__unscored_mass`): keep when unscored mass ≤ t.
 */
export type RoutingRule = 'confidence' | 'margin' | 'entropy' | 'unscored_mass';

/** Whether the rule keeps low scores (entropy, unscored mass) rather than high ones (confidence, margin). */
export function keepsLowScores(rule: RoutingRule): boolean {
  return rule === 'entropy' || rule === 'unscored_mass';
}

export interface RoutingItem {
  readonly correct: boolean;
  readonly confidence: number;
  readonly margin?: number | null;
  readonly entropy?: number | null;
  readonly unscoredMass?: number | null;
  /** Whether the fallback model labelled this unit correctly; needed when fallbackAccuracy is 'from-items'. */
  readonly fallbackCorrect?: boolean | null;
}

export interface ThresholdSweepOptions {
  readonly rule?: RoutingRule;
  /**
   * Thresholds to evaluate. Default: every distinct observed score (each distinct routed set once) plus the
   * route-everything point (+Infinity for confidence and margin, −Infinity for entropy).
   */
  readonly thresholds?: readonly number[];
  /**
   * Fallback accuracy on routed documents: a number (measured on a separate labelled sample, or assumed), or
   * 'from-items' to use each routed item's `fallbackCorrect` (the fallback was run on this labelled sample).
   */
  readonly fallbackAccuracy: number | 'from-items';
  /**
   * With a number for fallbackAccuracy: a point whose routed items all have a `fallbackCorrect` counts each with its
   * own outcome instead (a hybrid validation run answered the documents it routed, and only those).
   */
  readonly ownOutcomesWhereAnswered?: boolean;
  /** Cost of sending one document to the fallback (any currency). */
  readonly fallbackCostPerDocument: number;
  /** Documents in the corpus the threshold will be applied to. */
  readonly corpusSize: number;
  /** Cost of the local model per document, paid for every document (default 0). */
  readonly localCostPerDocument?: number;
}

export interface ThresholdPoint {
  readonly rule: RoutingRule;
  readonly threshold: number;
  /** Labelled items routed to the fallback at this threshold. */
  readonly routed: number;
  readonly kept: number;
  readonly routedShare: number;
  /** Accuracy of the local model on kept items; null when nothing is kept. */
  readonly keptAccuracy: number | null;
  /** Accuracy of the fallback on routed items as used here; null when nothing is routed. */
  readonly fallbackAccuracy: number | null;
  /** (kept correct + routed · fallback accuracy) / items. */
  readonly hybridAccuracy: number;
  /** corpusSize · routedShare. */
  readonly expectedFallbackDocuments: number;
  /** corpusSize · (localCost + routedShare · fallbackCost). */
  readonly expectedCost: number;
}

const RULES: readonly RoutingRule[] = ['confidence', 'margin', 'entropy', 'unscored_mass'];

interface ScoredItem {
  readonly score: number;
  readonly correct: boolean;
  readonly fallbackCorrect: boolean;
  readonly answered: boolean;
}

function nonNegative(value: number, option: string): number {
  if (!(Number.isFinite(value) && value >= 0)) {
    throw new RescaleError('CONFIG_INVALID', `${option} must be a finite number ≥ 0 (got ${String(value)})`);
  }
  return value;
}

/** The rule's score oriented so that higher means more certain, and kept iff score ≥ oriented threshold. */
function certainty(item: RoutingItem, rule: RoutingRule, i: number): number {
  const raw =
    rule === 'confidence'
      ? item.confidence
      : rule === 'margin'
        ? item.margin
        : rule === 'entropy'
          ? item.entropy
          : item.unscoredMass;
  if (typeof raw !== 'number' || Number.isNaN(raw)) {
    throw new RescaleError(
      'INPUT_INVALID',
      `item ${i} has no ${rule} (got ${String(raw)}); pick a rule every item has a score for`,
    );
  }
  return keepsLowScores(rule) ? -raw : raw;
}

/**
 * For each threshold: share routed, accuracy of what is kept, expected accuracy of the hybrid (local on kept,
 * fallback on routed) and expected cost over the corpus. Points come in order of increasing routed share.
 */
export function thresholdSweep(items: readonly RoutingItem[], options: ThresholdSweepOptions): ThresholdPoint[] {
  const rule = options.rule ?? 'confidence';
  if (!RULES.includes(rule)) {
    throw new RescaleError('CONFIG_INVALID', `rule must be one of ${RULES.join(', ')} (got ${JSON.stringify(rule)})`);
  }
  const fallbackCost = nonNegative(options.fallbackCostPerDocument, 'fallbackCostPerDocument');
  const localCost = nonNegative(options.localCostPerDocument ?? 0, 'localCostPerDocument');
  const corpusSize = nonNegative(options.corpusSize, 'corpusSize');
  const fromItems = options.fallbackAccuracy === 'from-items';
  if (!fromItems) {
    const a = options.fallbackAccuracy;
    if (!(typeof a === 'number' && a >= 0 && a <= 1)) {
      throw new RescaleError(
        'CONFIG_INVALID',
        `fallbackAccuracy must be a number in [0, 1] or 'from-items' (got ${String(a)})`,
      );
    }
  }
  if (items.length === 0) {
    throw new RescaleError(
      'INPUT_INVALID',
      'no labelled items to sweep; the sweep needs predictions with known correctness',
    );
  }

  const scored = items.map((item, i): ScoredItem => {
    if (typeof item.correct !== 'boolean') {
      throw new RescaleError(
        'INPUT_INVALID',
        `item ${i} has correct = ${String(item.correct)}; it must be true or false`,
      );
    }
    if (fromItems && typeof item.fallbackCorrect !== 'boolean') {
      throw new RescaleError(
        'INPUT_INVALID',
        `item ${i} has no fallbackCorrect, which fallbackAccuracy 'from-items' needs; run the fallback on every ` +
          `labelled item or pass its accuracy as a number`,
      );
    }
    return {
      score: certainty(item, rule, i),
      correct: item.correct,
      fallbackCorrect: item.fallbackCorrect === true,
      answered: typeof item.fallbackCorrect === 'boolean',
    };
  });
  // Most certain first: raising the oriented threshold routes items from the end of this list.
  scored.sort((a, b) => b.score - a.score);

  const sign = keepsLowScores(rule) ? -1 : 1;
  let oriented: number[];
  if (options.thresholds !== undefined) {
    options.thresholds.forEach((t, i) => {
      if (typeof t !== 'number' || Number.isNaN(t)) {
        throw new RescaleError('CONFIG_INVALID', `thresholds[${i}] is ${String(t)}; thresholds must be numbers`);
      }
    });
    oriented = options.thresholds.map((t) => sign * t);
  } else {
    oriented = [...new Set(scored.map((s) => s.score)), Number.POSITIVE_INFINITY];
  }
  oriented.sort((a, b) => a - b);

  const n = scored.length;
  // Prefix sums over the certainty-sorted list: kept items are a prefix.
  const keptCorrect = new Array<number>(n + 1).fill(0);
  const fallbackCorrectFromEnd = new Array<number>(n + 1).fill(0);
  const unansweredFromEnd = new Array<number>(n + 1).fill(0);
  for (let i = 0; i < n; i++) {
    keptCorrect[i + 1] = (keptCorrect[i] as number) + ((scored[i] as ScoredItem).correct ? 1 : 0);
  }
  for (let i = n - 1; i >= 0; i--) {
    fallbackCorrectFromEnd[i] =
      (fallbackCorrectFromEnd[i + 1] as number) + ((scored[i] as ScoredItem).fallbackCorrect ? 1 : 0);
    unansweredFromEnd[i] = (unansweredFromEnd[i + 1] as number) + ((scored[i] as ScoredItem).answered ? 0 : 1);
  }

  const points: ThresholdPoint[] = [];
  let kept = n;
  for (const t of oriented) {
    while (kept > 0 && (scored[kept - 1] as ScoredItem).score < t) kept--;
    const routed = n - kept;
    const correctKept = keptCorrect[kept] as number;
    const ownOutcomes = fromItems || (options.ownOutcomesWhereAnswered === true && unansweredFromEnd[kept] === 0);
    const fallbackAccuracy =
      routed === 0
        ? null
        : ownOutcomes
          ? (fallbackCorrectFromEnd[kept] as number) / routed
          : (options.fallbackAccuracy as number);
    const routedShare = routed / n;
    points.push({
      rule,
      threshold: sign * t === 0 ? 0 : sign * t,
      routed,
      kept,
      routedShare,
      keptAccuracy: kept === 0 ? null : correctKept / kept,
      fallbackAccuracy,
      hybridAccuracy: (correctKept + routed * (fallbackAccuracy ?? 0)) / n,
      expectedFallbackDocuments: corpusSize * routedShare,
      expectedCost: corpusSize * (localCost + routedShare * fallbackCost),
    });
  }
  return points;
}

export type ThresholdGoal =
  /** Cheapest point whose hybrid accuracy reaches the target. */
  | { readonly targetAccuracy: number }
  /** Most accurate point whose expected cost stays within the budget. */
  | { readonly budget: number };

export interface ThresholdRecommendation {
  /** null when no point meets the goal. */
  readonly point: ThresholdPoint | null;
  readonly reason: string;
}

/**
 * Picks a threshold from a sweep. Ties: for a target, the higher hybrid accuracy, then the earlier point; for a
 * budget, the lower cost, then the earlier point. Accuracies are point estimates on the labelled sample: a target
 * met by a hair is not met with confidence.
 */
export function recommendThreshold(points: readonly ThresholdPoint[], goal: ThresholdGoal): ThresholdRecommendation {
  if (points.length === 0)
    throw new RescaleError('INPUT_INVALID', 'no sweep points to choose from; run thresholdSweep first');
  let best: ThresholdPoint | null = null;
  if ('targetAccuracy' in goal) {
    const target = goal.targetAccuracy;
    if (!(target >= 0 && target <= 1)) {
      throw new RescaleError('CONFIG_INVALID', `targetAccuracy must be in [0, 1] (got ${String(target)})`);
    }
    for (const p of points) {
      if (p.hybridAccuracy < target) continue;
      if (
        best === null ||
        p.expectedCost < best.expectedCost ||
        (p.expectedCost === best.expectedCost && p.hybridAccuracy > best.hybridAccuracy)
      ) {
        best = p;
      }
    }
    if (best === null) {
      const top = Math.max(...points.map((p) => p.hybridAccuracy));
      return {
        point: null,
        reason: `no threshold reaches accuracy ${target}; the best expected hybrid accuracy is ${top}`,
      };
    }
    return {
      point: best,
      reason:
        `lowest expected cost (${best.expectedCost}) with expected hybrid accuracy ${best.hybridAccuracy} ≥ ` +
        `${target}`,
    };
  }
  const budget = nonNegative(goal.budget, 'budget');
  for (const p of points) {
    if (p.expectedCost > budget) continue;
    if (
      best === null ||
      p.hybridAccuracy > best.hybridAccuracy ||
      (p.hybridAccuracy === best.hybridAccuracy && p.expectedCost < best.expectedCost)
    ) {
      best = p;
    }
  }
  if (best === null) {
    const cheapest = Math.min(...points.map((p) => p.expectedCost));
    return {
      point: null,
      reason: `every threshold costs more than the budget ${budget}; the cheapest costs ${cheapest}`,
    };
  }
  return {
    point: best,
    reason:
      `highest expected hybrid accuracy (${best.hybridAccuracy}) at expected cost ` +
      `${best.expectedCost} ≤ ${budget}`,
  };
}
