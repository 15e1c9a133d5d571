// The run manifest (`<output>.manifest.json`): what is needed to re-run a study years later and check it gives the
// same numbers. One schema: the planner and the merge build it typed, readers parse it with errors naming the field.

import { z } from 'zod';
import type { Codebook } from './codebook.js';
import { formatIssuePath } from './validation-issues.js';
import { RescaleError } from './errors.js';
import { FALLBACK_STATUSES, ID_TYPES, RESULT_SOURCES, ROW_STATUSES } from './results.js';

const count = z.number().int().nonnegative();
const isObject = (value: unknown): value is object =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const engineSchema = z.object({
  nodeLlamaCpp: z.string(),
  llamaCpp: z.string(),
  llamaBuild: z.string(),
  gpu: z.union([z.string(), z.literal(false)]),
  /** The scorer's resolved settings, as the engine reports them; their shape belongs to the engine. */
  settings: z.custom<object>(isObject, 'expected an object').optional(),
});

/** Counted against the fallback budget by one process (fallback/fallback-stage.ts FallbackStats). */
const fallbackStatsSchema = z.object({
  routed: count,
  answered: count,
  invalid: count,
  overBudget: count,
  failed: count,
  cacheHits: count,
  requests: count,
  promptTokens: count,
  completionTokens: count,
  costUsd: z.number(),
  budgetCommittedUsd: z.number(),
});

/** Whether the closed-model fallback ran, and what it did; absent in manifests written by `rescale merge`. */
const fallbackSectionSchema = z.discriminatedUnion('active', [
  z.object({ active: z.literal(false), reason: z.string() }),
  z.object({
    active: z.literal(true),
    mode: z.enum(['live', 'offline']),
    auditFile: z.string(),
    cacheDir: z.string(),
    stats: fallbackStatsSchema.nullable(),
    /** Cluster mode: which documents the stats cover (the coordinator process's). */
    statsScope: z.string().optional(),
  }),
]);

/** Added by the merge (coordinator/merge.ts). */
const mergeSectionSchema = z.object({
  output: z.string(),
  rows: count,
  bytes: count,
  /** sha256 of the results file: a reader checks it, so results and manifest of different runs never pass as a pair. */
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  codec: z.enum(['ZSTD', 'GZIP', 'SNAPPY', 'UNCOMPRESSED']),
  rowGroups: count,
  labels: z.array(z.string()).readonly(),
  /** A codebook with several questions: each question's name and labels (then `labels` is empty). */
  questions: z
    .array(z.object({ name: z.string(), labels: z.array(z.string()).readonly() }))
    .readonly()
    .optional(),
  statusCounts: z.record(z.enum(ROW_STATUSES), count),
  sourceCounts: z.record(z.enum(RESULT_SOURCES), count),
  fallbackStatusCounts: z.record(z.enum(FALLBACK_STATUSES), count),
  /**
   * Rows that copied the results of an identical earlier document of their shard (`duplicate_of` set): identical
   * texts scored once. Absent in manifests written before the column existed.
   */
  duplicates: count.optional(),
  codebookHash: z.string(),
  idColumn: z.string().nullable(),
  idType: z.enum(ID_TYPES),
  textColumn: z.string(),
  limit: count.nullable(),
  files: z.array(z.object({ path: z.string(), size: count, fingerprint: z.string(), rows: count })).readonly(),
  shards: z
    .array(
      z.object({
        id: z.string(),
        index: count,
        file: z.string(),
        rowStart: count,
        rowEnd: count,
        corpusRowStart: count,
        rows: count,
      }),
    )
    .readonly(),
});

/** What the run is, built before the merge (coordinator/run-plan.ts buildManifest). */
const runManifestHeadSchema = z.object({
  rescale: z.string(),
  mode: z.enum(['local', 'cluster']),
  codebook: z.object({
    source: z.string().nullable(),
    hash: z.string(),
    // The codebook as parsed (contracts/codebook.ts), not the YAML its own schema describes; readers use its task.
    content: z.custom<Codebook>(
      (value) => isObject(value) && typeof (value as { task?: unknown }).task === 'string',
      'expected the parsed codebook, with its "task"',
    ),
  }),
  model: z.object({ path: z.string(), sha256: z.string() }),
  adapters: z.array(z.object({ path: z.string(), scale: z.number(), sha256: z.string() })).readonly(),
  corpus: z.array(z.object({ path: z.string(), size: count, fingerprint: z.string(), rows: count })).readonly(),
  shards: z.array(z.object({ id: z.string(), file: z.string(), rowStart: count, rowEnd: count })).readonly(),
  rows: z.object({ planned: count, limit: count.nullable() }),
  settings: z.object({
    sequences: z.number().int().positive(),
    maxDocumentTokens: z.number().int().positive(),
    shardRows: z.number().int().positive(),
    threads: z.union([count, z.literal('auto')]),
    /** Identical prompt inputs of a shard scored once (`--no-dedupe`: false). Absent in older manifests: false. */
    dedupe: z.boolean().optional(),
  }),
  software: z.object({ rescale: z.string(), node: z.string(), engines: z.array(engineSchema).readonly() }),
  host: z.object({ hostname: z.string(), platform: z.string(), cpus: z.string(), cores: count }),
  startedAt: z.iso.datetime(),
  endedAt: z.iso.datetime(),
});

export const runManifestSchema = runManifestHeadSchema.extend({
  /** Cluster mode: the run's id. */
  run: z.object({ id: z.string() }).optional(),
  fallback: fallbackSectionSchema.optional(),
  merge: mergeSectionSchema,
});

export type RunManifestHead = z.infer<typeof runManifestHeadSchema>;
export type RunManifestFallback = z.infer<typeof fallbackSectionSchema>;
export type RunManifestMerge = z.infer<typeof mergeSectionSchema>;
export type RunManifest = z.infer<typeof runManifestSchema>;

type DeepPartial<T> = T extends readonly (infer U)[]
  ? DeepPartial<U>[]
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

/** A manifest as far as it goes: every field optional, but a field that is there must have its type. */
export type PartialRunManifest = DeepPartial<RunManifest>;

/** The same schema with every object field optional, so it is written once (zod 4 has no deepPartial). */
function lenient(schema: z.ZodType): z.ZodType {
  if (schema instanceof z.ZodObject) {
    const shape = schema.shape as Record<string, z.ZodType>;
    return z.object(Object.fromEntries(Object.entries(shape).map(([key, field]) => [key, lenient(field).optional()])));
  }
  if (schema instanceof z.ZodReadonly) return lenient(schema.unwrap() as z.ZodType).readonly();
  if (schema instanceof z.ZodArray) return z.array(lenient(schema.element as z.ZodType));
  if (schema instanceof z.ZodNullable) return lenient(schema.unwrap() as z.ZodType).nullable();
  if (schema instanceof z.ZodOptional) return lenient(schema.unwrap() as z.ZodType).optional();
  return schema;
}

// The cast states what lenient() builds from runManifestSchema; zod cannot infer a schema made at run time.
const partialRunManifestSchema = lenient(runManifestSchema) as z.ZodType<PartialRunManifest>;

/** Parses a manifest written by the merge; INPUT_INVALID names the file and the first fields at fault. */
export function parseRunManifest(text: string, file: string): RunManifest {
  return parseWith(runManifestSchema, text, file, 'merge the run again (rescale merge) to rewrite it');
}

/**
 * Parses whatever a manifest holds (an older rescale's, or one cut down by hand): missing fields are fine, a field
 * with the wrong type is an INPUT_INVALID naming it.
 */
export function parsePartialRunManifest(text: string, file: string): PartialRunManifest {
  return parseWith(partialRunManifestSchema, text, file, 'fix the field or move the manifest away');
}

function parseWith<T>(schema: z.ZodType<T>, text: string, file: string, fix: string): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new RescaleError('INPUT_INVALID', `${file} is not valid JSON (${(cause as Error).message}); ${fix}`, {
      cause,
    });
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const fields = parsed.error.issues
      .slice(0, 5)
      .map((issue) => `field "${formatIssuePath(issue.path)}": ${issue.message}`);
    throw new RescaleError('INPUT_INVALID', `${file} is not a valid run manifest (${fields.join('; ')}); ${fix}`);
  }
  return parsed.data;
}
