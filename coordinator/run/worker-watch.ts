// Watches the workers that hold shards and hands a dead worker's shard back to the queue at once, instead of
// leaving it locked until its BullMQ lock expires (20 s + a stall check). Two signs of death:
// - every Redis connection of the worker is gone: the process died (SIGKILL, OOM killer, crash) and its kernel
//   closed its sockets. Confirmed over two checks, and only while Redis itself has been up long enough for a live
//   worker to have reconnected after a Redis restart.
// - its heartbeat is older than `silenceMs` although its connections look open: a node that vanished without
//   closing them (power, network). A stalled event loop looks the same, so the bound is the lock's own.
// The shard is moved back with the dead worker's lock token: a worker that was only frozen and comes back finds its
// lock gone, so its late completion is refused by the queue and changes nothing. Hand-backs count as stalls in the
// job (BullMQ's `stc`), so a shard that kills every worker still fails after maxStalledCount deaths.

import type { Redis } from 'ioredis';
import { errorMessage } from '../../contracts/errors.js';
import type { Logger } from '../../contracts/logger.js';
import { clusterKeys, SHARD_QUEUE_SETTINGS } from '../../contracts/shard-queue.js';
import type { ShardQueue } from '../bullmq-shard-queue.js';
import type { CoordinatorMetrics } from '../coordinator-metrics.js';

export interface WorkerWatchOptions {
  /** How often the workers are checked (default 1 s). */
  readonly intervalMs?: number;
  /** A worker whose heartbeat is older than this is dead even with open connections (default: the lock, 20 s). */
  readonly silenceMs?: number;
  /** Redis must have been up this long before a missing connection counts (reconnect backoff is ≤ 2 s). */
  readonly redisSettleMs?: number;
  /** Hand-backs per shard before the queue's own stall check takes over (and fails it). */
  readonly maxStalledCount?: number;
}

export interface HandBack {
  readonly shardId: string;
  readonly workerId: string;
  readonly reason: 'connections closed' | 'heartbeat silent';
}

export class WorkerWatch {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private running: Promise<void> = Promise.resolve();
  /** Worker id → when its connections were first seen missing. */
  private readonly missingSince = new Map<string, number>();
  private readonly intervalMs: number;
  private readonly silenceMs: number;
  private readonly redisSettleMs: number;
  private readonly maxStalledCount: number;
  private lastErrorLog = 0;

  constructor(
    private readonly redis: Redis,
    private readonly queue: ShardQueue,
    private readonly metrics: CoordinatorMetrics,
    private readonly logger: Logger,
    options: WorkerWatchOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 1_000;
    this.silenceMs = options.silenceMs ?? SHARD_QUEUE_SETTINGS.lockDurationMs;
    this.redisSettleMs = options.redisSettleMs ?? 5_000;
    this.maxStalledCount = options.maxStalledCount ?? SHARD_QUEUE_SETTINGS.maxStalledCount;
  }

  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.check()
        .then(() => undefined)
        .catch((error: unknown) => {
          // Redis away: the watchdog reports it; nothing is handed back meanwhile.
          if (Date.now() - this.lastErrorLog < 10_000) return;
          this.lastErrorLog = Date.now();
          this.logger.log('debug', 'worker check skipped', { error: errorMessage(error) });
        })
        .finally(() => this.schedule());
    }, this.intervalMs);
    this.timer.unref();
  }

  /** One check: hands back the shards of dead workers; returns what it handed back. */
  async check(now = Date.now()): Promise<HandBack[]> {
    const active = await this.queue.queue.getActive(0, -1);
    const holders = new Map<string, string>();
    for (const job of active) {
      if (job.id !== undefined && typeof job.processedBy === 'string') holders.set(job.id, job.processedBy);
    }
    if (holders.size === 0) {
      this.missingSince.clear();
      return [];
    }
    const [connected, redisUpMs] = await Promise.all([this.connectedWorkers(), this.redisUptimeMs()]);
    const handed: HandBack[] = [];
    const seen = new Set<string>();
    for (const [shardId, workerId] of holders) {
      seen.add(workerId);
      const reason = await this.deathOf(workerId, connected, redisUpMs, now);
      if (reason === null) continue;
      if (await this.handBack(shardId, workerId, reason, now)) handed.push({ shardId, workerId, reason });
    }
    for (const id of [...this.missingSince.keys()]) if (!seen.has(id)) this.missingSince.delete(id);
    return handed;
  }

  private async deathOf(
    workerId: string,
    connected: ReadonlySet<string>,
    redisUpMs: number,
    now: number,
  ): Promise<HandBack['reason'] | null> {
    if (!connected.has(workerId)) {
      // Right after a Redis restart every worker is still reconnecting: wait until they have had the time.
      if (redisUpMs < this.redisSettleMs) {
        this.missingSince.delete(workerId);
        return null;
      }
      const since = this.missingSince.get(workerId);
      if (since === undefined) {
        this.missingSince.set(workerId, now);
        return null;
      }
      return now - since >= this.intervalMs * 0.9 ? 'connections closed' : null;
    }
    this.missingSince.delete(workerId);
    const beat = await this.redis.zscore(clusterKeys.workers, workerId);
    if (beat === null) return null; // not registered (yet): its lock decides
    return now - Number(beat) > this.silenceMs ? 'heartbeat silent' : null;
  }

  /** Moves the shard back to the queue with the holder's own lock token; false if someone else holds it now. */
  private async handBack(shardId: string, workerId: string, reason: HandBack['reason'], now: number): Promise<boolean> {
    const job = await this.queue.job(shardId);
    if (job === undefined || job.processedBy !== workerId) return false;
    const jobKey = this.queue.queue.toKey(shardId);
    const [token, stalls] = await Promise.all([
      this.redis.get(`${jobKey}:lock`),
      this.redis.hget(jobKey, 'stc').then((value) => Number(value ?? 0)),
    ]);
    if (token === null) return false; // the lock expired: the queue's stall check moves it
    if (stalls >= this.maxStalledCount) {
      this.logger.log('warn', 'shard lost its worker too often; left to the queue, which fails it', {
        shardId,
        workerId,
        stalls,
      });
      return false;
    }
    try {
      await job.moveToWait(token);
    } catch (error) {
      // The lock changed hands meanwhile (the worker renewed it, or another took the job): nothing to do.
      this.logger.log('debug', 'shard not handed back', { shardId, workerId, error: errorMessage(error) });
      return false;
    }
    await this.redis.hincrby(jobKey, 'stc', 1);
    const beat = await this.redis.zscore(clusterKeys.workers, workerId);
    if (reason === 'connections closed') {
      this.missingSince.delete(workerId);
      // Its registration would linger until it expires; the process is gone.
      await this.redis.multi().del(clusterKeys.worker(workerId)).zrem(clusterKeys.workers, workerId).exec();
    }
    this.metrics.stalls.inc();
    this.logger.log('warn', 'shard handed back: its worker is gone', {
      shardId,
      workerId,
      reason,
      lastHeartbeatMsAgo: beat === null ? null : now - Number(beat),
    });
    return true;
  }

  /** Ids of workers with at least one open Redis connection (named rescale-worker-<id>, or BullMQ's …:w:<id>). */
  private async connectedWorkers(): Promise<Set<string>> {
    const list = (await this.redis.client('LIST')) as string;
    const ids = new Set<string>();
    for (const line of list.split('\n')) {
      const match = / name=(\S+)/.exec(line);
      const name = match?.[1];
      if (name === undefined) continue;
      if (name.startsWith('rescale-worker-')) ids.add(name.slice('rescale-worker-'.length));
      const named = name.lastIndexOf(':w:');
      if (named >= 0) ids.add(name.slice(named + 3));
    }
    return ids;
  }

  private async redisUptimeMs(): Promise<number> {
    const info = await this.redis.info('server');
    const match = /uptime_in_seconds:(\d+)/.exec(info);
    return match === null ? Number.POSITIVE_INFINITY : Number(match[1]) * 1000;
  }
}
