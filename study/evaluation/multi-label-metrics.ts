// Agreement between gold and predicted label sets (multi-label questions): the paper's any-overlap accuracy, exact
// set match, Jaccard, Hamming loss, micro/macro/weighted/samples precision, recall and F1, per-label figures, and
// Krippendorff's alpha with a set distance. Averages follow scikit-learn on a label-indicator matrix whose columns
// are the label list, with zero_division=0 (a 0/0 ratio counts as 0), so every figure can be re-checked there.

import { RescaleError } from '../../contracts/errors.js';
import { labelIndex } from './agreement-metrics.js';
import { alphaFromDistances } from './krippendorff-alpha.js';
import { jaccardDistance, masiDistance } from './set-distance.js';

export interface AveragedScores {
  readonly precision: number;
  readonly recall: number;
  readonly f1: number;
  readonly jaccard: number;
}

export interface LabelScores extends AveragedScores {
  readonly label: string;
  /** Documents whose gold set holds the label. */
  readonly support: number;
  /** Documents whose predicted set holds the label. */
  readonly predicted: number;
}

export interface MultiLabelMetrics {
  readonly n: number;
  readonly labels: readonly string[];
  /** The paper's "isCorrect": share of documents where some gold label is predicted (an empty gold set never is). */
  readonly anyOverlapAccuracy: number;
  /** Share of documents whose predicted set equals the gold set (scikit-learn's subset accuracy). */
  readonly exactMatch: number;
  /** Share of document × label cells predicted wrong, over every label in the list. */
  readonly hammingLoss: number;
  /** Pooled counts over all labels. */
  readonly micro: AveragedScores;
  /** Unweighted mean over every label in the list (a label absent on both sides counts as 0). */
  readonly macro: AveragedScores;
  /** Mean over labels weighted by gold support; 0 when no gold set holds any label. */
  readonly weighted: AveragedScores;
  /**
   * Mean over documents of the per-document figures; samples.jaccard is the mean per-document Jaccard
   * |G∩P| / |G∪P| (0 where both sets are empty).
   */
  readonly samples: AveragedScores;
  readonly perLabel: readonly LabelScores[];
  /** Krippendorff's alpha with MASI distance (NLTK's definition); NaN when undefined. */
  readonly alphaMasi: number;
  /** Krippendorff's alpha with Jaccard distance; NaN when undefined. */
  readonly alphaJaccard: number;
  readonly emptyGold: number;
  readonly emptyPredicted: number;
}

/** Label sets as label positions, with what every resample needs precomputed per document. */
export interface EncodedLabelSets {
  readonly labels: readonly string[];
  readonly n: number;
  readonly goldSize: Int32Array;
  readonly predictedSize: Int32Array;
  readonly intersection: Int32Array;
  /** Labels per document in both sets, only in gold, only predicted. */
  readonly truePositive: readonly Int32Array[];
  readonly falseNegative: readonly Int32Array[];
  readonly falsePositive: readonly Int32Array[];
  /** Distinct-set id of each document's gold and predicted set (equal sets share an id). */
  readonly goldSet: Int32Array;
  readonly predictedSet: Int32Array;
  /** The distinct sets, by id. */
  readonly sets: readonly ReadonlySet<number>[];
}

function encodeSet(
  values: readonly string[],
  index: ReadonlyMap<string, number>,
  labels: readonly string[],
  side: string,
  doc: number,
): Set<number> {
  const out = new Set<number>();
  for (const value of values) {
    const position = index.get(value);
    if (position === undefined) {
      const shown = labels.slice(0, 20).map((l) => JSON.stringify(l));
      throw new RescaleError(
        'INPUT_INVALID',
        `${side}[${doc}] holds ${JSON.stringify(value)}, which is not in the label list (${shown.join(', ')}` +
          `${labels.length > 20 ? ', …' : ''}); fix the value or add the label to the codebook`,
      );
    }
    out.add(position); // a label named twice in one set counts once
  }
  return out;
}

/** Encodes paired gold and predicted label sets; INPUT_INVALID on unequal lengths, no documents or unknown labels. */
export function encodeLabelSets(
  gold: readonly (readonly string[])[],
  predicted: readonly (readonly string[])[],
  labels: readonly string[],
): EncodedLabelSets {
  const index = labelIndex(labels);
  if (gold.length !== predicted.length) {
    throw new RescaleError(
      'INPUT_INVALID',
      `gold has ${gold.length} label sets but predicted has ${predicted.length}; pass one predicted set per ` +
        'gold-labelled document, in the same order',
    );
  }
  const n = gold.length;
  if (n === 0) {
    throw new RescaleError('INPUT_INVALID', 'gold and predicted are empty; agreement needs at least one document');
  }
  const setIds = new Map<string, number>();
  const sets: ReadonlySet<number>[] = [];
  const idOf = (set: Set<number>): number => {
    const key = [...set].sort((a, b) => a - b).join(',');
    let id = setIds.get(key);
    if (id === undefined) {
      id = sets.length;
      setIds.set(key, id);
      sets.push(set);
    }
    return id;
  };
  const goldSize = new Int32Array(n);
  const predictedSize = new Int32Array(n);
  const intersection = new Int32Array(n);
  const truePositive: Int32Array[] = [];
  const falseNegative: Int32Array[] = [];
  const falsePositive: Int32Array[] = [];
  const goldSet = new Int32Array(n);
  const predictedSet = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const g = encodeSet(gold[i] as readonly string[], index, labels, 'gold', i);
    const p = encodeSet(predicted[i] as readonly string[], index, labels, 'predicted', i);
    const both = [...g].filter((l) => p.has(l));
    goldSize[i] = g.size;
    predictedSize[i] = p.size;
    intersection[i] = both.length;
    truePositive.push(Int32Array.from(both));
    falseNegative.push(Int32Array.from([...g].filter((l) => !p.has(l))));
    falsePositive.push(Int32Array.from([...p].filter((l) => !g.has(l))));
    goldSet[i] = idOf(g);
    predictedSet[i] = idOf(p);
  }
  return {
    labels: labels.slice(),
    n,
    goldSize,
    predictedSize,
    intersection,
    truePositive,
    falseNegative,
    falsePositive,
    goldSet,
    predictedSet,
    sets,
  };
}

const ratio = (a: number, b: number): number => (b === 0 ? 0 : a / b);

function scores(tp: number, fp: number, fn: number): AveragedScores {
  return {
    precision: ratio(tp, tp + fp),
    recall: ratio(tp, tp + fn),
    f1: ratio(2 * tp, 2 * tp + fp + fn),
    jaccard: ratio(tp, tp + fp + fn),
  };
}

/**
 * Alpha for two coders (gold, predicted) with each set distance, from the coincidences of the distinct sets the
 * documents use: each document adds one (gold, predicted) and one (predicted, gold) pair.
 */
function setAlphas(
  data: EncodedLabelSets,
  docs: readonly number[],
  distances: readonly SetDistanceFunction[],
): number[] {
  const slotOf = new Int32Array(data.sets.length).fill(-1);
  const present: number[] = [];
  const slot = (id: number): number => {
    let c = slotOf[id] as number;
    if (c < 0) {
      c = present.length;
      slotOf[id] = c;
      present.push(id);
    }
    return c;
  };
  const g = new Int32Array(docs.length);
  const p = new Int32Array(docs.length);
  docs.forEach((i, d) => {
    g[d] = slot(data.goldSet[i] as number);
    p[d] = slot(data.predictedSet[i] as number);
  });
  const v = present.length;
  const o = Array.from({ length: v }, () => new Array<number>(v).fill(0));
  for (let d = 0; d < docs.length; d++) {
    const a = g[d] as number;
    const b = p[d] as number;
    (o[a] as number[])[b] = ((o[a] as number[])[b] as number) + 1;
    (o[b] as number[])[a] = ((o[b] as number[])[a] as number) + 1;
  }
  return distances.map((distance) => {
    const between = cachedDistance(data, distance);
    const delta = present.map((a, c) => present.map((b, k) => (c === k ? 0 : between(a, b))));
    return alphaFromDistances(o, delta).alpha;
  });
}

// Resamples reuse the distances between the same distinct sets; cached per data set and distance (up to
// MAX_CACHED_SETS² entries, 8 MiB).
const MAX_CACHED_SETS = 1024;
const distanceCaches = new WeakMap<EncodedLabelSets, Map<SetDistanceFunction, Float64Array>>();
type SetDistanceFunction = (a: ReadonlySet<number>, b: ReadonlySet<number>) => number;

function cachedDistance(data: EncodedLabelSets, distance: SetDistanceFunction): (a: number, b: number) => number {
  const d = data.sets.length;
  const direct = (a: number, b: number): number =>
    distance(data.sets[a] as ReadonlySet<number>, data.sets[b] as ReadonlySet<number>);
  if (d > MAX_CACHED_SETS) return direct;
  let byDistance = distanceCaches.get(data);
  if (byDistance === undefined) {
    byDistance = new Map();
    distanceCaches.set(data, byDistance);
  }
  let cache = byDistance.get(distance);
  if (cache === undefined) {
    cache = new Float64Array(d * d).fill(Number.NaN);
    byDistance.set(distance, cache);
  }
  const table = cache;
  return (a, b) => {
    let value = table[a * d + b] as number;
    if (Number.isNaN(value)) {
      value = direct(a, b);
      table[a * d + b] = value;
    }
    return value;
  };
}

/** Every multi-label figure over the documents `docs` (positions into `data`, repeats allowed; default all). */
export function multiLabelMetricsOf(data: EncodedLabelSets, docs?: readonly number[]): MultiLabelMetrics {
  const sample = docs ?? Array.from({ length: data.n }, (_, i) => i);
  const n = sample.length;
  const k = data.labels.length;
  const tp = new Float64Array(k);
  const fp = new Float64Array(k);
  const fn = new Float64Array(k);
  let anyOverlap = 0;
  let exact = 0;
  let wrongCells = 0;
  let emptyGold = 0;
  let emptyPredicted = 0;
  let precisionSum = 0;
  let recallSum = 0;
  let f1Sum = 0;
  let jaccardSum = 0;
  const count = (into: Float64Array, labels: Int32Array): void => {
    for (let j = 0; j < labels.length; j++) {
      const l = labels[j] as number;
      into[l] = (into[l] as number) + 1;
    }
  };
  for (let d = 0; d < n; d++) {
    const i = sample[d] as number;
    const g = data.goldSize[i] as number;
    const p = data.predictedSize[i] as number;
    const both = data.intersection[i] as number;
    count(tp, data.truePositive[i] as Int32Array);
    count(fn, data.falseNegative[i] as Int32Array);
    count(fp, data.falsePositive[i] as Int32Array);
    if (both > 0) anyOverlap++;
    if (both === g && both === p) exact++;
    wrongCells += g + p - 2 * both;
    if (g === 0) emptyGold++;
    if (p === 0) emptyPredicted++;
    if (p > 0) precisionSum += both / p;
    if (g > 0) recallSum += both / g;
    if (g + p > 0) {
      f1Sum += (2 * both) / (g + p);
      jaccardSum += both / (g + p - both);
    }
  }
  const [alphaMasi, alphaJaccard] = setAlphas(data, sample, [masiDistance, jaccardDistance]) as [number, number];
  const perLabel: LabelScores[] = data.labels.map((label, l) => ({
    label,
    support: (tp[l] as number) + (fn[l] as number),
    predicted: (tp[l] as number) + (fp[l] as number),
    ...scores(tp[l] as number, fp[l] as number, fn[l] as number),
  }));
  const total = (counts: Float64Array): number => counts.reduce((a, b) => a + b, 0);
  const totalSupport = perLabel.reduce((s, c) => s + c.support, 0);
  const average = (weight: (c: LabelScores) => number, denominator: number): AveragedScores => {
    const pick = (f: (c: LabelScores) => number): number =>
      ratio(
        perLabel.reduce((s, c) => s + f(c) * weight(c), 0),
        denominator,
      );
    return {
      precision: pick((c) => c.precision),
      recall: pick((c) => c.recall),
      f1: pick((c) => c.f1),
      jaccard: pick((c) => c.jaccard),
    };
  };
  return {
    n,
    labels: data.labels,
    anyOverlapAccuracy: anyOverlap / n,
    exactMatch: exact / n,
    hammingLoss: wrongCells / (n * k),
    micro: scores(total(tp), total(fp), total(fn)),
    macro: average(() => 1, k),
    weighted: average((c) => c.support, totalSupport),
    samples: { precision: precisionSum / n, recall: recallSum / n, f1: f1Sum / n, jaccard: jaccardSum / n },
    perLabel,
    alphaMasi,
    alphaJaccard,
    emptyGold,
    emptyPredicted,
  };
}

/**
 * Every multi-label agreement figure for paired gold and predicted label sets over `labels` (the codebook order).
 * Throws INPUT_INVALID on empty input, unequal lengths or a label outside the list; CONFIG_INVALID on an empty or
 * duplicated label list.
 */
export function multiLabelMetrics(
  gold: readonly (readonly string[])[],
  predicted: readonly (readonly string[])[],
  labels: readonly string[],
): MultiLabelMetrics {
  return multiLabelMetricsOf(encodeLabelSets(gold, predicted, labels));
}
