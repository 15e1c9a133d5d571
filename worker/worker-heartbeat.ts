// A worker's registration in Redis: who it is (host, CPU/GPU), what it holds (model) and does (run, shard),
// refreshed every few seconds with an expiry, so `rescale workers` lists live workers and dead ones drop out.

import os from 'node:os';
import type { Redis } from 'ioredis';
import { errorMessage } from '../contracts/errors.js';
import type { Logger } from '../contracts/logger.js';
import { RESCALE_VERSION } from '../contracts/package-root.js';
import { clusterKeys, WORKER_HEARTBEAT_MS, WORKER_TTL_MS, type WorkerRecord } from '../contracts/shard-queue.js';

export type WorkerStatus = Pick<
  WorkerRecord,
  'state' | 'model' | 'runId' | 'shardId' | 'shardsDone' | 'documentsDone' | 'gpu'
>;

export class WorkerHeartbeat {
  private record: WorkerRecord;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly redis: Redis,
    readonly workerId: string,
    private readonly logger: Logger,
    /** Runs on every beat (after the write), e.g. to notice that the current run was cancelled. */
    private readonly onBeat: () => Promise<void> = async () => undefined,
  ) {
    const now = new Date().toISOString();
    this.record = {
      id: workerId,
      host: os.hostname(),
      pid: process.pid,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      gpu: null,
      state: 'starting',
      model: null,
      runId: null,
      shardId: null,
      shardsDone: 0,
      documentsDone: 0,
      startedAt: now,
      heartbeatAt: now,
      version: RESCALE_VERSION,
    };
  }

  get status(): WorkerStatus {
    return this.record;
  }

  async start(): Promise<void> {
    await this.write();
    this.schedule();
  }

  /** Changes the record and writes it at once (the beat keeps it alive afterwards). */
  update(patch: Partial<WorkerStatus>): void {
    this.record = { ...this.record, ...patch };
    this.writing = this.writing.then(() => this.write());
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.writing = this.writing.then(async () => {
        await this.write();
        await this.onBeat().catch((error: unknown) =>
          this.logger.log('warn', 'heartbeat check failed', { error: errorMessage(error) }),
        );
      });
      void this.writing.then(() => this.schedule());
    }, WORKER_HEARTBEAT_MS);
    this.timer.unref();
  }

  /** Never rejects: a failed write is logged, and the chain in `writing` goes on. */
  private async write(): Promise<void> {
    if (this.stopped) return;
    const now = Date.now();
    this.record = { ...this.record, heartbeatAt: new Date(now).toISOString() };
    try {
      await this.redis
        .multi()
        .set(clusterKeys.worker(this.workerId), JSON.stringify(this.record), 'PX', WORKER_TTL_MS)
        .zadd(clusterKeys.workers, now, this.workerId)
        .exec();
    } catch (error) {
      // Redis away: the watchdog decides when to give up; the registration expires meanwhile, as it should.
      this.logger.log('debug', 'heartbeat not written', { error: errorMessage(error) });
    }
  }

  /** Removes the registration: a worker that stops cleanly disappears from `rescale workers` at once. */
  async stop(): Promise<void> {
    await this.writing;
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    try {
      await this.redis.multi().del(clusterKeys.worker(this.workerId)).zrem(clusterKeys.workers, this.workerId).exec();
    } catch (error) {
      this.logger.log('debug', 'worker registration not removed', { error: errorMessage(error) });
    }
  }
}
