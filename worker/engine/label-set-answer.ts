// A list multi-label question's answer (`format: list`) from its set score: the most probable label set, its
// probability as the confidence, each label's marginal P(label ∈ set), and the greedy constrained decode's set.

import type { Label } from '../../contracts/codebook.js';
import type { QuestionAnswer } from '../../contracts/results.js';
import type { SetScore } from './label-set-scorer.js';

/**
 * `labels` the question's labels in codebook order. Confidence is the top set's probability (as `setProbability`);
 * margin is the top set's probability minus the second most probable scored set's (0 when no other set scored).
 * Probabilities, labels and scores are null when no set scored (the model gave every list probability 0).
 */
export function labelSetAnswer(labels: readonly Label[], score: SetScore): QuestionAnswer {
  const { top, setProbability, unscoredMass, invalidMass } = score;
  const greedyLabels = score.greedy === null ? null : score.greedy.map((l) => (labels[l] as Label).name);
  if (top === null || setProbability === null) {
    return {
      label: null,
      labels: null,
      confidence: null,
      margin: null,
      entropy: null,
      probabilities: null,
      labelMass: score.listMass,
      setProbability: null,
      unscoredMass,
      greedyLabels,
      invalidMass,
    };
  }
  const topKey = top.join(',');
  let second = 0;
  for (const [key, p] of score.sets) if (key !== topKey && p > second) second = p;
  return {
    label: null,
    labels: top.map((l) => (labels[l] as Label).name),
    confidence: setProbability,
    margin: setProbability - second,
    entropy: null,
    probabilities: score.marginals,
    labelMass: score.listMass,
    setProbability,
    unscoredMass,
    greedyLabels,
    invalidMass,
  };
}
