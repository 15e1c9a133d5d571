import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Token } from 'node-llama-cpp';
import { compileLabelListSyntax } from '../../../contracts/label-list-syntax.js';
import { RescaleError } from '../../../contracts/errors.js';
import { enumerateListAnswers, LabelSetTrie } from '../../../worker/engine/label-set-trie.js';

const FOURTEEN = Array.from({ length: 14 }, (_, i) => `subject ${String.fromCharCode(65 + i)}`);

/** One token per character: every list's tokens are its characters' codes. */
const byCharacter = (text: string): Token[] => [...text].map((c) => c.codePointAt(0) as Token);

describe('enumerateListAnswers', () => {
  it('gives the 2,380 orderings of the 469 sets of at most 3 of 14 labels, then the lists repeating a label', () => {
    const syntax = compileLabelListSyntax({ max_labels: 3 }, FOURTEEN, 'm');
    const answers = enumerateListAnswers(14, syntax, 'm');
    const valid = answers.filter((a) => a.valid);
    assert.equal(valid.length, 14 + 14 * 13 + 14 * 13 * 12);
    assert.equal(new Set(valid.map((a) => [...a.labels].sort((x, y) => x - y).join(','))).size, 14 + 91 + 364);
    const repeats = answers.filter((a) => !a.valid);
    assert.equal(repeats.length, 14 * 1 + 14 * 13 * 2);
    assert.ok(repeats.every((a) => new Set(a.labels).size === a.labels.length - 1));
    assert.deepEqual(answers.slice(0, 2), [
      { labels: [0], valid: true },
      { labels: [1], valid: true },
    ]);
  });

  it('puts the empty list first when the grammar allows it', () => {
    const syntax = compileLabelListSyntax({ max_labels: 1, allow_empty: true }, FOURTEEN, 'm');
    const answers = enumerateListAnswers(14, syntax, 'm');
    assert.deepEqual(answers[0], { labels: [], valid: true });
    assert.equal(answers.length, 15);
  });

  it('refuses a grammar with more lists than it can score, naming max_labels', () => {
    const many = Array.from({ length: 40 }, (_, i) => `l${i}`);
    const syntax = compileLabelListSyntax({ max_labels: 4 }, many, 'questions[2].multi_label');
    assert.throws(
      () => enumerateListAnswers(40, syntax, 'questions[2].multi_label'),
      (e: unknown) => e instanceof RescaleError && e.message.includes('"questions[2].multi_label.max_labels"'),
    );
  });
});

describe('LabelSetTrie', () => {
  it('marks branches holding only lists that repeat a label as invalid', () => {
    const answers = ['ab', 'c'];
    const syntax = compileLabelListSyntax({ max_labels: 2 }, answers, 'm');
    const trie = LabelSetTrie.build({
      answers,
      syntax,
      answerPrefix: '',
      tokenize: byCharacter,
      terminator: [],
      field: 'm',
    });
    // ['ab', 'a…] repeats "ab": the node after ['ab', ' is valid (['ab', 'c'] follows), its child 'a' is not.
    let node = trie.root;
    for (const c of "['ab', '") node = node.children.get(c.codePointAt(0) as Token) ?? assert.fail(`no ${c}`);
    assert.equal(node.hasValid, true);
    assert.equal(node.children.get('a'.codePointAt(0) as Token)?.hasValid, false);
    assert.equal(node.children.get('c'.codePointAt(0) as Token)?.hasValid, true);
  });

  it('appends the terminator to a list that is a token prefix of another, or refuses without one', () => {
    const answers = ['a', 'b'];
    // A close string that is also how the separator starts: "[a]" is a prefix of "[a]|[b]".
    const syntax = compileLabelListSyntax({ quote: 'none', separator: ']|[', max_labels: 2 }, answers, 'm');
    const trie = LabelSetTrie.build({
      answers,
      syntax,
      answerPrefix: '',
      tokenize: byCharacter,
      terminator: [0 as Token],
      field: 'm',
    });
    assert.deepEqual(trie.sequences[0], [...byCharacter('[a]'), 0]);
    // A terminator of several tokens (Llama-2's " " then EOS): as many as tell the list apart.
    const build = (terminator: Token[]): LabelSetTrie =>
      LabelSetTrie.build({ answers, syntax, answerPrefix: '', tokenize: byCharacter, terminator, field: 'm' });
    assert.deepEqual(build([...byCharacter(' '), 0 as Token]).sequences[0], byCharacter('[a] '));
    assert.deepEqual(build([...byCharacter('|'), 0 as Token]).sequences[0], [...byCharacter('[a]|'), 0]);
    assert.throws(
      () =>
        LabelSetTrie.build({ answers, syntax, answerPrefix: '', tokenize: byCharacter, terminator: [], field: 'm' }),
      (e: unknown) => e instanceof RescaleError && e.code === 'LABEL_INVALID' && e.message.includes('"m"'),
    );
  });

  it('refuses a list whose tokens are another list followed by the answer end, whichever is built first', () => {
    // As Llama-2 would write answers "x" and "x ": the second list's tokens are the first's, then the end's " ".
    const answers = ['a', 'b'];
    const syntax = compileLabelListSyntax({ max_labels: 1 }, answers, 'm');
    const SPACE = 2 as Token;
    for (const [shorter, longer] of [
      ["['b']", "['a']"],
      ["['a']", "['b']"],
    ] as const) {
      const tokenize = (text: string): Token[] => (text === shorter ? [1 as Token] : [1 as Token, SPACE]);
      assert.throws(
        () =>
          LabelSetTrie.build({
            answers,
            syntax,
            answerPrefix: '',
            tokenize,
            terminator: [SPACE, 0 as Token],
            field: 'm',
          }),
        (e: unknown) =>
          e instanceof RescaleError &&
          e.code === 'LABEL_INVALID' &&
          e.message.includes(`the list ${JSON.stringify(shorter)} followed by the answer's end`) &&
          e.message.includes(`tokenises as the list ${JSON.stringify(longer)}`) &&
          e.message.includes('"m"'),
        shorter,
      );
    }
  });
});
