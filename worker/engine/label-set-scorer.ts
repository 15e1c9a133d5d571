// Scores a multi-label question answered as one list (`format: list`): the exact probability of every label set,
// by a depth-first walk of the list grammar's token trie with the document in the KV cache. At each branch the
// model's next-token distribution is renormalised over the tokens the grammar allows there (what a grammar-
// constrained decoder samples from), so a set's probability is the sum over its orderings of the product of those
// branch probabilities. A token the grammar forces is evaluated but needs no read. No sampling anywhere.

import type { LlamaModel, Token } from 'node-llama-cpp';
import type { Codebook, Question } from '../../contracts/codebook.js';
import { RescaleError } from '../../contracts/errors.js';
import type { LabelListSyntax } from '../../contracts/label-list-syntax.js';
import { walkInLockstep, type AnswerWalk, type ReadRequest } from './answer-walk.js';
import type { DecodeStrategy } from './decode-strategy.js';
import { answerTerminator, type GroupDocument } from './label-trie-scorer.js';
import { LabelSetTrie, type SetTrieNode } from './label-set-trie.js';
import { answerEndFor, answerPrefixFor, type AnswerEnd } from './prompt-builder.js';
import type { SequencePool } from './sequence-pool.js';

export interface SetScore {
  /** Each scored set's probability, keyed by its label indices in label order; sets never reached are absent. */
  readonly sets: ReadonlyMap<string, number>;
  /** The most probable set's label indices, in label order (the first found on a tie); null when nothing scored. */
  readonly top: readonly number[] | null;
  /** The most probable set's probability. */
  readonly setProbability: number | null;
  /** Each label's P(label ∈ set), in label order: the sum of the scored sets holding it. */
  readonly marginals: Float64Array;
  /** Mass of branches not expanded because their prefix probability was below min_branch_mass. */
  readonly unscoredMass: number;
  /** Mass of lists that repeat a label. sets + unscored + invalid = 1. */
  readonly invalidMass: number;
  /** The greedy constrained decode: the argmax branch among those leading to a valid list, at each step. */
  readonly greedy: readonly number[] | null;
  /** Σ over the grammar's first tokens of their probability right after the prompt (full vocabulary). */
  readonly listMass: number;
  /** Tokens evaluated beyond what the sequence held (prompt tail plus every walked trie edge). */
  readonly tokens: number;
  /** Reads of a next-token distribution (the root and every expanded branch). */
  readonly reads: number;
}

export class LabelSetScorer {
  private constructor(
    readonly trie: LabelSetTrie,
    readonly syntax: LabelListSyntax,
    private readonly labelCount: number,
  ) {}

  /**
   * Tokenises every list of the grammar as the model sees it after the prompt (`answerPrefix` first) and builds the
   * trie. `field` is the question's list syntax in the codebook, for errors.
   */
  static create(
    model: LlamaModel,
    options: {
      readonly answers: readonly string[];
      readonly syntax: LabelListSyntax;
      readonly answerPrefix: string;
      /** What follows a list that stops (answerEndFor). */
      readonly end: AnswerEnd;
      readonly field: string;
    },
  ): LabelSetScorer {
    const terminator = answerTerminator(model, options.end);
    const trie = LabelSetTrie.build({
      answers: options.answers,
      syntax: options.syntax,
      answerPrefix: options.answerPrefix,
      tokenize: (text) => model.tokenize(text, false, 'trimLeadingSpace'),
      terminator,
      field: options.field,
    });
    return new LabelSetScorer(trie, options.syntax, options.answers.length);
  }

  /** The scorer of a codebook question with `multi_label: { format: list }`. */
  static forQuestion(model: LlamaModel, codebook: Codebook, question: Question, questionIndex: number): LabelSetScorer {
    const spec = question.multiLabel;
    const field = `questions[${questionIndex}].multi_label`;
    if (spec?.format !== 'list')
      throw new RescaleError('INTERNAL', `${field}: a set scorer needs a question with format: list`);
    return LabelSetScorer.create(model, {
      answers: question.labels.map((label) => label.answer),
      syntax: spec.list,
      answerPrefix: answerPrefixFor(model, codebook),
      end: answerEndFor(model, codebook),
      field,
    });
  }

  /** The longest list's tokens (the context must hold the prompt plus this). */
  get longestListTokens(): number {
    return Math.max(...this.trie.sequences.map((s) => s.length));
  }

  /**
   * Scores a group whose sequences hold each document's first `start` tokens. Every document walks its own trie
   * depth-first; the walks advance in lockstep, one read per still-walking document per phase (laid out by `decode`),
   * so the layout depends only on the documents, never on timing.
   */
  async scoreGroup(pool: SequencePool, group: readonly GroupDocument[], decode: DecodeStrategy): Promise<SetScore[]> {
    return walkInLockstep(
      pool,
      group.map((doc, slot) => ({ slot, walk: this.walk(doc) })),
      decode,
    );
  }

  /**
   * One document's depth-first walk, as a generator of reads (the caller evaluates each and sends the result); the
   * sequence holds the document's first `start` tokens.
   */
  *walk(doc: GroupDocument): AnswerWalk<SetScore> {
    const { minBranchMass } = this.syntax;
    const promptLength = doc.tokens.length;
    const sets = new Map<string, number>();
    const firstSeen: number[][] = [];
    let unscoredMass = 0;
    let invalidMass = 0;
    let greedy: readonly number[] | null = null;
    let tokens = promptLength - doc.start;
    let reads = 1;
    const root = this.trie.root;
    const rootRead = yield {
      position: doc.start,
      tokens: doc.tokens.slice(doc.start),
      wanted: [...root.children.keys()],
    };
    let listMass = 0;
    for (const p of rootRead.values()) listMass += p;

    const answers = this.trie.answers;
    const trie = this;
    function* expand(
      node: SetTrieNode,
      mass: number,
      read: ReadonlyMap<Token, number>,
      onGreedy: boolean,
    ): Generator<ReadRequest, void, ReadonlyMap<Token, number>> {
      let total = 0;
      for (const token of node.children.keys()) total += read.get(token) ?? 0;
      if (!(total > 0)) {
        // The model gives every allowed token probability 0 here: nothing to distribute the branch's mass over.
        unscoredMass += mass;
        return;
      }
      let greedyToken: Token | null = null;
      let greedyP = -1;
      for (const [token, child] of node.children) {
        const p = read.get(token) ?? 0;
        if (child.hasValid && p > greedyP) {
          greedyP = p;
          greedyToken = token;
        }
      }
      for (const [token, child] of node.children) {
        const branch = mass * ((read.get(token) ?? 0) / total);
        const greedyBranch = onGreedy && token === greedyToken;
        if (!child.hasValid) {
          invalidMass += branch;
          continue;
        }
        const chain: Token[] = [token];
        let tip = child;
        while (tip.answer === null && tip.children.size === 1) {
          const [next, nextNode] = tip.children.entries().next().value as [Token, SetTrieNode];
          chain.push(next);
          tip = nextNode;
        }
        if (tip.answer !== null) {
          const labels = (answers[tip.answer] as { labels: readonly number[] }).labels;
          const key = [...labels].sort((a, b) => a - b);
          const name = key.join(',');
          if (!sets.has(name)) firstSeen.push(key);
          sets.set(name, (sets.get(name) ?? 0) + branch);
          if (greedyBranch) greedy = key;
          continue;
        }
        // The greedy path is always expanded, so the greedy decode never depends on the pruning bound.
        if (branch < minBranchMass && !greedyBranch) {
          unscoredMass += branch;
          continue;
        }
        const next = yield { position: promptLength + node.depth, tokens: chain, wanted: [...tip.children.keys()] };
        tokens += chain.length;
        reads++;
        yield* expand(tip, branch, next, greedyBranch);
      }
    }
    yield* expand(root, 1, rootRead, true);

    let top: number[] | null = null;
    let setProbability: number | null = null;
    const marginals = new Float64Array(trie.labelCount);
    for (const key of firstSeen) {
      const p = sets.get(key.join(',')) as number;
      if (setProbability === null || p > setProbability) {
        setProbability = p;
        top = key;
      }
      for (const label of key) marginals[label] = (marginals[label] as number) + p;
    }
    return { sets, top, setProbability, marginals, unscoredMass, invalidMass, greedy, listMass, tokens, reads };
  }
}
