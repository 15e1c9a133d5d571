// Follows the shard queue's events: records finished and failed shards of followed runs (one event at a time, in
// the mutation chain) and keeps their in-flight progress, for status and rate. Reconciliation repairs what it misses.

import type { QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { errorMessage } from '../../contracts/errors.js';
import type { Logger } from '../../contracts/logger.js';
import { clusterKeys, parseShardJobResult } from '../../contracts/shard-queue.js';
import type { ShardQueue } from '../bullmq-shard-queue.js';
import type { CoordinatorMetrics } from '../coordinator-metrics.js';
import type { RunStore } from '../run-store.js';
import type { MutationChain } from './mutation-chain.js';
import type { RunFinisher } from './run-finisher.js';
import type { RunTracker } from './run-tracker.js';

const LAST_EVENT_SAVE_MS = 250;

export class QueueEventFollower {
  private lastEventSavedAt = 0;

  constructor(
    private readonly events: QueueEvents,
    private readonly redis: Redis,
    private readonly store: RunStore,
    private readonly queue: ShardQueue,
    private readonly runs: RunTracker,
    private readonly finisher: RunFinisher,
    private readonly chain: MutationChain,
    private readonly metrics: CoordinatorMetrics,
    private readonly logger: Logger,
    /** Fails a run at once (inside the chain), for a shard failure every shard of the run would repeat. */
    private readonly failRunNow: (runId: string, error: string) => Promise<void>,
  ) {}

  /** Starts reading events (from after the last one handled before a restart); resolves once reading. */
  async start(): Promise<void> {
    this.followEvents();
    void this.events
      .run()
      .catch((error: unknown) =>
        this.logger.log('error', 'queue event reader stopped', { error: errorMessage(error) }),
      );
    await this.events.waitUntilReady();
  }

  async close(): Promise<void> {
    await this.events.close().catch(() => undefined);
  }

  private followEvents(): void {
    let lastErrorLog = 0;
    this.events.on('error', (error) => {
      if (Date.now() - lastErrorLog < 5_000) return;
      lastErrorLog = Date.now();
      this.logger.log('warn', 'queue event reader error', { error: error.message });
    });
    this.events.on('completed', ({ jobId, returnvalue }, id) =>
      this.handle(id, () => this.onCompleted(jobId, returnvalue, eventTime(id))),
    );
    this.events.on('failed', ({ jobId, failedReason }, id) =>
      this.handle(id, () => this.onFailed(jobId, failedReason)),
    );
    this.events.on('active', ({ jobId }) => this.runs.track(jobId, (run) => this.runs.startShard(run, jobId)));
    this.events.on('progress', ({ jobId, data }, id) =>
      this.runs.track(jobId, (run) => {
        if (typeof data === 'number') this.runs.progress(run, jobId, data, eventTime(id));
      }),
    );
    // A shard that leaves the active state other than by completing is no longer in flight: handed back, retried
    // later (delayed), failed. Without this a run retrying failures showed more active shards than workers.
    for (const event of ['waiting', 'delayed', 'failed', 'removed'] as const) {
      this.events.on(event, ({ jobId }: { jobId: string }) =>
        this.runs.track(jobId, (run) => this.runs.leaveShard(run, jobId)),
      );
    }
    this.events.on('stalled', ({ jobId }) =>
      this.runs.track(jobId, (run) => {
        this.runs.leaveShard(run, jobId);
        this.metrics.stalls.inc();
        this.logger.log('warn', 'shard stalled (its worker died or froze); back in the queue', {
          runId: run.spec.runId,
          shardId: jobId,
        });
      }),
    );
  }

  /**
   * Handles completion and failure events one at a time, and remembers the last one handled (at most every
   * LAST_EVENT_SAVE_MS: replaying a few events after a restart is harmless) so a restart resumes after it.
   */
  private handle(eventId: string, handler: () => Promise<void>): void {
    void this.chain.exclusive(async () => {
      const end = this.metrics.eventSeconds.startTimer();
      try {
        await handler();
        if (Date.now() - this.lastEventSavedAt >= LAST_EVENT_SAVE_MS) {
          this.lastEventSavedAt = Date.now();
          await this.redis.set(clusterKeys.lastEvent, eventId);
        }
      } catch (error) {
        // Reconciliation repairs what a failed handler missed.
        this.logger.log('warn', 'queue event not handled; reconciliation will catch up', {
          eventId,
          error: errorMessage(error),
        });
      } finally {
        end();
      }
    });
  }

  private async onCompleted(shardId: string, returnvalue: unknown, at: number): Promise<void> {
    let result;
    try {
      result = parseShardJobResult(returnvalue);
    } catch (error) {
      this.logger.log('warn', 'ignored a completed job without a shard result', {
        shardId,
        error: errorMessage(error),
      });
      return;
    }
    const run = this.runs.get(result.runId);
    if (run === undefined) {
      // A run not followed (cancelled, or already finished): keep its record true all the same.
      if ((await this.store.record(result.runId)) !== null)
        await this.store.markDone(result.runId, shardId, result.engine);
      return;
    }
    await this.runs.recordDone(run, shardId, result.engine, result.workerId, at);
    await this.finisher.maybeFinish(run);
  }

  private async onFailed(shardId: string, failedReason: string): Promise<void> {
    const run = this.runs.ofShard(shardId);
    if (run === undefined || run.done.has(shardId)) return;
    // Replayed events (after a restart) may describe a job that has been retried since.
    if ((await this.queue.queue.getJobState(shardId)) !== 'failed') return;
    this.runs.leaveShard(run, shardId);
    run.failed.set(shardId, failedReason);
    await this.store.markFailed(run.spec.runId, shardId, failedReason);
    this.metrics.failures.inc();
    this.logger.log('error', 'shard failed after all attempts', {
      runId: run.spec.runId,
      shardId,
      reason: failedReason,
    });
    if (failedReason.startsWith('OUTPUT_NOT_WRITABLE:')) {
      // Every other shard of the run writes to the same folder: stop them all now instead of one by one.
      await this.failRunNow(
        run.spec.runId,
        `${failedReason} (the run stopped at once: every shard writes there)`.replace(
          '"rescale retry RUN"',
          `"rescale retry ${run.spec.runId}"`,
        ),
      );
      return;
    }
    await this.finisher.maybeFinish(run);
  }
}

/** When a queue event happened: its stream id starts with the milliseconds Redis added it at. */
function eventTime(eventId: string): number {
  const ms = Number.parseInt(eventId, 10);
  return Number.isFinite(ms) && ms > 0 ? ms : Date.now();
}
