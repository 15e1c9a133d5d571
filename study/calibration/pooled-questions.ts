// The questions of a multi-question validation run pooled into one labelled set, for the overall calibration: every
// (document, question) pair is one item, joined to its gold label by question and id.

import { RescaleError } from '../../contracts/errors.js';
import type { GoldLabels, Predictions } from '../evaluation/labelled-predictions.js';

export interface QuestionEvidence {
  readonly question: string;
  readonly gold: GoldLabels;
  readonly predictions: Predictions;
}

/** Keys never hold this character (ids are text or numbers; corpus files are paths), so `<question>\u0001<key>`. */
const SEPARATOR = '\u0001';

/** One gold set and one prediction set holding every question's rows, each keyed by question and id. */
export function poolQuestions(parts: readonly QuestionEvidence[]): { gold: GoldLabels; predictions: Predictions } {
  const [first] = parts;
  if (first === undefined) throw new RescaleError('INTERNAL', 'poolQuestions needs at least one question');
  if (parts.some((p) => p.predictions.keyedBy !== 'id' || !p.gold.idsUnique)) {
    throw new RescaleError(
      'INPUT_INVALID',
      `${first.predictions.file} is joined to the gold labels by corpus file and id; calibrate each question on its ` +
        'own with --question NAME',
    );
  }
  const key = (question: string, k: string | null): string | null =>
    k === null ? null : `${question}${SEPARATOR}${k}`;
  const concat = <T>(pick: (p: QuestionEvidence) => readonly T[]): T[] => parts.flatMap(pick);
  const maybe = <T>(pick: (p: Predictions) => readonly T[] | null): T[] | null =>
    parts.every((p) => pick(p.predictions) !== null) ? parts.flatMap((p) => pick(p.predictions) as readonly T[]) : null;
  const goldKeys = parts.flatMap((p) => p.gold.keys.map((k) => key(p.question, k) as string));
  const predictionKeys = parts.flatMap((p) => p.predictions.keys.map((k) => key(p.question, k)));
  const predictionIndex = new Map<string, number>();
  predictionKeys.forEach((k, i) => {
    if (k !== null) predictionIndex.set(k, i);
  });
  const gold: GoldLabels = {
    ...first.gold,
    labelColumn: parts.map((p) => p.gold.labelColumn).join(', '),
    files: null,
    rows: parts.reduce((sum, p) => sum + p.gold.rows, 0),
    keys: goldKeys,
    labels: concat((p) => p.gold.labels),
    values: concat((p) => p.gold.values),
    unlabelled: parts.reduce((sum, p) => sum + p.gold.unlabelled, 0),
    index: new Map(goldKeys.map((k, i) => [k, i])),
    extra: new Map(),
  };
  const predictions: Predictions = {
    ...first.predictions,
    rows: parts.reduce((sum, p) => sum + p.predictions.rows, 0),
    keys: predictionKeys,
    labels: concat((p) => p.predictions.labels),
    values: concat((p) => p.predictions.values),
    labelColumn: parts.map((p) => p.predictions.labelColumn).join(', '),
    localLabels: concat((p) => p.predictions.localLabels),
    statuses: maybe((p) => p.statuses),
    confidence: maybe((p) => p.confidence),
    margin: maybe((p) => p.margin),
    entropy: maybe((p) => p.entropy),
    fallbackLabels: maybe((p) => p.fallbackLabels),
    fallbackStatuses: maybe((p) => p.fallbackStatuses),
    sources: maybe((p) => p.sources),
    labelOrder: null,
    index: predictionIndex,
    nullIds: parts.reduce((sum, p) => sum + p.predictions.nullIds, 0),
  };
  return { gold, predictions };
}
