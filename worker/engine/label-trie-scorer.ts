// Scores one question's label trie after each document of a group: the labels' first tokens at the root (biased
// into the top-k), then every inner node's continuations, giving each label's log-probability. No sampling anywhere.

import { TokenBias, type LlamaContextSequence, type LlamaModel, type Token } from 'node-llama-cpp';
import type { Codebook, Question } from '../../contracts/codebook.js';
import { RescaleError } from '../../contracts/errors.js';
import type { DecodeStrategy } from './decode-strategy.js';
import { buildLabelTrie, innerNodes, type TrieNode } from './label-trie.js';
import type { SequencePool } from './sequence-pool.js';

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
}

export class LabelTrieScorer {
  /** Each label's answer token sequence as scored (a terminator appended where one label is a prefix of another). */
  readonly labelTokens: readonly (readonly Token[])[];
  /** Inner nodes below the root, each needing its own evaluation, in a fixed order. */
  readonly inner: readonly TrieNode[];

  private readonly rootBias: TokenRestriction;
  private readonly restrictions = new Map<string, TokenRestriction>();

  private constructor(
    private readonly model: LlamaModel,
    private readonly root: TrieNode,
    labelTokens: readonly (readonly Token[])[],
  ) {
    this.labelTokens = labelTokens;
    this.rootBias = this.restriction([...root.children.keys()]);
    this.inner = innerNodes(root);
  }

  /** Tokenises the labels' answers as the model will see them after the prompt and builds their trie. */
  static create(model: LlamaModel, codebook: Codebook, question: Question): LabelTrieScorer {
    const terminator = (codebook.prompt.format === 'chat' ? model.tokens.eot : null) ?? model.tokens.eos;
    const answerTokens = question.labels.map((label, i) => {
      const tokens = model.tokenize(codebook.prompt.answerPrefix + label.answer, false, 'trimLeadingSpace');
      if (tokens.length === 0) {
        throw new RescaleError(
          'LABEL_INVALID',
          `${codebook.source ?? 'codebook'}: label "${label.name}" (field "labels[${i}]") tokenises to nothing; give ` +
            'it a visible "answer" text',
        );
      }
      return tokens;
    });
    if (
      terminator === null &&
      answerTokens.some((a, i) =>
        answerTokens.some((b, j) => i !== j && a.length < b.length && a.every((t, k) => b[k] === t)),
      )
    ) {
      throw new RescaleError(
        'LABEL_INVALID',
        `${codebook.source ?? 'codebook'}: one label's answer is a prefix of another's and the model has no ` +
          `end-of-text token to tell them apart; rename the labels' "answer" texts`,
      );
    }
    const trie = buildLabelTrie(answerTokens, terminator ?? (0 as Token));
    return new LabelTrieScorer(model, trie.root, trie.sequences);
  }

  /** The longest label's answer path, in tokens. */
  get longestLabelTokens(): number {
    return Math.max(...this.labelTokens.map((s) => s.length));
  }

  /**
   * Scores a group whose sequences hold each document's first `start` tokens: evaluates the rest of each prompt,
   * then the trie below it, one phase at a time across the group (`decode` lays each phase out), rewinding every
   * sequence to its document's end between node evaluations.
   */
  async scoreGroup(pool: SequencePool, group: readonly GroupDocument[], decode: DecodeStrategy): Promise<TrieScore[]> {
    const evaluated = group.map((doc) => doc.tokens.length - doc.start);
    // Root: the relative probabilities of the labels' first tokens right after the prompt.
    const rootProbabilities = await decode.each(group, (doc, slot) =>
      this.evaluateWithNext(pool.sequence(slot), doc.tokens.slice(doc.start), this.rootBias),
    );
    // Rare: a first token ranked below the top-k even with the bias; redo that document with the full distribution.
    for (const [slot, doc] of group.entries()) {
      if (rootProbabilities[slot] !== null) continue;
      await pool.rewind(slot, doc.start);
      rootProbabilities[slot] = await this.evaluateWithNext(pool.sequence(slot), doc.tokens.slice(doc.start), null);
      evaluated[slot] = (evaluated[slot] as number) + doc.tokens.length - doc.start;
    }
    // Inner trie nodes (labels sharing a prefix or spanning several tokens). Below the root the normalisation
    // over the whole vocabulary matters, so each node's path is decoded twice, identically: once greedily for the
    // most likely next token t* and its full-vocabulary probability, once for the children's probabilities
    // relative to t*. The node's path is always one decode call after the document, so both see the same logits.
    const nodeProbabilities = group.map(() => new Map<TrieNode, Map<Token, number>>());
    for (const node of this.inner) {
      const path = [...node.path];
      await Promise.all(group.map((doc, slot) => pool.rewind(slot, doc.tokens.length)));
      const anchors = await decode.each(group, (_, slot) => this.evaluateGreedy(pool.sequence(slot), path));
      await Promise.all(group.map((doc, slot) => pool.rewind(slot, doc.tokens.length)));
      const relative = await decode.each(group, (_, slot) =>
        this.evaluateWithNext(
          pool.sequence(slot),
          path,
          this.restriction([...node.children.keys(), (anchors[slot] as Anchor).token]),
        ),
      );
      for (const [slot, doc] of group.entries()) {
        const anchor = anchors[slot] as Anchor;
        let probabilities = relative[slot] ?? null;
        evaluated[slot] = (evaluated[slot] as number) + 2 * path.length;
        if (probabilities === null) {
          await pool.rewind(slot, doc.tokens.length);
          probabilities = await this.evaluateWithNext(pool.sequence(slot), path, null);
          evaluated[slot] = (evaluated[slot] as number) + path.length;
        } else {
          const scale = anchor.probability / (probabilities.get(anchor.token) as number);
          probabilities = new Map([...probabilities].map(([token, p]) => [token, p * scale]));
        }
        (nodeProbabilities[slot] as Map<TrieNode, Map<Token, number>>).set(node, probabilities as Map<Token, number>);
      }
    }
    return group.map((_, slot) => {
      const root = rootProbabilities[slot] as Map<Token, number>;
      const nodes = nodeProbabilities[slot] as Map<TrieNode, Map<Token, number>>;
      return { logProbabilities: this.logProbabilities(root, nodes), tokens: evaluated[slot] as number };
    });
  }

  /** Each label's log-probability: the sum over its answer path of each token's probability at its trie node. */
  private logProbabilities(root: Map<Token, number>, nodes: Map<TrieNode, Map<Token, number>>): number[] {
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

  /** Evaluates `tokens` (appending) and returns the most likely next token and its full-vocabulary probability. */
  private async evaluateGreedy(sequence: LlamaContextSequence, tokens: readonly Token[]): Promise<Anchor> {
    const last = tokens.length - 1;
    const generateNext = { token: true, confidence: true, options: { temperature: 0 } };
    const output = await sequence.controlledEvaluate(
      tokens.map((t, i) =>
        i === last ? ([t, { generateNext }] as [Token, { generateNext: typeof generateNext }]) : t,
      ),
    );
    const next = output[last]?.next;
    if (next?.token == null || next.confidence === undefined)
      throw new RescaleError('ENGINE_FAILED', 'llama.cpp returned no next token', { retryable: true });
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
  private async evaluateWithNext(
    sequence: LlamaContextSequence,
    tokens: readonly Token[],
    restriction: TokenRestriction | null,
  ): Promise<Map<Token, number> | null> {
    const generateNext =
      restriction === null
        ? { probabilities: true }
        : {
            probabilities: true,
            options: {
              temperature: 1,
              topK: restriction.tokens.length,
              topP: 1,
              minP: 0,
              seed: 0,
              tokenBias: restriction.bias,
            },
          };
    const last = tokens.length - 1;
    const input = tokens.map((t, i) =>
      i === last ? ([t, { generateNext }] as [Token, { generateNext: typeof generateNext }]) : t,
    );
    const output = await sequence.controlledEvaluate(input);
    const probabilities = output[last]?.next.probabilities;
    if (probabilities === undefined)
      throw new RescaleError('ENGINE_FAILED', 'llama.cpp returned no next-token distribution', { retryable: true });
    if (
      restriction !== null &&
      (probabilities.size !== restriction.tokens.length || restriction.tokens.some((t) => !probabilities.has(t)))
    )
      return null;
    return probabilities;
  }
}
