// One shard's result file (Arrow IPC, columns from result-schema.ts), written atomically: the final `<shardId>.arrow`
// exists only once every row is on disk, so its presence alone means the shard is complete (resume skips it).

import { mkdir, readFile, stat } from 'node:fs/promises';
import { tableFromIPC, tableToIPC, type Table } from 'apache-arrow';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import {
  FALLBACK_STATUSES,
  ID_TYPES,
  RESULT_SOURCES,
  ROW_STATUSES,
  type IdType,
  type ResultRow,
} from '../contracts/results.js';
import type { ShardSpec } from '../contracts/shard.js';
import { writeFileAtomic } from './atomic-file.js';
import { shardResultPath } from './output-layout.js';
import { arrowIdType } from './parquet-rows.js';
import {
  describeQuestion,
  groupedQuestions,
  labelsQuestion,
  resultSchemaFor,
  type ResultQuestion,
} from './result-schema.js';

/** Schema metadata key holding the shard's identity (JSON), checked by the merge. */
export const SHARD_METADATA_KEY = 'rescale.shard';

export interface ShardResultMetadata {
  readonly version: 1;
  readonly shardId: string;
  readonly index: number;
  readonly file: string;
  readonly fingerprint: string;
  readonly rowStart: number;
  readonly rowEnd: number;
  readonly corpusRowStart: number;
  /** The labels of a one-question single-label codebook (empty with several questions or a multi-label one). */
  readonly labels: readonly string[];
  /** Several questions, or a multi-label one: each with its labels (and type), in codebook order; else absent. */
  readonly questions?: readonly ResultQuestion[];
  readonly idType: IdType;
}

/** The questions a shard file or a merge holds: those given when grouped (several, or multi-label), else `labels`. */
export function shardQuestions(spec: {
  readonly labels: readonly string[];
  readonly questions?: readonly ResultQuestion[] | undefined;
}): readonly ResultQuestion[] {
  return spec.questions !== undefined && groupedQuestions(spec.questions)
    ? spec.questions
    : [labelsQuestion(spec.labels)];
}

export interface WriteShardResultOptions {
  readonly dir: string;
  readonly shard: ShardSpec;
  /** Codebook labels in order; one `p_<label>` column each. Empty when `questions` are given. */
  readonly labels: readonly string[];
  /** A codebook with several questions or a multi-label one: each question and its labels, in codebook order. */
  readonly questions?: readonly ResultQuestion[];
  readonly idType: IdType;
  /** Exactly one row per input row of the shard, in row order. */
  readonly rows: readonly ResultRow[];
}

/** True when the shard's final result file exists; temp files (`.<name>.*.tmp`) never count. */
export async function isShardComplete(dir: string, shardId: string): Promise<boolean> {
  const info = await stat(shardResultPath(dir, shardId)).catch(() => undefined);
  return info?.isFile() === true;
}

/** Validates the rows against the shard, encodes them and writes `<dir>/<shardId>.arrow` atomically. */
export async function writeShardResult(options: WriteShardResultOptions): Promise<string> {
  const { dir, shard, labels, idType, rows } = options;
  const questions = shardQuestions(options);
  checkRows(shard, questions, idType, rows);
  const metadata: ShardResultMetadata = {
    version: 1,
    shardId: shard.id,
    index: shard.index,
    file: shard.file,
    fingerprint: shard.fingerprint,
    rowStart: shard.rowStart,
    rowEnd: shard.rowEnd,
    corpusRowStart: shard.corpusRowStart,
    labels: groupedQuestions(questions) ? [] : [...labels],
    ...(groupedQuestions(questions) ? { questions: questions.map(describeQuestion) } : {}),
    idType,
  };
  const table = resultSchemaFor(questions, idType).encode(
    rows,
    new Map([[SHARD_METADATA_KEY, JSON.stringify(metadata)]]),
  );
  const bytes = tableToIPC(table, 'file');
  const target = shardResultPath(dir, shard.id);
  try {
    await mkdir(dir, { recursive: true });
    await writeFileAtomic(target, async (handle) => {
      await handle.writeFile(bytes);
    });
  } catch (cause) {
    throw new RescaleError(
      'OUTPUT_NOT_WRITABLE',
      `Cannot write shard result ${target} (${errorMessage(cause)}); check that the results directory is writable ` +
        'and has free space.',
      {
        cause,
        retryable: true,
      },
    );
  }
  return target;
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
    throw new RescaleError(
      'SHARD_INCOMPLETE',
      `Shard result ${filePath} cannot be read (${errorMessage(cause)}); run the shard again.`,
      { cause },
    );
  }
  let table: Table;
  let metadata: ShardResultMetadata;
  try {
    table = tableFromIPC(bytes);
    metadata = parseMetadata(table.schema.metadata.get(SHARD_METADATA_KEY));
  } catch (cause) {
    throw new RescaleError(
      'SHARD_INCOMPLETE',
      `Shard result ${filePath} is not a valid rescale result file (${errorMessage(cause)}); delete it and run the ` +
        'shard again.',
      { cause },
    );
  }
  return { path: filePath, metadata, rows: table.numRows, table };
}

function parseMetadata(json: string | undefined): ShardResultMetadata {
  if (json === undefined) throw new Error(`schema metadata "${SHARD_METADATA_KEY}" is missing`);
  const value = JSON.parse(json) as Partial<ShardResultMetadata>;
  if (
    value.version !== 1 ||
    typeof value.shardId !== 'string' ||
    !Array.isArray(value.labels) ||
    (value.questions !== undefined && !Array.isArray(value.questions)) ||
    !ID_TYPES.includes(value.idType as IdType)
  ) {
    throw new Error(`schema metadata "${SHARD_METADATA_KEY}" is malformed`);
  }
  return value as ShardResultMetadata;
}

/**
 * Decodes a result table back into ResultRows (tests, fallback re-scoring, inspection); the id keeps the file's type.
 */
export function resultRowsOf(
  table: Table,
  labels: readonly string[],
  questions?: readonly ResultQuestion[],
): ResultRow[] {
  const idField = table.schema.fields.find((field) => field.name === 'id');
  const idType = ID_TYPES.find((type) => idField !== undefined && String(arrowIdType(type)) === String(idField.type));
  if (idType === undefined)
    throw new RescaleError(
      'SHARD_INCOMPLETE',
      `Result table has no usable column "id" (${String(idField?.type ?? 'missing')}); run the shard again.`,
    );
  return resultSchemaFor(shardQuestions({ labels, questions }), idType).decode(table);
}

/** A final file means a complete shard, so the rows must be exactly the shard's rows, in order. */
function checkRows(
  shard: ShardSpec,
  questions: readonly ResultQuestion[],
  idType: IdType,
  rows: readonly ResultRow[],
): void {
  const grouped = groupedQuestions(questions);
  const labels = grouped ? [] : (questions[0]?.labels ?? []);
  const expected = shard.rowEnd - shard.rowStart;
  const fail = (problem: string): never => {
    throw new RescaleError(
      'INTERNAL',
      `Refusing to write shard ${shard.id}: ${problem}. This is a bug in the caller; the shard was not marked ` +
        'complete.',
    );
  };
  if (rows.length !== expected) fail(`got ${rows.length} result rows for ${expected} input rows`);
  if (!ID_TYPES.includes(idType)) fail(`unknown id type ${String(idType)}`);
  for (const question of questions)
    if (new Set(question.labels).size !== question.labels.length) fail(`labels of ${question.name} are not unique`);
  if (new Set(questions.map((q) => q.name)).size !== questions.length) fail('question names are not unique');
  rows.forEach((row, i) => {
    if (row.row !== shard.corpusRowStart + i)
      fail(`row ${i} has corpus index ${row.row}, expected ${shard.corpusRowStart + i}`);
    if (row.shardId !== shard.id) fail(`row ${row.row} names shard ${row.shardId}`);
    if (row.probabilities !== null && row.probabilities.length !== labels.length) {
      fail(`row ${row.row} has ${row.probabilities.length} probabilities for ${labels.length} labels`);
    }
    if (grouped) {
      if (row.answers?.length !== questions.length)
        fail(`row ${row.row} has ${row.answers?.length ?? 0} answers for ${questions.length} questions`);
      let answeredByFallback = false;
      row.answers?.forEach((answer, q) => {
        const question = questions[q] as ResultQuestion;
        const count = question.labels.length;
        if (answer.probabilities !== null && answer.probabilities.length !== count)
          fail(`row ${row.row} has ${answer.probabilities.length} probabilities for ${count} labels of question ${q}`);
        const multi = questions[q]?.type === 'multi_label';
        if (!multi && answer.labels !== undefined)
          fail(`row ${row.row} has a labels list for single-label question ${q}`);
        if (multi && answer.labels?.some((label) => !questions[q]?.labels.includes(label)))
          fail(`row ${row.row} lists a label that multi-label question ${q} does not have`);
        const outcome = answer.fallback ?? null;
        if (question.routed !== true && (outcome !== null || (answer.source ?? 'local') !== 'local'))
          fail(`row ${row.row} has a fallback opinion on question ${question.name}, which is not routed`);
        if (outcome !== null) {
          if (!FALLBACK_STATUSES.includes(outcome.status))
            fail(`row ${row.row} has unknown fallback status ${String(outcome.status)} on question ${question.name}`);
          if (outcome.label !== null && !question.labels.includes(outcome.label))
            fail(`row ${row.row} has fallback label "${outcome.label}", not a label of question ${question.name}`);
          const given = multi ? (outcome.labels ?? null) : outcome.label;
          if (multi && outcome.label !== null)
            fail(`row ${row.row} has a single fallback label on multi-label question ${question.name}`);
          if (multi && outcome.labels?.some((label) => !question.labels.includes(label)))
            fail(`row ${row.row} has a fallback label set outside the labels of question ${question.name}`);
          if ((outcome.status === 'ok') !== (given !== null))
            fail(`row ${row.row} ${question.name}: fallback status ${outcome.status}, label ${JSON.stringify(given)}`);
        }
        const source = answer.source ?? 'local';
        if ((source === 'fallback') !== (outcome?.status === 'ok'))
          fail(`row ${row.row} ${question.name}: source ${source}, fallback status ${String(outcome?.status ?? null)}`);
        if (source === 'fallback' && !multi && answer.label !== outcome?.label)
          fail(`row ${row.row} question ${question.name} has source fallback but label ${String(answer.label)}`);
        if (source === 'fallback' && multi && JSON.stringify(answer.labels) !== JSON.stringify(outcome?.labels))
          fail(`row ${row.row} question ${question.name} has source fallback but labels other than the fallback's`);
        answeredByFallback ||= source === 'fallback';
      });
      if (row.fallback != null)
        fail(`row ${row.row} has a row-level fallback opinion; several questions have one each`);
      if ((row.source === 'fallback') !== answeredByFallback)
        fail(
          `row ${row.row} has source ${row.source}, but the fallback answered ${answeredByFallback ? 'one' : 'none'}`,
        );
    } else if (row.answers !== undefined) fail(`row ${row.row} has answers for several questions`);
    if (!ROW_STATUSES.includes(row.status)) fail(`row ${row.row} has unknown status ${String(row.status)}`);
    if (!RESULT_SOURCES.includes(row.source)) fail(`row ${row.row} has unknown source ${String(row.source)}`);
    if (!Number.isInteger(row.tokens) || row.tokens < 0 || row.tokens > 0x7fffffff)
      fail(`row ${row.row} has invalid token count ${row.tokens}`);
    const fallback = row.fallback ?? null;
    if (fallback !== null) {
      if (!FALLBACK_STATUSES.includes(fallback.status))
        fail(`row ${row.row} has unknown fallback status ${String(fallback.status)}`);
      if (fallback.label !== null && !labels.includes(fallback.label))
        fail(`row ${row.row} has fallback label "${fallback.label}", not a codebook label`);
      if ((fallback.status === 'ok') !== (fallback.label !== null))
        fail(`row ${row.row} has fallback status ${fallback.status} with label ${String(fallback.label)}`);
    }
    if (questions.length === 1 && (row.source === 'fallback') !== (fallback?.status === 'ok'))
      fail(`row ${row.row} has source ${row.source} but fallback status ${String(fallback?.status ?? null)}`);
    if (questions.length === 1 && row.source === 'fallback' && row.label !== fallback?.label)
      fail(`row ${row.row} has source fallback but label ${String(row.label)}`);
    const original = row.duplicateOf ?? null;
    if (original !== null) {
      // A copy takes an earlier row of its own shard, scored itself, and evaluates nothing.
      const source = rows[original - shard.corpusRowStart];
      if (!Number.isInteger(original) || original < shard.corpusRowStart || original >= row.row)
        fail(`row ${row.row} is a copy of row ${original}, not an earlier row of the shard`);
      if ((source?.duplicateOf ?? null) !== null) fail(`row ${row.row} copies row ${original}, itself a copy`);
      if (row.tokens !== 0) fail(`row ${row.row} is a copy but has ${row.tokens} tokens`);
    }
  });
}
