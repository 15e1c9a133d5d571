// One run per output in cluster mode too: a real redis-server, `rescale coordinator` and (at the end) one worker on
// the keyword fixture model. A changed codebook needs overwrite and leaves the earlier output whole; a second live
// run into an output (cluster or local) is refused; a cancelled run's output is marked so nobody reads it as complete;
// the merge removes the temp files an interrupted merge left.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runLocalMode } from '../../../cli/local-mode.js';
import type { ControlClient } from '../../../cli/control-client.js';
import { isRescaleError } from '../../../contracts/errors.js';
import type { SubmitRunRequest } from '../../../coordinator/control-proto.js';
import {
  client,
  clusterFixture,
  startCoordinator,
  startWorker,
  type ClusterFixture,
  type CoordinatorProcess,
  type ServiceProcess,
} from '../../../scripts/harness/cluster.js';
import { startRedisServer, type RedisServerHandle } from '../../../scripts/harness/redis-server.js';
import { readPredictions } from '../../../study/evaluation/labelled-predictions.js';

const ROWS = 200;
const SHARD_ROWS = 50;

function request(codebook: string, corpus: string, output: string, overwrite = false): SubmitRunRequest {
  return {
    codebook,
    inputs: [corpus],
    output,
    options: { shardRows: SHARD_ROWS, limit: ROWS, sequences: 0, overwrite, noFallback: false, fallbackOffline: false },
  };
}

interface LockFile {
  readonly owner: string;
  readonly runId?: string;
  readonly state: string;
}

async function readLock(output: string): Promise<LockFile> {
  return JSON.parse(await readFile(`${output}.lock`, 'utf8')) as LockFile;
}

describe('cluster mode: one run per output', () => {
  let fixture: ClusterFixture;
  let redis: RedisServerHandle;
  let coordinator: CoordinatorProcess;
  let worker: ServiceProcess | undefined;
  let control: ControlClient;
  let changed: string;

  before(async () => {
    fixture = await clusterFixture(ROWS, { rowGroupRows: SHARD_ROWS });
    redis = await startRedisServer({ password: 'output-test-password' });
    coordinator = await startCoordinator(redis.url, fixture);
    control = client(coordinator, fixture);
    changed = path.join(fixture.dir, 'changed.yaml');
    const text = await readFile(fixture.codebook, 'utf8');
    await writeFile(changed, text.replace('You are a careful annotator.', 'Label the tweet.'));
  });

  after(async () => {
    control?.close();
    await Promise.all([worker?.stop(), coordinator?.stop()]);
    await redis?.stop();
    await fixture?.cleanup();
  });

  it('refuses a changed codebook without overwrite, leaving the earlier results, manifest and plan whole', async () => {
    const output = path.join(fixture.dir, 'a', 'results.parquet');
    await runLocalMode({ codebook: fixture.codebook, input: [fixture.corpus], output, shardRows: SHARD_ROWS, env: {} });
    const plan = await readFile(path.join(`${output}.parts`, 'plan.json'), 'utf8');
    await assert.rejects(
      control.submit(request(changed, fixture.corpus, output)),
      (error) => isRescaleError(error, 'CONFIG_INVALID') && /holds the results of another run/.test(error.message),
    );
    assert.equal(await readFile(path.join(`${output}.parts`, 'plan.json'), 'utf8'), plan, 'plan file unchanged');
    assert.ok(!existsSync(`${output}.lock`));
    assert.equal((await readPredictions(output, 'report')).rows, ROWS, 'the earlier output still reads as complete');
  });

  it('refuses a second live run into an output (cluster or local) and marks a cancelled run', async () => {
    const output = path.join(fixture.dir, 'a', 'results.parquet');
    // No worker yet: the accepted run stays running.
    const submitted = await control.submit(request(changed, fixture.corpus, output, true));
    assert.equal(submitted.created, true);
    assert.deepEqual(await readLock(output), { ...(await readLock(output)), owner: 'coordinator', state: 'running' });
    assert.equal((await readLock(output)).runId, submitted.runId);
    assert.ok(!existsSync(`${output}.manifest.json`), 'the replaced run no longer looks complete');

    await assert.rejects(
      control.submit(request(fixture.codebook, fixture.corpus, output, true)),
      (error) =>
        isRescaleError(error, 'RUN_CONFLICT') && error.message.includes(`is being written by run ${submitted.runId}`),
    );
    await assert.rejects(
      runLocalMode({ codebook: fixture.codebook, input: [fixture.corpus], output, limit: ROWS, env: {} }),
      (error) => isRescaleError(error, 'RUN_CONFLICT') && error.message.includes(`cluster run ${submitted.runId}`),
    );

    await control.cancel(submitted.runId);
    assert.equal((await readLock(output)).state, 'cancelled');
    await writeFile(output, 'not results');
    await assert.rejects(readPredictions(output, 'report'), /is not a finished run/);
    await rm(output);

    // A local run holding another output's lock (this process, alive) keeps a submission out of it.
    const other = path.join(fixture.dir, 'b', 'results.parquet');
    await runLocalMode({ codebook: fixture.codebook, input: [fixture.corpus], output: other, limit: 10, env: {} });
    await writeFile(
      `${other}.lock`,
      JSON.stringify({
        owner: 'local',
        host: hostname(),
        pid: process.pid,
        processStartedAt: new Date(Date.now() - process.uptime() * 1000).toISOString(),
        lockedAt: new Date().toISOString(),
        state: 'running',
      }),
    );
    await assert.rejects(
      control.submit(request(fixture.codebook, fixture.corpus, other, true)),
      (error) => isRescaleError(error, 'RUN_CONFLICT') && error.message.includes(`rescale process ${process.pid}`),
    );
    assert.ok(existsSync(`${other}.manifest.json`), 'nothing of the locked output was removed');
  });

  it('resumes the cancelled run, removes temp files of an interrupted merge and unlocks the output', async () => {
    const output = path.join(fixture.dir, 'a', 'results.parquet');
    const temps = ['.results.parquet.777-deadbeef.tmp', '.results.parquet.manifest.json.777-deadbeef.tmp'];
    for (const name of temps) await writeFile(path.join(path.dirname(output), name), 'partial');
    const resumed = await control.submit(request(changed, fixture.corpus, output));
    assert.equal(resumed.created, false);
    assert.equal((await readLock(output)).state, 'running');
    worker = await startWorker(redis.url, 'w1');
    const final = await control.watch(resumed.runId, () => undefined, { intervalMs: 250 });
    assert.equal(final.state, 'RUN_STATE_SUCCEEDED', final.error);
    const left = await readdir(path.dirname(output));
    for (const name of temps) assert.ok(!left.includes(name), `${name} is left`);
    assert.ok(!existsSync(`${output}.lock`), 'a finished run leaves no lock');
    assert.equal((await readPredictions(output, 'report')).rows, ROWS);
  });
});
