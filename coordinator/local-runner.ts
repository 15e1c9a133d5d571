// Local mode: the run lifecycle with its shards drained in this process through the one shard function, with
// progress, resume (finished shard files are skipped) and an abort signal. Cluster workers drain the same shards.

import { silentLogger, type Logger } from '../contracts/logger.js';
import type { ShardSpec } from '../contracts/shard.js';
import { RowGroupCache } from '../storage/parquet-rows.js';
import { FallbackStage, type FallbackStats } from '../fallback/fallback-stage.js';
import type { ShardFallback } from '../contracts/shard-fallback.js';
import { processShard, type ShardJob } from '../worker/process-shard.js';
import type { MergeSummary } from './merge.js';
import {
  fallbackRunSummary,
  mergeRun,
  openRun,
  pendingShards,
  type FallbackRunSummary,
  type PlannedRun,
  type RunRequest,
} from './run-lifecycle.js';
import type { EngineDescription } from './run-plan.js';
import type { ScoringEngine } from './scoring-engine.js';
import type { DocumentScorer } from '../contracts/document-scorer.js';

/** Documents done over a run (cli/progress.ts draws it as a bar or periodic lines). */
export interface RunProgress {
  start(total: number, alreadyDone: number): void;
  update(done: number): void;
  finish(): void;
}

export const silentRunProgress: RunProgress = {
  start: () => undefined,
  update: () => undefined,
  finish: () => undefined,
};

/** The codebook's live (or offline) fallback stage, when the run's fallback plan is on. */
async function openFallbackStage(run: PlannedRun, logger: Logger): Promise<FallbackStage | undefined> {
  const { fallback } = run;
  if (!fallback.active) return undefined;
  const { config, mode, apiKey } = fallback;
  return FallbackStage.open({ codebook: run.codebook, config, mode, apiKey, ...run.fallbackPaths, logger });
}

export interface DrainOptions {
  /** The plan's columns; the shards to drain are passed separately (a resume drains only the pending ones). */
  readonly job: Omit<ShardJob, 'shard'>;
  readonly scorer: DocumentScorer;
  readonly fallback?: ShardFallback;
  readonly logger: Logger;
  readonly signal?: AbortSignal | undefined;
  /** Called with the run's documents done (`doneRows` plus this drain's). */
  readonly onProgress?: (documentsDone: number) => void;
  /** Documents of the run already done before this drain (reused shards). */
  readonly doneRows?: number;
}

/**
 * The in-process runner: each shard in turn through processShard, stopping between shards once the signal is aborted
 * (the shard in progress stops at its next document). Returns the documents scored now (reused shards excluded).
 */
export async function drainShards(
  shards: readonly ShardSpec[],
  options: DrainOptions,
): Promise<{ readonly documentsScored: number }> {
  const { signal, onProgress } = options;
  const cache = new RowGroupCache();
  let done = options.doneRows ?? 0;
  let scored = 0;
  for (const shard of shards) {
    signal?.throwIfAborted();
    const outcome = await processShard(
      { ...options.job, shard },
      {
        scorer: options.scorer,
        logger: options.logger,
        cache,
        ...(options.fallback ? { fallback: options.fallback } : {}),
        ...(signal ? { signal } : {}),
        ...(onProgress ? { onProgress: (n: number) => onProgress(done + n) } : {}),
      },
    );
    done += outcome.rows;
    if (!outcome.skipped) scored += outcome.rows;
    onProgress?.(done);
  }
  return { documentsScored: scored };
}

export interface LocalRunOptions extends RunRequest {
  readonly overwrite?: boolean;
  readonly threads?: number | undefined;
  readonly logger?: Logger;
  readonly progress?: RunProgress;
  readonly signal?: AbortSignal | undefined;
  /**
   * Plugged into the shard path instead of the live fallback stage when the fallback is on (`rescale batch submit`
   * passes its request collector); the caller owns it. The plan still comes from the codebook and key as for any run.
   */
  readonly fallback?: ShardFallback;
  /** mergeShards' step between renaming the results into place and writing the manifest. */
  readonly afterResultsRenamed?: () => Promise<void>;
}

export interface LocalRunSummary {
  readonly output: string;
  readonly manifest: string;
  readonly rows: number;
  readonly shards: number;
  readonly shardsSkipped: number;
  readonly documentsScored: number;
  readonly seconds: number;
  readonly documentsPerSecond: number;
  readonly merge: MergeSummary;
  readonly fallback: FallbackRunSummary;
}

/**
 * `rescale run`: plan → check and lock the output → prepare it → plan file → score the pending shards in this process
 * → manifest → merge → unlock, with no Redis. Resumable: finished shard files are kept next to the output and
 * skipped on the next run of the same command. The engine comes from the caller (cli/local-mode.ts wires
 * node-llama-cpp).
 */
export async function runLocal(options: LocalRunOptions, engine: ScoringEngine): Promise<LocalRunSummary> {
  const logger = options.logger ?? silentLogger;
  const progress = options.progress ?? silentRunProgress;
  const run = await openRun(options, engine, { scoring: { overwrite: options.overwrite ?? false }, logger });
  await using _lock = run.lock;
  const { plan, layout } = run;
  const { pending, doneRows } = await pendingShards(plan, layout.shardDir);
  const alreadyDone = plan.shards.length - pending.length;
  logger.log('info', 'plan', {
    files: plan.files.length,
    rows: plan.totalRows,
    shards: plan.shards.length,
    alreadyDone,
  });

  let scored = 0;
  let fallbackStats: FallbackStats | null = null;
  const started = performance.now();
  const description: { -readonly [K in keyof EngineDescription]: EngineDescription[K] } = {
    ...(await engine.describe()),
  };
  if (pending.length > 0) {
    const threads = options.threads !== undefined ? { threads: options.threads } : {};
    const scorer = await engine.createScorer(run.codebook, { logger, sequences: run.sequences, ...threads });
    description.settings = scorer.settings;
    let stage: FallbackStage | undefined;
    try {
      if (options.fallback === undefined) stage = await openFallbackStage(run, logger);
      const fallback = run.fallback.active ? (options.fallback ?? stage) : undefined;
      progress.start(plan.totalRows, doneRows);
      const drained = await drainShards(pending, {
        job: {
          idColumn: plan.idColumn,
          idType: plan.idType,
          textColumn: plan.textColumn,
          resultDir: layout.shardDir,
          dedupe: run.dedupe,
        },
        scorer,
        ...(fallback !== undefined ? { fallback } : {}),
        logger,
        ...(options.signal ? { signal: options.signal } : {}),
        onProgress: (n) => progress.update(n),
        doneRows,
      });
      scored = drained.documentsScored;
      progress.finish();
    } finally {
      if (stage !== undefined) {
        fallbackStats = stage.stats();
        await stage.close();
      }
      await scorer.dispose();
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const fallback = fallbackRunSummary(run, fallbackStats);
  const merge = await mergeRun({
    mode: 'local',
    codebook: run.codebook,
    plan,
    sequences: run.sequences,
    dedupe: run.dedupe,
    shardRows: run.shardRows,
    threads: options.threads ?? run.codebook.model.threads ?? 'auto',
    startedAt: run.startedAt,
    engines: [description],
    shardDir: layout.shardDir,
    output: layout.output,
    manifestExtra: { fallback },
    logger,
    ...(options.afterResultsRenamed === undefined ? {} : { afterResultsRenamed: options.afterResultsRenamed }),
  });
  return {
    output: layout.output,
    manifest: merge.manifestPath,
    rows: merge.rows,
    shards: plan.shards.length,
    shardsSkipped: alreadyDone,
    documentsScored: scored,
    seconds,
    documentsPerSecond: seconds > 0 ? scored / seconds : 0,
    merge,
    fallback,
  };
}
