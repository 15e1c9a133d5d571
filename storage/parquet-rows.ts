// Reads one shard's rows from a Parquet corpus file: only its row range, only the columns asked for, one
// row group at a time, so memory stays bounded by the shard however large the file is.

import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import {
  Float32,
  Float64,
  Int8,
  Int16,
  Int32,
  Int64,
  Uint8,
  Uint16,
  Uint32,
  Uint64,
  Utf8,
  type DataType,
} from 'apache-arrow';
import {
  parquetMetadata,
  parquetRead,
  snappyUncompress,
  type AsyncBuffer,
  type ColumnData,
  type Compressors,
  type FileMetaData,
} from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { processUser } from '../contracts/process-user.js';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import { idTypeOf, type DocumentId, type IdType } from '../contracts/results.js';
import { corpusFingerprint, type CorpusColumn, type ShardSpec } from '../contracts/shard.js';

const MAGIC = 0x31524150; // "PAR1" little-endian
const ENCRYPTED_MAGIC = 0x45524150; // "PARE": encrypted footer
const DEFAULT_BATCH_SIZE = 1024;

export interface ParquetFooter {
  readonly size: number;
  /** Raw footer bytes: Thrift FileMetaData, its 4-byte length and the trailing magic. */
  readonly footer: Uint8Array;
  readonly metadata: FileMetaData;
  readonly fingerprint: string;
  /** What the reader tolerated and how it read the file anyway (e.g. a footer row count of 0), for the run log. */
  readonly warnings: readonly string[];
}

/**
 * Reads and decodes a Parquet footer, refusing anything that is not a complete Parquet file with an error
 * that names the file. Planner (corpus resolution) and worker (fingerprint check) share this one reader.
 */
export async function readParquetFooter(handle: FileHandle, filePath: string): Promise<ParquetFooter> {
  const { size } = await handle.stat();
  if (size < 12) {
    throw invalidInput(filePath, `is ${size} bytes, too small to be Parquet (empty or truncated)`);
  }
  const head = await readBytes(handle, 0, 4);
  const tail = await readBytes(handle, size - 8, 8);
  const tailView = new DataView(tail.buffer, tail.byteOffset, 8);
  const headMagic = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true);
  const tailMagic = tailView.getUint32(4, true);
  if (tailMagic === ENCRYPTED_MAGIC) {
    throw invalidInput(
      filePath,
      'uses Parquet modular encryption, which rescale cannot read; write an unencrypted copy',
    );
  }
  if (headMagic !== MAGIC) {
    throw invalidInput(filePath, 'does not start with the Parquet magic "PAR1": it is not a Parquet file');
  }
  if (tailMagic !== MAGIC) {
    throw invalidInput(
      filePath,
      'does not end with the Parquet magic "PAR1": the file is truncated or still being written',
    );
  }
  const metadataLength = tailView.getUint32(0, true);
  if (metadataLength === 0 || metadataLength > size - 12) {
    throw invalidInput(
      filePath,
      `declares a ${metadataLength}-byte footer in a ${size}-byte file: it is corrupt or truncated`,
    );
  }
  const footer = await readBytes(handle, size - 8 - metadataLength, metadataLength + 8);
  let metadata: FileMetaData;
  try {
    metadata = parquetMetadata(footer);
  } catch (cause) {
    throw invalidInput(
      filePath,
      `has a footer that cannot be decoded (${errorMessage(cause)}): it is corrupt or truncated`,
      cause,
    );
  }
  const groupRows = checkRowGroups(metadata, size - 8 - metadataLength, filePath);
  const warnings: string[] = [];
  if (metadata.num_rows === 0n && groupRows > 0n) {
    // Some writers leave the footer's total at 0; other readers follow the row groups, and so does rescale.
    warnings.push(
      `Corpus file ${filePath} says it has 0 rows in its footer but its row groups hold ${groupRows}; rescale ` +
        'reads the row groups, as other Parquet readers do',
    );
    metadata = { ...metadata, num_rows: groupRows };
  }
  return { size, footer, metadata, fingerprint: corpusFingerprint(size, footer), warnings };
}

/**
 * Row counts must add up and every column chunk must lie inside the data section, or reads would fail later. A footer
 * total of 0 over row groups that hold rows is the one mismatch tolerated (the caller follows the row groups).
 * Returns the rows the row groups hold.
 */
function checkRowGroups(metadata: FileMetaData, dataEnd: number, filePath: string): bigint {
  let rows = 0n;
  for (const group of metadata.row_groups) {
    rows += group.num_rows;
    for (const [index, chunk] of group.columns.entries()) {
      if (chunk.crypto_metadata !== undefined || chunk.encrypted_column_metadata !== undefined) {
        // A plaintext footer over encrypted columns: the footer reads, the pages would decode to garbage.
        const name = chunk.meta_data?.path_in_schema.join('.') ?? `number ${index + 1}`;
        throw invalidInput(
          filePath,
          `has encrypted column "${name}" (Parquet modular encryption with a plaintext footer), which rescale cannot ` +
            'read; write an unencrypted copy with a reader that has the key (pyarrow, Spark)',
        );
      }
      const meta = chunk.meta_data;
      if (meta === undefined) continue;
      const start =
        meta.dictionary_page_offset !== undefined && meta.dictionary_page_offset > 0n
          ? meta.dictionary_page_offset
          : meta.data_page_offset;
      if (start < 0n || start + meta.total_compressed_size > BigInt(dataEnd)) {
        throw invalidInput(
          filePath,
          `has column chunk "${meta.path_in_schema.join('.')}" outside the file: it is truncated or corrupt`,
        );
      }
    }
  }
  if (rows !== metadata.num_rows && metadata.num_rows !== 0n) {
    throw invalidInput(
      filePath,
      `says it has ${metadata.num_rows} rows but its row groups hold ${rows}: it is corrupt`,
    );
  }
  if (rows > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw invalidInput(filePath, `has ${rows} rows, more than rescale can index; split the file`);
  }
  return rows;
}

/**
 * The decompressors, except that an empty compressed body is an empty page: a DATA_PAGE_V2 whose values are all null
 * has a zero-byte body (its levels are stored before it, uncompressed), which writers do not run through the codec.
 */
const CORPUS_COMPRESSORS: Compressors = Object.fromEntries(
  Object.entries({ SNAPPY: snappyDecompress, ...compressors }).map(([codec, decompress]) => [
    codec,
    (input: Uint8Array, outputLength: number): Uint8Array =>
      input.length === 0 && outputLength === 0 ? new Uint8Array(0) : decompress(input, outputLength),
  ]),
);

function snappyDecompress(input: Uint8Array, outputLength: number): Uint8Array {
  const output = new Uint8Array(outputLength);
  snappyUncompress(input, output);
  return output;
}

/** An AsyncBuffer over an open file handle, so hyparquet reads only the byte ranges it plans. */
export function fileAsyncBuffer(handle: FileHandle, size: number): AsyncBuffer {
  return {
    byteLength: size,
    async slice(start: number, end: number = size): Promise<ArrayBuffer> {
      const bytes = await readBytes(handle, start, end - start);
      return bytes.buffer as ArrayBuffer;
    },
  };
}

async function readBytes(handle: FileHandle, position: number, length: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(new ArrayBuffer(length));
  let offset = 0;
  while (offset < length) {
    const { bytesRead } = await handle.read(buffer, offset, length - offset, position + offset);
    if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + offset}`);
    offset += bytesRead;
  }
  return buffer;
}

function invalidInput(filePath: string, problem: string, cause?: unknown): RescaleError {
  return new RescaleError('INPUT_INVALID', `Corpus file ${filePath} ${problem}.`, { cause });
}

export interface ReadShardRowsOptions {
  readonly signal?: AbortSignal;
  /** Rows per yielded batch (default 1024). */
  readonly batchSize?: number;
  /**
   * Keeps the decoded rest of a row group for the next shard of the same row group. Pass one per worker
   * loop when shards run in plan order: without it, each shard of a row group split into N shards decodes
   * up to the whole row group again (writers such as DuckDB put a row group in one or a few pages).
   */
  readonly cache?: RowGroupCache;
}

export interface ShardRowBatch {
  /** Corpus-wide row index of each row. */
  readonly rows: readonly number[];
  /** Values per requested column, each as long as `rows`, as hyparquet decodes them. */
  readonly columns: ReadonlyMap<string, readonly unknown[]>;
}

/** Decoded columns for file rows [rowStart, rowStart + length). */
interface DecodedRange {
  readonly rowStart: number;
  readonly length: number;
  readonly columns: ReadonlyMap<string, readonly unknown[]>;
}

/**
 * Holds the decoded rows of (part of) one row group between shards. Decodes ahead only while the row group's
 * requested column chunks are at most `maxBytes` uncompressed (default 128 MiB), so huge row groups of long
 * documents are still read shard by shard and memory stays bounded.
 */
export class RowGroupCache {
  private entry: { key: string; range: DecodedRange } | undefined;

  constructor(readonly maxBytes: number = 128 * 1024 * 1024) {}

  get(key: string, rowStart: number, rowEnd: number): DecodedRange | undefined {
    const range = this.entry?.key === key ? this.entry.range : undefined;
    if (range === undefined || rowStart < range.rowStart || rowEnd > range.rowStart + range.length) return undefined;
    return range;
  }

  set(key: string, range: DecodedRange): void {
    this.entry = { key, range };
  }

  clear(): void {
    this.entry = undefined;
  }
}

/**
 * Yields the shard's rows in order, in batches, with their corpus row index. Refuses a file whose
 * fingerprint differs from the one planned (its rows may have moved), naming the file.
 */
export async function* readShardRows(
  shard: ShardSpec,
  columns: readonly string[],
  options: ReadShardRowsOptions = {},
): AsyncGenerator<ShardRowBatch> {
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RescaleError('CONFIG_INVALID', `readShardRows batchSize must be a positive integer, got ${batchSize}.`);
  }
  const wanted = [...new Set(columns)];
  throwIfAborted(options.signal, shard);
  const handle = await openCorpusFile(shard.file);
  try {
    const { size, metadata, fingerprint } = await readParquetFooter(handle, shard.file);
    if (fingerprint !== shard.fingerprint) {
      throw new RescaleError(
        'INPUT_INVALID',
        `Corpus file ${shard.file} changed since the shard plan was made (fingerprint ${fingerprint.slice(0, 12)}, ` +
          `planned ${shard.fingerprint.slice(0, 12)}); plan the corpus again.`,
      );
    }
    checkColumns(metadata, wanted, shard.file);
    if (shard.rowEnd > Number(metadata.num_rows)) {
      throw new RescaleError(
        'INPUT_INVALID',
        `Shard ${shard.id} ends at row ${shard.rowEnd} but ${shard.file} has ${metadata.num_rows} rows; plan the ` +
          'corpus again.',
      );
    }
    const file = fileAsyncBuffer(handle, size);
    let groupStart = 0;
    for (const [groupIndex, group] of metadata.row_groups.entries()) {
      const groupEnd = groupStart + Number(group.num_rows);
      const start = Math.max(groupStart, shard.rowStart);
      const end = Math.min(groupEnd, shard.rowEnd);
      groupStart = groupEnd;
      if (start >= end) continue;
      throwIfAborted(options.signal, shard);
      const key = `${fingerprint}\0${groupIndex}\0${wanted.join('\0')}`;
      let decoded = options.cache?.get(key, start, end);
      if (decoded === undefined) {
        // One read per row group: hyparquet fetches the requested column chunks (or only the pages in range
        // when the file has an offset index), so memory is bounded by the row group, never the file.
        const aheadEnd =
          options.cache !== undefined && uncompressedBytes(group, wanted) <= options.cache.maxBytes ? groupEnd : end;
        decoded = await readRange(file, metadata, wanted, start, aheadEnd, shard.file);
        if (aheadEnd > end) options.cache?.set(key, decoded);
      }
      for (let offset = start; offset < end; offset += batchSize) {
        throwIfAborted(options.signal, shard);
        const batchEnd = Math.min(end, offset + batchSize);
        const from = offset - decoded.rowStart;
        const to = batchEnd - decoded.rowStart;
        const values = new Map<string, unknown[]>();
        for (const name of wanted) values.set(name, (decoded.columns.get(name) ?? []).slice(from, to));
        const firstRow = shard.corpusRowStart + (offset - shard.rowStart);
        yield { rows: Array.from({ length: batchEnd - offset }, (_, i) => firstRow + i), columns: values };
      }
      if (groupEnd >= shard.rowEnd) break;
    }
  } finally {
    await handle.close();
  }
}

function uncompressedBytes(group: FileMetaData['row_groups'][number], columns: readonly string[]): number {
  let bytes = 0;
  for (const chunk of group.columns) {
    const meta = chunk.meta_data;
    if (meta !== undefined && columns.includes(meta.path_in_schema[0] ?? ''))
      bytes += Number(meta.total_uncompressed_size);
  }
  return bytes;
}

/** How corpus values are decoded, for reading rows and for finding the column at fault when that fails. */
const DECODE_OPTIONS = {
  compressors: CORPUS_COMPRESSORS,
  // BYTE_ARRAY without a string annotation stays bytes: ids become hex (toDocumentId), texts are decoded by
  // toText; decoding binary ids as UTF-8 would merge distinct ids into the same replacement characters.
  utf8: false,
  // A JSON column used as text (or a template variable) is its text, not a parsed object.
  parsers: { jsonFromBytes: (bytes: Uint8Array): string => utf8Decoder.decode(bytes) },
  useOffsetIndex: true,
} as const;

/** Decodes file rows [rowStart, rowEnd) of the given columns, columnar, with nulls as null. */
async function readRange(
  file: AsyncBuffer,
  metadata: FileMetaData,
  columns: string[],
  rowStart: number,
  rowEnd: number,
  filePath: string,
): Promise<DecodedRange> {
  const chunks = new Map<string, ColumnData[]>(columns.map((name) => [name, []]));
  try {
    await parquetRead({
      file,
      metadata,
      columns,
      rowStart,
      rowEnd,
      ...DECODE_OPTIONS,
      onChunk: (chunk) => chunks.get(chunk.columnName)?.push(chunk),
    });
  } catch (cause) {
    throw await decodeError(file, metadata, columns, rowStart, rowEnd, filePath, cause);
  }
  const length = rowEnd - rowStart;
  const decoded = new Map<string, unknown[]>();
  for (const [name, parts] of chunks) {
    // Chunks may start before rowStart or run past rowEnd (whole pages); keep exactly the range.
    const values = new Array<unknown>(length).fill(undefined);
    let filled = 0;
    for (const part of parts) {
      const from = Math.max(part.rowStart, rowStart);
      const to = Math.min(part.rowEnd, rowEnd);
      for (let row = from; row < to; row++) values[row - rowStart] = part.columnData[row - part.rowStart] ?? null;
      filled += Math.max(0, to - from);
    }
    if (filled !== length) {
      throw new RescaleError(
        'INPUT_INVALID',
        `Decoded ${filled} values instead of ${length} for column "${name}", rows ${rowStart}-${rowEnd} of ` +
          `${filePath}; the file is corrupt.`,
      );
    }
    decoded.set(name, values);
  }
  return { rowStart, length, columns: decoded };
}

/**
 * The error for rows that failed to decode, naming the column at fault (found by decoding each column alone) with its
 * encodings and codec, so the user knows what to rewrite.
 */
async function decodeError(
  file: AsyncBuffer,
  metadata: FileMetaData,
  columns: readonly string[],
  rowStart: number,
  rowEnd: number,
  filePath: string,
  cause: unknown,
): Promise<RescaleError> {
  let culprit: { name: string; cause: unknown } | undefined;
  for (const name of columns.length > 1 ? columns : []) {
    try {
      await parquetRead({
        file,
        metadata,
        columns: [name],
        rowStart,
        rowEnd,
        ...DECODE_OPTIONS,
      });
    } catch (columnCause) {
      culprit = { name, cause: columnCause };
      break;
    }
  }
  const name = culprit?.name ?? (columns.length === 1 ? columns[0] : undefined);
  const what = name === undefined ? '' : `column "${name}"${chunkFormat(metadata, name)}, `;
  const reason = culprit?.cause ?? cause;
  return new RescaleError(
    'INPUT_INVALID',
    `Cannot decode ${what}rows ${rowStart}-${rowEnd} of ${filePath} (${errorMessage(reason)}): the file is corrupt ` +
      'or uses an encoding rescale cannot read; check it with another reader (DuckDB, pyarrow) and, if that reads ' +
      'it, rewrite the file with it.',
    { cause: reason },
  );
}

/** " (PLAIN/RLE_DICTIONARY, SNAPPY)": the encodings and codecs of a top-level column's chunks. */
function chunkFormat(metadata: FileMetaData, name: string): string {
  const encodings = new Set<string>();
  const codecs = new Set<string>();
  for (const group of metadata.row_groups) {
    for (const chunk of group.columns) {
      const meta = chunk.meta_data;
      if (meta?.path_in_schema[0] !== name) continue;
      for (const encoding of meta.encodings) encodings.add(encoding);
      codecs.add(meta.codec);
    }
  }
  return encodings.size === 0 ? '' : ` (${[...encodings].join('/')}, ${[...codecs].join('/')})`;
}

function checkColumns(metadata: FileMetaData, wanted: readonly string[], filePath: string): void {
  const present = topLevelColumnNames(metadata);
  const missing = wanted.filter((name) => !present.includes(name));
  if (missing.length > 0) {
    throw new RescaleError(
      'COLUMN_MISSING',
      `Column ${missing.map((name) => `"${name}"`).join(', ')} not found in ${filePath}; it has: ` +
        `${present.join(', ')}. Fix the column name in the codebook.`,
    );
  }
}

/** Names of the top-level fields of a Parquet schema (schema[0] is the root). */
export function topLevelColumnNames(metadata: FileMetaData): string[] {
  const names: string[] = [];
  let index = 1;
  while (index < metadata.schema.length) {
    const element = metadata.schema[index];
    if (element === undefined) break;
    names.push(element.name);
    index += subtreeSize(metadata, index);
  }
  return names;
}

function subtreeSize(metadata: FileMetaData, index: number): number {
  const children = metadata.schema[index]?.num_children ?? 0;
  let size = 1;
  for (let child = 0; child < children; child++) size += subtreeSize(metadata, index + size);
  return size;
}

async function openCorpusFile(filePath: string): Promise<FileHandle> {
  try {
    return await open(filePath, 'r');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      // There, but not for this process (on a cluster: the worker's user, not the submitter's).
      throw new RescaleError(
        'INPUT_NOT_READABLE',
        `Cannot read corpus file ${filePath}: permission denied (${code}) for ${processUser()}; give that user ` +
          'read access to the file and its folders.',
        { cause },
      );
    }
    throw new RescaleError(
      'INPUT_NOT_FOUND',
      `Cannot open corpus file ${filePath} (${errorMessage(cause)}); it was moved or deleted after planning.`,
      { cause },
    );
  }
}

function throwIfAborted(signal: AbortSignal | undefined, shard: ShardSpec): void {
  if (signal?.aborted === true) {
    throw new RescaleError('ABORTED', `Reading shard ${shard.id} was aborted.`, {
      cause: signal.reason,
      retryable: true,
    });
  }
}

export interface ReadShardDocumentsOptions extends ReadShardRowsOptions {
  /** Input id column; null makes the corpus row index the id. */
  readonly idColumn: string | null;
  readonly textColumn: string;
}

export interface DocumentBatch {
  readonly rows: readonly number[];
  readonly ids: readonly (DocumentId | null)[];
  /** Document text, null when the input value is null. Invalid UTF-8 is decoded with U+FFFD. */
  readonly texts: readonly (string | null)[];
}

/** readShardRows for the id and text columns, normalised to what the scorer and the result writer expect. */
export async function* readShardDocuments(
  shard: ShardSpec,
  options: ReadShardDocumentsOptions,
): AsyncGenerator<DocumentBatch> {
  const { idColumn, textColumn } = options;
  const columns = idColumn === null ? [textColumn] : [idColumn, textColumn];
  for await (const batch of readShardRows(shard, columns, options)) {
    const texts = (batch.columns.get(textColumn) ?? []).map(toText);
    const idValues = idColumn === null ? undefined : batch.columns.get(idColumn);
    const ids = idValues === undefined ? batch.rows : idValues.map(toDocumentId);
    yield { rows: batch.rows, ids, texts };
  }
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: false });

/** Text as a string: bytes are decoded as UTF-8 with replacement characters, never throwing. */
export function toText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return utf8Decoder.decode(value);
  return String(value);
}

/** An id value as a DocumentId: numbers and bigints stay numeric, everything else becomes its string form. */
export function toDocumentId(value: unknown): DocumentId | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint') return value;
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  return typeof value === 'object'
    ? JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))
    : String(value);
}

/** Arrow type for a result IdType. */
export function arrowIdType(idType: IdType): DataType {
  switch (idType) {
    case 'int8':
      return new Int8();
    case 'int16':
      return new Int16();
    case 'int32':
      return new Int32();
    case 'int64':
      return new Int64();
    case 'uint8':
      return new Uint8();
    case 'uint16':
      return new Uint16();
    case 'uint32':
      return new Uint32();
    case 'uint64':
      return new Uint64();
    case 'float32':
      return new Float32();
    case 'float64':
      return new Float64();
    case 'utf8':
      return new Utf8();
  }
}

/** The Arrow type an input id column keeps in result files (int32 stays int32, strings become utf8, ...). */
export function idArrowType(column: CorpusColumn): DataType {
  return arrowIdType(idTypeOf(column));
}
