// The fallback through the Batch API, end to end against the loopback server's Batch API: `batch submit` scores
// locally and uploads exactly the requests the live run would send; `batch collect` reads both the output and the
// error file, caches the answers and reports failed and missing items, which the next `rescale run` sends live —
// nothing lost, nothing paid twice, the batch billed at its discount, the budget reserved before upload.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { submitFallbackBatch } from '../../../cli/fallback-batch.js';
import { runLocalMode } from '../../../cli/local-mode.js';
import { isRescaleError } from '../../../contracts/errors.js';
import { readLedger } from '../../../fallback/audit-log.js';
import { collectFallbackBatches } from '../../../fallback/batch/batch-collect.js';
import { parseBatchResults } from '../../../fallback/batch/batch-api.js';
import { auditRecords, fallbackSection, filesContaining, writeSentimentStudy } from '../../helpers/fallback.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';
import { dummyApiKey, keywordLabel, OpenAIServer } from '../../helpers/openai-server.js';
import { queryDuckDB, sqlString, withTempDir } from '../../../scripts/harness/parquet.js';

const KEY_VARIABLE = 'RESCALE_TEST_FALLBACK_KEY';
/** 40 tweets; the fixture model is unsure (0.45) about the ten "hmm maybe tomorrow" ones. */
const CORPUS_SQL =
  `SELECT i::BIGINT AS id, CASE i % 4 WHEN 0 THEN 'I love this great day ' || i ` +
  `WHEN 1 THEN 'what a terrible awful thing ' || i
  WHEN 2 THEN 'the meeting is scheduled ' || i ELSE 'hmm maybe tomorrow ' || i END AS text FROM range(40) t(i)`;
const PRICE = { input_per_million: 2.5, output_per_million: 10 };

let server: OpenAIServer;
let model: string;

before(async () => {
  // Items 1 and 2 of every batch fail (error file, 500 in the output file); item 3 gets no result at all.
  server = await OpenAIServer.start({
    label: (user) => (/maybe tomorrow/.test(user) ? 'positive' : keywordLabel(user)),
    batchFault: (_id, index) =>
      index === 1 ? 'error_file' : index === 2 ? 'server_error' : index === 3 ? 'missing' : null,
    batchPolls: 1,
  });
  model = await fixtureModel('keyword');
});
after(async () => {
  await server.close();
});

function setup(dir: string, fallback: object): Promise<{ codebook: string; input: string; output: string }> {
  return writeSentimentStudy(dir, model, CORPUS_SQL, fallback);
}

describe('the fallback through the Batch API', () => {
  it('caches the batch’s answers, reports failed and missing items, and the run sends only those live', async () => {
    await withTempDir(async (dir) => {
      const files = await setup(dir, fallbackSection(server.baseUrl, { price: PRICE }));
      const env = { [KEY_VARIABLE]: server.apiKey };
      const liveBefore = server.requests.length;

      const submitted = await submitFallbackBatch({ ...files, input: [files.input], shardRows: 16, env });
      assert.deepEqual(
        {
          routed: submitted.routed,
          cached: submitted.cached,
          submitted: submitted.submitted,
          leftOut: submitted.leftOut,
        },
        { routed: 10, cached: 0, submitted: 10, leftOut: 0 },
      );
      assert.ok(submitted.batch !== null);
      assert.equal(server.requests.length, liveBefore, 'nothing sent live');
      const batch = server.batches.at(-1);
      assert.equal(batch?.lines.length, 10);
      assert.ok(
        batch?.lines.every((l) => /maybe tomorrow/.test(JSON.stringify(l.body.messages))),
        'only routed documents are in the batch',
      );
      const reserves = (await auditRecords(`${files.output}.fallback-audit.jsonl`)).filter(
        (r) => r.event === 'reserve',
      );
      assert.equal(reserves.length, 10, 'every request reserved in the ledger before the upload');
      await assert.rejects(submitFallbackBatch({ ...files, input: [files.input], shardRows: 16, env }), (error) =>
        isRescaleError(error, 'RUN_CONFLICT'),
      );

      // First look: still running.
      const early = await collectFallbackBatches({ ...files, env });
      assert.equal(early.pending, 1);
      assert.equal(early.answered, 0);
      const collected = await collectFallbackBatches({ ...files, env, wait: true, pollMs: 10 });
      assert.deepEqual(
        {
          answered: collected.answered,
          failed: collected.failed,
          missing: collected.missing,
          pending: collected.pending,
        },
        { answered: 7, failed: 2, missing: 1, pending: 0 },
      );
      assert.equal(
        Object.values(collected.reasons).reduce((a, b) => a + b, 0),
        2,
      );
      assert.ok(Object.keys(collected.reasons).some((r) => /batch_expired/.test(r)));
      assert.ok(Object.keys(collected.reasons).some((r) => /HTTP 500/.test(r)));

      // Billed at half price: the ledger holds the batch answers' usage x price x 0.5, the rest released.
      const calls = (await auditRecords(`${files.output}.fallback-audit.jsonl`)).filter((r) => r.event === 'call');
      assert.equal(calls.length, 10);
      const answeredCalls = calls.filter((r) => r.outcome === 'label');
      assert.equal(answeredCalls.length, 7);
      for (const call of answeredCalls) {
        const expected =
          (((call.prompt_tokens as number) * PRICE.input_per_million +
            (call.completion_tokens as number) * PRICE.output_per_million) *
            0.5) /
          1e6;
        assert.ok(
          Math.abs((call.cost_usd as number) - expected) < 1e-9,
          `cost ${String(call.cost_usd)} vs ${expected}`,
        );
        assert.equal(typeof call.document_id, 'string', 'the call line names its document');
      }
      assert.ok(calls.filter((r) => r.outcome !== 'label').every((r) => r.cost_usd === 0));
      const ledger = await readLedger(`${files.output}.fallback-audit.jsonl`);
      assert.ok(Math.abs(ledger.nanoUsd / 1e9 - answeredCalls.reduce((n, r) => n + (r.cost_usd as number), 0)) < 1e-9);

      // The run: 7 answers from the cache, the 3 failed or missing ones live; every routed document answered.
      const summary = await runLocalMode({ ...files, input: [files.input], shardRows: 16, env });
      assert.equal(server.requests.length - liveBefore, 3);
      assert.ok(summary.fallback.active);
      assert.equal(summary.fallback.active && summary.fallback.stats?.cacheHits, 7);
      assert.equal(summary.fallback.active && summary.fallback.stats?.answered, 10);
      const rows = await queryDuckDB(
        `SELECT id::INT AS id, label, source, fallback_status ` +
          `FROM read_parquet('${sqlString(files.output)}') WHERE fallback_status IS NOT NULL ORDER BY id`,
      );
      assert.equal(rows.length, 10);
      assert.ok(rows.every((r) => r.label === 'positive' && r.source === 'fallback' && r.fallback_status === 'ok'));

      // Nothing left to submit; the key is in no file.
      const again = await submitFallbackBatch({ ...files, input: [files.input], shardRows: 16, env });
      assert.deepEqual(
        { cached: again.cached, submitted: again.submitted, batch: again.batch },
        { cached: 10, submitted: 0, batch: null },
      );
      assert.deepEqual(await filesContaining(dir, server.apiKey), []);
    });
  });

  it(
    'submits only what the budget covers at the batch price, ' +
      'and releases the reservations of a batch the endpoint refused',
    async () => {
      await withTempDir(async (dir) => {
        const files = await setup(dir, fallbackSection(server.baseUrl, { price: PRICE, budget: { requests: 4 } }));
        const capped = await submitFallbackBatch({
          ...files,
          input: [files.input],
          shardRows: 16,
          env: { [KEY_VARIABLE]: server.apiKey },
        });
        assert.deepEqual({ submitted: capped.submitted, leftOut: capped.leftOut }, { submitted: 4, leftOut: 6 });

        const wrong = dummyApiKey();
        const other = path.join(dir, 'other');
        await mkdir(other);
        const refused = await setup(other, fallbackSection(server.baseUrl, { price: PRICE }));
        await assert.rejects(
          submitFallbackBatch({ ...refused, input: [refused.input], shardRows: 16, env: { [KEY_VARIABLE]: wrong } }),
          (error) => {
            assert.ok(isRescaleError(error, 'FALLBACK_REJECTED'));
            assert.ok(!error.message.includes(wrong), 'the error quotes the key');
            assert.match(error.message, /fallback\.base_url/);
            return true;
          },
        );
        assert.deepEqual(
          await readLedger(`${refused.output}.fallback-audit.jsonl`),
          { nanoUsd: 0, requests: 0 },
          'reservations released: nothing counted as spent or sent',
        );
        assert.deepEqual(await filesContaining(dir, wrong), []);
      });
    },
  );
});

describe('parseBatchResults', () => {
  it('keeps only the status, code and type of a failed item, never the free text (which may quote the prompt)', () => {
    const quoted = 'Tweet: my secret diary entry';
    const text = [
      JSON.stringify({
        custom_id: 'a',
        response: {
          status_code: 400,
          body: { error: { message: `bad input: ${quoted}`, type: 'invalid_request_error', code: 'bad_input' } },
        },
        error: null,
      }),
      JSON.stringify({ custom_id: 'b', response: null, error: { code: 'batch_expired', message: quoted } }),
      JSON.stringify({ custom_id: 'c', response: null, error: { code: `${quoted} `.repeat(20), message: quoted } }),
    ].join('\n');
    const { lines } = parseBatchResults(text);
    assert.deepEqual(
      lines.map((line) => line.error),
      ['HTTP 400 code=bad_input type=invalid_request_error', 'error code=batch_expired', 'error'],
    );
  });
});
