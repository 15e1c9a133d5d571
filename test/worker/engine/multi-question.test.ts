// Multi-question codebooks in the label scorer, on real GGUF fixture models: the document is evaluated once and each
// question's tail is decoded after it; every question's probabilities equal its own one-question codebook's, whose
// template renders the same prompt tokens, and an independent whole-prompt reference.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseCodebook, type Codebook, type CodebookInput } from '../../../contracts/codebook.js';
import type { DocumentInput } from '../../../contracts/document-input.js';
import type { DocumentScore } from '../../../contracts/document-scorer.js';
import { llamaBuildFromEnvironment } from '../../../contracts/environment.js';
import { questionLayout } from '../../../contracts/question-layout.js';
import { LabelScorer } from '../../../worker/engine/label-scorer.js';
import { getRuntime, loadModel } from '../../../worker/engine/llama-runtime.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';
import { referenceProbabilities } from '../../helpers/reference-scorer.js';

/** Prefix + document and tail in two calls vs one-question scoring (README, "Determinism"). */
const LAYOUT_TOLERANCE = 2e-3;
/** Batched vs serial decoding (batched-decode.test.ts). */
const BATCH_TOLERANCE = 1e-3;

let keyword: string;
let multitoken: string;
let scorers: LabelScorer[] = [];

before(async () => {
  [keyword, multitoken] = await Promise.all([fixtureModel('keyword'), fixtureModel('keyword-multitoken')]);
});
after(async () => {
  await Promise.all(scorers.map((s) => s.dispose()));
});

async function create(
  codebook: Codebook,
  options: { sequences?: number; decode?: 'serial' } = {},
): Promise<LabelScorer> {
  const scorer = await LabelScorer.create(codebook, options);
  scorers.push(scorer);
  return scorer;
}

type QuestionInput = NonNullable<CodebookInput['questions']>[number];

const sentiment: QuestionInput = {
  name: 'sentiment',
  question: 'What is the sentiment of the tweet?',
  labels: [{ name: 'negative' }, { name: 'neutral' }, { name: 'positive' }],
};
const polarity: QuestionInput = {
  name: 'polarity',
  question: 'Is the tweet rather negative or rather positive?',
  labels: [{ name: 'negative' }, { name: 'positive' }],
};

const DOCUMENT_FIRST = 'Tweet: {text}\n\n{question} Answer with one of: {labels}.';
const QUESTION_FIRST = '{question} Answer with one of: {labels}.\n\nTweet: {text}';

function codebookOf(template: string, questions: readonly QuestionInput[], model = keyword): Codebook {
  return parseCodebook(
    {
      task: 'multi',
      questions: [...questions],
      prompt: { system: 'You are a careful annotator. Answer with one label.', template },
      model: { path: model, max_document_tokens: 128, threads: 2 },
    },
    { source: 'multi.yaml' },
  );
}

/** The one-question codebook whose template renders exactly the prompt the question gets in `template`. */
function ownCodebook(template: string, question: QuestionInput, model = keyword): Codebook {
  const text = (question.question ?? '').replaceAll('{', '{{').replaceAll('}', '}}');
  return parseCodebook(
    {
      task: 'single',
      labels: question.labels,
      prompt: {
        system: 'You are a careful annotator. Answer with one label.',
        template: template.replaceAll('{question}', text),
      },
      model: { path: model, max_document_tokens: 128, threads: 2 },
    },
    { source: 'single.yaml' },
  );
}

const docs: DocumentInput[] = [
  { text: 'I love this, what a great and happy day' },
  { text: 'This is awful. I hate it, terrible service' },
  { text: 'The meeting is at 3pm in room 12' },
  { text: 'great great but awful' },
  { text: 'best concert ever, amazing crowd' },
  { text: '' },
  { text: 'Hopefully the peace talks finish this week' },
];

function answer(score: DocumentScore | undefined, q: number): Float64Array | null {
  return score?.answers?.[q]?.probabilities ?? null;
}

function assertClose(
  actual: ArrayLike<number> | null,
  expected: ArrayLike<number> | null,
  tolerance: number,
  what: string,
): void {
  assert.ok(actual !== null && expected !== null, `${what}: missing probabilities`);
  assert.equal(actual.length, expected.length, what);
  for (let j = 0; j < actual.length; j++)
    assert.ok(
      Math.abs((actual[j] as number) - (expected[j] as number)) < tolerance,
      `${what} label ${j}: ${actual[j]} vs ${expected[j]}`,
    );
}

/** Tokens the trie walk evaluates beyond the prompt: each inner node's path once (distinct strict prefixes). */
function innerPathTokens(labelTokens: readonly (readonly number[])[]): number {
  const prefixes = new Set<string>();
  for (const tokens of labelTokens) for (let n = 1; n < tokens.length; n++) prefixes.add(tokens.slice(0, n).join(','));
  return [...prefixes].reduce((sum, key) => sum + key.split(',').length, 0);
}

describe('LabelScorer with several questions', () => {
  for (const [layout, template] of [
    ['document-first', DOCUMENT_FIRST],
    ['question-first', QUESTION_FIRST],
  ] as const) {
    it(`gives each question the probabilities of its own one-question codebook (${layout} template)`, async () => {
      const questions = [sentiment, polarity];
      const codebook = codebookOf(template, questions);
      assert.equal(questionLayout(codebook).kind, layout);
      const multi = await create(codebook);
      const results = await multi.score(docs);
      for (const [q, question] of questions.entries()) {
        const own = await create(ownCodebook(template, question));
        const expected = await own.score(docs);
        for (const [i, doc] of docs.entries()) {
          if (doc.text === '') {
            assert.equal(results[i]?.status, 'empty_text');
            continue;
          }
          // Same prompt tokens, so the same computation up to the batch layout.
          assert.deepEqual(multi.promptTokens(doc, q).tokens, own.promptTokens(doc).tokens, `doc ${i} q ${q}`);
          assertClose(answer(results[i], q), expected[i]?.probabilities ?? null, LAYOUT_TOLERANCE, `doc ${i} q ${q}`);
          assert.equal(results[i]?.answers?.[q]?.label, expected[i]?.label, `doc ${i} q ${q}`);
        }
      }
    });
  }

  it('equals the independent whole-prompt reference and labels as the keyword model was built to', async () => {
    const multi = await create(codebookOf(DOCUMENT_FIRST, [sentiment, polarity]));
    const results = await multi.score(docs);
    assert.deepEqual(
      results.map((r) => r.answers?.map((a) => a.label) ?? null),
      [
        ['positive', 'positive'],
        ['negative', 'negative'],
        ['neutral', results[2]?.answers?.[1]?.label],
        ['positive', 'positive'],
        ['positive', 'positive'],
        null,
        results[6]?.answers?.map((a) => a.label),
      ],
    );
    assert.deepEqual(
      results.map((r) => r.status),
      ['ok', 'ok', 'ok', 'ok', 'ok', 'empty_text', 'ok'],
    );
    for (const r of results.filter((r) => r.status === 'ok')) {
      assert.equal(r.label, null);
      assert.equal(r.probabilities, null);
      assert.equal(r.answers?.length, 2);
    }
    const llama = await getRuntime({ build: llamaBuildFromEnvironment() });
    const model = await loadModel(llama, keyword, 0);
    try {
      for (const [i, doc] of docs.entries()) {
        if (doc.text === '') continue;
        for (const q of [0, 1]) {
          const prompt = multi.promptTokens(doc, q).tokens;
          const labels = multi.questionLabelTokens[q] ?? [];
          const expected = await referenceProbabilities(model, prompt, labels, { contextSize: 512 });
          assertClose(answer(results[i], q), expected, LAYOUT_TOLERANCE, `doc ${i} q ${q}`);
        }
      }
    } finally {
      await model.dispose();
    }
  });

  it('evaluates the document once: tokens = prefix miss + document + each question tail + label paths', async () => {
    const questions: QuestionInput[] = [
      {
        name: 'intensity',
        question: 'How strong is the feeling?',
        labels: [
          { name: 'very_negative', answer: 'very negative' },
          { name: 'very_positive', answer: 'very positive' },
          { name: 'neutral' },
        ],
      },
      {
        name: 'calm',
        question: 'Is it calm?',
        labels: [{ name: 'neutral' }, { name: 'very_positive', answer: 'very positive' }],
      },
    ];
    const multi = await create(codebookOf(DOCUMENT_FIRST, questions, multitoken));
    const results = await multi.score(docs);
    const paths = multi.questionLabelTokens.map(innerPathTokens);
    assert.ok((paths[0] as number) > 0, 'the fixture labels should span several tokens');
    let separate = 0;
    let together = 0;
    for (const [i, doc] of docs.entries()) {
      if (doc.text === '') continue;
      const cost = multi.documentCost(doc);
      assert.ok(cost.document > 0 && cost.tails.every((t) => t > 0), `doc ${i}`);
      const expected = cost.document + cost.tails.reduce((a, b) => a + b, 0) + paths.reduce((a, b) => a + b, 0);
      assert.equal(results[i]?.tokens, expected, `doc ${i}`);
      // Each question as its own prompt would evaluate the document again.
      const ownPrompts = cost.prompts.reduce((a, p) => a + p - cost.sharedPrefix, 0);
      assert.equal(ownPrompts, expected - paths.reduce((a, b) => a + b, 0) + cost.document * (questions.length - 1));
      separate += ownPrompts;
      together += expected;
    }
    assert.ok(together < separate, `${together} tokens together vs ${separate} separately`);
  });

  it("decodes several documents' questions together within tolerance of serial decoding, same labels", async () => {
    const codebook = codebookOf(DOCUMENT_FIRST, [sentiment, polarity]);
    // Each document and each question's tail decoded alone.
    const serial = await (await create(codebook, { decode: 'serial' })).score(docs);
    for (const sequences of [2, 3]) {
      for (const template of [DOCUMENT_FIRST, QUESTION_FIRST]) {
        const batched = await (await create(codebookOf(template, [sentiment, polarity]), { sequences })).score(docs);
        const reference =
          template === DOCUMENT_FIRST
            ? serial
            : await (await create(codebookOf(template, [sentiment, polarity]), { decode: 'serial' })).score(docs);
        batched.forEach((score, i) => {
          assert.equal(score.status, reference[i]?.status);
          assert.equal(score.tokens, reference[i]?.tokens, `doc ${i}`);
          score.answers?.forEach((a, q) => {
            assert.equal(a.label, reference[i]?.answers?.[q]?.label);
            assertClose(
              a.probabilities,
              answer(reference[i], q),
              BATCH_TOLERANCE,
              `sequences ${sequences} doc ${i} q ${q}`,
            );
          });
        });
      }
    }
    // Serial decoding on several sequences is the same computation as one sequence, bit for bit.
    const serialOnThree = await (await create(codebook, { sequences: 3, decode: 'serial' })).score(docs);
    assert.deepEqual(
      serialOnThree.map((s) => s.answers?.map((a) => [...(a.probabilities ?? [])])),
      serial.map((s) => s.answers?.map((a) => [...(a.probabilities ?? [])])),
    );
  });
});
