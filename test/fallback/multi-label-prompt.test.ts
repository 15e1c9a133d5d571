// What the closed model reads when it is asked multi-label questions, on scored rows (no model) against the loopback
// server: with the codebook's template, whose per-question part is the local model's yes/no wording, a multi-label
// question is asked which of its labels apply and answered with their list, while a single-label question keeps the
// template's part; a `fallback.prompt.template` of the researcher's own is filled as written.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseCodebook, type Codebook } from '../../contracts/codebook.js';
import type { FallbackConfigInput } from '../../contracts/fallback-config.js';
import type { QuestionAnswer, ResultRow } from '../../contracts/results.js';
import { FallbackStage } from '../../fallback/fallback-stage.js';
import { fallbackSection } from '../helpers/fallback.js';
import { OpenAIServer, type SeenRequest } from '../helpers/openai-server.js';

let server: OpenAIServer;
before(async () => {
  server = await OpenAIServer.start({
    answer: (property) => (property === 'tone' ? 'no' : property === 'moods' ? ['gloom'] : ['work']),
  });
});
after(async () => {
  await server.close();
});

function codebook(fallback: FallbackConfigInput): Codebook {
  return parseCodebook(
    {
      task: 'tweets',
      questions: [
        { name: 'tone', question: 'Is the tweet angry?', labels: [{ name: 'yes' }, { name: 'no' }] },
        {
          name: 'moods',
          type: 'multi_label',
          question: 'Does the tweet feel {description}?',
          labels: [
            { name: 'cheer', description: 'glad' },
            { name: 'gloom', description: 'sad or sorry' },
          ],
          multi_label: { format: 'per_label' },
        },
        {
          name: 'topics',
          type: 'multi_label',
          question: 'Which topics does the tweet touch?',
          labels: [{ name: 'work' }, { name: 'home' }, { name: 'play' }],
          multi_label: { format: 'list', max_labels: 2 },
        },
      ],
      prompt: { template: 'Tweet: {text}\n\n{question} Answer yes or no.' },
      model: { path: 'model.gguf' },
      fallback,
    },
    { source: '/tmp/tweets.yaml', baseDir: '/tmp' },
  );
}

/** Every question unsure (margins below the 0.2 of the routing rule). */
function row(): ResultRow {
  const single: QuestionAnswer = {
    label: 'yes',
    confidence: 0.55,
    margin: 0.1,
    entropy: 0.69,
    probabilities: Float64Array.from([0.55, 0.45]),
    labelMass: 0.9,
    source: 'local',
    localLabel: 'yes',
    fallback: null,
  };
  const moods: QuestionAnswer = {
    label: null,
    labels: ['cheer'],
    confidence: 0.3,
    margin: 0.05,
    entropy: null,
    probabilities: Float64Array.from([0.55, 0.4]),
    labelMass: 0.9,
    source: 'local',
    localLabels: ['cheer'],
    fallback: null,
  };
  const topics: QuestionAnswer = {
    label: null,
    labels: ['home'],
    confidence: 0.4,
    margin: 0.1,
    entropy: null,
    probabilities: Float64Array.from([0.3, 0.4, 0.3]),
    labelMass: 0.9,
    setProbability: 0.4,
    unscoredMass: 0,
    greedyLabels: ['home'],
    invalidMass: 0,
    source: 'local',
    localLabels: ['home'],
    fallback: null,
  };
  return {
    id: 1n,
    row: 0,
    label: null,
    confidence: null,
    margin: null,
    entropy: null,
    probabilities: null,
    status: 'ok',
    error: null,
    tokens: 10,
    source: 'local',
    shardId: 'shard-0',
    answers: [single, moods, topics],
  };
}

/** The one request the closed model receives for the row, and the row's answers after it. */
async function ask(overrides: Partial<FallbackConfigInput> = {}): Promise<{ request: SeenRequest; row: ResultRow }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'rescale-multi-label-prompt-'));
  const book = codebook(fallbackSection(server.baseUrl, { routing: { margin_below: 0.2 }, ...overrides }));
  const before = server.requests.length;
  const stage = await FallbackStage.open({
    codebook: book,
    config: book.fallback as NonNullable<Codebook['fallback']>,
    mode: 'live',
    apiKey: server.apiKey,
    cacheDir: path.join(dir, 'cache'),
    auditFile: path.join(dir, 'audit.jsonl'),
    backoff: { baseMs: 10, maxMs: 50 },
  });
  try {
    const [out] = await stage.resolve([row()], [{ text: 'Monday again, the office is grey' }], { shardId: 'shard-0' });
    const sent = server.requests.slice(before);
    assert.equal(sent.length, 1);
    return { request: sent[0] as SeenRequest, row: out as ResultRow };
  } finally {
    await stage.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const ANSWER_INSTRUCTION =
  'Answer with a JSON object {"tone": "<label>", "moods": ["<label>", ...], "topics": ["<label>", ...]} where tone ' +
  'is exactly one of: "yes", "no"; moods is a list of the labels that apply, each at most once ([] when none ' +
  'applies), from: "cheer", "gloom"; topics is a list of the labels that apply, each at most once (at least 1, at ' +
  'most 2), from: "work", "home", "play".';

describe('the fallback request for multi-label questions', () => {
  it('asks which labels apply, not the local template’s yes/no question, and keeps a single-label part', async () => {
    const { request, row: answered } = await ask();
    assert.equal(
      request.user,
      'Tweet: Monday again, the office is grey\n\nAnswer each question:\n\n' +
        // The single-label question keeps the codebook template's part, as before.
        'tone: Is the tweet angry? Answer yes or no.\n\n' +
        'moods: Which of these labels apply?\n- cheer: Does the tweet feel glad?\n' +
        '- gloom: Does the tweet feel sad or sorry?\nAnswer with the list of the labels that apply.\n\n' +
        'topics: Which topics does the tweet touch? Answer with the list of the labels that apply, from: "work", ' +
        '"home", "play".\n\n' +
        ANSWER_INSTRUCTION,
    );
    assert.equal(request.user.match(/yes or no/g)?.length, 1, 'only the single-label question says yes or no');
    assert.deepEqual(
      answered.answers?.map((a) => a.labels ?? a.label),
      ['no', ['gloom'], ['work']],
    );
  });

  it('fills a fallback.prompt.template of its own as written, for every question', async () => {
    const { request } = await ask({
      prompt: { template: 'Post: {text}\n\n{question} (labels: {labels})' },
    });
    assert.equal(
      request.user,
      'Post: Monday again, the office is grey\n\nAnswer each question:\n\n' +
        'tone: Is the tweet angry? (labels: yes, no)\n\n' +
        'moods: Which labels apply? cheer: Does the tweet feel glad?; gloom: Does the tweet feel sad or sorry? ' +
        '(labels: cheer, gloom)\n\n' +
        'topics: Which topics does the tweet touch? (labels: work, home, play)\n\n' +
        ANSWER_INSTRUCTION,
    );
  });
});
