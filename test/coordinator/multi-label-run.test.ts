// A per_label multi-label codebook through the local pipeline (`rescale run`): the `<question>__labels` list column in
// the merged Parquet as DuckDB reads it, the keyword model's known answers, byte-identical results on a second run,
// `rescale evaluate` and `rescale calibrate` on the results file as written, and `report` pointing to it.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { loadCodebook } from '../../contracts/codebook.js';
import { runEvaluate } from '../../cli/evaluate.js';
import { runCalibrate } from '../../cli/calibrate.js';
import type { CalibrationResult } from '../../study/calibration/routing-calibration.js';
import { runLocalMode } from '../../cli/local-mode.js';
import { collectRunReport } from '../../study/report/run-report.js';
import type { MultiLabelEvaluationResult } from '../../study/evaluation/evaluate-multi-label.js';
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

// The keyword model answers "positive" when the prompt holds more positive than negative keywords; each label's
// description holds keywords, so a label is in the set when the tweet's balance (positive minus negative) beats its
// bar (the description's negative minus positive keywords).
function codebookYaml(): string {
  return `task: moods
input:
  id_column: id
questions:
  - name: moods
    type: multi_label
    question: "Does the tweet feel {description}?"
    labels:
      - { name: cheer, description: glad }
      - { name: gloom, description: "sad, angry and sorry" }
      - { name: mixed, description: "wonderful but awful and bad", threshold: 0.6 }
    multi_label:
      format: per_label
      answers: { yes: positive, no: negative }
prompt:
  template: "Tweet: {text}\\n\\n{question} Answer yes or no."
model:
  path: ${JSON.stringify(model)}
  max_document_tokens: 64
  threads: 2
`;
}

const TWEETS: (string | null)[] = [
  'I love this, what a great and happy day, best ever', // balance 4: every label
  'The meeting is at 3pm in room 12', // 0: cheer
  'The meeting is at 3pm in room 12', // a copy of row 1 in its shard, scored once
  'This is awful. I hate it, terrible service', // -3: none
  'great fun, nice but awful', // 2: cheer, mixed
  null,
];
const EXPECTED: (string[] | null)[] = [['cheer', 'gloom', 'mixed'], ['cheer'], ['cheer'], [], ['cheer', 'mixed'], null];

const sqlText = (text: string | null): string => (text === null ? 'NULL' : `'${sqlString(text)}'`);
const sqlList = (set: readonly string[]): string =>
  set.length === 0 ? '[]::VARCHAR[]' : `[${set.map((l) => `'${l}'`).join(', ')}]`;

describe('rescale run with a multi-label question', () => {
  it('writes the labels as a list DuckDB reads, the same bytes twice, and results evaluate reads', async () => {
    await withTempDir(async (dir) => {
      const rows = TWEETS.map((text, i) => `(${i + 1}::BIGINT, ${sqlText(text)})`).join(', ');
      const input = await writeParquetWithDuckDB(
        `SELECT * FROM (VALUES ${rows}) t(id, text)`,
        path.join(dir, 'corpus.parquet'),
      );
      const codebook = path.join(dir, 'moods.yaml');
      await writeFile(codebook, codebookYaml());
      const out = (name: string): string => path.join(dir, name, 'results.parquet');
      for (const name of ['a', 'b'])
        await runLocalMode({ codebook, input: [input], output: out(name), shardRows: 4, env: {} });

      const types = await duckDBTypes(out('a'));
      assert.deepEqual(Object.keys(types).slice(0, 9), [
        'id',
        'row',
        'moods__labels',
        'moods__confidence',
        'moods__margin',
        'moods__p_cheer',
        'moods__p_gloom',
        'moods__p_mixed',
        'moods__label_mass',
      ]);
      assert.equal(types['moods__labels'], 'VARCHAR[]');
      const read = await queryDuckDB(
        `SELECT moods__labels AS labels, status, duplicate_of::INTEGER AS copy, moods__p_cheer AS p ` +
          `FROM read_parquet('${sqlString(out('a'))}') ORDER BY row`,
      );
      assert.deepEqual(
        read.map((r) => r.labels),
        EXPECTED,
      );
      assert.deepEqual(
        read.map((r) => r.status),
        ['ok', 'ok', 'ok', 'ok', 'ok', 'empty_text'],
      );
      assert.equal(read[2]?.copy, 1);
      assert.equal(read[2]?.p, read[1]?.p);
      const [meta] = await queryDuckDB(
        `SELECT decode(value) AS v FROM parquet_kv_metadata('${sqlString(out('a'))}') ` +
          `WHERE decode(key) = 'rescale.questions'`,
      );
      assert.deepEqual(JSON.parse(String(meta?.['v'])), [
        { name: 'moods', labels: ['cheer', 'gloom', 'mixed'], type: 'multi_label' },
      ]);

      // Determinism: a second run gives the same bytes.
      assert.deepEqual(await readFile(out('b')), await readFile(out('a')));

      // `rescale evaluate` reads moods__labels from the results as written, with the codebook's question.
      const goldRows = EXPECTED.map((set, i) => `(${i + 1}::BIGINT, ${set === null ? 'NULL' : sqlList(set)})`);
      const gold = await writeParquetWithDuckDB(
        `SELECT * FROM (VALUES ${goldRows.join(', ')}) t(id, moods)`,
        path.join(dir, 'gold.parquet'),
      );
      const result = (await runEvaluate({
        predictions: [out('a')],
        gold,
        idColumn: 'id',
        labelColumn: 'moods',
        seed: 1,
        resamples: 100,
        ordered: false,
        codebook: await loadCodebook(codebook),
      })) as MultiLabelEvaluationResult;
      assert.equal(result.systems[0]?.metrics.exactMatch?.estimate, 1);
      // `rescale calibrate` reads the same sets and the question's own __margin column (per_label: margin_below).
      const calibration = (await runCalibrate({
        predictions: out('a'),
        gold,
        idColumn: 'id',
        labelColumn: 'moods',
        question: 'moods',
        rule: 'margin',
        fallbackAccuracy: 0.9,
        seed: 1,
        resamples: 100,
      })) as CalibrationResult;
      assert.equal(calibration.labelSets?.form, 'per_label');
      assert.equal(calibration.documents, result.documents);
      assert.equal(calibration.localAccuracy, 1);
      assert.equal(calibration.labelSets?.local.jaccard, result.systems[0]?.metrics.jaccardSamples?.estimate);
      // `report` reads single-label questions, and says where label sets are evaluated.
      await assert.rejects(
        collectRunReport({ results: out('a'), seed: 1, resamples: 100 }),
        /holds multi-label questions only \(moods\); report reads single-label .*rescale evaluate --question moods/,
      );
    });
  });
});
