// Multi-label questions in the codebook: the per_label form's defaults, per-label thresholds and question text, and
// the errors that name the field at fault.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCodebook, perLabelText, scoredQuestions, singleQuestion } from '../../contracts/codebook.js';
import { codebookResultHash } from '../../contracts/result-hash.js';
import { RescaleError } from '../../contracts/errors.js';
import { fallbackSection } from '../helpers/fallback.js';

const subjects = {
  name: 'subjects',
  type: 'multi_label',
  question: 'Is the dataset about {description}?',
  labels: [
    { name: 'medicine', description: 'Medicine, Health and Life Sciences' },
    { name: 'law', threshold: 0.3 },
    { name: 'physics', description: 'Physics' },
  ],
  multi_label: { format: 'per_label' },
};

function codebook(question: object, extra: object = {}): unknown {
  return {
    task: 'dv',
    questions: [question],
    prompt: { template: 'Title: {text}\n{question}' },
    model: { path: 'm.gguf' },
    ...extra,
  };
}

function rejects(raw: unknown, message: RegExp): void {
  assert.throws(
    () => parseCodebook(raw, { source: 'cb.yaml' }),
    (error: unknown) =>
      error instanceof RescaleError && error.code === 'CODEBOOK_INVALID' && message.test(error.message),
  );
}

describe('a per_label multi-label question', () => {
  it('defaults to the answers "yes"/"no" and threshold 0.5, a label’s own threshold overriding it', () => {
    const cb = parseCodebook(codebook(subjects), { source: 'cb.yaml' });
    const question = scoredQuestions(cb)[0];
    assert.equal(question?.type, 'multi_label');
    assert.deepEqual(question?.multiLabel, {
      format: 'per_label',
      thresholds: [0.5, 0.3, 0.5],
      answers: { yes: 'yes', no: 'no' },
    });
    assert.throws(() => singleQuestion(cb), /one single-label question/);
  });

  it('takes its own answers and default threshold', () => {
    const cb = parseCodebook(
      codebook({ ...subjects, multi_label: { format: 'per_label', answers: { yes: 'Y', no: 'N' }, threshold: 0.7 } }),
      { source: 'cb.yaml' },
    );
    assert.deepEqual(cb.questions[0]?.multiLabel, {
      format: 'per_label',
      thresholds: [0.7, 0.3, 0.7],
      answers: { yes: 'Y', no: 'N' },
    });
  });

  it('fills {label} with the name and {description} with the description, or the name without one', () => {
    assert.equal(perLabelText('Is it {label} ({description})? {{x}}', { name: 'law' }), 'Is it law (law)? {x}');
    assert.equal(perLabelText('About {description}?', { name: 'm', description: 'Medicine' }), 'About Medicine?');
  });

  it('refuses a threshold outside [0, 1], on a label or the section, naming the field', () => {
    for (const threshold of [-0.1, 1.5]) {
      rejects(
        codebook({ ...subjects, labels: [{ name: 'a', threshold }, { name: 'b' }] }),
        /field "questions\[0\]\.labels\[0\]\.threshold": .*between 0 and 1/,
      );
      rejects(
        codebook({ ...subjects, multi_label: { format: 'per_label', threshold } }),
        /questions\[0\]\.multi_label\.threshold.*between 0 and 1/s,
      );
    }
  });

  it('refuses equal yes and no answers, an unknown format, and a question without labels', () => {
    rejects(
      codebook({ ...subjects, multi_label: { format: 'per_label', answers: { yes: 'ok', no: 'ok' } } }),
      /field "questions\[0\]\.multi_label\.answers": the yes and no answers must differ/,
    );
    rejects(
      codebook({ ...subjects, multi_label: { format: 'json_list' } }),
      /questions\[0\]\.multi_label\.format.*unknown format; use "per_label"/s,
    );
    const { labels: _labels, ...withoutLabels } = subjects;
    rejects(codebook(withoutLabels), /questions\[0\]\.labels.*a question needs its labels/s);
  });

  it('refuses question text that is missing, uses another variable, or asks two labels the same', () => {
    const { question: _question, ...withoutText } = subjects;
    rejects(
      codebook(withoutText, { prompt: { template: '{text}' } }),
      /field "questions\[0\]\.question": a per_label question is asked once per label/,
    );
    rejects(
      codebook({ ...subjects, question: 'Is it {topic}?' }),
      /field "questions\[0\]\.question": \{topic\} is not a per-label variable/,
    );
    rejects(
      codebook({ ...subjects, question: 'Is it about this?' }),
      /field "questions\[0\]\.question": labels 0 and 1 would be asked the same question/,
    );
    // The template must have somewhere to put each label's question.
    rejects(codebook(subjects, { prompt: { template: '{text}' } }), /field "prompt\.template": .*no \{question\}/);
  });

  it('refuses multi_label on a single-label question and a threshold on a single-label label', () => {
    rejects(
      codebook({ ...subjects, type: 'single_label' }),
      /field "questions\[0\]\.multi_label": only a multi-label question is scored this way/,
    );
    rejects(
      codebook({
        name: 'tone',
        labels: [{ name: 'calm', threshold: 0.5 }, { name: 'angry' }],
      }),
      /field "questions\[0\]\.labels\[0\]\.threshold": a threshold decides membership in a multi-label question/,
    );
  });

  it('takes the fallback by the rules a multi-label question has, refusing one it has not by field', () => {
    const url = 'http://127.0.0.1:1/v1';
    const parsed = parseCodebook(
      codebook(subjects, { fallback: fallbackSection(url, { routing: { margin_below: 0.1 } }) }),
      {
        source: 'cb.yaml',
      },
    );
    assert.equal(parsed.fallback?.routing.marginBelow, 0.1);
    rejects(
      codebook(subjects, { fallback: fallbackSection(url, { routing: { entropy_above: 0.5 } }) }),
      /questions\[0\] \(subjects\) is multi-label and has no entropy, so entropy_above never routes it/,
    );
    parseCodebook(codebook(subjects, { fallback: { enabled: false } }), { source: 'cb.yaml' });
  });

  it('changes the result hash with a threshold or the answers', () => {
    const hash = (question: object): string =>
      codebookResultHash(
        parseCodebook(codebook(question), { source: 'cb.yaml' }),
        { model: 'm', adapters: [] },
        {
          sequences: 1,
        },
      );
    const base = hash(subjects);
    assert.notEqual(hash({ ...subjects, multi_label: { format: 'per_label', threshold: 0.6 } }), base);
    assert.notEqual(hash({ ...subjects, multi_label: { format: 'per_label', answers: { yes: 'Yes' } } }), base);
    assert.equal(hash({ ...subjects, multi_label: { format: 'per_label', threshold: 0.5 } }), base);
  });
});
