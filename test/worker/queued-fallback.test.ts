// QueuedFallback.open on every path: a Redis that refuses, one that accepts and never answers, a worker that
// stops while it waits, and a live one. A failed open must reject in bounded time and leave no socket or timer.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { RescaleError } from '../../contracts/errors.js';
import { parseRedisUrl } from '../../contracts/redis-connection.js';
import { startRedisServer, type RedisServerHandle } from '../../scripts/harness/redis-server.js';
import { QueuedFallback } from '../../worker/queued-fallback.js';
import { fallbackSection, sentimentCodebook } from '../helpers/fallback.js';

const config = (() => {
  const fallback = sentimentCodebook(fallbackSection('http://127.0.0.1:9/v1')).fallback;
  if (fallback === null) throw new Error('the test codebook has no fallback section');
  return fallback;
})();

/** Sockets and ref'd timers: what keeps a process alive after a failed open. */
function liveHandles(): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === 'TCPSocketWrap' || kind === 'Timeout').length;
}

/** Waits (up to 2 s) until no more handles are live than `before`; a socket closes a tick after disconnect(). */
async function assertNothingLeftOpen(before: number): Promise<void> {
  for (let i = 0; i < 40 && liveHandles() > before; i++) await sleep(50);
  assert.ok(liveHandles() <= before, `handles left open: ${process.getActiveResourcesInfo().join(', ')}`);
}

/** A port on which nothing listens (bound, then released). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

let redis: RedisServerHandle;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  redis.resume();
  await redis.stop();
});

describe('QueuedFallback.open', () => {
  it('rejects with a retryable error naming --redis when nothing listens, and leaves nothing open', async () => {
    const target = parseRedisUrl(`redis://127.0.0.1:${await closedPort()}`);
    const before = liveHandles();
    const started = Date.now();
    await assert.rejects(
      QueuedFallback.open(target, `run-${randomUUID()}`, config, { timeoutMs: 500 }),
      (error: unknown) => {
        assert.ok(error instanceof RescaleError);
        assert.equal(error.code, 'SERVICE_UNAVAILABLE');
        assert.equal(error.retryable, true);
        assert.match(error.message, /cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+.*--redis/);
        return true;
      },
    );
    assert.ok(Date.now() - started < 5_000, 'the open gave up within its bound');
    await assertNothingLeftOpen(before);
  });

  it('gives up on a Redis that accepts the connection but never answers, and leaves nothing open', async () => {
    const before = liveHandles();
    redis.pause();
    try {
      await assert.rejects(
        QueuedFallback.open(parseRedisUrl(redis.url), `run-${randomUUID()}`, config, { timeoutMs: 500 }),
        { code: 'SERVICE_UNAVAILABLE' },
      );
    } finally {
      redis.resume();
    }
    await assertNothingLeftOpen(before);
  });

  it('rejects with the reason of the signal when the worker stops while it waits', async () => {
    const target = parseRedisUrl(`redis://127.0.0.1:${await closedPort()}`);
    const before = liveHandles();
    const stopping = new AbortController();
    const opening = QueuedFallback.open(target, `run-${randomUUID()}`, config, {
      timeoutMs: 60_000,
      signal: stopping.signal,
    });
    stopping.abort(new RescaleError('ABORTED', 'worker stopping (SIGTERM)'));
    await assert.rejects(opening, { code: 'ABORTED', message: 'worker stopping (SIGTERM)' });
    await assertNothingLeftOpen(before);
  });

  it('opens on a live Redis, and closes when its scope ends', async () => {
    const before = liveHandles();
    {
      await using fallback = await QueuedFallback.open(parseRedisUrl(redis.url), `run-${randomUUID()}`, config, {
        timeoutMs: 5_000,
      });
      assert.match(fallback.runId, /^run-/);
    }
    await assertNothingLeftOpen(before);
  });
});
