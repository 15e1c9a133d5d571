import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCodebook, scoredQuestions } from '../../contracts/codebook.js';
import { codebookResultHash } from '../../contracts/result-hash.js';
import { RescaleError } from '../../contracts/errors.js';

const subjects = {
  name: 'subjects',
  type: 'multi_label',
  labels: [
    { name: 'medicine', answer: 'Medicine, Health and Life Sciences' },
    { name: 'law', answer: 'Law' },
    { name: 'physics', answer: 'Physics' },
  ],
  multi_label: { format: 'list' },
};

function codebook(question: object): unknown {
  return {
    task: 'dv',
    questions: [question],
    prompt: { format: 'raw', template: '[INST] {text} [/INST]', answer_prefix: ' ' },
    model: { path: 'm.gguf' },
  };
}

function rejects(raw: unknown, message: RegExp): void {
  assert.throws(
    () => parseCodebook(raw, { source: 'cb.yaml' }),
    (error: unknown) =>
      error instanceof RescaleError && error.code === 'CODEBOOK_INVALID' && message.test(error.message),
  );
}

describe('a list multi-label question', () => {
  it("defaults to the paper's Dataverse list syntax, the labels' answers checked against it", () => {
    const question = scoredQuestions(parseCodebook(codebook(subjects), { source: 'cb.yaml' }))[0];
    assert.deepEqual(question?.multiLabel, {
      format: 'list',
      list: {
        open: '[',
        separator: ', ',
        close: ']',
        quote: 'single',
        maxLabels: 3,
        allowEmpty: false,
        minBranchMass: 1e-4,
      },
    });
  });

  it('takes its own delimiters, and they change the result hash', () => {
    const own = { ...subjects, multi_label: { format: 'list', quote: 'double', max_labels: 2, min_branch_mass: 0 } };
    const question = scoredQuestions(parseCodebook(codebook(own), { source: 'cb.yaml' }))[0];
    assert.equal(question?.multiLabel?.format === 'list' && question.multiLabel.list.quote, 'double');
    const hash = (raw: unknown): string =>
      codebookResultHash(parseCodebook(raw, { source: 'cb.yaml' }), { model: 'm', adapters: [] }, { sequences: 1 });
    assert.notEqual(hash(codebook(own)), hash(codebook(subjects)));
  });

  it('names the field at fault: max_labels, quote, a separator inside an answer, options of the other format', () => {
    rejects(
      codebook({ ...subjects, multi_label: { format: 'list', max_labels: 4 } }),
      /"questions\[0\]\.multi_label\.max_labels": 4 is more than the question's 3 labels/,
    );
    rejects(
      codebook({ ...subjects, multi_label: { format: 'list', quote: 'smart' } }),
      /"questions\[0\]\.multi_label\.quote": unknown quote style/,
    );
    rejects(
      codebook({
        ...subjects,
        multi_label: { format: 'list', quote: 'none' },
        labels: [...subjects.labels.slice(1), { name: 'med', answer: 'Medicine, Health' }],
      }),
      /"questions\[0\]\.multi_label\.separator": the separator ", " occurs inside label 2's answer/,
    );
    rejects(codebook({ ...subjects, multi_label: { format: 'list', threshold: 0.5 } }), /questions\[0\]\.multi_label/);
    rejects(
      codebook({ ...subjects, multi_label: { format: 'lists' } }),
      /questions\[0\]\.multi_label\.format.*unknown format; use "per_label".*or "list"/s,
    );
    const withThreshold = { ...subjects, labels: [{ name: 'law', threshold: 0.3 }, { name: 'physics' }] };
    rejects(
      codebook(withThreshold),
      /"questions\[0\]\.labels\[0\]\.threshold": a list question takes the most probable label set/,
    );
  });
});
