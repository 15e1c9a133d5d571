// The fallback's hard budget: a request is sent only after its worst-case cost is reserved, so the total spent can
// never pass the cap; the reservation is then settled to what the response says it cost.
//
// FallbackBudget is the whole contract. This in-process ledger serves local mode (one process holds the budget);
// cluster mode shares one ledger in Redis (redis-budget.ts) between every process answering a run's documents.

import { randomUUID } from 'node:crypto';
import type { FallbackConfig } from '../contracts/fallback-config.js';

/** Money is counted in integer nano-dollars, so sums are exact and comparisons with the cap never drift. */
export const NANO_USD_PER_USD = 1e9;

export function toNanoUsd(usd: number): number {
  return Math.round(usd * NANO_USD_PER_USD);
}

export function fromNanoUsd(nano: number): number {
  return nano / NANO_USD_PER_USD;
}

/** The codebook's `fallback.budget` as the ledgers count it. */
export function budgetLimits(config: FallbackConfig): BudgetLimits {
  return {
    nanoUsd: config.budget.usd === null ? null : toNanoUsd(config.budget.usd),
    requests: config.budget.requests,
  };
}

export interface Reservation {
  readonly id: string;
  /** Worst-case cost of the request, in nano-USD. */
  readonly nanoUsd: number;
}

export interface BudgetSnapshot {
  /** Settled spending plus open reservations, nano-USD. */
  readonly committedNanoUsd: number;
  /** Requests reserved so far (each HTTP attempt is one). */
  readonly requests: number;
  readonly exhausted: boolean;
}

export interface FallbackBudget {
  /**
   * Reserves one request of at most `nanoUsd`. While other reservations are open and might settle for less, it
   * waits for them; when it cannot fit even so, it returns null and the budget is exhausted for good (every later
   * call returns null too), so documents after the first refusal are all over_budget, in order.
   */
  reserve(nanoUsd: number, signal?: AbortSignal): Promise<Reservation | null>;
  /** Replaces the reservation by what was actually spent (0 when the request cannot have been billed). */
  settle(reservation: Reservation, spentNanoUsd: number): void | Promise<void>;
  snapshot(): BudgetSnapshot;
}

export interface BudgetLimits {
  readonly nanoUsd: number | null;
  readonly requests: number | null;
}

/** One process's ledger, started from what earlier runs of the same output already spent (the audit log). */
export class InProcessBudget implements FallbackBudget {
  private spentNanoUsd: number;
  private requests: number;
  private readonly open = new Map<string, number>();
  private openNanoUsd = 0;
  private exhausted = false;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly limits: BudgetLimits,
    already: { readonly nanoUsd: number; readonly requests: number } = { nanoUsd: 0, requests: 0 },
  ) {
    this.spentNanoUsd = already.nanoUsd;
    this.requests = already.requests;
  }

  async reserve(nanoUsd: number, signal?: AbortSignal): Promise<Reservation | null> {
    for (;;) {
      signal?.throwIfAborted();
      if (this.exhausted) return null;
      if (this.fits(nanoUsd)) {
        const reservation = { id: randomUUID(), nanoUsd };
        this.open.set(reservation.id, nanoUsd);
        this.openNanoUsd += nanoUsd;
        this.requests += 1;
        return reservation;
      }
      // Open reservations can free money when they settle, never requests: wait only when money is short.
      if (this.open.size === 0 || !this.requestFits()) {
        this.exhausted = true;
        this.wake();
        return null;
      }
      await new Promise<void>((resolve) => {
        const onAbort = (): void => resolve();
        signal?.addEventListener('abort', onAbort, { once: true });
        this.waiters.push(() => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    }
  }

  settle(reservation: Reservation, spentNanoUsd: number): void {
    const reserved = this.open.get(reservation.id);
    if (reserved === undefined) return;
    this.open.delete(reservation.id);
    this.openNanoUsd -= reserved;
    this.spentNanoUsd += spentNanoUsd;
    this.wake();
  }

  snapshot(): BudgetSnapshot {
    return {
      committedNanoUsd: this.spentNanoUsd + this.openNanoUsd,
      requests: this.requests,
      exhausted: this.exhausted,
    };
  }

  private requestFits(): boolean {
    return this.limits.requests === null || this.requests + 1 <= this.limits.requests;
  }

  private fits(nanoUsd: number): boolean {
    if (!this.requestFits()) return false;
    return this.limits.nanoUsd === null || this.spentNanoUsd + this.openNanoUsd + nanoUsd <= this.limits.nanoUsd;
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}
