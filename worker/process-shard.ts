// The one path for a shard: read its rows → build prompts → score → (route unsure documents to the fallback) →
// write the shard's Arrow result atomically.
// Local mode calls it from an in-process loop, cluster workers from the BullMQ processor; nothing in the
// result depends on which.

import { CODEBOOK_VARIABLES, scoredQuestions } from '../contracts/codebook.js';
import { RescaleError } from '../contracts/errors.js';
import { silentLogger, type Logger } from '../contracts/logger.js';
import type { DocumentId, FallbackStatus, IdType, ResultRow, RowStatus } from '../contracts/results.js';
import type { ShardSpec } from '../contracts/shard.js';
import { readShardRows, toDocumentId, toText, type RowGroupCache } from '../storage/parquet-rows.js';
import type { DocumentInput } from '../contracts/document-input.js';
import type { DocumentScorer } from '../contracts/document-scorer.js';
import { DuplicateIndex } from './duplicate-index.js';
import { isShardComplete, writeShardResult } from '../storage/shard-result-file.js';
import { groupedQuestions, resultQuestionsOf } from '../storage/result-schema.js';
import type { ShardFallback } from '../contracts/shard-fallback.js';

// The fallback port is declared in contracts (its implementations live in fallback/ and worker/); re-exported here
// for the shard path's callers.
export type { ShardFallback };

export interface ShardJob {
  readonly shard: ShardSpec;
  /** Input id column, or null when the corpus row index is the id. */
  readonly idColumn: string | null;
  readonly idType: IdType;
  readonly textColumn: string;
  /** Folder of shard result files. */
  readonly resultDir: string;
  /**
   * Score identical prompt inputs of the shard once and copy the first occurrence's result (default true; the run's
   * `--no-dedupe` turns it off).
   */
  readonly dedupe?: boolean;
}

export interface ShardContext {
  readonly scorer: DocumentScorer;
  readonly fallback?: ShardFallback;
  readonly logger?: Logger;
  readonly signal?: AbortSignal;
  /** Documents of this shard finished so far (monotonic). */
  readonly onProgress?: (documentsDone: number) => void;
  /** Keeps the last decoded row group, so consecutive shards of one row group decode it once. */
  readonly cache?: RowGroupCache;
  /** Rows read and scored per step (default READ_BATCH_ROWS); tests make it small to cross batch boundaries. */
  readonly readBatchRows?: number;
}

export interface ShardOutcome {
  readonly shardId: string;
  /** The result file already existed (a finished shard delivered twice): nothing was recomputed. */
  readonly skipped: boolean;
  readonly rows: number;
  readonly statuses: Readonly<Partial<Record<RowStatus, number>>>;
  /** Routed documents by fallback status (empty without a fallback). */
  readonly fallbackStatuses: Readonly<Partial<Record<FallbackStatus, number>>>;
  /** Rows that copied an earlier identical document's result instead of being scored (`duplicate_of` set). */
  readonly duplicates: number;
  readonly tokens: number;
  readonly seconds: number;
  readonly path: string | null;
}

/** A question's answer for a document that was not scored (empty text, too long for the context). */
const unanswered = { label: null, confidence: null, margin: null, entropy: null, probabilities: null, labelMass: null };

/** Rows read and scored per step: bounds memory for large shards; the scorer groups documents within a step. */
const READ_BATCH_ROWS = 512;

export async function processShard(job: ShardJob, context: ShardContext): Promise<ShardOutcome> {
  const { shard } = job;
  const logger = (context.logger ?? silentLogger).child({ shardId: shard.id });
  const started = performance.now();
  if (await isShardComplete(job.resultDir, shard.id)) {
    logger.log('info', 'shard already complete; skipped');
    return {
      shardId: shard.id,
      skipped: true,
      rows: shard.rowEnd - shard.rowStart,
      statuses: {},
      fallbackStatuses: {},
      duplicates: 0,
      tokens: 0,
      seconds: 0,
      path: null,
    };
  }
  const { scorer } = context;
  const questions = scoredQuestions(scorer.codebook);
  const resultQuestions = resultQuestionsOf(scorer.codebook);
  const grouped = groupedQuestions(resultQuestions);
  const own: readonly string[] = CODEBOOK_VARIABLES;
  const extraColumns = scorer.codebook.prompt.variables.filter(
    (name) => name !== 'text' && name !== job.textColumn && !own.includes(name),
  );
  const columns = [...new Set([...(job.idColumn === null ? [] : [job.idColumn]), job.textColumn, ...extraColumns])];

  const rows: ResultRow[] = [];
  const statuses: Partial<Record<RowStatus, number>> = {};
  const fallbackStatuses: Partial<Record<FallbackStatus, number>> = {};
  let tokens = 0;
  let duplicates = 0;
  const index = job.dedupe === false ? null : new DuplicateIndex(extraColumns);
  for await (const batch of readShardRows(shard, columns, {
    batchSize: context.readBatchRows ?? READ_BATCH_ROWS,
    ...(context.signal ? { signal: context.signal } : {}),
    ...(context.cache ? { cache: context.cache } : {}),
  })) {
    const texts = (batch.columns.get(job.textColumn) ?? []).map(toText);
    const ids: (DocumentId | null)[] =
      job.idColumn === null ? [...batch.rows] : (batch.columns.get(job.idColumn) ?? []).map(toDocumentId);
    const docs: DocumentInput[] = texts.map((text, i) => {
      if (extraColumns.length === 0) return { text };
      const values: Record<string, string | null> = {};
      for (const name of extraColumns) values[name] = toText(batch.columns.get(name)?.[i]);
      return { text, columns: values };
    });
    const done = rows.length;
    // Per document: the position in `rows` of the earlier identical document it copies, or null when scored itself.
    const copyOf = docs.map((doc, i) => index?.claim(doc, done + i) ?? null);
    const scoredAt = copyOf.flatMap((original, i) => (original === null ? [i] : []));
    const unique = scoredAt.map((i) => docs[i] as DocumentInput);
    const scores = await scorer.score(unique, {
      ...(context.signal ? { signal: context.signal } : {}),
      // Copies before the next unscored document are done too: their originals come earlier.
      onProgress: (n) => context.onProgress?.(done + (scoredAt[n] ?? docs.length)),
    });
    const scored = scores.map((score, k): ResultRow => {
      const i = scoredAt[k] as number;
      const base = {
        id: ids[i] ?? null,
        row: batch.rows[i] as number,
        status: score.status,
        error: score.error,
        tokens: score.tokens,
        source: 'local' as const,
        shardId: shard.id,
      };
      if (grouped) {
        // Several questions or a multi-label one: the answers carry the labels and scores; a routed question starts
        // with its local opinion.
        const answers = score.answers ?? questions.map(() => unanswered);
        return {
          ...base,
          label: null,
          confidence: null,
          margin: null,
          entropy: null,
          probabilities: null,
          answers: answers.map((answer, q) =>
            resultQuestions[q]?.routed === true
              ? {
                  ...answer,
                  source: 'local' as const,
                  localLabel: answer.label,
                  ...('labels' in answer ? { localLabels: answer.labels } : {}),
                  fallback: null,
                }
              : answer,
          ),
        };
      }
      return {
        ...base,
        label: score.label,
        confidence: score.confidence,
        margin: score.margin,
        entropy: score.entropy,
        probabilities: score.probabilities,
        localLabel: score.label,
        fallback: null,
        ...(score.labelMass !== null ? { labelMass: score.labelMass } : {}),
      };
    });
    // Per read batch, so document texts are held for one batch only; copies are not routed (asked once, copied).
    const resolved =
      context.fallback === undefined
        ? scored
        : await context.fallback.resolve(scored, unique, {
            shardId: shard.id,
            ...(context.signal ? { signal: context.signal } : {}),
          });
    let next = 0;
    copyOf.forEach((original, i) => {
      const row =
        original === null
          ? (resolved[next++] as ResultRow)
          : copiedRow(rows[original] as ResultRow, ids[i] ?? null, batch.rows[i] as number);
      statuses[row.status] = (statuses[row.status] ?? 0) + 1;
      // Per routed question with several questions.
      for (const outcome of row.answers?.map((answer) => answer.fallback) ?? [row.fallback]) {
        const status = outcome?.status;
        if (status !== undefined) fallbackStatuses[status] = (fallbackStatuses[status] ?? 0) + 1;
      }
      if (original !== null) duplicates += 1;
      tokens += row.tokens;
      rows.push(row);
    });
  }
  const expected = shard.rowEnd - shard.rowStart;
  if (rows.length !== expected) {
    throw new RescaleError(
      'INPUT_INVALID',
      `shard ${shard.id} of ${shard.file} yielded ${rows.length} rows, expected ${expected}; the file may have ` +
        'changed since planning — re-run to re-plan',
    );
  }
  context.signal?.throwIfAborted();
  const path = await writeShardResult({
    dir: job.resultDir,
    shard,
    labels: grouped ? [] : (resultQuestions[0]?.labels ?? []),
    ...(grouped ? { questions: resultQuestions } : {}),
    idType: job.idType,
    rows,
  });
  const seconds = (performance.now() - started) / 1000;
  logger.log('info', 'shard done', {
    rows: rows.length,
    tokens,
    seconds: Number(seconds.toFixed(3)),
    statuses,
    ...(context.fallback ? { fallbackStatuses } : {}),
    duplicates,
  });
  return {
    shardId: shard.id,
    skipped: false,
    rows: rows.length,
    statuses,
    fallbackStatuses,
    duplicates,
    tokens,
    seconds,
    path,
  };
}

/**
 * A copy's row: the original's results (every question's) and both opinions, bit for bit, under the copy's id and
 * row; no tokens were evaluated for it.
 */
function copiedRow(original: ResultRow, id: DocumentId | null, row: number): ResultRow {
  return { ...original, id, row, tokens: 0, duplicateOf: original.row };
}
