// The label scorer: P(label | document) computed by the model exactly over each question's label set — the
// probability of each label's full answer token sequence after the prompt, renormalised over the labels. A per_label
// multi-label question asks each label as a yes/no question: P(label) = P(yes) over its two answers; a list one is
// answered as one list, each label set's probability exact over the list grammar (LabelSetScorer). With several
// prompts (questions, or a per_label question's labels) the document is evaluated once and each prompt's tail is
// decoded after it, from a checkpoint: with batched decoding, on tail slots that each hold a copy of the document's
// cache, several tails (of one document or of several) in one decode.
// No sampling anywhere. The shared prompt prefix is evaluated once per sequence and kept in the KV cache;
// the batch layout depends only on the documents given, never on timing (see README, "Determinism").
// A facade over worker/engine/: context plan, sequence pool, decode strategy, label trie scorer, distribution maths.

import type { LlamaModel, Token } from 'node-llama-cpp';
import {
  resolveSequences,
  scoredQuestions,
  type Codebook,
  type Label,
  type Question,
} from '../../contracts/codebook.js';
import { isBlankText, type DocumentInput } from '../../contracts/document-input.js';
import type { DocumentScore, DocumentScorer, ScoreOptions, ScorerSettings } from '../../contracts/document-scorer.js';
import { RescaleError, errorMessage } from '../../contracts/errors.js';
import { silentLogger, type Logger } from '../../contracts/logger.js';
import { questionLayout } from '../../contracts/question-layout.js';
import type { QuestionAnswer, RowStatus } from '../../contracts/results.js';
import { walkInLockstep, type AnswerWalk } from './answer-walk.js';
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
import { labelSetAnswer } from './label-set-answer.js';
import { LabelSetScorer, type SetScore } from './label-set-scorer.js';
import { multiLabelDecision } from './multi-label-decision.js';
import { QuestionPrompts, promptUnits, type DocumentPrompts, type PromptUnit } from './question-prompts.js';
import { SequencePool, sequencesCanCopy } from './sequence-pool.js';
import { serialDecode } from './serial-decode.js';

export interface ScorerOptions {
  readonly logger?: Logger;
  /** Overrides codebook model.sequences (documents decoded together). */
  readonly sequences?: number;
  /**
   * How a group's documents reach llama.cpp (default "batched": one decode per group, and a several-question
   * codebook's tails on tail slots, several per decode; "serial": one decode per document, in order, each as with
   * sequences: 1, and each tail alone after its document). For benchmarks and tests; not part of the result hash.
   */
  readonly decode?: DecodeStrategyName;
  /** Overrides codebook model.threads. */
  readonly threads?: number;
  /**
   * Tail slots for several prompts per document (default: prompts × sequences, at most MAX_TAIL_SEQUENCES; 0 decodes
   * each prompt's tail alone, one after another, on its document's sequence). Only with batched decoding and a
   * document-first layout. For benchmarks and tests; the default is a function of the codebook and `sequences`.
   */
  readonly tailSequences?: number;
  /** Reuse an already loaded model (cluster workers cache models across shards); its llama.cpp binding is used. */
  readonly model?: LlamaModel;
  /** llama.cpp build to load when no model is given (callers pass RESCALE_LLAMA_BUILD, parsed; default auto). */
  readonly build?: BuildPreference;
}

interface PendingDocument extends DocumentPrompts {
  readonly index: number;
}

/**
 * The most tail slots a scorer creates: each is a sequence with the context size of a document's (memory), and the
 * copy of a document's cache into it copies that whole sequence's cache.
 */
export const MAX_TAIL_SEQUENCES = 16;

/**
 * Tail slots for a codebook: with batched decoding and the document before the questions, one per prompt of each
 * document of a group, at most MAX_TAIL_SEQUENCES (or `requested`); otherwise none. A function of the codebook and the
 * group size only, so the tails' batch layout is too.
 */
export function tailSequencesFor(
  codebook: Codebook,
  sequences: number,
  decode: DecodeStrategyName,
  requested?: number,
): number {
  const layout = questionLayout(codebook);
  if (layout.kind !== 'document-first' || decode !== 'batched' || !sequencesCanCopy()) return 0;
  return Math.min(layout.prompts * sequences, requested ?? MAX_TAIL_SEQUENCES);
}

/** What one document costs, in tokens (for `rescale inspect`). */
export interface DocumentCost {
  /** The shared prefix, kept in the cache across documents. */
  readonly sharedPrefix: number;
  /** Tokens every question's prompt shares beyond the shared prefix: the document's part, evaluated once. */
  readonly document: number;
  /** Each prompt's tail after that, in prompt order (promptUnits; its answer is read after the tail's last token). */
  readonly tails: readonly number[];
  /** Each prompt's full length, for comparison: what K separate prompts would cost. */
  readonly prompts: readonly number[];
}

export class LabelScorer implements DocumentScorer {
  readonly questions: readonly Question[];
  /** The prompts scored per document: one per single-label question, one per label of a per_label question. */
  readonly units: readonly PromptUnit[];
  /** The first question's labels (the only question's, in a one-question codebook). */
  readonly labels: readonly Label[];
  /**
   * Each label's answer token sequence as scored (a terminator appended where one label is a prefix of another); for a
   * list question, every list of its grammar.
   */
  readonly labelTokens: readonly (readonly Token[])[];
  /** Per question, the indexes of its prompt units (fixed by the codebook, so found once). */
  private readonly unitsOf: readonly (readonly number[])[];

  private busy: Promise<unknown> = Promise.resolve();
  private disposed = false;

  private constructor(
    readonly codebook: Codebook,
    readonly runtime: RuntimeInfo,
    readonly settings: ScorerSettings,
    private readonly model: LlamaModel,
    private readonly ownsModel: boolean,
    private readonly pool: SequencePool,
    private readonly prompts: QuestionPrompts,
    /** One scorer per prompt unit: a label trie, or a list question's set scorer. */
    private readonly tries: readonly UnitScorer[],
    private readonly decode: DecodeStrategy,
    private readonly logger: Logger,
  ) {
    this.questions = scoredQuestions(codebook);
    this.units = promptUnits(this.questions);
    this.unitsOf = this.questions.map((_, q) => this.units.flatMap((unit, u) => (unit.question === q ? [u] : [])));
    this.labels = (this.questions[0] as Question).labels;
    this.labelTokens = answerTokens(tries[0] as UnitScorer);
  }

  /**
   * Each question's answer token sequences, in question order: its labels', or a per_label question's yes and no
   * (scored once per label).
   */
  get questionLabelTokens(): readonly (readonly (readonly Token[])[])[] {
    return this.questions.map((_, q) =>
      answerTokens(this.tries[(this.unitsOf[q] as readonly number[])[0] as number] as UnitScorer),
    );
  }

  static async create(codebook: Codebook, options: ScorerOptions = {}): Promise<LabelScorer> {
    const logger = options.logger ?? silentLogger;
    const questions = scoredQuestions(codebook);
    const llama = options.model?.llama ?? (await getRuntime({ build: options.build ?? 'auto', logger }));
    const info = await runtimeInfo(llama);
    for (const [i, adapter] of codebook.model.adapters.entries())
      await assertLoraAdapter(adapter.path, `model.adapters[${i}].path`);
    const model = options.model ?? (await loadModel(llama, codebook.model.path, codebook.model.gpuLayers));
    const ownsModel = options.model === undefined;
    try {
      const prompts = QuestionPrompts.create(model, codebook, questions);
      // One scorer per prompt: a question's label trie, a per_label question's yes/no trie (shared by its labels), or
      // a list question's set scorer.
      const questionTries = questions.map((question, i): UnitScorer => {
        const format = question.multiLabel?.format;
        if (format === 'per_label') return LabelTrieScorer.createYesNo(model, codebook, question, i);
        if (format === 'list') return LabelSetScorer.forQuestion(model, codebook, question, i);
        return LabelTrieScorer.create(model, codebook, question, i);
      });
      const tries = promptUnits(questions).map((unit) => questionTries[unit.question] as UnitScorer);
      const prefixLength = prompts.sharedPrefix.length;
      const probe = prompts.render({ text: 'x' }, codebook.model.maxDocumentTokens);
      // The cache holds one question's prompt at a time (the others are rewound), so the longest one sizes it.
      const longestProbe = Math.max(...probe.prompts.map((p) => p.length));
      const decodeName = options.decode ?? 'batched';
      const sequences = resolveSequences(codebook, options.sequences);
      const tailSequences = tailSequencesFor(codebook, sequences, decodeName, options.tailSequences);
      const plan = planContext(
        codebook,
        {
          sharedPrefixTokens: prefixLength,
          templateTokens: longestProbe - prefixLength - 1,
          longestLabelTokens: Math.max(...tries.map(longestAnswerTokens)),
          trainContextSize: model.trainContextSize,
          tailTokens: Math.max(...probe.prompts.map((p) => p.length - probe.checkpoint)),
        },
        { sequences, threads: options.threads, tailSequences },
      );
      for (const warning of plan.warnings) logger.log('warn', warning.message, warning.meta);
      const pool = await SequencePool.create(model, codebook.model, plan, prompts.sharedPrefix);
      const decode = decodeName === 'batched' ? new BatchedDecode(pool) : serialDecode;
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
        ...(pool.tailSlots > 0 ? { tailSequences: pool.tailSlots } : {}),
      });
      const { build, gpu, llamaCppRelease: llamaCpp } = info;
      const labels = questions.reduce((n, question) => n + question.labels.length, 0);
      logger.log('info', 'label scorer ready', {
        build,
        gpu,
        llamaCpp,
        ...settings,
        ...(questions.length > 1 ? { questions: questions.length } : {}),
        ...(tries.length !== questions.length ? { prompts: tries.length } : {}),
        labels,
        innerTrieNodes: tries.reduce((n, trie) => n + (trie instanceof LabelTrieScorer ? trie.inner.length : 0), 0),
      });
      return new LabelScorer(codebook, info, settings, model, ownsModel, pool, prompts, tries, decode, logger);
    } catch (error) {
      if (ownsModel) await model.dispose();
      throw error;
    }
  }

  /** llama.cpp decode calls made so far (prefix evaluations included): batched decoding makes one per group. */
  get decodeCalls(): number {
    return this.pool.dispatches.decodeCalls;
  }

  /** The rendered prompt for a document (for one question: the first by default), special tokens shown. */
  previewPrompt(doc: DocumentInput, question = 0): string {
    return this.prompts.preview(doc, this.settings.maxDocumentTokens, question);
  }

  /** Prompt tokens for a document exactly as scored (the shared prefix included), for one question. */
  promptTokens(doc: DocumentInput, question = 0): { tokens: Token[]; truncated: boolean } {
    const rendered = this.prompts.render(doc, this.settings.maxDocumentTokens);
    return { tokens: rendered.prompts[question] ?? [], truncated: rendered.truncated };
  }

  /** What a document costs with this codebook's layout; the label paths come on top. */
  documentCost(doc: DocumentInput): DocumentCost {
    const { prompts, checkpoint } = this.prompts.render(doc, this.settings.maxDocumentTokens);
    const sharedPrefix = this.settings.sharedPrefixTokens;
    if (prompts.length === 1) {
      const length = prompts[0]?.length ?? 0;
      return { sharedPrefix, document: length - sharedPrefix, tails: [0], prompts: [length] };
    }
    return {
      sharedPrefix,
      document: checkpoint - sharedPrefix,
      tails: prompts.map((p) => p.length - checkpoint),
      prompts: prompts.map((p) => p.length),
    };
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
    const longestLabel = Math.max(...this.tries.map(longestAnswerTokens));
    const capacity = this.settings.contextSize - longestLabel;
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
      if (isBlankText(doc.text)) {
        results[index] = unscored('empty_text', 'document text is null or blank', 0, false);
        continue;
      }
      const rendered = this.prompts.render(doc, this.settings.maxDocumentTokens);
      const longest = Math.max(...rendered.prompts.map((p) => p.length));
      if (longest > capacity) {
        results[index] = unscored(
          'error',
          `prompt is ${longest} tokens, more than the context holds (${capacity}); raise ` +
            'model.context_size or lower model.max_document_tokens',
          0,
          rendered.truncated,
        );
        continue;
      }
      pending.push({ index, ...rendered });
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
      // Only the part every question shares is matched against the cached prefix.
      const starts = await serialDecode.each(group, (doc, slot) =>
        this.pool.prepare(slot, (doc.prompts[0] as Token[]).slice(0, doc.checkpoint + 1)),
      );
      const [trie] = this.tries;
      if (this.tries.length === 1 && trie instanceof LabelTrieScorer) {
        const documents = group.map((doc, slot) => ({
          tokens: doc.prompts[0] as Token[],
          start: starts[slot] as number,
        }));
        const scores = await trie.scoreGroup(this.pool, documents, this.decode);
        return group.map((doc, slot) => this.finish(scores[slot] as TrieScore, doc.truncated));
      }
      return await this.scoreQuestions(group, starts);
    } catch (cause) {
      this.pool.invalidate();
      throw new RescaleError('ENGINE_FAILED', `llama.cpp evaluation failed: ${errorMessage(cause)}`, {
        cause,
        retryable: true,
      });
    }
  }

  /**
   * Several questions: the document (everything the questions' prompts share beyond the cached prefix) is evaluated
   * once, in one phase across the group; then every prompt's tail and answer reads are decoded after it: on tail
   * slots (batched tails), or for each prompt in turn on the document's own sequence, rewound to that checkpoint.
   */
  private async scoreQuestions(group: readonly PendingDocument[], starts: readonly number[]): Promise<DocumentScore[]> {
    // A document whose part is all in the cache (a question-first layout) has nothing to evaluate in this phase.
    const documentPart = group.flatMap((doc, slot) => {
      const start = starts[slot] as number;
      return start < doc.checkpoint ? [{ slot, tokens: (doc.prompts[0] as Token[]).slice(start, doc.checkpoint) }] : [];
    });
    if (documentPart.length > 0)
      await this.decode.each(documentPart, (part) => this.pool.sequence(part.slot).controlledEvaluate(part.tokens));
    const answers = this.pool.tailSlots > 0 ? await this.scoreTails(group) : await this.scoreTailsInTurn(group);
    return group.map((doc, slot) =>
      this.finishQuestions(answers[slot] as UnitScore[], doc.checkpoint - (starts[slot] as number), doc.truncated),
    );
  }

  /** Each prompt in turn, across the group: every document's sequence rewound to its checkpoint, then the tail. */
  private async scoreTailsInTurn(group: readonly PendingDocument[]): Promise<UnitScore[][]> {
    const answers = group.map(() => [] as UnitScore[]);
    for (const [q, trie] of this.tries.entries()) {
      await Promise.all(group.map((doc, slot) => this.pool.rewind(slot, doc.checkpoint)));
      const tails = group.map((doc) => ({ tokens: doc.prompts[q] as Token[], start: doc.checkpoint }));
      const scores = await trie.scoreGroup(this.pool, tails, this.decode);
      scores.forEach((score: UnitScore, slot) => answers[slot]?.push(score));
    }
    return answers;
  }

  /**
   * Batched tails: the group's (document, prompt) pairs, documents in group order and each document's prompts in
   * codebook order, are cut into chunks of at most the pool's tail slots (and of what one decode holds). Per chunk,
   * each tail slot takes a copy of its document's cache, then the chunk's answer walks run in lockstep: one decode
   * for all the chunk's tails and root reads, then one per level of inner reads. The layout is a function of the
   * group and the codebook alone.
   *
   * Every tail of a chunk is evaluated with the same number of tokens: a shorter one starts that many tokens before
   * the checkpoint (its slot's copy ends there), re-evaluating the end of the document. llama.cpp splits a decode
   * over several sequences (one KV stream each) into micro-batches of equal tokens per sequence, so equal lengths
   * make the chunk's tails one micro-batch, one pass over the weights; unequal ones would need one per length. The
   * re-evaluated tokens are the layout's, not the prompt's: `tokens` counts each prompt's tail as serial decoding does.
   */
  private async scoreTails(group: readonly PendingDocument[]): Promise<UnitScore[][]> {
    const answers = group.map(() => [] as UnitScore[]);
    const tailLength = (doc: PendingDocument, unit: number): number =>
      (doc.prompts[unit] as Token[]).length - doc.checkpoint;
    const chunks: { doc: number; unit: number }[][] = [];
    let chunk: { doc: number; unit: number }[] = [];
    let longest = 0;
    for (const [d, doc] of group.entries()) {
      for (const unit of doc.prompts.keys()) {
        const tail = tailLength(doc, unit);
        const full = chunk.length === this.pool.tailSlots;
        if (full || (chunk.length > 0 && (chunk.length + 1) * Math.max(longest, tail) > this.settings.batchSize)) {
          chunks.push(chunk);
          chunk = [];
          longest = 0;
        }
        chunk.push({ doc: d, unit });
        longest = Math.max(longest, tail);
      }
    }
    if (chunk.length > 0) chunks.push(chunk);
    for (const pairs of chunks) {
      const length = Math.max(...pairs.map(({ doc, unit }) => tailLength(group[doc] as PendingDocument, unit)));
      const walks = [];
      const padding: number[] = [];
      for (const [i, { doc, unit }] of pairs.entries()) {
        const pending = group[doc] as PendingDocument;
        const pad = Math.min(length - tailLength(pending, unit), pending.checkpoint);
        const start = pending.checkpoint - pad;
        const slot = this.pool.size + i;
        await this.pool.copy(slot, doc, start);
        const prompt = { tokens: pending.prompts[unit] as Token[], start };
        walks.push({ slot, walk: (this.tries[unit] as UnitScorer).walk(prompt) as AnswerWalk<UnitScore> });
        padding.push(pad);
      }
      const scores = await walkInLockstep(this.pool, walks, this.decode);
      pairs.forEach(({ doc }, i) => {
        const score = scores[i] as UnitScore;
        answers[doc]?.push({ ...score, tokens: score.tokens - (padding[i] as number) });
      });
    }
    return answers;
  }

  /** Each question's answer from its prompts' scores (`scores` in prompt-unit order). */
  private finishQuestions(scores: readonly UnitScore[], documentTokens: number, truncated: boolean): DocumentScore {
    const tokens = scores.reduce((n, score) => n + score.tokens, documentTokens);
    const failed: string[] = [];
    const answers = this.questions.map((question, q): QuestionAnswer => {
      const own = (this.unitsOf[q] as readonly number[]).map((u) => scores[u] as UnitScore);
      if (question.multiLabel?.format === 'list') {
        const answer = labelSetAnswer(question.labels, own[0] as SetScore);
        if (answer.probabilities === null) failed.push(question.name);
        return answer;
      }
      if (question.multiLabel?.format === 'per_label') {
        const names = question.labels.map((l) => l.name);
        const answer = multiLabelDecision(names, question.multiLabel.thresholds, own as TrieScore[]);
        if (answer.probabilities === null) failed.push(question.name);
        return answer;
      }
      const score = own[0] as TrieScore;
      const distribution = labelDistribution(score.logProbabilities);
      if (distribution === null) {
        failed.push(question.name);
        const none = { label: null, probabilities: null, confidence: null, margin: null, entropy: null };
        return { ...none, labelMass: score.labelMass };
      }
      const { probabilities, top, confidence, margin, entropy } = distribution;
      const label = (question.labels[top] as Label).name;
      return { label, probabilities, confidence, margin, entropy, labelMass: score.labelMass };
    });
    const error =
      failed.length === 0
        ? null
        : `every label (for a per_label question: both answers of a label; for a list question: every list) of ` +
          `question(s) ${failed.join(', ')} has probability 0 under the model`;
    return {
      ...unscored(error === null ? (truncated ? 'truncated' : 'ok') : 'error', error ?? '', tokens, truncated),
      error,
      answers,
    };
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

/** What a prompt unit is scored with: a label trie, or a list question's set scorer. */
type UnitScorer = LabelTrieScorer | LabelSetScorer;
type UnitScore = TrieScore | SetScore;

function longestAnswerTokens(scorer: UnitScorer): number {
  return scorer instanceof LabelTrieScorer ? scorer.longestLabelTokens : scorer.longestListTokens;
}

/** A unit's answer token sequences: its labels' (or yes/no), or a list question's every list. */
function answerTokens(scorer: UnitScorer): readonly (readonly Token[])[] {
  return scorer instanceof LabelTrieScorer ? scorer.labelTokens : scorer.trie.sequences;
}
