// A per_label multi-label question's answer from its labels' yes/no scores: each label's P(yes), normalised over the
// two answers as a single-label question normalises over its labels, and the set those probabilities decide.

import type { QuestionAnswer } from '../../contracts/results.js';
import { labelDistribution } from './label-distribution.js';
import type { TrieScore } from './label-trie-scorer.js';

/**
 * `scores[l]` is label l's yes/no score (answers in the order yes, no). Null probabilities when some label's two
 * answers both have probability 0 under the model.
 */
export function multiLabelDecision(
  labels: readonly string[],
  thresholds: readonly number[],
  scores: readonly TrieScore[],
): QuestionAnswer {
  const probabilities = new Float64Array(labels.length);
  // The weakest label's raw mass on its two answers: how much the model sees every label's prompt as a yes/no question.
  let labelMass = Number.POSITIVE_INFINITY;
  let scored = true;
  scores.forEach((score, l) => {
    labelMass = Math.min(labelMass, score.labelMass);
    const distribution = labelDistribution(score.logProbabilities);
    if (distribution === null) scored = false;
    else probabilities[l] = distribution.probabilities[0] as number;
  });
  const mass = scores.length === 0 ? null : labelMass;
  if (!scored) {
    return {
      label: null,
      labels: null,
      confidence: null,
      margin: null,
      entropy: null,
      probabilities: null,
      labelMass: mass,
    };
  }
  const chosen: string[] = [];
  let confidence = 1;
  let margin = Number.POSITIVE_INFINITY;
  labels.forEach((name, l) => {
    const p = probabilities[l] as number;
    const threshold = thresholds[l] as number;
    const inSet = p >= threshold;
    if (inSet) chosen.push(name);
    confidence *= inSet ? p : 1 - p;
    margin = Math.min(margin, Math.abs(p - threshold));
  });
  return { label: null, labels: chosen, confidence, margin, entropy: null, probabilities, labelMass: mass };
}
