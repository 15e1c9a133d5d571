// Cluster mode with the fallback on a codebook asked by question (a single-label and a per_label multi-label
// question), end to end with real processes: a redis-server, `rescale coordinator` (the only one with the key) and a
// `rescale worker` on the keyword fixture model, against the loopback server. The worker routes each document's
// unsure questions into one job; the coordinator asks them in one request; the output is the bytes local mode writes.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { runLocalMode } from '../../../cli/local-mode.js';
import type { ControlClient } from '../../../cli/control-client.js';
import {
  client,
  clusterFixture,
  startCoordinator,
  startWorker,
  type ClusterFixture,
  type CoordinatorProcess,
  type ServiceProcess,
} from '../../../scripts/harness/cluster.js';
import { endpointSection } from '../../helpers/fallback.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';
import { keywordLabel, OpenAIServer } from '../../helpers/openai-server.js';
import { queryDuckDB, sqlString } from '../../../scripts/harness/parquet.js';
import { startRedisServer, type RedisServerHandle } from '../../../scripts/harness/redis-server.js';

const KEY_VARIABLE = 'RESCALE_TEST_FALLBACK_KEY';
const ROWS = 24;
const SHARD_ROWS = 8;

describe('cluster mode with the fallback and a multi-label question', () => {
  let fixture: ClusterFixture;
  let redis: RedisServerHandle;
  let server: OpenAIServer;
  let coordinator: CoordinatorProcess;
  let worker: ServiceProcess;
  let control: ControlClient;
  let keyDir: string;

  before(async () => {
    fixture = await clusterFixture(ROWS, { rowGroupRows: SHARD_ROWS });
    redis = await startRedisServer();
    // The closed model reads the unsure tweets as positive and both cheerful and gloomy.
    server = await OpenAIServer.start({
      answer: (property, user) => {
        const unsure = /not sure/.test(user);
        if (property === 'moods') return unsure ? ['gloom', 'cheer'] : ['cheer'];
        return unsure ? 'positive' : keywordLabel(user);
      },
    });
    keyDir = await mkdtemp(path.join(tmpdir(), 'rescale-endpoint-key-'));
    coordinator = await startCoordinator(redis.url, fixture, ['--endpoints', await writeEndpoints(keyDir)], 0, {
      [KEY_VARIABLE]: server.apiKey,
    });
    worker = await startWorker(redis.url, 'w1');
    control = client(coordinator, fixture);
  });

  after(async () => {
    control?.close();
    await Promise.all([worker?.stop(), coordinator?.stop()]);
    await server?.close();
    await redis?.stop();
    await fixture?.cleanup();
    if (keyDir !== undefined) await rm(keyDir, { recursive: true, force: true });
  });

  async function writeEndpoints(dir: string): Promise<string> {
    const file = path.join(dir, 'endpoints.yaml');
    await writeFile(
      file,
      stringify({
        endpoints: [{ name: 'loopback', base_url: server.baseUrl, models: ['gpt-test'], api_key_env: KEY_VARIABLE }],
      }),
    );
    return file;
  }

  it('routes each document’s unsure questions as one job and writes the bytes local mode writes', async () => {
    const codebook = path.join(fixture.dir, 'questions.codebook.yaml');
    await writeFile(
      codebook,
      stringify({
        task: 'moods',
        input: { text_column: 'text', id_column: 'id' },
        questions: [
          {
            name: 'sentiment',
            question: 'What is the sentiment? Answer with one of: negative, neutral, positive.',
            labels: [{ name: 'negative' }, { name: 'neutral' }, { name: 'positive' }],
          },
          {
            name: 'moods',
            type: 'multi_label',
            question: 'Does the tweet feel {description}?',
            labels: [
              { name: 'cheer', description: 'glad' },
              { name: 'gloom', description: 'sad, angry and sorry' },
            ],
            multi_label: { format: 'per_label', answers: { yes: 'positive', no: 'negative' } },
          },
        ],
        prompt: { template: 'Tweet: {text}\n\n{question}' },
        model: { path: await fixtureModel('keyword'), max_document_tokens: 64, threads: 1 },
        // The keyword model is sure of its moods: a bar just below 1 routes some of them (the set's confidence).
        fallback: endpointSection('loopback', {
          routing: { confidence_below: 0.6 },
          questions: { moods: { routing: { confidence_below: 0.99998 } } },
          concurrency: 4,
        }),
      }),
    );
    const endpoints = path.join(keyDir, 'endpoints.yaml');
    const localOutput = path.join(fixture.dir, 'local', 'results.parquet');
    const localBefore = server.requests.length;
    await runLocalMode({
      codebook,
      input: [fixture.corpus],
      output: localOutput,
      shardRows: SHARD_ROWS,
      endpoints,
      env: { [KEY_VARIABLE]: server.apiKey },
    });
    const localRequests = server.requests.length - localBefore;
    const rows = await queryDuckDB(
      `SELECT sentiment__fallback_status AS s, moods__fallback_status AS m, moods__source AS ms, ` +
        `moods__labels AS ml FROM read_parquet('${sqlString(localOutput)}')`,
    );
    assert.ok(
      rows.some((r) => r.m === 'ok' && r.ms === 'fallback'),
      'some documents have their moods answered by the fallback',
    );
    assert.ok(rows.some((r) => r.s === 'ok'));
    assert.ok(localRequests > 0 && localRequests < ROWS, `${localRequests} requests`);

    const before = server.requests.length;
    const output = path.join(fixture.dir, 'cluster', 'results.parquet');
    const submitted = await control.submit({
      codebook,
      inputs: [fixture.corpus],
      output,
      options: {
        shardRows: SHARD_ROWS,
        limit: ROWS,
        sequences: 0,
        overwrite: false,
        noFallback: false,
        fallbackOffline: false,
      },
    });
    const final = await control.watch(submitted.runId, () => undefined, { intervalMs: 250 });
    const logs = [...coordinator.logs(), ...worker.logs()].filter((l) => l.level === 'error' || l.level === 'warn');
    assert.equal(final.state, 'RUN_STATE_SUCCEEDED', `${final.error}\n${JSON.stringify(logs.slice(-10))}`);
    assert.equal(server.requests.length - before, localRequests, 'one request per routed document, as locally');
    assert.ok((await readFile(output)).equals(await readFile(localOutput)), 'cluster and local Parquet differ');
  });
});
