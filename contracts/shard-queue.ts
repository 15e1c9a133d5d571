// The contract between the coordinator and cluster workers over Redis: queue name and settings, key layout,
// what a shard job carries and returns, the run spec workers read, worker registrations and control messages.
// Every value read from Redis is parsed here at the edge; nothing else knows the key names.

import { z } from 'zod';
import { RescaleError } from './errors.js';
import { ID_TYPES, ROW_STATUSES } from './results.js';

/** BullMQ queue name and key prefix: jobs live under `rescale:shards:*`. */
export const SHARD_QUEUE_NAME = 'shards';
export const QUEUE_PREFIX = 'rescale';

/**
 * Queue settings, measured with bullmq 6.7 / Redis 7 (see docs/cluster.md):
 * - A worker renews its lock every lockRenewMs while its event loop runs, so the lock only has to outlive the
 *   longest event-loop stall (a row-group decode: a few seconds), never a whole shard: shards of any length are
 *   fine. A SIGKILLed worker's shard is requeued by another worker's stall check within lockDurationMs +
 *   stalledIntervalMs (≤ 25 s) instead of the 44–73 s of the defaults.
 * - maxStalledCount 5 instead of 1: with 1, a shard whose worker dies twice (preemption, node loss) goes to
 *   failed with attempts left. A shard that kills every worker still fails after 6 deaths.
 * - attempts with exponential backoff apply to errors thrown by a shard; non-retryable errors fail at once.
 * - completed jobs are kept a day (visibility, and a re-submitted run sees them); failed jobs are kept until
 *   retried, so failures stay visible.
 */
export const SHARD_QUEUE_SETTINGS = Object.freeze({
  lockDurationMs: 20_000,
  lockRenewMs: 5_000,
  stalledIntervalMs: 5_000,
  maxStalledCount: 5,
  attempts: 5,
  backoffDelayMs: 5_000,
  keepCompletedSeconds: 24 * 3600,
});

/** Seconds a worker registration lives without a heartbeat; heartbeats come every WORKER_HEARTBEAT_MS. */
export const WORKER_TTL_MS = 30_000;
export const WORKER_HEARTBEAT_MS = 5_000;

export const clusterKeys = Object.freeze({
  /** ZSET run id → creation time (ms). */
  runs: `${QUEUE_PREFIX}:runs`,
  /** HASH: state, timestamps, counters, error, merge summary. */
  run: (runId: string) => `${QUEUE_PREFIX}:run:${runId}`,
  /** STRING: the RunSpec as JSON; written once at submit. */
  runSpec: (runId: string) => `${QUEUE_PREFIX}:run:${runId}:spec`,
  /** STRING: the ShardPlan as JSON; read by the coordinator only. */
  runPlan: (runId: string) => `${QUEUE_PREFIX}:run:${runId}:plan`,
  /** SET of shard ids whose result file is written. */
  runDone: (runId: string) => `${QUEUE_PREFIX}:run:${runId}:done`,
  /** HASH shard id → failure reason, for shards that used up their attempts. */
  runFailed: (runId: string) => `${QUEUE_PREFIX}:run:${runId}:failed`,
  /** HASH engine key → EngineReport JSON: one entry per distinct engine that scored shards of the run. */
  runEngines: (runId: string) => `${QUEUE_PREFIX}:run:${runId}:engines`,
  /** ZSET worker id → last heartbeat (ms). */
  workers: `${QUEUE_PREFIX}:workers`,
  /** STRING: the WorkerRecord as JSON, expiring WORKER_TTL_MS after the last heartbeat. */
  worker: (workerId: string) => `${QUEUE_PREFIX}:worker:${workerId}`,
  /** Pub/sub channel for ControlMessage (cancel). */
  control: `${QUEUE_PREFIX}:control`,
  /** STRING: id of the last queue event the coordinator handled, so a restarted coordinator resumes there. */
  lastEvent: `${QUEUE_PREFIX}:coordinator:last-event`,
});

export const RUN_STATES = ['running', 'merging', 'succeeded', 'failed', 'cancelled'] as const;
export type RunState = (typeof RUN_STATES)[number];
export const TERMINAL_RUN_STATES: readonly RunState[] = ['succeeded', 'failed', 'cancelled'];

const shardSpecSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9_-]+$/, 'shard ids are safe as file names and BullMQ job ids (no ":")'),
  index: z.number().int().nonnegative(),
  file: z.string().min(1),
  fingerprint: z.string().min(1),
  rowStart: z.number().int().nonnegative(),
  rowEnd: z.number().int().nonnegative(),
  corpusRowStart: z.number().int().nonnegative(),
});

const shardJobDataSchema = z.strictObject({ runId: z.string().min(1), shard: shardSpecSchema });
export type ShardJobData = z.infer<typeof shardJobDataSchema>;

const engineSchema = z.strictObject({
  nodeLlamaCpp: z.string(),
  llamaCpp: z.string(),
  llamaBuild: z.string(),
  gpu: z.union([z.string(), z.literal(false)]),
  settings: z.record(z.string(), z.unknown()).optional(),
});
/** What a worker reports about the engine that scored a shard (the manifest's `software.engines`). */
export type EngineReport = z.infer<typeof engineSchema>;

const shardJobResultSchema = z.strictObject({
  runId: z.string(),
  shardId: z.string(),
  rows: z.number().int().nonnegative(),
  /** The result file already existed: a duplicate delivery, nothing recomputed. */
  skipped: z.boolean(),
  seconds: z.number().nonnegative(),
  tokens: z.number().int().nonnegative(),
  statuses: z.partialRecord(z.enum(ROW_STATUSES), z.number().int().nonnegative()),
  workerId: z.string(),
  /** Null when skipped: the engine that wrote the file is not known. */
  engine: engineSchema.nullable(),
});
export type ShardJobResult = z.infer<typeof shardJobResultSchema>;

const runSpecSchema = z.strictObject({
  runId: z.string(),
  task: z.string(),
  /** Absolute path of the codebook, and its text as the coordinator read it (workers parse the same text). */
  codebookPath: z.string(),
  codebookText: z.string(),
  codebookHash: z.string(),
  /** Documents decoded together, resolved at submit (never "auto"), so the batch layout is the same on every worker. */
  sequences: z.number().int().positive(),
  /** Identical prompt inputs of a shard scored once (`--no-dedupe`: false). Absent in older specs: true. */
  dedupe: z.boolean().optional(),
  shardRows: z.number().int().positive(),
  limit: z.number().int().positive().nullable(),
  inputs: z.array(z.string()),
  output: z.string(),
  /**
   * outputLayout(output).shardDir (storage/output-layout.ts): where workers write shard result files (shared
   * filesystem).
   */
  resultDir: z.string(),
  idColumn: z.string().nullable(),
  idType: z.enum(ID_TYPES),
  textColumn: z.string(),
  totalShards: z.number().int().nonnegative(),
  totalRows: z.number().int().nonnegative(),
  createdAt: z.string(),
  /**
   * The closed-model fallback as decided at submit: off (and why), or on — workers route unsure documents to the
   * run's fallback queue, the coordinator answers them (contracts/fallback-queue.ts). Absent in older specs: off.
   */
  fallback: z
    .discriminatedUnion('active', [
      z.strictObject({ active: z.literal(false), reason: z.string() }),
      z.strictObject({
        active: z.literal(true),
        mode: z.enum(['live', 'offline']),
        cacheDir: z.string(),
        auditFile: z.string(),
        /**
         * fallbackIdentity of the fallback as resolved at submit (its endpoint's URL included), which workers mix
         * into the codebook hash: they cannot resolve an endpoint name themselves. Absent in older specs: workers
         * compute it from the codebook.
         */
        identity: z.string().optional(),
      }),
    ])
    .optional(),
});
export type RunSpec = z.infer<typeof runSpecSchema>;

const workerRecordSchema = z.strictObject({
  id: z.string(),
  host: z.string(),
  pid: z.number().int(),
  cpus: z.number().int(),
  cpuModel: z.string(),
  gpu: z.union([z.string(), z.literal(false)]).nullable(),
  state: z.enum(['starting', 'idle', 'loading', 'busy', 'stopping']),
  model: z.string().nullable(),
  runId: z.string().nullable(),
  shardId: z.string().nullable(),
  shardsDone: z.number().int().nonnegative(),
  documentsDone: z.number().int().nonnegative(),
  startedAt: z.string(),
  heartbeatAt: z.string(),
  version: z.string(),
});
export type WorkerRecord = z.infer<typeof workerRecordSchema>;

const controlMessageSchema = z.strictObject({ type: z.literal('cancel'), runId: z.string() });
export type ControlMessage = z.infer<typeof controlMessageSchema>;

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

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw new RescaleError('INTERNAL', `${what} in Redis is not JSON`, { cause });
  }
}

export function parseShardJobData(value: unknown): ShardJobData {
  return parseWith(shardJobDataSchema, value, 'shard job data');
}

export function parseShardJobResult(value: unknown): ShardJobResult {
  return parseWith(
    shardJobResultSchema,
    typeof value === 'string' ? parseJson(value, 'shard job result') : value,
    'shard job result',
  );
}

export function parseRunSpec(text: string): RunSpec {
  return parseWith(runSpecSchema, parseJson(text, 'run spec'), 'run spec');
}

export function parseWorkerRecord(text: string): WorkerRecord {
  return parseWith(workerRecordSchema, parseJson(text, 'worker record'), 'worker record');
}

export function parseControlMessage(text: string): ControlMessage {
  return parseWith(controlMessageSchema, parseJson(text, 'control message'), 'control message');
}
