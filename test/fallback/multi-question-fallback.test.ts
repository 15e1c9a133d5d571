// End to end: a three-question codebook on the keyword fixture model with the fallback against the loopback server.
// A document's unsure questions go to the closed model in one request (a JSON schema with a property per question),
// the other questions keep the local answer, each question says who answered it, a re-run and an offline replay are
// byte-identical, and the budget counts one request per document.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { runLocalMode } from '../../cli/local-mode.js';
import { auditRecords, fallbackSection } from '../helpers/fallback.js';
import { fixtureModel } from '../../scripts/harness/fixture-models.js';
import { keywordLabel, OpenAIServer } from '../helpers/openai-server.js';
import {
  duckDBTypes,
  queryDuckDB,
  sqlString,
  withTempDir,
  writeParquetWithDuckDB,
} from '../../scripts/harness/parquet.js';

const KEY_VARIABLE = 'RESCALE_TEST_FALLBACK_KEY';
/** 12 tweets: the keyword model is sure of "love" and "awful" ones, unsure of "maybe tomorrow" (ids 2, 5, 8, 11). */
const CORPUS_SQL =
  `SELECT i::BIGINT AS id, CASE i % 3 WHEN 0 THEN 'I love this great day ' || i ` +
  `WHEN 1 THEN 'what a terrible awful thing ' || i ELSE 'hmm maybe tomorrow ' || i END AS text FROM range(12) t(i)`;
const UNSURE = [2, 5, 8, 11];

let server: OpenAIServer;
let model: string;

before(async () => {
  // The closed model reads the unsure tweets as positive on every question it is asked.
  server = await OpenAIServer.start({
    label: (user) => (/maybe tomorrow/.test(user) ? 'positive' : keywordLabel(user)),
  });
  model = await fixtureModel('keyword');
});
after(async () => {
  await server.close();
});

async function setup(dir: string, fallback: object): Promise<{ codebook: string; input: string; output: string }> {
  const input = await writeParquetWithDuckDB(CORPUS_SQL, path.join(dir, 'tweets.parquet'));
  const codebook = path.join(dir, 'multi.codebook.yaml');
  await writeFile(
    codebook,
    stringify({
      task: 'multi',
      input: { text_column: 'text', id_column: 'id' },
      questions: [
        {
          name: 'sentiment',
          question: 'What is the sentiment of the tweet?',
          labels: [{ name: 'negative' }, { name: 'neutral' }, { name: 'positive' }],
        },
        {
          name: 'polarity',
          question: 'Is the tweet rather negative or rather positive?',
          labels: [{ name: 'negative' }, { name: 'positive' }],
        },
        {
          name: 'mood',
          question: 'Is the author in a bad or a good mood?',
          labels: [{ name: 'negative' }, { name: 'positive' }],
        },
      ],
      prompt: {
        format: 'chat',
        system: 'You are a careful annotator.',
        template: 'Tweet: {text}\n\n{question} Answer with one of: {labels}.',
      },
      model: { path: model, threads: 1 },
      fallback,
    }),
  );
  return { codebook, input, output: path.join(dir, 'out', 'results.parquet') };
}

/** The default rules route sentiment; polarity has its own; mood is never routed. */
function section(extra: object = {}): object {
  return fallbackSection(server.baseUrl, {
    routing: { confidence_below: 0.6 },
    questions: { polarity: { routing: { confidence_below: 0.55 } }, mood: { enabled: false } },
    ...extra,
  });
}

describe('runLocal with the fallback and several questions', () => {
  it('asks each document its unsure questions in one request and marks per question who answered', async () => {
    await withTempDir(async (dir) => {
      const files = await setup(dir, section());
      const env = { [KEY_VARIABLE]: server.apiKey };
      const before = server.requests.length;
      const summary = await runLocalMode({ ...files, input: [files.input], shardRows: 5, env });
      const sent = server.requests.slice(before);
      assert.equal(sent.length, UNSURE.length, 'one request per unsure document');
      assert.ok(summary.fallback.active);
      const stats = summary.fallback.active ? summary.fallback.stats : null;
      assert.deepEqual(
        [stats?.routed, stats?.answered, stats?.requests],
        [2 * UNSURE.length, 2 * UNSURE.length, UNSURE.length],
      );

      for (const request of sent) {
        assert.deepEqual(request.body.response_format, {
          type: 'json_schema',
          json_schema: {
            name: 'labels',
            strict: true,
            schema: {
              type: 'object',
              properties: {
                sentiment: { type: 'string', enum: ['negative', 'neutral', 'positive'] },
                polarity: { type: 'string', enum: ['negative', 'positive'] },
              },
              required: ['sentiment', 'polarity'],
              additionalProperties: false,
            },
          },
        });
        // The document once, then each asked question (never the unrouted one).
        assert.equal(request.user.match(/maybe tomorrow/g)?.length, 1);
        assert.match(request.user, /sentiment: What is the sentiment of the tweet\? Answer with one of: negative,/);
        assert.match(request.user, /polarity: Is the tweet rather negative or rather positive\?/);
        assert.doesNotMatch(request.user, /mood/);
      }

      const types = await duckDBTypes(files.output);
      const columns = Object.keys(types);
      for (const name of ['sentiment', 'polarity']) {
        const group = ['source', 'local_label', 'fallback_label', 'fallback_confidence', 'fallback_status'];
        for (const column of group) assert.ok(columns.includes(`${name}__${column}`), `${name}__${column}`);
      }
      assert.ok(!columns.some((c) => c.startsWith('mood__') && c.endsWith('source')), 'mood is never routed');
      assert.ok(!columns.includes('fallback_status'));

      const rows = await queryDuckDB(
        `SELECT id::INT AS id, source, sentiment__label AS s, sentiment__local_label AS sl, ` +
          `sentiment__source AS ss, sentiment__fallback_status AS sf, polarity__label AS p, ` +
          `polarity__local_label AS pl, polarity__source AS ps, mood__label AS m ` +
          `FROM read_parquet('${sqlString(files.output)}') ORDER BY id`,
      );
      for (const row of rows) {
        if (UNSURE.includes(Number(row.id))) {
          assert.deepEqual(
            [row.source, row.s, row.sl, row.ss, row.sf, row.p, row.pl, row.ps],
            ['fallback', 'positive', 'neutral', 'fallback', 'ok', 'positive', row.pl, 'fallback'],
            `row ${String(row.id)}`,
          );
          assert.notEqual(row.pl, null);
        } else {
          assert.deepEqual([row.source, row.ss, row.sf, row.ps], ['local', 'local', null, 'local']);
          assert.equal(row.sl, row.s);
        }
        assert.notEqual(row.m, null, 'the unrouted question keeps its local answer');
      }

      const manifest = JSON.parse(await readFile(summary.manifest, 'utf8')) as {
        merge: { fallbackStatusCounts: object; sourceCounts: object };
      };
      assert.deepEqual(manifest.merge.sourceCounts, { local: 12 - UNSURE.length, fallback: UNSURE.length });
      assert.deepEqual(manifest.merge.fallbackStatusCounts, {
        ok: 2 * UNSURE.length,
        fallback_invalid: 0,
        over_budget: 0,
        fallback_failed: 0,
      });
      const audit = await auditRecords(`${files.output}.fallback-audit.jsonl`);
      assert.equal(audit.filter((r) => r.event === 'call').length, UNSURE.length);
      assert.ok(audit.filter((r) => r.event === 'call').every((r) => r.outcome === 'label'));
      const first = await readFile(files.output);

      // Again from scratch: every answer from the cache, the same bytes; then offline, the same bytes.
      const rerun = await runLocalMode({ ...files, input: [files.input], shardRows: 5, env, overwrite: true });
      assert.equal(server.requests.length - before, UNSURE.length, 'a re-run sends nothing');
      assert.equal(rerun.fallback.active && rerun.fallback.stats?.cacheHits, UNSURE.length);
      assert.ok((await readFile(files.output)).equals(first), 're-run output differs');
      await runLocalMode({
        ...files,
        input: [files.input],
        shardRows: 5,
        env: {},
        fallbackOffline: true,
        overwrite: true,
      });
      assert.ok((await readFile(files.output)).equals(first), 'offline replay differs');
    });
  });

  it('counts one request per document against the budget', async () => {
    await withTempDir(async (dir) => {
      const files = await setup(dir, section({ budget: { requests: 3 } }));
      const env = { [KEY_VARIABLE]: server.apiKey };
      const before = server.requests.length;
      const summary = await runLocalMode({ ...files, input: [files.input], shardRows: 12, env });
      assert.equal(server.requests.length - before, 3);
      const stats = summary.fallback.active ? summary.fallback.stats : null;
      assert.deepEqual([stats?.requests, stats?.answered, stats?.overBudget], [3, 6, 2]);
      const rows = await queryDuckDB(
        `SELECT sentiment__fallback_status AS s, polarity__fallback_status AS p, count(*)::INT AS n ` +
          `FROM read_parquet('${sqlString(files.output)}') WHERE id % 3 = 2 GROUP BY ALL ORDER BY ALL`,
      );
      assert.deepEqual(
        rows.map((r) => [r.s, r.p, r.n]),
        [
          ['ok', 'ok', 3],
          ['over_budget', 'over_budget', 1],
        ],
      );
    });
  });
});
