// The DocumentScorer port: what the shard path, the local run and cluster workers need of a scorer (label
// distributions for documents, the layout the manifest records, disposal), free of model types so anything can stand
// in.

import type { Codebook } from './codebook.js';
import type { DocumentInput } from './document-input.js';
import type { QuestionAnswer, RowStatus } from './results.js';

export interface DocumentScore {
  readonly status: RowStatus;
  /** Top label; null when not scored. */
  readonly label: string | null;
  /** In codebook label order; sums to 1. */
  readonly probabilities: Float64Array | null;
  readonly confidence: number | null;
  /** Top probability minus the second. */
  readonly margin: number | null;
  /** Shannon entropy of the label distribution, in nats. */
  readonly entropy: number | null;
  /**
   * The probability the model puts, right after the prompt, on the labels' first tokens (Σ over those distinct
   * tokens, normalised over the whole vocabulary): near 1 when the model answers with a label, near 0 when it does
   * not see the prompt as this task. Null when not scored.
   */
  readonly labelMass: number | null;
  /**
   * Tokens evaluated for this document beyond the shared prefix: the document, each question's template tail, the
   * label paths.
   */
  readonly tokens: number;
  readonly truncated: boolean;
  readonly error: string | null;
  /**
   * A codebook with several questions: one answer per question, in codebook order (the fields above that describe
   * one label distribution are then null). Absent for a one-question codebook.
   */
  readonly answers?: readonly QuestionAnswer[];
}

export interface ScoreOptions {
  readonly signal?: AbortSignal;
  /** Called after each group of documents with the number scored so far in this call. */
  readonly onProgress?: (scored: number) => void;
}

/** How the engine was laid out; recorded in the manifest (`software.engines[].settings`). */
export interface ScorerSettings {
  readonly sequences: number;
  /** How a group's documents reach llama.cpp: "batched" (one decode per group) or "serial" (one per document). */
  readonly decode: string;
  readonly contextSize: number;
  readonly batchSize: number;
  readonly threads: number;
  readonly flashAttention: boolean | 'auto';
  readonly sharedPrefixTokens: number;
  readonly chatWrapper: string | null;
  readonly maxDocumentTokens: number;
  /**
   * Tail slots: sequences that decode several prompts' tails together after a copy of their document's cache
   * (several prompts per document, batched decoding); absent when there are none.
   */
  readonly tailSequences?: number;
}

/**
 * Scores documents against the codebook's questions. Implementations hold native memory: callers dispose
 * them on every path (`dispose()` or `await using`).
 */
export interface DocumentScorer extends AsyncDisposable {
  readonly codebook: Codebook;
  readonly settings: ScorerSettings;
  /**
   * One score per document, in the order given; an unscorable document gets a status and an error text (engine failures
   * throw).
   */
  score(docs: readonly DocumentInput[], options?: ScoreOptions): Promise<DocumentScore[]>;
  dispose(): Promise<void>;
}
