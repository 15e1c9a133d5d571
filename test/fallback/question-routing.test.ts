// The fallback stage with several questions, on scored rows (no model) against the loopback server: each document is
// asked exactly its unsure questions in one request, an answer outside one question's labels is asked again and then
// marked fallback_invalid for that question alone, and over-budget documents keep every local answer.

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
import { OpenAIServer } from '../helpers/openai-server.js';

let server: OpenAIServer;
before(async () => {
  // The closed model answers "economy" to topic and "calm" to tone.
  server = await OpenAIServer.start({ answer: (property) => (property === 'topic' ? 'economy' : 'calm') });
});
after(async () => {
  await server.close();
});

function codebook(fallback: FallbackConfigInput): Codebook {
  return parseCodebook(
    {
      task: 'two',
      questions: [
        { name: 'topic', question: 'What is the topic?', labels: [{ name: 'health' }, { name: 'economy' }] },
        { name: 'tone', question: 'What is the tone?', labels: [{ name: 'calm' }, { name: 'angry' }] },
      ],
      prompt: { template: 'Text: {text}\n\n{question} One of: {labels}.' },
      model: { path: 'model.gguf' },
      fallback,
    },
    { source: '/tmp/two.yaml', baseDir: '/tmp' },
  );
}

/** A question's local answer with top label `label` at probability `confidence` (two labels). */
function answer(labels: readonly string[], label: string, confidence: number): QuestionAnswer {
  const probabilities = Float64Array.from(labels, (l) => (l === label ? confidence : 1 - confidence));
  return {
    label,
    confidence,
    margin: Math.abs(2 * confidence - 1),
    entropy: 0.5,
    probabilities,
    labelMass: 0.9,
    source: 'local',
    localLabel: label,
    fallback: null,
  };
}

function row(index: number, topic: number, tone: number): ResultRow {
  return {
    id: BigInt(index),
    row: index,
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
    answers: [answer(['health', 'economy'], 'health', topic), answer(['calm', 'angry'], 'angry', tone)],
  };
}

async function resolve(
  rows: ResultRow[],
  texts: string[],
  overrides: Partial<FallbackConfigInput> = {},
): Promise<{ rows: ResultRow[]; requests: typeof server.requests; stage: FallbackStage }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'rescale-questions-'));
  const book = codebook(fallbackSection(server.baseUrl, overrides));
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
    const out = await stage.resolve(
      rows,
      texts.map((text) => ({ text })),
      { shardId: 'shard-0' },
    );
    return { rows: out, requests: server.requests.slice(before), stage };
  } finally {
    await stage.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const properties = (body: { response_format?: unknown }): string[] =>
  Object.keys(
    (body.response_format as { json_schema: { schema: { properties: object } } }).json_schema.schema.properties,
  );

describe('FallbackStage.resolve with several questions', () => {
  it('asks each document exactly its unsure questions, one request each, and keeps the others local', async () => {
    // Row 0: topic unsure only; row 1: tone unsure only; row 2: both; row 3: neither.
    const rows = [row(0, 0.5, 0.9), row(1, 0.9, 0.55), row(2, 0.52, 0.51), row(3, 0.95, 0.95)];
    const result = await resolve(rows, ['budget talk', 'calm day', 'more budget talk', 'sure thing']);
    // Requests run concurrently, so they are compared in a fixed order.
    assert.deepEqual(
      result.requests.map((r) => properties(r.body).join('+')).sort(),
      ['tone', 'topic', 'topic+tone'],
      'one request per routed document, with its unsure questions only',
    );
    const view = result.rows.map((r) => [
      r.source,
      ...(r.answers ?? []).map((a) => `${a.label}/${a.source}/${a.fallback?.status ?? '-'}`),
    ]);
    assert.deepEqual(view, [
      ['fallback', 'economy/fallback/ok', 'angry/local/-'],
      ['fallback', 'health/local/-', 'calm/fallback/ok'],
      ['fallback', 'economy/fallback/ok', 'calm/fallback/ok'],
      ['local', 'health/local/-', 'angry/local/-'],
    ]);
    assert.equal(result.rows[2]?.answers?.[1]?.localLabel, 'angry');
    const stats = result.stage.stats();
    assert.deepEqual([stats.routed, stats.answered, stats.requests], [4, 4, 3]);
  });

  it('asks again after an answer outside one question’s labels, then marks that question alone invalid', async () => {
    // Every reply, the correction's included, answers tone outside its labels.
    server.setResponder(() => ({ kind: 'answer', content: '{"topic":"economy","tone":"furious"}' }));
    const result = await resolve([row(0, 0.5, 0.5)], ['budget news'], { invalid_retries: 1 }).finally(() =>
      server.setResponder(() => null),
    );
    assert.equal(result.requests.length, 2, 'the first answer and one correction');
    const correction = result.requests[1]?.body.messages ?? [];
    assert.match(correction[correction.length - 1]?.content ?? '', /The answer for tone is not one of the allowed/);
    const [topic, tone] = result.rows[0]?.answers ?? [];
    assert.deepEqual([topic?.label, topic?.source, topic?.fallback?.status], ['economy', 'fallback', 'ok']);
    assert.deepEqual([tone?.label, tone?.source, tone?.fallback?.status], ['angry', 'local', 'fallback_invalid']);
    assert.match(tone?.fallback?.error ?? '', /answer for "tone" outside its label set \(2 requests\)/);
  });

  it('keeps every local answer of a document the budget has no request left for', async () => {
    const result = await resolve([row(0, 0.5, 0.5), row(1, 0.5, 0.5)], ['budget', 'more budget'], {
      budget: { requests: 1 },
    });
    assert.equal(result.requests.length, 1);
    const statuses = result.rows.map((r) => (r.answers ?? []).map((a) => a.fallback?.status));
    assert.deepEqual(statuses, [
      ['ok', 'ok'],
      ['over_budget', 'over_budget'],
    ]);
    assert.equal(result.rows[1]?.source, 'local');
  });
});
