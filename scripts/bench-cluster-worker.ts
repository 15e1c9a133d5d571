// A cluster worker for `npm run bench:cluster` whose scorer answers at once with fixed probabilities: the real
// ShardWorker, queue, Parquet reads and shard files, minus the model, to measure what the cluster costs around it.
// Usage: tsx scripts/bench-cluster-worker.ts --redis URL [--name NAME]

import { parseArgs } from 'node:util';
import { singleQuestion, type Codebook } from '../contracts/codebook.js';
import { parseRedisUrl } from '../contracts/redis-connection.js';
import type { EngineReport } from '../contracts/shard-queue.js';
import { createPinoLogger } from '../cli/pino-logger.js';
import type { DocumentInput } from '../contracts/document-input.js';
import type { DocumentScore, DocumentScorer, ScoreOptions, ScorerSettings } from '../contracts/document-scorer.js';
import type { LoadedScorer, ScorerProvider, ScorerRequest } from '../worker/scorer-cache.js';
import { ShardWorker } from '../worker/shard-worker.js';

const ENGINE: EngineReport = { nodeLlamaCpp: 'none', llamaCpp: 'instant (benchmark)', llamaBuild: 'none', gpu: false };

/** No model, no context: the layout of a scorer that evaluates nothing. */
function instantSettings(codebook: Codebook): ScorerSettings {
  const { maxDocumentTokens } = codebook.model;
  const none = { contextSize: 0, batchSize: 0, threads: 0, sharedPrefixTokens: 0 };
  return { sequences: 1, decode: 'serial', ...none, flashAttention: false, chatWrapper: null, maxDocumentTokens };
}

/** Answers every document at once with the same distribution: the port, with nothing behind it. */
function instantScorer(codebook: Codebook): DocumentScorer {
  const labels = singleQuestion(codebook).labels;
  const probabilities = Float64Array.from(labels, (_, i) => (i === 0 ? 0.7 : 0.3 / (labels.length - 1)));
  const score = async (docs: readonly DocumentInput[], options: ScoreOptions = {}): Promise<DocumentScore[]> => {
    options.onProgress?.(docs.length);
    return docs.map(() => ({
      status: 'ok',
      label: labels[0]?.name ?? null,
      probabilities,
      confidence: 0.7,
      margin: 0.7 - 0.3 / (labels.length - 1),
      entropy: 0.8,
      labelMass: 1,
      tokens: 0,
      truncated: false,
      error: null,
    }));
  };
  const dispose = async (): Promise<void> => {};
  return { codebook, settings: instantSettings(codebook), score, dispose, [Symbol.asyncDispose]: dispose };
}

class InstantScorers implements ScorerProvider {
  readonly loadedModel = null;

  async scorerFor(request: ScorerRequest): Promise<LoadedScorer> {
    return { scorer: instantScorer(request.codebook), engine: ENGINE };
  }

  async dispose(): Promise<void> {}
}

const { values } = parseArgs({ options: { redis: { type: 'string' }, name: { type: 'string' } } });
if (values.redis === undefined) throw new Error('--redis URL is required');
const worker = await ShardWorker.start({
  redis: parseRedisUrl(values.redis),
  logger: createPinoLogger('info', { service: 'bench-worker' }),
  scorers: new InstantScorers(),
  ...(values.name !== undefined ? { name: values.name } : {}),
});
const signal = await new Promise<string>((resolve) => {
  process.once('SIGTERM', () => resolve('SIGTERM'));
  process.once('SIGINT', () => resolve('SIGINT'));
});
await worker.close(signal);
process.exit(0);
