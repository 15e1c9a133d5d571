// `rescale sample` with a multi-question codebook: one chat example per (document, question), each the question's full
// prompt as the scorer renders it (the same tokens, through the model's chat template) with that question's answer.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { resolveChatWrapper } from 'node-llama-cpp';
import { parseCodebook } from '../../../contracts/codebook.js';
import { llamaBuildFromEnvironment } from '../../../contracts/environment.js';
import { writeTrainingSample, type ChatMessage } from '../../../study/sampling/training-sample.js';
import { getRuntime } from '../../../worker/engine/llama-runtime.js';
import { QuestionPrompts } from '../../../worker/engine/question-prompts.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';
import { queryDuckDB, sqlString, withTempDir } from '../../../scripts/harness/parquet.js';
import { writeRowsParquet } from '../../helpers/analysis-files.js';

const SENTIMENT = (i: number): string => (i % 3 === 0 ? 'negative' : i % 3 === 1 ? 'neutral' : 'positive');
const POLARITY = (i: number): string => (i % 2 === 0 ? 'negative' : 'positive');

function codebook(modelPath: string) {
  return parseCodebook(
    {
      task: 'sample-questions',
      input: { text_column: 'text', id_column: 'id' },
      questions: [
        {
          name: 'sentiment',
          question: 'What is the sentiment?',
          labels: [{ name: 'negative', answer: 'neg' }, { name: 'neutral' }, { name: 'positive' }],
        },
        { name: 'polarity', question: 'Negative or positive?', labels: [{ name: 'negative' }, { name: 'positive' }] },
      ],
      prompt: { system: 'You are a careful annotator.', template: 'Tweet: {text}\n\n{question} One of: {labels}.' },
      model: { path: modelPath },
    },
    { source: 'questions.codebook.yaml' },
  );
}

describe('rescale sample with several questions', () => {
  it('writes one example per document and question, with exactly the tokens the scorer evaluates', async () => {
    await withTempDir(async (dir) => {
      const modelPath = await fixtureModel('keyword');
      const book = codebook(modelPath);
      const gold = await writeRowsParquet(
        path.join(dir, 'gold.parquet'),
        { id: 'BIGINT', text: 'VARCHAR', sentiment: 'VARCHAR', polarity: 'VARCHAR' },
        Array.from({ length: 30 }, (_, i) => ({
          id: 100 + i,
          text: `tweet number ${i}`,
          sentiment: SENTIMENT(i),
          polarity: i === 29 ? null : POLARITY(i),
        })),
      );
      const out = path.join(dir, 's');
      const sample = await writeTrainingSample({
        gold,
        idColumn: 'id',
        textColumn: 'text',
        labelColumn: 'gold',
        sizes: [12],
        seed: 3,
        heldOut: 0.3,
        outDir: out,
        codebook: book,
      });
      assert.deepEqual(sample.manifest.questions, [
        { name: 'sentiment', labels: ['negative', 'neutral', 'positive'], goldColumn: 'sentiment' },
        { name: 'polarity', labels: ['negative', 'positive'], goldColumn: 'polarity' },
      ]);
      assert.equal(sample.manifest.skipped.noLabel, 1, 'a row without every question’s label is left out');
      const docs = sample.subsets[0]?.documents ?? [];
      assert.equal(docs.length, 12);
      const lines = (await readFile(path.join(out, sample.manifest.subsets[0]?.jsonl ?? ''), 'utf8'))
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line) as { messages: ChatMessage[] });
      assert.equal(lines.length, 24);
      docs.forEach((doc, d) => {
        const i = Number(doc.id) - 100;
        const [s, p] = [lines[2 * d], lines[2 * d + 1]];
        assert.match(s?.messages[1]?.content ?? '', new RegExp(`tweet number ${i}\\n\\nWhat is the sentiment\\?`));
        assert.equal(s?.messages[2]?.content, SENTIMENT(i) === 'negative' ? 'neg' : SENTIMENT(i));
        assert.match(p?.messages[1]?.content ?? '', /Negative or positive\? One of: negative, positive\.$/);
        assert.equal(p?.messages[2]?.content, POLARITY(i));
      });
      const heldOut = sqlString(path.join(out, 'held-out.parquet'));
      const rows = await queryDuckDB(`SELECT id::INT AS id, sentiment, polarity FROM read_parquet('${heldOut}')`);
      assert.ok(rows.length > 0 && rows.every((r) => r.sentiment === SENTIMENT(Number(r.id) - 100)));

      const llama = await getRuntime({ build: llamaBuildFromEnvironment() });
      const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
      try {
        const wrapper = resolveChatWrapper(model);
        assert.ok(wrapper !== null);
        const rendered = QuestionPrompts.create(model, book, book.questions).render({ text: docs[0]?.text ?? '' }, 256);
        for (const q of [0, 1]) {
          const example = lines[q] as { messages: ChatMessage[] };
          const { contextText } = wrapper.generateContextState({
            chatHistory: [
              { type: 'system', text: example.messages[0]?.content ?? '' },
              { type: 'user', text: example.messages[1]?.content ?? '' },
              { type: 'model', response: [] },
            ],
          });
          assert.deepEqual(contextText.tokenize(model.tokenizer), rendered.prompts[q], `question ${q}`);
        }
      } finally {
        await model.dispose();
      }
    });
  });
});
