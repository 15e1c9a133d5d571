// The scoring context and its sequences, one per document slot of a group: each keeps the shared prompt prefix in
// its KV cache between documents and is rewound (its tail erased) to a position, never shifted. A context for a
// codebook with several prompts per document also has tail slots: each takes a copy of a document slot's cache (the
// document evaluated once) and decodes one prompt's tail after it, so several tails share one decode.

import { LlamaContextSequence, type LlamaContext, type LlamaModel, type Token } from 'node-llama-cpp';
import type { ModelSpec } from '../../contracts/codebook.js';
import { RescaleError, errorMessage } from '../../contracts/errors.js';
import type { ContextPlan } from './context-plan.js';
import { DispatchLog } from './dispatch-log.js';
import { reuseNativeSamplers } from './native-sampler-pool.js';

/**
 * node-llama-cpp 3.22's copy of one sequence's state into another (llama.cpp's `llama_memory_seq_cp`; with one KV
 * stream per sequence, as node-llama-cpp creates them, the source's whole stream is copied on the next decode). It is
 * not part of node-llama-cpp's typed API (its own decision contexts use it), so its presence is checked before use.
 */
interface CopyingSequence {
  _copyStateFromOtherSequence(other: LlamaContextSequence, upToTokenIndex: number): Promise<boolean>;
}

function canCopy(sequence: object): sequence is CopyingSequence {
  return typeof (sequence as Partial<CopyingSequence>)._copyStateFromOtherSequence === 'function';
}

/** Whether this node-llama-cpp can copy a sequence's cache into another (what tail slots need). */
export function sequencesCanCopy(): boolean {
  return canCopy(LlamaContextSequence.prototype);
}

export class SequencePool {
  /** Document slots (0 … size − 1): a group holds at most this many documents. */
  readonly size: number;
  /** Tail slots (size … size + tailSlots − 1), filled only by copies of document slots. */
  readonly tailSlots: number;
  private readonly sequences: readonly LlamaContextSequence[];
  /** Per slot: the shared prefix is in its KV cache and untouched. */
  private readonly prefixIntact: boolean[];
  private disposed = false;

  private constructor(
    private readonly context: LlamaContext,
    private readonly sharedPrefix: readonly Token[],
    size: number,
    tailSlots: number,
    /** What the context's batching did (decode strategies check their layout with it). */
    readonly dispatches: DispatchLog,
  ) {
    this.size = size;
    this.tailSlots = tailSlots;
    this.sequences = Array.from({ length: size + tailSlots }, () => context.getSequence());
    this.prefixIntact = this.sequences.map(() => false);
  }

  /** All sequences, document and tail slots. */
  get sequenceCount(): number {
    return this.sequences.length;
  }

  /** Creates the context the plan describes, with the codebook's adapters; errors name the model and what to change. */
  static async create(
    model: LlamaModel,
    spec: ModelSpec,
    plan: ContextPlan,
    sharedPrefix: readonly Token[],
  ): Promise<SequencePool> {
    const { contextSize, sequences, batchSize, threads } = plan;
    const tailSlots = plan.tailSequences ?? 0;
    if (tailSlots > 0 && !sequencesCanCopy())
      throw new RescaleError('INTERNAL', 'tail slots need a node-llama-cpp that copies sequence state (3.22)');
    let context: LlamaContext;
    const dispatches = new DispatchLog();
    reuseNativeSamplers(model);
    try {
      context = await model.createContext({
        contextSize,
        sequences: sequences + tailSlots,
        batchSize,
        threads,
        batching: dispatches.batching,
        ...(spec.adapters.length > 0
          ? { lora: { adapters: spec.adapters.map((a) => ({ filePath: a.path, scale: a.scale })) } }
          : {}),
      });
    } catch (cause) {
      const adapters = spec.adapters.map((a) => a.path).join(', ');
      const reason = errorMessage(cause);
      if (adapters !== '' && /lora|adapter|tensor/i.test(reason)) {
        const message =
          `llama.cpp rejected adapter(s) ${adapters} for model ${spec.path}: ${reason}; ` +
          'an adapter only fits the base model it was trained on';
        throw new RescaleError('ADAPTER_MISMATCH', message, { cause });
      }
      const message =
        `cannot create a context of ${contextSize} tokens × ${sequences} sequences for ${spec.path}: ${reason}; ` +
        'lower model.context_size or model.sequences';
      throw new RescaleError('ENGINE_FAILED', message, { cause });
    }
    return new SequencePool(context, sharedPrefix, sequences, tailSlots, dispatches);
  }

  /** The context as llama.cpp sized it (it may round the context size up). */
  get contextSize(): number {
    return this.context.contextSize;
  }

  get batchSize(): number {
    return this.context.batchSize;
  }

  get threads(): number {
    return this.context.idealThreads;
  }

  get flashAttention(): boolean | 'auto' {
    return this.context.flashAttention;
  }

  sequence(slot: number): LlamaContextSequence {
    const sequence = this.sequences[slot];
    if (sequence === undefined)
      throw new RescaleError('INTERNAL', `sequence slot ${slot} is outside the pool of ${this.sequences.length}`);
    return sequence;
  }

  /**
   * Brings a slot back to "the prompt's longest common prefix with the shared prefix evaluated, nothing after it"
   * and returns that length: how many of the prompt's tokens are already in the cache (at most all but the last).
   * The shared prefix is always evaluated alone, from an empty sequence, so the cached state a prompt starts from
   * depends only on that prompt, never on the documents before it. A prompt that diverges inside the prefix (its
   * document's first characters merge with the prefix's last tokens) rewinds into it.
   */
  async prepare(slot: number, tokens: readonly Token[]): Promise<number> {
    const sequence = this.sequence(slot);
    const prefix = this.sharedPrefix;
    let common = 0;
    const limit = Math.min(prefix.length, tokens.length - 1);
    while (common < limit && tokens[common] === prefix[common]) common++;
    if (!this.prefixIntact[slot]) {
      await sequence.clearHistory();
      if (prefix.length > 0) await sequence.controlledEvaluate([...prefix]);
      this.prefixIntact[slot] = true;
    }
    await this.rewind(slot, common);
    if (common < prefix.length) this.prefixIntact[slot] = false;
    return common;
  }

  /**
   * Makes tail slot `target` hold document slot `source`'s first `position` tokens: a copy of its cache, not a new
   * evaluation, so what the tail decodes after it attends to the same keys and values bit for bit.
   */
  async copy(target: number, source: number, position: number): Promise<void> {
    if (target < this.size || source >= this.size)
      throw new RescaleError('INTERNAL', `a copy goes from a document slot to a tail slot, not ${source} → ${target}`);
    const from = this.sequence(source);
    const to = this.sequence(target);
    if (from.nextTokenIndex < position)
      throw new RescaleError('INTERNAL', `slot ${source} holds ${from.nextTokenIndex} tokens, fewer than ${position}`);
    if (!canCopy(to)) throw new RescaleError('INTERNAL', 'this node-llama-cpp cannot copy sequence state');
    const copied = await to._copyStateFromOtherSequence(from, position);
    if (!copied || to.nextTokenIndex !== position)
      throw new RescaleError('ENGINE_FAILED', `llama.cpp could not copy sequence ${source}'s cache to ${target}`, {
        retryable: true,
      });
  }

  /** Erases everything after the first `position` tokens (only ever the tail, so nothing is shifted). */
  async rewind(slot: number, position: number): Promise<void> {
    const sequence = this.sequence(slot);
    if (sequence.nextTokenIndex > position)
      await sequence.eraseContextTokenRanges([{ start: position, end: sequence.nextTokenIndex }]);
  }

  /**
   * Resolves once no decode is running on the context (it waits for the context's lock, as erasing tokens does), so
   * evaluations queued next are laid out in a decode of their own.
   */
  async settled(): Promise<void> {
    await this.sequence(0).eraseContextTokenRanges([]);
  }

  /** After a failed evaluation no cache is trusted: every slot re-evaluates the prefix next time. */
  invalidate(): void {
    this.prefixIntact.fill(false);
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.context.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}
