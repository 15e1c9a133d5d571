// The embedded default: plan → process every shard in this process → merge, with no Redis. Resumable: finished
// shard files are kept next to the output and skipped on the next run of the same command.

import { access, mkdir, rm, constants } from 'node:fs/promises';
import path from 'node:path';
import { loadCodebook, singleQuestion } from '../contracts/codebook.js';
import { RescaleError } from '../contracts/errors.js';
import { silentLogger, type Logger } from '../contracts/logger.js';
import { mergeShards, type MergeSummary } from '../coordinator/merge.js';
import { buildManifest, DEFAULT_SHARD_ROWS, planRun, type EngineDescription } from '../coordinator/run-plan.js';
import { LabelScorer, resolveSequences } from '../worker/engine/label-scorer.js';
import { getRuntime, runtimeInfo } from '../worker/engine/llama-runtime.js';
import { RowGroupCache } from '../storage/parquet-rows.js';
import { processShard, type ShardFallback } from '../worker/process-shard.js';
import { isShardComplete } from '../storage/shard-result-file.js';
import { writeBytesAtomic } from '../storage/atomic-file.js';
import { outputLayout } from '../storage/output-layout.js';
import { FallbackStage, type FallbackStats } from '../fallback/fallback-stage.js';
import { fallbackPathsFor, resolveFallback } from '../fallback/resolve-fallback.js';
import { silentProgress, type Progress } from './progress.js';

export interface LocalRunOptions {
  readonly codebook: string;
  readonly input: readonly string[];
  readonly output: string;
  readonly limit?: number;
  readonly overwrite?: boolean;
  /** Maximum rows per shard (default 2,000: a few minutes of work on a CPU, so a resume loses little). */
  readonly shardRows?: number;
  readonly sequences?: number;
  readonly threads?: number;
  readonly logger?: Logger;
  readonly progress?: Progress;
  readonly signal?: AbortSignal;
  /** `--no-fallback`: local labels only, whatever the codebook says. */
  readonly noFallback?: boolean;
  /** `--fallback-offline`: fallback answers from the cache only (no key, no network); misses get over_budget. */
  readonly fallbackOffline?: boolean;
  /** Where the fallback's key variable is looked up (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /**
   * Plugged into the shard path instead of the live fallback stage when the fallback is on (`rescale batch submit`
   * passes its request collector); the caller owns it. The plan still comes from the codebook and key as for any run.
   */
  readonly fallback?: ShardFallback;
}

/** Whether the fallback ran, and what it did in this run. */
export type FallbackRunSummary =
  | { readonly active: false; readonly reason: string }
  | { readonly active: true; readonly mode: 'live' | 'offline'; readonly auditFile: string; readonly cacheDir: string; readonly stats: FallbackStats | null };

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


export { DEFAULT_SHARD_ROWS };

export async function runLocal(options: LocalRunOptions): Promise<LocalRunSummary> {
  const logger = options.logger ?? silentLogger;
  const progress = options.progress ?? silentProgress;
  const startedAt = new Date();
  const codebook = await loadCodebook(options.codebook);
  const output = path.resolve(options.output);
  const { partsDir, shardDir, planFile } = outputLayout(output);
  await prepareOutput(output, partsDir, options.overwrite ?? false);
  await mkdir(shardDir, { recursive: true });

  const llama = await getRuntime(logger);
  const sequences = resolveSequences(codebook, llama.gpu, options.sequences);
  const fallbackPlan = await resolveFallback(codebook, { disabled: options.noFallback ?? false, offline: options.fallbackOffline ?? false, env: options.env ?? process.env });
  const fallbackPaths = fallbackPathsFor(output, fallbackPlan.active ? fallbackPlan.config : null);
  if (fallbackPlan.active) {
    logger.log('info', 'fallback on', { mode: fallbackPlan.mode, model: fallbackPlan.config.model, baseUrl: fallbackPlan.config.baseUrl, key: fallbackPlan.mode === 'live' ? fallbackPlan.keySource : null, ...fallbackPaths });
    if (fallbackPlan.warning !== null) logger.log('warn', fallbackPlan.warning);
  } else if (codebook.fallback !== null) {
    logger.log(options.noFallback === true ? 'info' : 'warn', `fallback off: ${fallbackPlan.reason}; every document keeps its local label`);
  }
  const plan = await planRun(codebook, options.input, sequences, options.shardRows ?? DEFAULT_SHARD_ROWS, options.limit, fallbackPlan.active ? fallbackPlan.identity : null);
  await writeBytesAtomic(planFile, JSON.stringify(plan, null, 2));

  const complete = await Promise.all(plan.shards.map((s) => isShardComplete(shardDir, s.id)));
  const pending = plan.shards.filter((_, i) => !complete[i]);
  const doneRows = plan.shards.filter((_, i) => complete[i]).reduce((n, s) => n + (s.rowEnd - s.rowStart), 0);
  logger.log('info', 'plan', { files: plan.files.length, rows: plan.totalRows, shards: plan.shards.length, alreadyDone: plan.shards.length - pending.length });

  let scored = 0;
  let fallbackStats: FallbackStats | null = null;
  const started = performance.now();
  const runtime = await runtimeInfo(llama);
  const engine: { -readonly [K in keyof EngineDescription]: EngineDescription[K] } = {
    nodeLlamaCpp: runtime.nodeLlamaCppVersion,
    llamaCpp: runtime.llamaCppRelease,
    llamaBuild: runtime.build,
    gpu: runtime.gpu,
  };
  if (pending.length > 0) {
    const scorer = await LabelScorer.create(codebook, { logger, sequences, ...(options.threads !== undefined ? { threads: options.threads } : {}) });
    engine.settings = scorer.settings;
    let stage: FallbackStage | undefined;
    let fallback: ShardFallback | undefined;
    try {
      if (fallbackPlan.active) {
        if (options.fallback === undefined) {
          const { config, mode, apiKey } = fallbackPlan;
          stage = await FallbackStage.open({ codebook, config, mode, apiKey, ...fallbackPaths, logger });
        }
        fallback = options.fallback ?? stage;
      }
      progress.start(plan.totalRows, doneRows);
      let done = doneRows;
      const cache = new RowGroupCache();
      for (const shard of pending) {
        options.signal?.throwIfAborted();
        const outcome = await processShard(
          { shard, idColumn: plan.idColumn, idType: plan.idType, textColumn: plan.textColumn, resultDir: shardDir },
          { scorer, logger, cache, ...(fallback ? { fallback } : {}), ...(options.signal ? { signal: options.signal } : {}), onProgress: (n) => progress.update(done + n) },
        );
        done += outcome.rows;
        if (!outcome.skipped) scored += outcome.rows;
        progress.update(done);
      }
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
  const manifest = await buildManifest({
    mode: 'local',
    codebook,
    plan,
    sequences,
    shardRows: options.shardRows ?? DEFAULT_SHARD_ROWS,
    threads: options.threads ?? codebook.model.threads ?? 'auto',
    startedAt,
    engines: [engine],
  });
  const fallbackSummary: FallbackRunSummary = fallbackPlan.active
    ? { active: true, mode: fallbackPlan.mode, ...fallbackPaths, stats: fallbackStats }
    : { active: false, reason: fallbackPlan.reason };
  const merge = await mergeShards({ plan, shardDir, output, labels: singleQuestion(codebook).labels.map((l) => l.name), manifest: { ...manifest, fallback: fallbackSummary }, logger });
  return {
    output,
    manifest: merge.manifestPath,
    rows: merge.rows,
    shards: plan.shards.length,
    shardsSkipped: plan.shards.length - pending.length,
    documentsScored: scored,
    seconds,
    documentsPerSecond: seconds > 0 ? scored / seconds : 0,
    merge,
    fallback: fallbackSummary,
  };
}

async function prepareOutput(output: string, partsDir: string, overwrite: boolean): Promise<void> {
  const dir = path.dirname(output);
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
  } catch (cause) {
    throw new RescaleError('OUTPUT_NOT_WRITABLE', `cannot write to ${dir} (from --output ${output}): ${(cause as NodeJS.ErrnoException).code ?? String(cause)}; choose a folder you can write to`, { cause });
  }
  if (overwrite) {
    await rm(partsDir, { recursive: true, force: true });
    await rm(output, { force: true });
    await rm(outputLayout(output).manifestFile, { force: true });
  }
}

