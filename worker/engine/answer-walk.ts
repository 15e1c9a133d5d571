// Answer walks: scoring one prompt's answers is a sequence of next-token reads (the root right after the prompt, then
// inner nodes of a label trie or branches of a list grammar), each after rewinding the prompt's sequence to a
// position. A walk is a generator of those reads; walks on different sequences advance in lockstep, one read per
// still-walking sequence per phase, each phase laid out by the decode strategy, so the layout depends only on the
// walks given (documents, prompts, slots), never on timing.

import type { LlamaContextSequence, Token } from 'node-llama-cpp';
import { RescaleError } from '../../contracts/errors.js';
import type { DecodeStrategy } from './decode-strategy.js';
import { fullVocabularyProbabilities } from './label-distribution.js';
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

/**
 * Evaluates `tokens` (appending) and returns, for each of `wanted`, its probability of being the next token over the
 * full vocabulary. One decode: llama.cpp returns the wanted tokens' logits, the greedy (largest-logit) token's logit
 * and the total logit weight Σ exp(logit − max); no full distribution crosses into JavaScript and no token is
 * forced or biased, so the result is exact whatever rank the wanted tokens have. The read of a decoded position for
 * every decode strategy.
 */
export async function readNext(
  sequence: LlamaContextSequence,
  tokens: readonly Token[],
  wanted: readonly Token[],
): Promise<Map<Token, number>> {
  if (tokens.length === 0) throw new RescaleError('INTERNAL', 'a next-token read needs at least one token to evaluate');
  const generateNext = {
    logits: { filter: { tokens: wanted, includeSelected: true } },
    totalLogitWeight: true,
    // Greedy: the selected token is the largest logit, the one the total weight is relative to.
    options: { temperature: 0 },
  };
  const last = tokens.length - 1;
  const output = await sequence.controlledEvaluate(
    tokens.map((t, i) => (i === last ? ([t, { generateNext }] as [Token, { generateNext: typeof generateNext }]) : t)),
  );
  const next = output[last]?.next;
  if (next?.logits === undefined || next.totalLogitWeight === undefined)
    throw new RescaleError('ENGINE_FAILED', 'llama.cpp returned no next-token logits', { retryable: true });
  try {
    return fullVocabularyProbabilities({ logits: next.logits, totalLogitWeight: next.totalLogitWeight }, wanted) as Map<
      Token,
      number
    >;
  } catch (cause) {
    throw new RescaleError('ENGINE_FAILED', `llama.cpp returned an invalid next-token read: ${String(cause)}`, {
      cause,
      retryable: true,
    });
  }
}
