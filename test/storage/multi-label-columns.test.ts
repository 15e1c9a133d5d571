// A multi-label question's result columns through the shard writer and the merge: the labels list, marginals,
// confidence, margin and label mass round-trip, DuckDB reads the merged list as a list, and single-label files keep
// their layout.

import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { DataType } from 'apache-arrow';
import { parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import type { QuestionAnswer, ResultRow } from '../../contracts/results.js';
import { resolveCorpus } from '../../coordinator/corpus.js';
import { mergeShards } from '../../coordinator/merge.js';
import { planShards } from '../../coordinator/shard-planner.js';
import { shardResultPath } from '../../storage/output-layout.js';
import { resultSchemaFor, type ResultQuestion } from '../../storage/result-schema.js';
import { readShardResult, resultRowsOf, writeShardResult } from '../../storage/shard-result-file.js';
import { queryDuckDB, sqlString, withTempDir, writeParquetWithDuckDB } from '../../scripts/harness/parquet.js';

const TOPICS: ResultQuestion = { name: 'topics', labels: ['economy', 'health', 'law'], type: 'multi_label' };
const TONE: ResultQuestion = { name: 'tone', labels: ['calm', 'angry'] };

async function oneShardPlan(dir: string, rows: number) {
  await mkdir(path.join(dir, 'in'), { recursive: true });
  await writeParquetWithDuckDB(
    `SELECT i::BIGINT AS id, 'text ' || i AS text FROM range(${rows}) t(i)`,
    path.join(dir, 'in', 'a.parquet'),
  );
  return planShards(await resolveCorpus(path.join(dir, 'in')), {
    codebookHash: 'cb',
    maxRowsPerShard: rows,
    idColumn: 'id',
    textColumn: 'text',
  });
}

function topicsAnswer(p: readonly number[]): QuestionAnswer {
  const labels = TOPICS.labels.filter((_, j) => (p[j] as number) >= 0.5);
  return {
    label: null,
    labels,
    confidence: p.reduce((c, x) => c * Math.max(x, 1 - x), 1),
    margin: Math.min(...p.map((x) => Math.abs(x - 0.5))),
    entropy: null,
    probabilities: Float64Array.from(p),
    labelMass: 0.75,
  };
}

const NONE: QuestionAnswer = {
  label: null,
  confidence: null,
  margin: null,
  entropy: null,
  probabilities: null,
  labelMass: null,
};

function row(shardId: string, index: number, answers: QuestionAnswer[], status: ResultRow['status'] = 'ok'): ResultRow {
  return {
    id: BigInt(index),
    row: index,
    label: null,
    confidence: null,
    margin: null,
    entropy: null,
    probabilities: null,
    status,
    error: status === 'ok' ? null : 'document text is null or blank',
    tokens: status === 'ok' ? 7 : 0,
    source: 'local',
    shardId,
    answers,
  };
}

describe('multi-label result columns', () => {
  it('name the group <question>__ even for the only question, with the labels as a list of strings', () => {
    const schema = resultSchemaFor([TOPICS], 'int64');
    assert.deepEqual(
      schema.columns.map((c) => c.name),
      [
        'id',
        'row',
        'topics__labels',
        'topics__confidence',
        'topics__margin',
        'topics__p_economy',
        'topics__p_health',
        'topics__p_law',
        'topics__label_mass',
        'status',
        'error',
        'tokens',
        'source',
        'shard_id',
        'duplicate_of',
      ],
    );
    assert.ok(DataType.isList(schema.columns[2]?.arrowType));
    assert.equal(schema.multiQuestion, true);
  });

  it('keep a single-label question beside a multi-label one in its own single-label group', () => {
    const names = resultSchemaFor([TONE, TOPICS], 'int64').columns.map((c) => c.name);
    assert.deepEqual(names.slice(2, 9), [
      'tone__label',
      'tone__confidence',
      'tone__margin',
      'tone__entropy',
      'tone__p_calm',
      'tone__p_angry',
      'tone__label_mass',
    ]);
    assert.equal(names[9], 'topics__labels');
  });

  it('round-trip through a shard file and merge into Parquet that DuckDB reads as VARCHAR[]', async () => {
    await withTempDir(async (dir) => {
      const plan = await oneShardPlan(dir, 4);
      const shard = plan.shards[0]!;
      const tone = (calm: number): QuestionAnswer => ({
        label: calm >= 0.5 ? 'calm' : 'angry',
        confidence: Math.max(calm, 1 - calm),
        margin: Math.abs(2 * calm - 1),
        entropy: 0.5,
        probabilities: Float64Array.from([calm, 1 - calm]),
        labelMass: 0.9,
      });
      const rows = [
        row(shard.id, 0, [tone(0.9), topicsAnswer([0.9, 0.2, 0.6])]),
        row(shard.id, 1, [tone(0.3), topicsAnswer([0.1, 0.2, 0.3])]), // no label reaches its threshold: []
        row(shard.id, 2, [NONE, NONE], 'empty_text'), // not scored: the list is null
        row(shard.id, 3, [tone(0.5), topicsAnswer([0.5, 0.5, 0.5])]),
      ];
      const shardDir = path.join(dir, 'shards');
      const questions = [TONE, TOPICS];
      await writeShardResult({ dir: shardDir, shard, labels: [], questions, idType: plan.idType, rows });
      const file = await readShardResult(shardResultPath(shardDir, shard.id));
      assert.deepEqual(file.metadata.questions, [TONE, TOPICS]);
      const back = resultRowsOf(file.table, [], questions);
      assert.deepEqual(
        back.map((r) => r.answers?.[1]?.labels),
        [['economy', 'law'], [], null, ['economy', 'health', 'law']],
      );
      assert.deepEqual([...(back[0]?.answers?.[1]?.probabilities ?? [])], [0.9, 0.2, 0.6]);
      assert.equal(back[0]?.answers?.[1]?.confidence, rows[0]?.answers?.[1]?.confidence);
      assert.equal(back[0]?.answers?.[0]?.label, 'calm');

      // A list naming a label the question does not have is refused before anything is written.
      const invented = rows.map((r, i) =>
        i === 0 ? { ...r, answers: [tone(0.9), { ...topicsAnswer([0.9, 0.2, 0.6]), labels: ['science'] }] } : r,
      );
      await assert.rejects(
        writeShardResult({
          dir: path.join(dir, 'x'),
          shard,
          labels: [],
          questions,
          idType: plan.idType,
          rows: invented,
        }),
        /lists a label that multi-label question 1 does not have/,
      );

      const output = path.join(dir, 'out', 'results.parquet');
      await mergeShards({ plan, shardDir, output, labels: [], questions, manifest: {} });
      const manifest = JSON.parse(await readFile(`${output}.manifest.json`, 'utf8')) as {
        merge: { questions: ResultQuestion[] };
      };
      assert.deepEqual(manifest.merge.questions, [TONE, TOPICS]);
      const types = await queryDuckDB(
        `SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('${sqlString(output)}'))`,
      );
      const typeOf = (name: string): unknown => types.find((t) => t.column_name === name)?.column_type;
      assert.equal(typeOf('topics__labels'), 'VARCHAR[]');
      assert.equal(typeOf('topics__p_law'), 'DOUBLE');
      assert.equal(typeOf('tone__label'), 'VARCHAR');
      const read = await queryDuckDB(
        `SELECT id, topics__labels AS labels, len(topics__labels)::INTEGER AS n, ` +
          `list_contains(topics__labels, 'law') AS law, ` +
          `topics__p_economy AS p FROM read_parquet('${sqlString(output)}') ORDER BY id`,
      );
      assert.deepEqual(
        read.map((r) => [r.labels, r.n, r.law]),
        [
          [['economy', 'law'], 1 + 1, true],
          [[], 0, false],
          [null, null, null],
          [['economy', 'health', 'law'], 3, true],
        ],
      );
      assert.equal(read[0]?.p, 0.9);
      // The list survives the hyparquet reader too (what evaluate reads results with).
      const buffer = await readFile(output);
      const objects = await parquetReadObjects({
        file: buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength),
        columns: ['topics__labels'],
        compressors,
      });
      assert.deepEqual(
        objects.map((o) => (o.topics__labels as unknown) ?? null),
        [['economy', 'law'], [], null, ['economy', 'health', 'law']],
      );
    });
  });
});
