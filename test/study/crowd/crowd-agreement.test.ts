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

describe('questionAgreement on a multi-label question', () => {
  const MOODS = ['a', 'b', 'c', 'd'];
  const setQuestion: Question = {
    name: 'moods',
    type: 'multi_label',
    text: null,
    ordered: false,
    multiLabel: null,
    labels: MOODS.map((name) => ({ name, description: null, answer: name, examples: [] })),
  };
  const set = (...labels: string[]): Proposal => ({ labels, probability: 0.5, error: null });
  /** Three labellers over five documents; the second fails on the last; nobody proposes d. */
  const SETS: Proposal[][] = [
    [set('a'), set('a', 'b'), set(), set('c'), set('a')],
    [set('a'), set('b'), set(), set('c'), failed],
    [set('a', 'b'), set('a', 'b'), set('c'), set('c'), set('a')],
  ];

  /**
   * Nominal alpha of binary judgements, from its closed form 1 − (n − 1)·o_yn / (n_y·n_n): o_yn sums, over documents
   * with m ≥ 2 judgements, n_yes·n_no / (m − 1); n_y and n_n count the judgements of those documents.
   */
  function binaryAlpha(label: string): number {
    let oYN = 0;
    let nY = 0;
    let nN = 0;
    for (let d = 0; d < 5; d++) {
      const given = SETS.flatMap((row) => (row[d]?.error === null ? [row[d]?.labels.includes(label) ?? false] : []));
      if (given.length < 2) continue;
      const yes = given.filter(Boolean).length;
      const no = given.length - yes;
      oYN += (yes * no) / (given.length - 1);
      nY += yes;
      nN += no;
    }
    return 1 - ((nY + nN - 1) * oYN) / (nY * nN);
  }

  it('gives each label’s alpha over yes/no judgements and their mean', () => {
    const result = questionAgreement(setQuestion, ['x', 'y', 'z'], SETS);
    const expected = ['a', 'b', 'c'].map(binaryAlpha);
    assert.deepEqual(
      result.perLabelAlpha?.map((p) => p.label),
      MOODS,
    );
    result.perLabelAlpha?.slice(0, 3).forEach((p, i) => {
      assert.ok(Math.abs((p.alpha as number) - (expected[i] as number)) < 1e-12, `${p.label}: ${p.alpha}`);
    });
    assert.equal(result.perLabelAlpha?.[3]?.alpha, null, 'd: every judgement is no, alpha undefined');
    const mean = expected.reduce((x, y) => x + y, 0) / 3;
    assert.ok(Math.abs((result.krippendorffAlpha.value as number) - mean) < 1e-12);
    assert.equal(result.krippendorffAlpha.level, 'nominal');
    assert.equal(result.disagreements, 3, 'documents 1, 2 and 3; an empty set is a proposal');
    assert.equal(result.completeDocuments, 4);
    assert.deepEqual(result.errors, { x: 0, y: 1, z: 0 });
    assert.equal(result.fleissKappa, null);
    assert.deepEqual(
      result.pairwiseCohenKappa.map((p) => [p.a, p.b, p.documents, p.kappa]),
      [
        ['x', 'y', 4, null],
        ['x', 'z', 5, null],
        ['y', 'z', 4, null],
      ],
    );
  });
});
