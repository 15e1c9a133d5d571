// A run's closed-model fallback as the run sees it: started whenever the run (re)starts running, and the run failed
// at once when its fallback cannot go on (no key here, a refused key, an unknown model, an unwritable cache).

import type { Redis } from 'ioredis';
import { parseCodebookText } from '../../contracts/codebook.js';
import { RescaleError, errorMessage, isRescaleError } from '../../contracts/errors.js';
import type { Logger } from '../../contracts/logger.js';
import type { RedisTarget } from '../../contracts/redis-connection.js';
import { clusterKeys } from '../../contracts/shard-queue.js';
import { RedisBudget } from '../../fallback/redis-budget.js';
import type { ShardQueue } from '../bullmq-shard-queue.js';
import { FallbackService } from '../fallback-service.js';
import type { RunStore } from '../run-store.js';
import type { MutationChain } from './mutation-chain.js';
import type { ActiveRun, RunTracker } from './run-tracker.js';

export class FallbackSupervisor {
  constructor(
    private readonly fallbacks: FallbackService,
    private readonly target: RedisTarget,
    private readonly redis: Redis,
    private readonly store: RunStore,
    private readonly queue: ShardQueue,
    private readonly runs: RunTracker,
    private readonly chain: MutationChain,
    private readonly logger: Logger,
  ) {}

  /**
   * Starts answering a running run's fallback queue; when this coordinator cannot (no key), the run fails at once
   * with the reason. True when the run can go on.
   */
  async start(run: ActiveRun): Promise<boolean> {
    if (run.spec.fallback?.active !== true) return true;
    try {
      const codebook = parseCodebookText(run.spec.codebookText, run.spec.codebookPath);
      await this.fallbacks.start(run.spec, codebook);
      return true;
    } catch (error) {
      await this.failNow(
        run.spec.runId,
        isRescaleError(error) ? error : new RescaleError('INTERNAL', errorMessage(error)),
      );
      return false;
    }
  }

  /** As `start`, for a caller that answers a request: a fallback that cannot start is the request's error. */
  async startOrThrow(run: ActiveRun): Promise<void> {
    const { runId } = run.spec;
    if (await this.start(run)) return;
    throw new RescaleError(
      'CONFIG_INVALID',
      (await this.store.record(runId))?.error ?? `run ${runId} cannot start its fallback`,
    );
  }

  /** Stops answering the run's fallback queue and removes the queue (a cancel). */
  async stop(runId: string): Promise<void> {
    await this.fallbacks.stop(runId, { purge: true });
  }

  /** Overwrite: the run's budget ledger starts again from the audit file (which keeps what was spent). */
  async reset(runId: string): Promise<void> {
    await RedisBudget.reset(this.redis, runId);
    await FallbackService.purge(this.target, runId);
  }

  /** A fallback error that no shard retry can fix stops the run: the key was refused, the model is unknown... */
  fail(runId: string, error: RescaleError): Promise<void> {
    return this.chain
      .exclusive(() => this.failNow(runId, error))
      .catch((cause: unknown) =>
        this.logger.log('warn', 'run not failed cleanly', { runId, error: errorMessage(cause) }),
      );
  }

  private async failNow(runId: string, error: RescaleError): Promise<void> {
    const message = `${error.code}: ${error.message}`;
    if (
      !(await this.store.transition(runId, ['running'], 'failed', {
        finishedAt: new Date().toISOString(),
        error: message,
      }))
    )
      return;
    this.logger.log('error', 'run failed: its closed-model fallback cannot go on', { runId, error: message });
    // Workers stop the run's active shards (as for a cancel); queued shards wait for "rescale retry".
    await this.redis.publish(clusterKeys.control, JSON.stringify({ type: 'cancel', runId }));
    const run = await this.runs.activate(runId);
    const outstanding = run.plan.shards.filter((s) => !run.done.has(s.id)).map((s) => s.id);
    for (const [id, state] of await this.queue.states(outstanding)) {
      if (state === 'waiting' || state === 'delayed' || state === 'prioritized') await this.queue.remove(id);
    }
    this.runs.deactivate(runId);
  }
}
