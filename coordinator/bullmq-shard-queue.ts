// The shard queue on BullMQ: one job per shard whose id is the shard id (deterministic, so adding a shard twice
// never makes two jobs), attempts with exponential backoff, completed jobs kept a day and failed ones until retried.

import { Queue, type Job, type JobState } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../contracts/logger.js';
import { redisOptions, type RedisTarget } from '../contracts/redis-connection.js';
import {
  QUEUE_PREFIX,
  SHARD_QUEUE_NAME,
  SHARD_QUEUE_SETTINGS,
  type ShardJobData,
  type ShardJobResult,
} from '../contracts/shard-queue.js';
import type { ShardSpec } from '../contracts/shard.js';

export type ShardJobState = JobState | 'unknown';
export type ShardJob = Job<ShardJobData, ShardJobResult>;

/** Jobs added or looked up per Redis round trip burst. */
const BATCH = 500;

export class ShardQueue {
  readonly queue: Queue<ShardJobData, ShardJobResult>;

  constructor(target: RedisTarget, logger: Logger) {
    this.queue = new Queue<ShardJobData, ShardJobResult>(SHARD_QUEUE_NAME, {
      connection: redisOptions(target, { blocking: false, name: 'rescale-coordinator-queue' }),
      prefix: QUEUE_PREFIX,
      defaultJobOptions: {
        attempts: SHARD_QUEUE_SETTINGS.attempts,
        backoff: { type: 'exponential', delay: SHARD_QUEUE_SETTINGS.backoffDelayMs },
        removeOnComplete: { age: SHARD_QUEUE_SETTINGS.keepCompletedSeconds },
        removeOnFail: false,
      },
    });
    this.queue.on('error', (error) => logger.log('warn', 'shard queue error', { error: error.message }));
  }

  /** Adds one job per shard (job id = shard id); shards that already have a job keep it. */
  async add(runId: string, shards: readonly ShardSpec[]): Promise<void> {
    for (let i = 0; i < shards.length; i += BATCH) {
      await this.queue.addBulk(
        shards
          .slice(i, i + BATCH)
          .map((shard) => ({ name: 'shard', data: { runId, shard }, opts: { jobId: shard.id } })),
      );
    }
  }

  async states(ids: readonly string[]): Promise<Map<string, ShardJobState>> {
    const states = new Map<string, ShardJobState>();
    for (let i = 0; i < ids.length; i += BATCH) {
      const slice = ids.slice(i, i + BATCH);
      const found = await Promise.all(slice.map((id) => this.queue.getJobState(id)));
      slice.forEach((id, k) => states.set(id, found[k] as ShardJobState));
    }
    return states;
  }

  async job(id: string): Promise<ShardJob | undefined> {
    return (await this.queue.getJob(id)) ?? undefined;
  }

  /** Removes a job that no worker holds; false when it is locked (active) or gone. */
  async remove(id: string): Promise<boolean> {
    return (await this.queue.remove(id)) === 1;
  }

  async counts(): Promise<Record<'waiting' | 'active' | 'delayed' | 'prioritized' | 'completed' | 'failed', number>> {
    const counts = await this.queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed');
    return {
      waiting: counts.waiting ?? 0,
      active: counts.active ?? 0,
      delayed: counts.delayed ?? 0,
      prioritized: counts.prioritized ?? 0,
      completed: counts.completed ?? 0,
      failed: counts.failed ?? 0,
    };
  }

  /** Jobs completed since `since` (ms) → their completion time (the queue's completed set is scored by it). */
  async completedSince(redis: Redis, since: number): Promise<Map<string, number>> {
    const flat = (await redis.zrangebyscore(this.queue.toKey('completed'), since, '+inf', 'WITHSCORES')) as string[];
    const times = new Map<string, number>();
    for (let i = 0; i + 1 < flat.length; i += 2) times.set(flat[i] as string, Number(flat[i + 1]));
    return times;
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}
