// End to end: a codebook with a per_label and a list multi-label question on the keyword fixture model, the fallback
// against the loopback server. Each question is routed by the rules that read its own columns (per_label: a label's
// P(yes) near its threshold, or low label mass; list: unscored mass), the closed model answers a document's unsure
// questions in one request whose JSON schema gives each a list of its labels, an answer outside the rules (a label
// twice, a label outside the set, too many labels) goes through the correction round, and the fallback's set replaces
// `<q>__labels` while the probability columns stay the local model's. An offline replay is byte-identical, and
// `rescale batch submit` uploads the same first requests.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { submitFallbackBatch } from '../../cli/fallback-batch.js';
import { runLocalMode } from '../../cli/local-mode.js';
import { auditRecords, fallbackSection } from '../helpers/fallback.js';
import { fixtureModel } from '../../scripts/harness/fixture-models.js';
import { OpenAIServer, type SeenRequest } from '../helpers/openai-server.js';
import { queryDuckDB, sqlString, withTempDir, writeParquetWithDuckDB } from '../../scripts/harness/parquet.js';

const KEY_VARIABLE = 'RESCALE_TEST_FALLBACK_KEY';
const TWEETS = [
  'I love this, what a great and happy day, best ever',
  'The meeting is at 3pm in room 12',
  'This is awful. I hate it, terrible service',
  'great fun, nice but awful',
  'sad news today, so sorry',
  'good',
  'great',
  'happy',
];
/** Routed by the rules below, as the local columns say (checked against a run without the fallback). */
const MOODS_ROUTED = [2, 6, 7, 8];
const TOPICS_ROUTED = [2];

/** What the closed model replies, per document (by its tweet) and round (1 = the first request). */
function reply(tweet: string, round: number): string {
  switch (tweet) {
    case 'The meeting is at 3pm in room 12':
      // Three topics where at most two are allowed, then two (out of codebook order).
      return JSON.stringify({
        moods: ['gloom'],
        topics: round === 1 ? ['positive', 'negative', 'neutral'] : ['negative', 'positive'],
      });
    case 'good':
      // A label twice, then a proper set (out of codebook order).
      return JSON.stringify({ moods: round === 1 ? ['cheer', 'cheer'] : ['mixed', 'cheer'] });
    case 'great':
      // A label outside the set, every time.
      return JSON.stringify({ moods: ['cheer', 'joy'] });
    default:
      return JSON.stringify({ moods: [] });
  }
}

/** The document a request is about (its first user message holds the tweet) and the round it is. */
function requestOf(request: SeenRequest): { tweet: string; round: number } {
  const first = request.body.messages.find((m) => m.role === 'user')?.content ?? '';
  const tweet = TWEETS.find((t) => first.includes(`Tweet: ${t}\n`)) ?? '';
  return { tweet, round: request.body.messages.filter((m) => m.role === 'assistant').length + 1 };
}

let server: OpenAIServer;
let model: string;

before(async () => {
  server = await OpenAIServer.start({
    respond: (request) => {
      const { tweet, round } = requestOf(request);
      return { kind: 'answer', content: reply(tweet, round) };
    },
  });
  model = await fixtureModel('keyword');
});
after(async () => {
  await server.close();
});

async function setup(dir: string): Promise<{ codebook: string; input: string }> {
  const rows = TWEETS.map((t, i) => `(${i + 1}::BIGINT, '${sqlString(t)}')`).join(', ');
  const input = await writeParquetWithDuckDB(
    `SELECT * FROM (VALUES ${rows}) t(id, text)`,
    path.join(dir, 'tweets.parquet'),
  );
  const codebook = path.join(dir, 'moods.codebook.yaml');
  await writeFile(
    codebook,
    stringify({
      task: 'moods',
      input: { text_column: 'text', id_column: 'id' },
      questions: [
        {
          name: 'moods',
          type: 'multi_label',
          question: 'Does the tweet feel {description}?',
          labels: [
            { name: 'cheer', description: 'glad' },
            { name: 'gloom', description: 'sad, angry and sorry' },
            { name: 'mixed', description: 'wonderful but awful and bad', threshold: 0.6 },
          ],
          multi_label: { format: 'per_label', answers: { yes: 'positive', no: 'negative' } },
        },
        {
          name: 'topics',
          type: 'multi_label',
          question: 'Which topics?',
          labels: [
            { name: 'work', answer: 'positive' },
            { name: 'home', answer: 'negative' },
            { name: 'play', answer: 'neutral' },
          ],
          multi_label: { format: 'list', max_labels: 2, quote: 'none' },
        },
      ],
      prompt: { template: 'Tweet: {text}\n\n{question} Answer.' },
      model: { path: model, max_document_tokens: 64, threads: 2 },
      fallback: fallbackSection(server.baseUrl, {
        // moods: a label's P(yes) within 0.2 of its threshold, or little mass on yes/no; topics: unscored mass.
        routing: { margin_below: 0.2, label_mass_below: 0.5 },
        questions: { topics: { routing: { unscored_mass_above: 1e-6 } } },
        invalid_retries: 1,
      }),
    }),
  );
  return { codebook, input };
}

const COLUMNS =
  'id::INT AS id, source, moods__labels AS ml, moods__local_labels AS mll, moods__source AS ms, ' +
  'moods__fallback_labels AS mfl, moods__fallback_status AS mf, moods__fallback_error AS me, ' +
  'moods__fallback_confidence AS mc, moods__confidence AS mconf, moods__margin AS mmargin, moods__p_cheer AS p0, ' +
  'moods__p_gloom AS p1, moods__p_mixed AS p2, moods__label_mass AS mmass, topics__labels AS tl, ' +
  'topics__local_labels AS tll, topics__source AS ts, topics__fallback_labels AS tfl, topics__fallback_status AS tf, ' +
  'topics__set_probability AS tsp, topics__confidence AS tconf, topics__unscored_mass AS tu';

async function read(file: string): Promise<Record<string, unknown>[]> {
  return queryDuckDB(`SELECT ${COLUMNS} FROM read_parquet('${sqlString(file)}') ORDER BY id`);
}

describe('runLocal with the fallback and multi-label questions', () => {
  it('asks unsure multi-label questions for label lists, retries invalid lists, and replaces __labels', async () => {
    await withTempDir(async (dir) => {
      const files = await setup(dir);
      const env = { [KEY_VARIABLE]: server.apiKey };
      const output = path.join(dir, 'out', 'results.parquet');
      const before = server.requests.length;
      const summary = await runLocalMode({ ...files, input: [files.input], output, shardRows: 8, env });
      const sent = server.requests.slice(before);
      // One request per routed document, plus one correction each for the meeting, "good" and "great".
      assert.equal(sent.length, MOODS_ROUTED.length + 3);
      const stats = summary.fallback.active ? summary.fallback.stats : null;
      assert.deepEqual(
        [stats?.routed, stats?.answered, stats?.invalid, stats?.requests],
        [MOODS_ROUTED.length + TOPICS_ROUTED.length, 4, 1, MOODS_ROUTED.length + 3],
      );

      const meeting = sent.find((r) => requestOf(r).tweet === TWEETS[1] && requestOf(r).round === 1);
      assert.deepEqual(meeting?.body.response_format, {
        type: 'json_schema',
        json_schema: {
          name: 'labels',
          strict: true,
          schema: {
            type: 'object',
            properties: {
              moods: { type: 'array', items: { type: 'string', enum: ['cheer', 'gloom', 'mixed'] }, uniqueItems: true },
              topics: {
                type: 'array',
                items: { type: 'string', enum: ['positive', 'negative', 'neutral'] },
                uniqueItems: true,
                minItems: 1,
                maxItems: 2,
              },
            },
            required: ['moods', 'topics'],
            additionalProperties: false,
          },
        },
      });
      // The document once, then each question asked for the list of its labels that apply (the per_label one with
      // each label's question saying what the label means), not in the local template's words ("… Answer.").
      assert.equal(
        meeting?.user,
        'Tweet: The meeting is at 3pm in room 12\n\nAnswer each question:\n\n' +
          'moods: Which of these labels apply?\n- cheer: Does the tweet feel glad?\n' +
          '- gloom: Does the tweet feel sad, angry and sorry?\n' +
          '- mixed: Does the tweet feel wonderful but awful and bad?\n' +
          'Answer with the list of the labels that apply.\n\n' +
          'topics: Which topics? Answer with the list of the labels that apply, from: "positive", "negative", ' +
          '"neutral".\n\n' +
          'Answer with a JSON object {"moods": ["<label>", ...], "topics": ["<label>", ...]} where moods is a list ' +
          'of the labels that apply, each at most once ([] when none applies), from: "cheer", "gloom", "mixed"; ' +
          'topics is a list of the labels that apply, each at most once (at least 1, at most 2), from: "positive", ' +
          '"negative", "neutral".',
      );
      // Documents routed for moods only are asked moods only.
      const good = sent.filter((r) => requestOf(r).tweet === 'good');
      assert.deepEqual(Object.keys(good[0]?.body.response_format?.json_schema?.schema?.properties ?? {}), ['moods']);
      assert.match(good[1]?.user ?? '', /The answer for moods is not a list of distinct allowed labels\./);

      const rows = await read(output);
      const byId = new Map(rows.map((r) => [Number(r.id), r]));
      const row = (id: number): Record<string, unknown> => byId.get(id) as Record<string, unknown>;
      // The fallback's sets replace __labels, in codebook order; the local sets are kept beside them.
      assert.deepEqual([row(2).ml, row(2).ms, row(2).mf, row(2).mfl], [['gloom'], 'fallback', 'ok', ['gloom']]);
      assert.deepEqual(
        [row(2).tl, row(2).ts, row(2).tf, row(2).tfl],
        [['work', 'home'], 'fallback', 'ok', ['work', 'home']],
      );
      assert.deepEqual([row(6).ml, row(6).ms, row(6).mf], [['cheer', 'mixed'], 'fallback', 'ok']);
      assert.deepEqual([row(8).ml, row(8).ms, row(8).mf, row(8).mfl], [[], 'fallback', 'ok', []]);
      // A label outside the set after the correction: fallback_invalid, the local set stays.
      assert.deepEqual([row(7).ms, row(7).mf, row(7).mfl], ['local', 'fallback_invalid', null]);
      assert.match(String(row(7).me), /outside its label set \(2 requests\)/);
      assert.equal(typeof row(2).mc, 'number', 'the fallback confidence from the logprobs');
      // The routing rules on the local columns (which stay the local model's): exactly these questions were asked.
      const unsure = (test: (r: Record<string, unknown>) => boolean): number[] =>
        rows.filter(test).map((r) => Number(r.id));
      assert.deepEqual(
        unsure((r) => (r.mmargin as number) < 0.2 || (r.mmass as number) < 0.5),
        MOODS_ROUTED,
      );
      assert.deepEqual(
        unsure((r) => r.mf !== null),
        MOODS_ROUTED,
      );
      assert.deepEqual(
        unsure((r) => (r.tu as number) > 1e-6),
        TOPICS_ROUTED,
      );
      assert.deepEqual(
        unsure((r) => r.tf !== null),
        TOPICS_ROUTED,
      );
      assert.deepEqual(row(2).tll, ['home'], "the local model's most probable set");
      const thresholds = [0.5, 0.5, 0.6];
      for (const r of rows) {
        const id = Number(r.id);
        assert.equal(r.source, [2, 6, 8].includes(id) ? 'fallback' : 'local', `row ${id} source`);
        // The probabilities are the local model's: its set is the labels at their thresholds, whatever was answered.
        const local = ['cheer', 'gloom', 'mixed'].filter((_, j) => (r[`p${j}`] as number) >= (thresholds[j] as number));
        assert.deepEqual(r.mll, local, `row ${id} local labels`);
        if (r.ms === 'local') assert.deepEqual(r.ml, r.mll, `row ${id} keeps its local moods`);
        if (r.ts === 'local') assert.deepEqual(r.tl, r.tll, `row ${id} keeps its local topics`);
        assert.equal(r.tsp, r.tconf, `row ${id} set probability is the local confidence`);
      }

      const manifest = JSON.parse(await readFile(summary.manifest, 'utf8')) as {
        merge: { fallbackStatusCounts: object; sourceCounts: object };
      };
      assert.deepEqual(manifest.merge.sourceCounts, { local: 5, fallback: 3 });
      assert.deepEqual(manifest.merge.fallbackStatusCounts, {
        ok: 4,
        fallback_invalid: 1,
        over_budget: 0,
        fallback_failed: 0,
      });
      const audit = await auditRecords(`${output}.fallback-audit.jsonl`);
      // Invalid: the first answers for the meeting and "good", both for "great"; the rest answer every question.
      const outcomes = audit.filter((r) => r.event === 'call').map((r) => String(r.outcome));
      assert.deepEqual(outcomes.sort(), [...Array(4).fill('invalid_label'), ...Array(3).fill('label')]);

      // Offline, from the cache: the same bytes.
      const first = await readFile(output);
      await runLocalMode({
        ...files,
        input: [files.input],
        output,
        shardRows: 8,
        env: {},
        fallbackOffline: true,
        overwrite: true,
      });
      assert.equal(server.requests.length - before, sent.length, 'the replay sends nothing');
      assert.ok((await readFile(output)).equals(first), 'offline replay differs');

      // `rescale batch submit` into a fresh output uploads exactly the first requests the live run sent (so their
      // answers land under the same cache keys), one per routed document with its unsure questions.
      const submitted = await submitFallbackBatch({
        ...files,
        input: [files.input],
        output: path.join(dir, 'batch', 'results.parquet'),
        shardRows: 8,
        env,
      });
      assert.equal(submitted.submitted, MOODS_ROUTED.length);
      const canonical = (body: unknown): string => JSON.stringify(body);
      assert.deepEqual(
        (server.batches.at(-1)?.lines ?? []).map((line) => canonical(line.body)).sort(),
        sent
          .filter((r) => requestOf(r).round === 1)
          .map((r) => canonical(r.body))
          .sort(),
      );
    });
  });
});
