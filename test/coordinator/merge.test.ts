import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';

import { isRescaleError } from '../../contracts/errors.js';
import type { DocumentId, IdType } from '../../contracts/results.js';
import type { ShardPlan } from '../../contracts/shard.js';
import { resolveCorpus } from '../../coordinator/corpus.js';
import { mergeShards } from '../../coordinator/merge.js';
import { planShards } from '../../coordinator/shard-planner.js';
import { readShardDocuments } from '../../storage/parquet-rows.js';
import { outputLayout } from '../../storage/output-layout.js';
import { writeShardResult } from '../../storage/shard-result-file.js';
import {
  duckDBTypes,
  fakeResultRows,
  queryDuckDB,
  sqlString,
  withTempDir,
  writeParquetWithDuckDB,
} from '../../scripts/harness/parquet.js';

const LABELS = ['sports', 'politics', 'tech'];

/** Two DuckDB files → plan → read each shard → fake scores → shard files: the local pipeline without a model. */
async function runPipeline(
  dir: string,
  idSql: string,
  options: { maxRowsPerShard?: number; skip?: number } = {},
): Promise<ShardPlan> {
  await writeParquetWithDuckDB(
    `SELECT ${idSql} AS id, 'first ' || i AS text FROM range(2500) t(i)`,
    path.join(dir, 'in', 'a.parquet'),
    { rowGroupSize: 2048 },
  );
  await writeParquetWithDuckDB(
    `SELECT ${idSql} AS id, 'second ' || i AS text FROM (SELECT i + 2500 AS i FROM range(1700) t(i))`,
    path.join(dir, 'in', 'b.parquet'),
  );
  const plan = planShards(await resolveCorpus(path.join(dir, 'in')), {
    codebookHash: 'cb',
    maxRowsPerShard: options.maxRowsPerShard ?? 1000,
    idColumn: 'id',
    textColumn: 'text',
  });
  for (const shard of plan.shards) {
    if (shard.index === options.skip) continue;
    const ids: (DocumentId | null)[] = [];
    for await (const batch of readShardDocuments(shard, { idColumn: 'id', textColumn: 'text' })) ids.push(...batch.ids);
    await writeShardResult({
      dir: path.join(dir, 'shards'),
      shard,
      labels: LABELS,
      idType: plan.idType,
      rows: fakeResultRows(shard, LABELS, ids),
    });
  }
  return plan;
}

async function mkdirs(dir: string): Promise<void> {
  await mkdir(path.join(dir, 'in'), { recursive: true });
}

describe('mergeShards', () => {
  it('writes one Parquet file in input order that DuckDB reads with the right types and values', async () => {
    await withTempDir(async (dir) => {
      await mkdirs(dir);
      const plan = await runPipeline(dir, 'i::BIGINT');
      const output = path.join(dir, 'out', 'results.parquet');
      const summary = await mergeShards({
        plan,
        shardDir: path.join(dir, 'shards'),
        output,
        labels: LABELS,
        manifest: { run: 'test-1', codebook: { name: 'topics' } },
        rowGroupRows: 1500,
      });
      assert.equal(summary.rows, 4200);
      assert.equal(summary.shards, plan.shards.length);
      assert.equal(summary.rowGroups, 2); // whole shards per row group: 682+683+683, then 452+850+850
      assert.equal(summary.codec, 'ZSTD');

      assert.deepEqual(await duckDBTypes(output), {
        id: 'BIGINT',
        row: 'BIGINT',
        label: 'VARCHAR',
        confidence: 'DOUBLE',
        margin: 'DOUBLE',
        entropy: 'DOUBLE',
        p_sports: 'DOUBLE',
        p_politics: 'DOUBLE',
        p_tech: 'DOUBLE',
        status: 'VARCHAR',
        error: 'VARCHAR',
        tokens: 'INTEGER',
        source: 'VARCHAR',
        shard_id: 'VARCHAR',
        local_label: 'VARCHAR',
        local_confidence: 'DOUBLE',
        fallback_label: 'VARCHAR',
        fallback_confidence: 'DOUBLE',
        fallback_status: 'VARCHAR',
        fallback_error: 'VARCHAR',
        label_mass: 'DOUBLE',
        duplicate_of: 'BIGINT',
      });
      const file = sqlString(output);
      const [stats] = await queryDuckDB(`
        SELECT count(*)::INT AS n,
               count(*) FILTER (WHERE id <> "row")::INT AS id_mismatch,
               bool_and("row" = rn - 1) AS in_order,
               count(*) FILTER (WHERE status = 'empty_text')::INT AS empty,
               count(label)::INT AS labelled,
               max(abs(p_sports + p_politics + p_tech - 1)) AS max_sum_error
        FROM (SELECT *, row_number() OVER () AS rn FROM read_parquet('${file}'))`);
      assert.deepEqual(stats, {
        n: 4200,
        id_mismatch: 0,
        in_order: true,
        empty: 420,
        labelled: 3780,
        max_sum_error: stats?.max_sum_error,
      });
      assert.ok(Number(stats?.max_sum_error) < 1e-12);
      const [codecRow] = await queryDuckDB(
        `SELECT DISTINCT compression FROM parquet_metadata('${file}') WHERE path_in_schema = 'p_tech'`,
      );
      assert.equal(String(codecRow?.compression), summary.codec);

      const shardIds = await queryDuckDB(
        `SELECT shard_id, min("row")::INT AS first, count(*)::INT AS n ` +
          `FROM read_parquet('${file}') GROUP BY shard_id ORDER BY first`,
      );
      assert.deepEqual(
        shardIds,
        plan.shards.map((shard) => ({
          shard_id: shard.id,
          first: shard.corpusRowStart,
          n: shard.rowEnd - shard.rowStart,
        })),
      );

      const manifest = JSON.parse(await readFile(outputLayout(output).manifestFile, 'utf8')) as Record<
        string,
        unknown
      > & { merge: Record<string, unknown> };
      assert.equal(summary.manifestPath, outputLayout(output).manifestFile);
      assert.equal(manifest.run, 'test-1');
      assert.deepEqual(manifest.codebook, { name: 'topics' });
      assert.equal(manifest.merge.rows, 4200);
      assert.equal((manifest.merge.shards as unknown[]).length, plan.shards.length);
      assert.deepEqual(manifest.merge.statusCounts, { ok: 3780, truncated: 0, empty_text: 420, error: 0 });
      assert.deepEqual((await readdir(path.join(dir, 'out'))).sort(), [
        'results.parquet',
        'results.parquet.manifest.json',
      ]);
    });
  });

  for (const [idSql, idType, duckType] of [
    ['i::INTEGER', 'int32', 'INTEGER'],
    ["'doc-' || i", 'utf8', 'VARCHAR'],
    ['(i % 250)::UTINYINT', 'uint8', 'UTINYINT'],
    ['(i + 4000000000)::UINTEGER', 'uint32', 'UINTEGER'],
    ['(i + 18446744073709500000)::UBIGINT', 'uint64', 'UBIGINT'],
  ] as const) {
    it(`keeps a ${duckType} id column as ${duckType} in the merged file`, async () => {
      await withTempDir(async (dir) => {
        await mkdirs(dir);
        const plan = await runPipeline(dir, idSql, { maxRowsPerShard: 5000 });
        assert.equal(plan.idType, idType satisfies IdType);
        const output = path.join(dir, 'results.parquet');
        await mergeShards({ plan, shardDir: path.join(dir, 'shards'), output, labels: LABELS, manifest: {} });
        assert.equal((await duckDBTypes(output)).id, duckType);
        const [row] = await queryDuckDB(
          `SELECT id::VARCHAR AS id FROM read_parquet('${sqlString(output)}') WHERE "row" = 2600`,
        );
        const expected = {
          'i::INTEGER': '2600',
          "'doc-' || i": 'doc-2600',
          '(i % 250)::UTINYINT': '100',
          '(i + 4000000000)::UINTEGER': '4000002600',
          '(i + 18446744073709500000)::UBIGINT': '18446744073709502600',
        }[idSql];
        assert.equal(row?.id, expected);
      });
    });
  }

  it('names the missing shards and writes nothing when a shard result is absent', async () => {
    await withTempDir(async (dir) => {
      await mkdirs(dir);
      const plan = await runPipeline(dir, 'i::BIGINT', { skip: 2 });
      const output = path.join(dir, 'results.parquet');
      await writeFile(output, 'previous output');
      const missing = plan.shards[2]?.id ?? '';
      await assert.rejects(
        mergeShards({ plan, shardDir: path.join(dir, 'shards'), output, labels: LABELS, manifest: {} }),
        (error: unknown) =>
          isRescaleError(error, 'SHARD_INCOMPLETE') &&
          error.message.includes(missing) &&
          error.message.includes(`1 of ${plan.shards.length}`),
      );
      assert.equal(await readFile(output, 'utf8'), 'previous output');
      assert.deepEqual((await readdir(dir)).sort(), ['in', 'results.parquet', 'shards']);
    });
  });

  it('rejects a shard file whose row count does not match its range, leaving no output', async () => {
    await withTempDir(async (dir) => {
      await mkdirs(dir);
      const plan = await runPipeline(dir, 'i::BIGINT');
      const victim = plan.shards[1]!;
      // A result written for a shorter range under the same id, as a buggy or stale worker might leave.
      const short = { ...victim, rowEnd: victim.rowEnd - 1 };
      const ids = Array.from({ length: short.rowEnd - short.rowStart }, (_, i) => BigInt(i));
      await writeShardResult({
        dir: path.join(dir, 'shards'),
        shard: short,
        labels: LABELS,
        idType: 'int64',
        rows: fakeResultRows(short, LABELS, ids),
      });
      const output = path.join(dir, 'results.parquet');
      await assert.rejects(
        mergeShards({ plan, shardDir: path.join(dir, 'shards'), output, labels: LABELS, manifest: {} }),
        (error: unknown) =>
          isRescaleError(error, 'SHARD_INCOMPLETE') &&
          error.message.includes(victim.id) &&
          error.message.includes('rows'),
      );
      assert.deepEqual((await readdir(dir)).sort(), ['in', 'shards']);
    });
  });

  it('rejects shard files written for other labels', async () => {
    await withTempDir(async (dir) => {
      await mkdirs(dir);
      const plan = await runPipeline(dir, 'i::BIGINT');
      await assert.rejects(
        mergeShards({
          plan,
          shardDir: path.join(dir, 'shards'),
          output: path.join(dir, 'r.parquet'),
          labels: ['sports', 'tech', 'politics'],
          manifest: {},
        }),
        (error: unknown) => isRescaleError(error, 'SHARD_INCOMPLETE') && error.message.includes('labels'),
      );
    });
  });

  it('merges a trial-run plan (limit) and records the limit in the manifest', async () => {
    await withTempDir(async (dir) => {
      await mkdirs(dir);
      await writeParquetWithDuckDB(
        `SELECT i AS id, 't' || i AS text FROM range(900) t(i)`,
        path.join(dir, 'in', 'a.parquet'),
      );
      const plan = planShards(await resolveCorpus(path.join(dir, 'in')), {
        codebookHash: 'cb',
        maxRowsPerShard: 100,
        idColumn: 'id',
        textColumn: 'text',
        limit: 250,
      });
      for (const shard of plan.shards) {
        const ids: (DocumentId | null)[] = [];
        for await (const batch of readShardDocuments(shard, { idColumn: 'id', textColumn: 'text' }))
          ids.push(...batch.ids);
        await writeShardResult({
          dir: path.join(dir, 'shards'),
          shard,
          labels: LABELS,
          idType: plan.idType,
          rows: fakeResultRows(shard, LABELS, ids),
        });
      }
      const output = path.join(dir, 'trial.parquet');
      const summary = await mergeShards({
        plan,
        shardDir: path.join(dir, 'shards'),
        output,
        labels: LABELS,
        manifest: {},
      });
      assert.equal(summary.rows, 250);
      const manifest = JSON.parse(await readFile(summary.manifestPath, 'utf8')) as {
        merge: { limit: number; rows: number };
      };
      assert.equal(manifest.merge.limit, 250);
      const [row] = await queryDuckDB(
        `SELECT count(*)::INT AS n, max(id)::INT AS last FROM read_parquet('${sqlString(output)}')`,
      );
      assert.deepEqual(row, { n: 250, last: 249 });
    });
  });

  it('writes ZSTD or another codec when asked explicitly, readable by DuckDB', async () => {
    await withTempDir(async (dir) => {
      await mkdirs(dir);
      const plan = await runPipeline(dir, 'i::BIGINT', { maxRowsPerShard: 5000 });
      const output = path.join(dir, 'z.parquet');
      const zstd = await mergeShards({
        plan,
        shardDir: path.join(dir, 'shards'),
        output,
        labels: LABELS,
        manifest: {},
        codec: 'ZSTD',
      });
      assert.equal(zstd.codec, 'ZSTD');
      const [zstdRow] = await queryDuckDB(`SELECT count(*)::INT AS n FROM read_parquet('${sqlString(output)}')`);
      assert.equal(zstdRow?.n, 4200);
      const summary = await mergeShards({
        plan,
        shardDir: path.join(dir, 'shards'),
        output,
        labels: LABELS,
        manifest: {},
        codec: 'SNAPPY',
      });
      assert.equal(summary.codec, 'SNAPPY');
      const [row] = await queryDuckDB(`SELECT count(*)::INT AS n FROM read_parquet('${sqlString(output)}')`);
      assert.equal(row?.n, 4200);
    });
  });
});
