// The runs this coordinator follows (state running or merging), in memory while Redis holds the truth: loaded from
// the run store, found by shard id, and the one place a finished shard is recorded.

import { errorMessage } from '../../contracts/errors.js';
import type { Logger } from '../../contracts/logger.js';
import type { RunSpec } from '../../contracts/shard-queue.js';
import type { ShardPlan } from '../../contracts/shard.js';
import { shardResultPath } from '../../storage/output-layout.js';
import type { CoordinatorMetrics } from '../coordinator-metrics.js';
import type { FallbackService } from '../fallback-service.js';
import type { RunStore } from '../run-store.js';
import { RateMeter } from './rate-meter.js';
import { fileExists } from './result-files.js';

/** In-memory view of a run in state running or merging; Redis holds the truth. */
export interface ActiveRun {
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

export type ShardEngine = Parameters<RunStore['markDone']>[2];

export class RunTracker {
  private readonly runs = new Map<string, ActiveRun>();
  private readonly shardRun = new Map<string, string>();

  constructor(
    private readonly store: RunStore,
    private readonly fallbacks: FallbackService,
    private readonly metrics: CoordinatorMetrics,
    private readonly logger: Logger,
    /** Shards completed in the queue since a time (ms) → their completion time, to rebuild a run's rate. */
    private readonly completedSince: (since: number) => Promise<Map<string, number>> = async () => new Map(),
  ) {}

  get(runId: string): ActiveRun | undefined {
    return this.runs.get(runId);
  }

  /** The followed run a shard belongs to. */
  ofShard(shardId: string): ActiveRun | undefined {
    const runId = this.shardRun.get(shardId);
    return runId === undefined ? undefined : this.runs.get(runId);
  }

  all(): ActiveRun[] {
    return [...this.runs.values()];
  }

  track(shardId: string, update: (run: ActiveRun) => void): void {
    const run = this.ofShard(shardId);
    if (run !== undefined) update(run);
  }

  async activate(runId: string): Promise<ActiveRun> {
    const existing = this.runs.get(runId);
    if (existing !== undefined) return existing;
    const [spec, plan, done, failed] = await Promise.all([
      this.store.spec(runId),
      this.store.plan(runId),
      this.store.doneIds(runId),
      this.store.failed(runId),
    ]);
    const rowsOf = new Map(plan.shards.map((s) => [s.id, s.rowEnd - s.rowStart]));
    const run: ActiveRun = {
      spec,
      plan,
      rowsOf,
      done,
      failed,
      inFlight: new Map(),
      rowsDone: sum([...done].map((id) => rowsOf.get(id) ?? 0)),
      // The rate's span starts at the run's submission, not at this coordinator's start: after a restart, the
      // completions found in the queue were the work of the time since the run began, not since the restart.
      rate: new RateMeter(runOrigin(spec.createdAt)),
    };
    // The rate of the last minute from the queue's completion times (a restarted coordinator resumes it).
    const recent = await this.completedSince(Date.now() - 60_000).catch(() => new Map<string, number>());
    for (const [shardId, at] of recent) if (done.has(shardId)) run.rate.add(rowsOf.get(shardId) ?? 0, at);
    this.runs.set(runId, run);
    for (const shard of plan.shards) this.shardRun.set(shard.id, runId);
    return run;
  }

  /** Stops following the run, and answering its fallback queue (kept in Redis: a resumed run answers it again). */
  deactivate(runId: string): void {
    void this.fallbacks
      .stop(runId, { purge: false })
      .catch((error: unknown) =>
        this.logger.log('warn', 'fallback queue not stopped cleanly', { runId, error: errorMessage(error) }),
      );
    const run = this.runs.get(runId);
    if (run === undefined) return;
    this.runs.delete(runId);
    for (const shard of run.plan.shards) if (this.shardRun.get(shard.id) === runId) this.shardRun.delete(shard.id);
  }

  /** A worker took the shard. */
  startShard(run: ActiveRun, shardId: string): void {
    this.leaveShard(run, shardId);
    if (run.done.has(shardId)) return; // a replayed event, or a duplicate delivery that will skip
    run.inFlight.set(shardId, 0);
  }

  /** A worker reported `documents` done in the shard at `at`. */
  progress(run: ActiveRun, shardId: string, documents: number, at: number): void {
    const counted = run.inFlight.get(shardId);
    if (counted === undefined || documents <= counted) return;
    run.inFlight.set(shardId, documents);
    run.rate.add(documents - counted, at);
  }

  /** The shard left its worker without completing (handed back, stalled, delayed, failed): its progress is void. */
  leaveShard(run: ActiveRun, shardId: string): void {
    const counted = run.inFlight.get(shardId);
    if (counted === undefined) return;
    run.inFlight.delete(shardId);
    run.rate.add(-counted);
  }

  /**
   * Records a finished shard once its result file is visible here; a missing file fails the shard instead. `at`:
   * when the shard completed (the queue's time), for the rate.
   */
  async recordDone(
    run: ActiveRun,
    shardId: string,
    engine: ShardEngine,
    workerId: string | null,
    at = Date.now(),
  ): Promise<void> {
    const { runId, resultDir } = run.spec;
    const counted = run.inFlight.get(shardId) ?? 0;
    run.inFlight.delete(shardId);
    if (run.done.has(shardId)) {
      run.rate.add(-counted); // its rows are counted already
      return;
    }
    if (!(await fileExists(shardResultPath(resultDir, shardId)))) {
      const reason =
        `INTERNAL: worker ${workerId ?? '?'} reported the shard done, but ` +
        `${shardResultPath(resultDir, shardId)} is not visible to the coordinator; workers and coordinator must ` +
        'share that filesystem path';
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
    run.rate.add(rows - counted, at);
    this.metrics.completions.inc();
    this.metrics.documents.inc(rows);
  }
}

/** When the run began (ms), for its rate; now when the spec's time is unreadable. */
export function runOrigin(createdAt: string, now = Date.now()): number {
  const at = Date.parse(createdAt);
  return Number.isFinite(at) && at <= now ? at : now;
}

/** Documents of a followed run done so far: its finished shards and the progress of those being processed. */
export function documentsDone(run: ActiveRun): number {
  return run.rowsDone + sum(run.inFlight.values());
}

export function sum(values: Iterable<number>): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}
