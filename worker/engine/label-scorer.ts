// The label scorer: P(label | document) computed by the model exactly over the codebook's label set — the
// probability of each label's full answer token sequence after the prompt, renormalised over the labels.
// No sampling anywhere. The shared prompt prefix is evaluated once per sequence and kept in the KV cache;
// the batch layout depends only on the documents given, never on timing (see README, "Determinism").

import { TokenBias, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token } from 'node-llama-cpp';
import { resolveSequences, singleQuestion, type Codebook, type Label } from '../../contracts/codebook.js';
import { RescaleError, errorMessage } from '../../contracts/errors.js';
import { llamaBuildFromEnvironment } from '../../contracts/environment.js';
import { silentLogger, type Logger } from '../../contracts/logger.js';
import type { RowStatus } from '../../contracts/results.js';
import { buildLabelTrie, innerNodes, type TrieNode } from './label-trie.js';
import { assertLoraAdapter, getRuntime, loadModel, runtimeInfo, type BuildPreference, type RuntimeInfo } from './llama-runtime.js';
import type { DocumentInput } from '../../contracts/document-input.js';
import type { DocumentScore, DocumentScorer, ScoreOptions, ScorerSettings } from '../../contracts/document-scorer.js';
import { PromptBuilder } from './prompt-builder.js';

export interface ScorerOptions {
  readonly logger?: Logger;
  /** Overrides codebook model.sequences (documents decoded together). */
  readonly sequences?: number;
  /** Overrides codebook model.threads. */
  readonly threads?: number;
  /** Reuse an already loaded model (cluster workers cache models across shards); its llama.cpp binding is used. */
  readonly model?: LlamaModel;
  /** llama.cpp build to load when no model is given (default: RESCALE_LLAMA_BUILD). */
  readonly build?: BuildPreference;
}

/** Tokens needed after the document for the longest label path, plus slack for template tails and other columns. */
const CONTEXT_SLACK_TOKENS = 64;

/**
 * Added to the logits of the tokens whose relative probabilities are wanted (the labels' first tokens at the
 * root) so they make the top-k. The bias shifts all of them equally,
 * so their relative probabilities are unchanged, except that float32 rounds (logit + 32) to a step of 2^-18
 * (3.8e-6) when |logit| < 32: far below the ~5e-3 that a change of batch layout moves logits (README).
 */
const ROOT_LOGIT_BIAS = 32;

interface TokenRestriction {
  readonly tokens: readonly Token[];
  readonly bias: TokenBias;
}

interface Anchor {
  readonly token: Token;
  /** Its probability over the whole vocabulary. */
  readonly probability: number;
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

  private readonly root: TrieNode;
  private readonly rootBias: TokenRestriction;
  private readonly restrictions = new Map<string, TokenRestriction>();
  private readonly inner: readonly TrieNode[];
  private readonly sequences: LlamaContextSequence[];
  /** Per sequence: the shared prefix is in its KV cache and untouched. */
  private readonly prefixIntact: boolean[];
  private busy: Promise<unknown> = Promise.resolve();
  private disposed = false;

  private constructor(
    readonly codebook: Codebook,
    readonly runtime: RuntimeInfo,
    readonly settings: ScorerSettings,
    private readonly model: LlamaModel,
    private readonly ownsModel: boolean,
    private readonly context: LlamaContext,
    private readonly prompts: PromptBuilder,
    labelTokens: Token[][],
    root: TrieNode,
    private readonly logger: Logger,
  ) {
    this.labels = singleQuestion(codebook).labels;
    this.labelTokens = labelTokens;
    this.root = root;
    this.rootBias = this.restriction([...root.children.keys()]);
    this.inner = innerNodes(root);
    this.sequences = Array.from({ length: settings.sequences }, () => context.getSequence());
    this.prefixIntact = this.sequences.map(() => false);
  }

  static async create(codebook: Codebook, options: ScorerOptions = {}): Promise<LabelScorer> {
    const logger = options.logger ?? silentLogger;
    const question = singleQuestion(codebook);
    const llama = options.model?.llama ?? (await getRuntime({ build: options.build ?? llamaBuildFromEnvironment(), logger }));
    const info = await runtimeInfo(llama);
    for (const [i, adapter] of codebook.model.adapters.entries()) await assertLoraAdapter(adapter.path, `model.adapters[${i}].path`);
    const model = options.model ?? (await loadModel(llama, codebook.model.path, codebook.model.gpuLayers));
    const ownsModel = options.model === undefined;
    try {
      const prompts = PromptBuilder.create(model, codebook, question);
      const terminator = (codebook.prompt.format === 'chat' ? model.tokens.eot : null) ?? model.tokens.eos;
      const answerTokens = question.labels.map((label, i) => {
        const tokens = model.tokenize(codebook.prompt.answerPrefix + label.answer, false, 'trimLeadingSpace');
        if (tokens.length === 0) {
          throw new RescaleError('LABEL_INVALID', `${codebook.source ?? 'codebook'}: label "${label.name}" (field "labels[${i}]") tokenises to nothing; give it a visible "answer" text`);
        }
        return tokens;
      });
      if (terminator === null && answerTokens.some((a, i) => answerTokens.some((b, j) => i !== j && a.length < b.length && a.every((t, k) => b[k] === t)))) {
        throw new RescaleError('LABEL_INVALID', `${codebook.source ?? 'codebook'}: one label's answer is a prefix of another's and the model has no end-of-text token to tell them apart; rename the labels' "answer" texts`);
      }
      const trie = buildLabelTrie(answerTokens, terminator ?? (0 as Token));
      const longestLabel = Math.max(...trie.sequences.map((s) => s.length));

      const sequences = resolveSequences(codebook, options.sequences);
      const prefixLength = prompts.sharedPrefix.length;
      const probe = prompts.render({ text: 'x' }, codebook.model.maxDocumentTokens);
      const templateOverhead = probe.tokens.length - prefixLength - 1;
      const needed = prefixLength + codebook.model.maxDocumentTokens + templateOverhead + longestLabel + CONTEXT_SLACK_TOKENS;
      const contextSize = codebook.model.contextSize ?? needed;
      const minimum = prefixLength + templateOverhead + longestLabel + 1;
      if (contextSize < minimum) {
        throw new RescaleError(
          'CONTEXT_TOO_SMALL',
          `${codebook.source ?? 'codebook'}: field "model.context_size" is ${contextSize} tokens, but the shared prompt (${prefixLength}) + template (${templateOverhead}) + longest label (${longestLabel}) leave no room for a document; raise model.context_size to at least ${needed} or shorten the prompt`,
        );
      }
      if (contextSize < needed) {
        logger.log('warn', 'context smaller than prompt + max_document_tokens: longer documents get status "error"', { contextSize, needed });
      }
      if (contextSize > model.trainContextSize) {
        logger.log('warn', 'context size exceeds the model training context', { contextSize, trainContextSize: model.trainContextSize });
      }
      // Each document (or each group of `sequences` documents) is one decode call, so the batch must hold it whole.
      const perDocument = contextSize - prefixLength;
      const batchSize = Math.max(perDocument * sequences, prefixLength);
      const threads = options.threads ?? codebook.model.threads ?? 0;
      let context: LlamaContext;
      try {
        context = await model.createContext({
          contextSize,
          sequences,
          batchSize,
          threads,
          ...(codebook.model.adapters.length > 0
            ? { lora: { adapters: codebook.model.adapters.map((a) => ({ filePath: a.path, scale: a.scale })) } }
            : {}),
        });
      } catch (cause) {
        const adapters = codebook.model.adapters.map((a) => a.path).join(', ');
        if (adapters !== '' && /lora|adapter|tensor/i.test(errorMessage(cause))) {
          throw new RescaleError('ADAPTER_MISMATCH', `llama.cpp rejected adapter(s) ${adapters} for model ${codebook.model.path}: ${errorMessage(cause)}; an adapter only fits the base model it was trained on`, { cause });
        }
        throw new RescaleError('ENGINE_FAILED', `cannot create a context of ${contextSize} tokens × ${sequences} sequences for ${codebook.model.path}: ${errorMessage(cause)}; lower model.context_size or model.sequences`, { cause });
      }
      const settings: ScorerSettings = Object.freeze({
        sequences,
        contextSize: context.contextSize,
        batchSize: context.batchSize,
        threads: context.idealThreads,
        flashAttention: context.flashAttention,
        sharedPrefixTokens: prefixLength,
        chatWrapper: prompts.chatWrapperName,
        maxDocumentTokens: codebook.model.maxDocumentTokens,
      });
      logger.log('info', 'label scorer ready', { build: info.build, gpu: info.gpu, llamaCpp: info.llamaCppRelease, ...settings, labels: question.labels.length, innerTrieNodes: innerNodes(trie.root).length });
      return new LabelScorer(codebook, info, settings, model, ownsModel, context, prompts, trie.sequences, trie.root, logger);
    } catch (error) {
      if (ownsModel) await model.dispose();
      throw error;
    }
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
        results[index] = unscored('error', `prompt is ${rendered.tokens.length} tokens, more than the context holds (${capacity}); raise model.context_size or lower model.max_document_tokens`, 0, rendered.truncated);
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

  /** One group: every document on its own sequence, each phase submitted together so layout is fixed. */
  private async scoreGroup(group: readonly PendingDocument[]): Promise<DocumentScore[]> {
    const starts = await inOrder(group, (doc, slot) => this.resetSequence(slot, doc.tokens));
    const sequences = group.map((_, slot) => this.sequences[slot] as LlamaContextSequence);
    const evaluated = group.map((doc, slot) => doc.tokens.length - (starts[slot] as number));

    try {
      // Root: the relative probabilities of the labels' first tokens right after the prompt.
      const rootProbabilities = await inOrder(group, (doc, slot) => this.evaluateWithNext(sequences[slot] as LlamaContextSequence, doc.tokens.slice(starts[slot]), this.rootBias));
      // Rare: a first token ranked below the top-k even with the bias; redo that document with the full distribution.
      for (const [slot, doc] of group.entries()) {
        if (rootProbabilities[slot] !== null) continue;
        await this.truncateSequence(slot, starts[slot] as number);
        rootProbabilities[slot] = await this.evaluateWithNext(sequences[slot] as LlamaContextSequence, doc.tokens.slice(starts[slot]), null);
        evaluated[slot] = (evaluated[slot] as number) + doc.tokens.length - (starts[slot] as number);
      }
      // Inner trie nodes (labels sharing a prefix or spanning several tokens). Below the root the normalisation
      // over the whole vocabulary matters, so each node's path is decoded twice, identically: once greedily for the
      // most likely next token t* and its full-vocabulary probability, once for the children's probabilities
      // relative to t*. The node's path is always one decode call after the document, so both see the same logits.
      const nodeProbabilities = group.map(() => new Map<TrieNode, Map<Token, number>>());
      for (const node of this.inner) {
        const path = [...node.path];
        await Promise.all(group.map((doc, slot) => this.truncateSequence(slot, doc.tokens.length)));
        const anchors = await inOrder(group, (_, slot) => this.evaluateGreedy(sequences[slot] as LlamaContextSequence, path));
        await Promise.all(group.map((doc, slot) => this.truncateSequence(slot, doc.tokens.length)));
        const relative = await inOrder(group, (_, slot) => this.evaluateWithNext(sequences[slot] as LlamaContextSequence, path, this.restriction([...node.children.keys(), (anchors[slot] as Anchor).token])));
        for (const [slot, doc] of group.entries()) {
          const anchor = anchors[slot] as Anchor;
          let probabilities = relative[slot] ?? null;
          evaluated[slot] = (evaluated[slot] as number) + 2 * path.length;
          if (probabilities === null) {
            await this.truncateSequence(slot, doc.tokens.length);
            probabilities = await this.evaluateWithNext(sequences[slot] as LlamaContextSequence, path, null);
            evaluated[slot] = (evaluated[slot] as number) + path.length;
          } else {
            const scale = anchor.probability / (probabilities.get(anchor.token) as number);
            probabilities = new Map([...probabilities].map(([token, p]) => [token, p * scale]));
          }
          (nodeProbabilities[slot] as Map<TrieNode, Map<Token, number>>).set(node, probabilities as Map<Token, number>);
        }
      }
      return group.map((doc, slot) =>
        this.finish(rootProbabilities[slot] as Map<Token, number>, nodeProbabilities[slot] as Map<TrieNode, Map<Token, number>>, evaluated[slot] as number, doc.truncated),
      );
    } catch (cause) {
      this.prefixIntact.fill(false);
      throw new RescaleError('ENGINE_FAILED', `llama.cpp evaluation failed: ${errorMessage(cause)}`, { cause, retryable: true });
    }
  }

  /**
   * Brings a sequence back to "shared prefix evaluated, nothing after it" and returns how many of the document's
   * tokens are already in the cache. The prefix is always evaluated alone, from an empty sequence, so its cached
   * state is the same whichever documents came before.
   */
  private async resetSequence(slot: number, tokens: readonly Token[]): Promise<number> {
    const sequence = this.sequences[slot] as LlamaContextSequence;
    const prefix = this.prompts.sharedPrefix;
    const matchesPrefix = prefix.every((t, i) => tokens[i] === t);
    if (!matchesPrefix) {
      // A document whose start merges with the prompt's last tokens: evaluate its prompt from scratch.
      await sequence.clearHistory();
      this.prefixIntact[slot] = false;
      return 0;
    }
    if (!this.prefixIntact[slot]) {
      await sequence.clearHistory();
      if (prefix.length > 0) await sequence.controlledEvaluate([...prefix]);
      this.prefixIntact[slot] = true;
    } else {
      await this.truncateSequence(slot, prefix.length);
    }
    return prefix.length;
  }

  /** Erases everything after `length` tokens (only ever the tail, so nothing is shifted). */
  private async truncateSequence(slot: number, length: number): Promise<void> {
    const sequence = this.sequences[slot] as LlamaContextSequence;
    if (sequence.nextTokenIndex > length) await sequence.eraseContextTokenRanges([{ start: length, end: sequence.nextTokenIndex }]);
  }

  /** Evaluates `tokens` (appending) and returns the most likely next token and its full-vocabulary probability. */
  private async evaluateGreedy(sequence: LlamaContextSequence, tokens: readonly Token[]): Promise<Anchor> {
    const last = tokens.length - 1;
    const generateNext = { token: true, confidence: true, options: { temperature: 0 } };
    const output = await sequence.controlledEvaluate(tokens.map((t, i) => (i === last ? ([t, { generateNext }] as [Token, { generateNext: typeof generateNext }]) : t)));
    const next = output[last]?.next;
    if (next?.token == null || next.confidence === undefined) throw new RescaleError('ENGINE_FAILED', 'llama.cpp returned no next token', { retryable: true });
    return { token: next.token, probability: next.confidence };
  }

  /** Tokens whose probabilities relative to each other one evaluation returns (cached per token set). */
  private restriction(tokens: readonly Token[]): TokenRestriction {
    const unique = [...new Set(tokens)];
    const key = unique.join(',');
    let cached = this.restrictions.get(key);
    if (cached === undefined) {
      const bias = new TokenBias(this.model.tokenizer);
      for (const token of unique) bias.set(token, { logit: ROOT_LOGIT_BIAS });
      cached = { tokens: unique, bias };
      this.restrictions.set(key, cached);
    }
    return cached;
  }

  /**
   * Evaluates `tokens` (appending) and returns next-token probabilities after the last one. With a restriction
   * (the root's label tokens, biased into the top-k) only those tokens' probabilities relative to each other come
   * back — all the root needs, at a fraction of the cost of the full vocabulary — or null when a label token was
   * still outside the top-k. Without, the full distribution (needed below the root, where normalisation matters).
   */
  private async evaluateWithNext(sequence: LlamaContextSequence, tokens: readonly Token[], restriction: TokenRestriction | null): Promise<Map<Token, number> | null> {
    const generateNext =
      restriction === null
        ? { probabilities: true }
        : { probabilities: true, options: { temperature: 1, topK: restriction.tokens.length, topP: 1, minP: 0, seed: 0, tokenBias: restriction.bias } };
    const last = tokens.length - 1;
    const input = tokens.map((t, i) => (i === last ? ([t, { generateNext }] as [Token, { generateNext: typeof generateNext }]) : t));
    const output = await sequence.controlledEvaluate(input);
    const probabilities = output[last]?.next.probabilities;
    if (probabilities === undefined) throw new RescaleError('ENGINE_FAILED', 'llama.cpp returned no next-token distribution', { retryable: true });
    if (restriction !== null && (probabilities.size !== restriction.tokens.length || restriction.tokens.some((t) => !probabilities.has(t)))) return null;
    return probabilities;
  }

  private finish(root: Map<Token, number>, nodes: Map<TrieNode, Map<Token, number>>, tokens: number, truncated: boolean): DocumentScore {
    const logProbabilities = this.labelTokens.map((sequence) => {
      let node = this.root;
      let distribution = root;
      let logProbability = 0;
      for (const token of sequence) {
        logProbability += Math.log(distribution.get(token) ?? 0);
        node = node.children.get(token) as TrieNode;
        if (node.children.size > 0) distribution = nodes.get(node) as Map<Token, number>;
      }
      return logProbability;
    });
    const max = Math.max(...logProbabilities);
    if (!Number.isFinite(max)) return unscored('error', 'every label has probability 0 under the model', tokens, truncated);
    const probabilities = new Float64Array(logProbabilities.length);
    let sum = 0;
    logProbabilities.forEach((lp, i) => {
      const p = Math.exp(lp - max);
      probabilities[i] = p;
      sum += p;
    });
    let top = 0;
    let entropy = 0;
    for (let i = 0; i < probabilities.length; i++) {
      const p = (probabilities[i] as number) / sum;
      probabilities[i] = p;
      if (p > (probabilities[top] as number)) top = i;
      if (p > 0) entropy -= p * Math.log(p);
    }
    let second = 0;
    for (let i = 0; i < probabilities.length; i++) if (i !== top) second = Math.max(second, probabilities[i] as number);
    const confidence = probabilities[top] as number;
    return {
      status: truncated ? 'truncated' : 'ok',
      label: (this.labels[top] as Label).name,
      probabilities,
      confidence,
      margin: confidence - second,
      entropy,
      tokens,
      truncated,
      error: null,
    };
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.busy;
    await this.context.dispose();
    if (this.ownsModel) await this.model.dispose();
    this.logger.log('debug', 'label scorer disposed');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }
}

/**
 * Runs one evaluation per sequence, one after another. Evaluations submitted together on several sequences of
 * one context are batched by node-llama-cpp into one decode — the point of several sequences — but under load
 * (measured: 2 cores, load average 9) a document then received another sequence's next-token distribution, so
 * until that is fixed each document is decoded alone, in order: always correct and deterministic.
 */
async function inOrder<T, R>(items: readonly T[], run: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (const [index, item] of items.entries()) results.push(await run(item, index));
  return results;
}

function unscored(status: RowStatus, error: string, tokens: number, truncated: boolean): DocumentScore {
  return { status, label: null, probabilities: null, confidence: null, margin: null, entropy: null, tokens, truncated, error };
}
