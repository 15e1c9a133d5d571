// The token trie of a list grammar: every answer list the grammar allows (each ordering of each label set of size
// 1..max_labels, the empty list if allowed), plus the lists that repeat a label once, each tokenised as one whole
// string, as the model would write it after the prompt. Lists that repeat a label are in the trie only so that the
// probability of entering them is counted (as invalid) rather than renormalised away.

import type { Token } from 'node-llama-cpp';
import { RescaleError } from '../../contracts/errors.js';
import { renderLabelList, type LabelListSyntax } from '../../contracts/label-list-syntax.js';

/** Lists enumerated at most: 14 labels with max_labels 3 give 2,380 orderings (and 378 repeating lists). */
export const MAX_LIST_ANSWERS = 250_000;

/** One complete list of the grammar: its labels in the order written. */
export interface ListAnswer {
  readonly labels: readonly number[];
  /** No label occurs twice. */
  readonly valid: boolean;
}

export interface SetTrieNode {
  /** Tokens from the root to this node. */
  readonly depth: number;
  /** Next-token branches, in the order the lists were enumerated. */
  readonly children: ReadonlyMap<Token, SetTrieNode>;
  /** Index (into `answers`) of the list whose tokens end here; such a node has no children. */
  readonly answer: number | null;
  /** Some list below this node is valid. A node without one is all invalid (a repeated label). */
  readonly hasValid: boolean;
}

interface MutableNode {
  depth: number;
  children: Map<Token, MutableNode>;
  answer: number | null;
  hasValid: boolean;
}

/**
 * Every ordered list of distinct labels of size 1..maxLabels (0 first when the empty list is allowed), shortest first,
 * then in label order; then each list below maxLabels with one of its own labels appended (a repeat).
 */
export function enumerateListAnswers(labelCount: number, syntax: LabelListSyntax, field: string): ListAnswer[] {
  let count = syntax.allowEmpty ? 1 : 0;
  let orderings = 1;
  for (let k = 1; k <= syntax.maxLabels; k++) {
    orderings *= labelCount - k + 1;
    count += orderings + (k < syntax.maxLabels ? orderings * k : 0);
  }
  if (count > MAX_LIST_ANSWERS)
    throw new RescaleError(
      'CODEBOOK_INVALID',
      `field "${field}.max_labels": ${syntax.maxLabels} of ${labelCount} labels gives ${count} lists to score, more ` +
        `than ${MAX_LIST_ANSWERS}; lower max_labels or use format: per_label`,
    );
  const valid: number[][] = syntax.allowEmpty ? [[]] : [];
  let level: number[][] = [[]];
  for (let k = 1; k <= syntax.maxLabels; k++) {
    level = level.flatMap((list) =>
      Array.from({ length: labelCount }, (_, label) => label)
        .filter((label) => !list.includes(label))
        .map((label) => [...list, label]),
    );
    valid.push(...level);
  }
  const repeats = valid
    .filter((list) => list.length > 0 && list.length < syntax.maxLabels)
    .flatMap((list) => list.map((label) => [...list, label]));
  return [...valid.map((labels) => ({ labels, valid: true })), ...repeats.map((labels) => ({ labels, valid: false }))];
}

export class LabelSetTrie {
  private constructor(
    readonly root: SetTrieNode,
    /** The lists, in enumeration order. */
    readonly answers: readonly ListAnswer[],
    /** Each list's tokens as scored (a terminator appended where one list's tokens are a prefix of another's). */
    readonly sequences: readonly (readonly Token[])[],
  ) {}

  /**
   * Renders and tokenises every list (`tokenize` gets `answerPrefix` + the list text) and builds their trie.
   * `terminator` (what follows an answer that stops: end of text, or Llama-2's " " and end of text) is appended to a
   * list whose tokens are a strict prefix of another's, as many of its tokens as tell it apart; empty when the model
   * has none, which makes such a pair an error.
   */
  static build(options: {
    readonly answers: readonly string[];
    readonly syntax: LabelListSyntax;
    readonly answerPrefix: string;
    readonly tokenize: (text: string) => Token[];
    readonly terminator: readonly Token[];
    /** The syntax's path in the codebook, for errors. */
    readonly field: string;
  }): LabelSetTrie {
    const { syntax, field } = options;
    const answers = enumerateListAnswers(options.answers.length, syntax, field);
    const texts = answers.map(
      (a) =>
        options.answerPrefix +
        renderLabelList(
          syntax,
          a.labels.map((i) => options.answers[i] as string),
        ),
    );
    const root: MutableNode = { depth: 0, children: new Map(), answer: null, hasValid: false };
    const sequences = texts.map((text) => options.tokenize(text));
    const ends = new Map<MutableNode, number>();
    sequences.forEach((tokens, index) => {
      let node = root;
      for (const token of tokens) {
        let child = node.children.get(token);
        if (child === undefined) {
          child = { depth: node.depth + 1, children: new Map(), answer: null, hasValid: false };
          node.children.set(token, child);
        }
        node = child;
      }
      if (ends.has(node))
        throw new RescaleError(
          'LABEL_INVALID',
          `field "${field}": the lists ${JSON.stringify(texts[ends.get(node) as number])} and ` +
            `${JSON.stringify(texts[index])} tokenise alike; make the labels' answers distinct`,
        );
      ends.set(node, index);
    });
    // A list ending at an inner node is a prefix of a longer one: it ends with the terminator instead.
    for (const [node, index] of ends) {
      if (node.children.size === 0) {
        node.answer = index;
        continue;
      }
      // Down the terminator's tokens another list continues with, to the first that tells this one apart.
      let at = node;
      const path = [...(sequences[index] as Token[])];
      let ended = false;
      for (const token of options.terminator) {
        path.push(token);
        const next = at.children.get(token);
        if (next === undefined) {
          at.children.set(token, { depth: at.depth + 1, children: new Map(), answer: index, hasValid: false });
          sequences[index] = path;
          ended = true;
          break;
        }
        // Another list ending here is this one with the answer's end after it: the two would be scored as one.
        const other = ends.get(next);
        if (other !== undefined)
          throw new RescaleError(
            'LABEL_INVALID',
            `field "${field}": the list ${JSON.stringify(texts[index])} followed by the answer's end tokenises as ` +
              `the list ${JSON.stringify(texts[other])} (${path.join(' ')}), so the model cannot tell them apart; ` +
              "make the labels' answers differ by more than trailing whitespace",
          );
        at = next;
      }
      if (!ended)
        throw new RescaleError(
          'LABEL_INVALID',
          `field "${field}": the list ${JSON.stringify(texts[index])} is a prefix of another and the model has no ` +
            "end-of-text token to tell them apart; change the close string or the labels' answers",
        );
    }
    markValid(root, answers);
    return new LabelSetTrie(root, answers, sequences);
  }

  /**
   * What an exhaustive walk (min_branch_mass 0) costs after the prompt, from the trie alone: reads of a distribution
   * (the root and every branch below which a valid list lies) and the list tokens evaluated to reach them.
   */
  get exhaustiveCost(): { readonly reads: number; readonly positions: number } {
    let reads = 1;
    let positions = 0;
    const visit = (node: SetTrieNode): void => {
      for (const child of node.children.values()) {
        if (!child.hasValid) continue;
        let tip = child;
        let chain = 1;
        while (tip.answer === null && tip.children.size === 1) {
          tip = tip.children.values().next().value as SetTrieNode;
          chain++;
        }
        if (tip.answer !== null) continue;
        reads++;
        positions += chain;
        visit(tip);
      }
    };
    visit(this.root);
    return { reads, positions };
  }

  /** Nodes with more than one child: where the walk reads a distribution. */
  get branchNodes(): number {
    let count = 0;
    const visit = (node: SetTrieNode): void => {
      if (node.children.size > 1) count++;
      for (const child of node.children.values()) visit(child);
    };
    visit(this.root);
    return count;
  }
}

function markValid(node: MutableNode, answers: readonly ListAnswer[]): boolean {
  let hasValid = node.answer !== null && (answers[node.answer] as ListAnswer).valid;
  for (const child of node.children.values()) hasValid = markValid(child, answers) || hasValid;
  node.hasValid = hasValid;
  return hasValid;
}
