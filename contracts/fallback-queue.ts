// The contract of cluster mode's fallback over Redis: each run with an active fallback has its own BullMQ queue of
// routed documents (one job per document, id = shard id + row, so a shard that runs again finds its documents'
// jobs instead of making new ones). Shard workers add jobs and wait for their outcomes; the coordinator — the only
// process that holds the API key — answers them under the run's global limits: a Redis token bucket per endpoint
// counts every HTTP attempt (requests and tokens per minute), and a Redis ledger per run holds the hard budget.

import { z } from 'zod';
import { RescaleError } from './errors.js';
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
});
export type FallbackJobData = z.infer<typeof fallbackJobDataSchema>;

const fallbackOutcomeSchema = z.strictObject({
  status: z.enum(FALLBACK_STATUSES),
  label: z.string().nullable(),
  confidence: z.number().nullable(),
  error: z.string().nullable(),
});

function parseWith<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(top level)'}: ${issue.message}`).join('; ');
  throw new RescaleError('INTERNAL', `${what} in Redis is malformed (${issues}); was it written by another rescale version?`);
}

export function parseFallbackJobData(value: unknown): FallbackJobData {
  return parseWith(fallbackJobDataSchema, value, 'fallback job data');
}

export function parseFallbackOutcome(value: unknown): FallbackOutcome {
  let parsed = value;
  if (typeof value === 'string') {
    try {
      parsed = JSON.parse(value) as unknown;
    } catch (cause) {
      throw new RescaleError('INTERNAL', 'a fallback job result in Redis is not JSON', { cause });
    }
  }
  return parseWith(fallbackOutcomeSchema, parsed, 'fallback job result');
}
