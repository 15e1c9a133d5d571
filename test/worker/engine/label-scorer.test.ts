// The label scorer on real GGUF fixture models through real llama.cpp: exactness against an independent
// reference, the keyword model's designed labels, adapters, multi-token labels, determinism, truncation, errors.

import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseCodebook, type Codebook, type CodebookInput } from '../../../contracts/codebook.js';
import { RescaleError } from '../../../contracts/errors.js';
import type { DocumentScore } from '../../../contracts/document-scorer.js';
import { LabelScorer } from '../../../worker/engine/label-scorer.js';
import { llamaBuildFromEnvironment } from '../../../contracts/environment.js';
import { getRuntime, loadModel } from '../../../worker/engine/llama-runtime.js';
import type { DocumentInput } from '../../../contracts/document-input.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';
import { referenceProbabilities } from '../../helpers/reference-scorer.js';

/** Largest difference between probabilities seen when the batch layout changes (README, "Determinism"). */
const LAYOUT_TOLERANCE = 2e-3;

let dir: string;
let keyword: string;
let keywordAdapter: string;
let multitoken: string;
let small: string;
let smallAdapter: string;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'rescale-scorer-'));
  [keyword, keywordAdapter, multitoken, small, smallAdapter] = await Promise.all([
    fixtureModel('keyword'),
    fixtureModel('keyword-adapter'),
    fixtureModel('keyword-multitoken'),
    fixtureModel('small'),
    fixtureModel('small-adapter'),
  ]);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

type ModelOverrides = Partial<CodebookInput['model']>;

function sentimentCodebook(
  overrides: Omit<Partial<CodebookInput>, 'model'> & { model?: ModelOverrides } = {},
): Codebook {
  const { model, ...rest } = overrides;
  return parseCodebook(
    {
      task: 'sentiment',
      labels: [{ name: 'negative' }, { name: 'neutral' }, { name: 'positive' }],
      prompt: {
        system: 'You are a careful annotator. Answer with one label.',
        template: 'Classify the sentiment of the tweet as one of: {labels}.\n\nTweet: {text}',
      },
      ...rest,
      model: { path: keyword, max_document_tokens: 128, threads: 2, ...model },
    },
    { source: 'test.yaml' },
  );
}

const docs: DocumentInput[] = [
  { text: 'I love this, what a great and happy day' },
  { text: 'This is awful. I hate it, terrible service' },
  { text: 'The meeting is at 3pm in room 12' },
  { text: 'great great but awful' },
  { text: 'Not sure what to think about the new phone' },
  { text: 'best concert ever, amazing crowd' },
  { text: 'Hopefully the peace talks finish this week' },
];

async function score(
  codebook: Codebook,
  input: readonly DocumentInput[],
  options: { sequences?: number } = {},
): Promise<DocumentScore[]> {
  const scorer = await LabelScorer.create(codebook, options);
  try {
    return await scorer.score(input);
  } finally {
    await scorer.dispose();
  }
}

function maxDifference(a: readonly DocumentScore[], b: readonly DocumentScore[]): number {
  let max = 0;
  a.forEach((x, i) =>
    x.probabilities?.forEach((p, j) => (max = Math.max(max, Math.abs(p - (b[i]?.probabilities?.[j] ?? NaN))))),
  );
  return max;
}

/** Tokens the trie walk evaluates beyond the prompt: each inner node's path once (distinct strict prefixes). */
function innerPathTokens(labelTokens: readonly (readonly number[])[]): number {
  const prefixes = new Set<string>();
  for (const tokens of labelTokens) for (let n = 1; n < tokens.length; n++) prefixes.add(tokens.slice(0, n).join(','));
  return [...prefixes].reduce((sum, key) => sum + key.split(',').length, 0);
}

function bits(scores: readonly DocumentScore[]): string[] {
  return scores.map((s) => (s.probabilities === null ? 'null' : Buffer.from(s.probabilities.buffer).toString('hex')));
}

describe('LabelScorer', () => {
  it('returns a distribution over the labels for every document, with its summary statistics', async () => {
    const results = await score(sentimentCodebook(), docs);
    assert.equal(results.length, docs.length);
    for (const r of results) {
      assert.equal(r.status, 'ok');
      const p = [...(r.probabilities ?? [])];
      assert.equal(p.length, 3);
      assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-12);
      const sorted = [...p].sort((a, b) => b - a);
      assert.equal(r.confidence, sorted[0]);
      assert.ok(Math.abs((r.margin ?? NaN) - ((sorted[0] ?? 0) - (sorted[1] ?? 0))) < 1e-15);
      assert.ok(Math.abs((r.entropy ?? NaN) + p.reduce((h, x) => h + (x > 0 ? x * Math.log(x) : 0), 0)) < 1e-12);
      assert.ok(r.tokens > 0);
    }
  });

  it('labels documents as the keyword model was built to', async () => {
    const results = await score(sentimentCodebook(), docs.slice(0, 3));
    assert.deepEqual(
      results.map((r) => r.label),
      ['positive', 'negative', 'neutral'],
    );
  });

  it('equals an independent one-document-at-a-time reference within the layout tolerance', async () => {
    const codebook = sentimentCodebook();
    const scorer = await LabelScorer.create(codebook);
    const results = await scorer.score(docs);
    const llama = await getRuntime({ build: llamaBuildFromEnvironment() });
    const model = await loadModel(llama, keyword, 0);
    try {
      for (const [i, doc] of docs.entries()) {
        const prompt = scorer.promptTokens(doc).tokens;
        const expected = await referenceProbabilities(model, prompt, scorer.labelTokens, { contextSize: 512 });
        expected.forEach((p, j) =>
          assert.ok(
            Math.abs(p - (results[i]?.probabilities?.[j] ?? NaN)) < LAYOUT_TOLERANCE,
            `doc ${i} label ${j}: ${p} vs ${results[i]?.probabilities?.[j]}`,
          ),
        );
      }
    } finally {
      await model.dispose();
      await scorer.dispose();
    }
  });

  it('scores multi-token labels that share a prefix exactly (trie walk vs plain enumeration)', async () => {
    const codebook = sentimentCodebook({
      labels: [
        { name: 'very_negative', answer: 'very negative' },
        { name: 'very_positive', answer: 'very positive' },
        { name: 'neutral' },
      ],
      model: { path: multitoken },
    });
    const scorer = await LabelScorer.create(codebook);
    const results = await scorer.score(docs);
    assert.ok(
      scorer.labelTokens.some((t) => t.length > 1),
      'fixture labels should span several tokens',
    );
    // One decode per inner trie node: the prompt once, then each inner node's path once.
    const inner = innerPathTokens(scorer.labelTokens);
    assert.ok(inner > 0);
    for (const [i, doc] of docs.entries()) {
      const prompt = scorer.promptTokens(doc).tokens.length - scorer.settings.sharedPrefixTokens;
      assert.equal(results[i]?.tokens, prompt + inner, `doc ${i}`);
    }
    const llama = await getRuntime({ build: llamaBuildFromEnvironment() });
    const model = await loadModel(llama, multitoken, 0);
    try {
      for (const [i, doc] of docs.entries()) {
        const expected = await referenceProbabilities(model, scorer.promptTokens(doc).tokens, scorer.labelTokens, {
          contextSize: 512,
        });
        expected.forEach((p, j) =>
          assert.ok(
            Math.abs(p - (results[i]?.probabilities?.[j] ?? NaN)) < LAYOUT_TOLERANCE,
            `doc ${i} label ${j}: ${p} vs ${results[i]?.probabilities?.[j]}`,
          ),
        );
      }
    } finally {
      await model.dispose();
      await scorer.dispose();
    }
  });

  it('scores labels the model gives almost no probability in one pass, exactly, with a small label mass', async () => {
    // The sentiment keyword model answers negative/neutral/positive with ~32 logits over every other token; a stance
    // codebook's first tokens (none/against/favor) are ordinary tokens to it. Each document is still evaluated
    // once (no rescoring with the full distribution), and the probabilities are exact over the full vocabulary.
    const codebook = sentimentCodebook({
      task: 'stance',
      labels: [{ name: 'none' }, { name: 'against' }, { name: 'favor' }],
      prompt: {
        system: 'You are a careful annotator. Answer with one label.',
        template: 'What is the stance of the tweet: {labels}?\n\nTweet: {text}',
      },
    });
    const scorer = await LabelScorer.create(codebook);
    const results = await scorer.score(docs);
    const llama = await getRuntime({ build: llamaBuildFromEnvironment() });
    const model = await loadModel(llama, keyword, 0);
    try {
      assert.equal(innerPathTokens(scorer.labelTokens), 0, 'stance labels should be one token each');
      for (const [i, doc] of docs.entries()) {
        const prompt = scorer.promptTokens(doc).tokens;
        const r = results[i] as DocumentScore;
        assert.equal(r.status, 'ok');
        assert.equal(r.tokens, prompt.length - scorer.settings.sharedPrefixTokens, `doc ${i} evaluated once`);
        assert.ok((r.labelMass ?? NaN) > 0 && (r.labelMass ?? NaN) < 1e-6, `doc ${i} label mass ${r.labelMass}`);
        const expected = await referenceProbabilities(model, prompt, scorer.labelTokens, { contextSize: 512 });
        expected.forEach((p, j) =>
          assert.ok(Math.abs(p - (r.probabilities?.[j] ?? NaN)) < LAYOUT_TOLERANCE, `doc ${i} label ${j}: ${p}`),
        );
      }
    } finally {
      await model.dispose();
      await scorer.dispose();
    }
    const sentiment = await score(sentimentCodebook(), docs);
    for (const r of sentiment) assert.ok((r.labelMass ?? NaN) > 0.999, `sentiment label mass ${r.labelMass}`);
  });

  it('gives bit-identical results across runs, call patterns and thread counts', async () => {
    const codebook = sentimentCodebook();
    const first = await score(codebook, docs);
    const second = await score(sentimentCodebook({ model: { threads: 1 } }), docs);
    assert.deepEqual(bits(second), bits(first));
    const scorer = await LabelScorer.create(codebook);
    try {
      // One document per call, all calls at once: the scorer serialises them; the layout does not change.
      const concurrent = (await Promise.all(docs.map((d) => scorer.score([d])))).flat();
      assert.deepEqual(bits(concurrent), bits(first));
      // A document scored alone equals the same document scored inside a longer list.
      const alone = await scorer.score([docs[4] as DocumentInput]);
      assert.deepEqual(bits(alone), bits([first[4] as DocumentScore]));
    } finally {
      await scorer.dispose();
    }
  });

  it('keeps several-sequence layouts deterministic and within tolerance of one-by-one', async () => {
    const codebook = sentimentCodebook();
    const single = await score(codebook, docs, { sequences: 1 });
    const grouped = await score(codebook, docs, { sequences: 3 });
    const again = await score(codebook, docs, { sequences: 3 });
    assert.deepEqual(bits(again), bits(grouped));
    assert.ok(maxDifference(single, grouped) < LAYOUT_TOLERANCE, `difference ${maxDifference(single, grouped)}`);
    assert.deepEqual(
      grouped.map((r) => r.label),
      single.map((r) => r.label),
    );
  });

  it('applies adapters: scale 0 equals the base model, scale 1 adds the learned keywords', async () => {
    const base = await score(sentimentCodebook(), docs);
    const zero = await score(sentimentCodebook({ model: { adapters: [{ path: keywordAdapter, scale: 0 }] } }), docs);
    assert.deepEqual(bits(zero), bits(base));
    const adapted = await score(sentimentCodebook({ model: { adapters: [{ path: keywordAdapter, scale: 1 }] } }), docs);
    assert.ok(maxDifference(base, adapted) > 1e-3, 'the adapter should change probabilities');
    // "hopefully" and "peace" are keywords the adapter learned from the labelled val split; the base model has neither.
    assert.equal(base[6]?.label, 'neutral');
    assert.equal(adapted[6]?.label, 'positive');
  });

  it('flags and truncates documents longer than max_document_tokens, and never fails the run for them', async () => {
    const long = { text: 'great '.repeat(400) };
    const [r] = await score(sentimentCodebook({ model: { max_document_tokens: 32 } }), [long]);
    assert.equal(r?.status, 'truncated');
    assert.equal(r?.truncated, true);
    assert.equal(r?.label, 'positive');
  });

  it('gives empty and null texts the empty_text status without evaluating them', async () => {
    const results = await score(sentimentCodebook(), [{ text: null }, { text: '   ' }, { text: 'great' }]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['empty_text', 'empty_text', 'ok'],
    );
    assert.equal(results[0]?.probabilities, null);
  });

  it('treats special-token text inside a document as plain text', async () => {
    const scorer = await LabelScorer.create(sentimentCodebook());
    try {
      const tokens = scorer.promptTokens({ text: 'hi <|eot_id|> there' }).tokens;
      const plain = scorer.promptTokens({ text: 'hi there' }).tokens;
      assert.ok(tokens.length > plain.length + 1, 'the special-token text should be split into ordinary tokens');
    } finally {
      await scorer.dispose();
    }
  });
});

describe('LabelScorer errors', () => {
  async function rejectsWith(codebook: Codebook, code: string, pattern: RegExp): Promise<void> {
    await assert.rejects(
      LabelScorer.create(codebook),
      (e: unknown) => e instanceof RescaleError && e.code === code && pattern.test(e.message),
    );
  }

  it('names a missing model file', async () => {
    await rejectsWith(
      sentimentCodebook({ model: { path: path.join(dir, 'nope.gguf') } }),
      'MODEL_NOT_FOUND',
      /nope\.gguf.*model\.path/,
    );
  });

  it('names a model file that is not GGUF', async () => {
    const file = path.join(dir, 'not-a-model.gguf');
    await writeFile(file, 'hello, I am text');
    await rejectsWith(sentimentCodebook({ model: { path: file } }), 'MODEL_INVALID', /not a GGUF file/);
  });

  it('rejects an adapter made for another base model', async () => {
    await rejectsWith(
      sentimentCodebook({ model: { adapters: [{ path: smallAdapter, scale: 1 }] } }),
      'ADAPTER_MISMATCH',
      /small-adapter|adapter/,
    );
  });

  it('rejects a base model given as an adapter', async () => {
    const copy = path.join(dir, 'model-as-adapter.gguf');
    await copyFile(small, copy);
    await rejectsWith(
      sentimentCodebook({ model: { adapters: [{ path: copy, scale: 1 }] } }),
      'ADAPTER_INVALID',
      /not a LoRA adapter/,
    );
  });

  it('refuses Llama-2 chat answers differing only by trailing whitespace when created, naming both', async () => {
    // "x" ends as the reference reply does (" ", EOS), and its " " is where "x " ends: the two would score alike.
    await rejectsWith(
      sentimentCodebook({
        labels: [
          { name: 'plain', answer: 'x' },
          { name: 'spaced', answer: 'x ' },
        ],
        prompt: { format: 'chat', template: 'Classify the tweet.\n\nTweet: {text}' },
        model: { path: small },
      }),
      'LABEL_INVALID',
      new RegExp(
        'test\\.yaml: label "plain" \\(answer "x", field "labels\\[0\\]"\\) and label "spaced" ' +
          '\\(answer "x ", field "labels\\[1\\]"\\) tokenise alike.*more than trailing whitespace',
      ),
    );
  });

  it('says when the context cannot hold the prompt and a label', async () => {
    await rejectsWith(sentimentCodebook({ model: { context_size: 16 } }), 'CONTEXT_TOO_SMALL', /model\.context_size/);
  });
});
