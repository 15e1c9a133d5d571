// Brings followed runs in line with the shard queue: at start (runs recovered from Redis, interrupted merges
// finished) and then on a timer, recording what queue events missed and queueing shards whose job was lost.

import { errorMessage } from '../../contracts/errors.js';
import type { Logger } from '../../contracts/logger.js';
import { parseShardJobResult } from '../../contracts/shard-queue.js';
import type { ShardSpec } from '../../contracts/shard.js';
import type { ShardQueue } from '../bullmq-shard-queue.js';
import type { RunStore } from '../run-store.js';
import type { FallbackSupervisor } from './fallback-supervisor.js';
import type { MutationChain } from './mutation-chain.js';
import { resultFileName, resultFiles } from './result-files.js';
import type { RunFinisher } from './run-finisher.js';
import type { ActiveRun, RunTracker, ShardEngine } from './run-tracker.js';

export class RunReconciler {
  private reconcileTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly store: RunStore,
    private readonly queue: ShardQueue,
    private readonly runs: RunTracker,
    private readonly fallbacks: FallbackSupervisor,
    private readonly finisher: RunFinisher,
    private readonly chain: MutationChain,
    private readonly reconcileIntervalMs: number,
    private readonly logger: Logger,
  ) {}

  /** At start: follow every running run again (reconciled with the queue) and finish interrupted merges. */
  async recover(): Promise<void> {
    const started = performance.now();
    const running = await this.store.runsIn(['running']);
    const merging = await this.store.runsIn(['merging']);
    let recorded = 0;
    for (const runId of running) {
      const run = await this.runs.activate(runId);
      if (!(await this.fallbacks.start(run))) continue;
      const before = run.done.size;
      await this.reconcile(run);
      recorded += run.done.size - before;
    }
    for (const runId of merging) {
      await this.runs.activate(runId);
      this.finisher.startMerge(runId);
    }
    if (running.length + merging.length > 0) {
      this.logger.log('info', 'resumed runs from redis', {
        running,
        merging,
        shardsRecorded: recorded,
        ms: Math.round(performance.now() - started),
      });
    }
  }

  /** Reconciles every running run every `reconcileIntervalMs`; queue events do the work in between. */
  start(): void {
    this.scheduleReconcile();
  }

  stop(): void {
    this.stopped = true;
    if (this.reconcileTimer !== undefined) clearTimeout(this.reconcileTimer);
  }

  /** Brings a running run in line with the queue: records missed completions and failures, requeues lost jobs. */
  private async reconcile(run: ActiveRun): Promise<void> {
    const { runId, resultDir } = run.spec;
    const outstanding = run.plan.shards.filter((s) => !run.done.has(s.id) && !run.failed.has(s.id));
    if (outstanding.length === 0) return this.finisher.maybeFinish(run);
    const states = await this.queue.states(outstanding.map((s) => s.id));
    const written = await resultFiles(resultDir);
    const lost: ShardSpec[] = [];
    for (const shard of outstanding) {
      const state = states.get(shard.id) ?? 'unknown';
      if (state === 'completed' || (state === 'unknown' && written.has(resultFileName(shard.id)))) {
        const job = state === 'completed' ? await this.queue.job(shard.id) : undefined;
        const engine = job?.returnvalue !== undefined && job.returnvalue !== null ? safeEngine(job.returnvalue) : null;
        await this.runs.recordDone(run, shard.id, engine, null, job?.finishedOn ?? Date.now());
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
      this.logger.log('warn', 'shards had no job in the queue (Redis lost data?); queued again', {
        runId,
        shards: lost.length,
      });
      await this.queue.add(runId, lost);
    }
    await this.finisher.maybeFinish(run);
  }

  private scheduleReconcile(): void {
    if (this.stopped) return;
    this.reconcileTimer = setTimeout(() => {
      void this.chain
        .exclusive(async () => {
          for (const run of this.runs.all()) {
            const record = await this.store.record(run.spec.runId);
            if (record?.state === 'running') await this.reconcile(run);
          }
        })
        .catch((error: unknown) =>
          this.logger.log('warn', 'reconciliation failed; retrying later', { error: errorMessage(error) }),
        )
        .finally(() => this.scheduleReconcile());
    }, this.reconcileIntervalMs);
    this.reconcileTimer.unref();
  }
}

function safeEngine(returnvalue: unknown): ShardEngine {
  try {
    return parseShardJobResult(returnvalue).engine;
  } catch {
    return null;
  }
}
