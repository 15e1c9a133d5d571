// The serial decode strategy: the documents of a group are evaluated one after another, each in its own decode call.

import type { DecodeStrategy } from './decode-strategy.js';

/**
 * Runs one evaluation per sequence, one after another: every document is decoded alone, exactly as with
 * `sequences: 1`, whatever the group. Used for the shared prefix, and for groups where the caller asks for it
 * (benchmarks, the parity test); batched-decode.ts is the default for several sequences.
 */
export const serialDecode: DecodeStrategy = {
  name: 'serial',
  async each<T, R>(group: readonly T[], evaluate: (item: T, slot: number) => Promise<R>): Promise<R[]> {
    const results: R[] = [];
    for (const [slot, item] of group.entries()) results.push(await evaluate(item, slot));
    return results;
  },
};
