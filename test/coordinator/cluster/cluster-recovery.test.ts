// Cluster mode under failure, with real processes: workers SIGKILLed mid-shard (the same shard losing its worker
// twice), a worker SIGTERMed (preemption), Redis crashed and restarted from its AOF, the coordinator killed and
// restarted, Redis gone for good. Every run must still finish with the Parquet local mode writes.

import assert from 'node:assert/strict';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { runLocalMode } from '../../../cli/local-mode.js';
import type { ControlClient } from '../../../cli/control-client.js';
import type { SubmitRunRequest } from '../../../coordinator/control-proto.js';
import {
  client,
  clusterFixture,
  eventually,
  FAST_RECOVERY_ARGS,
  shardsDone,
  spawnRescale,
  startCoordinator,
  startWorker,
  type ClusterFixture,
  type CoordinatorProcess,
  type LogLine,
  type ServiceProcess,
  writeCorpus,
} from '../../../scripts/harness/cluster.js';
import { queryDuckDB, sqlString } from '../../../scripts/harness/parquet.js';
import { startRedisServer, type RedisServerHandle } from '../../../scripts/harness/redis-server.js';

const ROWS = 1_200;
const SHARD_ROWS = 40;
const SHARDS = ROWS / SHARD_ROWS;

interface Cluster {
  readonly redis: RedisServerHandle;
  coordinator: CoordinatorProcess;
  readonly workers: ServiceProcess[];
  control: ControlClient;
  readonly output: string;
}

let fixture: ClusterFixture;
let localOutput: string;

before(async () => {
  fixture = await clusterFixture(ROWS, { rowGroupRows: SHARD_ROWS });
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

/** A fresh Redis (AOF on), a coordinator and `workers` workers; everything stopped afterwards, whatever happens. */
async function withCluster(
  name: string,
  workerArgs: readonly string[],
  workers: number,
  body: (cluster: Cluster) => Promise<void>,
  coordinatorArgs: readonly string[] = [],
): Promise<void> {
  const redis = await startRedisServer({ appendonly: true, password: 'recovery' });
  const started: ServiceProcess[] = [];
  let cluster: Cluster | undefined;
  try {
    const coordinator = await startCoordinator(redis.url, fixture, coordinatorArgs);
    started.push(coordinator);
    const list = await Promise.all(
      Array.from({ length: workers }, (_, i) => startWorker(redis.url, `${name}-w${i + 1}`, workerArgs)),
    );
    started.push(...list);
    cluster = {
      redis,
      coordinator,
      workers: list,
      control: client(coordinator, fixture),
      output: path.join(fixture.dir, name, 'results.parquet'),
    };
    await body(cluster);
  } finally {
    cluster?.control.close();
    await Promise.all(
      [...started, ...(cluster?.workers ?? []), ...(cluster ? [cluster.coordinator] : [])].map((service) =>
        service.stop(),
      ),
    );
    await redis.stop();
  }
}

function submitRequest(output: string): SubmitRunRequest {
  return {
    codebook: fixture.codebook,
    inputs: [fixture.corpus],
    output,
    options: {
      shardRows: SHARD_ROWS,
      limit: 0,
      sequences: 0,
      overwrite: false,
      noFallback: false,
      fallbackOffline: false,
    },
  };
}

async function assertSameAsLocal(output: string): Promise<void> {
  assert.ok((await readFile(output)).equals(await readFile(localOutput)), 'cluster and local Parquet differ');
  const [stats] = await queryDuckDB(
    `SELECT count(*)::INT AS n, count(DISTINCT "row")::INT AS rows, ` +
      `count(DISTINCT id)::INT AS ids FROM read_parquet('${sqlString(output)}')`,
  );
  assert.deepEqual(stats, { n: ROWS, rows: ROWS, ids: ROWS }, 'every document exactly once');
}

const isStart = (shardId?: string) => (line: LogLine) =>
  line.msg === 'shard started' && (shardId === undefined || line.shardId === shardId);

/** Waits until `worker` starts a shard after having finished `after` shards; returns that shard's id. */
async function nextShardOf(worker: ServiceProcess, after = 1): Promise<string> {
  await worker.waitForLog(
    () => worker.logs().filter((l) => l.msg === 'shard done').length >= after,
    60_000,
    `${after} finished shard(s)`,
  );
  const starts = worker.logs().filter(isStart()).length;
  await worker.waitForLog(() => worker.logs().filter(isStart()).length > starts, 60_000, 'the next shard');
  return String(worker.logs().filter(isStart()).at(-1)?.shardId);
}

/** When another worker started `shardId` after `since` (ms), and which. */
async function restartedElsewhere(
  workers: () => readonly ServiceProcess[],
  shardId: string,
  since: number,
  timeoutMs = 60_000,
): Promise<{ at: number; worker: ServiceProcess }> {
  return eventually(
    () => {
      for (const worker of workers()) {
        const line = worker.logs().find((l) => isStart(shardId)(l) && Date.parse(l.time) >= since);
        if (line !== undefined) return { at: Date.parse(line.time), worker };
      }
      return undefined;
    },
    timeoutMs,
    `shard ${shardId} restarted on another worker`,
    20,
  );
}

async function finish(cluster: Cluster, runId: string): Promise<void> {
  const final = await cluster.control.watch(runId, () => undefined, { intervalMs: 250 });
  assert.equal(final.state, 'RUN_STATE_SUCCEEDED', `${final.state}: ${final.error} ${JSON.stringify(final.failures)}`);
}

describe('cluster recovery', () => {
  it(
    "hands a SIGKILLed worker's shard back within 5 s (default lock settings), twice for the same shard",
    { timeout: 240_000 },
    async (t: TestContext) => {
      // Default lock settings (20 s lock, 5 s stall check): recovery comes from the coordinator seeing the dead
      // worker's Redis connections close, not from the lock expiring.
      await withCluster('sigkill', [], 3, async (cluster) => {
        const { runId } = await cluster.control.submit(submitRequest(cluster.output));
        const [first] = cluster.workers as [ServiceProcess];
        const shardId = await nextShardOf(first);
        // At once, here and below: a 40-document shard takes about 0.1 s with the model loaded, and one finished
        // before the kill would never be restarted.
        const killedAt = [Date.now()];
        first.kill('SIGKILL');
        // A replacement, as SLURM would start for a requeued array task.
        const replacement = startWorker(cluster.redis.url, 'sigkill-w4').then((w) => (cluster.workers.push(w), w));
        const second = await restartedElsewhere(
          () => cluster.workers.filter((w) => w !== first),
          shardId,
          killedAt[0] as number,
        );
        killedAt.push(Date.now());
        second.worker.kill('SIGKILL');
        await replacement;
        const third = await restartedElsewhere(
          () => cluster.workers.filter((w) => w !== first && w !== second.worker),
          shardId,
          killedAt[1] as number,
        );
        await finish(cluster, runId);

        const recoveries = [second.at - (killedAt[0] as number), third.at - (killedAt[1] as number)];
        t.diagnostic(
          `SIGKILL recovery (default lock 20 s; coordinator checks workers every 1 s): ` +
            `${recoveries.map((ms) => `${(ms / 1000).toFixed(2)} s`).join(', ')}`,
        );
        for (const ms of recoveries) assert.ok(ms <= 5_000, `shard restarted ${ms} ms after SIGKILL`);
        const handBacks = cluster.coordinator.logs().filter((l) => l.msg === 'shard handed back: its worker is gone');
        assert.deepEqual(
          handBacks.map((l) => [l.shardId, l.reason]),
          [
            [shardId, 'connections closed'],
            [shardId, 'connections closed'],
          ],
          "exactly the two dead workers' shard was handed back, nothing else",
        );
        await assertSameAsLocal(cluster.output);
        const done = shardsDone(cluster.workers);
        assert.equal(done.filter(([, id]) => id === shardId).length, 1, 'the twice-orphaned shard was written once');
        assert.equal(new Set(done.map(([, id]) => id)).size, SHARDS);
        const status = await cluster.control.getRun(runId);
        assert.equal(status.shardsFailed, 0);
        const workers = (await cluster.control.workers()).workers.map((w) => w.id);
        assert.equal(workers.length, 2, `dead workers deregistered: ${workers.join(', ')}`);
      });
    },
  );

  it(
    'hands back the shard of a frozen worker whose heartbeat went silent; its late completion changes nothing',
    { timeout: 240_000 },
    async (t: TestContext) => {
      await withCluster(
        'frozen',
        [],
        2,
        async (cluster) => {
          const { runId } = await cluster.control.submit(submitRequest(cluster.output));
          const [first, other] = cluster.workers as [ServiceProcess, ServiceProcess];
          const shardId = await nextShardOf(first);
          // A frozen process keeps its sockets open: only the heartbeat tells.
          const frozenAt = Date.now();
          first.kill('SIGSTOP');
          const restarted = await restartedElsewhere(() => [other], shardId, frozenAt, 60_000);
          const handBack = await cluster.coordinator.waitForLog(
            (l) => l.msg === 'shard handed back: its worker is gone',
            5_000,
            'hand-back',
          );
          assert.equal(handBack.shardId, shardId);
          assert.equal(handBack.reason, 'heartbeat silent');
          t.diagnostic(`frozen worker's shard restarted elsewhere ${restarted.at - frozenAt} ms after SIGSTOP`);
          // Far below the 20 s lock plus a stall check.
          assert.ok(restarted.at - frozenAt < 15_000, `restart took ${restarted.at - frozenAt} ms`);
          await other.waitForLog(
            (l) => l.msg === 'shard done' && l.shardId === shardId,
            30_000,
            'the handed-back shard done',
          );
          // Back to life: it finishes the shard it held, but its lock is gone, so the queue refuses its completion.
          first.kill('SIGCONT');
          await finish(cluster, runId);
          await sleep(3_000);
          await assertSameAsLocal(cluster.output);
          const status = await cluster.control.getRun(runId);
          assert.equal(status.shardsDone, SHARDS);
          assert.equal(status.shardsFailed, 0);
          // The queue kept the completion of the worker that took over; the late one dropped the shard or found
          // it done.
          const redis = new Redis(cluster.redis.url);
          try {
            const returned = await redis.hget(`rescale:shards:${shardId}`, 'returnvalue');
            assert.match(String(returned), new RegExp(`"workerId":"${other.name}-`));
          } finally {
            redis.disconnect();
          }
          const late = first.logs().filter((l) => Date.parse(l.time) >= frozenAt && l.shardId === shardId);
          t.diagnostic(`frozen worker after SIGCONT: ${late.map((l) => l.msg).join(' | ')}`);
          assert.ok(
            late.some((l) => /shard dropped: its lock was lost|shard already complete/.test(l.msg)),
            late.map((l) => l.msg).join(' | '),
          );
        },
        ['--worker-silence', '8'],
      );
    },
  );

  it(
    'hands the shard back at once on SIGTERM and exits 0, with the default lock settings',
    { timeout: 180_000 },
    async (t: TestContext) => {
      await withCluster('sigterm', [], 2, async (cluster) => {
        const { runId } = await cluster.control.submit(submitRequest(cluster.output));
        const [first, other] = cluster.workers as [ServiceProcess, ServiceProcess];
        const shardId = await nextShardOf(first);
        // At once: a shard of 40 documents takes about 0.1 s once the model is loaded, so a pause here could let it
        // finish before the signal, and there would be nothing to hand back.
        const termAt = Date.now();
        first.kill('SIGTERM');
        const requeued = await first.waitForLog((l) => l.msg === 'shard requeued for shutdown', 10_000, 'requeue');
        const { code } = await first.exited;
        const exitedAt = Date.now();
        assert.equal(code, 0);
        const restarted = await restartedElsewhere(() => [other], shardId, termAt, 30_000);
        await finish(cluster, runId);
        const requeueMs = Date.parse(requeued.time) - termAt;
        t.diagnostic(
          `SIGTERM: shard back in the queue after ${requeueMs} ms, worker exited after ${exitedAt - termAt} ms, ` +
            `shard restarted elsewhere after ${restarted.at - termAt} ms ` +
            `(the other worker finished its own shard first)`,
        );
        assert.ok(requeueMs < 2_000, `requeue took ${requeueMs} ms`);
        // Far below the 20 s lock: the shard did not wait for the stall check.
        assert.ok(restarted.at - termAt < 10_000, `restart took ${restarted.at - termAt} ms`);
        await assertSameAsLocal(cluster.output);
        assert.equal((await cluster.control.workers()).workers.length, 1, 'the stopped worker deregistered');
        assert.ok(
          !cluster.coordinator.logs().some((l) => l.msg === 'shard handed back: its worker is gone'),
          'a worker stopping cleanly is not taken for dead',
        );
      });
    },
  );

  it('finishes when Redis crashes mid-run and restarts from its AOF', { timeout: 180_000 }, async () => {
    await withCluster('redis-restart', FAST_RECOVERY_ARGS, 2, async (cluster) => {
      const { runId } = await cluster.control.submit(submitRequest(cluster.output));
      await eventually(
        async () => ((await cluster.control.getRun(runId)).shardsDone >= 5 ? true : undefined),
        90_000,
        'five shards done',
      );
      await cluster.redis.restart({ signal: 'SIGKILL', downtimeMs: 1_500 });
      await finish(cluster, runId);
      await assertSameAsLocal(cluster.output);
    });
  });

  it(
    'finishes when the coordinator is killed mid-run and started again, with an honest docs/s after the restart',
    { timeout: 180_000 },
    async (t: TestContext) => {
      await withCluster('coordinator-restart', FAST_RECOVERY_ARGS, 2, async (cluster) => {
        const submittedAt = Date.now();
        const { runId } = await cluster.control.submit(submitRequest(cluster.output));
        await eventually(
          async () => ((await cluster.control.getRun(runId)).shardsDone >= 5 ? true : undefined),
          90_000,
          'five shards done',
        );
        cluster.coordinator.kill('SIGKILL');
        await cluster.coordinator.exited;
        cluster.control.close();
        // Workers go on without a coordinator; a new one picks the run up from Redis and merges it.
        await sleep(4_000);
        cluster.coordinator = await startCoordinator(cluster.redis.url, fixture);
        cluster.control = client(cluster.coordinator, fixture);
        // The rate right after the restart is rebuilt from completion times: the shards finished while the
        // coordinator was down count when they finished, not as a burst at the restart.
        const rates: string[] = [];
        for (let i = 0; i < 8; i++) {
          const status = await cluster.control.getRun(runId);
          if (status.state !== 'RUN_STATE_RUNNING' && status.state !== 'RUN_STATE_MERGING') break;
          const now = Date.now();
          const since = Math.max(now - 60_000, submittedAt);
          const rows = cluster.workers
            .flatMap((w) => w.logs())
            .filter((l) => l.msg === 'shard done' && Date.parse(l.time) > since)
            .reduce((n, l) => n + Number(l.rows), 0);
          const truth = rows / ((now - since) / 1000);
          rates.push(`${status.documentsPerSecond.toFixed(0)} (workers: ${truth.toFixed(0)})`);
          assert.ok(
            status.documentsPerSecond <= truth * 1.5 + 10,
            `docs/s after the restart ${status.documentsPerSecond.toFixed(1)}, workers did ${truth.toFixed(1)}`,
          );
          await sleep(500);
        }
        t.diagnostic(`docs/s after the coordinator restart: ${rates.join(', ')}`);
        await finish(cluster, runId);
        await assertSameAsLocal(cluster.output);
        assert.ok(cluster.coordinator.logs().some((l) => l.msg === 'resumed runs from redis'));
      });
    },
  );

  it(
    'keeps failed shards visible with their reason, and runs them again on retry once the cause is fixed',
    { timeout: 180_000 },
    async () => {
      await withCluster('failed', FAST_RECOVERY_ARGS, 0, async (cluster) => {
        // Planned against one file, which then changes under the run: every shard fails, without retries.
        const corpus = path.join(fixture.dir, 'failed-corpus.parquet');
        await copyFile(fixture.corpus, corpus);
        const { runId } = await cluster.control.submit({ ...submitRequest(cluster.output), inputs: [corpus] });
        const original = await readFile(corpus);
        await writeCorpus(corpus, 50, { rowGroupRows: 50 });
        cluster.workers.push(await startWorker(cluster.redis.url, 'failed-w1', FAST_RECOVERY_ARGS));
        const failed = await cluster.control.watch(runId, () => undefined, { intervalMs: 250 });
        assert.equal(failed.state, 'RUN_STATE_FAILED');
        assert.equal(failed.shardsFailed, SHARDS);
        assert.equal(failed.failures.length, 20, 'the status lists the first 20');
        assert.match(failed.error, new RegExp(`${SHARDS} of ${SHARDS} shards failed.*rescale retry`));
        for (const failure of failed.failures)
          assert.match(failure.reason, /^INPUT_INVALID: Corpus file .* changed since the shard plan was made/);
        // Not retried: the error says no retry can help.
        assert.equal(cluster.workers[0]?.logs().filter((l) => l.msg === 'shard started').length, SHARDS);

        await writeFile(corpus, original);
        const retried = await cluster.control.retryFailed(runId);
        assert.equal(retried.retried, SHARDS);
        assert.equal(retried.status?.state, 'RUN_STATE_RUNNING');
        await finish(cluster, runId);
        await assertSameAsLocal(cluster.output);
      });
    },
  );

  it('gives up with a non-zero exit when Redis stays unreachable past the bound', { timeout: 60_000 }, async () => {
    const redis = await startRedisServer();
    const worker = await startWorker(redis.url, 'orphan', ['--redis-timeout', '3']);
    try {
      const stoppedAt = Date.now();
      await redis.stop();
      const { code } = await worker.exited;
      assert.equal(code, 9, 'the documented exit code for an unreachable Redis');
      assert.ok(Date.now() - stoppedAt < 15_000);
      assert.ok(worker.logs().some((l) => l.msg === 'redis unreachable; waiting for it'));
      assert.ok(worker.logs().some((l) => /giving up: redis unreachable/.test(l.msg)));
    } finally {
      await worker.stop();
      await redis.stop();
    }
    // Unreachable from the start: bounded retries, then exit 9 naming the address.
    const never = spawnRescale('never', ['worker', '--redis', 'redis://127.0.0.1:1', '--redis-timeout', '2']);
    const { code } = await never.exited;
    assert.equal(code, 9);
    assert.ok(never.logs().some((l) => /cannot reach Redis at redis:\/\/127\.0\.0\.1:1/.test(l.msg)));
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
