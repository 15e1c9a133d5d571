// Read-only views for the control API and metrics: a run's status (from memory while followed, else from Redis),
// the recent runs, and the live workers.

import type { Redis } from 'ioredis';
import { errorMessage } from '../../contracts/errors.js';
import type { Logger } from '../../contracts/logger.js';
import {
  clusterKeys,
  parseWorkerRecord,
  TERMINAL_RUN_STATES,
  WORKER_TTL_MS,
  type RunState,
  type WorkerRecord,
} from '../../contracts/shard-queue.js';
import type { RunStore } from '../run-store.js';
import { documentsDone as followedDocumentsDone, sum, type RunTracker } from './run-tracker.js';

const MAX_FAILURES_LISTED = 20;

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
  /** Identical texts scored once (rows that copied an earlier identical document of their shard); null until merged. */
  readonly duplicates: number | null;
}

export class RunStatusReader {
  constructor(
    private readonly redis: Redis,
    private readonly store: RunStore,
    private readonly runs: RunTracker,
    private readonly logger: Logger,
  ) {}

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
      documentsDone = followedDocumentsDone(run);
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
      etaSeconds: (TERMINAL_RUN_STATES as readonly string[]).includes(record.state)
        ? 0
        : rate > 0
          ? remaining / rate
          : null,
      failures: [...failed].slice(0, MAX_FAILURES_LISTED).map(([shardId, reason]) => ({ shardId, reason })),
      createdAt: record.createdAt,
      finishedAt: record.finishedAt,
      error: record.error,
      manifest: record.manifest,
      duplicates: record.duplicates,
    };
  }

  async list(limit: number): Promise<RunStatus[]> {
    const ids = await this.store.list(limit);
    const statuses = await Promise.all(ids.map((id) => this.status(id).catch(() => null)));
    return statuses.filter((s): s is RunStatus => s !== null);
  }

  async liveWorkerIds(): Promise<string[]> {
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
}
