// Batched decoding: the evaluations of one phase, one per document of a group, each on its own sequence, are
// submitted together and decoded by llama.cpp in one call. The layout is checked after every phase, so it is always
// the group (a pure function of the documents' order and the group size), never what timing happened to collect.

import { RescaleError } from '../../contracts/errors.js';
import type { DecodeStrategy } from './decode-strategy.js';
import type { SequencePool } from './sequence-pool.js';

/**
 * Submits every evaluation of a group at once; node-llama-cpp batches evaluations queued on several sequences of one
 * context into one decode (correct since 3.22.0, which locks the context while a sequence reads its logits).
 *
 * Each `evaluate` must queue exactly one evaluation, synchronously (no `await` before its `controlledEvaluate`), so
 * all of a group's evaluations are queued before the dispatch on the next event-loop cycle. The strategy first waits
 * until no decode is running on the context, then checks what was dispatched: one dispatch whose first decode saw
 * every evaluation of the group. Anything else fails the group (ENGINE_FAILED, retryable) instead of giving
 * probabilities from a layout that depended on timing.
 */
export class BatchedDecode implements DecodeStrategy {
  readonly name = 'batched';

  constructor(private readonly pool: SequencePool) {}

  async each<T, R>(group: readonly T[], evaluate: (item: T, slot: number) => Promise<R>): Promise<R[]> {
    if (group.length > this.pool.sequenceCount)
      throw new RescaleError(
        'INTERNAL',
        `a group of ${group.length} evaluations exceeds the ${this.pool.sequenceCount} sequences`,
      );
    await this.pool.settled();
    this.pool.dispatches.begin();
    const results = await Promise.all(group.map((item, slot) => evaluate(item, slot)));
    const { schedules, decodes } = this.pool.dispatches.record();
    const first = decodes[0];
    if (schedules !== 1 || first === undefined || first.queued !== group.length) {
      const seen = decodes.map((d) => d.queued).join(', ');
      throw new RescaleError(
        'INTERNAL',
        `batched decoding expected the ${group.length} evaluations of a group in one dispatch, got ${schedules} ` +
          `dispatch(es) seeing [${seen}] evaluations; this is a bug: report it, and use sequences: 1 meanwhile`,
      );
    }
    return results;
  }
}
