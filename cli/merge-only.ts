// `rescale merge`: re-plans a run from its codebook and corpus and merges the shard results already on disk.

import path from 'node:path';
import { loadCodebook, singleQuestion } from '../contracts/codebook.js';
import type { Logger } from '../contracts/logger.js';
import { mergeShards, type MergeSummary } from '../coordinator/merge.js';
import { buildManifest, DEFAULT_SHARD_ROWS, planRun } from '../coordinator/run-plan.js';
import { resolveSequences } from '../worker/engine/label-scorer.js';
import { getRuntime, runtimeInfo } from '../worker/engine/llama-runtime.js';
import { resolveFallback } from '../fallback/resolve-fallback.js';
import { outputLayout } from '../storage/output-layout.js';

export async function mergeOnly(options: {
  codebook: string;
  input: readonly string[];
  output: string;
  shardRows?: number;
  sequences?: number;
  limit?: number;
  /** As given to the run: whether the fallback was on decides the shard ids. */
  noFallback?: boolean;
  fallbackOffline?: boolean;
  env?: Readonly<Record<string, string | undefined>>;
  logger: Logger;
}): Promise<MergeSummary> {
  const startedAt = new Date();
  const codebook = await loadCodebook(options.codebook);
  const llama = await getRuntime(options.logger);
  const sequences = resolveSequences(codebook, llama.gpu, options.sequences);
  const shardRows = options.shardRows ?? DEFAULT_SHARD_ROWS;
  const fallback = await resolveFallback(codebook, { disabled: options.noFallback ?? false, offline: options.fallbackOffline ?? false, env: options.env ?? process.env });
  const plan = await planRun(codebook, options.input, sequences, shardRows, options.limit, fallback.active ? fallback.identity : null);
  const output = path.resolve(options.output);
  const runtime = await runtimeInfo(llama);
  const manifest = await buildManifest({
    mode: 'local',
    codebook,
    plan,
    sequences,
    shardRows,
    threads: codebook.model.threads ?? 'auto',
    startedAt,
    engines: [{ nodeLlamaCpp: runtime.nodeLlamaCppVersion, llamaCpp: runtime.llamaCppRelease, llamaBuild: runtime.build, gpu: runtime.gpu }],
  });
  return mergeShards({
    plan,
    shardDir: outputLayout(output).shardDir,
    output,
    labels: singleQuestion(codebook).labels.map((l) => l.name),
    manifest,
    logger: options.logger,
  });
}
