// Native samplers are reused across next-token reads instead of constructed per evaluation: a scorer builds a few
// and hands them out again, the probabilities are the same bits as with a fresh sampler per read (serial and
// batched, single- and multi-token labels), and a disposed model's idle samplers are freed. Real llama.cpp, real
// GGUF fixture models.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LlamaModel } from 'node-llama-cpp';
import { parseCodebook, type Codebook, type CodebookInput } from '../../../contracts/codebook.js';
import type { DocumentScore } from '../../../contracts/document-scorer.js';
import { llamaBuildFromEnvironment } from '../../../contracts/environment.js';
import { LabelScorer } from '../../../worker/engine/label-scorer.js';
import { getRuntime, loadModel } from '../../../worker/engine/llama-runtime.js';
import { nativeSamplerPool, reuseNativeSamplers } from '../../../worker/engine/native-sampler-pool.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';

const texts = [
  'I love this, what a great and happy day',
  'This is so awful, I hate it, terrible service',
  'The meeting is at 3pm in room 12',
  'so excited, thanks for the amazing party',
  'worst game, sad and angry fans',
  'an update was announced and scheduled',
  'nice',
  'the wrong and broken charger, poor quality',
  'my phone is lost, so sorry and annoying',
  'It was good and I enjoy it, glad we went',
];

type Labels = NonNullable<CodebookInput['labels']>;

function codebook(modelPath: string, labels: Labels): Codebook {
  return parseCodebook(
    {
      task: 'sentiment',
      labels,
      prompt: {
        system: 'You are a careful annotator. Answer with one label.',
        template: 'Classify the sentiment of the tweet as one of: {labels}.\n\nTweet: {text}',
      },
      model: { path: modelPath, max_document_tokens: 64, threads: 1 },
    },
    { source: 'pool.yaml' },
  );
}

function bits(scores: readonly DocumentScore[]): string[] {
  return scores.map((s) => (s.probabilities === null ? 'null' : Buffer.from(s.probabilities.buffer).toString('hex')));
}

const oneToken: Labels = [{ name: 'negative' }, { name: 'neutral' }, { name: 'positive' }];
const multiToken: Labels = [
  { name: 'very_negative', answer: 'very negative' },
  { name: 'very_positive', answer: 'very positive' },
  { name: 'neutral' },
];

describe('native sampler pool', () => {
  const models = new Map<string, { path: string; model: LlamaModel }>();

  before(async () => {
    const llama = await getRuntime({ build: llamaBuildFromEnvironment() });
    for (const name of ['keyword', 'keyword-multitoken'] as const) {
      const path = await fixtureModel(name);
      models.set(name, { path, model: await loadModel(llama, path, 0) });
    }
  });
  after(async () => {
    for (const { model } of models.values()) await model.dispose();
  });

  async function score(name: string, labels: Labels, sequences: number, pooled: boolean): Promise<DocumentScore[]> {
    const { path, model } = models.get(name) as { path: string; model: LlamaModel };
    assert.ok(reuseNativeSamplers(model), 'node-llama-cpp internals the pool relies on are missing');
    const pool = nativeSamplerPool(model);
    assert.ok(pool !== null);
    pool.setEnabled(pooled);
    const scorer = await LabelScorer.create(codebook(path, labels), { model, sequences });
    try {
      return await scorer.score(texts.map((text) => ({ text })));
    } finally {
      await scorer.dispose();
      pool.setEnabled(true);
    }
  }

  for (const [name, labels, what] of [
    ['keyword', oneToken, 'one-token labels'],
    ['keyword-multitoken', multiToken, 'multi-token labels (a read per inner trie node)'],
  ] as const) {
    for (const sequences of [1, 4]) {
      it(`${what}, sequences ${sequences}: the same bits as a fresh sampler per read`, async () => {
        const fresh = await score(name, labels, sequences, false);
        const model = (models.get(name) as { model: LlamaModel }).model;
        const before = nativeSamplerPool(model);
        assert.ok(before !== null);
        const constructedBefore = before.constructed;
        const reusedBefore = before.reused;
        const pooled = await score(name, labels, sequences, true);
        assert.deepEqual(bits(pooled), bits(fresh));
        assert.deepEqual(
          pooled.map((s) => s.label),
          fresh.map((s) => s.label),
        );
        const after = nativeSamplerPool(model);
        assert.ok(after !== null);
        const constructed = after.constructed - constructedBefore;
        const reused = after.reused - reusedBefore;
        // At most one sampler per sequence is ever in use at once; all other reads reuse one.
        assert.ok(constructed <= sequences, `constructed ${constructed} native samplers for ${sequences} sequence(s)`);
        assert.ok(reused >= texts.length - sequences, `reused only ${reused} samplers for ${texts.length} documents`);
      });
    }
  }

  it('frees the idle samplers of a disposed model', async () => {
    const llama = await getRuntime({ build: llamaBuildFromEnvironment() });
    const path = await fixtureModel('keyword');
    const model = await loadModel(llama, path, 0);
    const scorer = await LabelScorer.create(codebook(path, oneToken), { model, sequences: 2 });
    await scorer.score(texts.slice(0, 4).map((text) => ({ text })));
    await scorer.dispose();
    const pool = nativeSamplerPool(model);
    assert.ok(pool !== null);
    assert.ok(pool.idle(model) > 0, 'the scorer returned its samplers to the pool');
    await model.dispose();
    assert.equal(pool.idle(model), 0);
  });
});
