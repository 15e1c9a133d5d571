// The coordinator's core: plans submitted runs and queues their shards, follows queue events to record finished
// and failed shards, merges a run (exactly as local mode) once every shard is done, and answers status, cancel
// and retry. All state lives in Redis; a restarted coordinator recovers its runs and reconciles them with the queue.

import { createHash } from 'node:crypto';
import { access, constants, copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { parseCodebookText, singleQuestion } from '../contracts/codebook.js';
import { RescaleError, errorMessage, isRescaleError } from '../contracts/errors.js';
import { silentLogger, type Logger } from '../contracts/logger.js';
import { connectRedis, redisOptions, RedisWatchdog, type RedisTarget } from '../contracts/redis-connection.js';
import {
  clusterKeys,
  parseShardJobResult,
  parseWorkerRecord,
  QUEUE_PREFIX,
  SHARD_QUEUE_NAME,
  TERMINAL_RUN_STATES,
  WORKER_TTL_MS,
  type RunSpec,
  type RunState,
  type WorkerRecord,
} from '../contracts/shard-queue.js';
import type { ShardPlan, ShardSpec } from '../contracts/shard.js';
import { shardResultPath } from '../storage/shard-result-writer.js';
import { fallbackPathsFor, resolveFallback } from '../fallback/resolve-fallback.js';
import { RedisBudget } from '../fallback/redis-budget.js';
import { ShardQueue, type ShardJobState } from './bullmq-shard-queue.js';
import { FallbackService } from './fallback-service.js';
import { CoordinatorMetrics } from './coordinator-metrics.js';
import { manifestPathFor, mergeShards } from './merge.js';
import { buildManifest, DEFAULT_SHARD_ROWS, planRun } from './run-plan.js';
import { RunStore } from './run-store.js';

export interface SubmitRequest {
  /** Absolute paths, the same on the coordinator and every worker (shared filesystem). */
  readonly codebook: string;
  readonly inputs: readonly string[];
  readonly output: string;
  readonly shardRows?: number;
  readonly limit?: number;
  /** Documents decoded together; default the codebook's, and 1 for "auto" (so every worker lays out batches alike). */
  readonly sequences?: number;
  readonly overwrite?: boolean;
  /** Local labels only although the codebook enables the closed-model fallback. */
  readonly noFallback?: boolean;
  /** Fallback answers from the cache only (no key, no network); misses get over_budget. */
  readonly fallbackOffline?: boolean;
}

export interface SubmitResult {
  readonly runId: string;
  /** False when the run already existed (returned as is, or resumed if it had been cancelled or had failed). */
  readonly created: boolean;
}

export interface RunStatus {
  readonly runId: string;
  readonly state: RunState;
  readonly task: string;
  readonly codebook: string;
  readonly output: string;
  readonly shardsTotal: number;
  readonly shardsDone: number;
  readonly shardsActive: number;
  readonly shardsFailed: number;
  readonly documentsTotal: number;
  readonly documentsDone: number;
  readonly documentsPerSecond: number;
  /** Null while unknown (no rate yet). */
  readonly etaSeconds: number | null;
  readonly failures: readonly { readonly shardId: string; readonly reason: string }[];
  readonly createdAt: string;
  readonly finishedAt: string | null;
  readonly error: string | null;
  readonly manifest: string | null;
}

export interface RunCoordinatorOptions {
  readonly redis: RedisTarget;
  readonly logger?: Logger;
  /** Full reconciliation of running runs with the queue (default 30 s); queue events do the work in between. */
  readonly reconcileIntervalMs?: number;
  /** Redis unreachable this long → `lost` resolves (default 60 s). */
  readonly redisTimeoutMs?: number;
  /** Where the fallback's API key variable is looked up (default process.env): only the coordinator needs it. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

const MAX_FAILURES_LISTED = 20;
const LAST_EVENT_SAVE_MS = 250;
const RATE_WINDOW_MS = 60_000;

/** Documents done over time, for docs/s over the last minute (decaying to 0 when nothing moves). */
class RateMeter {
  private samples: [number, number][] = [];

  add(documents: number, now = Date.now()): void {
    this.samples.push([now, documents]);
    // Keep one sample older than the window as the baseline.
    while (this.samples.length > 2 && (this.samples[1] as [number, number])[0] < now - RATE_WINDOW_MS) this.samples.shift();
  }

  perSecond(now = Date.now()): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (first === undefined || last === undefined || first === last) return 0;
    const seconds = (now - first[0]) / 1000;
    return seconds >= 1 ? Math.max(0, last[1] - first[1]) / seconds : 0;
  }
}

/** In-memory view of a run in state running or merging; Redis holds the truth. */
interface ActiveRun {
  readonly spec: RunSpec;
  readonly plan: ShardPlan;
  readonly rowsOf: ReadonlyMap<string, number>;
  readonly done: Set<string>;
  readonly failed: Map<string, string>;
  /** Shards being processed → documents done in them so far. */
  readonly inFlight: Map<string, number>;
  rowsDone: number;
  readonly rate: RateMeter;
}

/** Run id: from the planned shards (corpus content, row ranges, codebook result hash) and the output path. */
export function runIdFor(plan: ShardPlan, output: string): string {
  const hash = createHash('sha256').update(plan.codebookHash).update('\0').update(output);
  for (const shard of plan.shards) hash.update('\0').update(shard.id);
  return `r${hash.digest('hex').slice(0, 15)}`;
}

export class RunCoordinator {
  readonly metrics: CoordinatorMetrics;
  /** Resolves with an error when Redis stayed unreachable past the bound. */
  readonly lost: Promise<RescaleError>;
  private readonly store: RunStore;
  private readonly runs = new Map<string, ActiveRun>();
  private readonly shardRun = new Map<string, string>();
  private serial: Promise<unknown> = Promise.resolve();
  private lastEventSavedAt = 0;
  private merges: Promise<unknown> = Promise.resolve();
  private readonly pendingMerges = new Set<Promise<unknown>>();
  private reconcileTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private resolveLost: (error: RescaleError) => void = () => undefined;
  private readonly watchdog: RedisWatchdog;
  private readonly fallbacks: FallbackService;

  private constructor(
    private readonly redis: Redis,
    private readonly queue: ShardQueue,
    private readonly events: QueueEvents,
    private readonly options: Required<Pick<RunCoordinatorOptions, 'reconcileIntervalMs' | 'redisTimeoutMs' | 'env'>> & { redis: RedisTarget },
    private readonly logger: Logger,
  ) {
    this.store = new RunStore(redis);
    this.fallbacks = new FallbackService({
      redis: options.redis,
      connection: redis,
      logger,
      env: options.env,
      isRunning: async (runId) => (await this.store.record(runId))?.state === 'running',
      onFatal: (runId, error) => void this.failRun(runId, error),
      onOutcome: (outcome) => {
        if (outcome.status === 'ok') this.metrics.fallbackDocuments.inc();
      },
    });
    this.lost = new Promise((resolve) => (this.resolveLost = resolve));
    this.metrics = new CoordinatorMetrics({
      shardCounts: () => this.queue.counts(),
      workerCount: async () => (await this.liveWorkerIds()).length,
      documentsPerSecond: () => [...this.runs.values()].reduce((sum, run) => sum + run.rate.perSecond(), 0),
      runsByState: () => {
        const merging = [...this.runs.values()].filter((run) => run.done.size === run.spec.totalShards).length;
        return { running: this.runs.size - merging, merging };
      },
    });
    this.watchdog = new RedisWatchdog(options.redis, {
      timeoutMs: options.redisTimeoutMs,
      logger,
      onLost: (error) => this.resolveLost(error),
    });
  }

  /** Connects (bounded retries), resumes the runs found in Redis and starts following queue events. */
  static async start(options: RunCoordinatorOptions): Promise<RunCoordinator> {
    const logger = options.logger ?? silentLogger;
    const redisTimeoutMs = options.redisTimeoutMs ?? 60_000;
    const redis = await connectRedis(options.redis, { timeoutMs: redisTimeoutMs, logger, name: 'rescale-coordinator' });
    redis.on('error', () => undefined); // the watchdog reports outages
    const lastEventId = (await redis.get(clusterKeys.lastEvent)) ?? undefined;
    const queue = new ShardQueue(options.redis, logger);
    const events = new QueueEvents(SHARD_QUEUE_NAME, {
      connection: redisOptions(options.redis, { blocking: true, name: 'rescale-coordinator-events' }),
      prefix: QUEUE_PREFIX,
      autorun: false,
      ...(lastEventId !== undefined ? { lastEventId } : {}),
    });
    const coordinator = new RunCoordinator(redis, queue, events, { redis: options.redis, reconcileIntervalMs: options.reconcileIntervalMs ?? 30_000, redisTimeoutMs, env: options.env ?? process.env }, logger);
    try {
      await coordinator.begin();
    } catch (error) {
      await coordinator.close();
      throw error;
    }
    return coordinator;
  }

  private async begin(): Promise<void> {
    this.followEvents();
    void this.events.run().catch((error: unknown) => this.logger.log('error', 'queue event reader stopped', { error: errorMessage(error) }));
    await this.events.waitUntilReady();
    await this.exclusive(() => this.recover());
    this.watchdog.start();
    this.scheduleReconcile();
  }

  // ---- queue events -------------------------------------------------------------------------------------

  private followEvents(): void {
    let lastErrorLog = 0;
    this.events.on('error', (error) => {
      if (Date.now() - lastErrorLog < 5_000) return;
      lastErrorLog = Date.now();
      this.logger.log('warn', 'queue event reader error', { error: error.message });
    });
    this.events.on('completed', ({ jobId, returnvalue }, id) => this.handle(id, () => this.onCompleted(jobId, returnvalue)));
    this.events.on('failed', ({ jobId, failedReason }, id) => this.handle(id, () => this.onFailed(jobId, failedReason)));
    this.events.on('active', ({ jobId }) => this.track(jobId, (run) => run.inFlight.set(jobId, 0)));
    this.events.on('progress', ({ jobId, data }) =>
      this.track(jobId, (run) => {
        if (typeof data !== 'number' || !run.inFlight.has(jobId)) return;
        run.inFlight.set(jobId, data);
        run.rate.add(run.rowsDone + sum(run.inFlight.values()));
      }),
    );
    this.events.on('waiting', ({ jobId, prev }) => {
      if (prev === 'active') this.track(jobId, (run) => run.inFlight.delete(jobId));
    });
    this.events.on('stalled', ({ jobId }) =>
      this.track(jobId, (run) => {
        run.inFlight.delete(jobId);
        this.metrics.stalls.inc();
        this.logger.log('warn', 'shard stalled (its worker died or froze); back in the queue', { runId: run.spec.runId, shardId: jobId });
      }),
    );
  }

  private track(shardId: string, update: (run: ActiveRun) => void): void {
    const runId = this.shardRun.get(shardId);
    const run = runId === undefined ? undefined : this.runs.get(runId);
    if (run !== undefined) update(run);
  }

  /**
   * Handles completion and failure events one at a time, and remembers the last one handled (at most every
   * LAST_EVENT_SAVE_MS: replaying a few events after a restart is harmless) so a restart resumes after it.
   */
  private handle(eventId: string, handler: () => Promise<void>): void {
    void this.exclusive(async () => {
      const end = this.metrics.eventSeconds.startTimer();
      try {
        await handler();
        if (Date.now() - this.lastEventSavedAt >= LAST_EVENT_SAVE_MS) {
          this.lastEventSavedAt = Date.now();
          await this.redis.set(clusterKeys.lastEvent, eventId);
        }
      } catch (error) {
        // Reconciliation repairs what a failed handler missed.
        this.logger.log('warn', 'queue event not handled; reconciliation will catch up', { eventId, error: errorMessage(error) });
      } finally {
        end();
      }
    });
  }

  private async onCompleted(shardId: string, returnvalue: unknown): Promise<void> {
    let result;
    try {
      result = parseShardJobResult(returnvalue);
    } catch (error) {
      this.logger.log('warn', 'ignored a completed job without a shard result', { shardId, error: errorMessage(error) });
      return;
    }
    const run = this.runs.get(result.runId);
    if (run === undefined) {
      // A run not followed (cancelled, or already finished): keep its record true all the same.
      if ((await this.store.record(result.runId)) !== null) await this.store.markDone(result.runId, shardId, result.engine);
      return;
    }
    await this.recordDone(run, shardId, result.engine, result.workerId);
    await this.maybeFinish(run);
  }

  private async recordDone(run: ActiveRun, shardId: string, engine: Parameters<RunStore['markDone']>[2], workerId: string | null): Promise<void> {
    const { runId, resultDir } = run.spec;
    run.inFlight.delete(shardId);
    if (run.done.has(shardId)) return;
    if (!(await fileExists(shardResultPath(resultDir, shardId)))) {
      const reason = `INTERNAL: worker ${workerId ?? '?'} reported the shard done, but ${shardResultPath(resultDir, shardId)} is not visible to the coordinator; workers and coordinator must share that filesystem path`;
      this.logger.log('error', 'shard result file missing', { runId, shardId, workerId, resultDir });
      run.failed.set(shardId, reason);
      await this.store.markFailed(runId, shardId, reason);
      return;
    }
    await this.store.markDone(runId, shardId, engine);
    run.done.add(shardId);
    run.failed.delete(shardId);
    const rows = run.rowsOf.get(shardId) ?? 0;
    run.rowsDone += rows;
    run.rate.add(run.rowsDone + sum(run.inFlight.values()));
    this.metrics.completions.inc();
    this.metrics.documents.inc(rows);
  }

  private async onFailed(shardId: string, failedReason: string): Promise<void> {
    const runId = this.shardRun.get(shardId);
    const run = runId === undefined ? undefined : this.runs.get(runId);
    if (run === undefined || run.done.has(shardId)) return;
    // Replayed events (after a restart) may describe a job that has been retried since.
    if ((await this.queue.queue.getJobState(shardId)) !== 'failed') return;
    run.inFlight.delete(shardId);
    run.failed.set(shardId, failedReason);
    await this.store.markFailed(run.spec.runId, shardId, failedReason);
    this.metrics.failures.inc();
    this.logger.log('error', 'shard failed after all attempts', { runId: run.spec.runId, shardId, reason: failedReason });
    await this.maybeFinish(run);
  }

  // ---- run lifecycle ------------------------------------------------------------------------------------

  /** Runs `fn` after every earlier mutation: events, submits, cancels and retries never interleave. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.serial.then(fn);
    this.serial = next.catch(() => undefined);
    return next;
  }

  private async activate(runId: string): Promise<ActiveRun> {
    const existing = this.runs.get(runId);
    if (existing !== undefined) return existing;
    const [spec, plan, done, failed] = await Promise.all([this.store.spec(runId), this.store.plan(runId), this.store.doneIds(runId), this.store.failed(runId)]);
    const rowsOf = new Map(plan.shards.map((s) => [s.id, s.rowEnd - s.rowStart]));
    const run: ActiveRun = { spec, plan, rowsOf, done, failed, inFlight: new Map(), rowsDone: sum([...done].map((id) => rowsOf.get(id) ?? 0)), rate: new RateMeter() };
    run.rate.add(run.rowsDone);
    this.runs.set(runId, run);
    for (const shard of plan.shards) this.shardRun.set(shard.id, runId);
    return run;
  }

  private deactivate(runId: string): void {
    void this.fallbacks.stop(runId, { purge: false }).catch((error: unknown) => this.logger.log('warn', 'fallback queue not stopped cleanly', { runId, error: errorMessage(error) }));
    const run = this.runs.get(runId);
    if (run === undefined) return;
    this.runs.delete(runId);
    for (const shard of run.plan.shards) if (this.shardRun.get(shard.id) === runId) this.shardRun.delete(shard.id);
  }

  /** At start: follow every running run again (reconciled with the queue) and finish interrupted merges. */
  private async recover(): Promise<void> {
    const started = performance.now();
    const running = await this.store.runsIn(['running']);
    const merging = await this.store.runsIn(['merging']);
    let recorded = 0;
    for (const runId of running) {
      const run = await this.activate(runId);
      if (!(await this.startFallback(run))) continue;
      const before = run.done.size;
      await this.reconcile(run);
      recorded += run.done.size - before;
    }
    for (const runId of merging) {
      await this.activate(runId);
      this.startMerge(runId);
    }
    if (running.length + merging.length > 0) {
      this.logger.log('info', 'resumed runs from redis', { running, merging, shardsRecorded: recorded, ms: Math.round(performance.now() - started) });
    }
  }

  /** Brings a running run in line with the queue: records missed completions and failures, requeues lost jobs. */
  private async reconcile(run: ActiveRun): Promise<void> {
    const { runId, resultDir } = run.spec;
    const outstanding = run.plan.shards.filter((s) => !run.done.has(s.id) && !run.failed.has(s.id));
    if (outstanding.length === 0) return this.maybeFinish(run);
    const states = await this.queue.states(outstanding.map((s) => s.id));
    const written = await resultFiles(resultDir);
    const lost: ShardSpec[] = [];
    for (const shard of outstanding) {
      const state = states.get(shard.id) ?? 'unknown';
      if (state === 'completed' || (state === 'unknown' && written.has(resultFileName(shard.id)))) {
        const job = state === 'completed' ? await this.queue.job(shard.id) : undefined;
        const engine = job?.returnvalue !== undefined && job.returnvalue !== null ? safeEngine(job.returnvalue) : null;
        await this.recordDone(run, shard.id, engine, null);
      } else if (state === 'failed') {
        const job = await this.queue.job(shard.id);
        const reason = job?.failedReason ?? 'failed';
        run.failed.set(shard.id, reason);
        await this.store.markFailed(runId, shard.id, reason);
      } else if (state === 'unknown') {
        lost.push(shard);
      }
    }
    if (lost.length > 0) {
      this.logger.log('warn', 'shards had no job in the queue (Redis lost data?); queued again', { runId, shards: lost.length });
      await this.queue.add(runId, lost);
    }
    await this.maybeFinish(run);
  }

  private scheduleReconcile(): void {
    if (this.closed) return;
    this.reconcileTimer = setTimeout(() => {
      void this.exclusive(async () => {
        for (const run of [...this.runs.values()]) {
          const record = await this.store.record(run.spec.runId);
          if (record?.state === 'running') await this.reconcile(run);
        }
      })
        .catch((error: unknown) => this.logger.log('warn', 'reconciliation failed; retrying later', { error: errorMessage(error) }))
        .finally(() => this.scheduleReconcile());
    }, this.options.reconcileIntervalMs);
    this.reconcileTimer.unref();
  }

  /** All shards done → merge; all shards done or failed → the run fails (until `retry`). */
  private async maybeFinish(run: ActiveRun): Promise<void> {
    const { runId, totalShards } = run.spec;
    if (run.done.size === totalShards) {
      if (await this.store.transition(runId, ['running'], 'merging')) this.startMerge(runId);
      return;
    }
    if (run.failed.size > 0 && run.done.size + run.failed.size === totalShards) {
      const error = `${run.failed.size} of ${totalShards} shards failed after all attempts; see "rescale status ${runId}", fix the cause and run "rescale retry ${runId}"`;
      if (await this.store.transition(runId, ['running'], 'failed', { finishedAt: new Date().toISOString(), error })) {
        this.logger.log('error', 'run failed', { runId, failedShards: run.failed.size });
        this.deactivate(runId);
      }
    }
  }

  /** Merges run one after another (each is CPU- and disk-bound), outside the event chain. */
  private startMerge(runId: string): void {
    const merge = this.merges.then(() => this.merge(runId));
    this.merges = merge.catch(() => undefined);
    this.pendingMerges.add(merge);
    void merge.finally(() => this.pendingMerges.delete(merge));
  }

  private async merge(runId: string): Promise<void> {
    const run = this.runs.get(runId);
    if (run === undefined || this.closed) return;
    const { spec, plan } = run;
    const logger = this.logger.child({ runId });
    const end = this.metrics.mergeSeconds.startTimer();
    try {
      const codebook = parseCodebookText(spec.codebookText, spec.codebookPath);
      const manifest = await buildManifest({
        mode: 'cluster',
        codebook,
        plan,
        sequences: spec.sequences,
        shardRows: spec.shardRows,
        threads: codebook.model.threads ?? 'auto',
        startedAt: new Date(spec.createdAt),
        engines: await this.store.engines(runId),
      });
      const summary = await mergeShards({
        plan,
        shardDir: spec.resultDir,
        output: spec.output,
        labels: singleQuestion(codebook).labels.map((l) => l.name),
        manifest: { ...manifest, run: { id: runId }, fallback: await this.fallbackSummary(spec, codebook.fallback !== null) },
        logger,
      });
      await this.store.transition(runId, ['merging'], 'succeeded', { finishedAt: new Date().toISOString(), manifest: summary.manifestPath });
      logger.log('info', 'run succeeded', { output: summary.output, rows: summary.rows, seconds: Number(end().toFixed(3)) });
      await this.fallbacks.stop(runId, { purge: true }).catch((error: unknown) => logger.log('warn', 'fallback queue not removed', { error: errorMessage(error) }));
    } catch (error) {
      end();
      const message = isRescaleError(error) ? error.message : `merge failed: ${errorMessage(error)}`;
      logger.log('error', 'merge failed', { error: message });
      await this.store.transition(runId, ['merging'], 'failed', { finishedAt: new Date().toISOString(), error: message }).catch(() => undefined);
    } finally {
      this.deactivate(runId);
    }
  }

  /** The manifest's `fallback`: off and why, or on with its files and what it did (as far as this process saw). */
  private async fallbackSummary(spec: RunSpec, enabledInCodebook: boolean): Promise<Record<string, unknown>> {
    const setting = spec.fallback;
    if (setting === undefined) return { active: false, reason: enabledInCodebook ? 'disabled with --no-fallback' : 'not enabled in the codebook' };
    if (!setting.active) return { active: false, reason: setting.reason };
    const stats = await this.fallbacks.stats(spec.runId).catch(() => null);
    return { active: true, mode: setting.mode, auditFile: setting.auditFile, cacheDir: setting.cacheDir, stats, statsScope: 'documents answered by this coordinator process; the audit file holds every call' };
  }

  /**
   * Starts answering a running run's fallback queue; when this coordinator cannot (no key), the run fails at once
   * with the reason. True when the run can go on.
   */
  private async startFallback(run: ActiveRun): Promise<boolean> {
    if (run.spec.fallback?.active !== true) return true;
    try {
      const codebook = parseCodebookText(run.spec.codebookText, run.spec.codebookPath);
      await this.fallbacks.start(run.spec, codebook);
      return true;
    } catch (error) {
      await this.failRunNow(run.spec.runId, isRescaleError(error) ? error : new RescaleError('INTERNAL', errorMessage(error)));
      return false;
    }
  }

  /** A fallback error that no shard retry can fix stops the run: the key was refused, the model is unknown... */
  private failRun(runId: string, error: RescaleError): Promise<void> {
    return this.exclusive(() => this.failRunNow(runId, error)).catch((cause: unknown) => this.logger.log('warn', 'run not failed cleanly', { runId, error: errorMessage(cause) }));
  }

  private async failRunNow(runId: string, error: RescaleError): Promise<void> {
    const message = `${error.code}: ${error.message}`;
    if (!(await this.store.transition(runId, ['running'], 'failed', { finishedAt: new Date().toISOString(), error: message }))) return;
    this.logger.log('error', 'run failed: its closed-model fallback cannot go on', { runId, error: message });
    // Workers stop the run's active shards (as for a cancel); queued shards wait for "rescale retry".
    await this.redis.publish(clusterKeys.control, JSON.stringify({ type: 'cancel', runId }));
    const run = await this.activate(runId);
    const outstanding = run.plan.shards.filter((s) => !run.done.has(s.id)).map((s) => s.id);
    for (const [id, state] of await this.queue.states(outstanding)) {
      if (state === 'waiting' || state === 'delayed' || state === 'prioritized') await this.queue.remove(id);
    }
    this.deactivate(runId);
  }

  // ---- control API ----------------------------------------------------------------------------------------

  submit(request: SubmitRequest): Promise<SubmitResult> {
    return this.exclusive(() => this.submitNow(request));
  }

  private async submitNow(request: SubmitRequest): Promise<SubmitResult> {
    const codebookPath = absolute(request.codebook, 'codebook');
    const output = absolute(request.output, 'output');
    if (request.inputs.length === 0) throw new RescaleError('CONFIG_INVALID', 'give at least one input (Parquet file, folder or glob)');
    const inputs = request.inputs.map((input) => absolute(input, 'input'));
    let codebookText: string;
    try {
      codebookText = await readFile(codebookPath, 'utf8');
    } catch (cause) {
      throw new RescaleError('CODEBOOK_INVALID', `the coordinator cannot read codebook ${codebookPath}: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}; it must be on the filesystem the coordinator and workers share`, { cause });
    }
    const codebook = parseCodebookText(codebookText, codebookPath);
    singleQuestion(codebook);
    const fallbackPlan = await resolveFallback(codebook, { disabled: request.noFallback === true, offline: request.fallbackOffline === true, env: this.options.env });
    if (codebook.fallback !== null && !fallbackPlan.active && request.noFallback !== true) {
      // Local mode would go on with local labels only and a warning; a remote submitter would not see the warning.
      throw new RescaleError(
        'CONFIG_INVALID',
        `${codebookPath} enables the closed-model fallback, but the coordinator has ${fallbackPlan.reason}; the coordinator alone calls the fallback, so start it with the key available (workers do not need it), or submit with --no-fallback for local labels only`,
      );
    }
    // "auto" would let each worker pick by its hardware and change the batch layout (and the shard ids) with it.
    const sequences = request.sequences ?? (codebook.model.sequences === 'auto' ? 1 : codebook.model.sequences);
    const shardRows = request.shardRows ?? DEFAULT_SHARD_ROWS;
    const plan = await planRun(codebook, inputs, sequences, shardRows, request.limit, fallbackPlan.active ? fallbackPlan.identity : null);
    const runId = runIdFor(plan, output);
    const existing = await this.store.record(runId);

    if (existing !== null && request.overwrite !== true) {
      if (existing.state === 'failed' || existing.state === 'cancelled') {
        await this.resume(runId);
        this.logger.log('info', 'run resumed by a new submit', { runId, was: existing.state });
      }
      return { runId, created: false };
    }
    if (existing !== null && (existing.state === 'running' || existing.state === 'merging')) {
      throw new RescaleError('RUN_CONFLICT', `run ${runId} is ${existing.state}; cancel it ("rescale cancel ${runId}") before submitting it again with overwrite`);
    }
    const others = await this.foreignJobs(runId, plan.shards);
    const resultDir = path.join(`${output}.parts`, 'shards');
    await prepareOutput(output, resultDir, request.overwrite === true);
    await writeFile(path.join(`${output}.parts`, 'plan.json'), JSON.stringify(plan, null, 2));
    const spec: RunSpec = {
      runId,
      task: codebook.task,
      codebookPath,
      codebookText,
      codebookHash: plan.codebookHash,
      sequences,
      shardRows,
      limit: plan.limit,
      inputs,
      output,
      resultDir,
      idColumn: plan.idColumn,
      idType: plan.idType,
      textColumn: plan.textColumn,
      totalShards: plan.shards.length,
      totalRows: plan.totalRows,
      createdAt: new Date().toISOString(),
      fallback: fallbackPlan.active
        ? { active: true, mode: fallbackPlan.mode, ...fallbackPathsFor(output, fallbackPlan.config) }
        : { active: false, reason: fallbackPlan.reason },
    };
    if (existing !== null) {
      // Overwrite: the run's budget ledger starts again from the audit file (which keeps what was spent).
      await RedisBudget.reset(this.redis, runId);
      await FallbackService.purge(this.options.redis, runId);
    }
    await this.store.create(spec, plan, { reset: existing !== null });
    const run = await this.activate(runId);
    if (!(await this.startFallback(run))) throw new RescaleError('CONFIG_INVALID', (await this.store.record(runId))?.error ?? `run ${runId} cannot start its fallback`);
    await this.enqueue(run, others);
    this.logger.log('info', 'run submitted', { runId, task: spec.task, shards: spec.totalShards, rows: spec.totalRows, alreadyDone: run.done.size, output });
    await this.maybeFinish(run);
    return { runId, created: true };
  }

  /**
   * Jobs that already exist for this plan's shard ids but belong to another run (the same corpus and codebook into
   * another output). One still being worked on for a live run is a conflict; the rest are reused or replaced.
   */
  private async foreignJobs(runId: string, shards: readonly ShardSpec[]): Promise<Map<string, { runId: string; state: ShardJobState }>> {
    const states = await this.queue.states(shards.map((s) => s.id));
    const foreign = new Map<string, { runId: string; state: ShardJobState }>();
    for (const [id, state] of states) {
      if (state === 'unknown') continue;
      const job = await this.queue.job(id);
      const owner = job === undefined ? undefined : (job.data as { runId?: unknown }).runId;
      if (typeof owner !== 'string' || owner === runId) continue;
      if (state !== 'completed' && state !== 'failed') {
        const ownerState = (await this.store.record(owner))?.state;
        if (ownerState === 'running' || ownerState === 'merging' || state === 'active') {
          throw new RescaleError('RUN_CONFLICT', `shard ${id} of this run is being classified for run ${owner} (the same corpus and codebook into another output); wait for that run or cancel it, then submit again`);
        }
      }
      foreign.set(id, { runId: owner, state });
    }
    return foreign;
  }

  /** Queues every shard of the run that has no result file yet; reuses finished files of an identical shard. */
  private async enqueue(run: ActiveRun, foreign: ReadonlyMap<string, { runId: string; state: ShardJobState }>): Promise<void> {
    const { runId, resultDir } = run.spec;
    const written = await resultFiles(resultDir);
    const pending = run.plan.shards.filter((s) => !run.done.has(s.id));
    const states = await this.queue.states(pending.map((s) => s.id));
    const toAdd: ShardSpec[] = [];
    for (const shard of pending) {
      if (written.has(resultFileName(shard.id))) {
        await this.recordDone(run, shard.id, null, null);
        continue;
      }
      const state = states.get(shard.id) ?? 'unknown';
      const other = foreign.get(shard.id);
      if (other !== undefined && state === 'completed' && (await this.copyForeignResult(other.runId, shard.id, resultDir))) {
        await this.recordDone(run, shard.id, null, null);
        continue;
      }
      if (state === 'unknown') {
        toAdd.push(shard);
      } else if (state === 'completed' || state === 'failed' || other !== undefined) {
        // A finished job without our result file, a failed one, or a leftover of another run: start afresh.
        if (await this.queue.remove(shard.id)) toAdd.push(shard);
        else throw new RescaleError('RUN_CONFLICT', `shard ${shard.id} is held by a worker right now; submit again in a moment`);
      }
      // waiting, delayed, prioritized or active jobs of this run stay as they are.
    }
    run.failed.clear();
    await this.store.clearFailed(runId, pending.map((s) => s.id));
    await this.queue.add(runId, toAdd);
  }

  private async copyForeignResult(otherRunId: string, shardId: string, resultDir: string): Promise<boolean> {
    const other = await this.store.spec(otherRunId).catch(() => undefined);
    if (other === undefined) return false;
    const source = shardResultPath(other.resultDir, shardId);
    if (!(await fileExists(source))) return false;
    const target = shardResultPath(resultDir, shardId);
    const temp = path.join(resultDir, `.${path.basename(target)}.${process.pid}-copy.tmp`);
    await copyFile(source, temp);
    await rename(temp, target);
    this.logger.log('info', 'reused a shard result of an identical run', { shardId, from: otherRunId });
    return true;
  }

  /** A cancelled or failed run back to running: finished shards kept, the rest queued with fresh attempts. */
  private async resume(runId: string): Promise<void> {
    await this.store.transition(runId, ['cancelled', 'failed'], 'running', { finishedAt: '', error: '' });
    const run = await this.activate(runId);
    if (!(await this.startFallback(run))) throw new RescaleError('CONFIG_INVALID', (await this.store.record(runId))?.error ?? `run ${runId} cannot start its fallback`);
    await this.enqueue(run, await this.foreignJobs(runId, run.plan.shards.filter((s) => !run.done.has(s.id))));
    await this.maybeFinish(run);
  }

  cancel(runId: string): Promise<RunStatus> {
    return this.exclusive(async () => {
      const record = await this.store.requireRecord(runId);
      if (record.state === 'merging') throw new RescaleError('RUN_CONFLICT', `run ${runId} is merging its results; nothing is left to cancel`);
      if (record.state !== 'running') return this.status(runId);
      await this.store.transition(runId, ['running'], 'cancelled', { finishedAt: new Date().toISOString() });
      await this.redis.publish(clusterKeys.control, JSON.stringify({ type: 'cancel', runId }));
      const run = await this.activate(runId);
      const outstanding = run.plan.shards.filter((s) => !run.done.has(s.id)).map((s) => s.id);
      const states = await this.queue.states(outstanding);
      let removed = 0;
      for (const [id, state] of states) {
        if (state === 'waiting' || state === 'delayed' || state === 'prioritized' || state === 'failed' || state === 'waiting-children') {
          if (await this.queue.remove(id)) removed += 1;
        }
      }
      await this.fallbacks.stop(runId, { purge: true });
      this.deactivate(runId);
      this.logger.log('info', 'run cancelled', { runId, removedJobs: removed, activeJobs: [...states.values()].filter((s) => s === 'active').length });
      return this.status(runId);
    });
  }

  retryFailed(runId: string): Promise<{ retried: number; status: RunStatus }> {
    return this.exclusive(async () => {
      const record = await this.store.requireRecord(runId);
      if (record.state === 'cancelled') throw new RescaleError('RUN_CONFLICT', `run ${runId} was cancelled; submit it again to resume it`);
      if (record.state !== 'failed' && record.state !== 'running') return { retried: 0, status: await this.status(runId) };
      const run = await this.activate(runId);
      // Shards recorded done whose file has gone (a failed merge names them) are redone too.
      const written = await resultFiles(run.spec.resultDir);
      const vanished = [...run.done].filter((id) => !written.has(resultFileName(id)));
      if (vanished.length > 0) {
        await this.store.unmarkDone(runId, vanished);
        for (const id of vanished) {
          run.done.delete(id);
          run.rowsDone -= run.rowsOf.get(id) ?? 0;
        }
      }
      // Shards with no job or a failed one that were never recorded (the run was stopped under them) go too.
      const outstanding = run.plan.shards.filter((s) => !run.done.has(s.id) && !run.failed.has(s.id)).map((s) => s.id);
      const orphaned = [...(await this.queue.states(outstanding))].filter(([, state]) => state === 'unknown' || state === 'failed').map(([id]) => id);
      const ids = [...new Set([...run.failed.keys(), ...vanished, ...orphaned])];
      const shards = run.plan.shards.filter((s) => ids.includes(s.id));
      for (const shard of shards) await this.queue.remove(shard.id);
      run.failed.clear();
      await this.store.clearFailed(runId, ids);
      // Running (and its fallback answering) before the shards are queued: workers refuse shards of a failed run.
      await this.store.transition(runId, ['failed'], 'running', { finishedAt: '', error: '' });
      if (!(await this.startFallback(run))) throw new RescaleError('CONFIG_INVALID', (await this.store.record(runId))?.error ?? `run ${runId} cannot start its fallback`);
      await this.queue.add(runId, shards);
      this.logger.log('info', 'failed shards queued again', { runId, shards: shards.length });
      await this.maybeFinish(run);
      return { retried: shards.length, status: await this.status(runId) };
    });
  }

  async status(runId: string): Promise<RunStatus> {
    const record = await this.store.requireRecord(runId);
    const spec = await this.store.spec(runId);
    const run = this.runs.get(runId);
    let shardsDone: number;
    let documentsDone: number;
    let failed: Map<string, string>;
    let active = 0;
    let rate = 0;
    if (run !== undefined) {
      shardsDone = run.done.size;
      documentsDone = run.rowsDone + sum(run.inFlight.values());
      failed = run.failed;
      active = run.inFlight.size;
      rate = run.rate.perSecond();
    } else {
      const done = await this.store.doneIds(runId);
      shardsDone = done.size;
      failed = await this.store.failed(runId);
      if (record.state === 'succeeded') documentsDone = spec.totalRows;
      else {
        const plan = await this.store.plan(runId);
        documentsDone = sum(plan.shards.filter((s) => done.has(s.id)).map((s) => s.rowEnd - s.rowStart));
      }
    }
    const remaining = spec.totalRows - documentsDone;
    return {
      runId,
      state: record.state,
      task: spec.task,
      codebook: spec.codebookPath,
      output: spec.output,
      shardsTotal: spec.totalShards,
      shardsDone,
      shardsActive: active,
      shardsFailed: failed.size,
      documentsTotal: spec.totalRows,
      documentsDone,
      documentsPerSecond: rate,
      etaSeconds: (TERMINAL_RUN_STATES as readonly string[]).includes(record.state) ? 0 : rate > 0 ? remaining / rate : null,
      failures: [...failed].slice(0, MAX_FAILURES_LISTED).map(([shardId, reason]) => ({ shardId, reason })),
      createdAt: record.createdAt,
      finishedAt: record.finishedAt,
      error: record.error,
      manifest: record.manifest,
    };
  }

  async list(limit: number): Promise<RunStatus[]> {
    const ids = await this.store.list(limit);
    const statuses = await Promise.all(ids.map((id) => this.status(id).catch(() => null)));
    return statuses.filter((s): s is RunStatus => s !== null);
  }

  private async liveWorkerIds(): Promise<string[]> {
    const now = Date.now();
    await this.redis.zremrangebyscore(clusterKeys.workers, '-inf', now - WORKER_TTL_MS);
    return this.redis.zrangebyscore(clusterKeys.workers, now - WORKER_TTL_MS, '+inf');
  }

  async workers(): Promise<WorkerRecord[]> {
    const ids = await this.liveWorkerIds();
    if (ids.length === 0) return [];
    const texts = await this.redis.mget(ids.map((id) => clusterKeys.worker(id)));
    const records: WorkerRecord[] = [];
    for (const text of texts) {
      if (text === null) continue;
      try {
        records.push(parseWorkerRecord(text));
      } catch (error) {
        this.logger.log('warn', 'ignored a malformed worker record', { error: errorMessage(error) });
      }
    }
    return records.sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /** Stops following events; merges in progress finish first (they are atomic, but a restart would redo them). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reconcileTimer !== undefined) clearTimeout(this.reconcileTimer);
    this.watchdog.stop();
    await this.events.close().catch(() => undefined);
    await this.serial.catch(() => undefined);
    await Promise.allSettled([...this.pendingMerges]);
    await this.fallbacks.close();
    await this.queue.close().catch(() => undefined);
    this.redis.disconnect();
  }
}

function sum(values: Iterable<number>): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}

function absolute(value: string, what: string): string {
  if (value === '' || !path.isAbsolute(value)) {
    throw new RescaleError('CONFIG_INVALID', `the ${what} path must be absolute (got "${value}"): the coordinator and workers resolve it on a shared filesystem; the rescale CLI makes paths absolute for you`);
  }
  return path.normalize(value);
}

async function fileExists(file: string): Promise<boolean> {
  return access(file, constants.F_OK).then(
    () => true,
    () => false,
  );
}

function resultFileName(shardId: string): string {
  return path.basename(shardResultPath('.', shardId));
}

/** Names of the files in a results folder (one readdir instead of a stat per shard on a shared filesystem). */
async function resultFiles(dir: string): Promise<Set<string>> {
  try {
    return new Set(await readdir(dir));
  } catch {
    return new Set();
  }
}

function safeEngine(returnvalue: unknown): Parameters<RunStore['markDone']>[2] {
  try {
    return parseShardJobResult(returnvalue).engine;
  } catch {
    return null;
  }
}

async function prepareOutput(output: string, resultDir: string, overwrite: boolean): Promise<void> {
  const dir = path.dirname(output);
  try {
    if (overwrite) {
      await rm(path.dirname(resultDir), { recursive: true, force: true });
      await rm(output, { force: true });
      await rm(manifestPathFor(output), { force: true });
    }
    await mkdir(resultDir, { recursive: true });
    await access(dir, constants.W_OK);
  } catch (cause) {
    throw new RescaleError('OUTPUT_NOT_WRITABLE', `the coordinator cannot write to ${dir} (from output ${output}): ${(cause as NodeJS.ErrnoException).code ?? String(cause)}; choose a folder on the shared filesystem it can write to`, { cause });
  }
}

