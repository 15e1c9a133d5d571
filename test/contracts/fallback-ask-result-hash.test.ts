// The result hash of a hybrid run whose fallback asks a routed multi-label question which of its labels apply (the
// wording that replaced the codebook template's): it differs from the hash runs had before that wording, so resume
// never mixes their shards; every other codebook keeps the hash it had (pinned from before the change).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCodebook, type Codebook } from '../../contracts/codebook.js';
import { fallbackIdentity, type FallbackConfigInput } from '../../contracts/fallback-config.js';
import { fallbackAsksLabelsThatApply } from '../../contracts/fallback-template.js';
import { codebookResultHash } from '../../contracts/result-hash.js';
import { QuestionsFallbackPrompt } from '../../fallback/questions-fallback-prompt.js';
import { fallbackSection } from '../helpers/fallback.js';

const tone = { name: 'tone', question: 'Is the tweet angry?', labels: [{ name: 'yes' }, { name: 'no' }] };
const topic = { name: 'topic', question: 'What is the tweet about?', labels: [{ name: 'work' }, { name: 'home' }] };
const moods = {
  name: 'moods',
  type: 'multi_label',
  question: 'Does the tweet feel {description}?',
  labels: [
    { name: 'cheer', description: 'glad' },
    { name: 'gloom', description: 'sad or sorry' },
  ],
  multi_label: { format: 'per_label' },
};

function codebook(
  questions: readonly object[],
  fallback: Partial<FallbackConfigInput> = {},
  template = 'Tweet: {text}\n\n{question} Answer yes or no.',
): Codebook {
  return parseCodebook(
    {
      task: 'tweets',
      questions,
      prompt: { template },
      model: { path: 'model.gguf' },
      fallback: fallbackSection('http://127.0.0.1:9/v1', { routing: { margin_below: 0.2 }, ...fallback }),
    },
    { source: '/tmp/tweets.yaml', baseDir: '/tmp' },
  );
}

function hash(cb: Codebook): string {
  assert.ok(cb.fallback !== null);
  return codebookResultHash(cb, { model: 'm', adapters: [] }, { sequences: 1 }, fallbackIdentity(cb.fallback));
}

/** Whether the request for every question asks the multi-label one which of its labels apply. */
function asksLabelsThatApply(cb: Codebook): boolean {
  assert.ok(cb.fallback !== null);
  const prompt = new QuestionsFallbackPrompt(cb, cb.questions, cb.fallback);
  const asked = cb.questions.map((_, q) => q);
  const user = prompt.messages({ text: 'Monday again.' }, asked).at(-1)?.content ?? '';
  return user.includes('Which of these labels apply?');
}

// Each case's hash before the fallback asked multi-label questions in its own words.
const before = {
  singleLabel: 'd691729fd65cba80195546e0ba95d6751c7b702b8f0fee88d89e4fb6a4be6894',
  multiLabel: 'd162c4bcf90a232488bacc82adca1976b77f51589ca568c1b5c0f6a43d19b238',
  ownTemplate: '1a18193f3f4149ddd8b9a55ee5862f1774c596c60943a244719aece0ef4875e0',
  ownTemplateWithoutQuestion: '5662e567a7de27397e6dcacd0eb964cd982be7f779eb9c158c2b5c08d9b8091f',
  multiLabelNotRouted: '85838526d0f65f8601ddce88b0c1bad6c88a9e692be4ce7400f33be0faf25d9b',
  documentInQuestionPart: '1a61c2850700928ad28f83f251257f7871281d46024edf02f3a9805be779f140',
};

describe('codebookResultHash of a fallback that asks which labels apply', () => {
  it('changes for a routed multi-label question asked in the codebook template', () => {
    const cb = codebook([tone, moods]);
    assert.equal(asksLabelsThatApply(cb), true);
    assert.equal(fallbackAsksLabelsThatApply(cb), true);
    assert.notEqual(hash(cb), before.multiLabel);
  });

  it('changes for a template of ones own with no part per question, whose question is asked in the new words', () => {
    const cb = codebook([tone, moods], { prompt: { template: 'Tweet: {text}' } });
    assert.equal(asksLabelsThatApply(cb), true);
    assert.equal(fallbackAsksLabelsThatApply(cb), true);
    assert.notEqual(hash(cb), before.ownTemplateWithoutQuestion);
  });

  it('stays as it was for single-label questions', () => {
    const cb = codebook([tone, topic]);
    assert.equal(fallbackAsksLabelsThatApply(cb), false);
    assert.equal(hash(cb), before.singleLabel);
  });

  it('stays as it was for a fallback.prompt.template of ones own, filled as written', () => {
    const cb = codebook([tone, moods], { prompt: { template: 'Tweet: {text}\n\n{question}' } });
    assert.equal(asksLabelsThatApply(cb), false);
    assert.equal(fallbackAsksLabelsThatApply(cb), false);
    assert.equal(hash(cb), before.ownTemplate);
  });

  it('stays as it was when the multi-label question is never routed', () => {
    const cb = codebook([tone, moods], { questions: { moods: { enabled: false } } });
    assert.equal(fallbackAsksLabelsThatApply(cb), false);
    assert.equal(hash(cb), before.multiLabelNotRouted);
  });

  it("stays as it was when the question's part of the template holds the document, whose wording is kept", () => {
    const cb = codebook([tone, moods], {}, '{question}\n\nTweet: {text}');
    assert.equal(asksLabelsThatApply(cb), false);
    assert.equal(fallbackAsksLabelsThatApply(cb), false);
    assert.equal(hash(cb), before.documentInQuestionPart);
  });
});
