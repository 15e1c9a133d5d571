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

/**
 * What llama.cpp returns for one decoded position when asked for a logits filter and the total logit weight: the
 * chosen tokens' raw logits (the filter's tokens plus the greedily selected, i.e. largest-logit, token) and
 * W = Σ over the whole vocabulary of exp(logit − maxLogit).
 */
export interface FilteredLogits {
  readonly logits: ReadonlyMap<number, number>;
  readonly totalLogitWeight: number;
}

/**
 * Each wanted token's probability over the FULL vocabulary at one position: exp(logit − maxLogit) / W. The largest
 * logit is among the returned ones (the greedy choice is always included), so maxLogit is their maximum. A token
 * missing from the filter output gets probability 0 (it cannot happen for a token that is in the vocabulary).
 */
export function fullVocabularyProbabilities(read: FilteredLogits, tokens: readonly number[]): Map<number, number> {
  const { logits, totalLogitWeight } = read;
  let maxLogit = -Infinity;
  for (const logit of logits.values()) if (logit > maxLogit) maxLogit = logit;
  if (!(totalLogitWeight >= 1) || !Number.isFinite(totalLogitWeight) || !Number.isFinite(maxLogit)) {
    // W includes exp(0) for the largest logit, so it is at least 1; anything else is not a valid read.
    throw new RangeError(`invalid next-token read: total logit weight ${totalLogitWeight}, max logit ${maxLogit}`);
  }
  const probabilities = new Map<number, number>();
  for (const token of tokens) {
    const logit = logits.get(token);
    probabilities.set(token, logit === undefined ? 0 : Math.exp(logit - maxLogit) / totalLogitWeight);
  }
  return probabilities;
}

/** Σ of the given tokens' probabilities: the mass the model puts on the labels' first tokens at the root. */
export function probabilityMass(probabilities: ReadonlyMap<number, number>): number {
  let mass = 0;
  for (const p of probabilities.values()) mass += p;
  return mass;
}
