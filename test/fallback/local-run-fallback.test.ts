// End to end: `runLocal` on a DuckDB-written Parquet with the keyword fixture model, the fallback enabled against
// the loopback server. Unsure documents get the fallback's label, a re-run pays nothing, an offline replay is
// byte-identical, --no-fallback and a missing key leave local labels only, and the key is in no file or log line.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runLocalMode } from '../../cli/local-mode.js';
import { isRescaleError } from '../../contracts/errors.js';
import {
  auditRecords,
  capturingLogger,
  fallbackSection,
  filesContaining,
  writeSentimentStudy,
} from '../helpers/fallback.js';
import { fixtureModel } from '../../scripts/harness/fixture-models.js';
import { keywordLabel, OpenAIServer } from '../helpers/openai-server.js';
import { queryDuckDB, sqlString, withTempDir } from '../../scripts/harness/parquet.js';

const KEY_VARIABLE = 'RESCALE_TEST_FALLBACK_KEY';
/** 20 tweets: three in four carry a keyword the fixture model is sure about; "maybe tomorrow" ones it is not (0.45). */
const CORPUS_SQL =
  `SELECT i::BIGINT AS id, CASE i % 4 WHEN 0 THEN 'I love this great day ' || i ` +
  `WHEN 1 THEN 'what a terrible awful thing ' || i
  WHEN 2 THEN 'the meeting is scheduled ' || i ELSE 'hmm maybe tomorrow ' || i END AS text FROM range(20) t(i)`;

let server: OpenAIServer;
let model: string;

before(async () => {
  // The closed model reads the unsure tweets as positive, so a fallback answer is visible in the output.
  server = await OpenAIServer.start({
    label: (user) => (/maybe tomorrow/.test(user) ? 'positive' : keywordLabel(user)),
  });
  model = await fixtureModel('keyword');
});
after(async () => {
  await server.close();
});

function setup(dir: string, fallback: object): Promise<{ codebook: string; input: string; output: string }> {
  return writeSentimentStudy(dir, model, CORPUS_SQL, fallback);
}

describe('runLocal with the fallback', () => {
  it(
    'routes unsure documents to the fallback, writes both opinions, ' +
      'pays nothing twice and replays offline bit for bit',
    async () => {
      await withTempDir(async (dir) => {
        const files = await setup(dir, fallbackSection(server.baseUrl, { routing: { confidence_below: 0.6 } }));
        const env = { [KEY_VARIABLE]: server.apiKey };
        const { logger, lines } = capturingLogger();
        const before = server.requests.length;
        const summary = await runLocalMode({ ...files, input: [files.input], shardRows: 8, env, logger });
        assert.equal(summary.rows, 20);
        assert.ok(summary.fallback.active);
        assert.equal(summary.fallback.active && summary.fallback.stats?.routed, 5);
        assert.equal(summary.fallback.active && summary.fallback.stats?.answered, 5);
        assert.equal(server.requests.length - before, 5);

        const file = sqlString(files.output);
        const rows = await queryDuckDB(
          `SELECT id::INT AS id, label, local_label, round(local_confidence, 3) AS lc, ` +
            `round(confidence, 3) AS c, source,
        fallback_label, round(fallback_confidence, 6) AS fc, fallback_status, fallback_error ` +
            `FROM read_parquet('${file}') ORDER BY id`,
        );
        assert.equal(rows.length, 20);
        for (const row of rows) {
          assert.equal(row.lc, row.c, 'local_confidence is the local model’s confidence');
          if (Number(row.id) % 4 === 3) {
            assert.deepEqual(
              {
                label: row.label,
                local: row.local_label,
                source: row.source,
                fallback: row.fallback_label,
                status: row.fallback_status,
                fc: row.fc,
              },
              {
                label: 'positive',
                local: 'neutral',
                source: 'fallback',
                fallback: 'positive',
                status: 'ok',
                fc: Number(Math.exp(-0.1).toFixed(6)),
              },
            );
          } else {
            assert.equal(row.local_label, row.label);
            assert.equal(row.source, 'local');
            assert.deepEqual(
              [row.fallback_label, row.fc, row.fallback_status, row.fallback_error],
              [null, null, null, null],
            );
          }
        }
        const manifest = JSON.parse(await readFile(summary.manifest, 'utf8')) as {
          fallback: { active: boolean; mode: string };
          merge: { fallbackStatusCounts: object; sourceCounts: object };
        };
        assert.deepEqual([manifest.fallback.active, manifest.fallback.mode], [true, 'live']);
        assert.deepEqual(manifest.merge.fallbackStatusCounts, {
          ok: 5,
          fallback_invalid: 0,
          over_budget: 0,
          fallback_failed: 0,
        });
        assert.deepEqual(manifest.merge.sourceCounts, { local: 15, fallback: 5 });
        const audit = await auditRecords(`${files.output}.fallback-audit.jsonl`);
        assert.equal(audit.filter((r) => r.event === 'call').length, 5);
        const firstBytes = await readFile(files.output);

        // The same run again from scratch: every answer from the cache.
        const rerun = await runLocalMode({
          ...files,
          input: [files.input],
          shardRows: 8,
          env,
          logger,
          overwrite: true,
        });
        assert.equal(server.requests.length - before, 5, 'a re-run sends nothing');
        assert.equal(rerun.fallback.active && rerun.fallback.stats?.cacheHits, 5);
        assert.ok((await readFile(files.output)).equals(firstBytes), 're-run output differs');

        // Offline replay: no key in the environment, no network.
        const replay = await runLocalMode({
          ...files,
          input: [files.input],
          shardRows: 8,
          env: {},
          fallbackOffline: true,
          logger,
          overwrite: true,
        });
        assert.equal(replay.fallback.active && replay.fallback.mode, 'offline');
        assert.equal(server.requests.length - before, 5);
        assert.ok((await readFile(files.output)).equals(firstBytes), 'offline replay differs');

        assert.deepEqual(await filesContaining(dir, server.apiKey), []);
        assert.equal(lines.filter((line) => line.includes(server.apiKey)).length, 0);
        assert.ok(
          lines.some((line) => line.includes('fallback on') && line.includes(`environment variable ${KEY_VARIABLE}`)),
        );
      });
    },
  );

  it('stays local with --no-fallback or without a key, with the fallback columns null', async () => {
    await withTempDir(async (dir) => {
      const files = await setup(dir, fallbackSection(server.baseUrl));
      const before = server.requests.length;
      const off = await runLocalMode({
        ...files,
        input: [files.input],
        env: { [KEY_VARIABLE]: server.apiKey },
        noFallback: true,
      });
      assert.deepEqual(off.fallback, { active: false, reason: 'disabled with --no-fallback' });
      const { logger, lines } = capturingLogger();
      const noKey = await runLocalMode({ ...files, input: [files.input], env: {}, logger, overwrite: true });
      assert.deepEqual(noKey.fallback, {
        active: false,
        reason: `no API key: environment variable ${KEY_VARIABLE} is not set`,
      });
      assert.ok(lines.some((line) => line.includes('"level":"warn"') && line.includes('fallback off')));
      assert.equal(server.requests.length, before);
      const [stats] = await queryDuckDB(
        `SELECT count(*)::INT AS n, count(fallback_status)::INT AS routed, ` +
          `count(*) FILTER (WHERE source = 'local')::INT AS local,
        count(*) FILTER (WHERE local_label IS NOT DISTINCT FROM label)::INT AS same ` +
          `FROM read_parquet('${sqlString(files.output)}')`,
      );
      assert.deepEqual(stats, { n: 20, routed: 0, local: 20, same: 20 });
    });
  });

  it(
    'keeps every routed document when the budget runs out, ' +
      'and stops on a wrong key with exit-code error FALLBACK_AUTH',
    async () => {
      await withTempDir(async (dir) => {
        const files = await setup(dir, fallbackSection(server.baseUrl, { budget: { requests: 3 }, concurrency: 1 }));
        const summary = await runLocalMode({
          ...files,
          input: [files.input],
          shardRows: 8,
          env: { [KEY_VARIABLE]: server.apiKey },
        });
        assert.equal(summary.rows, 20);
        assert.deepEqual(summary.merge.fallbackStatusCounts, {
          ok: 3,
          fallback_invalid: 0,
          over_budget: 2,
          fallback_failed: 0,
        });
        const wrong = 'sk-test-not-the-right-key-42';
        // A new output (the budget ledger is per output, and this one is spent): the first request is refused.
        await assert.rejects(
          runLocalMode({
            ...files,
            input: [files.input],
            output: path.join(dir, 'out2', 'results.parquet'),
            shardRows: 8,
            env: { [KEY_VARIABLE]: wrong },
          }),
          (error: unknown) =>
            isRescaleError(error, 'FALLBACK_AUTH') &&
            error.message.includes(KEY_VARIABLE) &&
            !error.message.includes(wrong),
        );
        assert.deepEqual(await filesContaining(dir, wrong), []);
      });
    },
  );
});
