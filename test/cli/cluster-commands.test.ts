// The `rescale worker` service when its metrics server cannot start: it must exit with an error naming the
// option, and close what it opened (its registration in Redis included), not run on without metrics.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { clusterKeys } from '../../contracts/shard-queue.js';
import { spawnRescale } from '../../scripts/harness/cluster.js';
import { startRedisServer, type RedisServerHandle } from '../../scripts/harness/redis-server.js';

let redis: RedisServerHandle;
let taken: net.Server;
let port: number;

before(async () => {
  redis = await startRedisServer();
  taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  port = (taken.address() as net.AddressInfo).port;
});
after(async () => {
  await new Promise<void>((resolve) => taken.close(() => resolve()));
  await redis.stop();
});

describe('rescale worker', () => {
  it('exits non-zero naming --metrics when the metrics port is taken, and deregisters from Redis', async () => {
    const worker = spawnRescale(
      'worker',
      ['worker', '--name', 'metrics-clash', '--threads', '1', '--metrics', `127.0.0.1:${port}`],
      {
        RESCALE_REDIS_URL: redis.url,
      },
    );
    try {
      const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 60_000).unref());
      const exit = await Promise.race([worker.exited, timeout]);
      if (exit === 'timeout')
        assert.fail(
          `the worker kept running; last log lines:\n${worker
            .logs()
            .slice(-10)
            .map((l) => JSON.stringify(l))
            .join('\n')}`,
        );
      assert.equal(exit.code, 2, 'CONFIG_INVALID exits 2');
      const message = worker.logs().find((line) => line.level === 'raw' && line.msg.startsWith('rescale: '));
      assert.match(
        message?.msg ?? '',
        new RegExp(`cannot serve metrics on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*--metrics`),
      );
      assert.ok(
        worker.logs().some((line) => line.msg === 'worker ready'),
        'the worker had registered before the metrics server failed',
      );
      assert.ok(
        worker.logs().some((line) => line.msg === 'stopped'),
        'the worker closed gracefully',
      );
    } finally {
      await worker.stop();
    }
    const client = new Redis({ host: redis.host, port: redis.port, maxRetriesPerRequest: 1 });
    try {
      assert.equal(await client.zcard(clusterKeys.workers), 0, 'no worker left registered');
    } finally {
      client.disconnect();
    }
  });
});

describe('the Redis URL of a cluster service', () => {
  it('refuses a password with a bare "%" (exit 2) naming the variable, not the password, without a stack', async () => {
    const worker = spawnRescale('worker', ['worker', '--name', 'bad-url', '--threads', '1'], {
      RESCALE_REDIS_URL: 'redis://:pa%ss-w0rd-%zz@127.0.0.1:6379',
    });
    const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 60_000).unref());
    const exit = await Promise.race([worker.exited, timeout]);
    if (exit === 'timeout') {
      worker.child.kill('SIGKILL');
      assert.fail('the worker kept running');
    }
    assert.equal(exit.code, 2, 'CONFIG_INVALID exits 2');
    const text = worker
      .logs()
      .map((line) => JSON.stringify(line))
      .join('\n');
    const message = worker.logs().find((line) => line.level === 'raw' && line.msg.startsWith('rescale: '));
    assert.match(message?.msg ?? '', /RESCALE_REDIS_URL.*password.*%25/);
    assert.ok(!text.includes('w0rd'), `the password is in the output: ${text}`);
    assert.ok(!/\n\s+at /.test(text) && !text.includes('URIError'), `a stack trace was printed: ${text}`);
  });
});
