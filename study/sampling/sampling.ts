// Training subsets for learning curves: one stratified held-out split that no subset touches, then nested stratified
// subsets (each larger one contains every smaller one), all fixed by a seed so a curve can be re-run exactly.

import { RescaleError } from '../../contracts/errors.js';
import { assertSeed, createSeededRandom, shuffled } from '../evaluation/seeded-random.js';

export interface NestedSubsetsOptions {
  /**
   * Size of the held-out evaluation split: a fraction of all items when 0 < heldOut < 1 (rounded to the nearest
   * item), else a whole number of items (0 for none).
   */
  readonly heldOut: number;
}

export interface LabelCount {
  readonly label: string;
  readonly count: number;
}

export interface StratifiedSubset {
  readonly size: number;
  /** Positions in the input label array, ascending. */
  readonly indices: readonly number[];
  /** Items per label, labels in sorted order. */
  readonly counts: readonly LabelCount[];
}

export interface NestedStratifiedSubsets {
  readonly seed: number;
  readonly heldOut: StratifiedSubset;
  /** Items left for training once the held-out split is removed. */
  readonly poolSize: number;
  /** Ascending by size; subsets[i].indices ⊂ subsets[i + 1].indices. */
  readonly subsets: readonly StratifiedSubset[];
}

/**
 * Proportional allocation of `total` items over classes with `available` items each, never going below `start`.
 * Seats are added one at a time to the class furthest below its quota total·available_c/Σavailable (ties: lower
 * class index). From start = 0 this is exactly largest-remainder (Hamilton) rounding; building each size on the
 * previous one keeps nested sizes nested, which Hamilton alone does not guarantee (the Alabama paradox).
 */
export function proportionalAllocation(
  available: readonly number[],
  total: number,
  start?: readonly number[],
): number[] {
  const pool = available.reduce((a, b) => a + b, 0);
  const allocation = start ? start.slice() : new Array<number>(available.length).fill(0);
  let seats = total - allocation.reduce((a, b) => a + b, 0);
  if (seats < 0 || total > pool) {
    throw new RescaleError(
      'INTERNAL',
      `cannot allocate ${total} of ${pool} items starting from ${allocation.join(',')}`,
    );
  }
  // Deficits scaled by the pool size stay integers, so ties are exact.
  while (seats > 0) {
    let best = -1;
    let bestDeficit = Number.NEGATIVE_INFINITY;
    for (let c = 0; c < available.length; c++) {
      const a = allocation[c] as number;
      const cap = available[c] as number;
      if (a >= cap) continue;
      const deficit = total * cap - a * pool;
      if (deficit > bestDeficit) {
        best = c;
        bestDeficit = deficit;
      }
    }
    allocation[best] = (allocation[best] as number) + 1;
    seats--;
  }
  return allocation;
}

function heldOutCount(heldOut: number, n: number): number {
  if (typeof heldOut === 'number' && heldOut > 0 && heldOut < 1) return Math.round(heldOut * n);
  if (Number.isInteger(heldOut) && heldOut >= 0 && heldOut < n) return heldOut;
  throw new RescaleError(
    'CONFIG_INVALID',
    `heldOut must be a fraction in (0, 1) or a whole number of items from 0 to ${n - 1} (got ${String(heldOut)})`,
  );
}

/**
 * Splits item positions into a held-out evaluation set and nested training subsets of the given sizes, each
 * stratified by label with proportional allocation. Deterministic for (labels, sizes, seed, heldOut).
 */
export function nestedStratifiedSubsets(
  labels: readonly string[],
  sizes: readonly number[],
  seed: number,
  options: NestedSubsetsOptions,
): NestedStratifiedSubsets {
  assertSeed(seed);
  if (labels.length === 0) {
    throw new RescaleError('INPUT_INVALID', 'no labelled items to sample from');
  }
  const byLabel = new Map<string, number[]>();
  labels.forEach((label, i) => {
    if (typeof label !== 'string') {
      throw new RescaleError('INPUT_INVALID', `labels[${i}] is ${String(label)}; every item needs a string label`);
    }
    const list = byLabel.get(label);
    if (list) list.push(i);
    else byLabel.set(label, [i]);
  });
  const classes = [...byLabel.keys()].sort();
  const random = createSeededRandom(seed);
  // Each class in a fixed random order; held-out takes a prefix, subsets take growing prefixes of the rest.
  const orders = classes.map((label) => shuffled(byLabel.get(label) as number[], random));
  const classCounts = orders.map((o) => o.length);

  const held = proportionalAllocation(classCounts, heldOutCount(options.heldOut, labels.length));
  const poolCounts = classCounts.map((c, i) => c - (held[i] as number));
  const poolSize = labels.length - held.reduce((a, b) => a + b, 0);

  if (sizes.length === 0) {
    throw new RescaleError(
      'CONFIG_INVALID',
      'sizes is empty; give the training-set sizes of the learning curve, e.g. [100, 200, 400]',
    );
  }
  const seen = new Set<number>();
  for (const size of sizes) {
    if (!Number.isInteger(size) || size < 1) {
      throw new RescaleError(
        'CONFIG_INVALID',
        `sizes holds ${String(size)}; every size must be a positive whole number`,
      );
    }
    if (size > poolSize) {
      throw new RescaleError(
        'CONFIG_INVALID',
        `size ${size} exceeds the ${poolSize} items left after holding out ${labels.length - poolSize}; lower the ` +
          `size or the held-out share`,
      );
    }
    if (seen.has(size)) throw new RescaleError('CONFIG_INVALID', `sizes lists ${size} twice`);
    seen.add(size);
  }

  const build = (size: number, allocation: readonly number[], offset: (c: number) => number): StratifiedSubset => {
    const indices: number[] = [];
    allocation.forEach((count, c) => {
      const order = orders[c] as number[];
      const from = offset(c);
      for (let j = from; j < from + count; j++) indices.push(order[j] as number);
    });
    indices.sort((a, b) => a - b);
    return { size, indices, counts: classes.map((label, c) => ({ label, count: allocation[c] as number })) };
  };

  const heldOut = build(
    held.reduce((a, b) => a + b, 0),
    held,
    () => 0,
  );
  const subsets: StratifiedSubset[] = [];
  let previous: number[] | undefined;
  for (const size of [...sizes].sort((a, b) => a - b)) {
    const allocation = proportionalAllocation(poolCounts, size, previous);
    subsets.push(build(size, allocation, (c) => held[c] as number));
    previous = allocation;
  }
  return { seed, heldOut, poolSize, subsets };
}

/** The stratum of a document whose multi-label set is empty (no label name is empty). */
export const EMPTY_SET_STRATUM = '';

/**
 * Strata for a multi-label question: each document's rarest label, the one of its labels held by the fewest documents
 * of all (ties: the earlier in `order`, the codebook's label order); EMPTY_SET_STRATUM for an empty set. Stratified by
 * it, every label is spread over the splits in proportion at least through the documents where it is the rarest, so a
 * rare label cannot vanish from a small subset by the draw (only by rounding); common labels, which ride along on
 * most documents, follow closely. One stratum per document keeps the nested allocation of nestedStratifiedSubsets, so
 * nesting holds as for single labels.
 */
export function rarestLabelStrata(sets: readonly (readonly string[])[], order: readonly string[]): string[] {
  const held = new Map<string, number>(order.map((label) => [label, 0]));
  for (const set of sets) for (const label of new Set(set)) held.set(label, (held.get(label) ?? 0) + 1);
  const rank = new Map(order.map((label, i) => [label, i]));
  const rankOf = (label: string): number => rank.get(label) ?? order.length;
  return sets.map((set) => {
    let rarest: string | null = null;
    for (const label of set) {
      if (rarest === null) rarest = label;
      else {
        const [a, b] = [held.get(label) ?? 0, held.get(rarest) ?? 0];
        if (a < b || (a === b && rankOf(label) < rankOf(rarest))) rarest = label;
      }
    }
    return rarest ?? EMPTY_SET_STRATUM;
  });
}
