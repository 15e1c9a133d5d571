// Reads the folder `rescale crowd` writes (documents.parquet, proposals.parquet, crowd.json) into what the review app
// shows: each document's text and, per question, the distinct label sets the labellers proposed and who proposed them.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { RescaleError, errorMessage } from '../../contracts/errors.js';
import { readParquetTable } from '../../storage/parquet-table.js';

const crowdJsonSchema = z.object({
  format: z.literal('rescale-crowd/1'),
  codebook: z.object({ path: z.string(), sha256: z.string() }).passthrough(),
  questions: z
    .array(
      z
        .object({
          name: z.string().min(1),
          type: z.enum(['single_label', 'multi_label']),
          labels: z
            .array(z.object({ name: z.string().min(1), description: z.string().nullish() }).passthrough())
            .min(1),
        })
        .passthrough(),
    )
    .min(1),
  labellers: z.array(z.object({ name: z.string().min(1) }).passthrough()),
});

export interface CrowdLabel {
  readonly name: string;
  readonly description: string | null;
}

export interface CrowdQuestion {
  readonly name: string;
  readonly type: 'single_label' | 'multi_label';
  readonly labels: readonly CrowdLabel[];
}

/** One labeller's proposal for one document and question. */
export interface Proposal {
  readonly labeller: string;
  /** Empty when the labeller failed (error set) or, for a multi-label question, proposed no label. */
  readonly labels: readonly string[];
  readonly probability: number | null;
  readonly error: string | null;
}

export interface CrowdDocument {
  readonly id: string;
  readonly text: string;
  /** Per question name, the proposals in file order. */
  readonly proposals: ReadonlyMap<string, readonly Proposal[]>;
}

export interface CrowdFolder {
  readonly dir: string;
  readonly questions: readonly CrowdQuestion[];
  /** In sample order. */
  readonly documents: readonly CrowdDocument[];
  readonly byId: ReadonlyMap<string, CrowdDocument>;
  /** sha256 of the codebook the crowd used (from crowd.json). */
  readonly codebookSha256: string;
}

function text(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  return String(value);
}

/** Loads a crowd folder; every error names the file and says what to fix. */
export async function readCrowdFolder(dir: string): Promise<CrowdFolder> {
  const absolute = path.resolve(dir);
  const jsonFile = path.join(absolute, 'crowd.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(jsonFile, 'utf8'));
  } catch (cause) {
    throw new RescaleError(
      'INPUT_NOT_FOUND',
      `--crowd ${absolute}: cannot read crowd.json ` +
        `(${(cause as NodeJS.ErrnoException).code ?? errorMessage(cause)}); ` +
        'pass the folder written by "rescale crowd --out"',
      { cause },
    );
  }
  const parsed = crowdJsonSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new RescaleError(
      'INPUT_INVALID',
      `--crowd ${jsonFile}: field "${issue?.path.join('.') ?? ''}" ${issue?.message ?? 'is invalid'}; it must be ` +
        'the rescale-crowd/1 file written by "rescale crowd"',
    );
  }
  const questions: CrowdQuestion[] = parsed.data.questions.map((q) => ({
    name: q.name,
    type: q.type,
    labels: q.labels.map((l) => ({ name: l.name, description: l.description ?? null })),
  }));

  const docs = await readParquetTable(path.join(absolute, 'documents.parquet'), '--crowd', [
    { name: 'id' },
    { name: 'text' },
  ]);
  const ids = (docs.columns.get('id') ?? []).map(text);
  const texts = (docs.columns.get('text') ?? []).map(text);
  const proposals = new Map<string, Map<string, Proposal[]>>();
  const documents: { id: string; text: string }[] = [];
  ids.forEach((id, row) => {
    if (id === null || id === '')
      throw new RescaleError('INPUT_INVALID', `--crowd ${docs.file}: row ${row + 1} has no id; rerun "rescale crowd"`);
    if (proposals.has(id))
      throw new RescaleError('INPUT_INVALID', `--crowd ${docs.file}: id "${id}" appears twice; ids must be unique`);
    proposals.set(id, new Map(questions.map((q) => [q.name, []])));
    documents.push({ id, text: texts[row] ?? '' });
  });

  const table = await readParquetTable(path.join(absolute, 'proposals.parquet'), '--crowd', [
    { name: 'id' },
    { name: 'labeller' },
    { name: 'question' },
    { name: 'labels' },
    { name: 'probability' },
    { name: 'error' },
  ]);
  const col = (name: string): readonly unknown[] => table.columns.get(name) ?? [];
  for (let row = 0; row < table.rows; row++) {
    const id = text(col('id')[row]) ?? '';
    const question = text(col('question')[row]) ?? '';
    const perQuestion = proposals.get(id);
    if (perQuestion === undefined)
      throw new RescaleError(
        'INPUT_INVALID',
        `--crowd ${table.file}: row ${row + 1} names id "${id}", which ` +
          'documents.parquet does not have; the two files must come from the same "rescale crowd" run',
      );
    const list = perQuestion.get(question);
    if (list === undefined)
      throw new RescaleError(
        'INPUT_INVALID',
        `--crowd ${table.file}: row ${row + 1} names question "${question}", ` +
          `which crowd.json does not list (${questions.map((q) => q.name).join(', ')})`,
      );
    const labels = col('labels')[row];
    const probability = col('probability')[row];
    list.push({
      labeller: text(col('labeller')[row]) ?? '',
      labels: Array.isArray(labels) ? labels.map((l) => text(l) ?? '') : [],
      probability: typeof probability === 'number' ? probability : null,
      error: text(col('error')[row]),
    });
  }
  const full: CrowdDocument[] = documents.map((d) => ({ ...d, proposals: proposals.get(d.id) ?? new Map() }));
  return {
    dir: absolute,
    questions,
    documents: full,
    byId: new Map(full.map((d) => [d.id, d])),
    codebookSha256: parsed.data.codebook.sha256,
  };
}

/** A distinct proposed label set and everyone who proposed it, most supported first. */
export interface ProposalGroup {
  readonly labels: readonly string[];
  readonly by: readonly { readonly labeller: string; readonly probability: number | null }[];
}

/** Groups a question's proposals by label set (failed ones left out): most labellers, then highest probability. */
export function groupProposals(proposals: readonly Proposal[]): ProposalGroup[] {
  const groups = new Map<string, { labels: string[]; by: { labeller: string; probability: number | null }[] }>();
  for (const p of proposals) {
    if (p.error !== null) continue;
    const labels = [...p.labels].sort();
    const key = JSON.stringify(labels);
    const group = groups.get(key) ?? { labels, by: [] };
    group.by.push({ labeller: p.labeller, probability: p.probability });
    groups.set(key, group);
  }
  const best = (g: ProposalGroup): number => Math.max(-1, ...g.by.map((b) => b.probability ?? -1));
  return [...groups.values()].sort(
    (a, b) =>
      b.by.length - a.by.length || best(b) - best(a) || (JSON.stringify(a.labels) < JSON.stringify(b.labels) ? -1 : 1),
  );
}
