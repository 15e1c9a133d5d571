// A per_label multi-label question in the label scorer, on the keyword fixture model: each label asked as a yes/no
// question after the document, evaluated once. The keyword model answers "positive" when the prompt holds more
// positive than negative keywords, so with answers yes: positive, no: negative a label is in the set exactly when the
// document's keyword balance beats the one its description holds: a known function of the text. Each label's P(yes)
// equals an independent reference that renders that label's prompt alone and scores it on a fresh sequence.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseCodebook, type Codebook } from '../../../contracts/codebook.js';
import type { DocumentInput } from '../../../contracts/document-input.js';
import { isRescaleError } from '../../../contracts/errors.js';
import { llamaBuildFromEnvironment } from '../../../contracts/environment.js';
import { LabelScorer } from '../../../worker/engine/label-scorer.js';
import { getRuntime, loadModel } from '../../../worker/engine/llama-runtime.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';
import { referenceProbabilities } from '../../helpers/reference-scorer.js';

/** Whole prompt on a fresh sequence vs prefix + document + tail (README, "Determinism": 2.0e-6 on this model). */
const REFERENCE_TOLERANCE = 1e-5;

const TEMPLATE = 'Tweet: {text}\n\n{question} Answer yes or no.';
const QUESTION = 'Does the tweet feel {description}?';
/** Each label's description holds keywords: its keyword balance (negative minus positive) is the bar to beat. */
const MOODS = [
  { name: 'cheer', description: 'glad', bar: -1 },
  { name: 'gloom', description: 'sad, angry and sorry', bar: 3 },
  { name: 'mixed', description: 'wonderful but awful and bad', bar: 1, threshold: 0.6 },
];
/** Documents and their keyword balance (positive minus negative keywords); none ties a bar. */
const DOCS: { text: string; balance: number }[] = [
  { text: 'I love this, what a great and happy day, best ever', balance: 4 },
  { text: 'This is awful. I hate it, terrible service', balance: -3 },
  { text: 'The meeting is at 3pm in room 12', balance: 0 },
  { text: 'great fun, nice but awful', balance: 2 },
];

let model: string;
const scorers: LabelScorer[] = [];
before(async () => {
  model = await fixtureModel('keyword');
});
after(async () => {
  await Promise.all(scorers.map((s) => s.dispose()));
});

function moodsCodebook(multiLabel: object = {}): Codebook {
  return parseCodebook(
    {
      task: 'moods',
      questions: [
        {
          name: 'moods',
          type: 'multi_label',
          question: QUESTION,
          labels: MOODS.map(({ bar: _bar, ...label }) => label),
          multi_label: { format: 'per_label', answers: { yes: 'positive', no: 'negative' }, ...multiLabel },
        },
      ],
      prompt: { template: TEMPLATE },
      model: { path: model, max_document_tokens: 64, threads: 2 },
    },
    { source: 'moods.yaml' },
  );
}

/** One label's prompt as a one-question codebook of its own: the same tokens, the yes/no answers as its labels. */
function ownCodebook(description: string): Codebook {
  return parseCodebook(
    {
      task: 'one-mood',
      labels: [
        { name: 'yes', answer: 'positive' },
        { name: 'no', answer: 'negative' },
      ],
      prompt: { template: TEMPLATE.replace('{question}', QUESTION.replace('{description}', description)) },
      model: { path: model, max_document_tokens: 64, threads: 2 },
    },
    { source: 'one-mood.yaml' },
  );
}

async function create(codebook: Codebook, options: { sequences?: number } = {}): Promise<LabelScorer> {
  const scorer = await LabelScorer.create(codebook, options);
  scorers.push(scorer);
  return scorer;
}

const inputs: DocumentInput[] = DOCS.map((d) => ({ text: d.text }));

let shared: Promise<LabelScorer> | undefined;
/** One scorer for the tests that only read from it (creating one costs seconds on a busy machine). */
function moodsScorer(): Promise<LabelScorer> {
  shared ??= create(moodsCodebook());
  return shared;
}

describe('LabelScorer with a per_label multi-label question', () => {
  it('puts a label in the set exactly when the document beats its bar, with exact marginals, summaries', async () => {
    const scorer = await moodsScorer();
    const scores = await scorer.score([...inputs, { text: '  ' }]);
    DOCS.forEach((doc, i) => {
      const answer = scores[i]?.answers?.[0];
      assert.equal(scores[i]?.status, 'ok');
      assert.equal(scores[i]?.label, null);
      const expected = MOODS.filter((m) => doc.balance > m.bar).map((m) => m.name);
      assert.deepEqual(answer?.labels, expected, `document ${i}`);
      const p = [...(answer?.probabilities ?? [])];
      assert.equal(p.length, MOODS.length);
      // One keyword of difference in a ~50-token prompt is several logits: far from every threshold.
      MOODS.forEach((m, l) => assert.ok(doc.balance > m.bar ? p[l]! > 0.95 : p[l]! < 0.05, `doc ${i} ${m.name}`));
      const thresholds = [0.5, 0.5, 0.6];
      const confidence = p.reduce((c, x, l) => c * (x >= thresholds[l]! ? x : 1 - x), 1);
      assert.equal(answer?.confidence, confidence);
      assert.equal(answer?.margin, Math.min(...p.map((x, l) => Math.abs(x - thresholds[l]!))));
      assert.equal(answer?.entropy, null);
      // The smallest raw mass on the two answers over the labels (≤ 1 up to float rounding).
      const mass = answer?.labelMass ?? NaN;
      assert.ok(mass > 0 && mass <= 1 + 1e-12, `label mass ${mass}`);
    });
    assert.equal(scores[DOCS.length]?.status, 'empty_text');
    assert.equal(scores[DOCS.length]?.answers, undefined);
  });

  it('gives each label the P(yes) of its own prompt scored alone on a fresh sequence, and its tokens', async () => {
    const scorer = await moodsScorer();
    const scores = await scorer.score(inputs);
    let worst = 0;
    const llama = await getRuntime({ build: llamaBuildFromEnvironment() });
    const reference = await loadModel(llama, model, 0);
    try {
      for (const [l, mood] of MOODS.entries()) {
        const own = await create(ownCodebook(mood.description));
        const ownScores = await own.score(inputs);
        for (const [i, doc] of inputs.entries()) {
          // The label's prompt rendered alone, as a one-question codebook, is the prompt the scorer used.
          const tokens = own.promptTokens(doc).tokens;
          assert.deepEqual(scorer.promptTokens(doc, l).tokens, tokens, `the prompt of ${mood.name}, document ${i}`);
          const [expected] = await referenceProbabilities(reference, tokens, own.labelTokens, { contextSize: 512 });
          const p = scores[i]?.answers?.[0]?.probabilities?.[l] as number;
          worst = Math.max(worst, Math.abs(p - (expected as number)));
          assert.ok(
            Math.abs(p - (expected as number)) < REFERENCE_TOLERANCE,
            `${mood.name} doc ${i}: ${p} vs ${expected}`,
          );
          // The label's own one-question codebook, scored by the engine: the same decode layout, the same bits.
          assert.equal(p, ownScores[i]?.probabilities?.[0], `${mood.name} doc ${i} vs its own codebook`);
        }
      }
    } finally {
      await reference.dispose();
    }
    console.log(`per_label P(yes) vs one-by-one reference: max |Δp| ${worst.toExponential(2)}`);
  });

  it('evaluates the document once: a document costs its part plus each label’s tail', async () => {
    const scorer = await moodsScorer();
    const [score] = await scorer.score([inputs[0]!]);
    const cost = scorer.documentCost(inputs[0]!);
    assert.equal(cost.tails.length, MOODS.length);
    // The yes/no answers are one token each: no trie path beyond the tails.
    assert.equal(score?.tokens, cost.document + cost.tails.reduce((a, b) => a + b, 0));
    assert.ok(cost.document > cost.tails[0]!, 'the document is the larger part');
  });

  it('gives the same bits on every run', async () => {
    const first = await (await moodsScorer()).score(inputs);
    const again = await (await create(moodsCodebook())).score(inputs);
    assert.deepEqual(again, first);
  });

  it('refuses yes/no answers where one tokenises as the start of the other, naming the field', async () => {
    await assert.rejects(
      LabelScorer.create(moodsCodebook({ answers: { yes: 'very', no: 'very negative' } })),
      (e: unknown) =>
        isRescaleError(e, 'LABEL_INVALID') &&
        /field "questions\[0\]\.multi_label\.answers": "very" and "very negative" tokenise so that one is the start/.test(
          e.message,
        ),
    );
  });
});
