// `rescale inspect`'s account of a multi-question codebook: its layout and what a document costs, in words.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { layoutLines } from '../../cli/inspect.js';

describe('layoutLines', () => {
  const names = ['sentiment', 'topic'];

  it('says a document-first codebook evaluates the document once and what that saves', () => {
    const cost = { sharedPrefix: 20, document: 100, tails: [12, 10], prompts: [132, 130] };
    const text = layoutLines({ kind: 'document-first', questions: 2, prompts: 2, reason: null }, cost, names).join(
      '\n',
    );
    assert.match(text, /layout: 2 questions, document first/);
    assert.match(text, /document part 100 \(evaluated once\), question tails sentiment 12, topic 10 \(Σ 22\); 122 per/);
    assert.match(text, /122 tokens instead of 222 for 2 separate prompts/);
    assert.doesNotMatch(text, /warning/);
  });

  it('warns that a question-first codebook costs K× the document and says how to reorder it', () => {
    const cost = { sharedPrefix: 17, document: 0, tails: [112, 110], prompts: [129, 127] };
    const reason = 'the template puts {question} before {text}';
    const text = layoutLines({ kind: 'question-first', questions: 2, prompts: 2, reason }, cost, names).join('\n');
    assert.match(text, /layout: 2 questions, question first/);
    assert.match(text, /warning: the template puts \{question\} before \{text\}, .*evaluated 2× \(222 tokens/s);
    assert.match(text, /after the document variables/);
    assert.match(text, /adapters must then be trained on that prompt layout \(rescale sample --codebook/);
  });

  it('counts a per_label question as one prompt per label', () => {
    const cost = { sharedPrefix: 20, document: 100, tails: [9, 11, 10], prompts: [129, 131, 130] };
    const labels = ['moods[cheer]', 'moods[gloom]', 'moods[mixed]'];
    const layout = { kind: 'document-first' as const, questions: 1, prompts: 3, reason: null };
    const text = layoutLines(layout, cost, labels).join('\n');
    assert.match(text, /layout: 1 question\(s\) asked in 3 prompts \(a per_label question asks each label\), document/);
    assert.match(text, /question tails moods\[cheer\] 9, moods\[gloom\] 11, moods\[mixed\] 10 \(Σ 30\); 130 per/);
    assert.match(text, /130 tokens instead of 330 for 3 separate prompts/);
  });
});
