import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';

import { isRescaleError } from '../../contracts/errors.js';
import type { ShardSpec } from '../../contracts/shard.js';
import { shardResultPath } from '../../storage/output-layout.js';
import { isShardComplete, readShardResult, resultRowsOf, writeShardResult } from '../../storage/shard-result-file.js';
import { fakeResultRows, withTempDir } from '../../scripts/harness/parquet.js';

const LABELS = ['positive', 'negative', 'neutral'];

function shard(overrides: Partial<ShardSpec> = {}): ShardSpec {
  return {
    id: '0123456789abcdef01234567',
    index: 2,
    file: '/data/a.parquet',
    fingerprint: 'f'.repeat(64),
    rowStart: 100,
    rowEnd: 130,
    corpusRowStart: 1100,
    ...overrides,
  };
}

describe('writeShardResult', () => {
  it('writes <dir>/<shardId>.arrow that reads back to the same rows, with the documented column types', async () => {
    await withTempDir(async (dir) => {
      const spec = shard();
      const rows = fakeResultRows(
        spec,
        LABELS,
        Array.from({ length: 30 }, (_, i) => (i === 5 ? null : BigInt(9000 + i))),
      );
      const written = await writeShardResult({ dir, shard: spec, labels: LABELS, idType: 'int64', rows });
      assert.equal(written, shardResultPath(dir, spec.id));
      assert.equal(written, path.join(dir, '0123456789abcdef01234567.arrow'));
      assert.ok(await isShardComplete(dir, spec.id));

      const result = await readShardResult(written);
      assert.equal(result.rows, 30);
      assert.equal(result.metadata.shardId, spec.id);
      assert.equal(result.metadata.corpusRowStart, 1100);
      assert.deepEqual(result.metadata.labels, LABELS);
      const types = Object.fromEntries(
        result.table.schema.fields.map((field) => [field.name, `${String(field.type)}${field.nullable ? '?' : ''}`]),
      );
      assert.deepEqual(types, {
        id: 'Int64?',
        row: 'Int64',
        label: 'Utf8?',
        confidence: 'Float64?',
        margin: 'Float64?',
        entropy: 'Float64?',
        p_positive: 'Float64?',
        p_negative: 'Float64?',
        p_neutral: 'Float64?',
        status: 'Utf8',
        error: 'Utf8?',
        tokens: 'Int32',
        source: 'Utf8',
        shard_id: 'Utf8',
        local_label: 'Utf8?',
        local_confidence: 'Float64?',
        fallback_label: 'Utf8?',
        fallback_confidence: 'Float64?',
        fallback_status: 'Utf8?',
        fallback_error: 'Utf8?',
        label_mass: 'Float64?',
        duplicate_of: 'Int64?',
      });
      assert.deepEqual(resultRowsOf(result.table, LABELS), rows);
    });
  });

  it('keeps int32 and string ids in their own types', async () => {
    await withTempDir(async (dir) => {
      const spec = shard({ rowStart: 0, rowEnd: 3, corpusRowStart: 0 });
      await writeShardResult({
        dir,
        shard: spec,
        labels: LABELS,
        idType: 'int32',
        rows: fakeResultRows(spec, LABELS, [1, 2, -3]),
      });
      let table = (await readShardResult(shardResultPath(dir, spec.id))).table;
      assert.equal(String(table.getChild('id')?.type), 'Int32');
      assert.deepEqual([...(table.getChild('id') ?? [])], [1, 2, -3]);
      await writeShardResult({
        dir,
        shard: spec,
        labels: LABELS,
        idType: 'utf8',
        rows: fakeResultRows(spec, LABELS, ['a', 'ü', null]),
      });
      table = (await readShardResult(shardResultPath(dir, spec.id))).table;
      assert.equal(String(table.getChild('id')?.type), 'Utf8');
      assert.deepEqual([...(table.getChild('id') ?? [])], ['a', 'ü', null]);
    });
  });

  it('refuses rows that do not cover the shard exactly, and writes nothing', async () => {
    await withTempDir(async (dir) => {
      const spec = shard();
      const rows = fakeResultRows(
        spec,
        LABELS,
        Array.from({ length: 29 }, (_, i) => i),
      );
      await assert.rejects(
        writeShardResult({ dir, shard: spec, labels: LABELS, idType: 'int64', rows }),
        (error: unknown) => isRescaleError(error, 'INTERNAL') && error.message.includes('29 result rows for 30'),
      );
      const shuffled = fakeResultRows(
        spec,
        LABELS,
        Array.from({ length: 30 }, (_, i) => i),
      ).reverse();
      await assert.rejects(
        writeShardResult({ dir, shard: spec, labels: LABELS, idType: 'int64', rows: shuffled }),
        (error: unknown) => isRescaleError(error, 'INTERNAL'),
      );
      const tooBig = fakeResultRows(
        spec,
        LABELS,
        Array.from({ length: 30 }, () => 300),
      );
      await assert.rejects(
        writeShardResult({ dir, shard: spec, labels: LABELS, idType: 'int8', rows: tooBig }),
        (error: unknown) => isRescaleError(error, 'INTERNAL') && error.message.includes('int8'),
      );
      assert.equal(await isShardComplete(dir, spec.id), false);
      assert.deepEqual(await readdir(dir), []);
    });
  });
});

describe('isShardComplete', () => {
  it('does not mistake temp files or directories for results', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, '.abc.arrow.123-deadbeef.tmp'), 'partial');
      await mkdir(path.join(dir, 'def.arrow'));
      assert.equal(await isShardComplete(dir, 'abc'), false);
      assert.equal(await isShardComplete(dir, 'def'), false);
      assert.equal(await isShardComplete(path.join(dir, 'missing'), 'abc'), false);
    });
  });
});

describe('readShardResult', () => {
  it('reports a missing or corrupt file as SHARD_INCOMPLETE naming it', async () => {
    await withTempDir(async (dir) => {
      const missing = shardResultPath(dir, 'nope');
      await assert.rejects(
        readShardResult(missing),
        (error: unknown) => isRescaleError(error, 'SHARD_INCOMPLETE') && error.message.includes(missing),
      );
      const corrupt = shardResultPath(dir, 'bad');
      await writeFile(corrupt, 'not arrow at all');
      await assert.rejects(
        readShardResult(corrupt),
        (error: unknown) => isRescaleError(error, 'SHARD_INCOMPLETE') && error.message.includes(corrupt),
      );
    });
  });
});
