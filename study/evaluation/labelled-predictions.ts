// Gold labels and result files joined by document id: what every evaluation and calibration starts from. Ids missing
// on either side are counted and reported, never silently dropped; a duplicated id is an error naming the file. A
// multi-file run whose corpus files reuse ids is joined by corpus file and id (the manifest maps each result row's
// shard to its file).

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { RescaleError } from '../../contracts/errors.js';
import { outputLayout } from '../../storage/output-layout.js';
import { checkResultsComplete } from '../../storage/complete-output.js';
import { readParquetTable, type ParquetTable } from '../../storage/parquet-table.js';

/** How many example ids an error or a coverage report lists. */
const EXAMPLE_IDS = 5;

/**
 * The join key of an id value: integers of any width (number or bigint) and their decimal text join equally, so a
 * gold file written with INT32 ids joins a result file with INT64 ids. null for a null id; NaN, Infinity, -Infinity
 * and -0 keep their own keys (never null, and -0 is not 0), as the result file keeps them.
 */
export function idKey(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  return String(value);
}

function labelText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  return String(value);
}

function numberOrNull(value: unknown): number | null {
  if (value === null || value === undefined) return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

function listIds(ids: readonly string[]): string {
  const shown = ids
    .slice(0, EXAMPLE_IDS)
    .map((id) => JSON.stringify(id))
    .join(', ');
  return ids.length > EXAMPLE_IDS ? `${shown}, …` : shown;
}

/** Builds id → position, refusing null and duplicated ids with a message naming the file and the rows. */
function indexIds(
  keys: readonly (string | null)[],
  file: string,
  role: string,
  idColumn: string,
  allowNull: boolean,
): Map<string, number> {
  const index = new Map<string, number>();
  keys.forEach((key, row) => {
    if (key === null) {
      if (allowNull) return;
      throw new RescaleError(
        'INPUT_INVALID',
        `${role} ${file}: row ${row} has no id in column "${idColumn}"; every gold row needs an id to be joined`,
      );
    }
    const earlier = index.get(key);
    if (earlier !== undefined) {
      throw new RescaleError(
        'INPUT_INVALID',
        `${role} ${file}: id ${JSON.stringify(key)} appears twice (rows ${earlier} and ${row}) in column ` +
          `"${idColumn}"; ids must be unique — deduplicate the file or choose another --id-column`,
      );
    }
    index.set(key, row);
  });
  return index;
}

/** What a join pairs rows by: the id, or (for a run whose corpus files reuse ids) the corpus file and the id. */
export type JoinKey = 'id' | 'file and id';

/** The column a gold file may name each row's corpus file in, for a run keyed by file and id. */
export const GOLD_FILE_COLUMN = 'file';

export interface GoldLabels {
  readonly file: string;
  /** Values of the gold file's "file" column (each row's corpus file: a path or a file name), when it has one. */
  readonly files: readonly (string | null)[] | null;
  /** False when ids repeat across the corpus files the "file" column names (joinable by file and id only). */
  readonly idsUnique: boolean;
  readonly idColumn: string;
  readonly labelColumn: string;
  readonly rows: number;
  /** Join key per row. */
  readonly keys: readonly string[];
  /** Gold label per row; null where the row has no label (not coded). */
  readonly labels: readonly (string | null)[];
  /** The label column as read (e.g. string arrays for a list column), for multi-label gold sets. */
  readonly values: readonly unknown[];
  /** Rows without a label, left out of every metric. */
  readonly unlabelled: number;
  readonly index: ReadonlyMap<string, number>;
  /** Other columns asked for (e.g. text), by name. */
  readonly extra: ReadonlyMap<string, readonly unknown[]>;
}

export interface ReadGoldOptions {
  readonly idColumn: string;
  readonly labelColumn: string;
  /** Further columns to read (e.g. the text); each must exist. */
  readonly extraColumns?: readonly { readonly name: string; readonly option?: string }[];
  /** Names the option the file came from in errors; default "--gold". */
  readonly role?: string;
  /** Names what chose the label column, for a missing one; default "--label-column". */
  readonly labelOption?: string;
}

export async function readGoldLabels(file: string, options: ReadGoldOptions): Promise<GoldLabels> {
  const role = options.role ?? '--gold';
  const extra = options.extraColumns ?? [];
  const table = await readParquetTable(file, role, [
    { name: options.idColumn, option: '--id-column' },
    { name: options.labelColumn, option: options.labelOption ?? '--label-column' },
    { name: GOLD_FILE_COLUMN, optional: true },
    ...extra,
  ]);
  const keys = (table.columns.get(options.idColumn) ?? []).map(idKey);
  const files = table.columns.get(GOLD_FILE_COLUMN)?.map(labelText) ?? null;
  let index: Map<string, number>;
  if (files !== null && hasDuplicates(keys)) {
    // Ids that repeat across the corpus files a "file" column names: unique per file and id is what counts.
    indexIds(
      keys.map((key, row) => (key === null ? null : `${files[row] ?? ''}\0${key}`)),
      table.file,
      role,
      `${GOLD_FILE_COLUMN}" and "${options.idColumn}`,
      false,
    );
    index = new Map();
    keys.forEach((key, row) => {
      if (key !== null && !index.has(key)) index.set(key, row);
    });
  } else {
    index = indexIds(keys, table.file, role, options.idColumn, false);
  }
  const values = table.columns.get(options.labelColumn) ?? [];
  const labels = values.map(labelText);
  return {
    file: table.file,
    files,
    idsUnique: index.size === keys.length,
    idColumn: options.idColumn,
    labelColumn: options.labelColumn,
    rows: table.rows,
    keys: keys as string[],
    labels,
    values,
    unlabelled: labels.filter((l) => l === null).length,
    index,
    extra: new Map(extra.map((c) => [c.name, table.columns.get(c.name) ?? []])),
  };
}

export interface Predictions {
  readonly file: string;
  readonly rows: number;
  /** Join key per row: the id key, or `<corpus file>\0<id key>` when keyedBy is 'file and id'. */
  readonly keys: readonly (string | null)[];
  /** 'file and id' when the run's corpus files reuse ids (read from the manifest beside the result file). */
  readonly keyedBy: JoinKey;
  /** The run's corpus files (absolute paths) when keyedBy is 'file and id', else null. */
  readonly corpusFiles: readonly string[] | null;
  /** The final label (`label`, or the column readPredictions was asked for), null when the row was not scored. */
  readonly labels: readonly (string | null)[];
  /** That column as read (e.g. string arrays for a `<question>__labels` list column). */
  readonly values: readonly unknown[];
  /** The column `labels` and `values` come from. */
  readonly labelColumn: string;
  /** The local model's label: `local_label` when the file has it (a run with fallback), else `label`. */
  readonly localLabels: readonly (string | null)[];
  /** Row status (`status` column), or null when the file has none. */
  readonly statuses: readonly (string | null)[] | null;
  /** The local model's scores, when the file has them (result files always do). */
  readonly confidence: readonly (number | null)[] | null;
  readonly margin: readonly (number | null)[] | null;
  readonly entropy: readonly (number | null)[] | null;
  /** The fallback's label per row where the file records one (`fallback_label`), else null. */
  readonly fallbackLabels: readonly (string | null)[] | null;
  /**
   * What became of a routed document's fallback request (`fallback_status`: ok, fallback_invalid, ...); null when not
   * routed.
   */
  readonly fallbackStatuses: readonly (string | null)[] | null;
  /** Which model gave the final label (`source`: local or fallback). */
  readonly sources: readonly (string | null)[] | null;
  /** Codebook label order from the footer (`rescale.labels`), when written by rescale. */
  readonly labelOrder: readonly string[] | null;
  readonly index: ReadonlyMap<string, number>;
  readonly nullIds: number;
}

function column<T>(table: ParquetTable, name: string, convert: (value: unknown) => T): T[] | null {
  const values = table.columns.get(name);
  return values === undefined ? null : values.map(convert);
}

/**
 * Reads a result file (docs/results-schema.md): `id` and `label` (or `labelColumn`, e.g. a multi-label question's
 * `<question>__labels`), plus the scores and fallback columns it has.
 */
export async function readPredictions(
  file: string,
  role = '--predictions',
  labelColumn = 'label',
  /**
   * A question of a multi-question result file: its `<question>__` columns are read as the unprefixed ones (its label
   * unless `labelColumn` names another column, scores, opinions, source); `id`, `status` and `shard_id` are the row's.
   */
  question?: string,
): Promise<Predictions> {
  const own = (name: string): string => (question === undefined ? name : `${question}__${name}`);
  if (question !== undefined && labelColumn === 'label') labelColumn = own('label');
  await checkResultsComplete(file, role);
  const table = await readParquetTable(file, role, [
    { name: 'id' },
    { name: labelColumn, optional: true },
    { name: own('label'), optional: true },
    { name: 'status', optional: true },
    { name: own('confidence'), optional: true },
    { name: own('margin'), optional: true },
    { name: own('entropy'), optional: true },
    { name: own('local_label'), optional: true },
    { name: own('fallback_label'), optional: true },
    { name: own('fallback_status'), optional: true },
    { name: own('source'), optional: true },
    { name: 'shard_id', optional: true },
  ]);
  if (!table.columnNames.includes(labelColumn)) throw noLabelColumn(table, role, labelColumn);
  let keys = (table.columns.get('id') ?? []).map(idKey);
  let keyedBy: JoinKey = 'id';
  let corpusFiles: string[] | null = null;
  const byFile = hasDuplicates(keys) ? keysByFile(table, keys) : null;
  if (byFile !== null) {
    ({ keys, corpusFiles } = byFile);
    keyedBy = 'file and id';
  }
  const index = indexIds(keys, table.file, role, 'id', true);
  const values = table.columns.get(labelColumn) ?? [];
  const labels = values.map(labelText);
  let labelOrder: string[] | null = null;
  const raw = table.keyValue.get('rescale.labels');
  if (raw !== undefined) {
    try {
      const parsed: unknown = JSON.parse(raw);
      if (Array.isArray(parsed) && parsed.every((l) => typeof l === 'string')) labelOrder = parsed as string[];
    } catch {
      labelOrder = null;
    }
  }
  if (question !== undefined) {
    labelOrder = questionsOf(table)?.find((q) => q.name === question)?.labels ?? null;
  }
  return {
    file: table.file,
    rows: table.rows,
    keys,
    keyedBy,
    corpusFiles,
    labels,
    values,
    labelColumn,
    localLabels: column(table, own('local_label'), labelText)?.map((l, i) => l ?? labels[i] ?? null) ?? labels,
    statuses: column(table, 'status', labelText),
    confidence: column(table, own('confidence'), numberOrNull),
    margin: column(table, own('margin'), numberOrNull),
    entropy: column(table, own('entropy'), numberOrNull),
    fallbackLabels: column(table, own('fallback_label'), labelText),
    fallbackStatuses: column(table, own('fallback_status'), labelText),
    // A question that cannot be routed has no source column of its own: the local model answered it.
    sources: column(table, own('source'), labelText) ?? (question === undefined ? null : labels.map(() => 'local')),
    labelOrder,
    index,
    nullIds: keys.filter((k) => k === null).length,
  };
}

/** The questions a multi-question result file holds (`rescale.questions`), in codebook order; null for one. */
function questionsOf(table: ParquetTable): { name: string; labels: string[]; type?: string }[] | null {
  const raw = table.keyValue.get('rescale.questions');
  if (raw === undefined) return null;
  try {
    const parsed: unknown = JSON.parse(raw);
    if (!Array.isArray(parsed)) return null;
    return parsed.filter(
      (q): q is { name: string; labels: string[]; type?: string } =>
        typeof (q as { name?: unknown }).name === 'string' && Array.isArray((q as { labels?: unknown }).labels),
    );
  } catch {
    return null;
  }
}

/**
 * The single-label questions of a result file with several (name and labels, codebook order); null for a one-question
 * file. Multi-label questions (a `<question>__labels` list) are left out: they are evaluated as label sets by
 * `rescale evaluate`; a file holding nothing else is refused naming them.
 */
export async function resultFileQuestions(
  file: string,
  role = '--predictions',
): Promise<{ name: string; labels: string[] }[] | null> {
  const questions = questionsOf(await readParquetTable(file, role, []));
  if (questions === null) return null;
  const single = questions.filter((q) => q.type !== 'multi_label').map(({ name, labels }) => ({ name, labels }));
  if (single.length === 0 && questions.length > 0) {
    const names = questions.map((q) => q.name).join(', ');
    const tool = role === '--predictions' ? 'this command' : role;
    throw new RescaleError(
      'INPUT_INVALID',
      `${role} ${file} holds multi-label questions only (${names}); ${tool} reads single-label questions: ` +
        `evaluate label sets with "rescale evaluate --question ${questions[0]?.name ?? ''}"`,
    );
  }
  return single;
}

/**
 * Every question of a result file with question column groups (name, labels in codebook order, and `type` /
 * `format` for multi-label questions); null for a one-question file without them.
 */
export async function resultFileAllQuestions(
  file: string,
  role = '--predictions',
): Promise<{ name: string; labels: string[]; type?: string; format?: string }[] | null> {
  return questionsOf(await readParquetTable(file, role, []));
}

/** A results file without the label column: one of a multi-question codebook (named as such), or another file. */
function noLabelColumn(table: ParquetTable, role: string, labelColumn: string): RescaleError {
  const raw = table.keyValue.get('rescale.questions');
  if (raw !== undefined && labelColumn === 'label') {
    let names = '';
    try {
      names = (JSON.parse(raw) as { name: string }[]).map((q) => q.name).join(', ');
    } catch {
      names = 'several';
    }
    const first = names.split(', ')[0] ?? 'name';
    return new RescaleError(
      'INPUT_INVALID',
      `${role} ${table.file} holds the answers of several questions (${names}), one "<question>__" column group ` +
        'each; this command reads one question\'s "label" column: write that question\'s columns to a file of ' +
        `their own (e.g. DuckDB: COPY (SELECT id, ${first}__label AS label, ${first}__confidence AS confidence, ` +
        `status FROM '${path.basename(table.file)}') TO '${first}.parquet') and pass that file`,
    );
  }
  return new RescaleError(
    'COLUMN_MISSING',
    `${role} ${table.file} has no column "${labelColumn}" (it has: ${table.columnNames.join(', ')})`,
  );
}

function hasDuplicates(keys: readonly (string | null)[]): boolean {
  const seen = new Set<string>();
  for (const key of keys) {
    if (key === null) continue;
    if (seen.has(key)) return true;
    seen.add(key);
  }
  return false;
}

/**
 * Keys of a result file whose ids repeat: `<corpus file>\0<id>`, the corpus file of each row from its shard_id and
 * the run's manifest. Null when the file has no shard_id column or no readable manifest (the duplicate is then
 * reported as such).
 */
function keysByFile(
  table: ParquetTable,
  keys: readonly (string | null)[],
): { keys: (string | null)[]; corpusFiles: string[] } | null {
  const shardIds = table.columns.get('shard_id');
  if (shardIds === undefined) return null;
  let shards: unknown;
  try {
    shards = (JSON.parse(readFileSync(outputLayout(table.file).manifestFile, 'utf8')) as { shards?: unknown }).shards;
  } catch {
    return null;
  }
  if (!Array.isArray(shards)) return null;
  const fileOf = new Map<string, string>();
  for (const shard of shards as { id?: unknown; file?: unknown }[]) {
    if (typeof shard.id === 'string' && typeof shard.file === 'string') fileOf.set(shard.id, shard.file);
  }
  const out: (string | null)[] = [];
  for (const [row, key] of keys.entries()) {
    const file = fileOf.get(labelText(shardIds[row]) ?? '');
    if (file === undefined) return null;
    out.push(key === null ? null : `${file}\0${key}`);
  }
  return { keys: out, corpusFiles: [...new Set(fileOf.values())] };
}

/**
 * The corpus file of a gold row for a join by file and id: its "file" column value matched to one of the run's corpus
 * files (the same absolute path, or the same trailing path such as a file name), else the gold file itself when it is
 * one of them (a labelled corpus file).
 */
function goldCorpusFile(gold: GoldLabels, row: number, corpusFiles: readonly string[], results: string): string {
  const named = gold.files?.[row] ?? null;
  if (named !== null) {
    const matches = corpusFiles.filter(
      (file) => file === named || file === path.resolve(named) || file.endsWith(`/${named.replace(/^\.\//, '')}`),
    );
    if (matches.length === 1) return matches[0] as string;
    throw new RescaleError(
      'INPUT_INVALID',
      `${gold.file}: row ${row} names the corpus file ${JSON.stringify(named)} in its "${GOLD_FILE_COLUMN}" column, ` +
        `which ${matches.length === 0 ? 'is not one' : 'matches several'} of the corpus files of ${results} ` +
        `(${corpusFiles.map((f) => path.basename(f)).join(', ')}); name the file by its path`,
    );
  }
  if (corpusFiles.includes(gold.file)) return gold.file;
  throw new RescaleError(
    'INPUT_INVALID',
    `${results} is keyed by corpus file and id (its corpus files reuse ids), but the gold file ${gold.file} is not ` +
      `one of those files and has no "${GOLD_FILE_COLUMN}" column: add a "${GOLD_FILE_COLUMN}" column naming ` +
      "each gold row's corpus file (its path or file name)",
  );
}

export interface JoinCoverage {
  readonly file: string;
  /** What rows were paired by. */
  readonly key: JoinKey;
  readonly predictionRows: number;
  /** Gold rows with a label. */
  readonly goldLabelled: number;
  /** Gold-labelled documents that have a predicted label: the ones evaluated. */
  readonly evaluated: number;
  /** Gold-labelled ids with no row in the predictions file. */
  readonly missingPredictions: number;
  /** Prediction rows whose id is not in the gold file. */
  readonly notInGold: number;
  /** Prediction rows with a null id (cannot be joined). */
  readonly nullIds: number;
  /** Gold-labelled documents whose prediction row has no label, by row status (empty_text, error, ...). */
  readonly unscored: Readonly<Record<string, number>>;
  readonly examples: { readonly missingPredictions: readonly string[]; readonly notInGold: readonly string[] };
}

export interface JoinedPredictions {
  readonly coverage: JoinCoverage;
  /** For each evaluated document: its gold row and its prediction row. */
  readonly goldRows: Int32Array;
  readonly predictionRows: Int32Array;
}

/** Pairs every gold-labelled row with its prediction row by id, counting what does not pair. */
export function joinByIds(
  gold: GoldLabels,
  predictions: Predictions,
  labelOf: (p: Predictions) => readonly (string | null)[] = (p) => p.labels,
): JoinedPredictions {
  const labels = labelOf(predictions);
  let goldKeys = gold.keys;
  let goldIndex = gold.index;
  if (predictions.keyedBy === 'file and id') {
    const files = predictions.corpusFiles ?? [];
    goldKeys = gold.keys.map((key, g) => `${goldCorpusFile(gold, g, files, predictions.file)}\0${key}`);
    goldIndex = new Map(goldKeys.map((key, g) => [key, g]));
  } else if (!gold.idsUnique) {
    throw new RescaleError(
      'INPUT_INVALID',
      `${gold.file} repeats ids across the corpus files of its "${GOLD_FILE_COLUMN}" column, but the ids of ` +
        `${predictions.file} are unique and it is joined by id; evaluate against a gold file with unique ids, or ` +
        "keep the result file's manifest beside it when its corpus files reuse ids",
    );
  }
  const shown = (key: string): string => {
    const cut = key.indexOf('\0');
    return cut < 0 ? key : `${path.basename(key.slice(0, cut))}:${key.slice(cut + 1)}`;
  };
  const goldRows: number[] = [];
  const predictionRows: number[] = [];
  const missing: string[] = [];
  const unscored: Record<string, number> = {};
  let missingPredictions = 0;
  let goldLabelled = 0;
  goldKeys.forEach((key, g) => {
    if (gold.labels[g] === null) return;
    goldLabelled++;
    const p = predictions.index.get(key);
    if (p === undefined) {
      missingPredictions++;
      if (missing.length < EXAMPLE_IDS) missing.push(shown(key));
      return;
    }
    if (labels[p] === null || labels[p] === undefined) {
      const status = predictions.statuses?.[p] ?? 'no_label';
      unscored[status] = (unscored[status] ?? 0) + 1;
      return;
    }
    goldRows.push(g);
    predictionRows.push(p);
  });
  let notInGold = 0;
  const extra: string[] = [];
  for (const key of predictions.index.keys()) {
    if (!goldIndex.has(key)) {
      notInGold++;
      if (extra.length < EXAMPLE_IDS) extra.push(shown(key));
    }
  }
  return {
    coverage: {
      file: predictions.file,
      key: predictions.keyedBy,
      predictionRows: predictions.rows,
      goldLabelled,
      evaluated: goldRows.length,
      missingPredictions,
      notInGold,
      nullIds: predictions.nullIds,
      unscored,
      examples: { missingPredictions: missing, notInGold: extra },
    },
    goldRows: Int32Array.from(goldRows),
    predictionRows: Int32Array.from(predictionRows),
  };
}

/**
 * Joins every predictions file to the gold labels and keeps the documents all of them labelled (in gold order), so
 * files compare on the same documents. Throws INPUT_INVALID when no document is left.
 */
export function joinCommonDocuments(
  gold: GoldLabels,
  predictions: readonly Predictions[],
): { joins: JoinedPredictions[]; common: number[]; predictionRow: (file: number, goldRow: number) => number } {
  const joins = predictions.map((p) => joinByIds(gold, p));
  const byGoldRow = joins.map((join) => {
    const rows = new Map<number, number>();
    join.goldRows.forEach((g, i) => rows.set(g, join.predictionRows[i] as number));
    return rows;
  });
  const common: number[] = [];
  for (const g of joins[0]?.goldRows ?? []) if (byGoldRow.every((rows) => rows.has(g))) common.push(g);
  if (common.length === 0) {
    throw new RescaleError(
      'INPUT_INVALID',
      `no document has both a gold label in ${gold.file} and a predicted label in ` +
        `${predictions.length === 1 ? 'the predictions file' : 'every predictions file'}; check that the ids match ` +
        `(--id-column) and the runs finished`,
    );
  }
  return { joins, common, predictionRow: (f, g) => (byGoldRow[f] as Map<number, number>).get(g) as number };
}

/** Throws when any id failed to join (the --strict-ids check), naming the file, the counts and example ids. */
export function assertCompleteJoin(coverage: JoinCoverage, goldFile: string): void {
  const problems: string[] = [];
  if (coverage.missingPredictions > 0) {
    problems.push(
      `${coverage.missingPredictions} gold ids have no prediction row (e.g. ` +
        `${listIds(coverage.examples.missingPredictions)})`,
    );
  }
  if (coverage.notInGold > 0)
    problems.push(
      `${coverage.notInGold} prediction ids are not in ${path.basename(goldFile)} (e.g. ` +
        `${listIds(coverage.examples.notInGold)})`,
    );
  if (coverage.nullIds > 0) problems.push(`${coverage.nullIds} prediction rows have a null id`);
  if (problems.length > 0) {
    throw new RescaleError(
      'INPUT_INVALID',
      `${coverage.file} does not match the gold file ${goldFile} id for id: ${problems.join('; ')}; check that ` +
        `both come from the same corpus and the same --id-column`,
    );
  }
}

/** A human line on what was left out of a join, or null when everything joined. */
export function describeCoverage(coverage: JoinCoverage): string | null {
  const parts: string[] = [];
  if (coverage.missingPredictions > 0)
    parts.push(
      `${coverage.missingPredictions} gold ids without a prediction row (e.g. ` +
        `${listIds(coverage.examples.missingPredictions)})`,
    );
  if (coverage.notInGold > 0)
    parts.push(
      `${coverage.notInGold} prediction ids not in the gold file (e.g. ${listIds(coverage.examples.notInGold)})`,
    );
  if (coverage.nullIds > 0) parts.push(`${coverage.nullIds} prediction rows with a null id`);
  const unscored = Object.entries(coverage.unscored);
  if (unscored.length > 0)
    parts.push(
      `${unscored.reduce((n, [, c]) => n + c, 0)} gold documents not scored ` +
        `(${unscored.map(([s, c]) => `${s} ${c}`).join(', ')})`,
    );
  return parts.length === 0 ? null : `${path.basename(coverage.file)}: ${parts.join('; ')} — left out of the metrics`;
}

/**
 * The label list every metric runs over, in order: `explicit` (--labels) when given, else the codebook order a
 * result file records, else the sorted labels seen. Every gold and predicted label must be in it.
 */
export function resolveLabelOrder(
  gold: GoldLabels,
  predictions: readonly Predictions[],
  explicit: readonly string[] | undefined,
  labelOf: (p: Predictions) => readonly (string | null)[] = (p) => p.labels,
): string[] {
  const recorded = predictions.find((p) => p.labelOrder !== null)?.labelOrder ?? null;
  let labels: string[];
  let source: string;
  if (explicit !== undefined && explicit.length > 0) {
    labels = [...explicit];
    source = '--labels';
  } else if (recorded !== null) {
    labels = [...recorded];
    source = 'the codebook labels recorded in the result file';
  } else {
    const seen = new Set<string>();
    for (const l of gold.labels) if (l !== null) seen.add(l);
    for (const p of predictions) for (const l of labelOf(p)) if (l !== null) seen.add(l);
    return [...seen].sort();
  }
  const known = new Set(labels);
  const check = (values: readonly (string | null)[], what: string): void => {
    const unknown = new Map<string, number>();
    for (const v of values) if (v !== null && !known.has(v)) unknown.set(v, (unknown.get(v) ?? 0) + 1);
    if (unknown.size > 0) {
      const list = [...unknown].map(([v, n]) => `${JSON.stringify(v)} (${n} rows)`).join(', ');
      throw new RescaleError(
        'INPUT_INVALID',
        `${what} holds labels that are not in ${source} (${labels.map((l) => JSON.stringify(l)).join(', ')}): ` +
          `${list}; map them to codebook labels or pass --labels`,
      );
    }
  };
  check(gold.labels, `column "${gold.labelColumn}" of ${gold.file}`);
  for (const p of predictions) check(labelOf(p), `column "${p.labelColumn}" of ${p.file}`);
  return labels;
}
