// Answer walks: scoring one prompt's answers is a sequence of next-token reads (the root right after the prompt, then
// inner nodes of a label trie or branches of a list grammar), each after rewinding the prompt's sequence to a
// position. A walk is a generator of those reads; walks on different sequences advance in lockstep, one read per
// still-walking sequence per phase, each phase laid out by the decode strategy, so the layout depends only on the
// walks given (documents, prompts, slots), never on timing.

import type { Token } from 'node-llama-cpp';
import { RescaleError } from '../../contracts/errors.js';
import type { DecodeStrategy } from './decode-strategy.js';
import { readNext } from './label-trie-scorer.js';
import type { SequencePool } from './sequence-pool.js';

/** One evaluation a walk asks for: keep the first `position` tokens, evaluate `tokens`, read `wanted` next. */
export interface ReadRequest {
  readonly position: number;
  readonly tokens: readonly Token[];
  readonly wanted: readonly Token[];
}

/** A walk: yields reads, is sent each read's probabilities (full vocabulary), returns its score. */
export type AnswerWalk<S> = Generator<ReadRequest, S, ReadonlyMap<Token, number>>;

/** A walk on the pool's sequence `slot`. */
export interface PlacedWalk<S> {
  readonly slot: number;
  readonly walk: AnswerWalk<S>;
}

/**
 * Runs walks in lockstep (each on its own slot; no two on one) and returns their scores in the order given. Per
 * phase: every still-walking sequence is rewound to its read's position, then the reads are submitted together
 * through `decode`, in the order of `walks`.
 */
export async function walkInLockstep<S>(
  pool: SequencePool,
  walks: readonly PlacedWalk<S>[],
  decode: DecodeStrategy,
): Promise<S[]> {
  const results: (S | undefined)[] = walks.map(() => undefined);
  let steps = walks.map(({ walk }) => walk.next());
  for (;;) {
    const active: { index: number; slot: number; request: ReadRequest }[] = [];
    steps.forEach((step, index) => {
      if (step.done === true) results[index] = step.value;
      else active.push({ index, slot: (walks[index] as PlacedWalk<S>).slot, request: step.value });
    });
    if (active.length === 0) break;
    await Promise.all(active.map(({ slot, request }) => pool.rewind(slot, request.position)));
    for (const { slot, request } of active) {
      const held = pool.sequence(slot).nextTokenIndex;
      if (held !== request.position)
        throw new RescaleError('INTERNAL', `slot ${slot} holds ${held} tokens, the walk expected ${request.position}`);
    }
    const reads = await decode.each(active, ({ slot, request }) =>
      readNext(pool.sequence(slot), request.tokens, request.wanted),
    );
    const next = [...steps];
    active.forEach(
      ({ index }, i) => (next[index] = (walks[index] as PlacedWalk<S>).walk.next(reads[i] as Map<Token, number>)),
    );
    steps = next;
  }
  return results as S[];
}
