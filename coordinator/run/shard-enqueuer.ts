// Puts a run's outstanding shards on the queue: records shards whose result file exists (its own, or copied from an
// identical run into another output), restarts finished or failed leftovers, and refuses shards another live run holds.

import { copyFile, rename } from 'node:fs/promises';
import { RescaleError } from '../../contracts/errors.js';
import type { Logger } from '../../contracts/logger.js';
import type { ShardSpec } from '../../contracts/shard.js';
import { shardResultPath, tempFileFor } from '../../storage/output-layout.js';
import type { ShardJobState, ShardQueue } from '../bullmq-shard-queue.js';
import type { RunStore } from '../run-store.js';
import { fileExists, resultFileName, resultFiles } from './result-files.js';
import type { ActiveRun, RunTracker } from './run-tracker.js';

/** Jobs of this run's shard ids that belong to another run → that run and the job's state. */
export type ForeignJobs = ReadonlyMap<string, { runId: string; state: ShardJobState }>;

export class ShardEnqueuer {
  constructor(
    private readonly store: RunStore,
    private readonly queue: ShardQueue,
    private readonly runs: RunTracker,
    private readonly logger: Logger,
  ) {}

  /**
   * Jobs that already exist for this plan's shard ids but belong to another run (the same corpus and codebook into
   * another output). One still being worked on for a live run is a conflict; the rest are reused or replaced.
   */
  async foreignJobs(
    runId: string,
    shards: readonly ShardSpec[],
  ): Promise<Map<string, { runId: string; state: ShardJobState }>> {
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
          throw new RescaleError(
            'RUN_CONFLICT',
            `shard ${id} of this run is being classified for run ${owner} (the same corpus and codebook into another ` +
              'output); wait for that run or cancel it, then submit again',
          );
        }
      }
      foreign.set(id, { runId: owner, state });
    }
    return foreign;
  }

  /** Queues every shard of the run that has no result file yet; reuses finished files of an identical shard. */
  async enqueue(run: ActiveRun, foreign: ForeignJobs): Promise<void> {
    const { runId, resultDir } = run.spec;
    const written = await resultFiles(resultDir);
    const pending = run.plan.shards.filter((s) => !run.done.has(s.id));
    const states = await this.queue.states(pending.map((s) => s.id));
    const toAdd: ShardSpec[] = [];
    for (const shard of pending) {
      if (written.has(resultFileName(shard.id))) {
        await this.runs.recordDone(run, shard.id, null, null);
        continue;
      }
      const state = states.get(shard.id) ?? 'unknown';
      const other = foreign.get(shard.id);
      if (
        other !== undefined &&
        state === 'completed' &&
        (await this.copyForeignResult(other.runId, shard.id, resultDir))
      ) {
        await this.runs.recordDone(run, shard.id, null, null);
        continue;
      }
      if (state === 'unknown') {
        toAdd.push(shard);
      } else if (state === 'completed' || state === 'failed' || other !== undefined) {
        // A finished job without our result file, a failed one, or a leftover of another run: start afresh.
        if (await this.queue.remove(shard.id)) toAdd.push(shard);
        else
          throw new RescaleError(
            'RUN_CONFLICT',
            `shard ${shard.id} is held by a worker right now; submit again in a moment`,
          );
      }
      // waiting, delayed, prioritized or active jobs of this run stay as they are.
    }
    run.failed.clear();
    await this.store.clearFailed(
      runId,
      pending.map((s) => s.id),
    );
    await this.queue.add(runId, toAdd);
  }

  private async copyForeignResult(otherRunId: string, shardId: string, resultDir: string): Promise<boolean> {
    const other = await this.store.spec(otherRunId).catch(() => undefined);
    if (other === undefined) return false;
    const source = shardResultPath(other.resultDir, shardId);
    if (!(await fileExists(source))) return false;
    const target = shardResultPath(resultDir, shardId);
    const temp = tempFileFor(target, `${process.pid}-copy`);
    await copyFile(source, temp);
    await rename(temp, target);
    this.logger.log('info', 'reused a shard result of an identical run', { shardId, from: otherRunId });
    return true;
  }
}
