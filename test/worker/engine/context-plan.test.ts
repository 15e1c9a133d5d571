// The context plan without a model: sizes from token counts, the warnings it raises, the error it refuses with.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCodebook, type Codebook, type CodebookInput } from '../../../contracts/codebook.js';
import { RescaleError } from '../../../contracts/errors.js';
import {
  CONTEXT_SLACK_TOKENS,
  PREFERRED_BATCH_TOKENS,
  planContext,
  type PromptMeasure,
} from '../../../worker/engine/context-plan.js';

function codebook(model: Partial<CodebookInput['model']> = {}): Codebook {
  return parseCodebook(
    {
      task: 't',
      labels: [{ name: 'a' }, { name: 'b' }],
      prompt: { template: '{text}' },
      model: { path: 'm.gguf', max_document_tokens: 100, ...model },
    },
    { source: 'cb.yaml', baseDir: '/data' },
  );
}

const measure: PromptMeasure = {
  sharedPrefixTokens: 40,
  templateTokens: 6,
  longestLabelTokens: 2,
  trainContextSize: 4096,
};
const needed = 40 + 100 + 6 + 2 + CONTEXT_SLACK_TOKENS;

describe('planContext', () => {
  it('sizes the context for the prompt, the longest document and the longest label, plus slack', () => {
    const plan = planContext(codebook(), measure);
    assert.equal(plan.neededContextSize, needed);
    assert.equal(plan.contextSize, needed);
    assert.deepEqual(plan.warnings, []);
  });

  it('makes the batch hold a whole group of documents after the prefix in one decode call', () => {
    const long = codebook({ max_document_tokens: 600 });
    const perDocument = needed + 500 - 40;
    assert.equal(planContext(long, measure).batchSize, perDocument);
    assert.equal(planContext(codebook({ max_document_tokens: 600, sequences: 3 }), measure).batchSize, 3 * perDocument);
    assert.equal(planContext(long, measure, { sequences: 4 }).batchSize, 4 * perDocument);
  });

  it('asks for at least llama.cpp’s default micro-batch, up to what the whole context holds', () => {
    // A 300-token prefix in a 700-token context: 400 tokens per document, and the context holds 512.
    const prefixed: PromptMeasure = { ...measure, sharedPrefixTokens: 300 };
    assert.equal(planContext(codebook({ context_size: 700 }), prefixed).batchSize, PREFERRED_BATCH_TOKENS);
    // A context of `needed` tokens × 1 sequence cannot hold 512: the batch is the whole context.
    assert.equal(planContext(codebook(), measure).batchSize, needed);
    assert.equal(planContext(codebook(), measure, { sequences: 2 }).batchSize, 2 * needed);
    assert.equal(planContext(codebook({ context_size: 60 }), measure).batchSize, 60);
  });

  it('makes the batch hold at least the shared prefix, evaluated alone', () => {
    const big: PromptMeasure = { ...measure, sharedPrefixTokens: 700 };
    assert.equal(planContext(codebook({ context_size: 720 }), big).batchSize, 700);
  });

  it('resolves sequences ("auto" is 1) and threads (0 lets llama.cpp choose), overrides first', () => {
    assert.equal(planContext(codebook(), measure).sequences, 1);
    assert.equal(planContext(codebook({ sequences: 2 }), measure).sequences, 2);
    assert.equal(planContext(codebook({ sequences: 2 }), measure, { sequences: 5 }).sequences, 5);
    assert.equal(planContext(codebook(), measure).threads, 0);
    assert.equal(planContext(codebook({ threads: 3 }), measure).threads, 3);
    assert.equal(planContext(codebook({ threads: 3 }), measure, { threads: 1 }).threads, 1);
  });

  it('keeps a configured context size and warns when longer documents will not fit', () => {
    const plan = planContext(codebook({ context_size: 120 }), measure);
    assert.equal(plan.contextSize, 120);
    assert.deepEqual(
      plan.warnings.map((w) => w.meta),
      [{ contextSize: 120, needed }],
    );
    assert.match(plan.warnings[0]?.message ?? '', /longer documents get status "error"/);
  });

  it('warns when the context exceeds the model training context', () => {
    const plan = planContext(codebook(), { ...measure, trainContextSize: 128 });
    assert.deepEqual(
      plan.warnings.map((w) => w.meta),
      [{ contextSize: needed, trainContextSize: 128 }],
    );
  });

  it('accepts the smallest context that leaves one token for a document', () => {
    assert.equal(planContext(codebook({ context_size: 40 + 6 + 2 + 1 }), measure).contextSize, 49);
  });

  it('refuses a context with no room for a document, naming the field and the size to set', () => {
    assert.throws(
      () => planContext(codebook({ context_size: 48 }), measure),
      (e: unknown) =>
        e instanceof RescaleError &&
        e.code === 'CONTEXT_TOO_SMALL' &&
        /cb\.yaml.*"model\.context_size" is 48.*at least 212/.test(e.message),
    );
  });
});
