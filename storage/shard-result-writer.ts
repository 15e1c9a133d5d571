// Writes one shard's results as an Arrow IPC file, atomically: the final `<shardId>.arrow` exists only
// once every row is on disk, so its presence alone means the shard is complete (resume skips it).

import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import {
  Field,
  Float64,
  Int32,
  Int64,
  RecordBatch,
  Schema,
  Struct,
  Table,
  Utf8,
  makeData,
  tableFromIPC,
  tableToIPC,
  type Data,
  type DataType,
  type Vector,
} from 'apache-arrow';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import {
  FALLBACK_STATUSES,
  ID_TYPES,
  RESULT_SOURCES,
  ROW_STATUSES,
  probabilityColumn,
  type DocumentId,
  type FallbackOutcome,
  type FallbackStatus,
  type IdType,
  type ResultRow,
  type ResultSource,
  type RowStatus,
} from '../contracts/results.js';
import type { ShardSpec } from '../contracts/shard.js';
import { arrowIdType } from './parquet-rows.js';

/** Schema metadata key holding the shard's identity (JSON), checked by the merge. */
export const SHARD_METADATA_KEY = 'rescale.shard';
const RESULT_EXTENSION = '.arrow';

export interface ShardResultMetadata {
  readonly version: 1;
  readonly shardId: string;
  readonly index: number;
  readonly file: string;
  readonly fingerprint: string;
  readonly rowStart: number;
  readonly rowEnd: number;
  readonly corpusRowStart: number;
  readonly labels: readonly string[];
  readonly idType: IdType;
}

export interface WriteShardResultOptions {
  readonly dir: string;
  readonly shard: ShardSpec;
  /** Codebook labels in order; one `p_<label>` column each. */
  readonly labels: readonly string[];
  readonly idType: IdType;
  /** Exactly one row per input row of the shard, in row order. */
  readonly rows: readonly ResultRow[];
}

/** `<dir>/<shardId>.arrow`. */
export function shardResultPath(dir: string, shardId: string): string {
  return path.join(dir, `${shardId}${RESULT_EXTENSION}`);
}

/** True when the shard's final result file exists; temp files (`.<name>.*.tmp`) never count. */
export async function isShardComplete(dir: string, shardId: string): Promise<boolean> {
  const info = await stat(shardResultPath(dir, shardId)).catch(() => undefined);
  return info?.isFile() === true;
}

/**
 * Columns added with the closed-model fallback, after the original ones so positional readers keep working: the
 * local opinion (always filled when scored) and the fallback's (null unless the document was routed).
 */
export const FALLBACK_FIELDS = [
  ['local_label', 'utf8'],
  ['local_confidence', 'float64'],
  ['fallback_label', 'utf8'],
  ['fallback_confidence', 'float64'],
  ['fallback_status', 'utf8'],
  ['fallback_error', 'utf8'],
] as const;

/** The Arrow schema of a shard result file (documented in docs/results-schema.md). */
export function resultSchema(labels: readonly string[], idType: IdType, metadata?: ShardResultMetadata): Schema {
  const fields = [
    new Field('id', arrowIdType(idType), true),
    new Field('row', new Int64(), false),
    new Field('label', new Utf8(), true),
    new Field('confidence', new Float64(), true),
    new Field('margin', new Float64(), true),
    new Field('entropy', new Float64(), true),
    ...labels.map((label) => new Field(probabilityColumn(label), new Float64(), true)),
    new Field('status', new Utf8(), false),
    new Field('error', new Utf8(), true),
    new Field('tokens', new Int32(), false),
    new Field('source', new Utf8(), false),
    new Field('shard_id', new Utf8(), false),
    ...FALLBACK_FIELDS.map(([name, type]) => new Field(name, type === 'utf8' ? new Utf8() : new Float64(), true)),
  ];
  const meta = new Map<string, string>();
  if (metadata !== undefined) meta.set(SHARD_METADATA_KEY, JSON.stringify(metadata));
  return new Schema(fields, meta);
}

/** Validates the rows against the shard, encodes them and writes `<dir>/<shardId>.arrow` atomically. */
export async function writeShardResult(options: WriteShardResultOptions): Promise<string> {
  const { dir, shard, labels, idType, rows } = options;
  checkRows(shard, labels, idType, rows);
  const metadata: ShardResultMetadata = {
    version: 1,
    shardId: shard.id,
    index: shard.index,
    file: shard.file,
    fingerprint: shard.fingerprint,
    rowStart: shard.rowStart,
    rowEnd: shard.rowEnd,
    corpusRowStart: shard.corpusRowStart,
    labels: [...labels],
    idType,
  };
  const schema = resultSchema(labels, idType, metadata);
  const n = rows.length;
  const columns: Data[] = [
    idData(idType, rows),
    int64Data(rows.map((row) => row.row)),
    utf8Data(rows.map((row) => row.label)),
    float64Data(rows.map((row) => row.confidence)),
    float64Data(rows.map((row) => row.margin)),
    float64Data(rows.map((row) => row.entropy)),
    ...labels.map((_, j) => float64Data(rows.map((row) => row.probabilities?.[j] ?? null))),
    utf8Data(rows.map((row) => row.status)),
    utf8Data(rows.map((row) => row.error)),
    makeData({ type: new Int32(), length: n, data: Int32Array.from(rows, (row) => row.tokens) }),
    utf8Data(rows.map((row) => row.source)),
    utf8Data(rows.map((row) => row.shardId)),
    utf8Data(rows.map((row) => (row.localLabel === undefined ? row.label : row.localLabel))),
    float64Data(rows.map((row) => row.confidence)),
    utf8Data(rows.map((row) => row.fallback?.label ?? null)),
    float64Data(rows.map((row) => row.fallback?.confidence ?? null)),
    utf8Data(rows.map((row) => row.fallback?.status ?? null)),
    utf8Data(rows.map((row) => row.fallback?.error ?? null)),
  ];
  const batch = new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: n, nullCount: 0, children: columns }));
  const bytes = tableToIPC(new Table(schema, batch), 'file');
  const target = shardResultPath(dir, shard.id);
  try {
    await mkdir(dir, { recursive: true });
    await writeFileAtomic(target, async (handle) => {
      await handle.writeFile(bytes);
    });
  } catch (cause) {
    throw new RescaleError('OUTPUT_NOT_WRITABLE', `Cannot write shard result ${target} (${errorMessage(cause)}); check that the results directory is writable and has free space.`, {
      cause,
      retryable: true,
    });
  }
  return target;
}

/**
 * Writes `target` through a temp file in the same directory: create, write, fsync, close, rename, fsync the
 * directory. On any failure the temp file is removed and `target` is untouched, so readers see the old
 * file or the complete new one, never a partial one. Temp names start with '.' and end with '.tmp'.
 */
export async function writeFileAtomic(target: string, write: (handle: FileHandle) => Promise<void>): Promise<void> {
  const dir = path.dirname(target);
  const temp = path.join(dir, `.${path.basename(target)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx');
  let renamed = false;
  try {
    try {
      await write(handle);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
    renamed = true;
    await fsyncDirectory(dir);
  } finally {
    if (!renamed) await unlink(temp).catch(() => undefined);
  }
}

/** Makes a rename durable: the directory entry is flushed too (a no-op where directories cannot be opened). */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => undefined);
  if (handle === undefined) return;
  try {
    await handle.sync().catch(() => undefined);
  } finally {
    await handle.close();
  }
}

export interface ShardResultFile {
  readonly path: string;
  readonly metadata: ShardResultMetadata;
  readonly rows: number;
  readonly table: Table;
}

/** Reads a shard result file back; SHARD_INCOMPLETE names the file when it is missing or unreadable. */
export async function readShardResult(filePath: string): Promise<ShardResultFile> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(filePath);
  } catch (cause) {
    throw new RescaleError('SHARD_INCOMPLETE', `Shard result ${filePath} cannot be read (${errorMessage(cause)}); run the shard again.`, { cause });
  }
  let table: Table;
  let metadata: ShardResultMetadata;
  try {
    table = tableFromIPC(bytes);
    metadata = parseMetadata(table.schema.metadata.get(SHARD_METADATA_KEY));
  } catch (cause) {
    throw new RescaleError('SHARD_INCOMPLETE', `Shard result ${filePath} is not a valid rescale result file (${errorMessage(cause)}); delete it and run the shard again.`, { cause });
  }
  return { path: filePath, metadata, rows: table.numRows, table };
}

function parseMetadata(json: string | undefined): ShardResultMetadata {
  if (json === undefined) throw new Error(`schema metadata "${SHARD_METADATA_KEY}" is missing`);
  const value = JSON.parse(json) as Partial<ShardResultMetadata>;
  if (value.version !== 1 || typeof value.shardId !== 'string' || !Array.isArray(value.labels) || !ID_TYPES.includes(value.idType as IdType)) {
    throw new Error(`schema metadata "${SHARD_METADATA_KEY}" is malformed`);
  }
  return value as ShardResultMetadata;
}

/** Decodes a result table back into ResultRows (tests, fallback re-scoring, inspection). */
export function resultRowsOf(table: Table, labels: readonly string[]): ResultRow[] {
  const column = (name: string): Vector => {
    const vector = table.getChild(name);
    if (vector === null) throw new RescaleError('SHARD_INCOMPLETE', `Result table has no column "${name}"; it was written for other labels.`);
    return vector;
  };
  const ids = column('id');
  const rowIndex = column('row');
  const label = column('label');
  const confidence = column('confidence');
  const margin = column('margin');
  const entropy = column('entropy');
  const probabilities = labels.map((name) => column(probabilityColumn(name)));
  const status = column('status');
  const error = column('error');
  const tokens = column('tokens');
  const source = column('source');
  const shardIdColumn = column('shard_id');
  // Files written before the fallback existed lack its columns: read as local-only rows.
  const localLabel = table.getChild('local_label');
  const fallbackLabel = table.getChild('fallback_label');
  const fallbackConfidence = table.getChild('fallback_confidence');
  const fallbackStatus = table.getChild('fallback_status');
  const fallbackError = table.getChild('fallback_error');
  const rows: ResultRow[] = [];
  for (let i = 0; i < table.numRows; i++) {
    const p = probabilities.map((vector) => vector.get(i) as number | null);
    const outcome = fallbackStatus?.get(i) as FallbackStatus | null | undefined;
    const fallback: FallbackOutcome | null =
      outcome === null || outcome === undefined
        ? null
        : {
            status: outcome,
            label: (fallbackLabel?.get(i) as string | null | undefined) ?? null,
            confidence: (fallbackConfidence?.get(i) as number | null | undefined) ?? null,
            error: (fallbackError?.get(i) as string | null | undefined) ?? null,
          };
    rows.push({
      id: ids.get(i) as DocumentId | null,
      row: Number(rowIndex.get(i) as bigint),
      label: label.get(i) as string | null,
      confidence: confidence.get(i) as number | null,
      margin: margin.get(i) as number | null,
      entropy: entropy.get(i) as number | null,
      probabilities: p.some((value) => value === null) ? null : Float64Array.from(p as number[]),
      status: status.get(i) as RowStatus,
      error: error.get(i) as string | null,
      tokens: tokens.get(i) as number,
      source: source.get(i) as ResultSource,
      shardId: shardIdColumn.get(i) as string,
      // Only when they add something, so local-only rows read back exactly as written.
      ...(localLabel !== null && localLabel.get(i) !== label.get(i) ? { localLabel: localLabel.get(i) as string | null } : {}),
      ...(fallback !== null ? { fallback } : {}),
    });
  }
  return rows;
}

/** A final file means a complete shard, so the rows must be exactly the shard's rows, in order. */
function checkRows(shard: ShardSpec, labels: readonly string[], idType: IdType, rows: readonly ResultRow[]): void {
  const expected = shard.rowEnd - shard.rowStart;
  const fail = (problem: string): never => {
    throw new RescaleError('INTERNAL', `Refusing to write shard ${shard.id}: ${problem}. This is a bug in the caller; the shard was not marked complete.`);
  };
  if (rows.length !== expected) fail(`got ${rows.length} result rows for ${expected} input rows`);
  if (!ID_TYPES.includes(idType)) fail(`unknown id type ${String(idType)}`);
  if (new Set(labels).size !== labels.length) fail('labels are not unique');
  rows.forEach((row, i) => {
    if (row.row !== shard.corpusRowStart + i) fail(`row ${i} has corpus index ${row.row}, expected ${shard.corpusRowStart + i}`);
    if (row.shardId !== shard.id) fail(`row ${row.row} names shard ${row.shardId}`);
    if (row.probabilities !== null && row.probabilities.length !== labels.length) {
      fail(`row ${row.row} has ${row.probabilities.length} probabilities for ${labels.length} labels`);
    }
    if (!ROW_STATUSES.includes(row.status)) fail(`row ${row.row} has unknown status ${String(row.status)}`);
    if (!RESULT_SOURCES.includes(row.source)) fail(`row ${row.row} has unknown source ${String(row.source)}`);
    if (!Number.isInteger(row.tokens) || row.tokens < 0 || row.tokens > 0x7fffffff) fail(`row ${row.row} has invalid token count ${row.tokens}`);
    const fallback = row.fallback ?? null;
    if (fallback !== null) {
      if (!FALLBACK_STATUSES.includes(fallback.status)) fail(`row ${row.row} has unknown fallback status ${String(fallback.status)}`);
      if (fallback.label !== null && !labels.includes(fallback.label)) fail(`row ${row.row} has fallback label "${fallback.label}", not a codebook label`);
      if ((fallback.status === 'ok') !== (fallback.label !== null)) fail(`row ${row.row} has fallback status ${fallback.status} with label ${String(fallback.label)}`);
    }
    if ((row.source === 'fallback') !== (fallback?.status === 'ok')) fail(`row ${row.row} has source ${row.source} but fallback status ${String(fallback?.status ?? null)}`);
    if (row.source === 'fallback' && row.label !== fallback?.label) fail(`row ${row.row} has source fallback but label ${String(row.label)}`);
  });
}

function validityBitmap(valid: (i: number) => boolean, length: number): { nullBitmap: Uint8Array; nullCount: number } {
  const nullBitmap = new Uint8Array(Math.ceil(length / 8));
  let nullCount = 0;
  for (let i = 0; i < length; i++) {
    if (valid(i)) nullBitmap[i >> 3]! |= 1 << (i & 7);
    else nullCount++;
  }
  return { nullBitmap, nullCount };
}

function float64Data(values: readonly (number | null)[]): Data<Float64> {
  const data = new Float64Array(values.length);
  values.forEach((value, i) => {
    if (value !== null) data[i] = value;
  });
  return makeData({ type: new Float64(), length: values.length, ...validityBitmap((i) => values[i] !== null, values.length), data });
}

function int64Data(values: readonly number[]): Data<Int64> {
  return makeData({ type: new Int64(), length: values.length, data: BigInt64Array.from(values, (value) => BigInt(value)) });
}

const utf8Encoder = new TextEncoder();

function utf8Data(values: readonly (string | null)[]): Data<Utf8> {
  const encoded = values.map((value) => (value === null ? null : utf8Encoder.encode(value)));
  const valueOffsets = new Int32Array(values.length + 1);
  let total = 0;
  encoded.forEach((bytes, i) => {
    total += bytes?.length ?? 0;
    valueOffsets[i + 1] = total;
  });
  if (total > 0x7fffffff) throw new RescaleError('INTERNAL', 'A shard result string column exceeds 2 GiB; use smaller shards.');
  const data = new Uint8Array(total);
  encoded.forEach((bytes, i) => {
    if (bytes !== null) data.set(bytes, valueOffsets[i]);
  });
  return makeData({ type: new Utf8(), length: values.length, ...validityBitmap((i) => values[i] !== null, values.length), valueOffsets, data });
}

/** The id column in the shard's IdType; a value that does not fit the type is a caller bug, reported by row. */
function idData(idType: IdType, rows: readonly ResultRow[]): Data {
  const type: DataType = arrowIdType(idType);
  const length = rows.length;
  const validity = validityBitmap((i) => rows[i]?.id !== null, length);
  if (idType === 'utf8') return utf8Data(rows.map((row) => (row.id === null ? null : String(row.id))));
  const ArrayType = {
    int8: Int8Array, int16: Int16Array, int32: Int32Array, int64: BigInt64Array,
    uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array,
    float32: Float32Array, float64: Float64Array,
  }[idType];
  const data = new ArrayType(length);
  const slots = data as unknown as (number | bigint)[];
  const isFloat = idType === 'float32' || idType === 'float64';
  rows.forEach((row, i) => {
    if (row.id === null) return;
    let value: number | bigint;
    try {
      value = idType === 'int64' || idType === 'uint64' ? BigInt(row.id) : Number(row.id);
    } catch {
      value = Number.NaN;
    }
    slots[i] = value;
    // A typed array wraps or truncates silently; reading the value back catches what does not fit.
    const fits = isFloat ? typeof value === 'number' && (Number.isNaN(value) || !Number.isFinite(value) || Math.abs(value) <= 3.4028234663852886e38 || idType === 'float64')
      : slots[i] === value;
    if (!fits) {
      throw new RescaleError('INTERNAL', `Row ${row.row}: id ${String(row.id)} does not fit the id column type ${idType}; the id type must come from the plan.`);
    }
  });
  return makeData({ type, length, ...validity, data } as Parameters<typeof makeData>[0]);
}
