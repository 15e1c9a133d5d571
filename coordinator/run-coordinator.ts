// The coordinator's facade: connects Redis, the shard queue and its events, wires the run roles in run/ (queue
// events, reconciliation, finishing and merging, the fallback, control and status) and serves them to the control
// API. All state lives in Redis; a restarted coordinator recovers its runs and reconciles them with the queue.

import { QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Closeable } from '../contracts/closeable.js';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import { silentLogger, type Logger } from '../contracts/logger.js';
import { connectRedis, redisOptions, RedisWatchdog, type RedisTarget } from '../contracts/redis-connection.js';
import { clusterKeys, QUEUE_PREFIX, SHARD_QUEUE_NAME, type WorkerRecord } from '../contracts/shard-queue.js';
import { ShardQueue } from './bullmq-shard-queue.js';
import { CoordinatorMetrics } from './coordinator-metrics.js';
import { DataRoots } from './data-roots.js';
import type { EndpointList } from '../fallback/endpoint-list.js';
import { FallbackService } from './fallback-service.js';
import { RunStore } from './run-store.js';
import { FallbackSupervisor } from './run/fallback-supervisor.js';
import { MutationChain } from './run/mutation-chain.js';
import type { SubmitRequest } from './run/plan-submission.js';
import { QueueEventFollower } from './run/queue-event-follower.js';
import { RunControl, type SubmitResult } from './run/run-control.js';
import { RunFinisher } from './run/run-finisher.js';
import { RunReconciler } from './run/run-reconciler.js';
import { RunStatusReader, type RunStatus } from './run/run-status-reader.js';
import { RunTracker } from './run/run-tracker.js';
import { ShardEnqueuer } from './run/shard-enqueuer.js';
import { WorkerWatch } from './run/worker-watch.js';

export { runIdFor, type SubmitRequest } from './run/plan-submission.js';
export type { SubmitResult } from './run/run-control.js';
export type { RunStatus } from './run/run-status-reader.js';

export interface RunCoordinatorOptions {
  readonly redis: RedisTarget;
  readonly logger?: Logger;
  /** Full reconciliation of running runs with the queue (default 30 s); queue events do the work in between. */
  readonly reconcileIntervalMs?: number;
  /** Redis unreachable this long → `lost` resolves (default 60 s). */
  readonly redisTimeoutMs?: number;
  /**
   * A worker holding a shard whose heartbeat is older than this is taken for dead and its shard handed back (default
   * 20 s, the shard lock). A worker whose connections to Redis all closed (the process died) is found within ~2 s.
   */
  readonly workerSilenceMs?: number;
  /**
   * Where the fallback's API key variable is looked up (the CLI's parsed environment): only the coordinator needs it.
   */
  readonly env: Readonly<Record<string, string | undefined>>;
  /**
   * `--endpoints FILE`: the only places the fallback may call, with their key sources; absent or null: runs with
   * the fallback on are refused (submit them with --no-fallback).
   */
  readonly endpoints?: EndpointList | null;
  /** `--data-root`: the folders a submitted run's paths must resolve into; default: anywhere (a warning is logged). */
  readonly dataRoots?: DataRoots;
}

type CompiledOptions = Required<
  Pick<RunCoordinatorOptions, 'reconcileIntervalMs' | 'redisTimeoutMs' | 'env' | 'dataRoots' | 'endpoints'>
> & {
  redis: RedisTarget;
  workerSilenceMs?: number;
};

/** ioredis's and BullMQ's words for a request that could not reach Redis. */
const REDIS_CONNECTION_ERROR =
  /Connection is closed|max retries per request|Stream isn't writeable|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|LOADING/i;

export class RunCoordinator implements Closeable {
  readonly metrics: CoordinatorMetrics;
  /** Resolves with an error when Redis stayed unreachable past the bound. */
  readonly lost: Promise<RescaleError>;
  private readonly chain = new MutationChain();
  private readonly fallbackService: FallbackService;
  private readonly runs: RunTracker;
  private readonly finisher: RunFinisher;
  private readonly fallbacks: FallbackSupervisor;
  private readonly reconciler: RunReconciler;
  private readonly events: QueueEventFollower;
  private readonly control: RunControl;
  private readonly statuses: RunStatusReader;
  private readonly watchdog: RedisWatchdog;
  private readonly workerWatch: WorkerWatch;
  private closed = false;
  private resolveLost: (error: RescaleError) => void = () => undefined;

  private readonly target: RedisTarget;

  private constructor(
    private readonly redis: Redis,
    private readonly queue: ShardQueue,
    events: QueueEvents,
    options: CompiledOptions,
    logger: Logger,
  ) {
    this.target = options.redis;
    const store = new RunStore(redis);
    this.lost = new Promise((resolve) => (this.resolveLost = resolve));
    this.metrics = new CoordinatorMetrics({
      shardCounts: () => this.queue.counts(),
      workerCount: async () => (await this.statuses.liveWorkerIds()).length,
      documentsPerSecond: () => this.runs.all().reduce((sum, run) => sum + run.rate.perSecond(), 0),
      runsByState: () => {
        const followed = this.runs.all();
        const merging = followed.filter((run) => run.done.size === run.spec.totalShards).length;
        return { running: followed.length - merging, merging };
      },
    });
    this.fallbackService = new FallbackService({
      redis: options.redis,
      connection: redis,
      logger,
      env: options.env,
      endpoints: options.endpoints,
      isRunning: async (runId) => (await store.record(runId))?.state === 'running',
      onFatal: (runId, error) => void this.fallbacks.fail(runId, error),
      onOutcome: (outcome) => {
        if (outcome.status === 'ok') this.metrics.fallbackDocuments.inc();
      },
    });
    this.runs = new RunTracker(store, this.fallbackService, this.metrics, logger, (since) =>
      this.queue.completedSince(redis, since),
    );
    this.finisher = new RunFinisher(store, this.runs, this.fallbackService, this.metrics, logger);
    this.fallbacks = new FallbackSupervisor(
      this.fallbackService,
      options.redis,
      redis,
      store,
      queue,
      this.runs,
      this.chain,
      logger,
    );
    const { reconcileIntervalMs } = options;
    this.reconciler = new RunReconciler(
      store,
      queue,
      this.runs,
      this.fallbacks,
      this.finisher,
      this.chain,
      reconcileIntervalMs,
      logger,
    );
    this.events = new QueueEventFollower(
      events,
      redis,
      store,
      queue,
      this.runs,
      this.finisher,
      this.chain,
      this.metrics,
      logger,
      (runId, error) => this.control.failNow(runId, error),
    );
    const enqueuer = new ShardEnqueuer(store, queue, this.runs, logger);
    this.control = new RunControl(
      redis,
      store,
      queue,
      this.runs,
      enqueuer,
      this.fallbacks,
      this.finisher,
      { env: options.env, endpoints: options.endpoints },
      options.dataRoots,
      logger,
    );
    this.statuses = new RunStatusReader(redis, store, this.runs, logger);
    this.workerWatch = new WorkerWatch(redis, queue, this.metrics, logger, {
      ...(options.workerSilenceMs !== undefined ? { silenceMs: options.workerSilenceMs } : {}),
    });
    this.watchdog = new RedisWatchdog(options.redis, {
      timeoutMs: options.redisTimeoutMs,
      logger,
      onLost: (error) => this.resolveLost(error),
    });
  }

  /**
   * Connects (bounded retries), resumes the runs found in Redis and starts following queue events. Whatever it
   * opened is closed again when a later step fails.
   */
  static async start(options: RunCoordinatorOptions): Promise<RunCoordinator> {
    const logger = options.logger ?? silentLogger;
    const redisTimeoutMs = options.redisTimeoutMs ?? 60_000;
    const redis = await connectRedis(options.redis, { timeoutMs: redisTimeoutMs, logger, name: 'rescale-coordinator' });
    redis.on('error', () => undefined); // the watchdog reports outages
    let queue: ShardQueue | undefined;
    let events: QueueEvents | undefined;
    let coordinator: RunCoordinator | undefined;
    try {
      const lastEventId = (await redis.get(clusterKeys.lastEvent)) ?? undefined;
      queue = new ShardQueue(options.redis, logger);
      events = new QueueEvents(SHARD_QUEUE_NAME, {
        connection: redisOptions(options.redis, { blocking: true, name: 'rescale-coordinator-events' }),
        prefix: QUEUE_PREFIX,
        autorun: false,
        ...(lastEventId !== undefined ? { lastEventId } : {}),
      });
      const compiled: CompiledOptions = {
        redis: options.redis,
        reconcileIntervalMs: options.reconcileIntervalMs ?? 30_000,
        redisTimeoutMs,
        env: options.env,
        endpoints: options.endpoints ?? null,
        ...(options.workerSilenceMs !== undefined ? { workerSilenceMs: options.workerSilenceMs } : {}),
        dataRoots: options.dataRoots ?? DataRoots.unrestricted(),
      };
      if (!compiled.dataRoots.restricted) {
        logger.log('warn', 'no --data-root: submitted runs may read and write any path the coordinator can', {});
      }
      coordinator = new RunCoordinator(redis, queue, events, compiled, logger);
      await coordinator.begin();
      return coordinator;
    } catch (error) {
      if (coordinator !== undefined) {
        await coordinator.close();
      } else {
        await events?.close().catch(() => undefined);
        await queue?.close().catch(() => undefined);
        redis.disconnect();
      }
      throw error;
    }
  }

  private async begin(): Promise<void> {
    await this.events.start();
    await this.chain.exclusive(() => this.reconciler.recover());
    this.watchdog.start();
    this.reconciler.start();
    this.workerWatch.start();
  }

  submit(request: SubmitRequest): Promise<SubmitResult> {
    return this.answer(() => this.chain.exclusive(() => this.control.submit(request)));
  }

  cancel(runId: string): Promise<RunStatus> {
    return this.answer(() =>
      this.chain.exclusive(async () => {
        await this.control.cancel(runId);
        return this.statuses.status(runId);
      }),
    );
  }

  retryFailed(runId: string): Promise<{ retried: number; status: RunStatus }> {
    return this.answer(() =>
      this.chain.exclusive(async () => {
        const retried = await this.control.retryFailed(runId);
        return { retried, status: await this.statuses.status(runId) };
      }),
    );
  }

  status(runId: string): Promise<RunStatus> {
    return this.answer(() => this.statuses.status(runId));
  }

  list(limit: number): Promise<RunStatus[]> {
    return this.answer(() => this.statuses.list(limit));
  }

  workers(): Promise<WorkerRecord[]> {
    return this.answer(() => this.statuses.workers());
  }

  /**
   * Runs a control request; a failure while Redis is unreachable is reported as that (SERVICE_UNAVAILABLE, naming
   * Redis), not as an internal error.
   */
  private async answer<T>(request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (error) {
      if (error instanceof RescaleError) throw error;
      if (this.redis.status !== 'ready' || REDIS_CONNECTION_ERROR.test(errorMessage(error))) {
        throw new RescaleError(
          'SERVICE_UNAVAILABLE',
          `the coordinator cannot reach Redis at ${this.target.display} (${errorMessage(error)}); it keeps ` +
            'retrying and goes on where it was once Redis is back: check redis-server, then ask again',
          { cause: error, retryable: true },
        );
      }
      throw error;
    }
  }

  /** Stops following events; merges in progress finish first (they are atomic, but a restart would redo them). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.finisher.stop();
    this.reconciler.stop();
    await this.workerWatch.stop();
    this.watchdog.close();
    await this.events.close();
    await this.chain.settled();
    await this.finisher.idle();
    await this.fallbackService.close();
    await this.queue.close().catch(() => undefined);
    this.redis.disconnect();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
