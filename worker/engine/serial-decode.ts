// Today's decode strategy: the documents of a group are evaluated one after another, each in its own decode call.

import type { DecodeStrategy } from './decode-strategy.js';

/**
 * Runs one evaluation per sequence, one after another. Evaluations submitted together on several sequences of
 * one context are batched by node-llama-cpp into one decode — the point of several sequences — but under load
 * (measured: 2 cores, load average 9) a document then received another sequence's next-token distribution, so
 * until that is fixed each document is decoded alone, in order: always correct and deterministic.
 */
export const serialDecode: DecodeStrategy = {
  name: 'serial',
  async each<T, R>(group: readonly T[], evaluate: (item: T, slot: number) => Promise<R>): Promise<R[]> {
    const results: R[] = [];
    for (const [slot, item] of group.entries()) results.push(await evaluate(item, slot));
    return results;
  },
};
