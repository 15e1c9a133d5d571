import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { isRescaleError } from '../../../contracts/errors.js';
import {
  EMPTY_SET_STRATUM,
  nestedStratifiedSubsets,
  proportionalAllocation,
  rarestLabelStrata,
} from '../../../study/sampling/sampling.js';
import { createSeededRandom, shuffled } from '../../../study/evaluation/seeded-random.js';

/** 600 'a', 300 'b', 100 'c' in a mixed order. */
function corpus(): string[] {
  const labels = [
    ...new Array<string>(600).fill('a'),
    ...new Array<string>(300).fill('b'),
    ...new Array<string>(100).fill('c'),
  ];
  return shuffled(labels, createSeededRandom(77));
}

/** Independent Hamilton (largest remainder) rounding in integer arithmetic; ties go to the lower index. */
function hamilton(counts: readonly number[], total: number): number[] {
  const pool = counts.reduce((a, b) => a + b, 0);
  const floors = counts.map((c) => Math.floor((total * c) / pool));
  const remainders = counts.map((c, i) => ({ i, r: total * c - (floors[i] as number) * pool }));
  remainders.sort((x, y) => y.r - x.r || x.i - y.i);
  let left = total - floors.reduce((a, b) => a + b, 0);
  for (const { i } of remainders) {
    if (left === 0) break;
    floors[i] = (floors[i] as number) + 1;
    left--;
  }
  return floors;
}

const SIZES = [50, 100, 200, 400, 800];

describe('nestedStratifiedSubsets', () => {
  it('nests every subset in the next larger one', () => {
    const { subsets } = nestedStratifiedSubsets(corpus(), [400, 50, 800, 100, 200], 1, { heldOut: 0.2 });
    assert.deepEqual(
      subsets.map((s) => s.size),
      SIZES,
    );
    for (let k = 0; k < subsets.length; k++) {
      const s = subsets[k]!;
      assert.equal(s.indices.length, s.size);
      assert.equal(new Set(s.indices).size, s.size);
      if (k > 0) {
        const larger = new Set(s.indices);
        for (const i of subsets[k - 1]!.indices)
          assert.ok(larger.has(i), `subset ${k - 1} item ${i} missing from subset ${k}`);
      }
    }
  });

  it('keeps the held-out split disjoint from every subset', () => {
    const { heldOut, subsets, poolSize } = nestedStratifiedSubsets(corpus(), SIZES, 2, { heldOut: 0.2 });
    assert.equal(heldOut.size, 200);
    assert.equal(poolSize, 800);
    const held = new Set(heldOut.indices);
    for (const s of subsets) for (const i of s.indices) assert.ok(!held.has(i));
    // The largest subset is the whole pool: held-out plus it is the corpus.
    assert.equal(held.size + (subsets.at(-1)?.indices.length ?? 0), 1000);
  });

  it('stratifies the held-out split and every subset in proportion to the labels', () => {
    const labels = corpus();
    const { heldOut, subsets } = nestedStratifiedSubsets(labels, SIZES, 3, { heldOut: 0.2 });
    assert.deepEqual(heldOut.counts, [
      { label: 'a', count: 120 },
      { label: 'b', count: 60 },
      { label: 'c', count: 20 },
    ]);
    for (const s of subsets) {
      assert.deepEqual(
        s.counts.map((c) => c.count),
        [0.6 * s.size, 0.3 * s.size, 0.1 * s.size],
      );
      // Counts agree with the actual labels at the indices.
      for (const { label, count } of s.counts) assert.equal(s.indices.filter((i) => labels[i] === label).length, count);
    }
  });

  it('rounds with largest remainders, and keeps nesting where plain Hamilton would not (Alabama paradox)', () => {
    // Classes of 6, 6 and 2: Hamilton gives (4, 4, 2) for 10 items but (5, 5, 1) for 11, dropping a 'c'.
    assert.deepEqual(hamilton([6, 6, 2], 10), [4, 4, 2]);
    assert.deepEqual(hamilton([6, 6, 2], 11), [5, 5, 1]);
    const labels = [...new Array<string>(6).fill('a'), ...new Array<string>(6).fill('b'), 'c', 'c'];
    const { subsets } = nestedStratifiedSubsets(labels, [10, 11], 4, { heldOut: 0 });
    assert.deepEqual(
      subsets.map((s) => s.counts.map((c) => c.count)),
      [
        [4, 4, 2],
        [5, 4, 2],
      ],
    );
    const larger = new Set(subsets[1]!.indices);
    for (const i of subsets[0]!.indices) assert.ok(larger.has(i));
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const labels = corpus();
    const a = nestedStratifiedSubsets(labels, SIZES, 42, { heldOut: 100 });
    assert.deepEqual(nestedStratifiedSubsets(labels, SIZES, 42, { heldOut: 100 }), a);
    const b = nestedStratifiedSubsets(labels, SIZES, 43, { heldOut: 100 });
    assert.notDeepEqual(b.heldOut.indices, a.heldOut.indices);
    assert.notDeepEqual(b.subsets[0]?.indices, a.subsets[0]?.indices);
    // Random within each class, not the first items of each class in input order.
    const firstOfEach = a.heldOut.counts.flatMap(({ label, count }) =>
      labels.flatMap((l, i) => (l === label ? [i] : [])).slice(0, count),
    );
    assert.notDeepEqual(
      a.heldOut.indices,
      firstOfEach.sort((x, y) => x - y),
    );
  });

  it('accepts a held-out count, or none', () => {
    const labels = corpus();
    assert.equal(nestedStratifiedSubsets(labels, [10], 1, { heldOut: 100 }).heldOut.size, 100);
    const none = nestedStratifiedSubsets(labels, [1000], 1, { heldOut: 0 });
    assert.equal(none.heldOut.indices.length, 0);
    assert.equal(none.subsets[0]?.indices.length, 1000);
  });

  it('rejects sizes larger than the pool, duplicate sizes, a bad held-out value and a bad seed', () => {
    const labels = corpus();
    const config = (pattern: RegExp) => (e: unknown) => isRescaleError(e, 'CONFIG_INVALID') && pattern.test(e.message);
    assert.throws(
      () => nestedStratifiedSubsets(labels, [900], 1, { heldOut: 0.2 }),
      config(/size 900 exceeds the 800 items/),
    );
    assert.throws(() => nestedStratifiedSubsets(labels, [10, 10], 1, { heldOut: 0.2 }), config(/lists 10 twice/));
    assert.throws(() => nestedStratifiedSubsets(labels, [10], 1, { heldOut: 1.5 }), config(/heldOut must be/));
    assert.throws(() => nestedStratifiedSubsets(labels, [0], 1, { heldOut: 0.2 }), config(/positive whole number/));
    assert.throws(() => nestedStratifiedSubsets(labels, [], 1, { heldOut: 0.2 }), config(/sizes is empty/));
    assert.throws(() => nestedStratifiedSubsets(labels, [10], -1, { heldOut: 0.2 }), config(/seed/));
    assert.throws(
      () => nestedStratifiedSubsets([], [10], 1, { heldOut: 0 }),
      (e: unknown) => isRescaleError(e, 'INPUT_INVALID'),
    );
  });
});

describe('proportionalAllocation', () => {
  it('equals independent largest-remainder rounding when starting from zero', () => {
    const random = createSeededRandom(5);
    for (let trial = 0; trial < 500; trial++) {
      const counts = Array.from({ length: 1 + random.nextInt(6) }, () => 1 + random.nextInt(40));
      const pool = counts.reduce((a, b) => a + b, 0);
      const total = random.nextInt(pool + 1);
      assert.deepEqual(
        proportionalAllocation(counts, total),
        hamilton(counts, total),
        `counts ${counts} total ${total}`,
      );
    }
  });

  it('grows from a previous allocation without removing items and stays within one of each quota', () => {
    const random = createSeededRandom(6);
    for (let trial = 0; trial < 200; trial++) {
      const counts = Array.from({ length: 2 + random.nextInt(5) }, () => 1 + random.nextInt(30));
      const pool = counts.reduce((a, b) => a + b, 0);
      let previous: number[] | undefined;
      for (let total = 1; total <= pool; total += 1 + random.nextInt(4)) {
        const allocation = proportionalAllocation(counts, total, previous);
        assert.equal(
          allocation.reduce((a, b) => a + b, 0),
          total,
        );
        allocation.forEach((a, c) => {
          const quota = (total * (counts[c] as number)) / pool;
          assert.ok(a >= (previous?.[c] ?? 0) && a <= (counts[c] as number));
          assert.ok(Math.abs(a - quota) < 1 + 1e-9, `class ${c}: ${a} vs quota ${quota}`);
        });
        previous = allocation;
      }
    }
  });
});

describe('rarestLabelStrata', () => {
  it('puts each document in the stratum of its label held by the fewest documents, ties by label order', () => {
    // held: a 5, b 3, c 3 (b before c in the order), d 2, e 0.
    const sets = [['a'], ['a', 'b'], ['b', 'a', 'c'], ['d', 'a'], ['b', 'd', 'c'], [], ['c', 'a']];
    assert.deepEqual(rarestLabelStrata(sets, ['a', 'b', 'c', 'd', 'e']), [
      'a',
      'b',
      'b',
      'd',
      'd',
      EMPTY_SET_STRATUM,
      'c',
    ]);
    // The order decides ties only: with c before b, c wins the b/c tie.
    assert.equal(rarestLabelStrata(sets, ['d', 'c', 'b', 'a'])[2], 'c');
  });

  it('stratifies nested subsets so a rare label is spread in proportion', () => {
    const random = createSeededRandom(5);
    // 300 documents: "x" on most, "y" on a third, "rare" on 15.
    const sets = Array.from({ length: 300 }, (_, i) => [
      ...(random.nextInt(10) < 8 ? ['x'] : []),
      ...(i % 3 === 0 ? ['y'] : []),
      ...(i % 20 === 7 ? ['rare'] : []),
    ]);
    const strata = rarestLabelStrata(sets, ['x', 'y', 'rare']);
    const split = nestedStratifiedSubsets(strata, [40, 100], 9, { heldOut: 0.2 });
    const holders = (indices: readonly number[]): number =>
      indices.filter((i) => (sets[i] as string[]).includes('rare')).length;
    assert.equal(holders(split.heldOut.indices), 3, '15 × 60 / 300');
    assert.equal(holders(split.subsets[0]?.indices ?? []), 2, '12 × 40 / 240 = 2');
    assert.equal(holders(split.subsets[1]?.indices ?? []), 5, '12 × 100 / 240 = 5');
  });
});
