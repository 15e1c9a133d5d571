// Cluster faults that must be reported for what they are, with real processes: workers running as another user
// than the coordinator (as on a cluster) that cannot write the output's shard folder or read the corpus, and
// Redis going away under a `status` call.

import assert from 'node:assert/strict';
import { chmod, copyFile, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runLocalMode } from '../../../cli/local-mode.js';
import type { SubmitRunRequest } from '../../../coordinator/control-proto.js';
import { isRescaleError } from '../../../contracts/errors.js';
import {
  canRunAsAnotherUser,
  client,
  clusterFixture,
  startCoordinator,
  startWorker,
  type ClusterFixture,
  type ServiceProcess,
} from '../../../scripts/harness/cluster.js';
import { startRedisServer } from '../../../scripts/harness/redis-server.js';

const ROWS = 400;
const SHARD_ROWS = 40;
const SHARDS = ROWS / SHARD_ROWS;
/** The user the workers run as: not the coordinator's (root here), like a cluster's worker account. */
const NOBODY = { uid: 65534, gid: 65534 };
const skip = canRunAsAnotherUser() ? false : 'needs root and setpriv to run workers as another user';

let fixture: ClusterFixture;
let localOutput: string;

before(async () => {
  fixture = await clusterFixture(ROWS, { rowGroupRows: SHARD_ROWS });
  // The workers' user may read the corpus and the codebook's folder, like a shared project folder.
  await chmod(fixture.dir, 0o755);
  await chmod(fixture.corpus, 0o644);
  localOutput = path.join(fixture.dir, 'local', 'results.parquet');
  await runLocalMode({
    codebook: fixture.codebook,
    input: [fixture.corpus],
    output: localOutput,
    shardRows: SHARD_ROWS,
    env: {},
  });
});

after(async () => {
  await fixture?.cleanup();
});

function request(
  output: string,
  inputs = [fixture.corpus],
  limit = 0,
): SubmitRunRequest & {
  options: NonNullable<SubmitRunRequest['options']>;
} {
  return {
    codebook: fixture.codebook,
    inputs,
    output,
    options: {
      shardRows: SHARD_ROWS,
      limit,
      sequences: 0,
      overwrite: false,
      noFallback: false,
      fallbackOffline: false,
    },
  };
}

describe('cluster faults', () => {
  it(
    'fails the run at once, naming the folder and the user, when workers cannot write the shard folder; ' +
      'retry finishes it once fixed',
    { timeout: 180_000, skip },
    async () => {
      const redis = await startRedisServer();
      const services: ServiceProcess[] = [];
      try {
        const coordinator = await startCoordinator(redis.url, fixture);
        services.push(coordinator);
        const workers = await Promise.all(['ro-w1', 'ro-w2'].map((name) => startWorker(redis.url, name, [], NOBODY)));
        services.push(...workers);
        const control = client(coordinator, fixture);
        // A folder the coordinator's user owns: the workers' user may not write in it.
        const outputDir = path.join(fixture.dir, 'readonly-out');
        await mkdir(outputDir, { mode: 0o755 });
        const output = path.join(outputDir, 'results.parquet');
        const submittedAt = Date.now();
        const { runId } = await control.submit(request(output));
        const failed = await control.watch(runId, () => undefined, { intervalMs: 100 });
        const seconds = (Date.now() - submittedAt) / 1000;
        assert.equal(failed.state, 'RUN_STATE_FAILED');
        const shardDir = `${output}.parts`;
        assert.match(failed.error, /^OUTPUT_NOT_WRITABLE: worker ro-w\d-.*, running as nobody \(uid 65534\) on /);
        assert.ok(failed.error.includes(shardDir), failed.error);
        assert.match(failed.error, new RegExp(`rescale retry ${runId}`));
        assert.ok(seconds < 30, `the run took ${seconds} s to fail`);
        // Checked before any scoring, and not retried: no shard started twice, no model loaded.
        const starts = workers.flatMap((w) =>
          w
            .logs()
            .filter((l) => l.msg === 'shard started')
            .map((l) => l.shardId),
        );
        assert.equal(new Set(starts).size, starts.length, `a shard was retried: ${starts.join(', ')}`);
        assert.equal(failed.shardsActive, 0, 'no shard counted active');
        for (const worker of workers) assert.ok(!worker.logs().some((l) => l.msg === 'model loaded'));
        control.close();

        // Fixed: retry queues every shard again (the failed one and those withdrawn) and the run finishes.
        await chmod(outputDir, 0o777);
        await chmod(shardDir, 0o777);
        await chmod(path.join(shardDir, 'shards'), 0o777).catch(() => undefined);
        const again = client(coordinator, fixture);
        const retried = await again.retryFailed(runId);
        assert.equal(retried.retried, SHARDS);
        const done = await again.watch(runId, () => undefined, { intervalMs: 250 });
        assert.equal(done.state, 'RUN_STATE_SUCCEEDED', done.error);
        assert.ok((await readFile(output)).equals(await readFile(localOutput)), 'same Parquet as local mode');
        again.close();
      } finally {
        await Promise.all(services.map((s) => s.stop()));
        await redis.stop();
      }
    },
  );

  it(
    'reports a corpus file the workers may not read as a permission problem of their user',
    { timeout: 120_000, skip },
    async () => {
      const redis = await startRedisServer();
      const services: ServiceProcess[] = [];
      try {
        const coordinator = await startCoordinator(redis.url, fixture);
        services.push(coordinator);
        services.push(await startWorker(redis.url, 'noread-w1', [], NOBODY));
        const control = client(coordinator, fixture);
        const secret = path.join(fixture.dir, 'secret.parquet');
        await copyFile(fixture.corpus, secret);
        await chmod(secret, 0o600);
        // An output the workers' user may write (the coordinator makes the shard folder with its own umask).
        const outputDir = path.join(fixture.dir, 'noread');
        const shardDir = path.join(outputDir, 'results.parquet.parts', 'shards');
        await mkdir(shardDir, { recursive: true });
        for (const dir of [outputDir, path.dirname(shardDir), shardDir]) await chmod(dir, 0o777);
        const { runId } = await control.submit(
          request(path.join(outputDir, 'results.parquet'), [secret], 2 * SHARD_ROWS),
        );
        const failed = await control.watch(runId, () => undefined, { intervalMs: 100 });
        control.close();
        assert.equal(failed.state, 'RUN_STATE_FAILED');
        assert.ok(failed.failures.length >= 1);
        for (const failure of failed.failures) {
          assert.match(
            failure.reason,
            /^INPUT_NOT_READABLE: Cannot read corpus file .*secret\.parquet: permission denied \(EACCES\) for nobody \(uid 65534\)/,
          );
          assert.doesNotMatch(failure.reason, /moved or deleted/);
        }
      } finally {
        await Promise.all(services.map((s) => s.stop()));
        await redis.stop();
      }
    },
  );

  it(
    'answers status during a Redis outage with "Redis unreachable", not an internal error',
    { timeout: 60_000 },
    async () => {
      const redis = await startRedisServer();
      const services: ServiceProcess[] = [];
      try {
        const coordinator = await startCoordinator(redis.url, fixture);
        services.push(coordinator);
        const control = client(coordinator, fixture);
        const { runId } = await control.submit(request(path.join(fixture.dir, 'outage', 'results.parquet')));
        await redis.stop();
        for (const call of [() => control.getRun(runId), () => control.listRuns(10), () => control.workers()]) {
          await assert.rejects(call(), (error: unknown) => {
            assert.ok(isRescaleError(error, 'SERVICE_UNAVAILABLE'), String(error));
            assert.match(error.message, /cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+/);
            assert.doesNotMatch(error.message, /internal error/);
            return true;
          });
        }
        control.close();
      } finally {
        await Promise.all(services.map((s) => s.stop()));
        await redis.stop();
      }
    },
  );
});
