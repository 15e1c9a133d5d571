// `rescale merge`: re-plans a run from its codebook and corpus and merges the shard results already on disk.

import path from 'node:path';
import { loadCodebook, singleQuestion } from '../contracts/codebook.js';
import type { Logger } from '../contracts/logger.js';
import { mergeShards, type MergeSummary } from '../coordinator/merge.js';
import { resolveSequences } from '../worker/label-scorer.js';
import { getRuntime } from '../worker/llama-runtime.js';
import { buildManifest, DEFAULT_SHARD_ROWS, partsDirFor, planRun } from './local-run.js';

export async function mergeOnly(options: {
  codebook: string;
  input: readonly string[];
  output: string;
  shardRows?: number;
  sequences?: number;
  limit?: number;
  logger: Logger;
}): Promise<MergeSummary> {
  const startedAt = new Date();
  const codebook = await loadCodebook(options.codebook);
  const llama = await getRuntime(options.logger);
  const sequences = resolveSequences(codebook, llama.gpu, options.sequences);
  const shardRows = options.shardRows ?? DEFAULT_SHARD_ROWS;
  const plan = await planRun(codebook, options.input, sequences, shardRows, options.limit);
  const output = path.resolve(options.output);
  const manifest = await buildManifest({ codebook, plan, sequences, startedAt, options: { ...options, shardRows }, llamaGpu: llama.gpu });
  return mergeShards({
    plan,
    shardDir: path.join(partsDirFor(output), 'shards'),
    output,
    labels: singleQuestion(codebook).labels.map((l) => l.name),
    manifest,
    logger: options.logger,
  });
}
