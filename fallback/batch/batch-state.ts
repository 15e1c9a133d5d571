// The Batch API's state file, `<output>.fallback-batches.json`: the batches submitted for an output and how far each
// was collected. Parsed through one schema; written atomically.

import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { errorMessage, RescaleError } from '../../contracts/errors.js';
import { writeFileAtomic } from '../../storage/atomic-file.js';
import { outputLayout } from '../../storage/output-layout.js';

// Loose: fields a newer version adds are kept when this one rewrites the file.
const batchRecordSchema = z.looseObject({
  /** Our id for the batch, in the audit's call ids (`<tag>:<cache key>`) and the input file's name. */
  tag: z.string().min(1),
  /** Null while unknown: the create request's answer was lost, and `collect` looks the batch up by its tag. */
  batchId: z.string().nullable(),
  /** The submitted JSONL, kept: it maps each custom_id to its request body (the cache stores both). */
  inputFile: z.string().min(1),
  requests: z.number().int().nonnegative(),
  submittedAt: z.string(),
  collectedAt: z.string().nullable(),
  status: z.string(),
  answered: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
  missing: z.number().int().nonnegative(),
});

/** What the state file keeps per batch. */
export interface BatchRecord {
  readonly tag: string;
  batchId: string | null;
  readonly inputFile: string;
  readonly requests: number;
  readonly submittedAt: string;
  collectedAt: string | null;
  status: string;
  answered: number;
  failed: number;
  missing: number;
}

export function batchStatePathFor(output: string): string {
  return outputLayout(output).fallbackBatchStateFile;
}

/** The output's batches, oldest first ([] before the first submit). */
export async function readBatchState(output: string): Promise<BatchRecord[]> {
  const file = batchStatePathFor(output);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new RescaleError(
      'INPUT_INVALID',
      `cannot read ${file} (${(cause as NodeJS.ErrnoException).code ?? errorMessage(cause)}); fix its permissions`,
      { cause },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new RescaleError(
      'INPUT_INVALID',
      `${file} is not valid JSON (${errorMessage(cause)}); restore it from a backup — it lists the batches submitted ` +
        `for ${output}`,
      { cause },
    );
  }
  const parsed = z.array(batchRecordSchema).safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .map((issue) => `field "${issue.path.join('.') || '(top level)'}": ${issue.message}`)
      .join('; ');
    throw new RescaleError(
      'INPUT_INVALID',
      `${file} is not a list of batches (${issues}); restore it from a backup — it lists the batches submitted for ` +
        `${output}`,
    );
  }
  return parsed.data;
}

export async function writeBatchState(output: string, records: readonly BatchRecord[]): Promise<void> {
  await writeFileAtomic(batchStatePathFor(output), async (handle) => {
    await handle.writeFile(`${JSON.stringify(records, null, 2)}\n`);
  });
}
