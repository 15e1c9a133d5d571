// Cluster mode end to end with real processes: a redis-server, `rescale coordinator` and two `rescale worker`s on
// the keyword fixture model. The merged Parquet must be the bytes local mode writes; a second submit must queue
// nothing; cancel must stop the run; a wrong token or Redis password must be refused with a clear error.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runLocalMode } from '../../../cli/local-mode.js';
import { ControlClient } from '../../../cli/control-client.js';
import { isRescaleError } from '../../../contracts/errors.js';
import type { RunStatusMessage, SubmitRunRequest } from '../../../coordinator/control-proto.js';
import {
  client,
  clusterFixture,
  eventually,
  shardsDone,
  spawnRescale,
  startCoordinator,
  startWorker,
  writeCorpus,
  type ClusterFixture,
  type CoordinatorProcess,
  type ServiceProcess,
} from '../../../scripts/harness/cluster.js';
import { queryDuckDB, sqlString } from '../../../scripts/harness/parquet.js';
import { redisCommand, startRedisServer, type RedisServerHandle } from '../../../scripts/harness/redis-server.js';

const ROWS = 600;
const SHARD_ROWS = 50;

function request(fixture: ClusterFixture, output: string, rows = 0, corpus = fixture.corpus): SubmitRunRequest {
  return {
    codebook: fixture.codebook,
    inputs: [corpus],
    output,
    options: {
      shardRows: SHARD_ROWS,
      limit: rows,
      sequences: 0,
      overwrite: false,
      noFallback: false,
      fallbackOffline: false,
    },
  };
}

describe('cluster mode', () => {
  let fixture: ClusterFixture;
  let redis: RedisServerHandle;
  let coordinator: CoordinatorProcess;
  let workers: ServiceProcess[] = [];
  let control: ControlClient;
  let localOutput: string;

  before(async () => {
    // Every tenth row repeats the row before it: identical texts scored once, in both modes alike.
    fixture = await clusterFixture(2_000, { rowGroupRows: SHARD_ROWS, repeatEvery: 10 });
    redis = await startRedisServer({ appendonly: true, password: 'cluster-test-password' });
    coordinator = await startCoordinator(redis.url, fixture);
    workers = await Promise.all([startWorker(redis.url, 'w1'), startWorker(redis.url, 'w2')]);
    control = client(coordinator, fixture);
    localOutput = path.join(fixture.dir, 'local', 'results.parquet');
    await runLocalMode({
      codebook: fixture.codebook,
      input: [fixture.corpus],
      output: localOutput,
      shardRows: SHARD_ROWS,
      limit: ROWS,
      env: {},
    });
  });

  after(async () => {
    control?.close();
    await Promise.all([...workers.map((w) => w.stop()), coordinator?.stop()]);
    await redis?.stop();
    await fixture?.cleanup();
  });

  it('classifies a corpus with two worker processes into the Parquet local mode writes, byte for byte', async () => {
    const output = path.join(fixture.dir, 'cluster', 'results.parquet');
    const submitted = await control.submit(request(fixture, output, ROWS));
    assert.equal(submitted.created, true);
    assert.equal(submitted.status?.shardsTotal, ROWS / SHARD_ROWS);
    const final = await control.watch(submitted.runId, () => undefined, { intervalMs: 250 });
    assert.equal(final.state, 'RUN_STATE_SUCCEEDED', final.error);
    assert.equal(final.documentsDone, ROWS);
    assert.equal(final.duplicates, ROWS / 10, 'the status counts the identical texts scored once');

    assert.ok((await readFile(output)).equals(await readFile(localOutput)), 'cluster and local Parquet differ');
    const [stats] = await queryDuckDB(
      `SELECT count(*)::INT AS n, count(DISTINCT "row")::INT AS rows, ` +
        `count(DISTINCT shard_id)::INT AS shards FROM read_parquet('${sqlString(output)}')`,
    );
    assert.deepEqual(stats, { n: ROWS, rows: ROWS, shards: ROWS / SHARD_ROWS });

    const manifest = JSON.parse(await readFile(final.manifest, 'utf8')) as {
      mode: string;
      run: { id: string };
      merge: { duplicates: number };
      software: { engines: { settings?: { sequences?: number } }[] };
    };
    assert.equal(manifest.mode, 'cluster');
    assert.equal(manifest.merge.duplicates, ROWS / 10);
    assert.equal(manifest.run.id, submitted.runId);
    assert.ok(manifest.software.engines.length >= 1);
    assert.ok(manifest.software.engines.every((e) => e.settings?.sequences === 1));

    const done = shardsDone(workers);
    assert.equal(done.length, ROWS / SHARD_ROWS, 'each shard scored exactly once');
    assert.equal(new Set(done.map(([, id]) => id)).size, ROWS / SHARD_ROWS);
    assert.ok(new Set(done.map(([worker]) => worker)).size === 2, 'both workers took shards');

    // JSON logs carry run, shard and worker ids, and never document text or secrets.
    const lines = [...coordinator.logs(), ...workers.flatMap((w) => w.logs())];
    assert.ok(
      lines
        .filter((l) => l.msg === 'shard done')
        .every((l) => l.runId === submitted.runId && typeof l.workerId === 'string' && typeof l.shardId === 'string'),
    );
    const text = JSON.stringify(lines);
    for (const secret of ['I love this', 'awful service', 'cluster-test-password', fixture.token])
      assert.ok(!text.includes(secret), `a log line contains "${secret}"`);
  });

  it('serves Prometheus metrics from the coordinator and from a worker', async () => {
    const watched = await startCoordinator(redis.url, fixture, ['--metrics', '127.0.0.1:0']);
    const worker = await startWorker(redis.url, 'w-metrics', ['--metrics', '127.0.0.1:0']);
    try {
      const scrape = async (service: ServiceProcess): Promise<string> => {
        const line = await service.waitForLog((l) => l.msg === 'metrics listening', 30_000, 'metrics server');
        const response = await fetch(`http://${String(line.address)}/metrics`);
        assert.equal(response.status, 200);
        return response.text();
      };
      const coordinatorMetrics = await scrape(watched);
      assert.match(coordinatorMetrics, /^rescale_shards\{state="completed"\} \d+$/m);
      assert.match(coordinatorMetrics, /^rescale_queue_depth \d+$/m);
      assert.match(coordinatorMetrics, /^rescale_workers 3$/m);
      assert.match(coordinatorMetrics, /^rescale_documents_per_second /m);
      assert.match(coordinatorMetrics, /^rescale_shard_failures_total 0$/m);
      const workerMetrics = await scrape(worker);
      assert.match(workerMetrics, /^rescale_worker_documents_total\{worker="w-metrics-\d+-[0-9a-f]+"\} 0$/m);
      assert.match(workerMetrics, /^rescale_worker_fallback_documents_total/m);
    } finally {
      await Promise.all([watched.stop(), worker.stop()]);
    }
  });

  it('returns the same run for a repeated submit and queues no work twice', async () => {
    const output = path.join(fixture.dir, 'twice', 'results.parquet');
    const corpus = await writeCorpus(path.join(fixture.dir, 'other-corpus.parquet'), 300, {
      rowGroupRows: SHARD_ROWS,
      offset: 100_000,
    });
    const before = shardsDone(workers).length;
    const [first, second] = await Promise.all([
      control.submit(request(fixture, output, 300, corpus)),
      control.submit(request(fixture, output, 300, corpus)),
    ]);
    assert.equal(first.runId, second.runId);
    assert.deepEqual([first.created, second.created].sort(), [false, true]);
    const final = await control.watch(first.runId, () => undefined, { intervalMs: 250 });
    assert.equal(final.state, 'RUN_STATE_SUCCEEDED', final.error);
    const again = await control.submit(request(fixture, output, 300, corpus));
    assert.equal(again.runId, first.runId);
    assert.equal(again.created, false);
    assert.equal(again.status?.state, 'RUN_STATE_SUCCEEDED');
    await new Promise((resolve) => setTimeout(resolve, 500));
    const done = shardsDone(workers).slice(before);
    assert.equal(done.length, 300 / SHARD_ROWS, 'no shard scored twice');
    assert.equal(new Set(done.map(([, id]) => id)).size, 300 / SHARD_ROWS);
    assert.equal(workers.flatMap((w) => w.logs()).filter((l) => l.msg === 'shard already complete; skipped').length, 0);
  });

  it(
    'reuses the finished shards of an identical run ' + 'written to another output instead of scoring them again',
    async () => {
      const corpus = await writeCorpus(path.join(fixture.dir, 'reused-corpus.parquet'), 200, {
        rowGroupRows: SHARD_ROWS,
        offset: 200_000,
      });
      const first = await control.submit(
        request(fixture, path.join(fixture.dir, 'reused-a', 'results.parquet'), 0, corpus),
      );
      assert.equal(
        (await control.watch(first.runId, () => undefined, { intervalMs: 250 })).state,
        'RUN_STATE_SUCCEEDED',
      );
      const started = workers.flatMap((w) => w.logs()).filter((l) => l.msg === 'shard started').length;
      const reused = coordinator.logs().filter((l) => l.msg === 'reused a shard result of an identical run').length;

      const output = path.join(fixture.dir, 'reused-b', 'results.parquet');
      const second = await control.submit(request(fixture, output, 0, corpus));
      assert.notEqual(second.runId, first.runId);
      const final = await control.watch(second.runId, () => undefined, { intervalMs: 250 });
      assert.equal(final.state, 'RUN_STATE_SUCCEEDED', final.error);
      assert.equal(
        workers.flatMap((w) => w.logs()).filter((l) => l.msg === 'shard started').length,
        started,
        'no shard went to a worker',
      );
      assert.equal(
        coordinator.logs().filter((l) => l.msg === 'reused a shard result of an identical run').length - reused,
        200 / SHARD_ROWS,
      );
      assert.ok((await readFile(output)).equals(await readFile(path.join(fixture.dir, 'reused-a', 'results.parquet'))));
    },
  );

  it('cancels a run: queued shards leave the queue and the workers drop its shards at once', async () => {
    const output = path.join(fixture.dir, 'cancelled', 'results.parquet');
    // Big shards (several seconds each), so both workers are surely in the middle of one when the cancel comes.
    const submitted = await control.submit({
      ...request(fixture, output, 2_000),
      options: {
        shardRows: 250,
        limit: 2_000,
        sequences: 0,
        overwrite: false,
        noFallback: false,
        fallbackOffline: false,
      },
    });
    const shardDir = `${output}.parts/shards`;
    await Promise.all(
      workers.map((w) =>
        w.waitForLog((l) => l.msg === 'shard started' && l.runId === submitted.runId, 30_000, 'a shard of the run'),
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    const cancelledAt = Date.now();
    const cancelled = await control.cancel(submitted.runId);
    assert.equal(cancelled.state, 'RUN_STATE_CANCELLED');
    // Both workers are told through the control channel and stop their shard at the next document.
    const stops = await Promise.all(
      workers.map((w) =>
        w.waitForLog(
          (l) => l.msg === 'shard stopped: run cancelled' && l.runId === submitted.runId,
          10_000,
          'the cancelled shard stopping',
        ),
      ),
    );
    for (const stop of stops)
      assert.ok(
        Date.parse(stop.time) - cancelledAt < 3_000,
        `a worker took ${Date.parse(stop.time) - cancelledAt} ms to drop the shard`,
      );
    await eventually(
      async () => {
        const { workers: live } = await control.workers();
        return live.length === 2 && live.every((w) => w.state === 'idle') ? true : undefined;
      },
      15_000,
      'workers idle after cancel',
    );
    const files = (await readdir(shardDir)).filter((f) => f.endsWith('.arrow')).length;
    assert.ok(files < 2_000 / 250, `${files} shard files: the run went on`);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    assert.equal(
      (await readdir(shardDir)).filter((f) => f.endsWith('.arrow')).length,
      files,
      'no shard finished after the cancel',
    );
    const waiting = await redisCommand(redis, 'LLEN', 'rescale:shards:wait');
    assert.equal(waiting, 0, 'queued shards removed');
    const status: RunStatusMessage = await control.getRun(submitted.runId);
    assert.equal(status.state, 'RUN_STATE_CANCELLED');
  });

  it('refuses calls with a wrong token as UNAUTHENTICATED, unary and streaming', async () => {
    const intruder = new ControlClient({ address: coordinator.address, token: 'not-the-token-at-all' });
    try {
      await assert.rejects(
        intruder.listRuns(),
        (error) => isRescaleError(error, 'AUTH_FAILED') && /token/.test(error.message),
      );
      await assert.rejects(intruder.submit(request(fixture, path.join(fixture.dir, 'x.parquet'))), (error) =>
        isRescaleError(error, 'AUTH_FAILED'),
      );
      await assert.rejects(
        intruder.watch('anything', () => undefined),
        (error) => isRescaleError(error, 'AUTH_FAILED'),
      );
    } finally {
      intruder.close();
    }
  });

  it(
    'serves the control API over TLS when given a certificate, and refuses plaintext clients',
    { skip: spawnSync('openssl', ['version']).status === 0 ? false : 'openssl not installed' },
    async () => {
      const cert = path.join(fixture.dir, 'tls.crt');
      const key = path.join(fixture.dir, 'tls.key');
      const made = spawnSync('openssl', [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '-keyout',
        key,
        '-out',
        cert,
      ]);
      assert.equal(made.status, 0, made.stderr.toString());
      const secure = await startCoordinator(redis.url, fixture, ['--tls-cert', cert, '--tls-key', key]);
      // By name: TLS clients check the certificate against the host name (an IP as server name is deprecated in Node).
      const trusted = new ControlClient({
        address: secure.address.replace('127.0.0.1', 'localhost'),
        token: fixture.token,
        tls: { ca: await readFile(cert) },
      });
      const plaintext = new ControlClient({ address: secure.address, token: fixture.token, deadlineMs: 3_000 });
      try {
        assert.equal((await trusted.workers()).workers.length, 2);
        await assert.rejects(plaintext.listRuns(), (error) => isRescaleError(error, 'SERVICE_UNAVAILABLE'));
      } finally {
        trusted.close();
        plaintext.close();
        await secure.stop();
      }
    },
  );

  it('stops a worker and a coordinator given a wrong Redis password, saying so', async () => {
    const wrong = redis.url.replace(encodeURIComponent('cluster-test-password'), 'wrong-password');
    const worker = spawnRescale('bad-worker', ['worker', '--redis', wrong]);
    const coordinatorProcess = spawnRescale('bad-coordinator', [
      'coordinator',
      '--redis',
      wrong,
      '--listen',
      '127.0.0.1:0',
      '--token-file',
      fixture.tokenFile,
    ]);
    for (const service of [worker, coordinatorProcess]) {
      const { code } = await service.exited;
      assert.equal(code, 8, `${service.name} exit code`);
      const message = service
        .logs()
        .map((l) => l.msg)
        .join('\n');
      assert.match(message, /rejected the password \(WRONGPASS\)/);
      assert.doesNotMatch(message + service.stdout(), /wrong-password/, 'the password is never printed');
    }
  });
});
