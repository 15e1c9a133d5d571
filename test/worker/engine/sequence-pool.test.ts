// The sequence pool on a real GGUF fixture model: each prompt reuses its longest common prefix with the shared
// prefix, a prompt diverging inside it rewinds into it, and the cached state never depends on earlier documents.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LlamaModel, Token } from 'node-llama-cpp';
import { parseCodebook } from '../../../contracts/codebook.js';
import { llamaBuildFromEnvironment } from '../../../contracts/environment.js';
import { planContext } from '../../../worker/engine/context-plan.js';
import { getRuntime, loadModel } from '../../../worker/engine/llama-runtime.js';
import { SequencePool } from '../../../worker/engine/sequence-pool.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';

let model: LlamaModel;
let pool: SequencePool;
let prefix: Token[];

before(async () => {
  const path = await fixtureModel('keyword');
  model = await loadModel(await getRuntime({ build: llamaBuildFromEnvironment() }), path, 0);
  const codebook = parseCodebook(
    {
      task: 'pool',
      labels: [{ name: 'negative' }, { name: 'positive' }],
      prompt: { template: 'Tweet: {text}' },
      model: { path, max_document_tokens: 32, threads: 2 },
    },
    { source: 'pool.yaml' },
  );
  prefix = model.tokenize('Classify the sentiment of the tweet. Tweet:', false);
  const plan = planContext(codebook, {
    sharedPrefixTokens: prefix.length,
    templateTokens: 4,
    longestLabelTokens: 1,
    trainContextSize: model.trainContextSize,
  });
  pool = await SequencePool.create(model, codebook.model, plan, prefix);
});
after(async () => {
  await pool.dispose();
  await model.dispose();
});

describe('SequencePool.prepare', () => {
  it('reuses the longest common prefix, rewinding into the shared prefix when a prompt diverges in it', async () => {
    const doc = model.tokenize(' great day', false);
    assert.equal(await pool.prepare(0, [...prefix, ...doc]), prefix.length);
    assert.deepEqual(pool.sequence(0).contextTokens, prefix);
    await pool.sequence(0).controlledEvaluate(doc);
    // Diverges two tokens before the end of the shared prefix.
    const diverging = [...prefix.slice(0, -2), ...doc];
    assert.equal(await pool.prepare(0, diverging), prefix.length - 2);
    assert.deepEqual(pool.sequence(0).contextTokens, prefix.slice(0, -2));
    await pool.sequence(0).controlledEvaluate(doc);
    // The next prompt gets the whole shared prefix back, evaluated alone from an empty sequence.
    assert.equal(await pool.prepare(0, [...prefix, ...doc]), prefix.length);
    assert.deepEqual(pool.sequence(0).contextTokens, prefix);
    // Never the whole prompt: at least its last token is left to evaluate.
    assert.equal(await pool.prepare(0, prefix.slice(0, 3)), 2);
  });
});
