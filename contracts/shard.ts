// What the planner hands to whoever processes a shard (local loop or BullMQ worker), and what the merge checks.

import { createHash } from 'node:crypto';
import type { IdType } from './results.js';

export interface CorpusColumn {
  readonly name: string;
  /** Parquet physical type (BYTE_ARRAY, INT64, ...). */
  readonly physicalType: string;
  /**
   * Parquet logical type when present, else the converted type, else null: STRING, UUID, TIMESTAMP, DECIMAL, ...;
   * integer annotations are spelled like converted types (INT_8 ... UINT_64) so width and sign survive.
   * Nested (group) columns have physicalType GROUP and their logical type (LIST, MAP) or null.
   */
  readonly logicalType: string | null;
  readonly nullable: boolean;
  /** A top-level REPEATED field (a legacy list without a LIST group): each row holds several values. */
  readonly repeated?: true;
}

export interface CorpusFile {
  /** Absolute path. */
  readonly path: string;
  readonly size: number;
  /** sha256 over (file size, footer bytes): changes whenever the file content changes. */
  readonly fingerprint: string;
  readonly rows: number;
  readonly rowGroups: readonly { readonly rowStart: number; readonly rows: number }[];
  readonly columns: readonly CorpusColumn[];
  /** What was tolerated in reading the file (e.g. a footer row count of 0 over row groups that hold rows). */
  readonly warnings?: readonly string[];
}

export interface ShardSpec {
  /** Deterministic from (file fingerprint, row range, codebook hash); safe as a file name and a BullMQ job id. */
  readonly id: string;
  /** Position of the shard in the plan (input order). */
  readonly index: number;
  readonly file: string;
  readonly fingerprint: string;
  /** Row range within the file, end exclusive. */
  readonly rowStart: number;
  readonly rowEnd: number;
  /** Corpus-wide row index of rowStart (input order across all files). */
  readonly corpusRowStart: number;
}

export interface ShardPlan {
  readonly codebookHash: string;
  readonly files: readonly CorpusFile[];
  readonly shards: readonly ShardSpec[];
  readonly totalRows: number;
  /** Input id column; null when the codebook names none, and the corpus row index is the id. */
  readonly idColumn: string | null;
  readonly textColumn: string;
  /** Type of the `id` result column: the id column's type across all files, or int64 for row-index ids. */
  readonly idType: IdType;
  /** The trial-run limit the plan was cut to (first N corpus rows), or null for the whole corpus. */
  readonly limit: number | null;
  /**
   * What planning found that a user should know before scoring (files reached twice, identical files, duplicate or
   * missing ids); the run logs each as a warning. Absent when there is nothing to say.
   */
  readonly warnings?: readonly string[];
}

/**
 * Fingerprint of a Parquet file: sha256 over its size and its footer (Thrift metadata + length + magic).
 * Planner and worker compute it the same way, so a file rewritten after planning is detected (a rewrite
 * changes sizes, offsets or statistics in the footer); it costs one footer read, not a pass over the data,
 * so bytes corrupted in place inside a page are not detected by it (decoding then fails instead).
 */
export function corpusFingerprint(size: number, footer: Uint8Array): string {
  return createHash('sha256').update(`${size}\n`).update(footer).digest('hex');
}
