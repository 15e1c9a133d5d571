// The result hash: what a run's results depend on. Shard ids and resume checks use it, so two runs share results
// only when every input that can change them is the same.

import { createHash } from 'node:crypto';
import { canonicalJson, type Codebook } from './codebook.js';
import { fallbackAsksLabelsThatApply } from './fallback-template.js';
import { questionLayout } from './question-layout.js';

/** How a run lays out its documents, beyond the codebook: part of the result hash. */
export interface ResultLayout {
  /** Documents decoded together (resolveSequences). */
  readonly sequences: number;
  /**
   * Identical prompt inputs of a shard scored once (default true). Off (`--no-dedupe`), copies are scored and carry
   * tokens, and with several sequences the decode groups differ, so it joins the hash; on leaves the hash as it was.
   */
  readonly dedupe?: boolean;
}

/** The model's and adapters' identities, as the caller found them on disk. */
export interface ModelFingerprints {
  readonly model: string;
  readonly adapters: readonly string[];
  /**
   * The codebook's prompts are Llama-2 chat turns (usesLlama2Chat), rendered and answered as Meta's reference does
   * since that replaced node-llama-cpp's rendering; absent or false leaves the hash as it was.
   */
  readonly llama2Chat?: boolean;
}

/**
 * Hash of everything in the codebook that can change a result: labels, prompt, input columns, model and adapter
 * identities (fingerprints supplied by the caller), scales, truncation and batch layout. Threads and GPU offload
 * are left out: they do not change which computation is done (see README, "Determinism"). `fallback` is the active
 * fallback's identity (fallbackIdentity), or null for a local-only run, whose hash it leaves as it was.
 */
export function codebookResultHash(
  codebook: Codebook,
  fingerprints: ModelFingerprints,
  layout: ResultLayout,
  fallback: string | null = null,
): string {
  // An absent truncation leaves the hash as it was before the field existed.
  const { truncate, ...prompt } = codebook.prompt;
  const identity = {
    task: codebook.task,
    textColumn: codebook.textColumn,
    idColumn: codebook.idColumn,
    // `ordered` only steers evaluation, so it stays out of the hash (results do not depend on it); a question without
    // text hashes as before questions had one, so one-question codebooks keep their hash and shard ids.
    questions: codebook.questions.map(({ ordered: _ordered, text, multiLabel, ...question }) => ({
      ...question,
      ...(text === null ? {} : { text }),
      ...(multiLabel === null ? {} : { multiLabel }),
    })),
    prompt: truncate === null ? prompt : { ...prompt, truncate },
    model: fingerprints.model,
    adapters: codebook.model.adapters.map((a, i) => ({ fingerprint: fingerprints.adapters[i], scale: a.scale })),
    maxDocumentTokens: codebook.model.maxDocumentTokens,
    sequences: layout.sequences,
    ...(layout.dedupe === false ? { dedupe: false } : {}),
    // Several prompts after one document: their tails are decoded together (worker/engine/label-scorer.ts), which
    // moves probabilities within the batched-decoding tolerance against one tail at a time, so results from before
    // that layout (whose hash lacks this) are never mixed with its own on resume.
    ...(questionLayout(codebook).kind === 'document-first' ? { tails: 'together' } : {}),
    ...(fallback === null ? {} : { fallback }),
    // A routed multi-label question was once asked in the codebook template's words, now which of its labels apply:
    // answers from then are never resumed into or merged with the new wording's (other codebooks keep their hash).
    ...(fallback !== null && fallbackAsksLabelsThatApply(codebook) ? { fallbackAsk: 'labels-that-apply' } : {}),
    // Llama-2 chat prompts once went through node-llama-cpp's chat wrapper, whose tokens around "[/INST]" differ
    // from the reference's, then (marker 'llama2-reference') ended a label that is a prefix of another with EOS right
    // after the answer instead of the reference's " " and EOS: results of either are never resumed into or merged.
    ...(fingerprints.llama2Chat === true ? { chat: 'llama2-reference-2' } : {}),
  };
  return createHash('sha256').update(canonicalJson(identity)).digest('hex');
}
