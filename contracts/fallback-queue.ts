// The contract of cluster mode's fallback over Redis: each run with an active fallback has its own BullMQ queue of
// routed documents (one job per document, id = shard id + row, so a shard that runs again finds its documents'
// jobs instead of making new ones). Shard workers add jobs and wait for their outcomes; the coordinator — the only
// process that holds the API key — answers them under the run's global limits: a Redis token bucket per endpoint
// counts every HTTP attempt (requests and tokens per minute), and a Redis ledger per run holds the hard budget.
// A job the coordinator cannot answer fails with a structured FallbackJobFailure, classified here once.

import { z } from 'zod';
import { errorMessage, isRescaleError, RescaleError, type ErrorCode } from './errors.js';
import { FALLBACK_STATUSES, type FallbackOutcome } from './results.js';
import { QUEUE_PREFIX } from './shard-queue.js';

/** The BullMQ queue of one run's routed documents (keys `rescale:fallback-<runId>:*`). */
export function fallbackQueueName(runId: string): string {
  return `fallback-${runId}`;
}

/** Job id of a routed document: unique within its run's queue, the same every time the shard runs. */
export function fallbackJobId(shardId: string, row: number): string {
  return `${shardId}-${row}`;
}

export const fallbackKeys = Object.freeze({
  /** HASH spent, open, requests, exhausted: the run's budget ledger in nano-USD (FallbackBudget over Redis). */
  budget: (runId: string) => `${QUEUE_PREFIX}:run:${runId}:fallback:budget`,
  /** HASH reservation id → "nanoUsd:epochMs": open reservations of the run's budget. */
  reservations: (runId: string) => `${QUEUE_PREFIX}:run:${runId}:fallback:reservations`,
  /** HASH requests, tokens, at, paused_until: the token buckets of one endpoint + model, shared by every run. */
  rate: (endpointKey: string) => `${QUEUE_PREFIX}:fallback-rate:${endpointKey}`,
});

/** Completed fallback jobs are kept this long (a shard that runs again reads them); the run's end removes them. */
export const FALLBACK_JOB_KEEP_SECONDS = 24 * 3600;

const documentSchema = z.strictObject({
  text: z.string().nullable(),
  columns: z.record(z.string(), z.string().nullable()).optional(),
});

const fallbackJobDataSchema = z.strictObject({
  runId: z.string().min(1),
  shardId: z.string().min(1),
  /** Row index in the shard's input file. */
  row: z.number().int().nonnegative(),
  /** The document's id as text (audit log), or null when the row index is the id. */
  documentId: z.string().nullable(),
  document: documentSchema,
  /**
   * A codebook asked by question (several questions, or a multi-label one): the document's unsure questions, by index
   * in codebook order, asked in one request; the job's result is then a QuestionOutcomesResult. Absent: one question.
   */
  questions: z.array(z.number().int().nonnegative()).min(1).optional(),
});
export type FallbackJobData = z.infer<typeof fallbackJobDataSchema>;

const fallbackOutcomeSchema = z.strictObject({
  status: z.enum(FALLBACK_STATUSES),
  label: z.string().nullable(),
  labels: z.array(z.string()).nullable().optional(),
  confidence: z.number().nullable(),
  error: z.string().nullable(),
});

const questionOutcomesSchema = z.strictObject({
  questions: z.array(z.tuple([z.number().int().nonnegative(), fallbackOutcomeSchema])),
});

/** A job's result when it asked questions: each asked question's index and outcome. */
export type QuestionOutcomesResult = { readonly questions: readonly (readonly [number, FallbackOutcome])[] };

function parseWith<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues
    .map((issue) => `${issue.path.join('.') || '(top level)'}: ${issue.message}`)
    .join('; ');
  throw new RescaleError(
    'INTERNAL',
    `${what} in Redis is malformed (${issues}); was it written by another rescale version?`,
  );
}

export function parseFallbackJobData(value: unknown): FallbackJobData {
  return parseWith(fallbackJobDataSchema, value, 'fallback job data');
}

/** A job result as BullMQ hands it back: the value, or its JSON text. */
function jobResult(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value) as unknown;
  } catch (cause) {
    throw new RescaleError('INTERNAL', 'a fallback job result in Redis is not JSON', { cause });
  }
}

/** An outcome as parsed, without an absent `labels` key (a single-label question's outcome has none). */
function toOutcome(parsed: z.infer<typeof fallbackOutcomeSchema>): FallbackOutcome {
  const { labels, ...outcome } = parsed;
  return labels === undefined ? outcome : { ...outcome, labels };
}

export function parseFallbackOutcome(value: unknown): FallbackOutcome {
  return toOutcome(parseWith(fallbackOutcomeSchema, jobResult(value), 'fallback job result'));
}

/** The outcomes of a job that asked questions, by question index. */
export function parseQuestionOutcomes(value: unknown): Map<number, FallbackOutcome> {
  const parsed = parseWith(questionOutcomesSchema, jobResult(value), 'fallback job result');
  return new Map(parsed.questions.map(([q, outcome]) => [q, toOutcome(outcome)]));
}

/**
 * Why the coordinator could not answer a document job, as the failed job carries it (BullMQ's failedReason, as JSON)
 * to the shard waiting on it.
 */
export interface FallbackJobFailure {
  readonly code: ErrorCode;
  /** Names what to fix; never the API key or document text. */
  readonly message: string;
  /** The run cannot go on (a refused key, an unknown model, an unwritable cache): the coordinator fails it. */
  readonly stopsRun: boolean;
  /** No retry of the shard can help (the run stops, or is no longer running): the shard fails without retries. */
  readonly final: boolean;
}

const fallbackJobFailureSchema = z.strictObject({
  code: z.string().min(1),
  message: z.string(),
  stopsRun: z.boolean(),
  final: z.boolean(),
});

/**
 * The one place that decides what a fallback error means for the run: an error no retry can fix stops it, and so
 * does an unwritable cache although it is retryable (answers paid for could not be kept, so no more are bought).
 * An abort (the run is no longer running) stops nothing more, but its shard is not retried either. Anything else
 * (Redis, a lost connection, an unknown error) is tried again by the shard.
 */
export function fallbackJobFailure(error: unknown): FallbackJobFailure {
  if (!isRescaleError(error)) return { code: 'INTERNAL', message: errorMessage(error), stopsRun: false, final: false };
  const stopsRun = error.code !== 'ABORTED' && (!error.retryable || error.code === 'OUTPUT_NOT_WRITABLE');
  return { code: error.code, message: error.message, stopsRun, final: stopsRun || error.code === 'ABORTED' };
}

/** The failure as a failed job's reason. */
export function encodeFallbackJobFailure(failure: FallbackJobFailure): string {
  return JSON.stringify(failure);
}

/**
 * A failed job's reason read back; null when it is not one the coordinator wrote (BullMQ failed the job itself,
 * e.g. it stalled too often), which the shard treats as retryable.
 */
export function parseFallbackJobFailure(reason: string): FallbackJobFailure | null {
  let json: unknown;
  try {
    json = JSON.parse(reason);
  } catch {
    return null;
  }
  const parsed = fallbackJobFailureSchema.safeParse(json);
  return parsed.success ? { ...parsed.data, code: parsed.data.code as ErrorCode } : null;
}
