import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';

import { isRescaleError } from '../../contracts/errors.js';
import type { CorpusColumn, CorpusFile } from '../../contracts/shard.js';
import { resolveCorpus } from '../../coordinator/corpus.js';
import { planShards, shardId } from '../../coordinator/shard-planner.js';
import { withTempDir, writeParquetWithDuckDB } from '../../scripts/harness/parquet.js';

const COLUMNS: CorpusColumn[] = [
  { name: 'doc_id', physicalType: 'INT64', logicalType: null, nullable: false },
  { name: 'body', physicalType: 'BYTE_ARRAY', logicalType: 'STRING', nullable: true },
];

function corpusFile(name: string, groupRows: readonly number[], columns: CorpusColumn[] = COLUMNS): CorpusFile {
  let rowStart = 0;
  const rowGroups = groupRows.map((rows) => {
    const group = { rowStart, rows };
    rowStart += rows;
    return group;
  });
  return { path: `/corpus/${name}`, size: 1000, fingerprint: `fp-${name}`, rows: rowStart, rowGroups, columns };
}

const OPTIONS = { codebookHash: 'codebook-1', maxRowsPerShard: 1000, idColumn: 'doc_id', textColumn: 'body' } as const;
const ranges = (plan: ReturnType<typeof planShards>): [string, number, number, number][] =>
  plan.shards.map((shard) => [path.basename(shard.file), shard.rowStart, shard.rowEnd, shard.corpusRowStart]);

describe('planShards', () => {
  it('packs small row groups up to maxRowsPerShard and never spans files', () => {
    const plan = planShards([corpusFile('a', [300, 300, 300, 300, 100]), corpusFile('b', [500])], OPTIONS);
    assert.deepEqual(ranges(plan), [
      ['a', 0, 900, 0],
      ['a', 900, 1300, 900],
      ['b', 0, 500, 1300],
    ]);
    assert.equal(plan.totalRows, 1800);
    assert.deepEqual(
      plan.shards.map((shard) => shard.index),
      [0, 1, 2],
    );
  });

  it('splits a row group larger than maxRowsPerShard into near-equal row ranges', () => {
    const plan = planShards([corpusFile('a', [2500, 200])], OPTIONS);
    assert.deepEqual(ranges(plan), [
      ['a', 0, 833, 0],
      ['a', 833, 1666, 833],
      ['a', 1666, 2500, 1666],
      ['a', 2500, 2700, 2500],
    ]);
  });

  it('gives deterministic 24-hex-digit ids from fingerprint, range and codebook hash', () => {
    const files = [corpusFile('a', [700, 700]), corpusFile('b', [10])];
    const first = planShards(files, OPTIONS);
    const second = planShards(structuredClone(files), OPTIONS);
    assert.deepEqual(first, second);
    for (const shard of first.shards) {
      assert.match(shard.id, /^[0-9a-f]{24}$/);
      assert.equal(shard.id, shardId(shard.fingerprint, shard.rowStart, shard.rowEnd, 'codebook-1'));
    }
    assert.equal(new Set(first.shards.map((shard) => shard.id)).size, first.shards.length);
  });

  it('gives new ids when a file or the codebook changes, and keeps the others', () => {
    const base = planShards([corpusFile('a', [700]), corpusFile('b', [700])], OPTIONS);
    const changed = planShards([corpusFile('a', [700]), { ...corpusFile('b', [700]), fingerprint: 'fp-b2' }], OPTIONS);
    assert.equal(changed.shards[0]?.id, base.shards[0]?.id);
    assert.notEqual(changed.shards[1]?.id, base.shards[1]?.id);
    const recoded = planShards([corpusFile('a', [700]), corpusFile('b', [700])], {
      ...OPTIONS,
      codebookHash: 'codebook-2',
    });
    assert.ok(recoded.shards.every((shard, i) => shard.id !== base.shards[i]?.id));
  });

  it('keeps ids unique when the corpus holds byte-identical copies of a file', () => {
    const copy = { ...corpusFile('a', [500]), path: '/corpus/copy-of-a' };
    const plan = planShards([corpusFile('a', [500]), copy], OPTIONS);
    assert.equal(new Set(plan.shards.map((shard) => shard.id)).size, 2);
  });

  it('plans only the first `limit` rows for a trial run', () => {
    const files = [corpusFile('a', [600, 600]), corpusFile('b', [600])];
    const plan = planShards(files, { ...OPTIONS, limit: 1500 });
    assert.deepEqual(ranges(plan), [
      ['a', 0, 600, 0],
      ['a', 600, 1200, 600],
      ['b', 0, 300, 1200],
    ]);
    assert.equal(plan.totalRows, 1500);
    assert.equal(plan.limit, 1500);
    assert.equal(planShards(files, { ...OPTIONS, limit: 10 }).shards.length, 1);
    assert.equal(planShards(files, { ...OPTIONS, limit: 1e9 }).totalRows, 1800);
  });

  it('uses the corpus row index as the id (int64) when no id column is named', () => {
    const plan = planShards([corpusFile('a', [10])], { codebookHash: 'c', maxRowsPerShard: 5, textColumn: 'body' });
    assert.equal(plan.idColumn, null);
    assert.equal(plan.idType, 'int64');
  });

  it('reports a missing column with the file and the columns it has', () => {
    assert.throws(
      () => planShards([corpusFile('a', [10]), corpusFile('b', [10], [COLUMNS[0]!])], OPTIONS),
      (error: unknown) =>
        isRescaleError(error, 'COLUMN_MISSING') &&
        error.message.includes('"body"') &&
        error.message.includes('/corpus/b') &&
        error.message.includes('its columns are: doc_id'),
    );
    assert.throws(
      () => planShards([corpusFile('a', [10])], { ...OPTIONS, idColumn: 'uuid' }),
      (error: unknown) =>
        isRescaleError(error, 'COLUMN_MISSING') &&
        error.message.includes('"uuid"') &&
        error.message.includes('doc_id, body'),
    );
  });

  it('rejects a non-string text column and bad options', () => {
    const numeric = corpusFile(
      'a',
      [10],
      [COLUMNS[0]!, { name: 'body', physicalType: 'INT32', logicalType: null, nullable: false }],
    );
    assert.throws(
      () => planShards([numeric], OPTIONS),
      (error: unknown) => isRescaleError(error, 'INPUT_INVALID') && error.message.includes('not a string column'),
    );
    assert.throws(
      () => planShards([corpusFile('a', [10])], { ...OPTIONS, maxRowsPerShard: 0 }),
      (error: unknown) => isRescaleError(error, 'CONFIG_INVALID'),
    );
    assert.throws(
      () => planShards([corpusFile('a', [10])], { ...OPTIONS, limit: 0 }),
      (error: unknown) => isRescaleError(error, 'CONFIG_INVALID'),
    );
  });

  it('widens integer id types across files and rejects incompatible ones', () => {
    const int32 = corpusFile(
      'a',
      [10],
      [{ name: 'doc_id', physicalType: 'INT32', logicalType: null, nullable: true }, COLUMNS[1]!],
    );
    const text = corpusFile(
      'c',
      [10],
      [{ name: 'doc_id', physicalType: 'BYTE_ARRAY', logicalType: 'STRING', nullable: true }, COLUMNS[1]!],
    );
    assert.equal(planShards([int32], OPTIONS).idType, 'int32');
    assert.equal(planShards([int32, corpusFile('b', [10])], OPTIONS).idType, 'int64');
    assert.throws(
      () => planShards([int32, text], OPTIONS),
      (error: unknown) => isRescaleError(error, 'INPUT_INVALID') && error.message.includes('/corpus/c'),
    );
  });

  it('plans a real corpus the same way twice and re-ids only a rewritten file', async () => {
    await withTempDir(async (dir) => {
      const a = await writeParquetWithDuckDB(
        "SELECT i AS doc_id, 'x' || i AS body FROM range(5000) t(i)",
        path.join(dir, 'a.parquet'),
        { rowGroupSize: 2048 },
      );
      const b = await writeParquetWithDuckDB(
        "SELECT i AS doc_id, 'y' || i AS body FROM range(3000) t(i)",
        path.join(dir, 'b.parquet'),
        { rowGroupSize: 2048 },
      );
      const first = planShards(await resolveCorpus(dir), OPTIONS);
      const second = planShards(await resolveCorpus(dir), OPTIONS);
      assert.deepEqual(second, first);
      assert.equal(first.totalRows, 8000);
      assert.ok(first.shards.every((shard) => shard.rowEnd - shard.rowStart <= 1000));
      await writeParquetWithDuckDB("SELECT i AS doc_id, 'z' || i AS body FROM range(3000) t(i)", b);
      const third = planShards(await resolveCorpus(dir), OPTIONS);
      const idsOf = (plan: typeof first, file: string): string[] =>
        plan.shards.filter((shard) => shard.file === file).map((shard) => shard.id);
      assert.deepEqual(idsOf(third, a), idsOf(first, a));
      assert.ok(idsOf(third, b).every((id) => !idsOf(first, b).includes(id)));
    });
  });
});

describe('planShards: what a text column may be', () => {
  const withText = (column: Omit<CorpusColumn, 'name'>): CorpusFile =>
    corpusFile('a', [10], [COLUMNS[0]!, { name: 'body', ...column }]);
  const refused = (file: CorpusFile, type: string, options: Parameters<typeof planShards>[1] = OPTIONS): void =>
    assert.throws(
      () => planShards([file], options),
      (error: unknown) =>
        isRescaleError(error, 'INPUT_INVALID') &&
        error.message.includes('"body"') &&
        error.message.includes(file.path) &&
        error.message.includes(type) &&
        error.message.includes('not a string column'),
    );

  it('refuses geometry, geography and nested columns as text, naming the column and its type', async () => {
    await withTempDir(async (dir) => {
      const geometry = await writeParquetWithDuckDB(
        "SELECT i AS doc_id, 'POINT(1 2)'::GEOMETRY AS body FROM range(3) t(i)",
        path.join(dir, 'geometry.parquet'),
      );
      refused((await resolveCorpus(geometry))[0]!, 'GEOMETRY');
      const list = await writeParquetWithDuckDB(
        "SELECT i AS doc_id, ['a', 'b'] AS body FROM range(3) t(i)",
        path.join(dir, 'list.parquet'),
      );
      refused((await resolveCorpus(list))[0]!, 'LIST');
    });
    refused(withText({ physicalType: 'BYTE_ARRAY', logicalType: 'GEOGRAPHY', nullable: true }), 'GEOGRAPHY');
    refused(withText({ physicalType: 'FIXED_LEN_BYTE_ARRAY', logicalType: 'UUID', nullable: true }), 'UUID');
    refused(withText({ physicalType: 'BYTE_ARRAY', logicalType: 'DECIMAL', nullable: true }), 'DECIMAL');
    // A legacy list: a top-level repeated string field, each row several strings.
    refused(
      withText({ physicalType: 'BYTE_ARRAY', logicalType: 'STRING', nullable: true, repeated: true }),
      'repeated',
    );
  });

  it('accepts string, enum, JSON and unannotated binary text columns', () => {
    for (const logicalType of ['STRING', 'ENUM', 'JSON', null]) {
      const plan = planShards([withText({ physicalType: 'BYTE_ARRAY', logicalType, nullable: true })], OPTIONS);
      assert.equal(plan.shards.length, 1);
    }
  });

  it('checks the columns the prompt template names the same way, before any scoring', () => {
    const file = corpusFile(
      'a',
      [10],
      [...COLUMNS, { name: 'place', physicalType: 'BYTE_ARRAY', logicalType: 'GEOMETRY', nullable: true }],
    );
    assert.throws(
      () => planShards([file], { ...OPTIONS, promptColumns: ['place'] }),
      (error: unknown) =>
        isRescaleError(error, 'INPUT_INVALID') &&
        error.message.includes('"place"') &&
        error.message.includes('GEOMETRY') &&
        error.message.includes('prompt'),
    );
    assert.throws(
      () => planShards([file], { ...OPTIONS, promptColumns: ['party'] }),
      (error: unknown) => isRescaleError(error, 'COLUMN_MISSING') && error.message.includes('"party"'),
    );
  });
});
