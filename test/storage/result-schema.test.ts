// The added result columns through the shard writer and the merge: both opinions and duplicate_of round-trip,
// inconsistent rows are refused, and shard files written before the columns existed merge as local-only rows.

import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { RecordBatch, Schema, Table, tableFromIPC, tableToIPC } from 'apache-arrow';
import type { ResultRow } from '../../contracts/results.js';
import { resolveCorpus } from '../../coordinator/corpus.js';
import { mergeShards } from '../../coordinator/merge.js';
import { planShards } from '../../coordinator/shard-planner.js';
import { shardResultPath } from '../../storage/output-layout.js';
import { readShardResult, resultRowsOf, writeShardResult } from '../../storage/shard-result-file.js';
import { SENTIMENT, scoredRow } from '../helpers/fallback.js';
import { queryDuckDB, sqlString, withTempDir, writeParquetWithDuckDB } from '../../scripts/harness/parquet.js';

const LABELS = [...SENTIMENT];

async function twoShards(dir: string) {
  await mkdir(path.join(dir, 'in'), { recursive: true });
  await writeParquetWithDuckDB(
    `SELECT i::BIGINT AS id, 'text ' || i AS text FROM range(8) t(i)`,
    path.join(dir, 'in', 'a.parquet'),
  );
  return planShards(await resolveCorpus(path.join(dir, 'in')), {
    codebookHash: 'cb',
    maxRowsPerShard: 4,
    idColumn: 'id',
    textColumn: 'text',
  });
}

function rowsFor(shard: { id: string; corpusRowStart: number }, withFallback: boolean): ResultRow[] {
  return Array.from({ length: 4 }, (_, k) => {
    const row = {
      ...scoredRow(shard.corpusRowStart + k, 'neutral', 0.4, shard.id),
      id: BigInt(shard.corpusRowStart + k),
      ...(k === 3 ? {} : { labelMass: 0.5 + k / 8 }),
    };
    if (!withFallback) return row;
    if (k === 0)
      return {
        ...row,
        label: 'positive',
        source: 'fallback' as const,
        localLabel: 'neutral',
        fallback: { status: 'ok' as const, label: 'positive', confidence: 0.9, error: null },
      };
    if (k === 1)
      return {
        ...row,
        localLabel: 'neutral',
        fallback: { status: 'over_budget' as const, label: null, confidence: null, error: 'fallback budget reached' },
      };
    return { ...row, localLabel: 'neutral', fallback: null };
  });
}

describe('fallback result columns', () => {
  it('round-trip through the shard file, and the writer refuses a fallback row that contradicts itself', async () => {
    await withTempDir(async (dir) => {
      const plan = await twoShards(dir);
      const shard = plan.shards[0]!;
      const rows = rowsFor(shard, true);
      await writeShardResult({ dir, shard, labels: LABELS, idType: plan.idType, rows });
      const back = resultRowsOf((await readShardResult(shardResultPath(dir, shard.id))).table, LABELS);
      assert.deepEqual(back[0]?.fallback, rows[0]?.fallback);
      assert.equal(back[0]?.localLabel, 'neutral');
      assert.equal(back[0]?.label, 'positive');
      assert.deepEqual(back[1]?.fallback, rows[1]?.fallback);
      assert.equal(back[2]?.fallback, undefined);
      assert.deepEqual(
        back.map((r) => r.labelMass),
        [0.5, 0.625, 0.75, undefined],
      );

      const invented = rows.map((r, i) =>
        i === 0
          ? { ...r, label: 'mixed', fallback: { status: 'ok' as const, label: 'mixed', confidence: null, error: null } }
          : r,
      );
      await assert.rejects(
        writeShardResult({ dir, shard, labels: LABELS, idType: plan.idType, rows: invented }),
        /not a codebook label/,
      );
      const unsourced = rows.map((r, i) => (i === 0 ? { ...r, source: 'local' as const } : r));
      await assert.rejects(
        writeShardResult({ dir, shard, labels: LABELS, idType: plan.idType, rows: unsourced }),
        /source local but fallback status ok/,
      );
    });
  });

  it('round-trip duplicate_of, and the writer refuses a copy that is not of an earlier original row', async () => {
    await withTempDir(async (dir) => {
      const plan = await twoShards(dir);
      const shard = plan.shards[1]!;
      const start = shard.corpusRowStart;
      const rows = rowsFor(shard, false).map((row, k) =>
        k === 3 ? { ...row, tokens: 0, labelMass: 0.75, duplicateOf: start + 2 } : row,
      );
      await writeShardResult({ dir, shard, labels: LABELS, idType: plan.idType, rows });
      const back = resultRowsOf((await readShardResult(shardResultPath(dir, shard.id))).table, LABELS);
      assert.deepEqual(back, rows);
      assert.deepEqual(
        back.map((r) => r.duplicateOf),
        [undefined, undefined, undefined, start + 2],
      );
      const refused = [
        [{ duplicateOf: start + 3 }, /copy of row 7, not an earlier row/],
        [{ duplicateOf: start - 1 }, /copy of row 3, not an earlier row/],
        [{ duplicateOf: start + 2, tokens: 10 }, /is a copy but has 10 tokens/],
      ] as const;
      for (const [change, message] of refused) {
        const bad = rows.map((row, k) => (k === 3 ? { ...row, ...change } : row));
        await assert.rejects(writeShardResult({ dir, shard, labels: LABELS, idType: plan.idType, rows: bad }), message);
      }
      const chained = rows.map((row, k) => (k === 2 ? { ...row, tokens: 0, duplicateOf: start } : row));
      await assert.rejects(
        writeShardResult({ dir, shard, labels: LABELS, idType: plan.idType, rows: chained }),
        /copies row 6, itself a copy/,
      );
    });
  });

  it('merge shard files written before the fallback, label_mass and duplicate_of columns as local rows', async () => {
    await withTempDir(async (dir) => {
      const plan = await twoShards(dir);
      const shardDir = path.join(dir, 'shards');
      const [fresh, old] = plan.shards;
      await writeShardResult({
        dir: shardDir,
        shard: fresh!,
        labels: LABELS,
        idType: plan.idType,
        rows: rowsFor(fresh!, true).map((row, k) => (k === 3 ? { ...row, tokens: 0, duplicateOf: 2 } : row)),
      });
      await writeShardResult({
        dir: shardDir,
        shard: old!,
        labels: LABELS,
        idType: plan.idType,
        rows: rowsFor(old!, false),
      });
      // Rewrite the second shard file without the eight new columns, as the previous versions wrote it.
      const file = shardResultPath(shardDir, old!.id);
      const table = tableFromIPC(await readFile(file));
      const keep = table.schema.fields
        .map((f) => f.name)
        .filter((name) => !/^(local_|fallback_|label_mass$|duplicate_of$)/.test(name));
      const legacy = table.select(keep);
      const legacySchema = new Schema(legacy.schema.fields, table.schema.metadata);
      await writeFile(
        file,
        tableToIPC(
          new Table(
            legacySchema,
            legacy.batches.map((batch) => new RecordBatch(legacySchema, batch.data)),
          ),
          'file',
        ),
      );
      assert.equal(
        tableFromIPC(await readFile(file)).schema.fields.some((f) => f.name === 'local_label'),
        false,
      );

      const output = path.join(dir, 'merged.parquet');
      const summary = await mergeShards({ plan, shardDir, output, labels: LABELS, manifest: {} });
      assert.deepEqual(summary.sourceCounts, { local: 7, fallback: 1 });
      assert.deepEqual(summary.fallbackStatusCounts, {
        ok: 1,
        fallback_invalid: 0,
        over_budget: 1,
        fallback_failed: 0,
      });
      const rows = await queryDuckDB(
        `SELECT "row"::INT AS r, label, local_label, local_confidence, fallback_status, label_mass, ` +
          `duplicate_of::INT AS duplicate_of ` +
          `FROM read_parquet('${sqlString(output)}') ORDER BY "row"`,
      );
      assert.deepEqual(
        rows.slice(0, 2).map((r) => [r.label, r.local_label, r.fallback_status]),
        [
          ['positive', 'neutral', 'ok'],
          ['neutral', 'neutral', 'over_budget'],
        ],
      );
      assert.deepEqual(
        rows.slice(0, 4).map((r) => r.label_mass),
        [0.5, 0.625, 0.75, null],
      );
      assert.deepEqual(
        rows.map((r) => r.duplicate_of),
        [null, null, null, 2, null, null, null, null],
      );
      assert.equal(summary.duplicates, 1);
      for (const row of rows.slice(4))
        assert.deepEqual(
          [row.label, row.local_label, row.local_confidence, row.fallback_status, row.label_mass],
          ['neutral', 'neutral', 0.4, null, null],
        );
    });
  });
});

describe('multi-question result columns', () => {
  const questions = [
    { name: 'sentiment', labels: LABELS },
    { name: 'topic', labels: ['politics', 'other'] },
  ];

  function multiRows(shard: { id: string; corpusRowStart: number }): ResultRow[] {
    return Array.from({ length: 4 }, (_, k) => ({
      id: BigInt(shard.corpusRowStart + k),
      row: shard.corpusRowStart + k,
      label: null,
      confidence: null,
      margin: null,
      entropy: null,
      probabilities: null,
      status: k === 2 ? ('empty_text' as const) : ('ok' as const),
      error: k === 2 ? 'document text is null or blank' : null,
      tokens: k === 2 ? 0 : 10 + k,
      source: 'local' as const,
      shardId: shard.id,
      answers: questions.map((q, qi) =>
        k === 2
          ? { label: null, confidence: null, margin: null, entropy: null, probabilities: null, labelMass: null }
          : {
              label: q.labels[0] as string,
              confidence: 0.6,
              margin: 0.3,
              entropy: 0.8 + qi,
              probabilities: Float64Array.from(q.labels.map((_, j) => (j === 0 ? 0.6 : 0.4 / (q.labels.length - 1)))),
              labelMass: 0.9 - qi / 10,
            },
      ),
    }));
  }

  it('round-trips every question through a shard file, merges it, and refuses a file of other questions', async () => {
    await withTempDir(async (dir) => {
      const plan = await twoShards(dir);
      const shardDir = path.join(dir, 'shards');
      for (const shard of plan.shards) {
        const rows = multiRows(shard);
        await writeShardResult({ dir: shardDir, shard, labels: [], questions, idType: plan.idType, rows });
        const back = resultRowsOf((await readShardResult(shardResultPath(shardDir, shard.id))).table, [], questions);
        assert.deepEqual(back, rows);
      }
      const output = path.join(dir, 'out.parquet');
      const summary = await mergeShards({ plan, shardDir, output, labels: [], questions, manifest: {} });
      assert.equal(summary.statusCounts.ok, 6);
      const merged = await queryDuckDB(`SELECT * FROM read_parquet('${sqlString(output)}') ORDER BY row`);
      assert.equal(merged[1]?.['topic__p_other'], 0.4);
      assert.equal(merged[2]?.['sentiment__label'], null);
      const other = [questions[0] as (typeof questions)[number], { name: 'topic', labels: ['other', 'politics'] }];
      await assert.rejects(
        mergeShards({
          plan,
          shardDir,
          output: path.join(dir, 'b.parquet'),
          labels: [],
          questions: other,
          manifest: {},
        }),
        /was written for questions sentiment \[negative, neutral, positive\], topic \[politics, other\]/,
      );
      const shard = plan.shards[0];
      assert.ok(shard !== undefined);
      const withoutAnswers = multiRows(shard).map(({ answers: _answers, ...row }) => row);
      await assert.rejects(
        writeShardResult({ dir: shardDir, shard, labels: [], questions, idType: plan.idType, rows: withoutAnswers }),
        /has 0 answers for 2 questions/,
      );
    });
  });
});
