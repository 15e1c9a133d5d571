// The context plan: context size, batch size, threads and sequences for a codebook, from token counts alone
// (no model objects), so the sizing rules can be read and tested on their own.

import { resolveSequences, type Codebook } from '../../contracts/codebook.js';
import { RescaleError } from '../../contracts/errors.js';
import type { LogMeta } from '../../contracts/logger.js';

/** Tokens needed after the document for the longest label path, plus slack for template tails and other columns. */
export const CONTEXT_SLACK_TOKENS = 64;

/** Token counts measured on the model's tokenizer. */
export interface PromptMeasure {
  /** The shared prompt prefix, evaluated once per sequence. */
  readonly sharedPrefixTokens: number;
  /** Tokens a prompt has beyond the shared prefix and the document (the template's tail). */
  readonly templateTokens: number;
  /** The longest label's answer path. */
  readonly longestLabelTokens: number;
  /** The context the model was trained with. */
  readonly trainContextSize: number;
  /** The longest prompt tail after the document (several prompts per document; 0 or absent for one). */
  readonly tailTokens?: number;
}

export interface ContextOverrides {
  /** Overrides codebook model.sequences. */
  readonly sequences?: number | undefined;
  /** Overrides codebook model.threads. */
  readonly threads?: number | undefined;
  /** Tail slots beside the documents' sequences (several prompts per document; see label-scorer.ts). */
  readonly tailSequences?: number | undefined;
}

export interface ContextPlan {
  readonly contextSize: number;
  readonly batchSize: number;
  /** 0 lets llama.cpp choose. */
  readonly threads: number;
  readonly sequences: number;
  /** Tail slots: sequences beyond `sequences` that decode prompt tails after a copy of a document's cache. */
  readonly tailSequences?: number;
  /** What the prompt, the longest document and the longest label need. */
  readonly neededContextSize: number;
  /** Sizes that work but deserve a warning, in the order found. */
  readonly warnings: readonly { readonly message: string; readonly meta: LogMeta }[];
}

/** The smallest batch the plan asks for, when the context holds it: llama.cpp's default `n_ubatch`. */
export const PREFERRED_BATCH_TOKENS = 512;

/** Plans the context; fails with CONTEXT_TOO_SMALL when a configured context cannot hold any document at all. */
export function planContext(codebook: Codebook, measure: PromptMeasure, overrides: ContextOverrides = {}): ContextPlan {
  const sequences = resolveSequences(codebook, overrides.sequences);
  const {
    sharedPrefixTokens: prefixLength,
    templateTokens: templateOverhead,
    longestLabelTokens: longestLabel,
  } = measure;
  const needed =
    prefixLength + codebook.model.maxDocumentTokens + templateOverhead + longestLabel + CONTEXT_SLACK_TOKENS;
  const contextSize = codebook.model.contextSize ?? needed;
  const minimum = prefixLength + templateOverhead + longestLabel + 1;
  if (contextSize < minimum) {
    throw new RescaleError(
      'CONTEXT_TOO_SMALL',
      `${codebook.source ?? 'codebook'}: field "model.context_size" is ${contextSize} tokens, but the shared prompt ` +
        `(${prefixLength}) + template (${templateOverhead}) + longest label (${longestLabel}) leave no room for a ` +
        `document; raise model.context_size to at least ${needed} or shorten the prompt`,
    );
  }
  const warnings: { message: string; meta: LogMeta }[] = [];
  if (contextSize < needed) {
    const message = 'context smaller than prompt + max_document_tokens: longer documents get status "error"';
    warnings.push({ message, meta: { contextSize, needed } });
  }
  if (contextSize > measure.trainContextSize) {
    const meta = { contextSize, trainContextSize: measure.trainContextSize };
    warnings.push({ message: 'context size exceeds the model training context', meta });
  }
  // Each document (or each group of `sequences` documents) is one decode call, so the batch must hold it whole.
  const perDocument = contextSize - prefixLength;
  // Tails share a decode too: the batch holds every tail slot's longest tail and label path.
  const tailSequences = overrides.tailSequences ?? 0;
  const perTail = (measure.tailTokens ?? 0) + longestLabel;
  const needs = Math.max(perDocument * sequences, prefixLength, tailSequences * perTail);
  // At least llama.cpp's default micro-batch, which llama-bench and llama-server run with: the same decode ran 8–10%
  // slower with the batch sized to the need (325 tokens) than at 512 (bench/results/engine.md). Never more than the
  // whole context holds; the decodes themselves, and so the results, do not depend on it.
  const batchSize = Math.max(needs, Math.min(PREFERRED_BATCH_TOKENS, contextSize * (sequences + tailSequences)));
  const threads = overrides.threads ?? codebook.model.threads ?? 0;
  return {
    contextSize,
    batchSize,
    threads,
    sequences,
    ...(tailSequences > 0 ? { tailSequences } : {}),
    neededContextSize: needed,
    warnings,
  };
}
