// The cluster worker stopping while it loads a model: SIGTERM (close) must abort the load and hand the shard back
// at once instead of waiting for the load to finish. In process, against a real Redis, a real coordinator and real
// shard jobs; the model load is a provider that takes a minute unless aborted (the real cache passes the same
// signal to node-llama-cpp's loadSignal).

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadCodebook } from '../../contracts/codebook.js';
import { codebookResultHash } from '../../contracts/result-hash.js';
import { RescaleError, isRescaleError } from '../../contracts/errors.js';
import { quickFingerprint } from '../../contracts/file-digest.js';
import { silentLogger } from '../../contracts/logger.js';
import { parseRedisUrl } from '../../contracts/redis-connection.js';
import { ShardQueue } from '../../coordinator/bullmq-shard-queue.js';
import { RunCoordinator } from '../../coordinator/run-coordinator.js';
import { clusterFixture, type ClusterFixture } from '../../scripts/harness/cluster.js';
import { startRedisServer } from '../../scripts/harness/redis-server.js';
import { ScorerCache, type LoadedScorer, type ScorerProvider, type ScorerRequest } from '../../worker/scorer-cache.js';
import { ShardWorker } from '../../worker/shard-worker.js';

/** A model load that takes a minute, unless the request's signal aborts it. */
class SlowLoad implements ScorerProvider {
  readonly loadedModel = null;
  private markStarted: () => void = () => undefined;
  readonly started = new Promise<void>((resolve) => (this.markStarted = resolve));

  scorerFor(request: ScorerRequest): Promise<LoadedScorer> {
    this.markStarted();
    return new Promise((_resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the load ran to its end')), 60_000);
      request.signal?.addEventListener('abort', () => {
        clearTimeout(timer);
        reject(request.signal?.reason);
      });
    });
  }

  async dispose(): Promise<void> {}
}

let fixture: ClusterFixture;

before(async () => {
  fixture = await clusterFixture(80, { rowGroupRows: 40 });
});

after(async () => {
  await fixture?.cleanup();
});

describe('ShardWorker stopping during a model load', () => {
  it('aborts the load and hands the shard back at once, with no attempt used', { timeout: 90_000 }, async () => {
    const redis = await startRedisServer();
    const target = parseRedisUrl(redis.url);
    const coordinator = await RunCoordinator.start({ redis: target, env: {} });
    const queue = new ShardQueue(target, silentLogger);
    const scorers = new SlowLoad();
    try {
      await coordinator.submit({
        codebook: fixture.codebook,
        inputs: [fixture.corpus],
        output: path.join(fixture.dir, 'load', 'results.parquet'),
        shardRows: 40,
      });
      const worker = await ShardWorker.start({ redis: target, scorers, shutdownGraceMs: 15_000 });
      await scorers.started;
      const stoppedAt = performance.now();
      const outcome = await worker.close('SIGTERM');
      const ms = performance.now() - stoppedAt;
      assert.equal(outcome, 'requeued');
      assert.ok(ms < 3_000, `close took ${Math.round(ms)} ms`);
      const waiting = await queue.queue.getWaiting();
      assert.equal(waiting.length, 2, 'both shards wait in the queue for another worker');
      for (const job of waiting) assert.equal(job.attemptsMade, 0, 'no attempt used');
    } finally {
      await queue.close();
      await coordinator.close();
      await redis.stop();
    }
  });

  it('the scorer cache refuses to start a load once the worker is stopping', { timeout: 60_000 }, async () => {
    const codebook = await loadCodebook(fixture.codebook);
    const fingerprints = { model: await quickFingerprint(codebook.model.path), adapters: [] };
    const cache = new ScorerCache();
    await assert.rejects(
      cache.scorerFor({
        codebook,
        codebookHash: codebookResultHash(codebook, fingerprints, { sequences: 1 }, null),
        sequences: 1,
        signal: AbortSignal.abort(new RescaleError('ABORTED', 'worker stopping')),
      }),
      (error: unknown) => isRescaleError(error, 'ABORTED'),
    );
    assert.equal(cache.loadedModel, null, 'no model loaded');
    await cache.dispose();
  });
});
