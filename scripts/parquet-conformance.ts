// Runs every file of an apache/parquet-testing checkout through the corpus reader's public entry points and compares
// what it reads with DuckDB, writing a table of read / refused / WRONG per file. Not part of `npm test`: the files are
// not in the repository. Usage:
//   node --import tsx scripts/parquet-conformance.ts <parquet-testing dir> [--out docs/parquet-conformance.md]
// Each file is probed in a child process with a time limit, so a hang or a crash is recorded, not suffered.

import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isRescaleError } from '../contracts/errors.js';
import type { CorpusColumn, CorpusFile } from '../contracts/shard.js';
import { readCorpusFile } from '../coordinator/corpus.js';
import { planShards } from '../coordinator/shard-planner.js';
import { readShardDocuments, readShardRows, toDocumentId } from '../storage/parquet-rows.js';
import { sqlString, withDuckDB } from './harness/parquet.js';

const PROBE_TIMEOUT_MS = 60_000;
const SHARDS_PER_FILE = 3;

/** What a probe found, written as JSON by the child process. Values are canonical strings (null stays null). */
interface ProbeResult {
  readonly stage: 'schema' | 'columns' | 'read' | 'done';
  readonly rows?: number;
  readonly columns?: readonly CorpusColumn[];
  readonly textColumn?: string | null;
  readonly textRefusal?: string;
  readonly idColumn?: string | null;
  /** Every other scalar column read alone: those that were refused or crashed, with the error. */
  readonly columnErrors?: readonly { readonly column: string; readonly error: NonNullable<ProbeResult['error']> }[];
  /** The planner's refusal of an earlier id candidate, when there was one. */
  readonly idRefusals?: string;
  readonly texts?: readonly (string | null)[];
  readonly ids?: readonly (string | null)[];
  readonly error?: {
    readonly rescale: boolean;
    readonly code?: string;
    readonly message: string;
    readonly stack?: string;
  };
}

type Verdict = 'read' | 'refused' | 'WRONG';

interface Row {
  readonly file: string;
  readonly verdict: Verdict;
  readonly reason: string;
}

function canonical(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

function canonicalText(value: unknown): string | null {
  if (value instanceof Uint8Array) return utf8.decode(value);
  return canonical(value);
}

/** Columns to try as the id, integers first: the planner's id check decides which one is read. */
function idCandidates(columns: readonly CorpusColumn[], textColumn: string | null): string[] {
  const scalar = columns.filter((c) => c.physicalType !== 'GROUP' && c.repeated !== true && c.name !== textColumn);
  const isInteger = (c: CorpusColumn): boolean =>
    /^INT(32|64)$/.test(c.physicalType) && (c.logicalType ?? 'INT_').includes('INT_');
  return [...scalar.filter(isInteger), ...scalar.filter((c) => !isInteger(c))].map((c) => c.name);
}

function errorOf(cause: unknown): NonNullable<ProbeResult['error']> {
  if (isRescaleError(cause)) return { rescale: true, code: cause.code, message: cause.message };
  const error = cause instanceof Error ? cause : new Error(String(cause));
  return { rescale: false, message: error.message, ...(error.stack === undefined ? {} : { stack: error.stack }) };
}

async function probe(file: string): Promise<ProbeResult> {
  let corpus: CorpusFile;
  try {
    corpus = await readCorpusFile(file);
  } catch (cause) {
    return { stage: 'schema', error: errorOf(cause) };
  }
  const { columns, rows } = corpus;
  const plan = (textColumn: string, idColumn: string | null) =>
    planShards([corpus], {
      codebookHash: 'conformance',
      maxRowsPerShard: Math.max(1, Math.ceil(rows / SHARDS_PER_FILE)),
      textColumn,
      idColumn,
    });
  let textColumn: string | null = null;
  let textRefusal: string | undefined;
  for (const column of columns) {
    try {
      plan(column.name, null);
      textColumn = column.name;
      break;
    } catch (cause) {
      const { message } = errorOf(cause);
      textRefusal ??= message;
    }
  }
  let idColumn: string | null = null;
  let idRefusals: string | undefined;
  // Without a text column the id check runs beside a stand-in string column, so only the id is judged.
  const standInText = { name: '\0text', physicalType: 'BYTE_ARRAY', logicalType: 'STRING', nullable: true };
  const withText = textColumn === null ? { ...corpus, columns: [...columns, standInText] } : corpus;
  for (const name of idCandidates(columns, textColumn)) {
    try {
      planShards([withText], {
        codebookHash: 'conformance',
        maxRowsPerShard: 1,
        textColumn: textColumn ?? standInText.name,
        idColumn: name,
      });
      idColumn = name;
      break;
    } catch (cause) {
      idRefusals ??= `id refused: ${errorOf(cause).message}`;
    }
  }
  const base = {
    rows,
    columns,
    textColumn,
    idColumn,
    ...(textRefusal === undefined ? {} : { textRefusal }),
    ...(idRefusals === undefined ? {} : { idRefusals }),
  };
  const texts: (string | null)[] = [];
  const ids: (string | null)[] = [];
  try {
    if (textColumn !== null) {
      for (const shard of plan(textColumn, idColumn).shards) {
        for await (const batch of readShardDocuments(shard, { idColumn, textColumn })) {
          texts.push(...batch.texts);
          ids.push(...batch.ids.map(canonical));
        }
      }
    }
  } catch (cause) {
    return { ...base, stage: 'read', texts, ids, error: errorOf(cause) };
  }
  return { ...base, stage: 'done', texts, ids };
}

/** The id column alone, for files without a text column: shards planned by row groups, read with readShardRows. */
async function probeIdOnly(corpus: CorpusFile, idColumn: string): Promise<(string | null)[]> {
  const ids: (string | null)[] = [];
  let corpusRowStart = 0;
  for (const group of corpus.rowGroups) {
    if (group.rows === 0) continue;
    const shard = {
      id: `group-${group.rowStart}`,
      index: 0,
      file: corpus.path,
      fingerprint: corpus.fingerprint,
      rowStart: group.rowStart,
      rowEnd: group.rowStart + group.rows,
      corpusRowStart,
    };
    corpusRowStart += group.rows;
    for await (const batch of readShardRows(shard, [idColumn])) {
      ids.push(...(batch.columns.get(idColumn) ?? []).map((value) => canonical(toDocumentId(value))));
    }
  }
  return ids;
}

/** Reads each scalar top-level column alone over the whole file, keeping only the errors. */
async function probeColumns(corpus: CorpusFile): Promise<NonNullable<ProbeResult['columnErrors']>> {
  const errors: { column: string; error: NonNullable<ProbeResult['error']> }[] = [];
  const shard = {
    id: 'all-rows',
    index: 0,
    file: corpus.path,
    fingerprint: corpus.fingerprint,
    rowStart: 0,
    rowEnd: corpus.rows,
    corpusRowStart: 0,
  };
  for (const column of corpus.columns) {
    if (column.physicalType === 'GROUP' || corpus.rows === 0) continue;
    try {
      for await (const batch of readShardRows(shard, [column.name])) void batch;
    } catch (cause) {
      errors.push({ column: column.name, error: errorOf(cause) });
    }
  }
  return errors;
}

async function probeFile(file: string): Promise<ProbeResult> {
  const probed = await probe(file);
  const result =
    probed.stage === 'schema' ? probed : { ...probed, columnErrors: await probeColumns(await readCorpusFile(file)) };
  if (
    result.stage !== 'done' ||
    result.textColumn !== null ||
    result.idColumn === null ||
    result.idColumn === undefined
  )
    return result;
  const corpus = await readCorpusFile(file);
  try {
    return { ...result, ids: await probeIdOnly(corpus, result.idColumn) };
  } catch (cause) {
    return { ...result, stage: 'read', error: errorOf(cause) };
  }
}

async function runProbe(file: string, outFile: string): Promise<ProbeResult | { timeout: true } | { crash: string }> {
  const script = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, ['--import', 'tsx', script, '--probe', file, outFile], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), PROBE_TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve) => child.on('close', (status) => resolve(status)));
  clearTimeout(timer);
  if (code === null) return { timeout: true };
  if (code !== 0) return { crash: stderr.trim().split('\n').slice(-3).join(' ') };
  return JSON.parse(await readFile(outFile, 'utf8')) as ProbeResult;
}

interface DuckDBRead {
  readonly rows: number;
  readonly texts?: (string | null)[];
  readonly ids?: (string | null)[];
}

/**
 * Files in the legacy LZ4 codec, which DuckDB does not read, and a file of the same test data in LZ4_RAW that it does
 * (parquet-testing writes both from one table), to compare with instead.
 */
const DUCKDB_STAND_INS: Readonly<Record<string, string>> = {
  'data/hadoop_lz4_compressed.parquet': 'data/lz4_raw_compressed.parquet',
  'data/non_hadoop_lz4_compressed.parquet': 'data/lz4_raw_compressed.parquet',
  'data/hadoop_lz4_compressed_larger.parquet': 'data/lz4_raw_compressed_larger.parquet',
};

/** A DuckDB query's rows; GeoParquet metadata is not interpreted, so geometry stays WKB bytes as in the file. */
async function queryRaw(sql: string): Promise<Record<string, unknown>[]> {
  return withDuckDB(async (connection) => {
    await connection.run('SET enable_geoparquet_conversion = false');
    const reader = await connection.runAndReadAll(sql);
    return reader.getRowObjectsJS() as Record<string, unknown>[];
  });
}

async function readWithDuckDB(file: string, textColumn: string | null, idColumn: string | null): Promise<DuckDBRead> {
  const source = `read_parquet('${sqlString(file)}', file_row_number = true)`;
  const [count] = await queryRaw(`SELECT count(*) AS n FROM ${source}`);
  const rows = Number(count?.n);
  const quote = (name: string): string => `"${name.replace(/"/g, '""')}"`;
  const wanted = [textColumn, idColumn].filter((name): name is string => name !== null);
  if (wanted.length === 0) return { rows };
  const values = await queryRaw(
    `SELECT ${wanted.map((name, i) => `${quote(name)} AS c${i}`).join(', ')} FROM ${source} ORDER BY file_row_number`,
  );
  const at = (name: string | null): string | undefined => (name === null ? undefined : `c${wanted.indexOf(name)}`);
  const textKey = at(textColumn);
  const idKey = at(idColumn);
  return {
    rows,
    ...(textKey === undefined ? {} : { texts: values.map((row) => canonicalText(row[textKey])) }),
    ...(idKey === undefined ? {} : { ids: values.map((row) => canonical(row[idKey])) }),
  };
}

function firstDifference(a: readonly (string | null)[], b: readonly (string | null)[]): string | undefined {
  const length = Math.max(a.length, b.length);
  for (let i = 0; i < length; i++) {
    if (a[i] !== b[i]) {
      const show = (value: string | null | undefined): string =>
        value === undefined ? '(missing)' : value === null ? 'null' : JSON.stringify(value.slice(0, 40));
      return `row ${i}: reader ${show(a[i])}, DuckDB ${show(b[i])}`;
    }
  }
  return undefined;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').replace(/\|/g, '\\|').slice(0, 400);
}

async function judge(root: string, file: string, scratch: string): Promise<Row> {
  const absolute = path.join(root, file);
  const outcome = await runProbe(absolute, path.join(scratch, 'probe.json'));
  const shortName = (message: string): string => message.split(absolute).join(file);
  if ('timeout' in outcome)
    return { file, verdict: 'WRONG', reason: `no answer in ${PROBE_TIMEOUT_MS / 1000} s (hang)` };
  if ('crash' in outcome) return { file, verdict: 'WRONG', reason: `process crashed: ${oneLine(outcome.crash)}` };
  const { error } = outcome;
  if (error !== undefined) {
    if (!error.rescale) {
      const where = error.stack?.split('\n')[1]?.trim() ?? '';
      return { file, verdict: 'WRONG', reason: `crash (${error.message}) ${where}`.trim() };
    }
    return { file, verdict: 'refused', reason: `${error.code}: ${shortName(error.message)}` };
  }
  const crash = outcome.columnErrors?.find((entry) => !entry.error.rescale);
  if (crash !== undefined) {
    const where = crash.error.stack?.split('\n')[1]?.trim() ?? '';
    return {
      file,
      verdict: 'WRONG',
      reason: `column "${crash.column}" alone: crash (${crash.error.message}) ${where}`,
    };
  }
  const refusedColumns = (outcome.columnErrors ?? []).map((entry) => shortName(entry.error.message));
  const columnNote = refusedColumns.length === 0 ? '' : `; other columns refused: ${refusedColumns.join(' ')}`;
  const textColumn = outcome.textColumn ?? null;
  const idColumn = outcome.idColumn ?? null;
  if (textColumn === null && idColumn === null) {
    const refusals = [outcome.textRefusal, outcome.idRefusals].filter((text) => text !== undefined);
    const reason = refusals.length === 0 ? 'no column' : shortName(refusals.join(' '));
    return { file, verdict: 'refused', reason: `no column rescale reads as text or id: ${reason}${columnNote}` };
  }
  const standIn = DUCKDB_STAND_INS[file];
  let duck: DuckDBRead;
  try {
    duck = await readWithDuckDB(standIn === undefined ? absolute : path.join(root, standIn), textColumn, idColumn);
  } catch (cause) {
    const message = cause instanceof Error ? cause.message : String(cause);
    return {
      file,
      verdict: 'WRONG',
      reason: `read ${outcome.rows} rows, but DuckDB refuses the file (${oneLine(message).slice(0, 160)})`,
    };
  }
  const problems: string[] = [];
  if (duck.rows !== outcome.rows) problems.push(`${outcome.rows} rows, DuckDB ${duck.rows}`);
  const textDiff = duck.texts === undefined ? undefined : firstDifference(outcome.texts ?? [], duck.texts);
  if (textDiff !== undefined) problems.push(`text "${textColumn}" ${textDiff}`);
  const idDiff = duck.ids === undefined ? undefined : firstDifference(outcome.ids ?? [], duck.ids);
  if (idDiff !== undefined) problems.push(`id "${idColumn}" ${idDiff}`);
  if (problems.length > 0) return { file, verdict: 'WRONG', reason: problems.join('; ') };
  const what = [
    `${outcome.rows} rows`,
    textColumn === null ? 'no string column' : `text "${textColumn}"`,
    idColumn === null ? 'no id column' : `id "${idColumn}"`,
  ];
  const textNote =
    textColumn === null && outcome.textRefusal !== undefined ? ` (${shortName(outcome.textRefusal)})` : '';
  const against = standIn === undefined ? 'DuckDB' : `DuckDB's read of ${standIn} (DuckDB has no legacy LZ4)`;
  const idNote = outcome.idRefusals === undefined ? '' : `; ${shortName(outcome.idRefusals)}`;
  return { file, verdict: 'read', reason: `${what.join(', ')} match ${against}${textNote}${idNote}${columnNote}` };
}

async function listFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  for (const top of ['data', 'bad_data']) {
    const entries = await readdir(path.join(root, top), { recursive: true, withFileTypes: true });
    for (const entry of entries) {
      if (!entry.isFile() || !entry.name.includes('.parquet')) continue;
      found.push(path.relative(root, path.join(entry.parentPath, entry.name)));
    }
  }
  return found.sort();
}

function gitCommit(root: string): string {
  try {
    return execFileSync('git', ['-C', root, 'log', '-1', '--format=%H %cs'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return 'unknown commit';
  }
}

async function main(argv: readonly string[]): Promise<void> {
  if (argv[0] === '--probe') {
    const [, file, outFile] = argv;
    if (file === undefined || outFile === undefined) throw new Error('--probe needs <file> <out.json>');
    await writeFile(outFile, JSON.stringify(await probeFile(file)));
    return;
  }
  const root = argv[0];
  if (root === undefined)
    throw new Error('usage: parquet-conformance.ts <parquet-testing dir> [--out file.md] [--commit text]');
  const option = (name: string): string | undefined => {
    const at = argv.indexOf(name);
    return at < 0 ? undefined : argv[at + 1];
  };
  const outFile = option('--out') ?? 'docs/parquet-conformance.md';
  const commit = option('--commit') ?? gitCommit(root);
  const only = option('--only');
  const scratch = await mkdtemp(path.join(tmpdir(), 'parquet-conformance-'));
  const rows: Row[] = [];
  try {
    for (const file of await listFiles(root)) {
      if (only !== undefined && !file.includes(only)) continue;
      const row = await judge(root, file, scratch);
      console.log(`${row.verdict.padEnd(8)} ${file}  ${row.reason}`);
      rows.push(row);
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  if (only !== undefined) return;
  const count = (verdict: Verdict): number => rows.filter((row) => row.verdict === verdict).length;
  const table = rows.map((row) => `| ${row.file} | ${row.verdict} | ${oneLine(row.reason)} |`).join('\n');
  const today = new Date().toISOString().slice(0, 10);
  await writeFile(
    outFile,
    [
      '# Corpus reader against apache/parquet-testing',
      '',
      `Run ${today} by \`scripts/parquet-conformance.ts\` over apache/parquet-testing ${commit}. Every \`data/\` and`,
      "`bad_data/` Parquet file goes through `readCorpusFile` (footer and schema), the planner's text and id column",
      'checks (the first column accepted as text; an integer column, else another scalar column, accepted as id) and',
      '`readShardDocuments` over three planned shards, compared with DuckDB in file order: row count, the text column',
      'and the id column. Then every other scalar column is read alone over the whole file: a crash is WRONG, a',
      'refusal is listed. The legacy-LZ4 files, which DuckDB does not read, are compared with their LZ4_RAW twins.',
      'Each file runs in its own process with a 60 s limit (a hang is WRONG). "read" is the verdict for the file as',
      'a corpus: its text (or id) column is read; the reason lists columns refused beside it.',
      '',
      `${count('read')} read and equal to DuckDB, ${count('refused')} refused with a reason, ` +
        `${count('WRONG')} WRONG.`,
      '',
      '| file | result | reason |',
      '| --- | --- | --- |',
      table,
      '',
    ].join('\n'),
  );
  console.log(`wrote ${outFile}: ${count('read')} read, ${count('refused')} refused, ${count('WRONG')} WRONG`);
}

await main(process.argv.slice(2));
