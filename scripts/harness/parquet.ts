// Shared helpers for the data-layer tests: temp dirs, Parquet files written by DuckDB (an independent
// writer, as real corpora come from pyarrow/DuckDB/Spark), and DuckDB queries over our output.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import type { ResultRow } from '../../contracts/results.js';
import type { ShardSpec } from '../../contracts/shard.js';

/** Runs `fn` with a fresh temp dir and removes it afterwards, whatever happens. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), 'rescale-data-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs `fn` with an in-memory DuckDB connection, closed afterwards. */
export async function withDuckDB<T>(fn: (connection: DuckDBConnection) => Promise<T>): Promise<T> {
  const instance = await DuckDBInstance.create(':memory:', { threads: '2' });
  const connection = await instance.connect();
  try {
    return await fn(connection);
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

export type DuckDBCodec = 'uncompressed' | 'snappy' | 'gzip' | 'zstd' | 'brotli' | 'lz4' | 'lz4_raw';

export interface DuckDBParquetOptions {
  readonly codec?: DuckDBCodec;
  readonly rowGroupSize?: number;
  /** V2 writes data page v2 headers and delta encodings. */
  readonly parquetVersion?: 'V1' | 'V2';
}

/** Writes the result of a DuckDB query (e.g. `SELECT i AS id FROM range(10) t(i)`) to a Parquet file. */
export async function writeParquetWithDuckDB(
  query: string,
  file: string,
  options: DuckDBParquetOptions = {},
): Promise<string> {
  const { codec = 'snappy', rowGroupSize = 122_880, parquetVersion = 'V1' } = options;
  await withDuckDB(async (connection) => {
    await connection.run(
      `COPY (${query}) TO '${sqlString(file)}' (FORMAT parquet, COMPRESSION ${codec}, ROW_GROUP_SIZE ` +
        `${rowGroupSize}, PARQUET_VERSION ${parquetVersion})`,
    );
  });
  return file;
}

/** Rows of a DuckDB query as plain JS objects (BIGINT as bigint). */
export async function queryDuckDB(sql: string): Promise<Record<string, unknown>[]> {
  return withDuckDB(async (connection) => {
    const reader = await connection.runAndReadAll(sql);
    return reader.getRowObjectsJS() as Record<string, unknown>[];
  });
}

/** `DESCRIBE` of a Parquet file: column name → DuckDB type name. */
export async function duckDBTypes(file: string): Promise<Record<string, string>> {
  const rows = await queryDuckDB(`DESCRIBE SELECT * FROM read_parquet('${sqlString(file)}')`);
  return Object.fromEntries(rows.map((row) => [String(row.column_name), String(row.column_type)]));
}

export function sqlString(value: string): string {
  return value.replace(/'/g, "''");
}

/** Deterministic fake scores for a shard (no model): what the result writer and the merge are fed in tests. */
export function fakeResultRows(
  shard: ShardSpec,
  labels: readonly string[],
  ids: readonly (string | number | bigint | null)[],
): ResultRow[] {
  return ids.map((id, i) => {
    const row = shard.corpusRowStart + i;
    if (row % 10 === 3) {
      return {
        id,
        row,
        label: null,
        confidence: null,
        margin: null,
        entropy: null,
        probabilities: null,
        status: 'empty_text',
        error: 'text is empty',
        tokens: 0,
        source: 'local',
        shardId: shard.id,
      };
    }
    const weights = labels.map((_, j) => 1 + ((row * (j + 3)) % 7));
    const total = weights.reduce((sum, weight) => sum + weight, 0);
    const probabilities = Float64Array.from(weights, (weight) => weight / total);
    const sorted = [...probabilities].sort((a, b) => b - a);
    const best = probabilities.indexOf(sorted[0] ?? 0);
    return {
      id,
      row,
      label: labels[best] ?? null,
      confidence: sorted[0] ?? null,
      margin: (sorted[0] ?? 0) - (sorted[1] ?? 0),
      entropy: -probabilities.reduce((sum, p) => sum + p * Math.log(p), 0),
      probabilities,
      status: 'ok',
      error: null,
      tokens: 10 + (row % 5),
      source: 'local',
      shardId: shard.id,
    };
  });
}
