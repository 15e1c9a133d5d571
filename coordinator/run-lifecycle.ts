// The run around the shards, written once for every mode: plan the corpus, prepare the output folder, write the plan
// file, build the manifest and merge. Local mode drains the shards in between (local-runner.ts); merge-only does not.

import { access, constants, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { loadCodebook, scoredQuestions, type Codebook } from '../contracts/codebook.js';
import { RescaleError } from '../contracts/errors.js';
import type { Logger } from '../contracts/logger.js';
import type { ShardPlan, ShardSpec } from '../contracts/shard.js';
import { writeBytesAtomic } from '../storage/atomic-file.js';
import { checkOutputDestination, removeMergeTemps, removeOwnOutput, type RunSources } from '../storage/output-guard.js';
import { outputLayout, type OutputLayout } from '../storage/output-layout.js';
import { acquireOutputLock, type OutputLock } from '../storage/output-lock.js';
import { isShardComplete } from '../storage/shard-result-file.js';
import { groupedQuestions, resultQuestionsOf, type ResultQuestion } from '../storage/result-schema.js';
import type { FallbackStats } from '../fallback/fallback-stage.js';
import { EndpointList } from '../fallback/endpoint-list.js';
import { fallbackPathsFor, resolveFallback, type FallbackPlan } from '../fallback/resolve-fallback.js';
import { mergeShards, type MergeSummary } from './merge.js';
import { buildManifest, DEFAULT_SHARD_ROWS, planRun, type ManifestInput } from './run-plan.js';
import type { ScoringEngine } from './scoring-engine.js';

/** Who prepares an output, for the error message: the CLI names --output, the coordinator the shared filesystem. */
export type OutputPreparer = 'cli' | 'coordinator';

/** The files a planned run reads, which its output must never write over. */
export function runSources(
  codebookFile: string,
  inputs: readonly string[],
  codebook: Codebook,
  plan: ShardPlan,
): RunSources {
  return {
    inputs: inputs.map((input) => path.resolve(input)),
    corpusFiles: plan.files.map((file) => file.path),
    codebook: path.resolve(codebookFile),
    model: codebook.model.path,
    adapters: codebook.model.adapters.map((adapter) => adapter.path),
  };
}

export interface PrepareOutputOptions {
  /** `--overwrite`: the earlier results rescale wrote are removed (anything else is refused by name). */
  readonly overwrite: boolean;
  /** The new run's plan: without `overwrite`, an output holding another run's results or plan is refused. */
  readonly plan: ShardPlan;
  readonly by?: OutputPreparer;
}

/**
 * Prepares the output of a run whose destination was checked (checkOutputDestination) and whose lock is held: removes
 * temp files a killed merge left, refuses an output holding another run's results unless `overwrite` (saying what
 * differs), removes the earlier results with `overwrite`, and creates the shard folder. A folder that cannot be
 * written is an OUTPUT_NOT_WRITABLE error naming the folder and the output.
 */
export async function prepareOutput(layout: OutputLayout, options: PrepareOutputOptions): Promise<void> {
  const { output } = layout;
  const by = options.by ?? 'cli';
  const option = by === 'cli' ? '--output' : 'output';
  await ensureOutputFolder(layout, by);
  try {
    await removeMergeTemps(layout);
    if (options.overwrite) {
      await removeOwnOutput(layout, option);
    } else {
      const differences = await differencesFromEarlierRun(layout, options.plan);
      if (differences.length > 0) {
        throw new RescaleError(
          'CONFIG_INVALID',
          `${option} ${output} holds the results of another run (${differences.join('; ')}); run again with ` +
            `--overwrite to replace them, or choose another ${option}`,
        );
      }
    }
    await mkdir(layout.shardDir, { recursive: true });
  } catch (cause) {
    if (cause instanceof RescaleError) throw cause;
    throw notWritable(layout, by, cause);
  }
}

/** Creates the output's folder and checks it is writable (before the lock file is created in it). */
export async function ensureOutputFolder(layout: OutputLayout, by: OutputPreparer = 'cli'): Promise<void> {
  const dir = path.dirname(layout.output);
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
  } catch (cause) {
    throw notWritable(layout, by, cause);
  }
}

function notWritable(layout: OutputLayout, by: OutputPreparer, cause: unknown): RescaleError {
  const { output } = layout;
  const dir = path.dirname(output);
  const reason = (cause as NodeJS.ErrnoException).code ?? String(cause);
  const message =
    by === 'cli'
      ? `cannot write to ${dir} (from --output ${output}): ${reason}; choose a folder you can write to`
      : `the coordinator cannot write to ${dir} (from output ${output}): ${reason}; ` +
        'choose a folder on the shared filesystem it can write to';
  return new RescaleError('OUTPUT_NOT_WRITABLE', message, { cause });
}

interface EarlierRun {
  readonly codebookHash?: unknown;
  readonly limit?: unknown;
  readonly textColumn?: unknown;
  readonly idColumn?: unknown;
  readonly files?: readonly { readonly path?: unknown; readonly fingerprint?: unknown }[];
  readonly shards?: readonly { readonly id?: unknown }[];
}

/**
 * What differs between the new plan and the run whose plan file (or, without one, whose manifest) the output holds:
 * empty when there is no earlier run or it is the same one (a resume).
 */
export async function differencesFromEarlierRun(layout: OutputLayout, plan: ShardPlan): Promise<string[]> {
  const earlier =
    (await readJson<EarlierRun>(layout.planFile)) ??
    (await readJson<{ merge?: EarlierRun }>(layout.manifestFile))?.merge ??
    null;
  if (earlier === null) return [];
  const differences: string[] = [];
  if (earlier.codebookHash !== plan.codebookHash) {
    differences.push(`codebook hash ${short(earlier.codebookHash)} there, ${short(plan.codebookHash)} now`);
  }
  const files = (list: readonly { path?: unknown; fingerprint?: unknown }[] | undefined): string =>
    (list ?? []).map((f) => `${String(f.path)}\0${String(f.fingerprint)}`).join('\n');
  if (files(earlier.files) !== files(plan.files)) {
    differences.push(
      `corpus files or their content differ (${earlier.files?.length ?? 0} files there, ${plan.files.length} now)`,
    );
  }
  if ((earlier.limit ?? null) !== plan.limit) {
    differences.push(`--limit ${String(earlier.limit ?? 'none')} there, ${String(plan.limit ?? 'none')} now`);
  }
  if (earlier.textColumn !== plan.textColumn || (earlier.idColumn ?? null) !== plan.idColumn) {
    differences.push('text or id column differs');
  }
  const shardIds = (list: readonly { id?: unknown }[] | undefined): string =>
    (list ?? []).map((s) => String(s.id)).join('\n');
  if (differences.length === 0 && shardIds(earlier.shards) !== shardIds(plan.shards)) {
    differences.push('the shards differ (shard rows, sequences, --no-dedupe or whether the fallback is on)');
  }
  return differences;
}

function short(value: unknown): string {
  return typeof value === 'string' ? value.slice(0, 12) : 'unknown';
}

async function readJson<T>(file: string): Promise<T | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return null;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new RescaleError(
      'CONFIG_INVALID',
      `${file} is not valid JSON, so the earlier run in this output cannot be identified; run with --overwrite to ` +
        'replace it, or choose another output',
    );
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
  /** `--no-dedupe`: score every copy of an identical document instead of copying the first one's result. */
  readonly noDedupe?: boolean;
  /** Where the fallback's key variable is looked up (the CLI passes its parsed environment's variables). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** `--endpoints FILE`: the list a codebook's `fallback.endpoint` names (local mode may also give the URL). */
  readonly endpoints?: string | undefined;
}

/** A planned run: everything the shards are scored and merged from. */
export interface PlannedRun {
  readonly codebook: Codebook;
  readonly layout: OutputLayout;
  readonly plan: ShardPlan;
  readonly sequences: number;
  /** Identical prompt inputs of a shard scored once; off (`--no-dedupe`) it changes the shard ids. */
  readonly dedupe: boolean;
  readonly shardRows: number;
  /** Whether the fallback is on decides the shard ids, so it is settled before planning. */
  readonly fallback: FallbackPlan;
  readonly fallbackPaths: { readonly cacheDir: string; readonly auditFile: string };
  readonly startedAt: Date;
  /** `<output>.lock`, held from planning to the end of the merge: release it (or `await using`) when done. */
  readonly lock: OutputLock;
}

export interface OpenRunOptions {
  /**
   * A scoring run prepares the output folder (`overwrite` starts over), logs the fallback decision and writes the
   * plan file; null for merge-only, which only re-plans and reads what is on disk.
   */
  readonly scoring: { readonly overwrite: boolean } | null;
  readonly logger: Logger;
}

/**
 * Loads the codebook and plans the corpus into shards, checks the output destination against the run's sources
 * (before anything is written) and takes the output's lock; a scoring run also prepares its output and plan file.
 */
export async function openRun(
  request: RunRequest,
  engine: Pick<ScoringEngine, 'sequences'>,
  options: OpenRunOptions,
): Promise<PlannedRun> {
  const { logger, scoring } = options;
  const startedAt = new Date();
  const codebook = await loadCodebook(request.codebook);
  const layout = outputLayout(path.resolve(request.output));

  const sequences = await engine.sequences(codebook, request.sequences);
  const shardRows = request.shardRows ?? DEFAULT_SHARD_ROWS;
  const fallback = await resolveFallback(codebook, {
    disabled: request.noFallback ?? false,
    offline: request.fallbackOffline ?? false,
    env: request.env,
    endpoints: request.endpoints === undefined ? null : await EndpointList.load(request.endpoints),
  });
  const fallbackPaths = fallbackPathsFor(layout.output, fallback.active ? fallback.config : null);
  const identity = fallback.active ? fallback.identity : null;
  const dedupe = request.noDedupe !== true;
  const plan = await planRun(codebook, request.input, { sequences, dedupe }, shardRows, request.limit, identity);
  for (const warning of plan.warnings ?? []) logger.log('warn', warning);
  await checkOutputDestination(layout, runSources(request.codebook, request.input, codebook, plan));
  await ensureOutputFolder(layout);
  const lock = await acquireOutputLock(layout).catch((cause: unknown) => {
    if (cause instanceof RescaleError) throw cause;
    throw notWritable(layout, 'cli', cause);
  });
  try {
    if (lock.replaced !== null) {
      const { host, pid, lockedAt, owner } = lock.replaced;
      logger.log('warn', 'replaced a stale output lock', { lockFile: layout.lockFile, owner, host, pid, lockedAt });
    }
    if (scoring !== null) {
      await prepareOutput(layout, { overwrite: scoring.overwrite, plan });
      if (fallback.active) {
        const { model, endpoint, baseUrl } = fallback.config;
        const key = fallback.mode === 'live' ? fallback.keySource : null;
        logger.log('info', 'fallback on', { mode: fallback.mode, model, endpoint, baseUrl, key, ...fallbackPaths });
        if (fallback.warning !== null) logger.log('warn', fallback.warning);
      } else if (codebook.fallback !== null) {
        logger.log(
          request.noFallback === true ? 'info' : 'warn',
          `fallback off: ${fallback.reason}; every document keeps its local label`,
        );
      }
      await writePlanFile(layout, plan);
    }
  } catch (error) {
    await lock.release();
    throw error;
  }
  return { codebook, layout, plan, sequences, dedupe, shardRows, fallback, fallbackPaths, startedAt, lock };
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
  /** mergeShards' step between renaming the results into place and writing the manifest. */
  readonly afterResultsRenamed?: () => Promise<void>;
}

/**
 * The end of every run: temp files of an interrupted merge removed, the manifest built, then all shard results merged
 * into the output (which fails naming missing shards).
 */
export async function mergeRun(input: MergeRunInput): Promise<MergeSummary> {
  const removed = await removeMergeTemps(outputLayout(path.resolve(input.output)));
  if (removed.length > 0) input.logger.log('info', 'removed temp files of an interrupted merge', { files: removed });
  const manifest = await buildManifest(input);
  return mergeShards({
    plan: input.plan,
    shardDir: input.shardDir,
    output: input.output,
    ...mergeQuestions(input.codebook),
    manifest: { ...manifest, ...input.manifestExtra },
    logger: input.logger,
    ...(input.afterResultsRenamed === undefined ? {} : { afterResultsRenamed: input.afterResultsRenamed }),
  });
}

/** What the merge checks the shard files against: the one question's labels, or every question's. */
function mergeQuestions(codebook: Codebook): { labels: readonly string[]; questions?: readonly ResultQuestion[] } {
  scoredQuestions(codebook);
  const questions = resultQuestionsOf(codebook);
  return groupedQuestions(questions) ? { labels: [], questions } : { labels: questions[0]?.labels ?? [] };
}

export interface MergeOnlyOptions extends RunRequest {
  readonly logger: Logger;
}

/**
 * `rescale merge`: the lifecycle without scoring. Re-plans the run from its codebook and corpus (as given to the run:
 * sequences, --no-dedupe and whether the fallback was on decide the shard ids) and merges the shard results already
 * on disk.
 */
export async function mergeOnly(
  options: MergeOnlyOptions,
  engine: Pick<ScoringEngine, 'sequences' | 'describe'>,
): Promise<MergeSummary> {
  const run = await openRun(options, engine, { scoring: null, logger: options.logger });
  await using _lock = run.lock;
  return await mergeRun({
    mode: 'local',
    codebook: run.codebook,
    plan: run.plan,
    sequences: run.sequences,
    dedupe: run.dedupe,
    shardRows: run.shardRows,
    threads: run.codebook.model.threads ?? 'auto',
    startedAt: run.startedAt,
    engines: [await engine.describe()],
    shardDir: run.layout.shardDir,
    output: run.layout.output,
    logger: options.logger,
  });
}
