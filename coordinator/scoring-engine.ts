// The model runtime as a run sees it (a port): local mode's CLI wires node-llama-cpp in (cli/local-mode.ts), a test
// or benchmark may wire its own. The coordinator never imports the runtime, so it cannot load a model by accident.

import type { Codebook } from '../contracts/codebook.js';
import type { Logger } from '../contracts/logger.js';
import type { DocumentScorer } from '../contracts/document-scorer.js';
import type { EngineDescription } from './run-plan.js';

export interface RunScorerOptions {
  readonly logger: Logger;
  readonly sequences: number;
  /** CPU threads; absent = the codebook's, else all cores. */
  readonly threads?: number;
}

export interface ScoringEngine {
  /** Documents decoded together for this codebook; part of the shard ids, so it is settled before planning. */
  sequences(codebook: Codebook, override: number | undefined): Promise<number>;
  /** The build that scores (versions, GPU), for the manifest. */
  describe(): Promise<EngineDescription>;
  /** A scorer for the codebook's model; the caller disposes it. */
  createScorer(codebook: Codebook, options: RunScorerOptions): Promise<DocumentScorer>;
}
