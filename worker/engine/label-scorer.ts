// The label scorer: P(label | document) computed by the model exactly over the codebook's label set — the
// probability of each label's full answer token sequence after the prompt, renormalised over the labels.
// No sampling anywhere. The shared prompt prefix is evaluated once per sequence and kept in the KV cache;
// the batch layout depends only on the documents given, never on timing (see README, "Determinism").
// A facade over worker/engine/: context plan, sequence pool, decode strategy, label trie scorer, distribution maths.

import type { LlamaModel, Token } from 'node-llama-cpp';
import { singleQuestion, type Codebook, type Label } from '../../contracts/codebook.js';
import type { DocumentInput } from '../../contracts/document-input.js';
import type { DocumentScore, DocumentScorer, ScoreOptions, ScorerSettings } from '../../contracts/document-scorer.js';
import { RescaleError, errorMessage } from '../../contracts/errors.js';
import { silentLogger, type Logger } from '../../contracts/logger.js';
import type { RowStatus } from '../../contracts/results.js';
import { BatchedDecode } from './batched-decode.js';
import { planContext } from './context-plan.js';
import type { DecodeStrategy, DecodeStrategyName } from './decode-strategy.js';
import { labelDistribution } from './label-distribution.js';
import { LabelTrieScorer, type TrieScore } from './label-trie-scorer.js';
import {
  assertLoraAdapter,
  getRuntime,
  loadModel,
  runtimeInfo,
  type BuildPreference,
  type RuntimeInfo,
} from './llama-runtime.js';
import { PromptBuilder } from './prompt-builder.js';
import { SequencePool } from './sequence-pool.js';
import { serialDecode } from './serial-decode.js';

export interface ScorerOptions {
  readonly logger?: Logger;
  /** Overrides codebook model.sequences (documents decoded together). */
  readonly sequences?: number;
  /**
   * How a group's documents reach llama.cpp (default "batched": one decode per group; "serial": one decode per
   * document, in order, each as with sequences: 1). For benchmarks and tests; not part of the result hash.
   */
  readonly decode?: DecodeStrategyName;
  /** Overrides codebook model.threads. */
  readonly threads?: number;
  /** Reuse an already loaded model (cluster workers cache models across shards); its llama.cpp binding is used. */
  readonly model?: LlamaModel;
  /** llama.cpp build to load when no model is given (callers pass RESCALE_LLAMA_BUILD, parsed; default auto). */
  readonly build?: BuildPreference;
}

interface PendingDocument {
  readonly index: number;
  readonly tokens: Token[];
  readonly truncated: boolean;
}

export class LabelScorer implements DocumentScorer {
  readonly labels: readonly Label[];
  /** Each label's answer token sequence as scored (a terminator appended where one label is a prefix of another). */
  readonly labelTokens: readonly (readonly Token[])[];

  private busy: Promise<unknown> = Promise.resolve();
  private disposed = false;

  private constructor(
    readonly codebook: Codebook,
    readonly runtime: RuntimeInfo,
    readonly settings: ScorerSettings,
    private readonly model: LlamaModel,
    private readonly ownsModel: boolean,
    private readonly pool: SequencePool,
    private readonly prompts: PromptBuilder,
    private readonly trie: LabelTrieScorer,
    private readonly decode: DecodeStrategy,
    private readonly logger: Logger,
  ) {
    this.labels = singleQuestion(codebook).labels;
    this.labelTokens = trie.labelTokens;
  }

  static async create(codebook: Codebook, options: ScorerOptions = {}): Promise<LabelScorer> {
    const logger = options.logger ?? silentLogger;
    const question = singleQuestion(codebook);
    const llama = options.model?.llama ?? (await getRuntime({ build: options.build ?? 'auto', logger }));
    const info = await runtimeInfo(llama);
    for (const [i, adapter] of codebook.model.adapters.entries())
      await assertLoraAdapter(adapter.path, `model.adapters[${i}].path`);
    const model = options.model ?? (await loadModel(llama, codebook.model.path, codebook.model.gpuLayers));
    const ownsModel = options.model === undefined;
    try {
      const prompts = PromptBuilder.create(model, codebook, question);
      const trie = LabelTrieScorer.create(model, codebook, question);
      const prefixLength = prompts.sharedPrefix.length;
      const probe = prompts.render({ text: 'x' }, codebook.model.maxDocumentTokens);
      const plan = planContext(
        codebook,
        {
          sharedPrefixTokens: prefixLength,
          templateTokens: probe.tokens.length - prefixLength - 1,
          longestLabelTokens: trie.longestLabelTokens,
          trainContextSize: model.trainContextSize,
        },
        { sequences: options.sequences, threads: options.threads },
      );
      for (const warning of plan.warnings) logger.log('warn', warning.message, warning.meta);
      const pool = await SequencePool.create(model, codebook.model, plan, prompts.sharedPrefix);
      const decode = (options.decode ?? 'batched') === 'batched' ? new BatchedDecode(pool) : serialDecode;
      const settings: ScorerSettings = Object.freeze({
        sequences: plan.sequences,
        decode: decode.name,
        contextSize: pool.contextSize,
        batchSize: pool.batchSize,
        threads: pool.threads,
        flashAttention: pool.flashAttention,
        sharedPrefixTokens: prefixLength,
        chatWrapper: prompts.chatWrapperName,
        maxDocumentTokens: codebook.model.maxDocumentTokens,
      });
      const { build, gpu, llamaCppRelease: llamaCpp } = info;
      const labels = question.labels.length;
      logger.log('info', 'label scorer ready', {
        build,
        gpu,
        llamaCpp,
        ...settings,
        labels,
        innerTrieNodes: trie.inner.length,
      });
      return new LabelScorer(codebook, info, settings, model, ownsModel, pool, prompts, trie, decode, logger);
    } catch (error) {
      if (ownsModel) await model.dispose();
      throw error;
    }
  }

  /** llama.cpp decode calls made so far (prefix evaluations included): batched decoding makes one per group. */
  get decodeCalls(): number {
    return this.pool.dispatches.decodeCalls;
  }

  /** The rendered prompt for a document, special tokens shown; for inspection. */
  previewPrompt(doc: DocumentInput): string {
    return this.prompts.preview(doc, this.settings.maxDocumentTokens);
  }

  /** Prompt tokens for a document exactly as scored (the shared prefix included). */
  promptTokens(doc: DocumentInput): { tokens: Token[]; truncated: boolean } {
    return this.prompts.render(doc, this.settings.maxDocumentTokens);
  }

  /**
   * Scores documents in order. Calls are serialised, so concurrent callers never share a decode call; documents
   * are decoded in groups of `settings.sequences`, in the order given.
   */
  async score(docs: readonly DocumentInput[], options: ScoreOptions = {}): Promise<DocumentScore[]> {
    const run = this.busy.then(() => this.scoreSerially(docs, options));
    this.busy = run.catch(() => undefined);
    return run;
  }

  private async scoreSerially(docs: readonly DocumentInput[], options: ScoreOptions): Promise<DocumentScore[]> {
    if (this.disposed) throw new RescaleError('INTERNAL', 'the label scorer was disposed');
    const results: DocumentScore[] = new Array<DocumentScore>(docs.length);
    const capacity = this.settings.contextSize - this.labelTokens.reduce((m, t) => Math.max(m, t.length), 0);
    let pending: PendingDocument[] = [];
    const flush = async (): Promise<void> => {
      if (pending.length === 0) return;
      const scores = await this.scoreGroup(pending);
      pending.forEach((doc, i) => (results[doc.index] = scores[i] as DocumentScore));
      pending = [];
    };
    for (let index = 0; index < docs.length; index++) {
      options.signal?.throwIfAborted();
      const doc = docs[index] as DocumentInput;
      if (doc.text === null || doc.text.trim() === '') {
        results[index] = unscored('empty_text', 'document text is null or blank', 0, false);
        continue;
      }
      const rendered = this.prompts.render(doc, this.settings.maxDocumentTokens);
      if (rendered.tokens.length > capacity) {
        results[index] = unscored(
          'error',
          `prompt is ${rendered.tokens.length} tokens, more than the context holds (${capacity}); raise ` +
            'model.context_size or lower model.max_document_tokens',
          0,
          rendered.truncated,
        );
        continue;
      }
      pending.push({ index, tokens: rendered.tokens, truncated: rendered.truncated });
      if (pending.length === this.settings.sequences) {
        await flush();
        options.onProgress?.(index + 1);
      }
    }
    await flush();
    options.onProgress?.(docs.length);
    return results;
  }

  /**
   * One group: every document on its own sequence, each phase laid out by the decode strategy. The shared prefix is
   * always evaluated alone (serially), so its cached state never depends on the documents or the strategy.
   */
  private async scoreGroup(group: readonly PendingDocument[]): Promise<DocumentScore[]> {
    try {
      const starts = await serialDecode.each(group, (doc, slot) => this.pool.prepare(slot, doc.tokens));
      const documents = group.map((doc, slot) => ({ tokens: doc.tokens, start: starts[slot] as number }));
      const scores = await this.trie.scoreGroup(this.pool, documents, this.decode);
      return group.map((doc, slot) => this.finish(scores[slot] as TrieScore, doc.truncated));
    } catch (cause) {
      this.pool.invalidate();
      throw new RescaleError('ENGINE_FAILED', `llama.cpp evaluation failed: ${errorMessage(cause)}`, {
        cause,
        retryable: true,
      });
    }
  }

  private finish(score: TrieScore, truncated: boolean): DocumentScore {
    const { tokens } = score;
    const distribution = labelDistribution(score.logProbabilities);
    if (distribution === null)
      return unscored('error', 'every label has probability 0 under the model', tokens, truncated, score.labelMass);
    const { probabilities, top, confidence, margin, entropy } = distribution;
    return {
      status: truncated ? 'truncated' : 'ok',
      label: (this.labels[top] as Label).name,
      probabilities,
      confidence,
      margin,
      entropy,
      labelMass: score.labelMass,
      tokens,
      truncated,
      error: null,
    };
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.busy;
    await this.pool.dispose();
    if (this.ownsModel) await this.model.dispose();
    this.logger.log('debug', 'label scorer disposed');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}

function unscored(
  status: RowStatus,
  error: string,
  tokens: number,
  truncated: boolean,
  labelMass: number | null = null,
): DocumentScore {
  return {
    status,
    label: null,
    probabilities: null,
    confidence: null,
    margin: null,
    entropy: null,
    labelMass,
    tokens,
    truncated,
    error,
  };
}
