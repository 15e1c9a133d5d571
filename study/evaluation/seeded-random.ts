// The one source of randomness for evaluation (bootstrap, subsampling): xoshiro128** seeded through splitmix32,
// so a seed written in a report reproduces every resample bit for bit on any platform. Never Math.random.

import { RescaleError } from '../../contracts/errors.js';

export interface SeededRandom {
  /** Next raw 32-bit unsigned integer. */
  nextUint32(): number;
  /** Uniform float in [0, 1) with 32 bits of resolution. */
  nextFloat(): number;
  /** Uniform integer in [0, bound), without modulo bias. */
  nextInt(bound: number): number;
}

const TWO_POW_32 = 4294967296;

/** Throws CONFIG_INVALID unless seed is an integer in [0, 2^32 - 1]; `option` names the field in the message. */
export function assertSeed(seed: number, option = 'seed'): void {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `${option} must be an integer between 0 and 4294967295 (got ${String(seed)}); record the seed you pass so ` +
        `results can be reproduced`,
    );
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

export function createSeededRandom(seed: number): SeededRandom {
  assertSeed(seed);
  // splitmix32 spreads a small or sequential seed over the 128-bit xoshiro state.
  let sm = seed | 0;
  const splitmix = (): number => {
    sm = (sm + 0x9e3779b9) | 0;
    let t = sm ^ (sm >>> 16);
    t = Math.imul(t, 0x21f0aaad);
    t ^= t >>> 15;
    t = Math.imul(t, 0x735a2d97);
    t ^= t >>> 15;
    return t >>> 0;
  };
  let s0 = splitmix();
  let s1 = splitmix();
  let s2 = splitmix();
  let s3 = splitmix();
  // xoshiro's only forbidden state; unreachable from splitmix in practice, guarded for certainty.
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1;

  const nextUint32 = (): number => {
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotl(s3, 11);
    return result;
  };

  return {
    nextUint32,
    nextFloat: () => nextUint32() / TWO_POW_32,
    nextInt: (bound: number): number => {
      if (!Number.isInteger(bound) || bound < 1 || bound > TWO_POW_32) {
        throw new RescaleError('INTERNAL', `nextInt bound must be an integer in [1, 2^32], got ${String(bound)}`);
      }
      // Reject the top partial block so every residue is equally likely.
      const limit = TWO_POW_32 - (TWO_POW_32 % bound);
      let r = nextUint32();
      while (r >= limit) r = nextUint32();
      return r % bound;
    },
  };
}

/** Fisher–Yates shuffle of a copy; deterministic for a given generator state. */
export function shuffled<T>(items: readonly T[], random: SeededRandom): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = random.nextInt(i + 1);
    const tmp = out[i] as T;
    out[i] = out[j] as T;
    out[j] = tmp;
  }
  return out;
}
