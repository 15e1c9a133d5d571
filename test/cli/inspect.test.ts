// `rescale inspect`'s account of a multi-question codebook: its layout and what a document costs, in words.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { layoutLines } from '../../cli/inspect.js';

describe('layoutLines', () => {
  const names = ['sentiment', 'topic'];

  it('says a document-first codebook evaluates the document once and what that saves', () => {
    const cost = { sharedPrefix: 20, document: 100, tails: [12, 10], prompts: [132, 130] };
    const text = layoutLines({ kind: 'document-first', questions: 2, reason: null }, cost, names).join('\n');
    assert.match(text, /layout: 2 questions, document first/);
    assert.match(text, /document part 100 \(evaluated once\), question tails sentiment 12, topic 10 \(Σ 22\); 122 per/);
    assert.match(text, /122 tokens instead of 222 for 2 separate prompts/);
    assert.doesNotMatch(text, /warning/);
  });

  it('warns that a question-first codebook costs K× the document and says how to reorder it', () => {
    const cost = { sharedPrefix: 17, document: 0, tails: [112, 110], prompts: [129, 127] };
    const reason = 'the template puts {question} before {text}';
    const text = layoutLines({ kind: 'question-first', questions: 2, reason }, cost, names).join('\n');
    assert.match(text, /layout: 2 questions, question first/);
    assert.match(text, /warning: the template puts \{question\} before \{text\}, .*evaluated 2× \(222 tokens/s);
    assert.match(text, /after the document variables/);
    assert.match(text, /adapters must then be trained on that prompt layout \(rescale sample --codebook/);
  });
});
