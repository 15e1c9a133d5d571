import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Token } from 'node-llama-cpp';
import { RescaleError } from '../../../contracts/errors.js';
import { buildLabelTrie, innerNodes } from '../../../worker/engine/label-trie.js';

const t = (...ids: number[]): Token[] => ids as Token[];
const END = 99 as Token;

describe('buildLabelTrie', () => {
  it('needs no inner evaluation when labels start with distinct tokens', () => {
    const { root, sequences } = buildLabelTrie([t(1), t(2), t(3)], [END]);
    assert.deepEqual(sequences, [t(1), t(2), t(3)]);
    assert.equal(innerNodes(root).length, 0);
  });

  it('walks shared prefixes and multi-token labels', () => {
    const { root } = buildLabelTrie([t(5, 1), t(5, 2), t(7)], [END]);
    const inner = innerNodes(root);
    assert.deepEqual(
      inner.map((n) => n.path),
      [t(5)],
    );
    assert.equal(root.children.get(7 as Token)?.labelIndex, 2);
  });

  it('appends the terminator to a label that is a prefix of another', () => {
    const { sequences, root } = buildLabelTrie([t(4), t(4, 6), t(8, 9, 10)], [END]);
    assert.deepEqual(sequences, [t(4, END), t(4, 6), t(8, 9, 10)]);
    assert.deepEqual(
      innerNodes(root).map((n) => n.path),
      [t(4), t(8), t(8, 9)],
    );
  });

  it('appends a terminator of several tokens only as far as it tells the label apart', () => {
    const SPACE = 50 as Token;
    // "1", "12" and "1 2" after Llama-2's "[/INST]": "▁ 1", "▁ 1 2", "▁ 1 ▁ 2"; the reference ends "1" as "▁ 1 ▁ </s>".
    const { sequences, root } = buildLabelTrie([t(50, 1), t(50, 1, 2), t(50, 1, 50, 2)], [SPACE, END]);
    assert.deepEqual(sequences, [t(50, 1, 50, END), t(50, 1, 2), t(50, 1, 50, 2)]);
    assert.equal(
      root.children
        .get(SPACE)
        ?.children.get(1 as Token)
        ?.children.get(SPACE)?.children.size,
      2,
    );
    const { sequences: apart } = buildLabelTrie([t(50, 1), t(50, 1, 2)], [SPACE, END]);
    assert.deepEqual(apart, [t(50, 1, SPACE), t(50, 1, 2)]);
  });

  it('refuses two labels whose tokens are alike once the shorter has the answer end', () => {
    // Llama-2 chat answers "x" and "x ": "▁x" ends with "▁" (the reference reply's), which is where "x " ends.
    assert.throws(
      () =>
        buildLabelTrie([t(5), t(5, 50)], [50 as Token, END], {
          source: 'cb.yaml',
          label: (i) => ['label "plain"', 'label "spaced"'][i] as string,
        }),
      (e: unknown) =>
        e instanceof RescaleError &&
        e.code === 'LABEL_INVALID' &&
        e.message.startsWith('cb.yaml: label "plain" and label "spaced" tokenise alike') &&
        e.message.includes('more than trailing whitespace'),
    );
    assert.throws(
      () => buildLabelTrie([t(5, 1), t(7), t(5, 1)], [END]),
      (e: unknown) => e instanceof RescaleError && /label 0 and label 2 tokenise alike \(5 1\)/.test(e.message),
    );
  });

  it('refuses a label still a token prefix of another after every token of the answer end', () => {
    assert.throws(
      () => buildLabelTrie([t(5), t(5, 50, 7)], [50 as Token]),
      (e: unknown) =>
        e instanceof RescaleError &&
        e.code === 'LABEL_INVALID' &&
        /label 0 is a token prefix of label 1 even with the answer's end/.test(e.message),
    );
  });
});
