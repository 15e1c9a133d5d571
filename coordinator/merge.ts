// Combines the shard result files of a finished plan into one Parquet file in input order, after checking
// that every planned row is there exactly once, and writes the run manifest beside it.

import { createHash, type Hash } from 'node:crypto';
import { writeSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { DataType, type Vector } from 'apache-arrow';
import type { DecodedArray } from 'hyparquet';
import { ByteWriter, ParquetWriter } from 'hyparquet-writer';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import { silentLogger, type Logger } from '../contracts/logger.js';
import type { RunManifestMerge } from '../contracts/run-manifest.js';
import {
  FALLBACK_STATUSES,
  RESULT_SOURCES,
  ROW_STATUSES,
  type FallbackStatus,
  type IdType,
  type ResultSource,
  type RowStatus,
} from '../contracts/results.js';
import type { ShardPlan, ShardSpec } from '../contracts/shard.js';
import { writeBytesAtomic, writeFileAtomic } from '../storage/atomic-file.js';
import { outputLayout, shardResultPath } from '../storage/output-layout.js';
import {
  describeQuestion,
  groupedQuestions,
  resultSchemaFor,
  type NullColumn,
  type ResultQuestion,
} from '../storage/result-schema.js';
import {
  isShardComplete,
  readShardResult,
  shardQuestions,
  type ShardResultFile,
} from '../storage/shard-result-file.js';

/** Parquet codecs the merge can write; ZSTD (the default) comes from the `@bokuweb/zstd-wasm` dependency. */
export type ResultCodec = 'ZSTD' | 'GZIP' | 'SNAPPY' | 'UNCOMPRESSED';

/** Node 20's zlib has no zstd; this wasm build of the reference library does (see docs/parquet.md). */
const ZSTD_MODULE = '@bokuweb/zstd-wasm';
const ZSTD_LEVEL = 3;
const DEFAULT_ROW_GROUP_ROWS = 100_000;
const FLUSH_BYTES = 1 << 20;
const MISSING_LISTED = 20;

export interface MergeShardsOptions {
  readonly plan: ShardPlan;
  readonly shardDir: string;
  /** Path of the merged Parquet file; the manifest goes to outputLayout(output).manifestFile. */
  readonly output: string;
  /** Codebook labels in order (one p_<label> column each); must match the shard files. Empty with `questions`. */
  readonly labels: readonly string[];
  /** Several questions or a multi-label one: each with its labels, in codebook order; must match the shard files. */
  readonly questions?: readonly ResultQuestion[];
  /**
   * Run manifest from the caller, normally buildManifest's head plus the run's `fallback` (and `run` in cluster mode);
   * written with a `merge` section added, as contracts/run-manifest.ts describes.
   */
  readonly manifest: object;
  /** Default: ZSTD when available, else GZIP (logged). An explicit ZSTD without the package is an error. */
  readonly codec?: ResultCodec;
  /**
   * Minimum rows per Parquet row group (default 100,000): whole shards are added until it is reached. Bounds memory.
   */
  readonly rowGroupRows?: number;
  readonly logger?: Logger;
  /**
   * Runs once the results file is renamed into place, before its manifest is written: the one point where a kill
   * leaves results without a manifest. Tests pause a process here to kill it.
   */
  readonly afterResultsRenamed?: () => Promise<void>;
}

export interface MergeSummary {
  readonly output: string;
  readonly manifestPath: string;
  readonly rows: number;
  readonly shards: number;
  readonly rowGroups: number;
  readonly codec: ResultCodec;
  readonly bytes: number;
  readonly statusCounts: Readonly<Record<RowStatus, number>>;
  /** Rows per final-label source, and per fallback status of routed rows. */
  readonly sourceCounts: Readonly<Record<ResultSource, number>>;
  readonly fallbackStatusCounts: Readonly<Record<FallbackStatus, number>>;
  /** Rows whose results were copied from an identical earlier document of their shard (`duplicate_of` set). */
  readonly duplicates: number;
}

/**
 * Checks that every planned shard has its result file, then streams them in plan order into row groups
 * of one Parquet file, checking each shard's row count, row indexes, labels and id type on the way.
 * Output and manifest are written through temp files and renamed, so a failed merge leaves neither
 * (nor a previous output changed); the earlier manifest is removed just before the results are renamed into place,
 * and the new one, with the results file's sha256, is renamed last: results and manifest are committed as a pair.
 */
export async function mergeShards(options: MergeShardsOptions): Promise<MergeSummary> {
  const { plan, shardDir, labels, logger = silentLogger } = options;
  const output = path.resolve(options.output);
  const rowGroupRows = options.rowGroupRows ?? DEFAULT_ROW_GROUP_ROWS;
  if (!Number.isSafeInteger(rowGroupRows) || rowGroupRows < 1) {
    throw new RescaleError('CONFIG_INVALID', `rowGroupRows must be a positive integer, got ${rowGroupRows}.`);
  }
  const shards = [...plan.shards].sort((a, b) => a.index - b.index);
  checkPlan(plan, shards);
  await checkAllPresent(shards, shardDir);
  const { codec, compressors } = await loadCodec(options.codec, logger);

  try {
    await mkdir(path.dirname(output), { recursive: true });
  } catch (cause) {
    throw notWritable(output, cause);
  }
  const statusCounts = Object.fromEntries(ROW_STATUSES.map((status) => [status, 0])) as Record<RowStatus, number>;
  const sourceCounts = Object.fromEntries(RESULT_SOURCES.map((source) => [source, 0])) as Record<ResultSource, number>;
  const fallbackStatusCounts = Object.fromEntries(FALLBACK_STATUSES.map((status) => [status, 0])) as Record<
    FallbackStatus,
    number
  >;
  const questions = shardQuestions(options);
  const resultSchema = resultSchemaFor(questions, plan.idType);
  const schema = resultSchema.parquetSchema();
  const columns = resultSchema.columns;
  const columnNames = columns.map((column) => column.name);
  let rowGroups = 0;
  let rows = 0;
  let duplicates = 0;
  const manifestPath = outputLayout(output).manifestFile;
  const hash = createHash('sha256');

  try {
    await writeFileAtomic(output, async (handle) => {
      const writer = new FileWriter(handle.fd, hash);
      const parquet = new ParquetWriter({
        writer,
        schema,
        codec,
        compressors,
        kvMetadata: resultSchema.parquetKeyValue(),
        createdBy: 'rescale (hyparquet-writer)',
      });
      // Whole shards are appended to one row group until it holds at least rowGroupRows rows, so memory holds
      // at most one row group plus one shard, and values are copied once (Arrow vector → packed JS array).
      let pending: unknown[][] = columnNames.map(() => []);
      let pendingRows = 0;
      const flush = async (): Promise<void> => {
        if (pendingRows === 0) return;
        const columnData = columnNames.map((name, column) => ({ name, data: pending[column] as DecodedArray }));
        pending = columnNames.map(() => []);
        await parquet.write({ columnData, rowGroupSize: pendingRows });
        rowGroups += 1;
        pendingRows = 0;
      };
      const statusColumn = columnNames.indexOf('status');
      const sourceColumn = columnNames.indexOf('source');
      // One column for one question; with several, each routed question's statuses are counted.
      const fallbackStatusColumns = columnNames.flatMap((name, c) =>
        name === 'fallback_status' || name.endsWith('__fallback_status') ? [c] : [],
      );
      const duplicateOfColumn = columnNames.indexOf('duplicate_of');
      for (const shard of shards) {
        const result = await readShardResult(shardResultPath(shardDir, shard.id));
        checkShardResult(result, shard, questions, plan.idType);
        columns.forEach((column, c) =>
          appendColumn(pending[c] ?? [], resultSchema.columnOf(result.table, column), column.name, result.path),
        );
        countStatuses(pending[statusColumn] ?? [], pendingRows, statusCounts);
        countStatuses(pending[sourceColumn] ?? [], pendingRows, sourceCounts);
        for (const c of fallbackStatusColumns) countStatuses(pending[c] ?? [], pendingRows, fallbackStatusCounts);
        duplicates += countValues(pending[duplicateOfColumn] ?? [], pendingRows);
        pendingRows += result.rows;
        rows += result.rows;
        if (pendingRows >= rowGroupRows) await flush();
      }
      await flush();
      if (rows !== plan.totalRows) {
        // Unreachable while checkPlan and checkShardResult hold; the last line of defence before the rename.
        throw new RescaleError(
          'INTERNAL',
          `Merged ${rows} rows but the plan has ${plan.totalRows}; nothing was written. Plan the corpus again.`,
        );
      }
      await parquet.finish();
      // The earlier manifest goes before the new results are renamed into place: a kill from here on leaves results
      // without a manifest (incomplete), never new results beside an old manifest.
      await rm(manifestPath, { force: true });
    });
  } catch (cause) {
    if (cause instanceof RescaleError) throw cause;
    if (isSystemError(cause)) throw notWritable(output, cause);
    throw new RescaleError(
      'INTERNAL',
      `Encoding the merged Parquet ${output} failed (${errorMessage(cause)}); nothing was written. Report this with ` +
        'the run manifest.',
      { cause },
    );
  }

  await options.afterResultsRenamed?.();
  const bytes = (await stat(output)).size;
  const merge: RunManifestMerge = {
    output: path.basename(output),
    rows,
    bytes,
    sha256: hash.digest('hex'),
    codec,
    rowGroups,
    labels: groupedQuestions(questions) ? [] : labels,
    ...(groupedQuestions(questions) ? { questions: questions.map(describeQuestion) } : {}),
    statusCounts,
    sourceCounts,
    fallbackStatusCounts,
    duplicates,
    codebookHash: plan.codebookHash,
    idColumn: plan.idColumn,
    idType: plan.idType,
    textColumn: plan.textColumn,
    limit: plan.limit,
    files: plan.files.map((file) => ({
      path: file.path,
      size: file.size,
      fingerprint: file.fingerprint,
      rows: file.rows,
    })),
    shards: shards.map((shard) => ({
      id: shard.id,
      index: shard.index,
      file: shard.file,
      rowStart: shard.rowStart,
      rowEnd: shard.rowEnd,
      corpusRowStart: shard.corpusRowStart,
      rows: shard.rowEnd - shard.rowStart,
    })),
  };
  const manifest = { ...options.manifest, merge };
  try {
    const json = JSON.stringify(
      manifest,
      (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value),
      2,
    );
    await writeBytesAtomic(manifestPath, `${json}\n`);
  } catch (cause) {
    throw notWritable(manifestPath, cause);
  }
  logger.log('info', 'merged shard results', {
    output,
    rows,
    shards: shards.length,
    rowGroups,
    codec,
    bytes,
    duplicates,
  });
  return {
    output,
    manifestPath,
    rows,
    shards: shards.length,
    rowGroups,
    codec,
    bytes,
    statusCounts,
    sourceCounts,
    fallbackStatusCounts,
    duplicates,
  };
}

/** The plan must tile [0, totalRows) with its shards in index order, or the merged row order would be wrong. */
function checkPlan(plan: ShardPlan, shards: readonly ShardSpec[]): void {
  let next = 0;
  shards.forEach((shard, position) => {
    if (shard.index !== position || shard.corpusRowStart !== next || shard.rowEnd <= shard.rowStart) {
      throw new RescaleError(
        'INTERNAL',
        `Shard plan is inconsistent at shard ${shard.id} (index ${shard.index}); plan the corpus again.`,
      );
    }
    next += shard.rowEnd - shard.rowStart;
  });
  if (next !== plan.totalRows) {
    throw new RescaleError(
      'INTERNAL',
      `Shard plan covers ${next} rows but says totalRows is ${plan.totalRows}; plan the corpus again.`,
    );
  }
}

async function checkAllPresent(shards: readonly ShardSpec[], shardDir: string): Promise<void> {
  const missing: string[] = [];
  for (const shard of shards) {
    if (!(await isShardComplete(shardDir, shard.id))) missing.push(shard.id);
  }
  if (missing.length === 0) return;
  const listed = missing.slice(0, MISSING_LISTED).join(', ');
  const more = missing.length > MISSING_LISTED ? ` and ${missing.length - MISSING_LISTED} more` : '';
  throw new RescaleError(
    'SHARD_INCOMPLETE',
    `${missing.length} of ${shards.length} shards have no result file in ${shardDir}: ${listed}${more}. Run the ` +
      'remaining shards (resume the run), then merge again.',
  );
}

function checkShardResult(
  result: ShardResultFile,
  shard: ShardSpec,
  questions: readonly ResultQuestion[],
  idType: IdType,
): void {
  const { metadata } = result;
  const fail = (problem: string): never => {
    throw new RescaleError(
      'SHARD_INCOMPLETE',
      `Shard result ${result.path} ${problem}; delete it and run shard ${shard.id} again.`,
    );
  };
  if (metadata.shardId !== shard.id) fail(`belongs to shard ${metadata.shardId}`);
  const one = (q: ResultQuestion): string =>
    `${q.name}${q.type === 'multi_label' ? ' (multi-label)' : ''} [${q.labels.join(', ')}]`;
  const describe = (qs: readonly ResultQuestion[]): string =>
    !groupedQuestions(qs) ? `labels [${qs[0]?.labels.join(', ')}]` : `questions ${qs.map(one).join(', ')}`;
  const written = shardQuestions(metadata);
  if (describe(written) !== describe(questions))
    fail(`was written for ${describe(written)}, not ${describe(questions)}`);
  if (metadata.idType !== idType) fail(`has id type ${metadata.idType}, the plan has ${idType}`);
  const expected = shard.rowEnd - shard.rowStart;
  if (result.rows !== expected) fail(`has ${result.rows} rows, the shard has ${expected}`);
  const rowColumn = result.table.getChild('row');
  if (rowColumn === null) fail('has no "row" column');
  let row = BigInt(shard.corpusRowStart);
  for (const value of rowColumn as Vector) {
    if (value !== row) fail(`has corpus row ${String(value)} where ${row} was expected`);
    row += 1n;
  }
}

/**
 * Appends a shard's column to the pending row group, nulls as null. Indexed pushes keep the arrays packed;
 * measured faster than typed-array parts joined with Array.concat, which goes slow once nulls are mixed in.
 */
function appendColumn(target: unknown[], vector: Vector | null | NullColumn, name: string, file: string): void {
  if (vector === null) {
    throw new RescaleError(
      'SHARD_INCOMPLETE',
      `Shard result ${file} has no column "${name}"; delete it and run the shard again.`,
    );
  }
  if ('nulls' in vector) {
    for (let i = 0; i < vector.nulls; i++) target.push(null);
    return;
  }
  if (DataType.isList(vector.type)) {
    // A list column (a multi-label question's labels): each row's list as a plain array, null as null.
    for (const list of vector as Iterable<Iterable<unknown> | null>)
      target.push(list === null ? null : Array.from(list));
    return;
  }
  const values = vector.toArray() as ArrayLike<unknown>; // strings come back as an array with nulls
  if (vector.nullCount === 0 || !ArrayBuffer.isView(values)) {
    for (let i = 0; i < values.length; i++) target.push(values[i]);
    return;
  }
  // Numbers with nulls: validity straight from the bitmaps, much faster than iterating the vector.
  let index = 0;
  for (const data of vector.data) {
    const bitmap = data.nullBitmap;
    for (let k = 0; k < data.length; k++, index++) {
      const bit = data.offset + k;
      const valid = data.nullCount === 0 || bitmap === undefined || ((bitmap[bit >> 3] ?? 0) & (1 << (bit & 7))) !== 0;
      target.push(valid ? values[index] : null);
    }
  }
}

function countStatuses(statuses: readonly unknown[], from: number, counts: Record<string, number>): void {
  for (let i = from; i < statuses.length; i++) {
    const value = statuses[i];
    if (typeof value === 'string' && value in counts) counts[value] = (counts[value] ?? 0) + 1;
  }
}

/** Non-null values from `from` on. */
function countValues(values: readonly unknown[], from: number): number {
  let n = 0;
  for (let i = from; i < values.length; i++) if (values[i] !== null) n++;
  return n;
}

type Compressor = (input: Uint8Array) => Uint8Array;

interface ZstdModule {
  init(): Promise<void>;
  compress(input: Uint8Array, level?: number): Uint8Array;
}

function isZstdModule(value: unknown): value is ZstdModule {
  const candidate = value as Partial<ZstdModule> | null;
  return typeof candidate?.init === 'function' && typeof candidate.compress === 'function';
}

let zstdCompressor: Promise<Compressor | undefined> | undefined;

/** Loads and initialises the zstd wasm once per process: initialising it again corrupts later output. */
function loadZstd(): Promise<Compressor | undefined> {
  zstdCompressor ??= (async () => {
    const specifier: string = ZSTD_MODULE;
    const loaded: unknown = await import(specifier).then(
      (mod: { default?: unknown }) => (isZstdModule(mod) ? mod : mod.default),
      () => undefined,
    );
    if (!isZstdModule(loaded)) return undefined;
    await loaded.init();
    return (input: Uint8Array) => loaded.compress(input, ZSTD_LEVEL);
  })();
  return zstdCompressor;
}

/** The codec and its compressor; ZSTD is loaded on demand because Node 20's zlib has no zstd. */
async function loadCodec(
  requested: ResultCodec | undefined,
  logger: Logger,
): Promise<{ codec: ResultCodec; compressors: Record<string, Compressor> }> {
  const codec = requested ?? 'ZSTD';
  if (codec === 'GZIP') return { codec, compressors: { GZIP: (input) => zlib.gzipSync(input, { level: 6 }) } };
  if (codec !== 'ZSTD') return { codec, compressors: {} };
  const zstd = await loadZstd();
  if (zstd !== undefined) return { codec, compressors: { ZSTD: zstd } };
  void logger;
  throw new RescaleError('INTERNAL', `the zstd compressor (${ZSTD_MODULE}) failed to load; reinstall with "npm ci"`);
}

/** hyparquet-writer's Writer over a file descriptor: 1 MiB of buffered bytes at most, written synchronously. */
class FileWriter extends ByteWriter {
  constructor(
    private readonly fd: number,
    private readonly hash: Hash,
  ) {
    super(FLUSH_BYTES * 2);
  }

  override ensure(size: number): void {
    if (this.index > FLUSH_BYTES) this.flush();
    super.ensure(size);
  }

  flush(): void {
    this.hash.update(new Uint8Array(this.buffer, 0, this.index));
    let written = 0;
    while (written < this.index)
      written += writeSync(this.fd, new Uint8Array(this.buffer, written, this.index - written));
    this.index = 0;
  }

  override finish(): void {
    this.flush();
  }
}

/** Errors from the file system (ENOSPC, EACCES, ...) as opposed to encoding bugs. */
function isSystemError(value: unknown): boolean {
  return value instanceof Error && typeof (value as NodeJS.ErrnoException).code === 'string';
}

function notWritable(target: string, cause: unknown): RescaleError {
  return new RescaleError(
    'OUTPUT_NOT_WRITABLE',
    `Cannot write ${target} (${errorMessage(cause)}); check that its directory is writable and has free space.`,
    {
      cause,
      retryable: true,
    },
  );
}
