// Plans a submitted run: checks the request, reads the codebook, decides the fallback, plans the shards and names
// the run; then lays out its output folder and plan file (through the run lifecycle, as local mode) and builds the
// run's spec. Touches no Redis or queue.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseCodebookText, resolveSequences, scoredQuestions, type Codebook } from '../../contracts/codebook.js';
import { RescaleError } from '../../contracts/errors.js';
import type { RunSpec } from '../../contracts/shard-queue.js';
import type { ShardPlan } from '../../contracts/shard.js';
import { checkOutputDestination } from '../../storage/output-guard.js';
import { outputLayout, type OutputLayout } from '../../storage/output-layout.js';
import { describeLock, lockLiveness, readOutputLock, writeCoordinatorLock } from '../../storage/output-lock.js';
import type { EndpointList } from '../../fallback/endpoint-list.js';
import { fallbackPathsFor, resolveFallback, type FallbackPlan } from '../../fallback/resolve-fallback.js';
import { DataRoots } from '../data-roots.js';
import { ensureOutputFolder, prepareOutput, runSources, writePlanFile } from '../run-lifecycle.js';
import { DEFAULT_SHARD_ROWS, planRun } from '../run-plan.js';

export interface SubmitRequest {
  /** Absolute paths, the same on the coordinator and every worker (shared filesystem). */
  readonly codebook: string;
  readonly inputs: readonly string[];
  readonly output: string;
  readonly shardRows?: number;
  readonly limit?: number;
  /** Documents decoded together; default the codebook's, and 1 for "auto" (so every worker lays out batches alike). */
  readonly sequences?: number;
  readonly overwrite?: boolean;
  /** Local labels only although the codebook enables the closed-model fallback. */
  readonly noFallback?: boolean;
  /** Fallback answers from the cache only (no key, no network); misses get over_budget. */
  readonly fallbackOffline?: boolean;
  /** Score every copy of an identical document instead of copying the first one's result. */
  readonly noDedupe?: boolean;
}

/** A submitted run, planned: what its spec is built from once the coordinator decides to (re)create it. */
export interface PlannedSubmission {
  readonly runId: string;
  readonly codebookPath: string;
  readonly codebookText: string;
  readonly codebook: Codebook;
  readonly inputs: string[];
  readonly output: string;
  readonly sequences: number;
  readonly dedupe: boolean;
  readonly shardRows: number;
  readonly plan: ShardPlan;
  readonly fallbackPlan: FallbackPlan;
}

/** Run id: from the planned shards (corpus content, row ranges, codebook result hash) and the output path. */
export function runIdFor(plan: ShardPlan, output: string): string {
  const hash = createHash('sha256').update(plan.codebookHash).update('\0').update(output);
  for (const shard of plan.shards) hash.update('\0').update(shard.id);
  return `r${hash.digest('hex').slice(0, 15)}`;
}

/** Where the coordinator's fallback calls go and its keys come from. */
export interface FallbackSources {
  /** Where the endpoints' key variables are looked up (the coordinator's environment). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** `--endpoints FILE`; null: no fallback runs on this coordinator (only --no-fallback submissions). */
  readonly endpoints: EndpointList | null;
}

/**
 * `roots`: the folders every path of the run must resolve into (checked before the codebook is read or the corpus
 * listed).
 */
export async function planSubmission(
  request: SubmitRequest,
  sources: FallbackSources,
  roots: DataRoots = DataRoots.unrestricted(),
): Promise<PlannedSubmission> {
  const codebookPath = absolute(request.codebook, 'codebook');
  const output = absolute(request.output, 'output');
  if (request.inputs.length === 0)
    throw new RescaleError('CONFIG_INVALID', 'give at least one input (Parquet file, folder or glob)');
  const inputs = request.inputs.map((input) => absolute(input, 'input'));
  await roots.check(codebookPath, 'codebook');
  for (const input of inputs) await roots.checkInput(input);
  await checkOutputPaths(roots, output, null);
  let codebookText: string;
  try {
    codebookText = await readFile(codebookPath, 'utf8');
  } catch (cause) {
    throw new RescaleError(
      'CODEBOOK_INVALID',
      `the coordinator cannot read codebook ${codebookPath}: ` +
        `${(cause as NodeJS.ErrnoException).code ?? String(cause)}; it must be on the filesystem the coordinator and ` +
        'workers share',
      { cause },
    );
  }
  const codebook = parseCodebookText(codebookText, codebookPath);
  scoredQuestions(codebook);
  await roots.check(codebook.model.path, 'model (codebook field "model.path")');
  for (const [index, adapter] of codebook.model.adapters.entries()) {
    await roots.check(adapter.path, `adapter (codebook field "model.adapters[${index}].path")`);
  }
  await checkOutputPaths(roots, output, codebook.fallback?.cacheDir ?? null);
  const disabled = request.noFallback === true;
  const fallbackPlan = await resolveFallback(codebook, {
    disabled,
    offline: request.fallbackOffline === true,
    env: sources.env,
    endpoints: sources.endpoints,
    endpointsOnly: true,
  });
  if (codebook.fallback !== null && !fallbackPlan.active && request.noFallback !== true) {
    // Local mode would go on with local labels only and a warning; a remote submitter would not see the warning.
    throw new RescaleError(
      'CONFIG_INVALID',
      `${codebookPath} enables the closed-model fallback, but the coordinator has ${fallbackPlan.reason}; the ` +
        'coordinator alone calls the fallback, so start it with the key available (workers do not need it), or ' +
        'submit with --no-fallback for local labels only',
    );
  }
  // "auto" would let each worker pick by its hardware and change the batch layout (and the shard ids) with it.
  const sequences = resolveSequences(codebook, request.sequences);
  const shardRows = request.shardRows ?? DEFAULT_SHARD_ROWS;
  const dedupe = request.noDedupe !== true;
  const plan = await planRun(
    codebook,
    inputs,
    { sequences, dedupe },
    shardRows,
    request.limit,
    fallbackPlan.active ? fallbackPlan.identity : null,
  );
  // Folders and globs were checked above; a file found in them may still be a symlink to elsewhere.
  for (const file of plan.files) await roots.check(file.path, 'input file');
  // Before anything is written: the output is a file on a disk and none of the run's own sources.
  await checkOutputDestination(outputLayout(output), runSources(codebookPath, inputs, codebook, plan), 'output');
  const runId = runIdFor(plan, output);
  return {
    runId,
    codebookPath,
    codebookText,
    codebook,
    inputs,
    output,
    sequences,
    dedupe,
    shardRows,
    plan,
    fallbackPlan,
  };
}

/**
 * Refuses an output another live run writes: a local `rescale run` holding its lock (or one on another host, which
 * cannot be checked from here), or another cluster run that `isLive` says is running or merging.
 */
export async function checkOutputFree(
  layout: OutputLayout,
  runId: string,
  isLive: (otherRunId: string) => Promise<boolean>,
): Promise<void> {
  const existing = await readOutputLock(layout);
  if (existing === null) return;
  if (existing.owner === 'coordinator') {
    if (existing.runId === runId || existing.runId === undefined || !(await isLive(existing.runId))) return;
    throw new RescaleError(
      'RUN_CONFLICT',
      `output ${layout.output} is being written by run ${existing.runId}; wait for it or cancel it ` +
        `("rescale cancel ${existing.runId}"), or choose another output`,
    );
  }
  if (existing.state !== 'running' || lockLiveness(existing) === 'stale') return;
  throw new RescaleError(
    'RUN_CONFLICT',
    `output ${layout.output} is being written by ${describeLock(existing)}; wait for it or choose another output; ` +
      `if that process is gone, delete ${layout.lockFile}`,
  );
}

/**
 * Lays out an accepted run's output: temp files of an interrupted merge removed, the earlier results removed with
 * `overwrite` (or the submission refused when they are another run's), the shard folder, the plan file, and the lock
 * file marking the output as being written by this run. Returns the run's spec.
 */
export async function prepareRunFiles(planned: PlannedSubmission, overwrite: boolean): Promise<RunSpec> {
  const { runId, codebook, codebookPath, codebookText, sequences, dedupe, shardRows, plan, inputs, output } = planned;
  const { fallbackPlan } = planned;
  const layout = outputLayout(output);
  await ensureOutputFolder(layout, 'coordinator');
  await prepareOutput(layout, { overwrite, plan, by: 'coordinator' });
  await writeCoordinatorLock(layout, runId, 'running');
  await writePlanFile(layout, plan);
  return {
    runId,
    task: codebook.task,
    codebookPath,
    codebookText,
    codebookHash: plan.codebookHash,
    sequences,
    dedupe,
    shardRows,
    limit: plan.limit,
    inputs,
    output,
    resultDir: layout.shardDir,
    idColumn: plan.idColumn,
    idType: plan.idType,
    textColumn: plan.textColumn,
    totalShards: plan.shards.length,
    totalRows: plan.totalRows,
    createdAt: new Date().toISOString(),
    fallback: fallbackPlan.active
      ? {
          active: true,
          mode: fallbackPlan.mode,
          ...fallbackPathsFor(output, fallbackPlan.config),
          identity: fallbackPlan.identity,
        }
      : { active: false, reason: fallbackPlan.reason },
  };
}

/** The output and every file rescale writes or deletes beside it (parts, plan, manifest, fallback files). */
async function checkOutputPaths(roots: DataRoots, output: string, cacheDir: string | null): Promise<void> {
  const layout = outputLayout(output);
  await roots.check(output, 'output');
  for (const file of [
    layout.partsDir,
    layout.shardDir,
    layout.planFile,
    layout.manifestFile,
    layout.fallbackAuditFile,
    layout.fallbackCacheDir,
    layout.fallbackBatchStateFile,
  ]) {
    await roots.check(file, `output's file`);
  }
  if (cacheDir !== null) await roots.check(cacheDir, 'fallback cache (codebook field "fallback.cache_dir")');
}

function absolute(value: string, what: string): string {
  if (value === '' || !path.isAbsolute(value)) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `the ${what} path must be absolute (got "${value}"): the coordinator and workers resolve it on a shared ` +
        'filesystem; the rescale CLI makes paths absolute for you',
    );
  }
  return path.normalize(value);
}
