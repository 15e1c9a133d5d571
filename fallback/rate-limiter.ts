// The fallback's rate limit (requests and tokens per minute) and the shared pause after a 429.
//
// Seam for cluster mode: FallbackRateLimiter is the whole contract. InProcessRateLimiter serves local mode; in
// cluster mode the same limits must hold across every worker, e.g. a BullMQ fallback queue whose worker `limiter`
// caps requests per minute, or a Redis token bucket (one Lua script: refill by elapsed time, take or report the
// wait), with `pauseUntil` stored as a key every worker checks before sending.

import { setTimeout as sleep } from 'node:timers/promises';

export interface FallbackRateLimiter {
  /** Resolves when one request estimated at `tokens` tokens may start; rejects when the signal aborts. */
  acquire(tokens: number, signal?: AbortSignal): Promise<void>;
  /** Holds every caller until `epochMs` (a 429's Retry-After applies to the account, not to one request). */
  pauseUntil(epochMs: number): void;
}

export interface RateLimits {
  readonly requestsPerMinute: number | null;
  readonly tokensPerMinute: number | null;
}

/** Continuous token buckets, full at start, refilled at the per-minute rate; callers are served in arrival order. */
export class InProcessRateLimiter implements FallbackRateLimiter {
  private requestTokens: number;
  private tokenTokens: number;
  private last: number;
  private pausedUntil = 0;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly limits: RateLimits,
    private readonly now: () => number = Date.now,
  ) {
    this.requestTokens = limits.requestsPerMinute ?? 0;
    this.tokenTokens = limits.tokensPerMinute ?? 0;
    this.last = now();
  }

  acquire(tokens: number, signal?: AbortSignal): Promise<void> {
    const turn = this.queue.then(() => this.take(tokens, signal));
    // The next caller waits for this one whatever happens to it.
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  pauseUntil(epochMs: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, epochMs);
  }

  private async take(tokens: number, signal?: AbortSignal): Promise<void> {
    const { requestsPerMinute, tokensPerMinute } = this.limits;
    // A request larger than a whole minute's tokens waits for a full bucket rather than forever.
    const wanted = tokensPerMinute === null ? 0 : Math.min(tokens, tokensPerMinute);
    for (;;) {
      signal?.throwIfAborted();
      const now = this.now();
      if (now < this.pausedUntil) {
        await sleep(this.pausedUntil - now, undefined, signal ? { signal } : {});
        continue;
      }
      this.refill(now);
      const requestWait =
        requestsPerMinute === null || this.requestTokens >= 1
          ? 0
          : ((1 - this.requestTokens) * 60_000) / requestsPerMinute;
      const tokenWait =
        tokensPerMinute === null || this.tokenTokens >= wanted
          ? 0
          : ((wanted - this.tokenTokens) * 60_000) / tokensPerMinute;
      const wait = Math.max(requestWait, tokenWait);
      if (wait <= 0) {
        if (requestsPerMinute !== null) this.requestTokens -= 1;
        if (tokensPerMinute !== null) this.tokenTokens -= wanted;
        return;
      }
      await sleep(Math.ceil(wait), undefined, signal ? { signal } : {});
    }
  }

  private refill(now: number): void {
    const elapsed = Math.max(0, now - this.last);
    this.last = now;
    const { requestsPerMinute, tokensPerMinute } = this.limits;
    if (requestsPerMinute !== null)
      this.requestTokens = Math.min(requestsPerMinute, this.requestTokens + (elapsed * requestsPerMinute) / 60_000);
    if (tokensPerMinute !== null)
      this.tokenTokens = Math.min(tokensPerMinute, this.tokenTokens + (elapsed * tokensPerMinute) / 60_000);
  }
}
