// How the fallback reads a multi-label question's answer: a JSON list of the question's answers, matched as single
// labels are (exactly, else case-insensitively if unique), each at most once, within the list form's bounds; the labels
// come back in codebook order with the span of the list's contents in the reply. Anything else is invalid, with a
// reason, and leaves the other questions' readings.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCodebook } from '../../contracts/codebook.js';
import { labelConfidence } from '../../fallback/fallback-prompt.js';
import { QuestionsFallbackPrompt, type QuestionReading } from '../../fallback/questions-fallback-prompt.js';
import { fallbackSection } from '../helpers/fallback.js';

const codebook = parseCodebook(
  {
    task: 'three',
    questions: [
      { name: 'tone', question: 'What is the tone?', labels: [{ name: 'calm' }, { name: 'angry' }] },
      {
        name: 'moods',
        type: 'multi_label',
        question: 'Does the text feel {label}?',
        labels: [{ name: 'cheer' }, { name: 'gloom' }, { name: 'mixed' }],
        multi_label: { format: 'per_label' },
      },
      {
        name: 'subjects',
        type: 'multi_label',
        question: 'Subjects:',
        labels: [
          { name: 'law', answer: 'Law' },
          { name: 'arts', answer: 'Arts [and] Humanities' },
          { name: 'social', answer: 'Social Sciences' },
        ],
        multi_label: { format: 'list', max_labels: 2 },
      },
    ],
    prompt: { template: 'Text: {text}\n\n{question}' },
    model: { path: 'model.gguf' },
    fallback: fallbackSection('http://127.0.0.1:1/v1', { routing: { margin_below: 0.1 } }),
  },
  { source: '/tmp/three.yaml', baseDir: '/tmp' },
);
const prompt = new QuestionsFallbackPrompt(codebook, codebook.questions, codebook.fallback!);
const ASKED = [0, 1, 2];

function read(reply: object | string): QuestionReading[] {
  return prompt.parse(typeof reply === 'string' ? reply : JSON.stringify(reply), ASKED);
}

function labelsOf(reading: QuestionReading | undefined): string[] | string {
  if (reading?.kind === 'labels') return reading.labels.map((l) => l.name);
  return reading?.kind === 'invalid' ? `invalid: ${reading.reason}` : 'label';
}

describe('QuestionsFallbackPrompt with multi-label questions', () => {
  it('reads lists in codebook order, case-insensitively, possibly empty for per_label', () => {
    const readings = read({ tone: 'calm', moods: ['MIXED', 'cheer'], subjects: ['Social Sciences', 'law'] });
    assert.equal(readings[0]?.kind, 'label');
    assert.deepEqual(labelsOf(readings[1]), ['cheer', 'mixed']);
    assert.deepEqual(labelsOf(readings[2]), ['law', 'social']);
    assert.deepEqual(labelsOf(read({ tone: 'calm', moods: [], subjects: ['Law'] })[1]), []);
  });

  it('refuses a label outside the set, a label twice, too many or no labels, and a value that is no list', () => {
    const cases: [object, number, RegExp][] = [
      [{ tone: 'calm', moods: ['cheer', 'joy'], subjects: ['Law'] }, 1, /"moods" lists a value outside its label set/],
      [{ tone: 'calm', moods: ['cheer', 'Cheer'], subjects: ['Law'] }, 1, /"moods" lists a label twice/],
      [{ tone: 'calm', moods: [1], subjects: ['Law'] }, 1, /outside its label set/],
      [{ tone: 'calm', moods: 'cheer', subjects: ['Law'] }, 1, /has no "moods" list/],
      [{ tone: 'calm', moods: [], subjects: ['Law', 'Social Sciences', 'Arts [and] Humanities'] }, 2, /more than 2/],
      [{ tone: 'calm', moods: [], subjects: [] }, 2, /"subjects" lists no label/],
    ];
    for (const [reply, q, reason] of cases) {
      const readings = read(reply);
      assert.match(String(labelsOf(readings[q])), reason, JSON.stringify(reply));
      // The other questions keep their readings.
      assert.equal(readings[0]?.kind, 'label');
      assert.equal(readings.filter((r) => r.kind === 'invalid').length, 1, JSON.stringify(reply));
    }
    assert.equal(prompt.answersAll(JSON.stringify({ tone: 'calm', moods: ['joy'], subjects: ['Law'] }), ASKED), false);
    assert.equal(prompt.answersAll(JSON.stringify({ tone: 'calm', moods: [], subjects: ['Law'] }), ASKED), true);
  });

  it('finds the list in the reply (brackets inside answers included) for the confidence from logprobs', () => {
    const reply = '{"tone": "calm", "moods": ["gloom"], "subjects": ["Arts [and] Humanities", "Law"]}';
    const subjects = read(reply)[2];
    assert.ok(subjects?.kind === 'labels');
    assert.equal(reply.slice(...subjects.span), '"Arts [and] Humanities", "Law"');
    // exp(sum of the logprobs of the tokens overlapping the list's contents).
    const [start, end] = subjects.span;
    const tokens = [
      { token: reply.slice(0, start), logprob: -1 },
      { token: reply.slice(start, start + 5), logprob: -0.25 },
      { token: reply.slice(start + 5, end), logprob: -0.5 },
      { token: reply.slice(end), logprob: -2 },
    ];
    assert.ok(Math.abs((labelConfidence(reply, subjects.span, tokens) ?? 0) - Math.exp(-0.75)) < 1e-12);
  });

  it('asks for lists by JSON schema: distinct answers, at most max_labels, at least one for a list question', () => {
    const body = prompt.body(prompt.messages({ text: 'A court ruling on museum funding.' }, ASKED), ASKED);
    const format = body.response_format as { json_schema: { schema: { properties: object } } };
    assert.deepEqual(format.json_schema.schema.properties, {
      tone: { type: 'string', enum: ['calm', 'angry'] },
      moods: { type: 'array', items: { type: 'string', enum: ['cheer', 'gloom', 'mixed'] }, uniqueItems: true },
      subjects: {
        type: 'array',
        items: { type: 'string', enum: ['Law', 'Arts [and] Humanities', 'Social Sciences'] },
        uniqueItems: true,
        minItems: 1,
        maxItems: 2,
      },
    });
    const user = body.messages.at(-1)?.content ?? '';
    assert.match(
      user,
      /moods: Which of these labels apply\?\n- cheer: Does the text feel cheer\?\n- gloom: Does the text feel gloom\?\n/,
    );
    assert.match(user, /subjects: Subjects: Answer with the list of the labels that apply, from: "Law", /);
    assert.match(user, /subjects is a list of the labels that apply, each at most once \(at least 1, at most 2\)/);
  });
});
