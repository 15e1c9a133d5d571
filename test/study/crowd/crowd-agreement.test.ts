import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Question } from '../../../contracts/codebook.js';
import { questionAgreement } from '../../../study/crowd/crowd-agreement.js';
import type { Proposal } from '../../../study/crowd/proposal.js';
import { krippendorffAlpha } from '../../../study/evaluation/krippendorff-alpha.js';

const LEVELS = ['low', 'medium', 'high'];

function question(ordered: boolean): Question {
  return {
    name: 'level',
    type: 'single_label',
    text: null,
    ordered,
    multiLabel: null,
    labels: LEVELS.map((name) => ({ name, description: null, answer: name, examples: [] })),
  };
}

const said = (label: string): Proposal => ({ labels: [label], probability: null, error: null });
const failed: Proposal = { labels: [], probability: null, error: 'request_failed' };

/** Three labellers over five documents; c fails on the last one. */
const PROPOSALS: Proposal[][] = [
  [said('low'), said('medium'), said('high'), said('high'), said('low')],
  [said('low'), said('high'), said('high'), said('medium'), said('low')],
  [said('low'), said('medium'), said('high'), said('low'), failed],
];

describe('questionAgreement', () => {
  it('uses ordinal alpha for an ordered question, over every proposal, missing ones left out', () => {
    const result = questionAgreement(question(true), ['a', 'b', 'c'], PROPOSALS);
    const data = PROPOSALS.map((row) => row.map((p) => p.labels[0] ?? null));
    assert.equal(result.krippendorffAlpha.level, 'ordinal');
    assert.equal(
      result.krippendorffAlpha.value,
      krippendorffAlpha(data, { level: 'ordinal', valueOrder: LEVELS }).alpha,
    );
    const nominal = questionAgreement(question(false), ['a', 'b', 'c'], PROPOSALS).krippendorffAlpha;
    assert.equal(nominal.level, 'nominal');
    assert.notEqual(nominal.value, result.krippendorffAlpha.value);
  });

  it('counts complete documents, disagreements and errors per labeller', () => {
    const result = questionAgreement(question(false), ['a', 'b', 'c'], PROPOSALS);
    assert.equal(result.documents, 5);
    assert.equal(result.completeDocuments, 4, 'the document c failed on is left out of Fleiss');
    assert.equal(result.disagreements, 2, 'documents 2 and 4; document 5 has two equal answers');
    assert.deepEqual(result.errors, { a: 0, b: 0, c: 1 });
    const ac = result.pairwiseCohenKappa.find((p) => p.a === 'a' && p.b === 'c');
    assert.equal(ac?.documents, 4);
  });

  it('gives null figures where nothing can be compared', () => {
    const result = questionAgreement(
      question(false),
      ['a', 'b'],
      [
        [failed, said('low')],
        [said('low'), failed],
      ],
    );
    assert.equal(result.fleissKappa, null);
    assert.equal(result.krippendorffAlpha.value, null);
    assert.deepEqual(
      result.pairwiseCohenKappa.map((p) => [p.documents, p.kappa]),
      [[0, null]],
    );
  });
});
