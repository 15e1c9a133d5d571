// Cluster mode's fallback, answered on the coordinator: for each running run with an active fallback, a BullMQ
// worker on the run's fallback queue turns routed-document jobs (added by shard workers) into outcomes through the
// same FallbackStage local mode uses — response cache and audit log beside the output, on the shared filesystem.
// The limits are global: a Redis token bucket per endpoint + model counts every HTTP attempt (requests and tokens
// per minute, shared pause after a 429) and the run's budget is a Redis ledger. BullMQ's own queue `limiter` is not
// used: it counts job starts, and a job may be a free cache hit (a re-run, a Batch API answer) or several HTTP
// attempts (retries, a correction round), so it would both throttle free answers and miss retries. Only this
// process needs the API key; shard workers never see it.

import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import type { Codebook } from '../contracts/codebook.js';
import { RescaleError, isRescaleError } from '../contracts/errors.js';
import {
  encodeFallbackJobFailure,
  fallbackJobFailure,
  fallbackQueueName,
  parseFallbackJobData,
  type QuestionOutcomesResult,
} from '../contracts/fallback-queue.js';
import type { Logger } from '../contracts/logger.js';
import { redisOptions, type RedisTarget } from '../contracts/redis-connection.js';
import type { FallbackOutcome } from '../contracts/results.js';
import { QUEUE_PREFIX, type RunSpec } from '../contracts/shard-queue.js';
import { Queue } from 'bullmq';
import { readLedger } from '../fallback/audit-log.js';
import { budgetLimits } from '../fallback/budget.js';
import type { EndpointList } from '../fallback/endpoint-list.js';
import { FallbackStage, type FallbackStats } from '../fallback/fallback-stage.js';
import { RedisBudget } from '../fallback/redis-budget.js';
import { rateLimitKey, RedisRateLimiter } from '../fallback/redis-rate-limiter.js';
import { resolveFallback } from '../fallback/resolve-fallback.js';

export interface FallbackServiceOptions {
  readonly redis: RedisTarget;
  /** The coordinator's command connection (budget and rate-limit scripts). */
  readonly connection: Redis;
  readonly logger: Logger;
  /** Where the endpoints' key variables are looked up (the coordinator's environment). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** `--endpoints FILE`: the only URLs and key sources a run's fallback may use; null: none. */
  readonly endpoints: EndpointList | null;
  /** Whether the run is still running (jobs of a cancelled or failed run are not answered). */
  readonly isRunning: (runId: string) => Promise<boolean>;
  /** A fallback error that stops the run (a refused key, an unknown model, an unwritable cache). */
  readonly onFatal: (runId: string, error: RescaleError) => void;
  /** Every outcome given (metrics). */
  readonly onOutcome?: (outcome: FallbackOutcome) => void;
}

interface RunFallback {
  readonly stage: FallbackStage;
  readonly worker: Worker;
  readonly budget: RedisBudget;
}

export class FallbackService {
  private readonly runs = new Map<string, Promise<RunFallback>>();

  constructor(private readonly options: FallbackServiceOptions) {}

  /** Starts answering the run's fallback queue (idempotent). Throws when this coordinator cannot run its fallback. */
  async start(spec: RunSpec, codebook: Codebook): Promise<void> {
    const setting = spec.fallback;
    if (setting === undefined || !setting.active) return;
    let started = this.runs.get(spec.runId);
    if (started === undefined) {
      started = this.open(spec, codebook, setting);
      this.runs.set(spec.runId, started);
      started.catch(() => this.runs.delete(spec.runId));
    }
    await started;
  }

  private async open(
    spec: RunSpec,
    codebook: Codebook,
    setting: { mode: 'live' | 'offline'; cacheDir: string; auditFile: string; identity?: string | undefined },
  ): Promise<RunFallback> {
    const { runId } = spec;
    // Resolved again from this coordinator's own list (a run may outlive a restart): never from the codebook.
    const plan = await resolveFallback(codebook, {
      offline: setting.mode === 'offline',
      env: this.options.env,
      endpoints: this.options.endpoints,
      endpointsOnly: true,
    });
    if (!plan.active) {
      throw new RescaleError(
        'CONFIG_INVALID',
        `run ${runId} needs the closed-model fallback, but this coordinator cannot run it: ${plan.reason}; start the ` +
          'coordinator with the key available, or submit with --no-fallback',
      );
    }
    if (setting.identity !== undefined && setting.identity !== plan.identity) {
      throw new RescaleError(
        'CONFIG_INVALID',
        `run ${runId}'s fallback endpoint "${plan.config.endpoint ?? ''}" now resolves to another URL or API version ` +
          'than when the run was submitted (the endpoint list changed); restore the entry, or submit the run again ' +
          'with --overwrite',
      );
    }
    const { config } = plan;
    const logger = this.options.logger.child({ runId, stage: 'fallback' });
    const budget = await RedisBudget.open(
      this.options.connection,
      runId,
      budgetLimits(config),
      await readLedger(setting.auditFile),
    );
    const rateLimiter = new RedisRateLimiter(
      this.options.connection,
      rateLimitKey(config.baseUrl, config.model),
      config.rateLimit,
    );
    const stage = await FallbackStage.open({
      codebook,
      config,
      mode: plan.mode,
      apiKey: plan.apiKey,
      cacheDir: setting.cacheDir,
      auditFile: setting.auditFile,
      budget,
      rateLimiter,
      logger,
    });
    const worker = new Worker(
      fallbackQueueName(runId),
      (job, _token, signal) => this.answer(runId, stage, job, signal),
      {
        connection: redisOptions(this.options.redis, { blocking: true, name: `rescale-coordinator-fallback-${runId}` }),
        prefix: QUEUE_PREFIX,
        concurrency: config.concurrency,
      },
    );
    worker.on('error', (error) => logger.log('warn', 'fallback queue worker error', { error: error.message }));
    logger.log('info', 'answering the run’s fallback queue', {
      mode: plan.mode,
      model: config.model,
      endpoint: config.endpoint,
      baseUrl: config.baseUrl,
      key: plan.mode === 'live' ? plan.keySource : null,
      concurrency: config.concurrency,
      auditFile: setting.auditFile,
    });
    if (plan.warning !== null) logger.log('warn', plan.warning);
    return { stage, worker, budget };
  }

  private async answer(
    runId: string,
    stage: FallbackStage,
    job: Job,
    signal: AbortSignal | undefined,
  ): Promise<FallbackOutcome | QuestionOutcomesResult> {
    try {
      const data = parseFallbackJobData(job.data);
      if (data.runId !== runId)
        throw new RescaleError(
          'INTERNAL',
          `fallback job ${job.id} of run ${data.runId} found on the queue of run ${runId}`,
        );
      if (!(await this.options.isRunning(runId)))
        throw new RescaleError('ABORTED', `run ${runId} is no longer running`);
      const document = { documentId: data.documentId, row: data.row, shardId: data.shardId, doc: data.document };
      if (data.questions !== undefined) {
        const outcomes = await stage.answerQuestions(document, data.questions, signal);
        for (const outcome of outcomes.values()) this.options.onOutcome?.(outcome);
        return { questions: [...outcomes.entries()] };
      }
      const outcome = await stage.answer(document, signal);
      this.options.onOutcome?.(outcome);
      return outcome;
    } catch (error) {
      const failure = fallbackJobFailure(error);
      if (failure.stopsRun)
        this.options.onFatal(runId, isRescaleError(error) ? error : new RescaleError(failure.code, failure.message));
      // Every failure is final for the job: the shard waiting on it reads the failure and decides whether to try again.
      throw new UnrecoverableError(encodeFallbackJobFailure(failure));
    }
  }

  /**
   * What this process's fallback did for the run so far (null when it has none), budget committed over all processes.
   */
  async stats(runId: string): Promise<FallbackStats | null> {
    const run = await this.runs.get(runId)?.catch(() => undefined);
    if (run === undefined) return null;
    await run.budget.refresh();
    return run.stage.stats();
  }

  /** Stops answering the run's queue; with `purge`, removes the queue and the document texts in it from Redis. */
  async stop(runId: string, options: { purge: boolean }): Promise<void> {
    const started = this.runs.get(runId);
    this.runs.delete(runId);
    const run = await started?.catch(() => undefined);
    if (run !== undefined) {
      // Forced: jobs in flight may be waiting on the budget or a 429 pause for minutes; their answers, if any,
      // are in the cache already, and the shards waiting on them are stopped with the run.
      await run.worker.close(true).catch(() => undefined);
      await run.stage.close().catch(() => undefined);
    }
    if (options.purge) await FallbackService.purge(this.options.redis, runId);
  }

  /**
   * Removes a run's fallback queue (jobs hold document texts) from Redis, then has Redis rewrite its append-only file,
   * which would otherwise keep the texts of the deleted jobs.
   */
  static async purge(target: RedisTarget, runId: string): Promise<void> {
    const queue = new Queue(fallbackQueueName(runId), {
      connection: redisOptions(target, { blocking: false, name: 'rescale-coordinator-fallback-purge' }),
      prefix: QUEUE_PREFIX,
    });
    try {
      await queue.obliterate({ force: true });
    } finally {
      await queue.close().catch(() => undefined);
    }
    const client = new Redis(redisOptions(target, { blocking: false, name: 'rescale-coordinator-aof-rewrite' }));
    client.on('error', () => undefined);
    try {
      await rewriteAppendOnlyFile(client);
    } finally {
      client.disconnect();
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.runs.keys()].map((runId) => this.stop(runId, { purge: false })));
  }
}

/**
 * BGREWRITEAOF when the server keeps an append-only file: the rewritten file holds only live keys, so deleted job
 * payloads (document texts) leave the disk too. A server that refuses CONFIG or the rewrite is left as it is; the
 * operator's remedy is in docs/cluster.md ("Security model").
 */
async function rewriteAppendOnlyFile(client: {
  config(...args: string[]): Promise<unknown>;
  bgrewriteaof(): Promise<unknown>;
}): Promise<void> {
  try {
    const reply = (await client.config('GET', 'appendonly')) as unknown as string[];
    if (reply[1] === 'yes') await client.bgrewriteaof();
  } catch {
    // CONFIG renamed or disabled, or a rewrite already running (it then covers the deletion too).
  }
}
