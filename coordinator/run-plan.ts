// Run planning shared by local mode and the cluster coordinator: a corpus plus a codebook become a shard plan whose
// ids carry the codebook's result hash, and a finished run is described by a manifest. No model runtime here.

import os from 'node:os';
import { CODEBOOK_VARIABLES, type Codebook } from '../contracts/codebook.js';
import { usesLlama2Chat } from '../contracts/llama2-chat.js';
import { codebookResultHash, type ResultLayout } from '../contracts/result-hash.js';
import { RescaleError } from '../contracts/errors.js';
import { quickFingerprint, sha256File } from '../contracts/file-digest.js';
import { RESCALE_VERSION } from '../contracts/package-root.js';
import type { RunManifestHead } from '../contracts/run-manifest.js';
import type { ShardPlan } from '../contracts/shard.js';
import { resolveCorpus } from './corpus.js';
import { checkCorpusIds, idCheckWarnings } from './id-check.js';
import { planShards } from './shard-planner.js';

export const DEFAULT_SHARD_ROWS = 2000;

/**
 * Plans the corpus for a codebook; shard ids carry the codebook's result hash, so a changed codebook never reuses
 * shards. `fallbackIdentity` (the active fallback's, else null) joins the hash, since shard files hold its answers.
 */
export async function planRun(
  codebook: Codebook,
  input: readonly string[],
  layout: ResultLayout,
  shardRows: number,
  limit?: number,
  fallbackIdentity: string | null = null,
): Promise<ShardPlan> {
  const fingerprints = {
    model: await fingerprintOrThrow(codebook.model.path, 'model.path'),
    adapters: await Promise.all(
      codebook.model.adapters.map((a, i) => fingerprintOrThrow(a.path, `model.adapters[${i}].path`)),
    ),
    llama2Chat: await usesLlama2Chat(codebook),
  };
  const warnings: string[] = [];
  const files = await resolveCorpus(input, { warnings });
  const plan = planShards(files, {
    codebookHash: codebookResultHash(codebook, fingerprints, layout, fallbackIdentity),
    maxRowsPerShard: shardRows,
    idColumn: codebook.idColumn,
    textColumn: codebook.textColumn,
    promptColumns: promptInputColumns(codebook),
    ...(limit !== undefined ? { limit } : {}),
  });
  warnings.push(...idCheckWarnings(await checkCorpusIds(plan)));
  return warnings.length > 0 ? { ...plan, warnings } : plan;
}

/** Input columns the prompt template names besides the text (`{party}`); the codebook's own variables excluded. */
export function promptInputColumns(codebook: Codebook): string[] {
  const own: readonly string[] = CODEBOOK_VARIABLES;
  return codebook.prompt.variables.filter(
    (name) => name !== 'text' && name !== codebook.textColumn && !own.includes(name),
  );
}

async function fingerprintOrThrow(file: string, field: string): Promise<string> {
  try {
    return await quickFingerprint(file);
  } catch (cause) {
    const what = field.startsWith('model.adapters') ? 'ADAPTER_NOT_FOUND' : 'MODEL_NOT_FOUND';
    throw new RescaleError(
      what,
      `cannot read ${file} (codebook field "${field}"): ${(cause as NodeJS.ErrnoException).code ?? String(cause)}; ` +
        'check the path, which is relative to the codebook file',
      { cause },
    );
  }
}

/** What the engine that scored a run reports about itself (llama.cpp build, settings). */
export interface EngineDescription {
  readonly nodeLlamaCpp: string;
  readonly llamaCpp: string;
  readonly llamaBuild: string;
  readonly gpu: string | false;
  readonly settings?: object | undefined;
}

export interface ManifestInput {
  readonly mode: 'local' | 'cluster';
  readonly codebook: Codebook;
  readonly plan: ShardPlan;
  readonly sequences: number;
  /** Identical prompt inputs of a shard scored once (`--no-dedupe`: false). */
  readonly dedupe: boolean;
  readonly shardRows: number;
  readonly threads: number | 'auto';
  readonly startedAt: Date;
  /** One entry per distinct engine that scored shards of the run. */
  readonly engines: readonly EngineDescription[];
}

/** Everything needed to re-run the study years later and check it gives the same numbers. */
export async function buildManifest(input: ManifestInput): Promise<RunManifestHead> {
  const { codebook, plan } = input;
  return {
    rescale: RESCALE_VERSION,
    mode: input.mode,
    codebook: { source: codebook.source, hash: plan.codebookHash, content: codebook },
    model: { path: codebook.model.path, sha256: await sha256File(codebook.model.path) },
    adapters: await Promise.all(
      codebook.model.adapters.map(async (a) => ({ path: a.path, scale: a.scale, sha256: await sha256File(a.path) })),
    ),
    corpus: plan.files.map((f) => ({ path: f.path, size: f.size, fingerprint: f.fingerprint, rows: f.rows })),
    shards: plan.shards.map((s) => ({ id: s.id, file: s.file, rowStart: s.rowStart, rowEnd: s.rowEnd })),
    rows: { planned: plan.totalRows, limit: plan.limit },
    settings: {
      sequences: input.sequences,
      maxDocumentTokens: codebook.model.maxDocumentTokens,
      shardRows: input.shardRows,
      threads: input.threads,
      dedupe: input.dedupe,
    },
    software: { rescale: RESCALE_VERSION, node: process.version, engines: input.engines },
    host: {
      hostname: os.hostname(),
      platform: `${os.platform()}-${os.arch()}`,
      cpus: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
    },
    startedAt: input.startedAt.toISOString(),
    endedAt: new Date().toISOString(),
  };
}
