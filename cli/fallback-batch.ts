// `rescale batch submit` and `rescale batch collect`: the closed-model fallback through the OpenAI Batch API, at the
// batch price, as a way to fill the response cache before the real run (the Batch API half is fallback/batch/).
//
// submit: an ordinary local run (same plan, same routing as `rescale run`) with the request collector as its
//   fallback, in a scratch folder; then the requests for routed documents not yet in the cache are reserved in the
//   audit log (the budget's ledger) and uploaded as one batch (custom_id = the cache key).
// collect: fallback/batch/batch-collect.ts. Then `rescale run` with the same codebook finds every batch answer in
// the cache and pays nothing for them.

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { loadCodebook } from '../contracts/codebook.js';
import { RescaleError } from '../contracts/errors.js';
import { silentLogger, type Logger } from '../contracts/logger.js';
import { liveBatchFallback } from '../fallback/batch/batch-api.js';
import {
  batchesBeforeSubmit,
  submitCollectedRequests,
  type BatchSubmitSummary,
} from '../fallback/batch/batch-submit.js';
import { RequestCollector } from '../fallback/batch/request-collector.js';
import { fallbackPathsFor } from '../fallback/resolve-fallback.js';
import { ResponseCache } from '../fallback/response-cache.js';
import type { LlamaBuild } from '../contracts/environment.js';
import { runLocalMode } from './local-mode.js';

export {
  collectFallbackBatches,
  type BatchCollectOptions,
  type BatchCollectSummary,
} from '../fallback/batch/batch-collect.js';
export type { BatchSubmitSummary };

export interface BatchSubmitOptions {
  readonly codebook: string;
  readonly input: readonly string[];
  readonly output: string;
  readonly shardRows?: number;
  readonly limit?: number;
  readonly sequences?: number;
  readonly threads?: number;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** `--endpoints FILE`, for a codebook whose fallback names an endpoint. */
  readonly endpoints?: string | undefined;
  /** llama.cpp build to load (the CLI passes RESCALE_LLAMA_BUILD, parsed). */
  readonly llamaBuild?: LlamaBuild;
  readonly logger?: Logger;
  readonly signal?: AbortSignal;
}

export async function submitFallbackBatch(options: BatchSubmitOptions): Promise<BatchSubmitSummary> {
  const logger = options.logger ?? silentLogger;
  const env = options.env;
  const codebook = await loadCodebook(options.codebook);
  const { config, apiKey } = await liveBatchFallback(codebook, env, options.endpoints);
  const output = path.resolve(options.output);
  const paths = fallbackPathsFor(output, config);
  const previous = await batchesBeforeSubmit(output);

  // The local pass is the ordinary local run with the collector plugged into its shard path. Its shard files and
  // merged output go to a scratch folder that is removed: kept beside the output, the next `rescale run` would
  // reuse those shards, scored without the fallback's answers.
  const collector = new RequestCollector(codebook, config, new ResponseCache(paths.cacheDir));
  let scratch: string;
  try {
    await mkdir(path.dirname(output), { recursive: true });
    scratch = await mkdtemp(path.join(path.dirname(output), '.rescale-batch-scan-'));
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? String(cause);
    throw new RescaleError(
      'OUTPUT_NOT_WRITABLE',
      `cannot write to ${path.dirname(output)} (from --output ${output}): ${code}; choose a folder you can write to`,
      { cause },
    );
  }
  try {
    await runLocalMode(
      {
        codebook: options.codebook,
        input: options.input,
        output: path.join(scratch, path.basename(output)),
        env,
        endpoints: options.endpoints,
        logger,
        fallback: collector,
        shardRows: options.shardRows,
        limit: options.limit,
        sequences: options.sequences,
        threads: options.threads,
        signal: options.signal,
      },
      options.llamaBuild,
    );
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return submitCollectedRequests({
    output,
    auditFile: paths.auditFile,
    config,
    apiKey,
    previous,
    collected: collector,
    logger,
  });
}
