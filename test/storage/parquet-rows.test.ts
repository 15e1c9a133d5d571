import assert from 'node:assert/strict';
import { open, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { DataType } from 'apache-arrow';
import { ByteWriter, parquetWriteFile } from 'hyparquet-writer';
import { serializeTCompactProtocol } from 'hyparquet-writer/src/thrift.js';
import { deserializeTCompactProtocol } from 'hyparquet/src/thrift.js';

import { isRescaleError } from '../../contracts/errors.js';
import type { CorpusFile, ShardSpec } from '../../contracts/shard.js';
import { resolveCorpus } from '../../coordinator/corpus.js';
import { planShards } from '../../coordinator/shard-planner.js';
import {
  RowGroupCache,
  idArrowType,
  readParquetFooter,
  readShardDocuments,
  readShardRows,
  type DocumentBatch,
} from '../../storage/parquet-rows.js';
import { withTempDir, writeParquetWithDuckDB, type DuckDBCodec } from '../../scripts/harness/parquet.js';

const ROWS = 6000;
// Nulls every 7th row, a low-cardinality column (dictionary pages) and a 100k-character string every 1000th row.
const CORPUS_QUERY = `
  SELECT i::BIGINT AS id,
         CASE WHEN i % 7 = 0 THEN NULL WHEN i % 1000 = 1 THEN repeat('x', 100000) ELSE 'document ' || i END AS text,
         'topic ' || (i % 4) AS topic
  FROM range(${ROWS}) t(i)`;

function expectedText(i: number): string | null {
  if (i % 7 === 0) return null;
  if (i % 1000 === 1) return 'x'.repeat(100000);
  return `document ${i}`;
}

async function collect(
  batches: AsyncIterable<DocumentBatch>,
): Promise<{ rows: number[]; ids: unknown[]; texts: (string | null)[] }> {
  const out = { rows: [] as number[], ids: [] as unknown[], texts: [] as (string | null)[] };
  for await (const batch of batches) {
    out.rows.push(...batch.rows);
    out.ids.push(...batch.ids);
    out.texts.push(...batch.texts);
  }
  return out;
}

/** Legacy Hadoop-framed LZ4 (codec LZ4, as older pyarrow/parquet-mr wrote it): a literal-only LZ4 block per page. */
function hadoopLz4(input: Uint8Array): Uint8Array {
  const extra = input.length >= 15 ? Math.floor((input.length - 15) / 255) + 1 : 0;
  const block = new Uint8Array(1 + extra + input.length);
  block[0] = Math.min(input.length, 15) << 4;
  let offset = 1;
  if (input.length >= 15) {
    let rest = input.length - 15;
    for (; rest >= 255; rest -= 255) block[offset++] = 255;
    block[offset++] = rest;
  }
  block.set(input, offset);
  const framed = new Uint8Array(8 + block.length);
  const view = new DataView(framed.buffer);
  view.setUint32(0, input.length);
  view.setUint32(4, block.length);
  framed.set(block, 8);
  return framed;
}

/** Snappy as one literal run (valid for any decoder): the length as a varint, then a literal tag and the bytes. */
function literalSnappy(input: Uint8Array): Uint8Array {
  const head: number[] = [];
  for (let n = input.length; ; n >>>= 7) {
    if (n < 0x80) {
      head.push(n);
      break;
    }
    head.push((n & 0x7f) | 0x80);
  }
  const n = input.length - 1;
  if (n < 60) head.push(n << 2);
  else if (n < 0x100) head.push(60 << 2, n);
  else if (n < 0x10000) head.push(61 << 2, n & 0xff, n >> 8);
  else head.push(62 << 2, n & 0xff, (n >> 8) & 0xff, n >> 16);
  const out = new Uint8Array(head.length + input.length);
  out.set(head);
  out.set(input, head.length);
  return out;
}

type ThriftStruct = Record<string, unknown>;

/**
 * Rewrites a Parquet file's footer (FileMetaData as Thrift fields: field_2 schema, field_4 row groups, ...) to make
 * what no writer at hand produces; the pages are left as they are.
 */
async function editFooter(file: string, edit: (metadata: ThriftStruct) => void): Promise<void> {
  const bytes = await readFile(file);
  const length = bytes.readUInt32LE(bytes.length - 8);
  const start = bytes.length - 8 - length;
  const view = new DataView(bytes.buffer, bytes.byteOffset + start, length);
  const metadata = deserializeTCompactProtocol({ view, offset: 0 }) as ThriftStruct;
  edit(metadata);
  const writer = new ByteWriter();
  serializeTCompactProtocol(writer, metadata);
  const footer = Buffer.from(writer.getBuffer());
  const tail = Buffer.alloc(8);
  tail.writeUInt32LE(footer.length, 0);
  tail.write('PAR1', 4, 'latin1');
  await writeFile(file, Buffer.concat([bytes.subarray(0, start), footer, tail]));
}

async function planOne(
  file: string,
  maxRowsPerShard: number,
  idColumn: string | null = 'id',
): Promise<{ corpus: CorpusFile[]; shards: readonly ShardSpec[] }> {
  const corpus = await resolveCorpus(file);
  const plan = planShards(corpus, { codebookHash: 'cb', maxRowsPerShard, idColumn, textColumn: 'text' });
  return { corpus, shards: plan.shards };
}

describe('readShardRows', () => {
  const codecs: DuckDBCodec[] = ['uncompressed', 'snappy', 'gzip', 'zstd', 'brotli', 'lz4', 'lz4_raw'];
  for (const codec of codecs) {
    for (const parquetVersion of ['V1', 'V2'] as const) {
      // DuckDB's V2 means V2 encodings (DELTA_BINARY_PACKED, DELTA_LENGTH_BYTE_ARRAY) in v1 page headers;
      // DATA_PAGE_V2 headers are covered by the hyparquet-writer files below.
      const encodings = parquetVersion === 'V1' ? 'PLAIN/dictionary' : 'delta';
      it(
        `reads a DuckDB ${codec} file with ${encodings} encodings: ` +
          `only the shard's rows, with nulls and 100k-char strings`,
        async () => {
          await withTempDir(async (dir) => {
            const file = await writeParquetWithDuckDB(CORPUS_QUERY, path.join(dir, `c.parquet`), {
              codec,
              parquetVersion,
              rowGroupSize: 2048,
            });
            const { shards } = await planOne(file, 1500);
            // A shard in the middle of a split row group and one spanning into the last group.
            for (const shard of [shards[1], shards.at(-1)]) {
              assert.ok(shard);
              const got = await collect(
                readShardDocuments(shard, { idColumn: 'id', textColumn: 'text', batchSize: 500 }),
              );
              const range = Array.from({ length: shard.rowEnd - shard.rowStart }, (_, k) => shard.rowStart + k);
              assert.deepEqual(
                got.rows,
                range.map((i) => shard.corpusRowStart + (i - shard.rowStart)),
              );
              assert.deepEqual(
                got.ids,
                range.map((i) => BigInt(i)),
              );
              assert.deepEqual(got.texts, range.map(expectedText));
            }
          });
        },
      );
    }
  }

  it('reads DATA_PAGE_V2 pages and legacy Hadoop-framed LZ4', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'lz4.parquet');
      const texts = Array.from({ length: 300 }, (_, i) => (i % 9 === 0 ? null : `lz4 text ${i} `.repeat(i % 5)));
      parquetWriteFile({
        filename: file,
        codec: 'LZ4',
        compressors: { LZ4: hadoopLz4 },
        columnData: [
          { name: 'id', data: Array.from({ length: 300 }, (_, i) => BigInt(i)), type: 'INT64' },
          { name: 'text', data: texts, type: 'STRING' },
        ],
      });
      const handle = await open(file);
      try {
        const { metadata } = await readParquetFooter(handle, file);
        const text = metadata.row_groups[0]?.columns[1]?.meta_data;
        assert.equal(text?.codec, 'LZ4');
        assert.ok(text?.encoding_stats?.some((stat) => stat.page_type === 'DATA_PAGE_V2'));
      } finally {
        await handle.close();
      }
      const { shards } = await planOne(file, 1000);
      const got = await collect(readShardDocuments(shards[0]!, { idColumn: 'id', textColumn: 'text' }));
      assert.deepEqual(got.texts, texts);
    });
  });

  it('reads each row group once with a cache and returns the same rows as without', async () => {
    await withTempDir(async (dir) => {
      const file = await writeParquetWithDuckDB(CORPUS_QUERY, path.join(dir, 'c.parquet'), { rowGroupSize: 2048 });
      const { shards } = await planOne(file, 700);
      class CountingCache extends RowGroupCache {
        hits = 0;
        override get(key: string, rowStart: number, rowEnd: number): ReturnType<RowGroupCache['get']> {
          const found = super.get(key, rowStart, rowEnd);
          if (found !== undefined) this.hits += 1;
          return found;
        }
      }
      const cache = new CountingCache();
      const disabled = new CountingCache(0);
      const read = async (options: { cache?: RowGroupCache }): Promise<unknown[]> => {
        const out: unknown[] = [];
        for (const shard of shards)
          out.push(
            ...(await collect(readShardDocuments(shard, { idColumn: 'id', textColumn: 'text', ...options }))).texts,
          );
        return out;
      };
      const plain = await read({});
      assert.deepEqual(await read({ cache }), plain);
      assert.deepEqual(await read({ cache: disabled }), plain);
      assert.deepEqual(
        plain,
        Array.from({ length: ROWS }, (_, i) => expectedText(i)),
      );
      // 3 row groups split into 3 shards each: the 2nd and 3rd shard of each group hit the cache.
      assert.equal(cache.hits, shards.length - 3);
      assert.equal(disabled.hits, 0);
    });
  });

  it('reads dictionary-encoded columns', async () => {
    await withTempDir(async (dir) => {
      const file = await writeParquetWithDuckDB(CORPUS_QUERY, path.join(dir, 'd.parquet'), { rowGroupSize: 2048 });
      const handle = await open(file);
      try {
        const { metadata } = await readParquetFooter(handle, file);
        const topic = metadata.row_groups[0]?.columns[2]?.meta_data;
        assert.ok(
          topic?.encodings.some((encoding) => encoding.endsWith('DICTIONARY')),
          `encodings: ${topic?.encodings.join(',')}`,
        );
      } finally {
        await handle.close();
      }
      const { shards } = await planOne(file, 10_000);
      const values: unknown[] = [];
      for await (const batch of readShardRows(shards[0]!, ['topic']))
        values.push(...(batch.columns.get('topic') ?? []));
      assert.deepEqual(
        values,
        Array.from({ length: ROWS }, (_, i) => `topic ${i % 4}`),
      );
    });
  });

  it('decodes invalid UTF-8 with replacement characters instead of failing', async () => {
    await withTempDir(async (dir) => {
      // A STRING column holding raw bytes that are not UTF-8, as some writers produce.
      const file = path.join(dir, 'bytes.parquet');
      const bad = Uint8Array.from([0x61, 0xff, 0xfe, 0x62]);
      parquetWriteFile({
        filename: file,
        columnData: [
          { name: 'id', data: [1, 2, 3], type: 'INT32' },
          { name: 'text', data: [bad, new TextEncoder().encode('ok ✓'), null], type: 'STRING' },
        ],
      });
      // And a BLOB (BYTE_ARRAY without annotation) written by DuckDB.
      const blob = await writeParquetWithDuckDB(
        `SELECT 1 AS id, '\\xC3\\x28abc'::BLOB AS text`,
        path.join(dir, 'blob.parquet'),
      );
      const first = await planOne(file, 100);
      const second = await planOne(blob, 100);
      const got = await collect(readShardDocuments(first.shards[0]!, { idColumn: 'id', textColumn: 'text' }));
      assert.deepEqual(got.texts, ['a\uFFFD\uFFFDb', 'ok ✓', null]);
      const gotBlob = await collect(readShardDocuments(second.shards[0]!, { idColumn: 'id', textColumn: 'text' }));
      assert.deepEqual(gotBlob.texts, ['\uFFFD(abc']);
    });
  });

  it('reports a corrupt data page as INPUT_INVALID naming the file, the column, its format and the rows', async () => {
    await withTempDir(async (dir) => {
      const file = await writeParquetWithDuckDB(CORPUS_QUERY, path.join(dir, 'c.parquet'), {
        codec: 'snappy',
        rowGroupSize: 2048,
      });
      const { shards } = await planOne(file, 10_000);
      const handle = await open(file);
      const { metadata } = await readParquetFooter(handle, file).finally(() => handle.close());
      const text = metadata.row_groups[1]?.columns[1]?.meta_data;
      assert.ok(text);
      const bytes = await readFile(file);
      const start = Number(text.dictionary_page_offset ?? text.data_page_offset);
      bytes.fill(0xff, start + 40, start + Number(text.total_compressed_size) - 40);
      await writeFile(file, bytes);
      await assert.rejects(
        collect(readShardDocuments(shards[0]!, { idColumn: 'id', textColumn: 'text' })),
        (error: unknown) =>
          isRescaleError(error, 'INPUT_INVALID') &&
          error.message.includes(file) &&
          error.message.includes('rows 2048') &&
          // The column at fault, with its encodings and codec, so the user knows what to rewrite.
          error.message.includes('column "text" (') &&
          error.message.includes('SNAPPY'),
      );
    });
  });

  it('uses the corpus row index as the id when there is no id column', async () => {
    await withTempDir(async (dir) => {
      const a = await writeParquetWithDuckDB(
        "SELECT 'a' || i AS text FROM range(30) t(i)",
        path.join(dir, 'a.parquet'),
      );
      const b = await writeParquetWithDuckDB(
        "SELECT 'b' || i AS text FROM range(20) t(i)",
        path.join(dir, 'b.parquet'),
      );
      const plan = planShards(await resolveCorpus([a, b]), {
        codebookHash: 'cb',
        maxRowsPerShard: 25,
        textColumn: 'text',
      });
      const ids: unknown[] = [];
      for (const shard of plan.shards)
        ids.push(...(await collect(readShardDocuments(shard, { idColumn: null, textColumn: 'text' }))).ids);
      assert.deepEqual(
        ids,
        Array.from({ length: 50 }, (_, i) => i),
      );
    });
  });

  it('refuses a file that changed since planning, naming it', async () => {
    await withTempDir(async (dir) => {
      const file = await writeParquetWithDuckDB(CORPUS_QUERY, path.join(dir, 'c.parquet'));
      const { shards } = await planOne(file, 10_000);
      await writeParquetWithDuckDB(CORPUS_QUERY.replace("'document '", "'doc '"), file);
      await assert.rejects(
        collect(readShardDocuments(shards[0]!, { idColumn: 'id', textColumn: 'text' })),
        (error: unknown) =>
          isRescaleError(error, 'INPUT_INVALID') &&
          error.message.includes(file) &&
          error.message.includes('plan the corpus again'),
      );
    });
  });

  it('reports a missing column with the columns that exist', async () => {
    await withTempDir(async (dir) => {
      const file = await writeParquetWithDuckDB(CORPUS_QUERY, path.join(dir, 'c.parquet'));
      const { shards } = await planOne(file, 10_000);
      await assert.rejects(
        collect(readShardDocuments(shards[0]!, { idColumn: 'doc_id', textColumn: 'text' })),
        (error: unknown) =>
          isRescaleError(error, 'COLUMN_MISSING') &&
          error.message.includes('"doc_id"') &&
          error.message.includes('id, text, topic'),
      );
    });
  });

  it('stops with ABORTED when the signal is aborted', async () => {
    await withTempDir(async (dir) => {
      const file = await writeParquetWithDuckDB(CORPUS_QUERY, path.join(dir, 'c.parquet'), { rowGroupSize: 2048 });
      const { shards } = await planOne(file, 10_000);
      const controller = new AbortController();
      let batches = 0;
      await assert.rejects(
        (async () => {
          for await (const _batch of readShardRows(shards[0]!, ['text'], {
            signal: controller.signal,
            batchSize: 100,
          })) {
            batches += 1;
            controller.abort();
          }
        })(),
        (error: unknown) => isRescaleError(error, 'ABORTED'),
      );
      assert.equal(batches, 1);
    });
  });
});

describe('idArrowType', () => {
  it('keeps the id column type: integers by width and sign, floats, strings and UUIDs as utf8', async () => {
    await withTempDir(async (dir) => {
      const file = await writeParquetWithDuckDB(
        `SELECT 1::INTEGER AS i32, 1::BIGINT AS i64, 1::TINYINT AS i8, 1::USMALLINT AS u16, 1::UBIGINT AS u64,
                1.5::DOUBLE AS f64, 1.5::FLOAT AS f32, 'a' AS s, uuid() AS u, DATE '2024-01-01' AS d, 'x' AS text`,
        path.join(dir, 'types.parquet'),
      );
      const [corpus] = await resolveCorpus(file);
      const types = Object.fromEntries(
        (corpus?.columns ?? []).map((column) => [column.name, String(idArrowType(column))]),
      );
      assert.deepEqual(types, {
        i32: 'Int32',
        i64: 'Int64',
        i8: 'Int8',
        u16: 'Uint16',
        u64: 'Uint64',
        f64: 'Float64',
        f32: 'Float32',
        s: 'Utf8',
        u: 'Utf8',
        d: 'Utf8',
        text: 'Utf8',
      });
      assert.ok(DataType.isInt(idArrowType(corpus!.columns[0]!)));
    });
  });
});

describe('corpus values that must not be mistaken', () => {
  it('keeps BYTE_ARRAY ids without a string annotation as hex, so distinct binary ids never merge', async () => {
    await withTempDir(async (dir) => {
      // Two ids that decode to the same text as UTF-8 ("\ufffd\u0001"): 0xFE01 and 0xFF01, plus a valid UTF-8 one.
      const file = await writeParquetWithDuckDB(
        `SELECT * FROM (VALUES ('\\xFE\\x01'::BLOB, 'one'), ('\\xFF\\x01'::BLOB, 'two'), ('ab'::BLOB, 'three'))
           t(id, text)`,
        path.join(dir, 'binary-ids.parquet'),
      );
      const { shards } = await planOne(file, 100);
      const got = await collect(readShardDocuments(shards[0]!, { idColumn: 'id', textColumn: 'text' }));
      assert.deepEqual(got.ids, ['fe01', 'ff01', '6162']);
      assert.deepEqual(got.texts, ['one', 'two', 'three']);
    });
  });

  it('reads a JSON text column as its text, not as a parsed object', async () => {
    await withTempDir(async (dir) => {
      const file = await writeParquetWithDuckDB(
        `SELECT 1 AS id, '{"a": [1, 2]}'::JSON AS text`,
        path.join(dir, 'json.parquet'),
      );
      const { shards } = await planOne(file, 100);
      const got = await collect(readShardDocuments(shards[0]!, { idColumn: 'id', textColumn: 'text' }));
      assert.deepEqual(got.texts, ['{"a": [1, 2]}']);
    });
  });
});

describe('Parquet that real writers produce', () => {
  it('reads a DATA_PAGE_V2 page with a zero-byte body (all values null) without decompressing it', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'empty-body.parquet');
      // As parquet-mr and arrow-rs do: a v2 page with no values has an empty body, which is never compressed.
      const snappyOrEmpty = (input: Uint8Array): Uint8Array =>
        input.length === 0 ? new Uint8Array(0) : literalSnappy(input);
      parquetWriteFile({
        filename: file,
        codec: 'SNAPPY',
        compressors: { SNAPPY: snappyOrEmpty },
        columnData: [
          { name: 'id', data: [1, 2, 3], type: 'INT32' },
          { name: 'text', data: ['a', 'b', 'c'], type: 'STRING' },
          { name: 'note', data: [null, null, null], type: 'STRING' },
        ],
      });
      const handle = await open(file);
      try {
        const { metadata } = await readParquetFooter(handle, file);
        const note = metadata.row_groups[0]?.columns[2]?.meta_data;
        assert.ok(note?.encoding_stats?.some((stat) => stat.page_type === 'DATA_PAGE_V2'));
      } finally {
        await handle.close();
      }
      const { shards } = await planOne(file, 100);
      const values: unknown[] = [];
      for await (const batch of readShardRows(shards[0]!, ['text', 'note'])) values.push(...batch.columns.get('note')!);
      assert.deepEqual(values, [null, null, null]);
    });
  });

  it('follows the row groups of a footer that says 0 rows while its row groups hold rows, and says so', async () => {
    await withTempDir(async (dir) => {
      const file = await writeParquetWithDuckDB(
        "SELECT i AS id, 'doc ' || i AS text FROM range(50) t(i)",
        path.join(dir, 'zero-rows.parquet'),
      );
      // FileMetaData field 3 (num_rows, i64) follows the schema list: compact header 0x16, zigzag varint 100 = 0x64.
      const bytes = await readFile(file);
      const footerLength = bytes.readUInt32LE(bytes.length - 8);
      const footerStart = bytes.length - 8 - footerLength;
      const at = bytes.subarray(footerStart).indexOf(Buffer.from([0x16, 0x64]));
      assert.ok(at > 0);
      bytes[footerStart + at + 1] = 0x00;
      await writeFile(file, bytes);
      const [corpus] = await resolveCorpus(file);
      assert.equal(corpus?.rows, 50);
      assert.ok(corpus?.warnings?.some((w) => w.includes(file) && w.includes('0 rows') && w.includes('50')));
      const { shards } = await planOne(file, 100);
      const got = await collect(readShardDocuments(shards[0]!, { idColumn: 'id', textColumn: 'text' }));
      assert.equal(got.texts.length, 50);
      assert.equal(got.texts[49], 'doc 49');
    });
  });
});

describe('Parquet that rescale refuses with a reason', () => {
  it('refuses a plaintext footer over encrypted columns, naming the file and the column', async () => {
    await withTempDir(async (dir) => {
      const file = await writeParquetWithDuckDB(
        "SELECT i AS id, 'doc ' || i AS text FROM range(20) t(i)",
        path.join(dir, 'plaintext-footer.parquet'),
      );
      // ColumnChunk field 8 is crypto_metadata; {1: {}} is ENCRYPTION_WITH_FOOTER_KEY, as parquet-mr writes it.
      await editFooter(file, (metadata) => {
        for (const group of metadata.field_4 as ThriftStruct[]) {
          for (const chunk of group.field_1 as ThriftStruct[]) chunk.field_8 = { field_1: {} };
        }
      });
      await assert.rejects(
        resolveCorpus(file),
        (error: unknown) =>
          isRescaleError(error, 'INPUT_INVALID') &&
          error.message.includes(file) &&
          error.message.includes('encrypted column "id"') &&
          error.message.includes('unencrypted copy'),
      );
    });
  });

  it('refuses an INT96 id column at planning, saying how to rewrite it', async () => {
    await withTempDir(async (dir) => {
      const file = await writeParquetWithDuckDB(
        "SELECT i AS id, 'doc ' || i AS text FROM range(20) t(i)",
        path.join(dir, 'int96-id.parquet'),
      );
      // SchemaElement field 1 is the physical type: INT64 (2) becomes INT96 (3), as Spark's timestamps are.
      await editFooter(file, (metadata) => {
        const id = (metadata.field_2 as ThriftStruct[]).find(
          (element) => Buffer.from(element.field_4 as Uint8Array).toString() === 'id',
        );
        assert.ok(id);
        id.field_1 = 3;
      });
      const corpus = await resolveCorpus(file);
      assert.equal(corpus[0]?.columns[0]?.physicalType, 'INT96');
      assert.throws(
        () => planShards(corpus, { codebookHash: 'cb', maxRowsPerShard: 100, idColumn: 'id', textColumn: 'text' }),
        (error: unknown) =>
          isRescaleError(error, 'INPUT_INVALID') &&
          error.message.includes('Id column "id"') &&
          error.message.includes(file) &&
          error.message.includes('INT96') &&
          error.message.includes('CAST("id" AS VARCHAR)'),
      );
      // The same file without an id column plans: only the id is refused.
      assert.equal(planShards(corpus, { codebookHash: 'cb', maxRowsPerShard: 100, textColumn: 'text' }).totalRows, 20);
    });
  });

  it('refuses a geometry id column at planning instead of keeping its shape as the id', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'geometry-id.parquet');
      parquetWriteFile({
        filename: file,
        columnData: [
          { name: 'shape', data: [{ type: 'Point', coordinates: [1, 2] }], type: 'GEOMETRY' },
          { name: 'text', data: ['a'], type: 'STRING' },
        ],
      });
      const corpus = await resolveCorpus(file);
      assert.throws(
        () => planShards(corpus, { codebookHash: 'cb', maxRowsPerShard: 100, idColumn: 'shape', textColumn: 'text' }),
        (error: unknown) =>
          isRescaleError(error, 'INPUT_INVALID') &&
          error.message.includes('Id column "shape"') &&
          error.message.includes('geometry'),
      );
    });
  });
});
