// A multi-question codebook through the local pipeline (`rescale run`): per-question column groups in the shard
// files and the merged Parquet (read by DuckDB), the questions in the manifest, and the same answers as each
// question's own one-question codebook.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { runLocalMode } from '../../cli/local-mode.js';
import { readPredictions } from '../../study/evaluation/labelled-predictions.js';
import { fixtureModel } from '../../scripts/harness/fixture-models.js';
import {
  duckDBTypes,
  queryDuckDB,
  sqlString,
  withTempDir,
  writeParquetWithDuckDB,
} from '../../scripts/harness/parquet.js';

let model: string;
before(async () => {
  model = await fixtureModel('keyword');
});

const SYSTEM = 'You are a careful annotator. Answer with one label.';
const SENTIMENT = 'What is the sentiment of the tweet?';
const POLARITY = 'Is the tweet rather negative or rather positive?';

function multiYaml(): string {
  return `task: multi
input:
  id_column: id
questions:
  - name: sentiment
    question: ${JSON.stringify(SENTIMENT)}
    labels: [{ name: negative }, { name: neutral }, { name: positive }]
  - name: polarity
    question: ${JSON.stringify(POLARITY)}
    labels: [{ name: negative }, { name: positive }]
prompt:
  system: ${JSON.stringify(SYSTEM)}
  template: "Tweet: {text}\\n\\n{question} Answer with one of: {labels}."
model:
  path: ${JSON.stringify(model)}
  max_document_tokens: 64
  threads: 2
`;
}

function singleYaml(question: string, labels: string): string {
  return `task: single
input:
  id_column: id
labels: ${labels}
prompt:
  system: ${JSON.stringify(SYSTEM)}
  template: ${JSON.stringify(`Tweet: {text}\n\n${question} Answer with one of: {labels}.`)}
model:
  path: ${JSON.stringify(model)}
  max_document_tokens: 64
  threads: 2
`;
}

const corpus = `SELECT i::BIGINT AS id,
  CASE WHEN i = 4 THEN NULL
       ELSE 'tweet ' || i || ' ' || ['love', 'hate', 'meeting', 'great', 'awful', 'happy'][1 + (i % 6)] END AS text
  FROM range(14) t(i)`;

describe('rescale run with a multi-question codebook', () => {
  it('writes a column group per question, lists the questions, and matches each question on its own', async () => {
    await withTempDir(async (dir) => {
      const input = await writeParquetWithDuckDB(corpus, path.join(dir, 'corpus.parquet'));
      const files = {
        multi: path.join(dir, 'multi.yaml'),
        sentiment: path.join(dir, 'sentiment.yaml'),
        polarity: path.join(dir, 'polarity.yaml'),
      };
      await writeFile(files.multi, multiYaml());
      await writeFile(
        files.sentiment,
        singleYaml(SENTIMENT, '[{ name: negative }, { name: neutral }, { name: positive }]'),
      );
      await writeFile(files.polarity, singleYaml(POLARITY, '[{ name: negative }, { name: positive }]'));
      const out = (name: string): string => path.join(dir, `${name}.parquet`);
      await runLocalMode({ codebook: files.multi, input: [input], output: out('multi'), shardRows: 5, env: {} });
      await runLocalMode({
        codebook: files.sentiment,
        input: [input],
        output: out('sentiment'),
        shardRows: 5,
        env: {},
      });
      await runLocalMode({ codebook: files.polarity, input: [input], output: out('polarity'), shardRows: 5, env: {} });

      const types = await duckDBTypes(out('multi'));
      assert.deepEqual(Object.keys(types), [
        'id',
        'row',
        'sentiment__label',
        'sentiment__confidence',
        'sentiment__margin',
        'sentiment__entropy',
        'sentiment__p_negative',
        'sentiment__p_neutral',
        'sentiment__p_positive',
        'sentiment__label_mass',
        'polarity__label',
        'polarity__confidence',
        'polarity__margin',
        'polarity__entropy',
        'polarity__p_negative',
        'polarity__p_positive',
        'polarity__label_mass',
        'status',
        'error',
        'tokens',
        'source',
        'shard_id',
        'duplicate_of',
      ]);
      assert.equal(types['sentiment__p_neutral'], 'DOUBLE');
      const multi = await queryDuckDB(`SELECT * FROM read_parquet('${sqlString(out('multi'))}') ORDER BY row`);
      for (const name of ['sentiment', 'polarity'] as const) {
        const own = await queryDuckDB(`SELECT * FROM read_parquet('${sqlString(out(name))}') ORDER BY row`);
        assert.equal(own.length, 14);
        own.forEach((expected, i) => {
          const row = multi[i] as Record<string, unknown>;
          assert.equal(row['status'], expected['status'], `row ${i}`);
          assert.equal(row[`${name}__label`], expected['label'], `row ${i} ${name}`);
          for (const column of Object.keys(expected).filter((c) => c.startsWith('p_'))) {
            const got = row[`${name}__${column}`] as number | null;
            const want = expected[column] as number | null;
            if (want === null) assert.equal(got, null);
            else assert.ok(Math.abs((got as number) - want) < 2e-3, `row ${i} ${name}__${column}: ${got} vs ${want}`);
          }
        });
      }
      const row4 = multi[4] as Record<string, unknown>;
      assert.equal(row4['status'], 'empty_text');
      assert.equal(row4['sentiment__label'], null);
      assert.equal((multi[1] as Record<string, unknown>)['sentiment__label'], 'negative');
      assert.equal((multi[0] as Record<string, unknown>)['polarity__label'], 'positive');

      const [meta] = await queryDuckDB(
        `SELECT decode(value) AS v FROM parquet_kv_metadata('${sqlString(out('multi'))}') ` +
          `WHERE decode(key) = 'rescale.questions'`,
      );
      assert.deepEqual(JSON.parse(String(meta?.['v'])), [
        { name: 'sentiment', labels: ['negative', 'neutral', 'positive'] },
        { name: 'polarity', labels: ['negative', 'positive'] },
      ]);
      const manifest = JSON.parse(await readFile(`${out('multi')}.manifest.json`, 'utf8')) as {
        merge: { labels: string[]; questions?: unknown };
      };
      assert.deepEqual(manifest.merge.labels, []);
      assert.deepEqual(manifest.merge.questions, [
        { name: 'sentiment', labels: ['negative', 'neutral', 'positive'] },
        { name: 'polarity', labels: ['negative', 'positive'] },
      ]);
      const single = JSON.parse(await readFile(`${out('sentiment')}.manifest.json`, 'utf8')) as {
        merge: { questions?: unknown };
      };
      assert.equal(single.merge.questions, undefined);
      // Tools that read one question's "label" say which questions the file holds and how to pick one.
      await assert.rejects(
        readPredictions(out('multi')),
        /several questions \(sentiment, polarity\).*sentiment__label/s,
      );
    });
  });
});
