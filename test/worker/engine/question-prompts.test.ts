// QuestionPrompts renders every question's prompt for a document with the document cut once and the codebook's
// special-token text split once per builder: the tokens must be those of a fresh rendering of each prompt, and, for raw
// prompts, those of llama.cpp's whole-string tokenisation, on the Llama-2 SPM fixture.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LlamaModel, Token } from 'node-llama-cpp';
import { parseCodebook, type Codebook } from '../../../contracts/codebook.js';
import { llamaBuildFromEnvironment } from '../../../contracts/environment.js';
import { QuestionPrompts } from '../../../worker/engine/question-prompts.js';
import { getRuntime, loadModel } from '../../../worker/engine/llama-runtime.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';

const QUESTIONS = ['Is it about sport?', 'Is it about music?', 'Is it negative?', 'Does it ask something?', 'Sarcasm?'];
const SYSTEM = 'You are a careful annotator.';
const RAW_TEMPLATE = '<s>[INST] Text: "{text}"\n\nQuestion: {question}[/INST]';
const DOCUMENTS = [
  'Watching the match tonight with friends, what a goal!',
  'New album drops Friday. ' + 'Cannot wait to hear it live. '.repeat(12),
  '</s> literal special text in a document is never parsed',
  'x',
];
const MAX_DOCUMENT_TOKENS = 40;

let model: LlamaModel;
let modelPath: string;
before(async () => {
  modelPath = await fixtureModel('small');
  model = await loadModel(await getRuntime({ build: llamaBuildFromEnvironment() }), modelPath, 0);
});
after(async () => {
  await model.dispose();
});

function codebook(format: 'raw' | 'chat'): Codebook {
  return parseCodebook(
    {
      task: 'questions',
      questions: QUESTIONS.map((question, i) => ({
        name: `q${i}`,
        question,
        labels: [{ name: 'yes' }, { name: 'no' }],
      })),
      prompt:
        format === 'raw' ? { format, template: RAW_TEMPLATE } : { format, system: SYSTEM, template: RAW_TEMPLATE },
      model: { path: modelPath },
    },
    { source: 'questions.yaml' },
  );
}

describe('QuestionPrompts.render', () => {
  for (const format of ['raw', 'chat'] as const) {
    it(`gives every document (${format}) the tokens of a fresh rendering, truncated or not`, () => {
      const book = codebook(format);
      const reused = QuestionPrompts.create(model, book, book.questions);
      for (const text of [...DOCUMENTS, ...DOCUMENTS]) {
        const fresh = QuestionPrompts.create(model, book, book.questions).render({ text }, MAX_DOCUMENT_TOKENS);
        assert.deepEqual(reused.render({ text }, MAX_DOCUMENT_TOKENS), fresh);
      }
      assert.equal(reused.render({ text: DOCUMENTS[1] as string }, MAX_DOCUMENT_TOKENS).truncated, true);
    });
  }

  it('gives raw prompts the tokens of llama.cpp’s whole-string tokenisation, the document cut once', () => {
    const book = codebook('raw');
    const prompts = QuestionPrompts.create(model, book, book.questions);
    for (const text of DOCUMENTS.filter((d) => !d.includes('</s>'))) {
      const tokens = model.tokenize(text, false, 'trimLeadingSpace');
      const kept = tokens.length > MAX_DOCUMENT_TOKENS ? model.detokenize(tokens.slice(0, MAX_DOCUMENT_TOKENS)) : text;
      const rendered = prompts.render({ text }, MAX_DOCUMENT_TOKENS);
      QUESTIONS.forEach((question, q) => {
        const whole = RAW_TEMPLATE.replace('{text}', kept).replace('{question}', question);
        assert.deepEqual(rendered.prompts[q], [model.tokens.bos as Token, ...model.tokenize(whole, true)]);
      });
      assert.equal(rendered.truncated, kept !== text);
    }
  });
});
