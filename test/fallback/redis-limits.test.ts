// The fallback's cluster-wide limits on a real redis-server: one budget ledger and one rate limit shared by
// several processes (separate connections here). The cap is never passed however reservations interleave, a
// dead process's reservation does not hold callers forever, and the token buckets and the 429 pause hold across
// connections.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisBudget } from '../../fallback/redis-budget.js';
import { RedisRateLimiter } from '../../fallback/redis-rate-limiter.js';
import { startRedisServer, type RedisServerHandle } from '../../scripts/harness/redis-server.js';

let server: RedisServerHandle;
const connections: Redis[] = [];

function connect(): Redis {
  const redis = new Redis({ host: server.host, port: server.port, maxRetriesPerRequest: 1 });
  connections.push(redis);
  return redis;
}

before(async () => {
  server = await startRedisServer();
});
after(async () => {
  for (const redis of connections) redis.disconnect();
  await server.stop();
});

describe('RedisBudget', () => {
  it(
    'never lets reservations from several processes pass the cap, ' + 'and refuses for good once it cannot fit',
    async () => {
      const limits = { nanoUsd: 10_000, requests: null };
      const budgets = await Promise.all(
        [0, 1, 2].map(() => RedisBudget.open(connect(), 'run-cap', limits, { nanoUsd: 0, requests: 0 }, { pollMs: 5 })),
      );
      let spent = 0;
      let granted = 0;
      let refused = 0;
      let firstRefusal = Infinity;
      let order = 0;
      // 3 processes x 40 callers, each reserving 500 and settling at a random cost up to the reservation.
      await Promise.all(
        budgets.flatMap((budget) =>
          Array.from({ length: 40 }, async () => {
            const reservation = await budget.reserve(500);
            const at = order++;
            if (reservation === null) {
              refused++;
              firstRefusal = Math.min(firstRefusal, at);
              return;
            }
            granted++;
            assert.ok(granted - refused >= 0);
            await sleep(Math.random() * 20);
            const cost = Math.floor(Math.random() * 501);
            spent += cost;
            await budget.settle(reservation, cost);
          }),
        ),
      );
      assert.equal(granted + refused, 120);
      assert.ok(spent <= limits.nanoUsd, `spent ${spent} > cap ${limits.nanoUsd}`);
      assert.ok(granted >= 20, `at least the cap's worth of reservations is granted (${granted})`);
      assert.ok(refused > 0);
      const snapshot = await budgets[0]!.refresh();
      assert.equal(snapshot.committedNanoUsd, spent, 'the ledger holds exactly what was settled');
      assert.equal(snapshot.exhausted, true);
      assert.equal(await budgets[1]!.reserve(1), null, 'exhausted for good');
      assert.ok(Number.isFinite(firstRefusal));
    },
  );

  it('starts from what the audit says was already spent, and counts requests against a request cap', async () => {
    const budget = await RedisBudget.open(
      connect(),
      'run-ledger',
      { nanoUsd: 1_000, requests: 3 },
      { nanoUsd: 900, requests: 1 },
    );
    assert.equal(await budget.reserve(200), null, '900 + 200 > 1000');
    const other = await RedisBudget.open(
      connect(),
      'run-requests',
      { nanoUsd: null, requests: 3 },
      { nanoUsd: 0, requests: 1 },
    );
    const a = await other.reserve(10);
    const b = await other.reserve(10);
    assert.ok(a !== null && b !== null);
    assert.equal(await other.reserve(10), null, 'the fourth request passes the cap of 3');
    // A second open (another process, a restarted coordinator) joins the ledger as it stands.
    const joined = await RedisBudget.open(
      connect(),
      'run-requests',
      { nanoUsd: null, requests: 3 },
      { nanoUsd: 0, requests: 0 },
    );
    assert.equal((await joined.refresh()).requests, 3);
  });

  it(
    'counts a dead process’s reservation as spent once stale, ' + 'so waiting callers go on and the cap holds',
    async () => {
      const limits = { nanoUsd: 1_000, requests: null };
      const dead = await RedisBudget.open(
        connect(),
        'run-stale',
        limits,
        { nanoUsd: 0, requests: 0 },
        { staleMs: 300, pollMs: 10 },
      );
      const orphan = await dead.reserve(800); // never settled: its process "died"
      assert.ok(orphan !== null);
      const live = await RedisBudget.open(
        connect(),
        'run-stale',
        limits,
        { nanoUsd: 0, requests: 0 },
        { staleMs: 300, pollMs: 10 },
      );
      const started = performance.now();
      const waited = await live.reserve(300); // 800 open + 300 > 1000: waits for the orphan to settle or go stale
      const ms = performance.now() - started;
      assert.equal(waited, null, 'the stale reservation counts as spent: 800 + 300 > 1000');
      assert.ok(ms >= 250 && ms < 5_000, `waited ${ms.toFixed(0)} ms`);
      assert.equal((await live.refresh()).committedNanoUsd, 800);
      const small = await RedisBudget.open(
        connect(),
        'run-stale-2',
        limits,
        { nanoUsd: 0, requests: 0 },
        { staleMs: 300, pollMs: 10 },
      );
      const held = await small.reserve(800);
      assert.ok(held !== null);
      const pending = small.reserve(300);
      await sleep(50);
      await small.settle(held, 100); // settles for less: the waiting caller fits
      assert.ok((await pending) !== null);
    },
  );
});

describe('RedisRateLimiter', () => {
  it('holds requests per minute across processes: a full bucket at start, then the refill rate', async () => {
    const limits = { requestsPerMinute: 1_200, tokensPerMinute: null }; // 20 a second after a burst of 1200
    const limiters = [
      new RedisRateLimiter(connect(), 'endpoint-rpm', limits),
      new RedisRateLimiter(connect(), 'endpoint-rpm', limits),
    ];
    const started = performance.now();
    const times: number[] = [];
    await Promise.all(
      limiters.flatMap((limiter) =>
        Array.from({ length: 630 }, async () => {
          await limiter.acquire(1);
          times.push(performance.now() - started);
        }),
      ),
    );
    times.sort((a, b) => a - b);
    const seconds = (times[times.length - 1] as number) / 1000;
    // 1260 requests: 1200 at once, 60 more at 20/s = 3 s.
    assert.ok(seconds >= 2.7, `1260 requests took ${seconds.toFixed(2)} s, expected at least 2.7 s`);
    assert.ok(seconds < 15, `1260 requests took ${seconds.toFixed(2)} s`);
    for (const [k, t] of times.entries())
      assert.ok(
        k + 1 <= 1_200 + Math.ceil((t / 1000) * 20) + 1,
        `request ${k + 1} at ${t.toFixed(0)} ms passes the rate`,
      );
  });

  it('holds tokens per minute, and a 429 pause set by one process holds the others', async () => {
    const tokens = new RedisRateLimiter(connect(), 'endpoint-tpm', {
      requestsPerMinute: null,
      tokensPerMinute: 60_000,
    }); // 1000 tokens/s
    const startedTokens = performance.now();
    await tokens.acquire(60_000); // the whole bucket
    await tokens.acquire(1_000); // one second of refill
    assert.ok(performance.now() - startedTokens >= 900);

    const a = new RedisRateLimiter(connect(), 'endpoint-pause', { requestsPerMinute: null, tokensPerMinute: null });
    const b = new RedisRateLimiter(connect(), 'endpoint-pause', { requestsPerMinute: null, tokensPerMinute: null });
    a.pauseUntil(Date.now() + 600);
    await a.acquire(1); // a's own next request waits too
    const started = performance.now();
    b.pauseUntil(Date.now() + 400);
    await sleep(20);
    await b.acquire(1);
    assert.ok(performance.now() - started >= 350, 'b waited for the pause');
  });
});
