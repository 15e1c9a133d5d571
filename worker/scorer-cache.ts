// Keeps the last label scorer, and the model under it, loaded between shards: consecutive shards of a run never
// reload, and a run with another codebook over the same model only creates a new context. One of each at a time,
// since a GPU holds one model comfortably and two rarely.

import { createHash } from 'node:crypto';
import type { LlamaModel } from 'node-llama-cpp';
import { canonicalJson, type Codebook } from '../contracts/codebook.js';
import { usesLlama2Chat } from '../contracts/llama2-chat.js';
import { codebookResultHash, type ModelFingerprints } from '../contracts/result-hash.js';
import { RescaleError } from '../contracts/errors.js';
import type { DocumentScorer } from '../contracts/document-scorer.js';
import { quickFingerprint } from '../contracts/file-digest.js';
import { silentLogger, type Logger } from '../contracts/logger.js';
import type { EngineReport } from '../contracts/shard-queue.js';
import { LabelScorer } from './engine/label-scorer.js';
import { getRuntime, loadModel, type BuildPreference } from './engine/llama-runtime.js';

export interface ScorerRequest {
  readonly codebook: Codebook;
  /** The codebook result hash the run was planned with; a model or adapter changed since then is refused. */
  readonly codebookHash: string;
  /** Resolved at submit time, identical on every worker. */
  readonly sequences: number;
  /** Identical prompt inputs of a shard scored once (absent: true); part of the run's codebook hash when false. */
  readonly dedupe?: boolean;
  /** The active fallback's identity (part of the run's codebook hash), or null/absent when the fallback is off. */
  readonly fallbackIdentity?: string | null;
  /** Aborts a model load in progress (the worker is stopping); the request then rejects with ABORTED. */
  readonly signal?: AbortSignal;
}

export interface LoadedScorer {
  readonly scorer: DocumentScorer;
  readonly engine: EngineReport;
}

/** What the shard worker needs from an engine source; tests and benchmarks may supply their own. */
export interface ScorerProvider {
  scorerFor(request: ScorerRequest): Promise<LoadedScorer>;
  /** Path of the model currently loaded, for the worker's registration. */
  readonly loadedModel: string | null;
  dispose(): Promise<void>;
}

export interface ScorerCacheOptions {
  readonly threads?: number;
  /** llama.cpp build to load (the worker command passes RESCALE_LLAMA_BUILD, parsed; default auto). */
  readonly build?: BuildPreference;
  readonly logger?: Logger;
  /** Called when a model is loaded from disk (not when it is reused). */
  readonly onModelLoad?: (path: string, seconds: number) => void;
}

interface ModelEntry {
  readonly key: string;
  readonly path: string;
  readonly model: LlamaModel;
}

interface ScorerEntry extends LoadedScorer {
  readonly key: string;
}

export class ScorerCache implements ScorerProvider {
  private model: ModelEntry | null = null;
  private current: ScorerEntry | null = null;
  private pending: Promise<unknown> = Promise.resolve();
  private readonly logger: Logger;

  constructor(private readonly options: ScorerCacheOptions = {}) {
    this.logger = options.logger ?? silentLogger;
  }

  get loadedModel(): string | null {
    return this.model?.path ?? null;
  }

  /** Calls are serialised: one load at a time. */
  scorerFor(request: ScorerRequest): Promise<LoadedScorer> {
    const next = this.pending.then(() => this.load(request));
    this.pending = next.catch(() => undefined);
    return next;
  }

  private async load(request: ScorerRequest): Promise<LoadedScorer> {
    const { codebook } = request;
    request.signal?.throwIfAborted();
    const fingerprints = await fingerprintsOf(codebook);
    const hash = codebookResultHash(
      codebook,
      fingerprints,
      { sequences: request.sequences, dedupe: request.dedupe ?? true },
      request.fallbackIdentity ?? null,
    );
    if (hash !== request.codebookHash) {
      throw new RescaleError(
        'CONFIG_INVALID',
        `the model or an adapter of ${codebook.source ?? 'the codebook'} (${codebook.model.path}) differs on this ` +
          `node from when the run was submitted (codebook hash ${hash.slice(0, 12)}, run ` +
          `${request.codebookHash.slice(0, 12)}); restore the files or submit a new run`,
      );
    }
    const scorerKey = createHash('sha256')
      .update(
        canonicalJson({ codebook, fingerprints, sequences: request.sequences, threads: this.options.threads ?? null }),
      )
      .digest('hex');
    if (this.current?.key === scorerKey) return this.current;

    const modelKey = `${codebook.model.path}\0${fingerprints.model}\0${codebook.model.gpuLayers}`;
    await this.releaseScorer();
    if (this.model !== null && this.model.key !== modelKey) await this.releaseModel();
    if (this.model === null) {
      const started = performance.now();
      const llama = await getRuntime({ build: this.options.build ?? 'auto', logger: this.logger });
      const model = await loadModel(llama, codebook.model.path, codebook.model.gpuLayers, request.signal);
      this.model = { key: modelKey, path: codebook.model.path, model };
      const seconds = (performance.now() - started) / 1000;
      this.logger.log('info', 'model loaded', { model: codebook.model.path, seconds: Number(seconds.toFixed(3)) });
      this.options.onModelLoad?.(codebook.model.path, seconds);
    }
    const scorer = await LabelScorer.create(codebook, {
      model: this.model.model,
      sequences: request.sequences,
      logger: this.logger,
      ...(this.options.threads !== undefined ? { threads: this.options.threads } : {}),
    });
    const engine: EngineReport = {
      nodeLlamaCpp: scorer.runtime.nodeLlamaCppVersion,
      llamaCpp: scorer.runtime.llamaCppRelease,
      llamaBuild: scorer.runtime.build,
      gpu: scorer.runtime.gpu,
      settings: { ...scorer.settings },
    };
    this.current = { key: scorerKey, scorer, engine };
    return this.current;
  }

  private async releaseScorer(): Promise<void> {
    const current = this.current;
    this.current = null;
    if (current !== null) await current.scorer.dispose();
  }

  private async releaseModel(): Promise<void> {
    const entry = this.model;
    this.model = null;
    if (entry !== null) await entry.model.dispose();
  }

  async dispose(): Promise<void> {
    await this.pending;
    await this.releaseScorer();
    await this.releaseModel();
  }
}

async function fingerprintsOf(codebook: Codebook): Promise<ModelFingerprints> {
  const fingerprint = async (file: string, field: string): Promise<string> => {
    try {
      return await quickFingerprint(file);
    } catch (cause) {
      const code = field.startsWith('model.adapters') ? 'ADAPTER_NOT_FOUND' : 'MODEL_NOT_FOUND';
      throw new RescaleError(
        code,
        `cannot read ${file} (codebook field "${field}") on this node: ` +
          `${(cause as NodeJS.ErrnoException).code ?? String(cause)}; workers need the same paths as the coordinator ` +
          '(shared filesystem)',
        { cause },
      );
    }
  };
  const model = await fingerprint(codebook.model.path, 'model.path');
  return {
    model,
    adapters: await Promise.all(
      codebook.model.adapters.map((a, i) => fingerprint(a.path, `model.adapters[${i}].path`)),
    ),
    llama2Chat: await usesLlama2Chat(codebook),
  };
}
