// A cluster worker: takes shard jobs from the BullMQ queue and runs each through processShard, the same shard
// path local mode uses. The processor only translates (job data in → processShard → outcome, or a mapped error
// out); around it: a registration with heartbeat, cancel messages, a Redis watchdog, and a SIGTERM path that
// hands the active shard back to the queue at once.

import type { LlamaBuild } from '../contracts/environment.js';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { WaitingError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { RescaleError, errorMessage, isRescaleError } from '../contracts/errors.js';
import { fallbackIdentity } from '../contracts/fallback-config.js';
import { silentLogger, type Logger } from '../contracts/logger.js';
import { connectRedis, redisOptions, RedisWatchdog, type RedisTarget } from '../contracts/redis-connection.js';
import {
  clusterKeys,
  parseControlMessage,
  parseShardJobData,
  QUEUE_PREFIX,
  SHARD_QUEUE_NAME,
  SHARD_QUEUE_SETTINGS,
  type ShardJobData,
  type ShardJobResult,
} from '../contracts/shard-queue.js';
import { QueuedFallback } from './queued-fallback.js';
import { RowGroupCache } from '../storage/parquet-rows.js';
import { processShard, type ShardFallback, type ShardJob } from './process-shard.js';
import { toQueueError } from './queue-error.js';
import { RunSpecReader, type RunContext } from './run-spec-reader.js';
import { ScorerCache, type LoadedScorer, type ScorerProvider } from './scorer-cache.js';
import { assertShardDirWritable } from './shard-dir-check.js';
import { WorkerHeartbeat } from './worker-heartbeat.js';
import { WorkerMetrics } from './worker-metrics.js';

export interface ShardWorkerOptions {
  readonly redis: RedisTarget;
  readonly logger?: Logger;
  /** Prefix of the worker id (default: the host name); the id adds the pid and a random suffix. */
  readonly name?: string;
  /** CPU threads for llama.cpp (default: the codebook's, else all cores). */
  readonly threads?: number;
  readonly lockDurationMs?: number;
  readonly lockRenewMs?: number;
  readonly stalledIntervalMs?: number;
  readonly maxStalledCount?: number;
  /** How long close() waits for the active shard to go back to the queue (default 20 s). */
  readonly shutdownGraceMs?: number;
  /**
   * Redis unreachable this long (at start or later) → give up, so a scheduler can restart the worker (default 60 s).
   */
  readonly redisTimeoutMs?: number;
  /** Least time between two progress reports of a shard (default 2 s). */
  readonly progressIntervalMs?: number;
  /** Where scorers come from (default: a ScorerCache over llama.cpp). */
  readonly scorers?: ScorerProvider;
  /** llama.cpp build the default ScorerCache loads (the CLI passes RESCALE_LLAMA_BUILD, parsed; default auto). */
  readonly llamaBuild?: LlamaBuild;
  readonly metrics?: WorkerMetrics;
}

interface CompiledOptions {
  readonly redis: RedisTarget;
  readonly logger: Logger;
  readonly name: string;
  readonly threads: number | undefined;
  readonly lockDurationMs: number;
  readonly lockRenewMs: number;
  readonly stalledIntervalMs: number;
  readonly maxStalledCount: number;
  readonly shutdownGraceMs: number;
  readonly redisTimeoutMs: number;
  readonly progressIntervalMs: number;
}

function compileOptions(options: ShardWorkerOptions): CompiledOptions {
  const positive = (name: string, value: number | undefined, fallback: number): number => {
    const chosen = value ?? fallback;
    if (!Number.isFinite(chosen) || chosen <= 0)
      throw new RescaleError('CONFIG_INVALID', `worker option ${name} must be a positive number, got ${chosen}`);
    return chosen;
  };
  const lockDurationMs = positive('lockDurationMs', options.lockDurationMs, SHARD_QUEUE_SETTINGS.lockDurationMs);
  const lockRenewMs = positive(
    'lockRenewMs',
    options.lockRenewMs,
    Math.min(SHARD_QUEUE_SETTINGS.lockRenewMs, lockDurationMs / 4),
  );
  if (lockRenewMs >= lockDurationMs)
    throw new RescaleError(
      'CONFIG_INVALID',
      `worker option lockRenewMs (${lockRenewMs}) must be below lockDurationMs (${lockDurationMs})`,
    );
  return Object.freeze({
    redis: options.redis,
    logger: options.logger ?? silentLogger,
    name: (options.name ?? os.hostname()).replace(/[^A-Za-z0-9_.-]/g, '-'),
    threads: options.threads,
    lockDurationMs,
    lockRenewMs,
    stalledIntervalMs: positive('stalledIntervalMs', options.stalledIntervalMs, SHARD_QUEUE_SETTINGS.stalledIntervalMs),
    maxStalledCount: positive('maxStalledCount', options.maxStalledCount, SHARD_QUEUE_SETTINGS.maxStalledCount),
    shutdownGraceMs: positive('shutdownGraceMs', options.shutdownGraceMs, 20_000),
    redisTimeoutMs: positive('redisTimeoutMs', options.redisTimeoutMs, 60_000),
    progressIntervalMs: positive('progressIntervalMs', options.progressIntervalMs, 2_000),
  });
}

/** How close() ended: the active shard went back to the queue, there was none, or it did not let go in time. */
export type StopOutcome = 'requeued' | 'idle' | 'timeout';

interface ActiveShard {
  readonly runId: string;
  readonly shardId: string;
  /** Aborted when the shard's run is cancelled. */
  readonly cancel: AbortController;
  /** Aborted when the shard's lock was lost: the coordinator took this worker for dead and handed the shard back. */
  readonly lost: AbortController;
}

export class ShardWorker {
  private readonly worker: Worker<unknown, ShardJobResult>;
  private readonly runs: RunSpecReader;
  private readonly heartbeat: WorkerHeartbeat;
  private readonly watchdog: RedisWatchdog;
  private readonly rowGroups = new RowGroupCache();
  /** Shard folders this worker has written to (checked once per folder). */
  private readonly writableDirs = new Set<string>();
  /** Aborted by close(): the active shard stops at the next document and goes back to the queue. */
  private readonly stopping = new AbortController();
  private active: ActiveShard | null = null;
  /** The fallback queue of the run last worked on (routed documents go there; the coordinator answers them). */
  private fallback: QueuedFallback | null = null;
  private requeued = 0;
  private stopResult: Promise<StopOutcome> | null = null;
  private resolveLost: (code: number) => void = () => undefined;
  private lastErrorLog = 0;
  /** Resolves with a non-zero exit code if the worker gives up by itself (Redis unreachable past the bound). */
  readonly lost: Promise<number>;

  private constructor(
    readonly id: string,
    private readonly options: CompiledOptions,
    private readonly logger: Logger,
    private readonly redis: Redis,
    private readonly subscriber: Redis,
    private readonly scorers: ScorerProvider,
    readonly metrics: WorkerMetrics,
  ) {
    this.lost = new Promise((resolve) => (this.resolveLost = resolve));
    this.runs = new RunSpecReader(redis);
    this.heartbeat = new WorkerHeartbeat(redis, id, logger, () => this.checkCancelled());
    this.watchdog = new RedisWatchdog(options.redis, {
      timeoutMs: options.redisTimeoutMs,
      logger,
      onLost: (error) => {
        logger.log(
          'error',
          'giving up: redis unreachable for too long; exiting so the scheduler can restart this worker',
          { error: error.message },
        );
        void this.abandon().finally(() => this.resolveLost(9));
      },
    });
    this.worker = new Worker<unknown, ShardJobResult>(
      SHARD_QUEUE_NAME,
      (job, token, signal) => this.process(job, token, signal),
      {
        connection: redisOptions(options.redis, { blocking: true, name: `rescale-worker-${id}` }),
        prefix: QUEUE_PREFIX,
        name: id,
        autorun: false,
        concurrency: 1,
        lockDuration: options.lockDurationMs,
        lockRenewTime: options.lockRenewMs,
        stalledInterval: options.stalledIntervalMs,
        maxStalledCount: options.maxStalledCount,
      },
    );
    this.worker.on('error', (error) => this.logThrottled('bullmq worker error', error));
    this.worker.on('lockRenewalFailed', (jobIds) => {
      logger.log('warn', 'shard lock not renewed; another worker may take the shard over', { jobIds });
      // The lock belongs to someone else now (a token mismatch, not a Redis error): the shard is being done
      // elsewhere, so stop scoring it; the queue would refuse this worker's completion anyway.
      const active = this.active;
      if (active !== null && jobIds.includes(active.shardId) && !active.lost.signal.aborted)
        active.lost.abort(new RescaleError('ABORTED', `the lock of shard ${active.shardId} was lost`));
    });
  }

  /** Connects (bounded retries; a wrong password fails at once), registers and starts taking shards. */
  static async start(options: ShardWorkerOptions): Promise<ShardWorker> {
    const compiled = compileOptions(options);
    const id = `${compiled.name}-${process.pid}-${randomBytes(3).toString('hex')}`;
    const logger = compiled.logger.child({ workerId: id });
    const redis = await connectRedis(compiled.redis, {
      timeoutMs: compiled.redisTimeoutMs,
      logger,
      name: `rescale-worker-${id}`,
    });
    redis.on('error', () => undefined); // reported by the watchdog and the BullMQ worker
    const subscriber = redis.duplicate();
    subscriber.on('error', () => undefined);
    const metrics = options.metrics ?? new WorkerMetrics({ workerId: id });
    const scorers =
      options.scorers ??
      new ScorerCache({
        logger,
        build: options.llamaBuild ?? 'auto',
        ...(compiled.threads !== undefined ? { threads: compiled.threads } : {}),
        onModelLoad: () => metrics.modelLoads.inc(),
      });
    let worker: ShardWorker;
    try {
      worker = new ShardWorker(id, compiled, logger, redis, subscriber, scorers, metrics);
    } catch (error) {
      subscriber.disconnect();
      redis.disconnect();
      throw error;
    }
    try {
      await worker.begin();
    } catch (error) {
      await worker.abandon();
      throw error;
    }
    return worker;
  }

  private async begin(): Promise<void> {
    this.subscriber.on('message', (_channel: string, text: string) => this.onControl(text));
    await this.subscriber.subscribe(clusterKeys.control);
    await this.heartbeat.start();
    this.watchdog.start();
    void this.worker
      .run()
      .catch((error: unknown) => this.logger.log('error', 'bullmq worker loop ended', { error: errorMessage(error) }));
    await this.worker.waitUntilReady();
    this.heartbeat.update({ state: 'idle' });
    this.logger.log('info', 'worker ready', {
      redis: this.options.redis.display,
      host: os.hostname(),
      pid: process.pid,
      lockDurationMs: this.options.lockDurationMs,
      stalledIntervalMs: this.options.stalledIntervalMs,
      maxStalledCount: this.options.maxStalledCount,
    });
  }

  /**
   * The BullMQ processor: job data → processShard → the job's result; a thrown error goes through toQueueError
   * (or, when the worker is stopping, the shard goes back to the queue). The rest is bookkeeping (logs, metrics,
   * heartbeat).
   */
  private async process(
    job: Job<unknown, ShardJobResult>,
    token: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<ShardJobResult> {
    const cancel = new AbortController();
    const lost = new AbortController();
    let active: ActiveShard | null = null;
    try {
      const data = parseShardJobData(job.data);
      active = { runId: data.runId, shardId: data.shard.id, cancel, lost };
      this.active = active;
      const logger = this.logger.child({ runId: data.runId, shardId: data.shard.id, attempt: job.attemptsMade + 1 });
      logger.log('info', 'shard started');
      this.metrics.busy.set(1);
      const { shardJob, loaded, fallback } = await this.prepare(data);
      const progress = this.progressReporter(job, logger);
      const started = performance.now();
      const outcome = await processShard(shardJob, {
        scorer: loaded.scorer,
        logger,
        cache: this.rowGroups,
        ...(fallback !== undefined ? { fallback } : {}),
        signal: AbortSignal.any([
          cancel.signal,
          lost.signal,
          this.stopping.signal,
          ...(signal !== undefined ? [signal] : []),
        ]),
        onProgress: progress,
      });
      const seconds = (performance.now() - started) / 1000;
      this.recordOutcome(outcome.skipped, outcome.rows, seconds);
      this.metrics.fallbackDocuments.inc(outcome.fallbackStatuses.ok ?? 0);
      return {
        runId: data.runId,
        shardId: outcome.shardId,
        rows: outcome.rows,
        skipped: outcome.skipped,
        seconds: outcome.seconds,
        tokens: outcome.tokens,
        statuses: outcome.statuses,
        workerId: this.id,
        engine: outcome.skipped ? null : loaded.engine,
      };
    } catch (error) {
      if (lost.signal.aborted) {
        // Handed back by the coordinator (this worker looked dead): another worker has the shard.
        this.metrics.shards.inc({ outcome: 'lost' });
        this.logger.log('warn', 'shard dropped: its lock was lost to another worker', {
          runId: active?.runId,
          shardId: active?.shardId,
        });
        throw toQueueError(lost.signal.reason);
      }
      if (this.stopping.signal.aborted && !cancel.signal.aborted && token !== undefined) {
        // SIGTERM: hand the shard back now instead of leaving it to the stall check; no attempt is used up.
        await job.moveToWait(token);
        this.requeued += 1;
        this.metrics.shards.inc({ outcome: 'requeued' });
        this.logger.log('info', 'shard requeued for shutdown', { runId: active?.runId, shardId: active?.shardId });
        throw new WaitingError();
      }
      // Cancelled while running (signal), or found cancelled before starting (prepare).
      const cancelled = cancel.signal.aborted || (isRescaleError(error, 'ABORTED') && !this.stopping.signal.aborted);
      const reason = cancel.signal.aborted ? cancel.signal.reason : error;
      this.metrics.shards.inc({ outcome: cancelled ? 'cancelled' : 'failed' });
      this.logger.log(cancelled ? 'info' : 'error', cancelled ? 'shard stopped: run cancelled' : 'shard failed', {
        runId: active?.runId,
        shardId: active?.shardId,
        error: errorMessage(reason),
      });
      throw toQueueError(reason);
    } finally {
      this.active = null;
      this.metrics.busy.set(0);
      if (!this.stopping.signal.aborted) this.heartbeat.update({ state: 'idle', runId: null, shardId: null });
    }
  }

  /** The shard's job description and a scorer for its run (cached across shards). */
  private async prepare(
    data: ShardJobData,
  ): Promise<{ shardJob: ShardJob; loaded: LoadedScorer; fallback?: ShardFallback }> {
    const run = await this.runs.get(data.runId);
    const state = await this.runs.state(data.runId);
    // A failed run's queued shards wait for "rescale retry"; one that a worker picked up just as it failed is not
    // started.
    if (state === 'cancelled' || state === 'failed') throw cancelledError(data.runId, state);
    // Before the model load and the scoring: a folder this worker cannot write fails the shard at once, unretried.
    if (!this.writableDirs.has(run.spec.resultDir)) {
      await assertShardDirWritable(run.spec.resultDir, this.id);
      this.writableDirs.add(run.spec.resultDir);
    }
    this.heartbeat.update({
      state: this.scorers.loadedModel === run.codebook.model.path ? 'busy' : 'loading',
      runId: data.runId,
      shardId: data.shard.id,
    });
    const loaded = await this.scorers.scorerFor({
      codebook: run.codebook,
      codebookHash: run.spec.codebookHash,
      sequences: run.spec.sequences,
      dedupe: run.spec.dedupe ?? true,
      fallbackIdentity: runFallbackIdentity(run),
      // SIGTERM during a model load: abort the load and hand the shard back, instead of waiting for it.
      signal: this.stopping.signal,
    });
    this.heartbeat.update({ state: 'busy', model: this.scorers.loadedModel, gpu: loaded.engine.gpu });
    const { spec } = run;
    return {
      shardJob: {
        shard: data.shard,
        idColumn: spec.idColumn,
        idType: spec.idType,
        textColumn: spec.textColumn,
        resultDir: spec.resultDir,
        dedupe: spec.dedupe ?? true,
      },
      loaded,
      ...(spec.fallback?.active === true ? { fallback: await this.fallbackFor(data.runId, run.codebook) } : {}),
    };
  }

  private async fallbackFor(runId: string, codebook: RunContext['codebook']): Promise<QueuedFallback> {
    if (this.fallback?.runId === runId) return this.fallback;
    const config = codebook.fallback;
    if (config === null)
      throw new RescaleError('INTERNAL', `run ${runId} has the fallback on, but its codebook has no fallback section`);
    await this.fallback?.close();
    this.fallback = null;
    this.fallback = await QueuedFallback.open(this.options.redis, runId, config, {
      questions: codebook.questions,
      logger: this.logger,
      timeoutMs: this.options.redisTimeoutMs,
      signal: this.stopping.signal,
    });
    return this.fallback;
  }

  /** Reports the documents done in a shard to the queue (→ coordinator progress) at most every progressIntervalMs. */
  private progressReporter(job: Job<unknown, ShardJobResult>, logger: Logger): (documentsDone: number) => void {
    let last = 0;
    return (documentsDone) => {
      const now = performance.now();
      if (now - last < this.options.progressIntervalMs) return;
      last = now;
      job
        .updateProgress(documentsDone)
        .catch((error: unknown) => logger.log('debug', 'progress not reported', { error: errorMessage(error) }));
    };
  }

  private recordOutcome(skipped: boolean, rows: number, seconds: number): void {
    const status = this.heartbeat.status;
    if (skipped) {
      this.metrics.shards.inc({ outcome: 'skipped' });
      this.heartbeat.update({ shardsDone: status.shardsDone + 1 });
      return;
    }
    this.metrics.shards.inc({ outcome: 'done' });
    this.metrics.documents.inc(rows);
    this.metrics.shardSeconds.observe(seconds);
    if (seconds > 0) this.metrics.documentsPerSecond.set(rows / seconds);
    this.heartbeat.update({ shardsDone: status.shardsDone + 1, documentsDone: status.documentsDone + rows });
  }

  private onControl(text: string): void {
    try {
      const message = parseControlMessage(text);
      if (message.type === 'cancel') this.cancelIfActive(message.runId);
    } catch (error) {
      this.logger.log('warn', 'ignored a malformed control message', { error: errorMessage(error) });
    }
  }

  /** On every heartbeat: a cancel message missed while reconnecting is still noticed within seconds. */
  private async checkCancelled(): Promise<void> {
    const active = this.active;
    if (active === null) return;
    const state = await this.runs.state(active.runId);
    if (state === 'cancelled' || state === 'failed') this.cancelIfActive(active.runId);
  }

  private cancelIfActive(runId: string): void {
    const active = this.active;
    if (active === null || active.runId !== runId || active.cancel.signal.aborted) return;
    this.logger.log('info', 'run cancelled; stopping its shard', { runId, shardId: active.shardId });
    active.cancel.abort(cancelledError(runId));
  }

  private logThrottled(message: string, error: Error): void {
    const now = Date.now();
    if (now - this.lastErrorLog < 5_000) return;
    this.lastErrorLog = now;
    this.logger.log('warn', message, { error: error.message });
  }

  /**
   * Graceful close (SIGTERM, preemption, a failed start of the CLI's metrics server): takes no new shard,
   * interrupts the active one and moves it back to the queue for another worker, then deregisters and closes its
   * connections. Bounded by shutdownGraceMs; calling it again returns the same outcome.
   */
  close(reason: string): Promise<StopOutcome> {
    this.stopResult ??= this.stopGracefully(reason);
    return this.stopResult;
  }

  private async stopGracefully(reason: string): Promise<StopOutcome> {
    const active = this.active;
    this.logger.log('info', 'stopping', {
      reason,
      runId: active?.runId,
      shardId: active?.shardId,
      graceMs: this.options.shutdownGraceMs,
    });
    this.heartbeat.update({ state: 'stopping' });
    const closed = this.worker.close().then(() => true);
    this.stopping.abort(new RescaleError('ABORTED', `worker stopping (${reason})`));
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([
      closed,
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), this.options.shutdownGraceMs))),
    ]);
    clearTimeout(timer);
    if (!inTime) {
      this.logger.log(
        'error',
        'the active shard did not stop within the grace period; its lock will expire and another worker will take it',
        {
          runId: active?.runId,
          shardId: active?.shardId,
          graceMs: this.options.shutdownGraceMs,
        },
      );
    }
    await this.release(inTime);
    const outcome: StopOutcome = !inTime ? 'timeout' : this.requeued > 0 ? 'requeued' : 'idle';
    this.logger.log('info', 'stopped', { outcome });
    return outcome;
  }

  /** Immediate stop without requeueing (Redis lost, failed start). */
  private async abandon(): Promise<void> {
    this.stopping.abort(new RescaleError('ABORTED', 'worker abandoned'));
    await Promise.race([
      this.worker.close(true).catch(() => undefined),
      new Promise((resolve) => setTimeout(resolve, 2_000).unref()),
    ]);
    await this.release(false);
  }

  private async release(disposeEngine: boolean): Promise<void> {
    this.watchdog.close();
    await Promise.race([this.heartbeat.stop(), new Promise((resolve) => setTimeout(resolve, 2_000).unref())]);
    await this.fallback?.close();
    this.subscriber.disconnect();
    this.redis.disconnect();
    // A shard still running inside llama.cpp (timeout) must not have its context freed under it.
    if (disposeEngine) await this.scorers.dispose();
  }
}

function cancelledError(runId: string, state: 'cancelled' | 'failed' = 'cancelled'): RescaleError {
  return new RescaleError(
    'ABORTED',
    state === 'cancelled'
      ? `run ${runId} was cancelled`
      : `run ${runId} has failed; its shards wait for "rescale retry"`,
  );
}

/**
 * The identity of the run's fallback as the coordinator resolved it at submit (a named endpoint resolves only
 * there); older specs without it: computed from the codebook. Null when the fallback is off.
 */
function runFallbackIdentity(run: RunContext): string | null {
  const setting = run.spec.fallback;
  if (setting?.active !== true || run.codebook.fallback === null) return null;
  return setting.identity ?? fallbackIdentity(run.codebook.fallback);
}
