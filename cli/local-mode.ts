// Local mode's wiring: node-llama-cpp as the scoring engine of the in-process runner and of merge-only. The
// coordinator never imports the model runtime; this is where `rescale run`, `rescale merge`, the demo, tests and
// benchmarks hand it over.

import { resolveSequences } from '../contracts/codebook.js';
import type { LlamaBuild } from '../contracts/environment.js';
import { silentLogger, type Logger } from '../contracts/logger.js';
import { runLocal, type LocalRunOptions, type LocalRunSummary } from '../coordinator/local-runner.js';
import type { MergeSummary } from '../coordinator/merge.js';
import { mergeOnly, type MergeOnlyOptions } from '../coordinator/run-lifecycle.js';
import type { ScoringEngine } from '../coordinator/scoring-engine.js';
import { LabelScorer } from '../worker/engine/label-scorer.js';
import { getRuntime, runtimeInfo } from '../worker/engine/llama-runtime.js';

/** llama.cpp through node-llama-cpp, loaded on first use (one binding per process, shared by every call). */
export function llamaEngine(logger: Logger, build: LlamaBuild): ScoringEngine {
  return {
    sequences: (codebook, override) => Promise.resolve(resolveSequences(codebook, override)),
    async describe() {
      const runtime = await runtimeInfo(await getRuntime({ build, logger }));
      return {
        nodeLlamaCpp: runtime.nodeLlamaCppVersion,
        llamaCpp: runtime.llamaCppRelease,
        llamaBuild: runtime.build,
        gpu: runtime.gpu,
      };
    },
    createScorer: (codebook, options) => LabelScorer.create(codebook, { ...options, build }),
  };
}

/** `rescale run` in this process with node-llama-cpp: what the CLI, the demo, tests and benchmarks call. */
export function runLocalMode(options: LocalRunOptions, build: LlamaBuild = 'auto'): Promise<LocalRunSummary> {
  return runLocal(options, llamaEngine(options.logger ?? silentLogger, build));
}

/** `rescale merge`: re-plans with node-llama-cpp's settings (they are part of the shard ids) and merges. */
export function mergeLocalMode(options: MergeOnlyOptions, build: LlamaBuild = 'auto'): Promise<MergeSummary> {
  return mergeOnly(options, llamaEngine(options.logger, build));
}

export type { LocalRunOptions, LocalRunSummary };
