// The label distribution's maths, apart from any model: each label's log-probability in, the renormalised
// distribution and its summary statistics (top label, confidence, margin, entropy) out.

export interface LabelDistribution {
  /** In label order; sums to 1. */
  readonly probabilities: Float64Array;
  /** Index of the most probable label (the first one on a tie). */
  readonly top: number;
  /** The top label's probability. */
  readonly confidence: number;
  /** Top probability minus the second. */
  readonly margin: number;
  /** Shannon entropy, in nats. */
  readonly entropy: number;
}

/**
 * Renormalises log-probabilities over the labels (a softmax, shifted by the largest for range). Null when no label
 * has a finite log-probability: every label has probability 0 under the model.
 */
export function labelDistribution(logProbabilities: readonly number[]): LabelDistribution | null {
  const max = Math.max(...logProbabilities);
  if (!Number.isFinite(max)) return null;
  const probabilities = new Float64Array(logProbabilities.length);
  let sum = 0;
  logProbabilities.forEach((lp, i) => {
    const p = Math.exp(lp - max);
    probabilities[i] = p;
    sum += p;
  });
  let top = 0;
  let entropy = 0;
  for (let i = 0; i < probabilities.length; i++) {
    const p = (probabilities[i] as number) / sum;
    probabilities[i] = p;
    if (p > (probabilities[top] as number)) top = i;
    if (p > 0) entropy -= p * Math.log(p);
  }
  let second = 0;
  for (let i = 0; i < probabilities.length; i++) if (i !== top) second = Math.max(second, probabilities[i] as number);
  const confidence = probabilities[top] as number;
  return { probabilities, top, confidence, margin: confidence - second, entropy };
}
