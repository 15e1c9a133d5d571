// The control API's changes to runs: submit (create, or resume a cancelled or failed one), cancel, and retry of
// failed shards. The facade runs each in the mutation chain and answers with the run's status.

import type { Redis } from 'ioredis';
import { RescaleError } from '../../contracts/errors.js';
import type { Logger } from '../../contracts/logger.js';
import { clusterKeys } from '../../contracts/shard-queue.js';
import type { ShardQueue } from '../bullmq-shard-queue.js';
import type { RunStore } from '../run-store.js';
import type { FallbackSupervisor } from './fallback-supervisor.js';
import type { DataRoots } from '../data-roots.js';
import { outputLayout } from '../../storage/output-layout.js';
import { removeCoordinatorLock, writeCoordinatorLock } from '../../storage/output-lock.js';
import {
  checkOutputFree,
  planSubmission,
  prepareRunFiles,
  type FallbackSources,
  type SubmitRequest,
} from './plan-submission.js';
import { resultFileName, resultFiles } from './result-files.js';
import type { RunFinisher } from './run-finisher.js';
import type { RunTracker } from './run-tracker.js';
import type { ShardEnqueuer } from './shard-enqueuer.js';

export interface SubmitResult {
  readonly runId: string;
  /** False when the run already existed (returned as is, or resumed if it had been cancelled or had failed). */
  readonly created: boolean;
}

export class RunControl {
  constructor(
    private readonly redis: Redis,
    private readonly store: RunStore,
    private readonly queue: ShardQueue,
    private readonly runs: RunTracker,
    private readonly enqueuer: ShardEnqueuer,
    private readonly fallbacks: FallbackSupervisor,
    private readonly finisher: RunFinisher,
    /** Where the fallback's calls may go and its keys come from. */
    private readonly fallbackSources: FallbackSources,
    /** The folders a submitted run's paths must resolve into. */
    private readonly roots: DataRoots,
    private readonly logger: Logger,
  ) {}

  async submit(request: SubmitRequest): Promise<SubmitResult> {
    const planned = await planSubmission(request, this.fallbackSources, this.roots);
    const { runId, plan, output } = planned;
    const existing = await this.store.record(runId);
    const isLive = async (other: string): Promise<boolean> => {
      const state = (await this.store.record(other))?.state;
      return state === 'running' || state === 'merging';
    };

    if (existing !== null && request.overwrite !== true) {
      // A coordinator stopped between the merge and removing the lock left it behind a finished run.
      if (existing.state === 'succeeded') await removeCoordinatorLock(outputLayout(output), runId);
      if (existing.state === 'failed' || existing.state === 'cancelled') {
        await checkOutputFree(outputLayout(output), runId, isLive);
        await this.resume(runId);
        this.logger.log('info', 'run resumed by a new submit', { runId, was: existing.state });
      }
      return { runId, created: false };
    }
    if (existing !== null && (existing.state === 'running' || existing.state === 'merging')) {
      throw new RescaleError(
        'RUN_CONFLICT',
        `run ${runId} is ${existing.state}; cancel it ("rescale cancel ${runId}") before submitting it again with ` +
          'overwrite',
      );
    }
    // Another live run into this output (local or cluster) is refused before anything is written.
    await checkOutputFree(outputLayout(output), runId, isLive);
    const others = await this.enqueuer.foreignJobs(runId, plan.shards);
    const spec = await prepareRunFiles(planned, request.overwrite === true);
    if (existing !== null) await this.fallbacks.reset(runId);
    await this.store.create(spec, plan, { reset: existing !== null });
    const run = await this.runs.activate(runId);
    await this.fallbacks.startOrThrow(run);
    await this.enqueuer.enqueue(run, others);
    this.logger.log('info', 'run submitted', {
      runId,
      task: spec.task,
      shards: spec.totalShards,
      rows: spec.totalRows,
      alreadyDone: run.done.size,
      output,
    });
    for (const warning of plan.warnings ?? []) this.logger.log('warn', warning, { runId });
    await this.finisher.maybeFinish(run);
    return { runId, created: true };
  }

  /** A cancelled or failed run back to running: finished shards kept, the rest queued with fresh attempts. */
  private async resume(runId: string): Promise<void> {
    await this.store.transition(runId, ['cancelled', 'failed'], 'running', { finishedAt: '', error: '' });
    const run = await this.runs.activate(runId);
    await writeCoordinatorLock(outputLayout(run.spec.output), runId, 'running');
    await this.fallbacks.startOrThrow(run);
    await this.enqueuer.enqueue(
      run,
      await this.enqueuer.foreignJobs(
        runId,
        run.plan.shards.filter((s) => !run.done.has(s.id)),
      ),
    );
    await this.finisher.maybeFinish(run);
  }

  /** Stops a running run: queued shards removed, workers told to stop its active ones. */
  async cancel(runId: string): Promise<void> {
    const record = await this.store.requireRecord(runId);
    if (record.state === 'merging')
      throw new RescaleError('RUN_CONFLICT', `run ${runId} is merging its results; nothing is left to cancel`);
    if (record.state !== 'running') return;
    await this.store.transition(runId, ['running'], 'cancelled', { finishedAt: new Date().toISOString() });
    const { removed, active, output } = await this.withdraw(runId);
    await this.fallbacks.stop(runId);
    this.runs.deactivate(runId);
    // The output stays marked as not complete (its lock says cancelled) until the run is resumed or overwritten.
    await this.markOutput(output, runId, 'cancelled');
    this.logger.log('info', 'run cancelled', { runId, removedJobs: removed, activeJobs: active });
  }

  /**
   * Fails a running run at once, for a shard failure every other shard would repeat (an output folder the workers
   * cannot write): its queued shards are removed and its active ones stopped instead of each failing in turn.
   * `rescale retry` queues them all again. Runs inside the mutation chain.
   */
  async failNow(runId: string, error: string): Promise<void> {
    if (!(await this.store.transition(runId, ['running'], 'failed', { finishedAt: new Date().toISOString(), error })))
      return;
    const { removed, active, output } = await this.withdraw(runId);
    this.runs.deactivate(runId);
    await this.markOutput(output, runId, 'failed');
    this.logger.log('error', 'run failed at once', { runId, removedJobs: removed, activeJobs: active, error });
  }

  /** The output's lock says the run is cancelled or failed: not complete, and free for a resubmission. */
  private async markOutput(output: string, runId: string, state: 'cancelled' | 'failed'): Promise<void> {
    await writeCoordinatorLock(outputLayout(output), runId, state).catch((error: unknown) =>
      this.logger.log('warn', 'output lock not updated', { runId, state, error: String(error) }),
    );
  }

  /** Tells workers to drop the run's active shards and removes its queued ones; counts both. */
  private async withdraw(runId: string): Promise<{ removed: number; active: number; output: string }> {
    await this.redis.publish(clusterKeys.control, JSON.stringify({ type: 'cancel', runId }));
    const run = await this.runs.activate(runId);
    const outstanding = run.plan.shards.filter((s) => !run.done.has(s.id)).map((s) => s.id);
    const states = await this.queue.states(outstanding);
    let removed = 0;
    for (const [id, state] of states) {
      if (
        state === 'waiting' ||
        state === 'delayed' ||
        state === 'prioritized' ||
        state === 'failed' ||
        state === 'waiting-children'
      ) {
        if (await this.queue.remove(id)) removed += 1;
      }
    }
    return { removed, active: [...states.values()].filter((s) => s === 'active').length, output: run.spec.output };
  }

  /** Queues a failed or running run's failed shards again; returns how many (0 when the run is in no such state). */
  async retryFailed(runId: string): Promise<number> {
    const record = await this.store.requireRecord(runId);
    if (record.state === 'cancelled')
      throw new RescaleError('RUN_CONFLICT', `run ${runId} was cancelled; submit it again to resume it`);
    if (record.state !== 'failed' && record.state !== 'running') return 0;
    const run = await this.runs.activate(runId);
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
    const orphaned = [...(await this.queue.states(outstanding))]
      .filter(([, state]) => state === 'unknown' || state === 'failed')
      .map(([id]) => id);
    const ids = [...new Set([...run.failed.keys(), ...vanished, ...orphaned])];
    const shards = run.plan.shards.filter((s) => ids.includes(s.id));
    for (const shard of shards) await this.queue.remove(shard.id);
    run.failed.clear();
    await this.store.clearFailed(runId, ids);
    // Running (and its fallback answering) before the shards are queued: workers refuse shards of a failed run.
    await this.store.transition(runId, ['failed'], 'running', { finishedAt: '', error: '' });
    await writeCoordinatorLock(outputLayout(run.spec.output), runId, 'running');
    await this.fallbacks.startOrThrow(run);
    await this.queue.add(runId, shards);
    this.logger.log('info', 'failed shards queued again', { runId, shards: shards.length });
    await this.finisher.maybeFinish(run);
    return shards.length;
  }
}
