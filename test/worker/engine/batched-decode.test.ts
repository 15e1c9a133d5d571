// Batched decoding under load: with CPU burners started by the test competing for the cores, every document of
// several group sizes, decoded batched (one decode per group), is compared with serial decoding (one decode per
// document) and with the independent one-document reference; repeated runs give the same bits. Likewise a
// several-question codebook's batched tails (each on a copy of its document's cache, several in one decode) against
// each question's tail decoded alone and the independent one-prompt reference. Real llama.cpp, real GGUF fixture
// models (the keyword model, whose labels are known, and a random-weight model with real attention).

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { LlamaModel } from 'node-llama-cpp';
import { parseCodebook, type Codebook, type CodebookInput } from '../../../contracts/codebook.js';
import type { DocumentInput } from '../../../contracts/document-input.js';
import type { DocumentScore } from '../../../contracts/document-scorer.js';
import { llamaBuildFromEnvironment } from '../../../contracts/environment.js';
import { RescaleError } from '../../../contracts/errors.js';
import { BatchedDecode } from '../../../worker/engine/batched-decode.js';
import { planContext } from '../../../worker/engine/context-plan.js';
import { LabelScorer } from '../../../worker/engine/label-scorer.js';
import { getRuntime, loadModel } from '../../../worker/engine/llama-runtime.js';
import { SequencePool } from '../../../worker/engine/sequence-pool.js';
import { fixtureModel, type FixtureName } from '../../../scripts/harness/fixture-models.js';
import { referenceProbabilities } from '../../helpers/reference-scorer.js';

/**
 * Largest |Δp| allowed between batched and serial decoding of the same document (README, "Determinism": measured 0
 * on the keyword model, 1.9e-4 on the small and 1.3e-4 on the medium random-weight model: another summation order,
 * never another document's distribution, which would move probabilities by tenths).
 */
const BATCH_TOLERANCE = 1e-3;
/**
 * Largest |Δp| allowed between the engine and the one-document reference (the whole prompt in one call instead of
 * prefix + document): measured 2.0e-6 (keyword) and 3.8e-4 (small model); the scorer tests' layout tolerance.
 */
const REFERENCE_TOLERANCE = 2e-3;
/** Group sizes tried; 13 documents leave a partial last group for each. */
const GROUP_SIZES = [2, 3, 4] as const;
/** Busy processes competing with llama.cpp's thread and the sampling threads (the machine has 2 cores in CI). */
const BURNERS = 2;

// Keyword documents of varied lengths (so the rows of a batch are uneven) with the keyword model's known labels.
const FILLER = ' We walked along the harbour for a while, talked about the trip and the weather, and then went home.';
const keywordDocs: readonly { readonly text: string; readonly label: string }[] = [
  { text: 'I love this, what a great and happy day', label: 'positive' },
  { text: 'This is so awful, I hate it, terrible service', label: 'negative' },
  { text: 'The meeting is at 3pm in room 12', label: 'neutral' },
  { text: `Sunday:${FILLER}${FILLER} It was a wonderful and fun day, the best`, label: 'positive' },
  { text: 'worst game, sad and angry fans', label: 'negative' },
  { text: `According to the report${FILLER}`, label: 'neutral' },
  { text: 'so excited, thanks for the amazing party', label: 'positive' },
  { text: `The bus was late again${FILLER}${FILLER}${FILLER} what a boring and stupid wait`, label: 'negative' },
  { text: 'an update was announced and scheduled', label: 'neutral' },
  { text: 'nice', label: 'positive' },
  { text: 'the wrong and broken charger, poor quality', label: 'negative' },
  { text: `Lunch${FILLER} It was good and I enjoy it, glad we went`, label: 'positive' },
  { text: 'my phone is lost, so sorry and annoying', label: 'negative' },
];

type LabelInput = NonNullable<CodebookInput['labels']>[number];

const sentimentLabels: LabelInput[] = [{ name: 'negative' }, { name: 'neutral' }, { name: 'positive' }];
/** One-token answers in the random-weight models' (Llama 2 SPM) vocabulary. */
const spmLabels: LabelInput[] = [
  { name: 'negative', answer: 'bad' },
  { name: 'neutral', answer: 'none' },
  { name: 'positive', answer: 'good' },
];

function codebook(modelPath: string, labels: LabelInput[]): Codebook {
  return parseCodebook(
    {
      task: 'sentiment',
      labels,
      prompt: {
        system: 'You are a careful annotator. Answer with one label.',
        template: 'Classify the sentiment of the tweet as one of: {labels}.\n\nTweet: {text}',
      },
      // One thread: several threads spin on each other when the cores are taken (README, "Threads").
      model: { path: modelPath, max_document_tokens: 128, threads: 1 },
    },
    { source: 'batched.yaml' },
  );
}

type QuestionInput = NonNullable<CodebookInput['questions']>[number];

/** Four questions, one with two-token answers (an inner trie read after the tail), in the small models' vocabulary. */
const spmQuestions: QuestionInput[] = [
  { name: 'sentiment', question: 'What is the sentiment of the tweet?', labels: spmLabels },
  {
    name: 'polarity',
    question: 'Is it rather bad or rather good?',
    labels: [
      { name: 'negative', answer: 'bad' },
      { name: 'positive', answer: 'good' },
    ],
  },
  {
    name: 'intensity',
    question: 'How strong is the feeling?',
    labels: [
      { name: 'very_bad', answer: 'very bad' },
      { name: 'very_good', answer: 'very good' },
      { name: 'none', answer: 'none' },
    ],
  },
  { name: 'tone', question: 'Which tone does the writer take towards the reader?', labels: spmLabels },
];

function questionsCodebook(modelPath: string): Codebook {
  return parseCodebook(
    {
      task: 'questions',
      questions: spmQuestions,
      prompt: {
        system: 'You are a careful annotator. Answer with one label.',
        template: 'Tweet: {text}\n\n{question} Answer with one of: {labels}.',
      },
      model: { path: modelPath, max_document_tokens: 128, threads: 1 },
    },
    { source: 'questions.yaml' },
  );
}

function answerBits(scores: readonly DocumentScore[]): string[][] {
  return scores.map(
    (s) =>
      s.answers?.map((a) =>
        a.probabilities === null ? 'null' : Buffer.from(a.probabilities.buffer).toString('hex'),
      ) ?? [],
  );
}

/** Inner trie nodes of a question's answers (distinct strict prefixes): reads after its tail's root read. */
function innerReads(labelTokens: readonly (readonly number[])[]): number {
  const prefixes = new Set<string>();
  for (const tokens of labelTokens) for (let n = 1; n < tokens.length; n++) prefixes.add(tokens.slice(0, n).join(','));
  return prefixes.size;
}

function bits(scores: readonly DocumentScore[]): string[] {
  return scores.map((s) => (s.probabilities === null ? 'null' : Buffer.from(s.probabilities.buffer).toString('hex')));
}

function maxDifference(a: readonly (ArrayLike<number> | null)[], b: readonly (ArrayLike<number> | null)[]): number {
  let max = 0;
  a.forEach((p, i) => {
    const q = b[i];
    assert.ok(p !== null && q !== null && p !== undefined && q !== undefined, `document ${i} has no probabilities`);
    assert.equal(p.length, q.length);
    for (let j = 0; j < p.length; j++) max = Math.max(max, Math.abs((p[j] as number) - (q[j] as number)));
  });
  return max;
}

let burners: ChildProcess[] = [];

function startBurners(): void {
  burners = Array.from({ length: BURNERS }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
}

async function stopBurners(): Promise<void> {
  await Promise.all(
    burners.map(
      (burner) =>
        new Promise<void>((resolve) => {
          if (burner.exitCode !== null || burner.signalCode !== null) return resolve();
          burner.once('exit', () => resolve());
          burner.kill('SIGKILL');
        }),
    ),
  );
  burners = [];
}

function assertBurning(): void {
  assert.equal(burners.length, BURNERS);
  for (const burner of burners) assert.ok(burner.exitCode === null && burner.signalCode === null, 'a burner exited');
}

interface Fixture {
  readonly name: FixtureName;
  readonly labels: LabelInput[];
  /** The keyword model's designed labels, or null for a random-weight model. */
  readonly expected: readonly string[] | null;
}

const fixtures: readonly Fixture[] = [
  { name: 'keyword', labels: sentimentLabels, expected: keywordDocs.map((d) => d.label) },
  { name: 'small', labels: spmLabels, expected: null },
];

describe('batched decoding under load', () => {
  const docs: DocumentInput[] = keywordDocs.map((d) => ({ text: d.text }));
  const models = new Map<FixtureName, { path: string; model: LlamaModel }>();

  before(async () => {
    const llama = await getRuntime({ build: llamaBuildFromEnvironment() });
    for (const { name } of fixtures) {
      const path = await fixtureModel(name);
      models.set(name, { path, model: await loadModel(llama, path, 0) });
    }
    startBurners();
  });
  after(async () => {
    await stopBurners();
    for (const { model } of models.values()) await model.dispose();
  });

  async function score(
    fixture: Fixture,
    options: { sequences: number; decode: 'batched' | 'serial' },
  ): Promise<{ scores: DocumentScore[]; decodes: number; scorer: LabelScorer }> {
    const { path, model } = models.get(fixture.name) as { path: string; model: LlamaModel };
    const scorer = await LabelScorer.create(codebook(path, fixture.labels), { model, ...options });
    try {
      const scores = await scorer.score(docs);
      // Again, with every sequence's prefix cached: only the documents' decodes are counted, and the bits repeat.
      const before = scorer.decodeCalls;
      const repeated = await scorer.score(docs);
      assert.deepEqual(bits(repeated), bits(scores), `${fixture.name}: a second call on the same scorer`);
      return { scores, decodes: scorer.decodeCalls - before, scorer };
    } finally {
      await scorer.dispose();
    }
  }

  for (const fixture of fixtures) {
    it(`${fixture.name}: batched equals serial and the reference within bounds, same labels, same bits`, async (t) => {
      assertBurning();
      const serial = await score(fixture, { sequences: 1, decode: 'serial' });
      const labels = serial.scores.map((s) => s.label);
      if (fixture.expected !== null) assert.deepEqual(labels, fixture.expected);

      // The independent reference: one document at a time, a fresh context, the whole prompt in one call.
      const { model } = models.get(fixture.name) as { path: string; model: LlamaModel };
      const reference: number[][] = [];
      for (const doc of docs) {
        const prompt = serial.scorer.promptTokens(doc).tokens;
        reference.push(await referenceProbabilities(model, prompt, serial.scorer.labelTokens, { contextSize: 512 }));
      }
      const referenceDifference = maxDifference(
        reference,
        serial.scores.map((s) => s.probabilities),
      );
      t.diagnostic(`${fixture.name}: serial vs reference max |Δp| ${referenceDifference}`);
      assert.ok(referenceDifference <= REFERENCE_TOLERANCE, `serial vs reference: max |Δp| ${referenceDifference}`);

      for (const sequences of GROUP_SIZES) {
        assertBurning();
        const batched = await score(fixture, { sequences, decode: 'batched' });
        const where = `${fixture.name}, ${sequences} sequences`;
        // One decode per group (the last one partial), nothing else: the documents really were decoded together.
        assert.equal(batched.decodes, Math.ceil(docs.length / sequences), `${where}: decode calls`);
        assert.deepEqual(
          batched.scores.map((s) => s.label),
          labels,
          `${where}: labels`,
        );
        const probabilities = batched.scores.map((s) => s.probabilities);
        const serialDifference = maxDifference(
          probabilities,
          serial.scores.map((s) => s.probabilities),
        );
        t.diagnostic(`${where}: batched vs serial max |Δp| ${serialDifference}`);
        assert.ok(serialDifference <= BATCH_TOLERANCE, `${where}: batched vs serial max |Δp| ${serialDifference}`);
        const batchedReference = maxDifference(probabilities, reference);
        assert.ok(
          batchedReference <= BATCH_TOLERANCE + REFERENCE_TOLERANCE,
          `${where}: batched vs reference max |Δp| ${batchedReference}`,
        );
        if (sequences === GROUP_SIZES[GROUP_SIZES.length - 1]) {
          // A fresh scorer gives the same bits (each score() call already ran twice on its scorer).
          const again = await score(fixture, { sequences, decode: 'batched' });
          assert.deepEqual(bits(again.scores), bits(batched.scores), `${where}: bits differ between runs`);
          // Serial decoding on several sequences decodes each document alone: the same bits as one sequence.
          const serialGrouped = await score(fixture, { sequences, decode: 'serial' });
          assert.deepEqual(bits(serialGrouped.scores), bits(serial.scores), `${where}: serial on several sequences`);
          assert.equal(serialGrouped.decodes, docs.length);
        }
      }
      assertBurning();
    });
  }

  it('several questions: batched tails equal each tail decoded alone and the reference within bounds', async (t) => {
    assertBurning();
    const { path, model } = models.get('small') as { path: string; model: LlamaModel };
    const book = questionsCodebook(path);
    // Five documents (a partial last group for two sequences, one long document), each scored with four questions.
    const some = docs.slice(0, 5);
    const run = async (options: {
      sequences: number;
      decode: 'batched' | 'serial';
      tailSequences?: number;
    }): Promise<{ scores: DocumentScore[]; decodes: number; scorer: LabelScorer }> => {
      const scorer = await LabelScorer.create(book, { model, ...options });
      try {
        const scores = await scorer.score(some);
        const before = scorer.decodeCalls;
        const repeated = await scorer.score(some);
        assert.deepEqual(answerBits(repeated), answerBits(scores), 'a second call on the same scorer');
        return { scores, decodes: scorer.decodeCalls - before, scorer };
      } finally {
        await scorer.dispose();
      }
    };
    // One by one: each question's tail decoded alone on the document's sequence (no copies, no shared decodes).
    const serial = await run({ sequences: 1, decode: 'serial' });
    assert.equal(serial.scorer.settings.tailSequences, undefined);
    const inner = serial.scorer.questionLabelTokens.map(innerReads);
    assert.deepEqual(inner, [0, 0, 1, 0], 'the intensity answers should share their first token');
    const prompts = spmQuestions.length;
    assert.equal(serial.decodes, some.length * (1 + prompts + 1));

    // The independent reference: each question's whole prompt in one call, a fresh context.
    const reference: number[][][] = [];
    for (const doc of some) {
      const perQuestion: number[][] = [];
      for (const q of spmQuestions.keys()) {
        const prompt = serial.scorer.promptTokens(doc, q).tokens;
        const labels = serial.scorer.questionLabelTokens[q] ?? [];
        perQuestion.push(await referenceProbabilities(model, prompt, labels, { contextSize: 512 }));
      }
      reference.push(perQuestion);
    }
    const question = (scores: readonly DocumentScore[], q: number): (Float64Array | null)[] =>
      scores.map((s) => s.answers?.[q]?.probabilities ?? null);
    for (const q of spmQuestions.keys()) {
      const difference = maxDifference(
        question(serial.scores, q),
        reference.map((r) => r[q] ?? null),
      );
      assert.ok(difference <= REFERENCE_TOLERANCE, `q ${q}: one by one vs reference: max |Δp| ${difference}`);
    }

    // Tail slots: all of a group's prompts in one chunk, or 3 (chunks that split a document's prompts and, with two
    // documents per group, hold two documents' tails).
    for (const options of [
      { sequences: 1, tails: prompts },
      { sequences: 1, tails: 3 },
      { sequences: 2, tails: 3 },
    ]) {
      assertBurning();
      const where = `${options.sequences} sequence(s), ${options.tails} tail slots`;
      const batched = await run({ sequences: options.sequences, decode: 'batched', tailSequences: options.tails });
      assert.equal(batched.scorer.settings.tailSequences, options.tails, where);
      // Per group: the documents' decode, then per chunk of (document, question) pairs one decode for the tails and
      // one per level of inner reads.
      let decodes = 0;
      for (let first = 0; first < some.length; first += options.sequences) {
        const pairs = Math.min(options.sequences, some.length - first) * prompts;
        decodes += 1;
        for (let start = 0; start < pairs; start += options.tails) {
          const chunk = Array.from({ length: Math.min(options.tails, pairs - start) }, (_, i) => (start + i) % prompts);
          decodes += 1 + Math.max(...chunk.map((q) => inner[q] as number));
        }
      }
      assert.equal(batched.decodes, decodes, `${where}: decode calls`);
      for (const q of spmQuestions.keys()) {
        const probabilities = question(batched.scores, q);
        assert.deepEqual(
          batched.scores.map((s) => s.answers?.[q]?.label),
          serial.scores.map((s) => s.answers?.[q]?.label),
          `${where} q ${q}: labels`,
        );
        const serialDifference = maxDifference(probabilities, question(serial.scores, q));
        t.diagnostic(`${where} q ${q}: batched tails vs one by one max |Δp| ${serialDifference}`);
        assert.ok(serialDifference <= BATCH_TOLERANCE, `${where} q ${q}: vs one by one: max |Δp| ${serialDifference}`);
        const referenceDifference = maxDifference(
          probabilities,
          reference.map((r) => r[q] ?? null),
        );
        assert.ok(
          referenceDifference <= BATCH_TOLERANCE + REFERENCE_TOLERANCE,
          `${where} q ${q}: vs reference: max |Δp| ${referenceDifference}`,
        );
      }
      assert.deepEqual(
        batched.scores.map((s) => s.tokens),
        serial.scores.map((s) => s.tokens),
        `${where}: tokens`,
      );
    }
    assertBurning();
  });

  it('fails a group whose evaluations were not queued together, naming what it saw', async () => {
    const { path, model } = models.get('keyword') as { path: string; model: LlamaModel };
    const book = codebook(path, sentimentLabels);
    const measure = { sharedPrefixTokens: 0, templateTokens: 0, longestLabelTokens: 1, trainContextSize: 4096 };
    const plan = planContext(book, measure, { sequences: 3 });
    const pool = await SequencePool.create(model, book.model, plan, []);
    try {
      const decode = new BatchedDecode(pool);
      const tokens = model.tokenize(' love it');
      // Submitted together: one decode.
      await decode.each([0, 1, 2], (_, slot) => pool.sequence(slot).controlledEvaluate([...tokens]));
      // The third evaluation arrives late (after a timer): the layout would depend on timing, so the group fails.
      await Promise.all([0, 1, 2].map((slot) => pool.rewind(slot, 0)));
      await assert.rejects(
        decode.each([0, 1, 2], async (_, slot) => {
          if (slot === 2) await new Promise((resolve) => setTimeout(resolve, 50));
          return pool.sequence(slot).controlledEvaluate([...tokens]);
        }),
        (e: unknown) =>
          e instanceof RescaleError && /expected the 3 evaluations of a group in one dispatch/.test(e.message),
      );
    } finally {
      await pool.dispose();
    }
  });
});
