// The run around the shards, written once for every mode: plan the corpus, prepare the output folder, write the plan
// file, build the manifest and merge. Local mode drains the shards in between (local-runner.ts); merge-only does not.

import { access, constants, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { loadCodebook, singleQuestion, type Codebook } from '../contracts/codebook.js';
import { RescaleError } from '../contracts/errors.js';
import type { Logger } from '../contracts/logger.js';
import type { ShardPlan, ShardSpec } from '../contracts/shard.js';
import { writeBytesAtomic } from '../storage/atomic-file.js';
import { outputLayout, type OutputLayout } from '../storage/output-layout.js';
import { isShardComplete } from '../storage/shard-result-file.js';
import type { FallbackStats } from '../fallback/fallback-stage.js';
import { fallbackPathsFor, resolveFallback, type FallbackPlan } from '../fallback/resolve-fallback.js';
import { mergeShards, type MergeSummary } from './merge.js';
import { buildManifest, DEFAULT_SHARD_ROWS, planRun, type ManifestInput } from './run-plan.js';
import type { ScoringEngine } from './scoring-engine.js';

/** Who prepares an output, for the error message: the CLI names --output, the coordinator the shared filesystem. */
export type OutputPreparer = 'cli' | 'coordinator';

/**
 * Checks that the output folder is writable, removes an earlier run's results when `overwrite`, and creates the
 * shard folder; any failure is an OUTPUT_NOT_WRITABLE error naming the folder and the output.
 */
export async function prepareOutput(
  layout: OutputLayout,
  overwrite: boolean,
  by: OutputPreparer = 'cli',
): Promise<void> {
  const { output } = layout;
  const dir = path.dirname(output);
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
    if (overwrite) {
      await rm(layout.partsDir, { recursive: true, force: true });
      await rm(output, { force: true });
      await rm(layout.manifestFile, { force: true });
    }
    await mkdir(layout.shardDir, { recursive: true });
  } catch (cause) {
    const reason = (cause as NodeJS.ErrnoException).code ?? String(cause);
    const message =
      by === 'cli'
        ? `cannot write to ${dir} (from --output ${output}): ${reason}; choose a folder you can write to`
        : `the coordinator cannot write to ${dir} (from output ${output}): ${reason}; ` +
          'choose a folder on the shared filesystem it can write to';
    throw new RescaleError('OUTPUT_NOT_WRITABLE', message, { cause });
  }
}

/** `plan.json` in the parts folder: what the shard files of this output were planned from, for a reader or a merge. */
export async function writePlanFile(layout: OutputLayout, plan: ShardPlan): Promise<void> {
  await writeBytesAtomic(layout.planFile, JSON.stringify(plan, null, 2));
}

/** A run as the user asks for it (`rescale run` / `rescale merge` options). */
export interface RunRequest {
  readonly codebook: string;
  readonly input: readonly string[];
  readonly output: string;
  readonly limit?: number | undefined;
  /** Maximum rows per shard (default 2,000: a few minutes of work on a CPU, so a resume loses little). */
  readonly shardRows?: number | undefined;
  readonly sequences?: number | undefined;
  /** `--no-fallback`: local labels only, whatever the codebook says. */
  readonly noFallback?: boolean;
  /** `--fallback-offline`: fallback answers from the cache only (no key, no network); misses get over_budget. */
  readonly fallbackOffline?: boolean;
  /** Where the fallback's key variable is looked up (the CLI passes its parsed environment's variables). */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** A planned run: everything the shards are scored and merged from. */
export interface PlannedRun {
  readonly codebook: Codebook;
  readonly layout: OutputLayout;
  readonly plan: ShardPlan;
  readonly sequences: number;
  readonly shardRows: number;
  /** Whether the fallback is on decides the shard ids, so it is settled before planning. */
  readonly fallback: FallbackPlan;
  readonly fallbackPaths: { readonly cacheDir: string; readonly auditFile: string };
  readonly startedAt: Date;
}

export interface OpenRunOptions {
  /**
   * A scoring run prepares the output folder (`overwrite` starts over), logs the fallback decision and writes the
   * plan file; null for merge-only, which only re-plans and reads what is on disk.
   */
  readonly scoring: { readonly overwrite: boolean } | null;
  readonly logger: Logger;
}

/** Loads the codebook and plans the corpus into shards; a scoring run also prepares its output and plan file. */
export async function openRun(
  request: RunRequest,
  engine: Pick<ScoringEngine, 'sequences'>,
  options: OpenRunOptions,
): Promise<PlannedRun> {
  const { logger, scoring } = options;
  const startedAt = new Date();
  const codebook = await loadCodebook(request.codebook);
  const layout = outputLayout(path.resolve(request.output));
  if (scoring !== null) await prepareOutput(layout, scoring.overwrite);

  const sequences = await engine.sequences(codebook, request.sequences);
  const shardRows = request.shardRows ?? DEFAULT_SHARD_ROWS;
  const fallback = await resolveFallback(codebook, {
    disabled: request.noFallback ?? false,
    offline: request.fallbackOffline ?? false,
    env: request.env,
  });
  const fallbackPaths = fallbackPathsFor(layout.output, fallback.active ? fallback.config : null);
  if (scoring !== null) {
    if (fallback.active) {
      const { model, baseUrl } = fallback.config;
      const key = fallback.mode === 'live' ? fallback.keySource : null;
      logger.log('info', 'fallback on', { mode: fallback.mode, model, baseUrl, key, ...fallbackPaths });
      if (fallback.warning !== null) logger.log('warn', fallback.warning);
    } else if (codebook.fallback !== null) {
      logger.log(
        request.noFallback === true ? 'info' : 'warn',
        `fallback off: ${fallback.reason}; every document keeps its local label`,
      );
    }
  }
  const identity = fallback.active ? fallback.identity : null;
  const plan = await planRun(codebook, request.input, sequences, shardRows, request.limit, identity);
  for (const warning of plan.warnings ?? []) logger.log('warn', warning);
  if (scoring !== null) await writePlanFile(layout, plan);
  return { codebook, layout, plan, sequences, shardRows, fallback, fallbackPaths, startedAt };
}

/** The planned shards without a finished result file (a resume skips the others), and the rows already done. */
export async function pendingShards(
  plan: ShardPlan,
  shardDir: string,
): Promise<{ pending: ShardSpec[]; doneRows: number }> {
  const complete = await Promise.all(plan.shards.map((s) => isShardComplete(shardDir, s.id)));
  const pending = plan.shards.filter((_, i) => !complete[i]);
  const doneRows = plan.shards.filter((_, i) => complete[i]).reduce((n, s) => n + (s.rowEnd - s.rowStart), 0);
  return { pending, doneRows };
}

/** Whether the fallback ran, and what it did in this run (the manifest's `fallback`). */
export type FallbackRunSummary =
  | { readonly active: false; readonly reason: string }
  | {
      readonly active: true;
      readonly mode: 'live' | 'offline';
      readonly auditFile: string;
      readonly cacheDir: string;
      readonly stats: FallbackStats | null;
    };

/** `stats` is null when no fallback was opened (every shard was reused). */
export function fallbackRunSummary(run: PlannedRun, stats: FallbackStats | null): FallbackRunSummary {
  const { fallback } = run;
  return fallback.active
    ? { active: true, mode: fallback.mode, ...run.fallbackPaths, stats }
    : { active: false, reason: fallback.reason };
}

export interface MergeRunInput extends ManifestInput {
  readonly shardDir: string;
  readonly output: string;
  /** Fields added after the manifest's own (the fallback summary; in cluster mode the run id first). */
  readonly manifestExtra?: Readonly<Record<string, unknown>>;
  readonly logger: Logger;
}

/**
 * The end of every run: the manifest, then all shard results merged into the output (which fails naming missing
 * shards).
 */
export async function mergeRun(input: MergeRunInput): Promise<MergeSummary> {
  const manifest = await buildManifest(input);
  return mergeShards({
    plan: input.plan,
    shardDir: input.shardDir,
    output: input.output,
    labels: singleQuestion(input.codebook).labels.map((l) => l.name),
    manifest: { ...manifest, ...input.manifestExtra },
    logger: input.logger,
  });
}

export interface MergeOnlyOptions extends RunRequest {
  readonly logger: Logger;
}

/**
 * `rescale merge`: the lifecycle without scoring. Re-plans the run from its codebook and corpus (as given to the run:
 * sequences and whether the fallback was on decide the shard ids) and merges the shard results already on disk.
 */
export async function mergeOnly(
  options: MergeOnlyOptions,
  engine: Pick<ScoringEngine, 'sequences' | 'describe'>,
): Promise<MergeSummary> {
  const run = await openRun(options, engine, { scoring: null, logger: options.logger });
  return mergeRun({
    mode: 'local',
    codebook: run.codebook,
    plan: run.plan,
    sequences: run.sequences,
    shardRows: run.shardRows,
    threads: run.codebook.model.threads ?? 'auto',
    startedAt: run.startedAt,
    engines: [await engine.describe()],
    shardDir: run.layout.shardDir,
    output: run.layout.output,
    logger: options.logger,
  });
}
