// A token trie over the labels' answer token sequences. Scoring walks it: the root needs the distribution after
// the prompt; every inner node beyond the root needs one more evaluation of its path.

import type { Token } from 'node-llama-cpp';
import { RescaleError } from '../../contracts/errors.js';
import { isStrictTokenPrefix, sameTokens } from './token-sequence.js';

export interface TrieNode {
  /** Tokens from the root to this node (empty for the root). */
  readonly path: readonly Token[];
  /** Next-token branches, in first-seen label order. */
  readonly children: ReadonlyMap<Token, TrieNode>;
  /** Index of the label whose sequence ends here, if any. */
  readonly labelIndex: number | null;
}

interface MutableNode {
  path: Token[];
  children: Map<Token, MutableNode>;
  labelIndex: number | null;
}

/** How the labels are named in errors: where they are (the codebook) and each label with its answer and field. */
export interface LabelNaming {
  readonly source: string;
  readonly label: (index: number) => string;
}

const BY_INDEX: LabelNaming = { source: 'codebook', label: (index) => `label ${index}` };

/**
 * Builds the trie. A label whose tokens are a strict prefix of another label's gets `terminator`'s tokens appended
 * (what follows an answer that stops: end of turn, end of text, or Llama-2's " " and end of text), as many as tell
 * it apart from every other label, so "pos" and "positive" are told apart by whether the answer stops. Like every
 * label, it is scored up to where it differs from the others. Two labels that still tokenise alike, or one still a
 * prefix of another, are refused: their probabilities would be counted twice, or the shorter one's include the
 * longer's.
 */
export function buildLabelTrie(
  sequences: readonly (readonly Token[])[],
  terminator: readonly Token[],
  naming: LabelNaming = BY_INDEX,
): { root: TrieNode; sequences: Token[][] } {
  const resolved = sequences.map((seq, i) => {
    const out = [...seq];
    for (const token of terminator) {
      if (!sequences.some((other, j) => j !== i && isStrictTokenPrefix(out, other))) break;
      out.push(token);
    }
    return out;
  });
  resolved.forEach((seq, i) => {
    resolved.forEach((other, j) => {
      if (j > i && sameTokens(seq, other)) {
        const ended =
          seq.length > Math.min((sequences[i] as Token[]).length, (sequences[j] as Token[]).length)
            ? " once the answer's end follows the shorter"
            : '';
        throw new RescaleError(
          'LABEL_INVALID',
          `${naming.source}: ${naming.label(i)} and ${naming.label(j)} tokenise alike${ended} (${seq.join(' ')}), ` +
            'so the model cannot tell them apart; make the answers differ by more than trailing whitespace',
        );
      }
      if (isStrictTokenPrefix(seq, other))
        throw new RescaleError(
          'LABEL_INVALID',
          `${naming.source}: ${naming.label(i)} is a token prefix of ${naming.label(j)} ` +
            (terminator.length === 0
              ? 'and the model has no end-of-text token to tell them apart'
              : `even with the answer's end (${terminator.length} token(s)) after it, so the model cannot ` +
                'tell them apart') +
            '; change the answers so that neither starts with the other',
        );
    });
  });
  const root: MutableNode = { path: [], children: new Map(), labelIndex: null };
  resolved.forEach((seq, labelIndex) => {
    let node = root;
    for (const token of seq) {
      let child = node.children.get(token);
      if (child === undefined) {
        child = { path: [...node.path, token], children: new Map(), labelIndex: null };
        node.children.set(token, child);
      }
      node = child;
    }
    node.labelIndex = labelIndex;
  });
  return { root, sequences: resolved };
}

/** Inner nodes below the root (those needing their own evaluation), depth-first, in a fixed order. */
export function innerNodes(root: TrieNode): TrieNode[] {
  const out: TrieNode[] = [];
  const visit = (node: TrieNode): void => {
    for (const child of node.children.values()) {
      if (child.children.size > 0) {
        out.push(child);
        visit(child);
      }
    }
  };
  visit(root);
  return out;
}
