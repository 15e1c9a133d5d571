// The label distribution's maths without a model: renormalisation, top label, confidence, margin and entropy.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  fullVocabularyProbabilities,
  labelDistribution,
  probabilityMass,
} from '../../../worker/engine/label-distribution.js';

function softmax(logits: readonly number[]): number[] {
  const exps = logits.map((x) => Math.exp(x));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

describe('labelDistribution', () => {
  it('renormalises log-probabilities over the labels', () => {
    const logs = [Math.log(0.2), Math.log(0.05), Math.log(0.25)];
    const d = labelDistribution(logs);
    assert.ok(d !== null);
    const expected = [0.4, 0.1, 0.5];
    d.probabilities.forEach((p, i) => assert.ok(Math.abs(p - (expected[i] as number)) < 1e-15, `label ${i}: ${p}`));
    assert.ok(Math.abs(d.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-15);
  });

  it('gives the top label, its probability as confidence and its lead over the second as margin', () => {
    const d = labelDistribution([-2, -0.5, -1]);
    assert.ok(d !== null);
    const p = softmax([-2, -0.5, -1]);
    assert.equal(d.top, 1);
    assert.equal(d.confidence, d.probabilities[1]);
    assert.ok(Math.abs(d.confidence - (p[1] as number)) < 1e-15);
    assert.equal(d.margin, (d.probabilities[1] as number) - (d.probabilities[2] as number));
  });

  it('picks the first label on a tie, with margin 0', () => {
    const d = labelDistribution([-3, -1, -1]);
    assert.equal(d?.top, 1);
    assert.equal(d?.margin, 0);
  });

  it('gives the Shannon entropy in nats', () => {
    const uniform = labelDistribution([-7, -7, -7, -7]);
    assert.ok(Math.abs((uniform?.entropy ?? NaN) - Math.log(4)) < 1e-15);
    const p = softmax([0, -1, -3]);
    const h = -p.reduce((s, x) => s + x * Math.log(x), 0);
    assert.ok(Math.abs((labelDistribution([0, -1, -3])?.entropy ?? NaN) - h) < 1e-15);
  });

  it('shifts by the largest log-probability, so very unlikely labels do not underflow', () => {
    const d = labelDistribution([-1000, -1001]);
    assert.ok(d !== null);
    assert.ok(Math.abs((d.probabilities[0] as number) - 1 / (1 + Math.exp(-1))) < 1e-15);
  });

  it('gives a label of probability 0 a zero that adds nothing to the entropy', () => {
    const d = labelDistribution([-Infinity, -1, -Infinity]);
    assert.deepEqual([...(d?.probabilities ?? [])], [0, 1, 0]);
    assert.equal(d?.confidence, 1);
    assert.equal(d?.margin, 1);
    assert.equal(d?.entropy, 0);
  });

  it('returns null when every label has probability 0 (or the model gave no number)', () => {
    assert.equal(labelDistribution([-Infinity, -Infinity]), null);
    assert.equal(labelDistribution([NaN, -1]), null);
  });
});

describe('fullVocabularyProbabilities', () => {
  it('normalises the chosen tokens over the whole vocabulary from their logits and the total logit weight', () => {
    // A vocabulary of five tokens; only tokens 1 and 3 are wanted, token 4 is the greedy (largest) one.
    const vocabulary = [0.5, -1, 2, 1.5, 3];
    const max = Math.max(...vocabulary);
    const total = vocabulary.reduce((sum, l) => sum + Math.exp(l - max), 0);
    const read = {
      logits: new Map([
        [4, 3],
        [3, 1.5],
        [1, -1],
      ]),
      totalLogitWeight: total,
    };
    const p = fullVocabularyProbabilities(read, [1, 3]);
    const softmax = vocabulary.map((l) => Math.exp(l - max) / total);
    assert.ok(Math.abs((p.get(1) as number) - (softmax[1] as number)) < 1e-15);
    assert.ok(Math.abs((p.get(3) as number) - (softmax[3] as number)) < 1e-15);
    assert.deepEqual([...p.keys()], [1, 3]);
    assert.ok(Math.abs(probabilityMass(p) - ((softmax[1] as number) + (softmax[3] as number))) < 1e-15);
  });

  it('refuses a read whose total weight cannot include the largest logit', () => {
    assert.throws(() => fullVocabularyProbabilities({ logits: new Map([[1, 0]]), totalLogitWeight: 0.5 }, [1]), /0\.5/);
    assert.throws(() => fullVocabularyProbabilities({ logits: new Map(), totalLogitWeight: 2 }, [1]), /max logit/);
  });
});
