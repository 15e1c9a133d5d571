// Scores one question's label trie after each document of a group: one read at the root right after the prompt,
// one per inner node of the trie, each giving the children's probabilities over the FULL vocabulary exactly
// (llama.cpp's logits filter + total logit weight), so each label's log-probability is exact. No sampling anywhere.

import type { LlamaModel, Token } from 'node-llama-cpp';
import type { Codebook, Question } from '../../contracts/codebook.js';
import { RescaleError } from '../../contracts/errors.js';
import { walkInLockstep, type AnswerWalk } from './answer-walk.js';
import type { DecodeStrategy } from './decode-strategy.js';
import { probabilityMass } from './label-distribution.js';
import { buildLabelTrie, innerNodes, type TrieNode } from './label-trie.js';
import { answerEndFor, answerPrefixFor, LLAMA2_ANSWER_SUFFIX, type AnswerEnd } from './prompt-builder.js';
import type { SequencePool } from './sequence-pool.js';
import { startsWithTokens } from './token-sequence.js';

/** A document of a group, on the sequence of its slot. */
export interface GroupDocument {
  /** The full prompt, shared prefix included. */
  readonly tokens: readonly Token[];
  /** How many of `tokens` the sequence already holds (the shared prefix, or 0). */
  readonly start: number;
}

export interface TrieScore {
  /** Each label's log-probability, in label order; -Infinity for a label the model gives probability 0. */
  readonly logProbabilities: number[];
  /** Tokens evaluated for the document beyond what the sequence held (document, template tail, label paths). */
  readonly tokens: number;
  /** Σ over the labels' distinct first tokens of their probability right after the prompt (full vocabulary). */
  readonly labelMass: number;
}

/**
 * The tokens that follow an answer that stops, which end a label whose tokens are a prefix of another's: end of turn
 * in a chat wrapper's prompt, else end of text, after Llama-2's reference reply `f" {answer} "` its "▁" first (EOS
 * straight after the answer is a reply the model was not trained on). Empty when the model has neither end token.
 */
export function answerTerminator(model: LlamaModel, end: AnswerEnd): Token[] {
  const stop = (end === 'turn' ? model.tokens.eot : null) ?? model.tokens.eos;
  const stops = stop === null ? [] : [stop];
  if (end !== 'llama2-reference') return stops;
  return [...model.tokenize(LLAMA2_ANSWER_SUFFIX, false, 'trimLeadingSpace'), ...stops];
}

export class LabelTrieScorer {
  /** Each label's answer token sequence as scored (terminator tokens appended where one is a prefix of another). */
  readonly labelTokens: readonly (readonly Token[])[];
  /** Inner nodes below the root, each needing its own evaluation, in a fixed order. */
  readonly inner: readonly TrieNode[];
  /** The root's and each inner node's next tokens, as read (fixed by the trie, so listed once). */
  private readonly rootWanted: readonly Token[];
  private readonly innerWanted: readonly (readonly Token[])[];

  private constructor(
    private readonly root: TrieNode,
    labelTokens: readonly (readonly Token[])[],
  ) {
    this.labelTokens = labelTokens;
    this.inner = innerNodes(root);
    this.rootWanted = [...root.children.keys()];
    this.innerWanted = this.inner.map((node) => [...node.children.keys()]);
  }

  /**
   * The yes/no trie of a per_label multi-label question: its two answers, tokenised as label answers are. Neither may
   * be a token prefix of the other: a terminator would then decide between them, which the model was not asked.
   */
  static createYesNo(
    model: LlamaModel,
    codebook: Codebook,
    question: Question,
    questionIndex: number,
  ): LabelTrieScorer {
    const spec = question.multiLabel;
    if (spec?.format !== 'per_label') throw new RescaleError('INTERNAL', `question ${question.name} is not per_label`);
    const { answers } = spec;
    const field = `questions[${questionIndex}].multi_label.answers`;
    const answerPrefix = answerPrefixFor(model, codebook);
    const [yes, no] = [answers.yes, answers.no].map((answer, i) => {
      const tokens = model.tokenize(answerPrefix + answer, false, 'trimLeadingSpace');
      if (tokens.length === 0) {
        throw new RescaleError(
          'LABEL_INVALID',
          `${codebook.source ?? 'codebook'}: field "${field}.${i === 0 ? 'yes' : 'no'}": the answer tokenises to ` +
            'nothing; give it a visible text',
        );
      }
      return tokens;
    }) as [Token[], Token[]];
    const [shorter, longer] = yes.length <= no.length ? [yes, no] : [no, yes];
    if (startsWithTokens(longer, shorter)) {
      throw new RescaleError(
        'LABEL_INVALID',
        `${codebook.source ?? 'codebook'}: field "${field}": "${answers.yes}" and "${answers.no}" tokenise so that ` +
          `one is the start of the other (${yes.length} and ${no.length} tokens); choose answers that differ in ` +
          'their tokens (e.g. "yes" and "no")',
      );
    }
    const trie = buildLabelTrie([yes, no], answerTerminator(model, answerEndFor(model, codebook)), {
      source: codebook.source ?? 'codebook',
      label: (i) => {
        const key = i === 0 ? 'yes' : 'no';
        return `answer ${JSON.stringify(answers[key])} (field "${field}.${key}")`;
      },
    });
    return new LabelTrieScorer(trie.root, trie.sequences);
  }

  /** Tokenises the labels' answers as the model will see them after the prompt and builds their trie. */
  static create(model: LlamaModel, codebook: Codebook, question: Question, questionIndex = 0): LabelTrieScorer {
    const terminator = answerTerminator(model, answerEndFor(model, codebook));
    const field = codebook.questions.length > 1 ? `questions[${questionIndex}].labels` : 'labels';
    const answerPrefix = answerPrefixFor(model, codebook);
    const answerTokens = question.labels.map((label, i) => {
      const tokens = model.tokenize(answerPrefix + label.answer, false, 'trimLeadingSpace');
      if (tokens.length === 0) {
        throw new RescaleError(
          'LABEL_INVALID',
          `${codebook.source ?? 'codebook'}: label "${label.name}" (field "${field}[${i}]") tokenises to nothing; ` +
            'give it a visible "answer" text',
        );
      }
      return tokens;
    });
    const trie = buildLabelTrie(answerTokens, terminator, {
      source: codebook.source ?? 'codebook',
      label: (i) => {
        const label = question.labels[i] as Question['labels'][number];
        return `label "${label.name}" (answer ${JSON.stringify(label.answer)}, field "${field}[${i}]")`;
      },
    });
    return new LabelTrieScorer(trie.root, trie.sequences);
  }

  /** The longest label's answer path, in tokens. */
  get longestLabelTokens(): number {
    return Math.max(...this.labelTokens.map((s) => s.length));
  }

  /**
   * Scores a group whose sequences hold each document's first `start` tokens: evaluates the rest of each prompt and
   * reads the root, then each inner node's path (one decode per node, one phase at a time across the group; `decode`
   * lays each phase out), rewinding every sequence to its document's end between nodes. Each document's tokens are
   * evaluated exactly once.
   */
  scoreGroup(pool: SequencePool, group: readonly GroupDocument[], decode: DecodeStrategy): Promise<TrieScore[]> {
    return walkInLockstep(
      pool,
      group.map((doc, slot) => ({ slot, walk: this.walk(doc) })),
      decode,
    );
  }

  /**
   * One document's reads as a walk (answer-walk.ts): the rest of the prompt and the root, then each inner node's path
   * after the prompt. `scoreGroup` runs a group's walks; the walks of several prompts' tries can share decodes too.
   */
  *walk(doc: GroupDocument): AnswerWalk<TrieScore> {
    let evaluated = doc.tokens.length - doc.start;
    const root = yield { position: doc.start, tokens: doc.tokens.slice(doc.start), wanted: this.rootWanted };
    const nodes = new Map<TrieNode, ReadonlyMap<Token, number>>();
    for (const [i, node] of this.inner.entries()) {
      const read = yield {
        position: doc.tokens.length,
        tokens: node.path,
        wanted: this.innerWanted[i] as readonly Token[],
      };
      evaluated += node.path.length;
      nodes.set(node, read);
    }
    return {
      logProbabilities: this.logProbabilities(root, nodes),
      tokens: evaluated,
      labelMass: probabilityMass(root),
    };
  }

  /** Each label's log-probability: the sum over its answer path of each token's probability at its trie node. */
  private logProbabilities(
    root: ReadonlyMap<Token, number>,
    nodes: ReadonlyMap<TrieNode, ReadonlyMap<Token, number>>,
  ): number[] {
    return this.labelTokens.map((sequence) => {
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
  }
}
