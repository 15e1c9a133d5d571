// The fallback's hard budget shared by every process that answers a run's routed documents (cluster mode): the
// same contract as InProcessBudget (reserve the worst case before sending, settle to the billed cost), kept in
// Redis and changed only by Lua scripts, so concurrent reservations from several processes can never pass the cap.
//
// A reservation whose process died is never released (the request may have been billed); once it is older than
// `staleMs` it is counted as spent, so waiting callers are not held forever and the cap still holds.

import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { fallbackKeys } from '../contracts/fallback-queue.js';
import type { LedgerTotals } from './audit-log.js';
import type { BudgetLimits, BudgetSnapshot, FallbackBudget, Reservation } from './budget.js';

/** Returns 1 (reserved), 0 (wait: open reservations may settle for less), -1 (exhausted for good). */
const RESERVE =
  `
local budget, reservations = KEYS[1], KEYS[2]
local id, amount, capUsd, capRequests, staleMs = ` +
  `ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- A reservation resent after a reconnect is already held: reserving it twice would leak its amount.
if redis.call('HEXISTS', reservations, id) == 1 then return 1 end
if redis.call('HGET', budget, 'exhausted') == '1' then return -1 end
local function fits()
  local spent = tonumber(redis.call('HGET', budget, 'spent') or '0')
  local open = tonumber(redis.call('HGET', budget, 'open') or '0')
  local requests = tonumber(redis.call('HGET', budget, 'requests') or '0')
  local requestFits = capRequests < 0 or requests + 1 <= capRequests
  local moneyFits = capUsd < 0 or spent + open + amount <= capUsd
  return requestFits, moneyFits
end
local requestFits, moneyFits = fits()
if requestFits and moneyFits then
  redis.call('HINCRBY', budget, 'open', amount)
  redis.call('HINCRBY', budget, 'requests', 1)
  redis.call('HSET', reservations, id, amount .. ':' .. now)
  return 1
end
if requestFits then
  -- Reservations of processes that died count as spent (they may have been billed).
  local entries = redis.call('HGETALL', reservations)
  for i = 1, #entries, 2 do
    local value = entries[i + 1]
    local sep = string.find(value, ':')
    local reserved, at = tonumber(string.sub(value, 1, sep - 1)), tonumber(string.sub(value, sep + 1))
    if now - at > staleMs then
      redis.call('HDEL', reservations, entries[i])
      redis.call('HINCRBY', budget, 'open', -reserved)
      redis.call('HINCRBY', budget, 'spent', reserved)
    end
  end
end
if (not requestFits) or redis.call('HLEN', reservations) == 0 then
  redis.call('HSET', budget, 'exhausted', '1')
  return -1
end
return 0
`;

/**
 * Moves a reservation from open to spent at its billed cost; unknown ids (already settled or reclaimed) are ignored.
 */
const SETTLE = `
local budget, reservations = KEYS[1], KEYS[2]
local id, spentNow = ARGV[1], tonumber(ARGV[2])
local value = redis.call('HGET', reservations, id)
if not value then return 0 end
local reserved = tonumber(string.sub(value, 1, string.find(value, ':') - 1))
redis.call('HDEL', reservations, id)
redis.call('HINCRBY', budget, 'open', -reserved)
redis.call('HINCRBY', budget, 'spent', spentNow)
return 1
`;

export interface RedisBudgetOptions {
  /** Open reservations older than this count as spent (default 15 min: far beyond any request's timeout). */
  readonly staleMs?: number;
  /** How often a caller waiting for open reservations to settle asks again (default 100 ms). */
  readonly pollMs?: number;
}

export class RedisBudget implements FallbackBudget {
  private readonly keys: readonly [string, string];
  private readonly staleMs: number;
  private readonly pollMs: number;
  private last: BudgetSnapshot = { committedNanoUsd: 0, requests: 0, exhausted: false };

  private constructor(
    private readonly redis: Redis,
    runId: string,
    private readonly limits: BudgetLimits,
    options: RedisBudgetOptions,
  ) {
    this.keys = [fallbackKeys.budget(runId), fallbackKeys.reservations(runId)];
    this.staleMs = options.staleMs ?? 15 * 60_000;
    this.pollMs = options.pollMs ?? 100;
  }

  /**
   * The run's ledger; created on first use from what earlier runs of the same output spent (`already`, from the
   * audit file). Later opens — other processes, a restarted coordinator — join the ledger as it stands.
   */
  static async open(
    redis: Redis,
    runId: string,
    limits: BudgetLimits,
    already: LedgerTotals,
    options: RedisBudgetOptions = {},
  ): Promise<RedisBudget> {
    const budget = new RedisBudget(redis, runId, limits, options);
    const [key] = budget.keys;
    await redis.eval(
      `if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'open', 0, ` +
        `'requests', ARGV[2], 'exhausted', 0) end return 1`,
      1,
      key,
      String(already.nanoUsd),
      String(already.requests),
    );
    await budget.refresh();
    return budget;
  }

  /** Forgets a run's ledger (a run submitted again with overwrite starts from its audit file). */
  static async reset(redis: Redis, runId: string): Promise<void> {
    await redis.del(fallbackKeys.budget(runId), fallbackKeys.reservations(runId));
  }

  async reserve(nanoUsd: number, signal?: AbortSignal): Promise<Reservation | null> {
    const id = randomUUID();
    for (;;) {
      signal?.throwIfAborted();
      const result = Number(
        await this.redis.eval(
          RESERVE,
          2,
          ...this.keys,
          id,
          String(nanoUsd),
          String(this.limits.nanoUsd ?? -1),
          String(this.limits.requests ?? -1),
          String(this.staleMs),
        ),
      );
      if (result === 1) return { id, nanoUsd };
      if (result === -1) {
        await this.refresh();
        return null;
      }
      await sleep(this.pollMs, undefined, signal ? { signal } : {});
    }
  }

  async settle(reservation: Reservation, spentNanoUsd: number): Promise<void> {
    await this.redis.eval(SETTLE, 2, ...this.keys, reservation.id, String(spentNanoUsd));
  }

  /** The ledger as of the last refresh (open, a refusal, or an explicit refresh() as before reading stats). */
  snapshot(): BudgetSnapshot {
    return this.last;
  }

  async refresh(): Promise<BudgetSnapshot> {
    const [spent, open, requests, exhausted] = await this.redis.hmget(
      this.keys[0],
      'spent',
      'open',
      'requests',
      'exhausted',
    );
    this.last = {
      committedNanoUsd: Number(spent ?? 0) + Number(open ?? 0),
      requests: Number(requests ?? 0),
      exhausted: exhausted === '1',
    };
    return this.last;
  }
}
