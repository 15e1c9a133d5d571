// Reuse of node-llama-cpp's native samplers across evaluations.
//
// node-llama-cpp 3.22 constructs a native sampler (`AddonSampler`) for every `controlledEvaluate` call, and that
// constructor allocates and zero-fills a candidate array of the vocabulary's size (12 bytes per token: 1.5 MB for a
// 128k vocabulary). `dispose()` frees the sampler chain but not the array, which lives until V8 collects the
// JavaScript wrapper; V8 does not know about the memory, so it collects late and every new sampler touches fresh
// pages. Measured on the 2-core development machine with the 128k-vocabulary fixture model: 3–5 ms of CPU per
// sampler (half of it page faults), about 1 GB of resident memory waiting for collection, and more CPU than the
// decode of a document in `npm start`. A question with multi-token labels or several questions pays it once per
// decode, so a 46-question codebook would pay it 46 times per document.
//
// The pool keeps disposed native samplers per model and hands them out again. rescale reads only greedy
// (temperature 0) next-token logits with no grammar, repeat penalty or token bias, so a sampler carries no state
// from one read to the next: `applyConfig` sets the same chain before every read, and the candidate array is
// rewritten from the context's logits on every read (test/worker/engine/native-sampler-pool.test.ts checks the
// probabilities are identical, bit for bit, with and without the pool). It depends on two internals of
// node-llama-cpp 3.22.1 (`Llama._bindings.AddonSampler` and `LlamaModel._model`); when they are absent the pool
// is not installed and evaluations use fresh samplers as before.

import type { Llama, LlamaModel } from 'node-llama-cpp';

interface NativeSampler {
  dispose(): void;
}

type NativeSamplerClass = (new (nativeModel: object) => NativeSampler) & Record<string, unknown>;

interface Bindings {
  AddonSampler: NativeSamplerClass;
}

/** On a pooled native sampler: its own dispose, which frees it. */
const POOLED_FREE = Symbol('rescale.pooledSamplerFree');

interface PoolState {
  /** Disposed (returned) native samplers per native model. */
  readonly idle: Map<object, NativeSampler[]>;
  /** Native samplers constructed while the pool was installed. */
  constructed: number;
  /** Samplers handed out again instead of constructed. */
  reused: number;
  enabled: boolean;
}

/** One pool per loaded bindings (the CPU and a GPU build are different bindings). */
const pools = new WeakMap<object, PoolState>();

function bindingsOf(llama: Llama): Bindings | null {
  const bindings = (llama as unknown as { _bindings?: Partial<Bindings> })._bindings;
  return typeof bindings?.AddonSampler === 'function' ? (bindings as Bindings) : null;
}

function nativeModelOf(model: LlamaModel): object | null {
  const native = (model as unknown as { _model?: unknown })._model;
  return typeof native === 'object' && native !== null ? native : null;
}

function install(bindings: Bindings): PoolState {
  const original = bindings.AddonSampler;
  const pool: PoolState = { idle: new Map(), constructed: 0, reused: 0, enabled: true };
  // A constructor function that returns an existing native object: `new` yields that object, so the native
  // methods that unwrap it (sampleToken, applyConfig) see a real AddonSampler.
  const Pooled = function PooledAddonSampler(forModel: object): NativeSampler {
    const sampler = pool.enabled ? pool.idle.get(forModel)?.pop() : undefined;
    if (sampler !== undefined) {
      pool.reused++;
      return sampler;
    }
    const created = new original(forModel);
    pool.constructed++;
    if (!pool.enabled) return created;
    const free = created.dispose.bind(created);
    Object.defineProperty(created, POOLED_FREE, { value: free });
    Object.defineProperty(created, 'dispose', {
      configurable: true,
      value: () => {
        const list = pool.idle.get(forModel);
        if (list === undefined) free();
        else list.push(created);
      },
    });
    return created;
  } as unknown as NativeSamplerClass;
  for (const key of Object.getOwnPropertyNames(original)) {
    if (key === 'prototype' || key === 'length' || key === 'name') continue;
    Object.defineProperty(Pooled, key, Object.getOwnPropertyDescriptor(original, key) as PropertyDescriptor);
  }
  Object.defineProperty(Pooled, 'prototype', { value: original.prototype });
  bindings.AddonSampler = Pooled;
  pools.set(bindings, pool);
  return pool;
}

/**
 * Installs the pool on the llama.cpp bindings `model` was loaded with (once per bindings) and frees the model's
 * idle samplers when the model is disposed. Returns false when node-llama-cpp's internals do not have the expected
 * shape, in which case nothing changes.
 */
export function reuseNativeSamplers(model: LlamaModel): boolean {
  const bindings = bindingsOf(model.llama);
  const nativeModel = nativeModelOf(model);
  if (bindings === null || nativeModel === null) return false;
  const pool = pools.get(bindings) ?? install(bindings);
  if (!pool.idle.has(nativeModel)) {
    pool.idle.set(nativeModel, []);
    model.onDispose.createListener(() => {
      const list = pool.idle.get(nativeModel) ?? [];
      pool.idle.delete(nativeModel);
      for (const sampler of list) (sampler as unknown as Record<symbol, () => void>)[POOLED_FREE]?.();
    });
  }
  return true;
}

/** What the pool of `model`'s bindings has done so far, and a switch for tests that compare with fresh samplers. */
export function nativeSamplerPool(model: LlamaModel): {
  /** Native samplers constructed while the pool was installed. */
  readonly constructed: number;
  /** Reads that got a sampler back from the pool instead of a new one. */
  readonly reused: number;
  /** Samplers waiting in the pool for a model (0 once it is disposed). */
  idle(model: LlamaModel): number;
  /** With false, every evaluation gets a fresh native sampler again (as without the pool). */
  setEnabled(enabled: boolean): void;
} | null {
  const bindings = bindingsOf(model.llama);
  const pool = bindings === null ? undefined : pools.get(bindings);
  if (pool === undefined) return null;
  return {
    constructed: pool.constructed,
    reused: pool.reused,
    idle(of: LlamaModel): number {
      const native = nativeModelOf(of);
      return native === null ? 0 : (pool.idle.get(native)?.length ?? 0);
    },
    setEnabled(enabled: boolean): void {
      pool.enabled = enabled;
    },
  };
}
