// Cuts a resolved corpus into shards of bounded size along row-group boundaries, with ids that depend only
// on the file content, the row range and the codebook, so re-planning the same corpus finds the same shards.

import { createHash } from 'node:crypto';
import { RescaleError } from '../contracts/errors.js';
import { idTypeOf, type IdType } from '../contracts/results.js';
import type { CorpusColumn, CorpusFile, ShardPlan, ShardSpec } from '../contracts/shard.js';

export interface PlanShardsOptions {
  readonly codebookHash: string;
  /** Upper bound on rows per shard; row groups are packed up to it, larger ones split into equal row ranges. */
  readonly maxRowsPerShard: number;
  /** Input id column; null or absent when the codebook names none: the corpus row index is then the id. */
  readonly idColumn?: string | null;
  readonly textColumn: string;
  /** Trial run: plan only the first `limit` rows of the corpus. */
  readonly limit?: number;
  /** Further input columns the prompt template names (`{party}`): they must exist and hold strings, like the text. */
  readonly promptColumns?: readonly string[];
}

const SHARD_ID_LENGTH = 24;

/**
 * Plans the corpus in input order (files as given, rows within each file). A shard never spans files; it
 * holds whole row groups while they fit in maxRowsPerShard and a row group larger than that is split into
 * near-equal row ranges, so each shard's read touches as few row groups as possible.
 */
export function planShards(files: readonly CorpusFile[], options: PlanShardsOptions): ShardPlan {
  const { codebookHash, maxRowsPerShard, textColumn } = options;
  const idColumn = options.idColumn ?? null;
  const limit = options.limit ?? null;
  if (!Number.isSafeInteger(maxRowsPerShard) || maxRowsPerShard < 1) {
    throw new RescaleError('CONFIG_INVALID', `maxRowsPerShard must be a positive integer, got ${maxRowsPerShard}.`);
  }
  if (limit !== null && (!Number.isSafeInteger(limit) || limit < 1)) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `limit must be a positive integer (the number of corpus rows for a trial run), got ${limit}.`,
    );
  }
  if (codebookHash === '')
    throw new RescaleError('CONFIG_INVALID', 'planShards needs the codebook hash; it is part of every shard id.');
  if (files.length === 0)
    throw new RescaleError('INPUT_NOT_FOUND', 'The corpus has no files to plan; pass at least one Parquet file.');
  const promptColumns = (options.promptColumns ?? []).filter((name) => name !== textColumn);
  for (const file of files) checkColumns(file, textColumn, idColumn, promptColumns);
  const idType = idColumn === null ? 'int64' : planIdType(files, idColumn);

  const remaining = limit ?? Number.POSITIVE_INFINITY;
  const shards: ShardSpec[] = [];
  const usedIds = new Set<string>();
  let corpusRow = 0;
  for (const file of files) {
    for (const [rowStart, rowEnd] of fileRanges(file, maxRowsPerShard)) {
      const end = Math.min(rowEnd, rowStart + (remaining - corpusRow));
      if (end <= rowStart) break;
      const id = uniqueShardId(file.fingerprint, rowStart, end, codebookHash, usedIds);
      shards.push({
        id,
        index: shards.length,
        file: file.path,
        fingerprint: file.fingerprint,
        rowStart,
        rowEnd: end,
        corpusRowStart: corpusRow,
      });
      corpusRow += end - rowStart;
    }
    if (corpusRow >= remaining) break;
  }
  return { codebookHash, files, shards, totalRows: corpusRow, idColumn, textColumn, idType, limit };
}

/** Deterministic shard id: the first 24 hex digits of sha256(fingerprint, rowStart, rowEnd, codebookHash). */
export function shardId(fingerprint: string, rowStart: number, rowEnd: number, codebookHash: string): string {
  return createHash('sha256')
    .update(`${fingerprint}\0${rowStart}\0${rowEnd}\0${codebookHash}`)
    .digest('hex')
    .slice(0, SHARD_ID_LENGTH);
}

/**
 * Byte-identical copies of a file share a fingerprint, so their shards would share ids; the second and
 * later copies get an occurrence number mixed in, which stays deterministic for the same input order.
 */
function uniqueShardId(
  fingerprint: string,
  rowStart: number,
  rowEnd: number,
  codebookHash: string,
  used: Set<string>,
): string {
  let id = shardId(fingerprint, rowStart, rowEnd, codebookHash);
  for (let copy = 1; used.has(id); copy++) id = shardId(`${fingerprint}#${copy}`, rowStart, rowEnd, codebookHash);
  used.add(id);
  return id;
}

/** Row ranges of one file: consecutive whole row groups packed up to maxRows, big row groups split evenly. */
function fileRanges(file: CorpusFile, maxRows: number): [number, number][] {
  const ranges: [number, number][] = [];
  let packStart = -1;
  let packEnd = -1;
  const flush = (): void => {
    if (packStart >= 0 && packEnd > packStart) ranges.push([packStart, packEnd]);
    packStart = -1;
  };
  for (const group of file.rowGroups) {
    if (group.rows === 0) continue;
    const groupEnd = group.rowStart + group.rows;
    if (group.rows > maxRows) {
      flush();
      const pieces = Math.ceil(group.rows / maxRows);
      for (let piece = 0; piece < pieces; piece++) {
        const start = group.rowStart + Math.floor((group.rows * piece) / pieces);
        const end = group.rowStart + Math.floor((group.rows * (piece + 1)) / pieces);
        ranges.push([start, end]);
      }
      continue;
    }
    if (packStart >= 0 && groupEnd - packStart > maxRows) flush();
    if (packStart < 0) packStart = group.rowStart;
    packEnd = groupEnd;
  }
  flush();
  return ranges;
}

function checkColumns(
  file: CorpusFile,
  textColumn: string,
  idColumn: string | null,
  promptColumns: readonly string[],
): void {
  const names = file.columns.map((column) => column.name);
  const wanted = [...(idColumn === null ? [textColumn] : [idColumn, textColumn]), ...promptColumns];
  const missing = wanted.filter((name) => !names.includes(name));
  if (missing.length > 0) {
    throw new RescaleError(
      'COLUMN_MISSING',
      `Column ${missing.map((name) => `"${name}"`).join(' and ')} not found in ${file.path}; its columns are: ` +
        `${names.join(', ')}. Set the codebook's text/id column to one of these, or drop the file from the corpus.`,
    );
  }
  checkStringColumn(file, textColumn, 'Text column', 'point the codebook at the column that holds the document text');
  for (const name of promptColumns) {
    checkStringColumn(
      file,
      name,
      'Column',
      `the prompt template names {${name}}; name a string column there, or convert it to text in the corpus`,
    );
  }
  const id = idColumn === null ? undefined : file.columns.find((column) => column.name === idColumn);
  if (id !== undefined && id.physicalType === 'GROUP') {
    throw new RescaleError(
      'INPUT_INVALID',
      `Id column "${idColumn}" in ${file.path} is a nested column; choose a scalar id column.`,
    );
  }
  const unkept = id === undefined ? undefined : UNKEPT_ID_TYPES.find((entry) => entry.matches(id));
  if (unkept !== undefined) {
    throw new RescaleError(
      'INPUT_INVALID',
      `Id column "${idColumn}" in ${file.path} is ${unkept.type}, which rescale does not keep as an id: ` +
        `${unkept.why}. Choose another id column, or rewrite this one as a string or integer (DuckDB: ` +
        `CAST("${idColumn}" AS VARCHAR)).`,
    );
  }
}

/** Id types whose values have no one faithful text form: readers disagree on them, so results could not be joined. */
const UNKEPT_ID_TYPES: readonly {
  readonly type: string;
  readonly why: string;
  readonly matches: (column: CorpusColumn) => boolean;
}[] = [
  {
    type: 'INT96',
    why:
      'a deprecated timestamp whose far dates (past 2262) readers decode differently, and JavaScript dates end at ' +
      'year 275760',
    matches: (column) => column.physicalType === 'INT96',
  },
  {
    type: 'a geometry or geography',
    why: 'its value is a shape (WKB), not a key',
    matches: (column) => column.logicalType === 'GEOMETRY' || column.logicalType === 'GEOGRAPHY',
  },
];

/**
 * Logical types whose values are text: strings, enums, JSON (read as its text) and unannotated BYTE_ARRAY (decoded as
 * UTF-8). Everything else (geometry, geography, UUID, decimal, BSON, variant, lists, structs, a repeated field) would
 * reach the model as "[object Object]" or comma-joined values and be scored as if it were a document.
 */
const TEXT_LOGICAL_TYPES: readonly (string | null)[] = ['STRING', 'ENUM', 'JSON', null];

function checkStringColumn(file: CorpusFile, name: string, what: string, remedy: string): void {
  const column = file.columns.find((candidate) => candidate.name === name);
  if (column === undefined) return;
  const isText =
    column.physicalType === 'BYTE_ARRAY'
      ? TEXT_LOGICAL_TYPES.includes(column.logicalType)
      : column.physicalType === 'FIXED_LEN_BYTE_ARRAY' && column.logicalType === null;
  if (isText && column.repeated !== true) return;
  const type =
    `${column.repeated === true ? 'a repeated ' : ''}${column.physicalType}` +
    `${column.logicalType === null ? '' : ` (${column.logicalType})`}`;
  throw new RescaleError(
    'INPUT_INVALID',
    `${what} "${name}" in ${file.path} is ${type}, not a string column; ${remedy}.`,
  );
}

/** One IdType for the whole corpus: integer widths widen to the largest; any other mix is an error. */
function planIdType(files: readonly CorpusFile[], idColumn: string): IdType {
  let chosen: { type: IdType; file: string } | undefined;
  for (const file of files) {
    const column = file.columns.find((candidate) => candidate.name === idColumn);
    if (column === undefined) continue;
    const type = idTypeOf(column);
    if (chosen === undefined) {
      chosen = { type, file: file.path };
      continue;
    }
    const widened = widenIdType(chosen.type, type);
    if (widened === undefined) {
      throw new RescaleError(
        'INPUT_INVALID',
        `Id column "${idColumn}" is ${chosen.type} in ${chosen.file} but ${type} in ${file.path}; rewrite the files ` +
          'with one id type.',
      );
    }
    chosen = { type: widened, file: chosen.file };
  }
  return chosen?.type ?? 'int64';
}

const INT_BITS: Partial<Record<IdType, number>> = {
  int8: 8,
  int16: 16,
  int32: 32,
  int64: 64,
  uint8: 8,
  uint16: 16,
  uint32: 32,
  uint64: 64,
};

function widenIdType(a: IdType, b: IdType): IdType | undefined {
  if (a === b) return a;
  if ((a === 'float32' || a === 'float64') && (b === 'float32' || b === 'float64')) return 'float64';
  const bitsA = INT_BITS[a];
  const bitsB = INT_BITS[b];
  if (bitsA === undefined || bitsB === undefined) return undefined;
  const signedA = a.startsWith('int');
  const signedB = b.startsWith('int');
  if (signedA === signedB) return `${signedA ? 'int' : 'uint'}${Math.max(bitsA, bitsB)}` as IdType;
  // Mixed sign: a signed type wide enough for both, if there is one.
  const unsignedBits = signedA ? bitsB : bitsA;
  const signedBits = signedA ? bitsA : bitsB;
  const needed = Math.max(signedBits, unsignedBits * 2);
  return needed <= 64 ? (`int${needed}` as IdType) : undefined;
}
