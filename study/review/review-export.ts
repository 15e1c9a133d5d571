// `rescale review export`: the verified labels as a gold Parquet file (id, text, one column per question, number of
// reviewers, adjudicated or not) and training JSONL rendered by the code `rescale sample` renders with
// (study/sampling/training-sample.ts): with a codebook, its chat messages or raw prompt + completion, every question
// of a document (per_label and list multi-label questions too), the same lines `rescale sample --codebook` writes from
// gold.parquet; without one, the default chat prompt per single-label question. With sizes, nested subsets
// stratified as `rescale sample` stratifies (study/sampling/sampling.ts) for a learning curve. export.json records
// every file with its sha256.

import { createHash } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { parquetWriteBuffer, type ColumnSource, type SchemaElement } from 'hyparquet-writer';
import { scoredQuestions, type Codebook, type Question } from '../../contracts/codebook.js';
import { RescaleError, errorMessage } from '../../contracts/errors.js';
import { RESCALE_VERSION } from '../../contracts/package-root.js';
import { writeBytesAtomic } from '../../storage/atomic-file.js';
import { readParquetTable, utf8Element, utf8ListElements } from '../../storage/parquet-table.js';
import { nestedStratifiedSubsets, type LabelCount } from '../sampling/sampling.js';
import {
  codebookDocuments,
  defaultExample,
  defaultPromptLabels,
  subsetFileName,
  templateColumns,
  trainingExamples,
  type AnsweredDocument,
  type SampleDocument,
} from '../sampling/training-sample.js';
import { writeJsonFile } from '../json-file.js';
import type { CrowdFolder, CrowdQuestion } from './crowd-folder.js';
import type { GoldRow } from './review-state.js';

export interface ExportOptions {
  /**
   * Renders prompts and answers as the codebook does, every question of it (else the default prompt of `rescale
   * sample`, single-label questions only).
   */
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
  /** Documents (each gives one example per question, and per label of a per_label one). */
  readonly size: number;
  /** JSONL lines. */
  readonly examples: number;
  /** Documents per stratum (verified label, or a multi-label question's rarest label), sorted. */
  readonly counts: readonly LabelCount[];
  /** Absolute path. */
  readonly file: string;
}

export interface ExportSummary {
  readonly gold: string;
  readonly documents: number;
  readonly adjudicated: number;
  /**
   * The JSONL files: with a codebook one (question: the codebook's first, which stratifies the subsets); without,
   * one per single-label question. A document gives one example per question, and per label of a per_label one.
   */
  readonly training: readonly {
    readonly question: string;
    readonly file: string;
    readonly documents: number;
    readonly examples: number;
  }[];
  /** Per training file, ascending by size (in documents): each subset holds the examples of the smaller ones. */
  readonly subsets: readonly ExportedSubset[];
  /** Multi-label questions without training examples (no codebook to render them). */
  readonly unrendered: readonly string[];
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
  readonly prompt: {
    readonly source: 'codebook' | 'default';
    readonly codebook: string | null;
    /** chat: examples are `messages`; raw: `prompt` and `completion`. */
    readonly format: 'chat' | 'raw';
  };
  /** The seed of the learning-curve subsets; null without sizes. */
  readonly seed: number | null;
  readonly training: readonly {
    readonly question: string;
    readonly file: string;
    readonly documents: number;
    readonly examples: number;
    /** Documents per stratum (the verified label; a multi-label first question's rarest label, "" for none). */
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

  const rendering = codebook === undefined ? null : await codebookRendering(crowd, codebook);
  const templateNames = rendering?.columns ?? [];
  const schema: SchemaElement[] = [
    { name: 'root', num_children: 4 + templateNames.length + crowd.questions.length },
    utf8Element('id', false),
    utf8Element('text', false),
  ];
  const columnData: ColumnSource[] = [
    { name: 'id', data: rows.map((r) => r.id) },
    { name: 'text', data: rows.map((r) => r.text) },
  ];
  // The codebook template's other columns ({title}), so `rescale sample --gold gold.parquet` renders the same prompts.
  for (const name of templateNames) {
    schema.push(utf8Element(name, true));
    columnData.push({ name, data: rows.map((r) => rendering?.valuesOf(r.id)[name] ?? null) });
  }
  for (const q of crowd.questions) {
    const name = goldColumn(q);
    const values = rows.map((r) => r.labels.get(q.name) ?? null);
    if (q.type === 'multi_label') {
      schema.push(...utf8ListElements(name, true));
      columnData.push({ name, data: values.map((v) => (v === null ? null : [...v])) });
    } else {
      schema.push(utf8Element(name, true));
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
  if (codebook === undefined && sizes !== undefined && single.length === 0)
    throw new RescaleError(
      'CONFIG_INVALID',
      '--sizes without --codebook needs a single-label question, and every question of the crowd is multi-label; ' +
        'pass --codebook (the codebook the crowd used) to render multi-label training examples',
    );
  const gold = path.join(out, 'gold.parquet');
  const goldBytes = new Uint8Array(parquetWriteBuffer({ columnData, schema }));

  const rendered: Rendered[] = rendering === null ? defaultRendering(crowd, rows) : [rendering.render(rows)];

  // Every subset is planned (and every size checked) before the first file is written.
  const width = sizes === undefined ? 0 : String(Math.max(...sizes)).length;
  const planned = rendered.map((r) => {
    if (sizes === undefined) return { ...r, subsets: [] };
    const largest = Math.max(...sizes);
    if (largest > r.labels.length)
      throw new RescaleError(
        'CONFIG_INVALID',
        `--sizes ${largest} exceeds the ${r.labels.length} documents with ${r.what}; lower --sizes to at most ` +
          `${r.labels.length} or review more documents`,
      );
    const split = nestedStratifiedSubsets(r.labels, sizes, options.seed as number, { heldOut: 0 });
    return { ...r, subsets: split.subsets };
  });

  // An earlier export into this folder: its manifest goes before anything is rewritten (a folder left half-written
  // has none), and the training files it listed that this export does not write go after.
  const earlier = await earlierExportFiles(out);
  await rm(path.join(out, 'export.json'), { force: true });
  await writeFile(gold, goldBytes);
  const body = (lines: readonly string[]): string => (lines.length > 0 ? `${lines.join('\n')}\n` : '');
  const training: ExportSummary['training'][number][] = [];
  const subsets: ExportedSubset[] = [];
  const manifestTraining: ReviewExportManifest['training'][number][] = [];
  const manifestSubsets: ReviewExportManifest['subsets'][number][] = [];
  for (const r of planned) {
    const lines = r.lines.flat();
    const all = body(lines);
    await writeFile(path.join(out, `${r.file}.jsonl`), all);
    training.push({
      question: r.question,
      file: path.join(out, `${r.file}.jsonl`),
      documents: r.labels.length,
      examples: lines.length,
    });
    manifestTraining.push({
      question: r.question,
      file: `${r.file}.jsonl`,
      documents: r.labels.length,
      examples: lines.length,
      counts: labelCounts(r.labels),
      sha256: sha256(all),
    });
    for (const subset of r.subsets) {
      // train-050.jsonl as `rescale sample` names it; train-<question>-050.jsonl with several questions.
      const name = subsetFileName(subset.size, width, 'jsonl').replace(/^train/, r.file);
      const subsetLines = subset.indices.flatMap((i) => r.lines[i] as string[]);
      const text = body(subsetLines);
      await writeFile(path.join(out, name), text);
      subsets.push({
        question: r.question,
        size: subset.size,
        examples: subsetLines.length,
        counts: subset.counts,
        file: path.join(out, name),
      });
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
    prompt: {
      source: codebook === undefined ? 'default' : 'codebook',
      codebook: codebook?.source ?? null,
      format: codebook?.prompt.format ?? 'chat',
    },
    seed: sizes === undefined ? null : (options.seed as number),
    training: manifestTraining,
    subsets: manifestSubsets,
  };
  const written = new Set([...manifestTraining.map((t) => t.file), ...manifestSubsets.map((t) => t.jsonl)]);
  for (const file of earlier) if (!written.has(file)) await rm(path.join(out, file), { force: true });
  const manifestPath = await writeJsonFile(path.join(out, 'export.json'), manifest);
  const unrendered = codebook === undefined ? crowd.questions.filter((q) => q.type === 'multi_label') : [];
  return {
    gold,
    documents: rows.length,
    adjudicated,
    training,
    subsets,
    unrendered: unrendered.map((q) => q.name),
    manifest: manifestPath,
  };
}

/**
 * The training files (names in `out`) an earlier export's export.json lists; none without one. Only plain names are
 * taken, so a manifest can name nothing outside the folder.
 */
async function earlierExportFiles(out: string): Promise<string[]> {
  let manifest: Partial<ReviewExportManifest>;
  try {
    manifest = JSON.parse(await readFile(path.join(out, 'export.json'), 'utf8')) as Partial<ReviewExportManifest>;
  } catch {
    return [];
  }
  if (manifest.kind !== 'rescale.review-export') return [];
  const names = [
    ...(Array.isArray(manifest.training) ? manifest.training.map((t) => t.file) : []),
    ...(Array.isArray(manifest.subsets) ? manifest.subsets.map((t) => t.jsonl) : []),
  ];
  return names.filter(
    (name): name is string =>
      typeof name === 'string' && /^train[^/\\]*\.jsonl$/.test(name) && name === path.basename(name),
  );
}

/** One training file: a JSONL line list per document, the documents' strata, and what a document needed. */
interface Rendered {
  /** The question the subsets are stratified by. */
  readonly question: string;
  /** File name without extension: train, or train-<question> for one of several single-label questions. */
  readonly file: string;
  /** Per document, its examples as JSON lines. */
  readonly lines: readonly (readonly string[])[];
  /** Per document, its stratum: the verified label (for a multi-label first question, its rarest label). */
  readonly labels: readonly string[];
  /** "a verified label for question ..." for the size check's message. */
  readonly what: string;
}

/**
 * Without a codebook, as `rescale sample` without one: per single-label question, one chat example per document with
 * a verified label and a text, in the default prompt listing the question's labels (sorted). Multi-label questions
 * need the codebook's rendering (their sets are in gold.parquet only).
 */
function defaultRendering(crowd: CrowdFolder, rows: readonly GoldRow[]): Rendered[] {
  const single = crowd.questions.filter((q) => q.type === 'single_label');
  return single.map((q) => {
    const docs: SampleDocument[] = [];
    for (const r of rows) {
      const verified = r.labels.get(q.name);
      if (verified === null || verified === undefined || verified.length !== 1 || r.text.trim() === '') continue;
      docs.push({ id: r.id, text: r.text, label: verified[0] as string });
    }
    // The crowd's labels for the question, not only those verified: a small or lopsided verified set would otherwise
    // teach a prompt that offers fewer choices than the question has. Sorted, as `rescale sample` lists its labels.
    const labels = defaultPromptLabels(q.labels.map((l) => ({ label: l.name })));
    return {
      question: q.name,
      file: single.length === 1 ? 'train' : `train-${q.name}`,
      lines: docs.map((d) => [JSON.stringify(defaultExample(labels, d))]),
      labels: docs.map((d) => d.label),
      what: `a verified label for question "${q.name}"`,
    };
  });
}

interface CodebookRendering {
  /** The template's other columns ({title}), read from the crowd's sample.parquet. */
  readonly columns: readonly string[];
  valuesOf(id: string): Readonly<Record<string, string | null>>;
  render(rows: readonly GoldRow[]): Rendered;
}

/**
 * With a codebook, exactly as `rescale sample --codebook` renders the gold file this export writes: every document
 * whose every question has a verified answer gives its examples (codebookDocuments, trainingExamples), one file,
 * stratified by the codebook's first question.
 */
async function codebookRendering(crowd: CrowdFolder, codebook: Codebook): Promise<CodebookRendering> {
  const questions = scoredQuestions(codebook);
  const source = `--codebook ${codebook.source ?? ''}`;
  for (const question of questions) {
    const asked = crowd.questions.find((q) => q.name === question.name);
    if (asked === undefined || asked.type !== question.type)
      throw new RescaleError(
        'CONFIG_INVALID',
        `${source} asks the ${question.type === 'multi_label' ? 'multi-label' : 'single-label'} question ` +
          `"${question.name}", which the crowd in ${crowd.dir} did not ask ` +
          `(${crowd.questions.map((q) => `${q.name}: ${q.type}`).join(', ')}); pass the codebook the crowd used`,
      );
  }
  const columns = templateColumns(codebook);
  const taken = ['id', 'text', 'reviewers', 'adjudicated', ...crowd.questions.map(goldColumn)];
  const clash = columns.find((name) => taken.includes(name));
  if (clash !== undefined)
    throw new RescaleError(
      'CONFIG_INVALID',
      `${source}: the template's column {${clash}} has the name of a column of gold.parquet; rename it in the ` +
        'codebook and the input',
    );
  const byId = new Map<string, Record<string, string | null>>();
  if (columns.length > 0) {
    const file = path.join(crowd.dir, 'sample.parquet');
    const table = await readParquetTable(
      file,
      '--crowd',
      columns.map((name) => ({ name, option: `the column {${name}} of the ${source} template` })),
    );
    if (table.rows !== crowd.documents.length)
      throw new RescaleError(
        'INPUT_INVALID',
        `--crowd ${table.file} has ${table.rows} rows and documents.parquet ${crowd.documents.length}; both must ` +
          'come from the same "rescale crowd" run',
      );
    crowd.documents.forEach((d, row) => {
      const value = (name: string): string | null => {
        const v = table.columns.get(name)?.[row];
        if (v === null || v === undefined) return null;
        return v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : String(v);
      };
      byId.set(d.id, Object.fromEntries(columns.map((name) => [name, value(name)])));
    });
  }
  const valuesOf = (id: string): Record<string, string | null> =>
    byId.get(id) ?? Object.fromEntries(columns.map((name) => [name, null]));
  const first = questions[0] as Question;
  return {
    columns,
    valuesOf,
    render(rows) {
      const answered: AnsweredDocument[] = rows.map((r) => ({
        id: r.id,
        text: r.text,
        answers: Object.fromEntries(
          questions.map((q) => {
            const verified = r.labels.get(q.name) ?? null;
            if (q.type === 'multi_label') return [q.name, verified];
            return [q.name, verified === null || verified.length !== 1 ? null : (verified[0] as string)];
          }),
        ),
        ...(columns.length > 0 ? { columns: valuesOf(r.id) } : {}),
      }));
      const { documents } = codebookDocuments(
        codebook,
        answered,
        (q) => `the verified labels of question "${q.name}" (crowd ${crowd.dir})`,
      );
      return {
        question: first.name,
        file: 'train',
        lines: documents.map((d) => trainingExamples(codebook, d).map((e) => JSON.stringify(e))),
        labels: documents.map((d) => d.label),
        what:
          questions.length === 1
            ? `a verified label for question "${first.name}"`
            : `a verified answer to every question (${questions.map((q) => q.name).join(', ')})`,
      };
    },
  };
}
