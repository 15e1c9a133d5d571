// `rescale review export`: the verified labels as a gold Parquet file (id, text, one column per question, number of
// reviewers, adjudicated or not) and, per single-label question, training chat JSONL rendered as `rescale sample`
// renders it (study/sampling/training-sample.ts); with sizes, nested subsets stratified by the verified label
// (study/sampling/sampling.ts) for a learning curve. export.json records every file with its sha256.

import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { parquetWriteBuffer, type ColumnSource, type SchemaElement } from 'hyparquet-writer';
import type { Codebook } from '../../contracts/codebook.js';
import { RescaleError, errorMessage } from '../../contracts/errors.js';
import { promptMessages } from '../../contracts/prompt-text.js';
import { RESCALE_VERSION } from '../../contracts/package-root.js';
import { writeBytesAtomic } from '../../storage/atomic-file.js';
import { nestedStratifiedSubsets, type LabelCount } from '../sampling/sampling.js';
import {
  chatExample,
  DEFAULT_SYSTEM_PROMPT,
  DEFAULT_USER_TEMPLATE,
  subsetFileName,
} from '../sampling/training-sample.js';
import { writeJsonFile } from '../json-file.js';
import type { CrowdFolder, CrowdQuestion } from './crowd-folder.js';
import type { GoldRow } from './review-state.js';

export interface ExportOptions {
  /** Renders prompts and answers as the codebook does (else the default prompt of `rescale sample`). */
  readonly codebook?: Codebook;
  /** Learning-curve sizes: nested subsets stratified by the verified label, one JSONL file each. */
  readonly sizes?: readonly number[];
  /** Fixes which documents the subsets take; required with sizes. */
  readonly seed?: number;
  /** The review database, recorded in the manifest. */
  readonly db?: string;
}

export interface ExportedSubset {
  readonly question: string;
  readonly size: number;
  /** Examples per verified label, labels in sorted order. */
  readonly counts: readonly LabelCount[];
  /** Absolute path. */
  readonly file: string;
}

export interface ExportSummary {
  readonly gold: string;
  readonly documents: number;
  readonly adjudicated: number;
  /** Per single-label question: the JSONL file and its number of examples. */
  readonly training: readonly { readonly question: string; readonly file: string; readonly examples: number }[];
  /** Per single-label question, ascending by size: each subset holds the examples of the smaller ones. */
  readonly subsets: readonly ExportedSubset[];
  /** export.json: what was written, from what, with sha256s. */
  readonly manifest: string;
}

/** export.json. Paths are relative to the export folder. */
export interface ReviewExportManifest {
  readonly kind: 'rescale.review-export';
  readonly version: 1;
  readonly rescale: string;
  readonly createdAt: string;
  readonly crowd: { readonly dir: string; readonly codebookSha256: string };
  readonly db: string | null;
  readonly gold: {
    readonly file: string;
    readonly sha256: string;
    readonly documents: number;
    readonly adjudicated: number;
  };
  readonly prompt: { readonly source: 'codebook' | 'default'; readonly codebook: string | null };
  /** The seed of the learning-curve subsets; null without sizes. */
  readonly seed: number | null;
  readonly training: readonly {
    readonly question: string;
    readonly file: string;
    readonly examples: number;
    readonly counts: readonly LabelCount[];
    readonly sha256: string;
  }[];
  readonly subsets: readonly {
    readonly question: string;
    readonly size: number;
    readonly counts: readonly LabelCount[];
    readonly jsonl: string;
    readonly jsonlSha256: string;
  }[];
}

const STRING = { type: 'BYTE_ARRAY', converted_type: 'UTF8', logical_type: { type: 'STRING' } } as const;

/** Column name of a question's verified labels: the question name (`<name>__labels` for multi-label ones). */
export function goldColumn(question: CrowdQuestion): string {
  return question.type === 'multi_label' ? `${question.name}__labels` : question.name;
}

async function writeFile(file: string, data: string | Uint8Array): Promise<void> {
  try {
    await writeBytesAtomic(file, data);
  } catch (cause) {
    throw new RescaleError(
      'OUTPUT_NOT_WRITABLE',
      `cannot write ${file}: ${errorMessage(cause)}; choose a folder you can write to`,
      {
        cause,
      },
    );
  }
}

const sha256 = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');

function labelCounts(labels: readonly string[]): LabelCount[] {
  return [...new Set(labels)].sort().map((label) => ({ label, count: labels.filter((l) => l === label).length }));
}

/** Sizes must be distinct positive whole numbers; checked before anything is written. */
function checkSizes(sizes: readonly number[], seed: number | undefined): void {
  if (sizes.length === 0)
    throw new RescaleError(
      'CONFIG_INVALID',
      '--sizes is empty; give the learning-curve sizes, e.g. --sizes 50,100,200',
    );
  const seen = new Set<number>();
  for (const size of sizes) {
    if (!Number.isInteger(size) || size < 1)
      throw new RescaleError(
        'CONFIG_INVALID',
        `--sizes holds ${String(size)}; every size must be a positive whole number`,
      );
    if (seen.has(size)) throw new RescaleError('CONFIG_INVALID', `--sizes lists ${size} twice`);
    seen.add(size);
  }
  if (seed === undefined)
    throw new RescaleError(
      'CONFIG_INVALID',
      '--seed is required with --sizes: record it, it fixes which verified documents each training subset takes',
    );
}

export async function exportReview(
  crowd: CrowdFolder,
  rows: readonly GoldRow[],
  outDir: string,
  options: ExportOptions = {},
): Promise<ExportSummary> {
  const { codebook, sizes } = options;
  if (sizes !== undefined) checkSizes(sizes, options.seed);
  const out = path.resolve(outDir);
  try {
    await mkdir(out, { recursive: true });
  } catch (cause) {
    throw new RescaleError('OUTPUT_NOT_WRITABLE', `cannot create --out ${out}: ${errorMessage(cause)}`, { cause });
  }

  const schema: SchemaElement[] = [
    { name: 'root', num_children: 4 + crowd.questions.length },
    { name: 'id', ...STRING, repetition_type: 'REQUIRED' },
    { name: 'text', ...STRING, repetition_type: 'REQUIRED' },
  ];
  const columnData: ColumnSource[] = [
    { name: 'id', data: rows.map((r) => r.id) },
    { name: 'text', data: rows.map((r) => r.text) },
  ];
  for (const q of crowd.questions) {
    const name = goldColumn(q);
    const values = rows.map((r) => r.labels.get(q.name) ?? null);
    if (q.type === 'multi_label') {
      schema.push(
        { name, repetition_type: 'OPTIONAL', num_children: 1, converted_type: 'LIST', logical_type: { type: 'LIST' } },
        { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
        { name: 'element', ...STRING, repetition_type: 'REQUIRED' },
      );
      columnData.push({ name, data: values.map((v) => (v === null ? null : [...v])) });
    } else {
      schema.push({ name, ...STRING, repetition_type: 'OPTIONAL' });
      columnData.push({ name, data: values.map((v) => (v === null || v.length !== 1 ? null : (v[0] as string))) });
    }
  }
  schema.push(
    { name: 'reviewers', type: 'INT32', repetition_type: 'REQUIRED' },
    { name: 'adjudicated', type: 'BOOLEAN', repetition_type: 'REQUIRED' },
  );
  columnData.push(
    { name: 'reviewers', data: Int32Array.from(rows.map((r) => r.reviewers)) },
    { name: 'adjudicated', data: rows.map((r) => r.adjudicated) },
  );
  const single = crowd.questions.filter((q) => q.type === 'single_label');
  if (sizes !== undefined && single.length === 0)
    throw new RescaleError(
      'CONFIG_INVALID',
      '--sizes needs a single-label question, and every question of the crowd is multi-label; leave --sizes out',
    );
  const gold = path.join(out, 'gold.parquet');
  const goldBytes = new Uint8Array(parquetWriteBuffer({ columnData, schema }));

  type Rendered = { question: string; file: string; lines: string[]; labels: string[] };
  const rendered: Rendered[] = [];
  for (const q of single) {
    const codebookQuestion = codebook?.questions.find((c) => c.name === q.name);
    if (codebook !== undefined && codebookQuestion === undefined)
      throw new RescaleError(
        'CONFIG_INVALID',
        `--codebook ${codebook.source ?? ''} has no question "${q.name}"; pass the codebook the crowd used`,
      );
    const labelList = q.labels.map((l) => l.name).join(', ');
    const prompt =
      codebook !== undefined && codebookQuestion !== undefined
        ? (text: string) => promptMessages(codebook, codebookQuestion, { text })
        : (text: string) => ({
            system: DEFAULT_SYSTEM_PROMPT,
            user: DEFAULT_USER_TEMPLATE.replace('{labels}', labelList).replace('{text}', text),
          });
    const answers = new Map(codebookQuestion?.labels.map((l) => [l.name, l.answer]));
    const answer = (label: string): string => answers.get(label) ?? label;
    const lines: string[] = [];
    const labels: string[] = [];
    for (const r of rows) {
      const verified = r.labels.get(q.name);
      if (verified === null || verified === undefined || verified.length !== 1) continue;
      const label = verified[0] as string;
      lines.push(JSON.stringify(chatExample({ id: r.id, text: r.text, label }, prompt, answer)));
      labels.push(label);
    }
    rendered.push({ question: q.name, file: single.length === 1 ? 'train' : `train-${q.name}`, lines, labels });
  }

  // Every subset is planned (and every size checked) before the first file is written.
  const width = sizes === undefined ? 0 : String(Math.max(...sizes)).length;
  const planned = rendered.map((r) => {
    if (sizes === undefined) return { ...r, subsets: [] };
    const largest = Math.max(...sizes);
    if (largest > r.lines.length)
      throw new RescaleError(
        'CONFIG_INVALID',
        `--sizes ${largest} exceeds the ${r.lines.length} documents with a verified label for question ` +
          `"${r.question}"; lower --sizes to at most ${r.lines.length} or review more documents`,
      );
    const split = nestedStratifiedSubsets(r.labels, sizes, options.seed as number, { heldOut: 0 });
    return { ...r, subsets: split.subsets };
  });

  await writeFile(gold, goldBytes);
  const body = (lines: readonly string[]): string => (lines.length > 0 ? `${lines.join('\n')}\n` : '');
  const training: { question: string; file: string; examples: number }[] = [];
  const subsets: ExportedSubset[] = [];
  const manifestTraining: ReviewExportManifest['training'][number][] = [];
  const manifestSubsets: ReviewExportManifest['subsets'][number][] = [];
  for (const r of planned) {
    const all = body(r.lines);
    await writeFile(path.join(out, `${r.file}.jsonl`), all);
    training.push({ question: r.question, file: path.join(out, `${r.file}.jsonl`), examples: r.lines.length });
    manifestTraining.push({
      question: r.question,
      file: `${r.file}.jsonl`,
      examples: r.lines.length,
      counts: labelCounts(r.labels),
      sha256: sha256(all),
    });
    for (const subset of r.subsets) {
      // train-050.jsonl as `rescale sample` names it; train-<question>-050.jsonl with several questions.
      const name = subsetFileName(subset.size, width, 'jsonl').replace(/^train/, r.file);
      const text = body(subset.indices.map((i) => r.lines[i] as string));
      await writeFile(path.join(out, name), text);
      subsets.push({ question: r.question, size: subset.size, counts: subset.counts, file: path.join(out, name) });
      manifestSubsets.push({
        question: r.question,
        size: subset.size,
        counts: subset.counts,
        jsonl: name,
        jsonlSha256: sha256(text),
      });
    }
  }
  const adjudicated = rows.filter((row) => row.adjudicated).length;
  const manifest: ReviewExportManifest = {
    kind: 'rescale.review-export',
    version: 1,
    rescale: RESCALE_VERSION,
    createdAt: new Date().toISOString(),
    crowd: { dir: crowd.dir, codebookSha256: crowd.codebookSha256 },
    db: options.db === undefined ? null : path.resolve(options.db),
    gold: { file: 'gold.parquet', sha256: sha256(goldBytes), documents: rows.length, adjudicated },
    prompt: { source: codebook === undefined ? 'default' : 'codebook', codebook: codebook?.source ?? null },
    seed: sizes === undefined ? null : (options.seed as number),
    training: manifestTraining,
    subsets: manifestSubsets,
  };
  const manifestPath = await writeJsonFile(path.join(out, 'export.json'), manifest);
  return { gold, documents: rows.length, adjudicated, training, subsets, manifest: manifestPath };
}
