// The fallback's rate limit shared by every process calling one endpoint + model (cluster mode): the same
// continuous token buckets as InProcessRateLimiter (requests and tokens per minute, full at start, refilled at
// the per-minute rate) and the same account-wide pause after a 429, kept in one Redis hash and changed only by a
// Lua script on Redis's clock, so the limits hold across processes and machines whatever their clocks say.

import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { fallbackKeys } from '../contracts/fallback-queue.js';
import type { FallbackRateLimiter, RateLimits } from './rate-limiter.js';

/** Takes one request of `wanted` tokens and returns 0, or returns the milliseconds to wait before asking again. */
const TAKE = `
local key = KEYS[1]
local rpm, tpm, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', key, 'requests', 'tokens', 'at', 'paused_until')
local paused = tonumber(state[4] or '0')
if now < paused then return math.ceil(paused - now) end
local requests = tonumber(state[1] or rpm)
local tokens = tonumber(state[2] or tpm)
local at = tonumber(state[3] or now)
local elapsed = math.max(0, now - at)
if rpm >= 0 then requests = math.min(rpm, requests + elapsed * rpm / 60000) end
if tpm >= 0 then tokens = math.min(tpm, tokens + elapsed * tpm / 60000) end
local wait = 0
if rpm >= 0 and requests < 1 then wait = math.max(wait, (1 - requests) * 60000 / rpm) end
if tpm >= 0 and tokens < wanted then wait = math.max(wait, (wanted - tokens) * 60000 / tpm) end
if wait <= 0 then
  if rpm >= 0 then requests = requests - 1 end
  if tpm >= 0 then tokens = tokens - wanted end
end
redis.call('HSET', key, 'requests', tostring(requests), 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', key, 3600000)
if wait <= 0 then return 0 end
return math.ceil(wait)
`;

const PAUSE = `
local current = tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0')
if tonumber(ARGV[1]) > current then redis.call('HSET', KEYS[1], 'paused_until', ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], 3600000)
return 1
`;

/** The Redis key suffix for an endpoint + model: rate limits belong to the account and model, not to one run. */
export function rateLimitKey(baseUrl: string, model: string): string {
  return createHash('sha256').update(baseUrl).update('\0').update(model).digest('hex').slice(0, 24);
}

export class RedisRateLimiter implements FallbackRateLimiter {
  private readonly key: string;
  private pending: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly redis: Redis,
    endpointKey: string,
    private readonly limits: RateLimits,
  ) {
    this.key = fallbackKeys.rate(endpointKey);
  }

  async acquire(tokens: number, signal?: AbortSignal): Promise<void> {
    const { requestsPerMinute, tokensPerMinute } = this.limits;
    await this.pending; // a pause this process just set applies to its next request
    // A request larger than a whole minute's tokens waits for a full bucket rather than forever.
    const wanted = tokensPerMinute === null ? 0 : Math.min(tokens, tokensPerMinute);
    for (;;) {
      signal?.throwIfAborted();
      const wait = Number(
        await this.redis.eval(
          TAKE,
          1,
          this.key,
          String(requestsPerMinute ?? -1),
          String(tokensPerMinute ?? -1),
          String(wanted),
        ),
      );
      if (wait <= 0) return;
      // Ask again when the bucket should have refilled; other processes may take it first, then we wait again.
      await sleep(Math.min(wait, 5_000), undefined, signal ? { signal } : {});
    }
  }

  pauseUntil(epochMs: number): void {
    // Redis's clock is the reference; translate the local deadline into a delay from now on Redis's clock.
    const delay = Math.max(0, epochMs - Date.now());
    const write = this.redis
      .time()
      .then(([seconds, micros]) =>
        this.redis.eval(PAUSE, 1, this.key, String(Number(seconds) * 1000 + Number(micros) / 1000 + delay)),
      )
      .catch(() => undefined); // a lost pause only means the next request may see another 429
    this.pending = write;
  }
}
