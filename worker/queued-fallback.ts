// The fallback as a cluster worker's shard path sees it: routing is decided here, on the worker, from the local
// scores; each routed document becomes a job on the run's fallback queue, answered by the coordinator (which holds
// the API key and the run's global limits); the worker waits for the outcomes and writes both opinions, exactly as
// local mode does. A shard that runs again (retry, preemption) finds its documents' jobs by id: nothing is asked
// twice, and answers already given are read back.

import { Job, Queue, QueueEvents } from 'bullmq';
import type { Closeable } from '../contracts/closeable.js';
import type { FallbackConfig } from '../contracts/fallback-config.js';
import {
  fallbackJobId,
  fallbackQueueName,
  parseFallbackJobFailure,
  parseFallbackOutcome,
  parseQuestionOutcomes,
  FALLBACK_JOB_KEEP_SECONDS,
  type FallbackJobData,
} from '../contracts/fallback-queue.js';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import { silentLogger, type Logger } from '../contracts/logger.js';
import { redisError, redisOptions, type RedisTarget } from '../contracts/redis-connection.js';
import type { FallbackOutcome, ResultRow } from '../contracts/results.js';
import { QUEUE_PREFIX } from '../contracts/shard-queue.js';
import type { ShardFallback, ShardFallbackContext } from '../contracts/shard-fallback.js';
import type { DocumentInput } from '../contracts/document-input.js';
import type { Question } from '../contracts/codebook.js';
import {
  asksByQuestion,
  documentIdText,
  routedRows,
  withFallbackOutcome,
  withoutFallback,
  withQuestionOutcomes,
} from '../fallback/routing.js';

/** Jobs added per Redis round trip burst. */
const BATCH = 500;
/** How long one wait for a job's finish event lasts before its state is read again. */
const WAIT_SLICE_MS = 30_000;

export class QueuedFallback implements ShardFallback, Closeable {
  private constructor(
    readonly runId: string,
    private readonly config: FallbackConfig,
    /** A codebook asked by question (several questions, or a multi-label one): its questions; else null. */
    private readonly questions: readonly Question[] | null,
    private readonly queue: Queue<FallbackJobData, unknown>,
    private readonly events: QueueEvents,
  ) {}

  /**
   * Opens the run's fallback queue and its event reader and waits until both answer. BullMQ waits for Redis
   * forever, so the wait is bounded (`timeoutMs`, `signal`); on any failure both are force-closed before the
   * error is thrown, since a graceful close of a never-connected event reader waits for Redis forever too.
   */
  static async open(
    target: RedisTarget,
    runId: string,
    config: FallbackConfig,
    options: QueuedFallbackOptions = {},
  ): Promise<QueuedFallback> {
    const logger = options.logger ?? silentLogger;
    const timeoutMs = options.timeoutMs ?? 60_000;
    const name = fallbackQueueName(runId);
    let lastError: unknown;
    const opened: (Queue | QueueEvents)[] = [];
    try {
      const queue = new Queue<FallbackJobData, unknown>(name, {
        connection: redisOptions(target, { blocking: false, name: `rescale-worker-fallback-${runId}` }),
        prefix: QUEUE_PREFIX,
        defaultJobOptions: {
          removeOnComplete: { age: FALLBACK_JOB_KEEP_SECONDS },
          removeOnFail: { age: FALLBACK_JOB_KEEP_SECONDS },
        },
      });
      opened.push(queue);
      queue.on('error', (error) => {
        lastError = error;
        logger.log('warn', 'fallback queue error', { runId, error: error.message });
      });
      const events = new QueueEvents(name, {
        connection: redisOptions(target, { blocking: true, name: `rescale-worker-fallback-events-${runId}` }),
        prefix: QUEUE_PREFIX,
      });
      opened.push(events);
      events.on('error', (error) => {
        lastError = error;
        logger.log('warn', 'fallback queue event reader error', { runId, error: error.message });
      });
      await readyWithin(Promise.all([queue.waitUntilReady(), events.waitUntilReady()]), timeoutMs, options.signal, () =>
        redisError(target, lastError ?? new Error('no answer'), timeoutMs),
      );
      const questions = options.questions ?? [];
      return new QueuedFallback(runId, config, asksByQuestion({ questions }) ? questions : null, queue, events);
    } catch (error) {
      await forceClose(opened);
      throw error;
    }
  }

  async resolve(
    rows: readonly ResultRow[],
    docs: readonly DocumentInput[],
    context: ShardFallbackContext,
  ): Promise<ResultRow[]> {
    const out = withoutFallback(rows);
    // Each routed document, with its unsure questions when the codebook is asked by question.
    const routed = routedRows(this.config, this.questions, rows).filter(({ index }) => docs[index] !== undefined);
    if (routed.length === 0) return out;
    const { shardId, signal } = context;
    const jobs = routed.map(({ index, asked }) => {
      const row = rows[index] as ResultRow;
      const doc = docs[index] as DocumentInput;
      const data: FallbackJobData = {
        runId: this.runId,
        shardId,
        row: row.row,
        documentId: documentIdText(row.id),
        document:
          doc.columns === undefined
            ? { text: doc.text }
            : {
                text: doc.text,
                columns: Object.fromEntries(Object.entries(doc.columns).map(([k, v]) => [k, v ?? null])),
              },
        ...(asked === null ? {} : { questions: asked }),
      };
      return { name: 'document', data, opts: { jobId: fallbackJobId(shardId, row.row) } };
    });
    // Ids that exist already are left as they are (answered, or being answered); failed ones are tried again.
    for (let i = 0; i < jobs.length; i += BATCH) await this.queue.addBulk(jobs.slice(i, i + BATCH));
    await Promise.all(
      jobs.map(async ({ opts }) => {
        if ((await this.queue.getJobState(opts.jobId)) !== 'failed') return;
        await (await Job.fromId(this.queue, opts.jobId))?.retry('failed');
      }),
    );

    const aborted = new Promise<never>((_, reject) => {
      if (signal === undefined) return;
      const onAbort = (): void => reject(signal.reason ?? new RescaleError('ABORTED', 'shard aborted'));
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => undefined);
    const results = await Promise.race([Promise.all(jobs.map(({ opts }) => this.outcome(opts.jobId))), aborted]);
    routed.forEach(({ index, asked }, k) => {
      const row = rows[index] as ResultRow;
      out[index] =
        asked === null
          ? withFallbackOutcome(row, parseFallbackOutcome(results[k]))
          : withQuestionOutcomes(row, questionOutcomes(results[k], asked, fallbackJobId(shardId, row.row)));
    });
    return out;
  }

  /**
   * Waits for one job's outcome in slices: each slice first reads the job's state (so a finish whose event was
   * missed or trimmed from the stream is still seen), then waits for its event. A job that vanished (the run's queue
   * was removed) is a retryable error, never an endless wait.
   */
  private async outcome(jobId: string): Promise<unknown> {
    for (;;) {
      // State first, then the job: a job read before it completed would carry no return value yet.
      const state = await this.queue.getJobState(jobId);
      const job = await Job.fromId(this.queue, jobId);
      if (job === undefined)
        throw new RescaleError(
          'INTERNAL',
          `fallback job ${jobId} vanished from the queue (the run's queue was removed?); the shard will be retried`,
          { retryable: true },
        );
      if (state === 'completed') return job.returnvalue;
      if (state === 'failed') throw failureOf(jobId, job.failedReason);
      try {
        return await job.waitUntilFinished(this.events, WAIT_SLICE_MS);
      } catch (error) {
        const message = errorMessage(error);
        if (/timed out before finishing/.test(message)) continue;
        throw failureOf(jobId, message);
      }
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.events.close(), this.queue.close()]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

export interface QueuedFallbackOptions {
  readonly logger?: Logger;
  /**
   * The codebook's questions: with several, or a multi-label one, each routed document's job names its unsure
   * questions and the coordinator answers them in one request. Absent: one single-label question.
   */
  readonly questions?: readonly Question[];
  /** Give up opening when Redis has not answered for this long (default 60 s): a retryable SERVICE_UNAVAILABLE. */
  readonly timeoutMs?: number;
  /** Aborts the opening (the worker is stopping); the open rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/**
 * A job's per-question outcomes, checked to answer exactly the questions asked (a job left from a run of another
 * codebook under the same id would not).
 */
function questionOutcomes(result: unknown, asked: readonly number[], jobId: string): Map<number, FallbackOutcome> {
  const outcomes = parseQuestionOutcomes(result);
  if (outcomes.size !== asked.length || asked.some((q) => !outcomes.has(q))) {
    throw new RescaleError(
      'INTERNAL',
      `fallback job ${jobId} answered questions ${[...outcomes.keys()].join(', ')}, not the asked ${asked.join(', ')}`,
    );
  }
  return outcomes;
}

/** Waits for `ready`, or rejects when `timeoutMs` passes (with `timedOut()`) or `signal` aborts (with its reason). */
async function readyWithin(
  ready: Promise<unknown>,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  timedOut: () => Error,
): Promise<void> {
  ready.catch(() => undefined); // a rejection after the deadline has nobody left to hear it
  const timer = AbortSignal.timeout(timeoutMs);
  const deadline = signal === undefined ? timer : AbortSignal.any([timer, signal]);
  let onAbort = (): void => undefined;
  const stopped = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal?.aborted === true ? (signal.reason as unknown) : timedOut());
    if (deadline.aborted) onAbort();
    else deadline.addEventListener('abort', onAbort, { once: true });
  });
  try {
    await Promise.race([ready, stopped]);
  } finally {
    deadline.removeEventListener('abort', onAbort);
  }
}

/**
 * Disconnects queues and event readers that may never have connected. close() stops their loops (it may never
 * settle while Redis is away, so it is not awaited); the forced backend close drops the sockets and the
 * reconnect timers that would otherwise keep the process alive.
 */
async function forceClose(opened: readonly (Queue | QueueEvents)[]): Promise<void> {
  for (const item of opened) void item.close().catch(() => undefined);
  await Promise.allSettled(opened.map((item) => item.getBackend().close(true)));
}

/**
 * A failed fallback job as the shard's error: final when the coordinator's failure says so
 * (contracts/fallback-queue.ts).
 */
function failureOf(jobId: string, reason: string): RescaleError {
  const failure = parseFallbackJobFailure(reason);
  if (failure?.final === true) return new RescaleError(failure.code, failure.message);
  const detail = failure === null ? reason : `${failure.code}: ${failure.message}`;
  const message = `the fallback could not answer document job ${jobId} (${detail}); the shard will be retried`;
  return new RescaleError('INTERNAL', message, { retryable: true });
}
