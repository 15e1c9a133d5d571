// Cluster mode with the closed-model fallback, end to end with real processes: a redis-server, `rescale coordinator`
// (the only process given the API key, and the endpoint list that says where it may be sent) and two
// `rescale worker`s on the keyword fixture model, against the loopback OpenAI-protocol server. Workers route unsure
// documents to the run's fallback queue; the coordinator answers them under one budget and one rate limit. The
// output must be the bytes local mode writes with the same fallback. A codebook that picks its own URL or key is
// refused before anything is sent.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { runLocalMode } from '../../../cli/local-mode.js';
import { ControlClient } from '../../../cli/control-client.js';
import { ERROR_CODES, isRescaleError } from '../../../contracts/errors.js';
import type { FallbackConfigInput } from '../../../contracts/fallback-config.js';
import type { SubmitRunRequest } from '../../../coordinator/control-proto.js';
import {
  client,
  clusterFixture,
  shardsDone,
  startCoordinator,
  startWorker,
  type ClusterFixture,
  type CoordinatorProcess,
  type ServiceProcess,
} from '../../../scripts/harness/cluster.js';
import { auditRecords, endpointSection, fallbackSection, filesContaining } from '../../helpers/fallback.js';
import { keywordLabel, OpenAIServer } from '../../helpers/openai-server.js';
import { queryDuckDB, sqlString } from '../../../scripts/harness/parquet.js';
import { startRedisServer, type RedisServerHandle } from '../../../scripts/harness/redis-server.js';

const KEY_VARIABLE = 'RESCALE_TEST_FALLBACK_KEY';
/** A secret of the coordinator's environment that no codebook may have sent anywhere. */
const SECRET_VARIABLE = 'RESCALE_TEST_COORDINATOR_SECRET';
const ROWS = 200;
const SHARD_ROWS = 25;

/** The operator's list: "loopback" reads the key from the environment, "filed" from a key file. */
async function writeEndpoints(dir: string, baseUrl: string, keyFile: string): Promise<string> {
  const file = path.join(dir, 'endpoints.yaml');
  await writeFile(
    file,
    stringify({
      endpoints: [
        { name: 'loopback', base_url: baseUrl, models: ['gpt-test'], api_key_env: KEY_VARIABLE },
        { name: 'filed', base_url: baseUrl, models: ['gpt-test'], api_key_file: keyFile },
      ],
    }),
  );
  return file;
}

/** An HTTP server that answers nothing useful and counts every request it gets, whatever its path. */
async function countingServer(): Promise<{ url: string; requests: () => number; close: () => Promise<void> }> {
  let count = 0;
  const server = http.createServer((_req, res) => {
    count++;
    res.writeHead(500).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests: () => count,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * The fixture's codebook with a fallback section (the tweets "not sure about it, good and bad" are the unsure
 * ones).
 */
async function fallbackCodebook(fixture: ClusterFixture, name: string, fallback: object): Promise<string> {
  const codebook = parse(await readFile(fixture.codebook, 'utf8')) as Record<string, unknown>;
  const file = path.join(fixture.dir, `${name}.codebook.yaml`);
  await writeFile(file, stringify({ ...codebook, fallback }));
  return file;
}

function request(
  fixture: ClusterFixture,
  codebook: string,
  output: string,
  options: Partial<SubmitRunRequest['options']> = {},
): SubmitRunRequest {
  return {
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
      ...options,
    },
  };
}

/** Why a run failed, for assertion messages: its shard failures and the services' error lines. */
function why(
  final: { error: string; failures?: readonly { shardId: string; reason: string }[] },
  services: readonly ServiceProcess[],
): string {
  const errors = services.flatMap((s) =>
    s
      .logs()
      .filter((l) => l.level === 'error' || l.level === 'warn')
      .map((l) => `${s.name}: ${JSON.stringify(l)}`),
  );
  return [
    final.error,
    ...(final.failures ?? []).slice(0, 3).map((f) => `${f.shardId}: ${f.reason}`),
    ...errors.slice(-10),
  ].join('\n');
}

/** `promise`, or a failure after `ms` carrying the services' last log lines (a hang becomes a diagnosable failure). */
async function within<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
  services: readonly ServiceProcess[],
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `${what}: no result within ${ms} ms\n${services
              .flatMap((s) =>
                s
                  .logs()
                  .slice(-12)
                  .map((l) => `${s.name}: ${JSON.stringify(l)}`),
              )
              .join('\n')}`,
          ),
        ),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function fallbackColumns(output: string): Promise<Record<string, unknown>[]> {
  return queryDuckDB(
    `SELECT id::INT AS id, label, local_label, source, fallback_label, fallback_status ` +
      `FROM read_parquet('${sqlString(output)}') ORDER BY id`,
  );
}

describe('cluster mode with the closed-model fallback', () => {
  let fixture: ClusterFixture;
  let redis: RedisServerHandle;
  let server: OpenAIServer;
  let coordinator: CoordinatorProcess;
  let workers: ServiceProcess[] = [];
  let control: ControlClient;
  let codebook: string;
  /** Outside the fixture folder, which the tests search for the key. */
  let keyDir: string;
  let endpoints: string;

  before(async () => {
    fixture = await clusterFixture(ROWS, { rowGroupRows: SHARD_ROWS });
    redis = await startRedisServer();
    // The closed model reads the unsure tweets as positive, so its answers are visible in the output.
    server = await OpenAIServer.start({ label: (user) => (/not sure/.test(user) ? 'positive' : keywordLabel(user)) });
    keyDir = await mkdtemp(path.join(tmpdir(), 'rescale-endpoint-key-'));
    const keyFile = path.join(keyDir, 'loopback.key');
    await writeFile(keyFile, `${server.apiKey}\n`, { mode: 0o600 });
    endpoints = await writeEndpoints(keyDir, server.baseUrl, keyFile);
    codebook = await fallbackCodebook(
      fixture,
      'hybrid',
      endpointSection('loopback', { routing: { confidence_below: 0.6 }, concurrency: 4 }),
    );
    // Only the coordinator gets the key: workers never need it.
    coordinator = await startCoordinator(redis.url, fixture, ['--endpoints', endpoints], 0, {
      [KEY_VARIABLE]: server.apiKey,
      [SECRET_VARIABLE]: 'redis://:hunter2-coordinator-secret@10.0.0.1:6379',
    });
    workers = await Promise.all([startWorker(redis.url, 'w1'), startWorker(redis.url, 'w2')]);
    control = client(coordinator, fixture);
  });

  after(async () => {
    control?.close();
    await Promise.all([...workers.map((w) => w.stop()), coordinator?.stop()]);
    await server?.close();
    await redis?.stop();
    await fixture?.cleanup();
    if (keyDir !== undefined) await rm(keyDir, { recursive: true, force: true });
  });

  it(
    'answers routed documents on the coordinator: both opinions, ' + 'the bytes local mode writes, nothing paid twice',
    async () => {
      const localOutput = path.join(fixture.dir, 'local', 'results.parquet');
      // Local mode resolves the same endpoint from the same list (--endpoints).
      await runLocalMode({
        codebook,
        input: [fixture.corpus],
        output: localOutput,
        shardRows: SHARD_ROWS,
        limit: ROWS,
        endpoints,
        env: { [KEY_VARIABLE]: server.apiKey },
      });
      const local = await fallbackColumns(localOutput);
      const routed = local.filter((row) => row.fallback_status !== null).length;
      assert.ok(routed >= 20, `the unsure quarter of the corpus is routed (${routed})`);
      assert.ok(
        local.some((row) => row.source === 'fallback' && row.label === 'positive' && row.local_label !== 'positive'),
      );

      const before = server.requests.length;
      const output = path.join(fixture.dir, 'cluster', 'results.parquet');
      const submitted = await control.submit(request(fixture, codebook, output));
      const final = await control.watch(submitted.runId, () => undefined, { intervalMs: 250 });
      assert.equal(final.state, 'RUN_STATE_SUCCEEDED', why(final, [coordinator, ...workers]));
      assert.equal(
        server.requests.length - before,
        routed,
        'one request per routed document, whichever worker routed it',
      );
      assert.ok(
        server.requests.slice(before).every((r) => r.authorization === `Bearer ${server.apiKey}`),
        'every request carries the key the coordinator read from the endpoint’s variable',
      );
      assert.ok((await readFile(output)).equals(await readFile(localOutput)), 'cluster and local Parquet differ');
      assert.equal(new Set(shardsDone(workers).map(([worker]) => worker)).size, 2, 'both workers took shards');

      // The coordinator's audit and cache sit beside the output, as in local mode.
      const calls = (await auditRecords(`${output}.fallback-audit.jsonl`)).filter((r) => r.event === 'call');
      assert.equal(calls.length, routed);
      assert.ok(
        calls.every(
          (r) => r.outcome === 'label' && typeof r.shard_id === 'string' && typeof r.document_id === 'string',
        ),
      );
      const manifest = JSON.parse(await readFile(final.manifest, 'utf8')) as {
        fallback: { active: boolean; mode: string; stats: { routed: number; answered: number } };
      };
      assert.equal(manifest.fallback.active, true);
      assert.equal(manifest.fallback.stats.answered, routed);

      // The run's fallback queue (which held document texts) is gone from Redis once the run succeeded.
      const { Redis } = await import('ioredis');
      const redisClient = new Redis(redis.url);
      try {
        assert.deepEqual(await redisClient.keys(`rescale:fallback-${submitted.runId}:*`), []);
      } finally {
        redisClient.disconnect();
      }

      // Submitted again from scratch: every answer comes from the cache, nothing is paid.
      const again = await control.submit(request(fixture, codebook, output, { overwrite: true }));
      const second = await control.watch(again.runId, () => undefined, { intervalMs: 250 });
      assert.equal(second.state, 'RUN_STATE_SUCCEEDED', why(second, [coordinator, ...workers]));
      assert.equal(server.requests.length - before, routed, 'the re-run paid nothing');
      assert.ok((await readFile(output)).equals(await readFile(localOutput)));

      // The key is in no log line of any process and in no file the run wrote; workers never had it.
      const lines = JSON.stringify([...coordinator.logs(), ...workers.flatMap((w) => w.logs())]);
      assert.ok(!lines.includes(server.apiKey), 'a log line contains the API key');
      assert.deepEqual(await filesContaining(fixture.dir, server.apiKey), []);
      assert.ok(!lines.includes('not sure about it'), 'document text in a log line');
    },
  );

  it(
    'keeps one hard budget across workers: exactly the cap is paid, ' +
      'the other routed documents are over_budget, no row lost',
    async () => {
      // On the endpoint whose key the coordinator reads from a file.
      const capped = await fallbackCodebook(
        fixture,
        'capped',
        endpointSection('filed', {
          routing: { confidence_below: 0.6 },
          concurrency: 4,
          budget: { requests: 7 },
          seed: 7,
        }),
      );
      const before = server.requests.length;
      const output = path.join(fixture.dir, 'capped', 'results.parquet');
      const submitted = await control.submit(request(fixture, capped, output));
      const final = await control.watch(submitted.runId, () => undefined, { intervalMs: 250 });
      assert.equal(final.state, 'RUN_STATE_SUCCEEDED', why(final, [coordinator, ...workers]));
      assert.equal(server.requests.length - before, 7, 'the request cap holds across both workers');
      assert.ok(server.requests.slice(before).every((r) => r.authorization === `Bearer ${server.apiKey}`));
      const rows = await fallbackColumns(output);
      assert.equal(rows.length, ROWS);
      const statuses = new Map<unknown, number>();
      for (const row of rows) statuses.set(row.fallback_status, (statuses.get(row.fallback_status) ?? 0) + 1);
      assert.equal(statuses.get('ok'), 7);
      assert.ok((statuses.get('over_budget') ?? 0) >= 13);
      assert.ok(
        rows
          .filter((r) => r.fallback_status === 'over_budget')
          .every((r) => r.label === r.local_label && r.source === 'local'),
      );
    },
  );

  it('fails the run at once when the endpoint refuses the key, naming where the key comes from', async () => {
    server.setResponder(() => ({
      kind: 'status',
      status: 401,
      code: 'invalid_api_key',
      message: 'Incorrect API key provided',
    }));
    try {
      const refused = await fallbackCodebook(
        fixture,
        'refused',
        endpointSection('loopback', { routing: { confidence_below: 0.6 }, seed: 401 }),
      );
      const output = path.join(fixture.dir, 'refused', 'results.parquet');
      const submitted = await control.submit(request(fixture, refused, output));
      const final = await control.watch(submitted.runId, () => undefined, { intervalMs: 250 });
      assert.equal(final.state, 'RUN_STATE_FAILED');
      assert.match(final.error, /FALLBACK_AUTH/);
      assert.match(final.error, new RegExp(KEY_VARIABLE));
      assert.ok(!final.error.includes(server.apiKey));
    } finally {
      server.setResponder(() => null);
    }
  });

  it('refuses a codebook naming its own URL or key source (INVALID_ARGUMENT, field named): none sent', async () => {
    const evil = await countingServer();
    try {
      const attempts: [string, FallbackConfigInput, string][] = [
        ['env', fallbackSection(evil.url, { api_key_env: SECRET_VARIABLE }), 'fallback.base_url'],
        [
          'token-file',
          { ...fallbackSection(evil.url), api_key_env: undefined, api_key_file: fixture.tokenFile },
          'fallback.base_url',
        ],
        ['key-only', { ...fallbackSection(evil.url), base_url: undefined }, 'fallback.api_key_env'],
      ];
      for (const [name, section, field] of attempts) {
        const file = await fallbackCodebook(fixture, `evil-${name}`, section);
        const output = path.join(fixture.dir, `evil-${name}`, 'results.parquet');
        await assert.rejects(
          within(control.submit(request(fixture, file, output)), 30_000, 'evil submit', [coordinator]),
          (error: unknown) =>
            isRescaleError(error, 'CODEBOOK_INVALID') &&
            ERROR_CODES[error.code].grpcStatus === 'INVALID_ARGUMENT' &&
            error.message.includes(`field "${field}"`) &&
            /"endpoint:"/.test(error.message) &&
            /loopback, filed/.test(error.message) &&
            !error.message.includes('hunter2') &&
            !error.message.includes(fixture.token),
          name,
        );
      }
      // A run that was never planned: nothing reached the evil server, and no queue was left behind.
      assert.equal(evil.requests(), 0, 'the evil server was called');
      const lines = JSON.stringify(coordinator.logs());
      assert.ok(!lines.includes('hunter2') && !lines.includes(fixture.token));
    } finally {
      await evil.close();
    }
  });

  it('refuses an endpoint not in the list and a model the endpoint does not allow, naming the field', async () => {
    const cases: [string, FallbackConfigInput, RegExp][] = [
      ['unknown', endpointSection('elsewhere'), /field "fallback\.endpoint": no endpoint "elsewhere".*loopback, filed/],
      ['model', endpointSection('loopback', { model: 'gpt-unlisted' }), /field "fallback\.model".*allowed: gpt-test/],
    ];
    const before = server.requests.length;
    for (const [name, section, pattern] of cases) {
      const file = await fallbackCodebook(fixture, `refused-${name}`, section);
      const output = path.join(fixture.dir, `refused-${name}`, 'results.parquet');
      await assert.rejects(
        within(control.submit(request(fixture, file, output)), 30_000, 'refused submit', [coordinator]),
        (error: unknown) =>
          isRescaleError(error, 'CODEBOOK_INVALID') &&
          ERROR_CODES[error.code].grpcStatus === 'INVALID_ARGUMENT' &&
          pattern.test(error.message),
        name,
      );
    }
    assert.equal(server.requests.length, before);
  });

  it(
    'refuses a fallback codebook when the coordinator has no key; ' +
      '--no-fallback gives local labels, --fallback-offline replays the study from the cache',
    async () => {
      // One coordinator per Redis: the keyed one stops, one without an endpoint list takes over.
      control.close();
      await within(coordinator.stop(), 30_000, 'keyed coordinator stop', [coordinator]);
      coordinator = await startCoordinator(redis.url, fixture);
      control = client(coordinator, fixture);
      const output = path.join(fixture.dir, 'keyless', 'results.parquet');
      await assert.rejects(
        within(control.submit(request(fixture, codebook, output)), 30_000, 'refused submit', [coordinator]),
        (error) =>
          isRescaleError(error, 'CODEBOOK_INVALID') &&
          /fallback\.endpoint.*--endpoints FILE.*--no-fallback/.test(error.message),
      );
      const submitted = await within(
        control.submit(request(fixture, codebook, output, { noFallback: true })),
        30_000,
        'local-only submit',
        [coordinator],
      );
      const final = await within(
        control.watch(submitted.runId, () => undefined, { intervalMs: 250 }),
        60_000,
        'local-only run',
        [coordinator, ...workers],
      );
      assert.equal(final.state, 'RUN_STATE_SUCCEEDED', why(final, [coordinator, ...workers]));
      const rows = await fallbackColumns(output);
      assert.ok(rows.every((r) => r.fallback_status === null && r.source === 'local'));

      // With the endpoint list but without the key, a live run is refused naming where the key should be...
      control.close();
      await within(coordinator.stop(), 30_000, 'list-less coordinator stop', [coordinator]);
      coordinator = await startCoordinator(redis.url, fixture, ['--endpoints', endpoints]);
      control = client(coordinator, fixture);
      assert.ok(
        coordinator.logs().some((l) => l.level === 'warn' && String(l.msg).includes(KEY_VARIABLE)),
        'no start-up warning about the unreadable key',
      );
      await assert.rejects(
        within(control.submit(request(fixture, codebook, output)), 30_000, 'refused submit', [coordinator]),
        (error) =>
          isRescaleError(error, 'CONFIG_INVALID') &&
          error.message.includes(KEY_VARIABLE) &&
          /--no-fallback/.test(error.message),
      );
      // ... and a finished study replays offline from the cache without any key, bit for bit.
      const before = server.requests.length;
      const replayed = path.join(fixture.dir, 'cluster', 'results.parquet');
      const replay = await within(
        control.submit(request(fixture, codebook, replayed, { overwrite: true, fallbackOffline: true })),
        30_000,
        'offline submit',
        [coordinator],
      );
      const done = await within(
        control.watch(replay.runId, () => undefined, { intervalMs: 250 }),
        60_000,
        'offline replay',
        [coordinator, ...workers],
      );
      assert.equal(done.state, 'RUN_STATE_SUCCEEDED', why(done, [coordinator, ...workers]));
      assert.equal(server.requests.length, before, 'nothing sent');
      assert.ok(
        (await readFile(replayed)).equals(await readFile(path.join(fixture.dir, 'local', 'results.parquet'))),
        'the offline replay differs from the live run',
      );
    },
  );
});
