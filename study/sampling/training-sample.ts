// `rescale sample`: from one labelled file, a held-out evaluation split and nested stratified training subsets,
// each written as chat JSONL (what LoRA trainers such as TRL, axolotl or Unsloth read) and as Parquet, plus a manifest.

import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { ColumnSource } from 'hyparquet-writer';
import { CODEBOOK_VARIABLES, singleQuestion, type Codebook, type Question } from '../../contracts/codebook.js';
import { RescaleError, errorMessage } from '../../contracts/errors.js';
import { promptMessages } from '../../contracts/prompt-text.js';
import { RESCALE_VERSION } from '../../contracts/package-root.js';
import { nestedStratifiedSubsets, type LabelCount } from './sampling.js';
import { writeJsonFile } from '../json-file.js';
import { readGoldLabels } from '../evaluation/labelled-predictions.js';
import { writeBytesAtomic } from '../../storage/atomic-file.js';
import { writeParquetAtomic } from '../../storage/parquet-table.js';

/** Used when no codebook is given; a codebook's own prompt is better, since training and scoring must match. */
export const DEFAULT_SYSTEM_PROMPT = 'You are a careful annotator. Answer with exactly one label.';
export const DEFAULT_USER_TEMPLATE = 'Classify the text as one of: {labels}.\n\nText: {text}';

export interface TrainingSampleOptions {
  readonly gold: string;
  readonly idColumn: string;
  readonly textColumn: string;
  readonly labelColumn: string;
  readonly sizes: readonly number[];
  readonly seed: number;
  /** Fraction (0 < x < 1) or number of items held out for evaluation. */
  readonly heldOut: number;
  readonly outDir: string;
  /** Renders the prompts (system, template, label answers) as the model will see them. */
  readonly codebook?: Codebook;
}

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

export interface SampleDocument {
  /** The id's join key (its text). */
  readonly id: string;
  readonly text: string;
  /** With several questions: the first question's label (the one the splits are stratified by). */
  readonly label: string;
  /** A multi-question codebook: each question's gold label, by question name. */
  readonly answers?: Readonly<Record<string, string>>;
}

export interface WrittenSubset {
  readonly size: number;
  readonly counts: readonly LabelCount[];
  /** Paths relative to the sample folder. */
  readonly jsonl: string;
  readonly parquet: string;
  readonly jsonlSha256: string;
}

export interface TrainingSampleManifest {
  readonly kind: 'rescale.sample';
  readonly version: 1;
  readonly rescale: string;
  readonly createdAt: string;
  readonly seed: number;
  readonly source: {
    readonly file: string;
    readonly rows: number;
    readonly idColumn: string;
    readonly textColumn: string;
    readonly labelColumn: string;
  };
  /** Rows left out because their text or label is empty. */
  readonly skipped: { readonly noText: number; readonly noLabel: number };
  readonly labels: readonly string[];
  /**
   * A multi-question codebook: its questions, each with its labels and gold column (named after it). Each training
   * example is one (document, question) pair with that question's full prompt; splits are stratified by the first.
   */
  readonly questions?: readonly { readonly name: string; readonly labels: readonly string[] }[];
  readonly prompt: {
    readonly source: 'codebook' | 'default';
    readonly codebook: string | null;
    readonly system: string | null;
    readonly template: string;
  };
  readonly heldOut: { readonly size: number; readonly counts: readonly LabelCount[]; readonly parquet: string };
  /** Items left for training once the held-out split is removed. */
  readonly poolSize: number;
  readonly subsets: readonly WrittenSubset[];
}

export interface TrainingSample {
  readonly manifest: TrainingSampleManifest;
  readonly manifestPath: string;
  readonly heldOut: readonly SampleDocument[];
  /** Ascending by size; each holds the documents of the previous one. */
  readonly subsets: readonly { readonly size: number; readonly documents: readonly SampleDocument[] }[];
}

/** The file names for one training subset; sizes are zero-padded so the files sort by size. */
export function subsetFileName(size: number, width: number, extension: 'jsonl' | 'parquet'): string {
  return `train-${String(size).padStart(width, '0')}.${extension}`;
}

/** One chat example: system prompt, the user message for the document, the label's answer text as the reply. */
export function chatExample(
  doc: SampleDocument,
  prompt: (text: string) => { system: string | null; user: string },
  answer: (label: string) => string,
): { messages: ChatMessage[] } {
  const { system, user } = prompt(doc.text);
  const messages: ChatMessage[] = [];
  if (system !== null) messages.push({ role: 'system', content: system });
  messages.push({ role: 'user', content: user }, { role: 'assistant', content: answer(doc.label) });
  return { messages };
}

export async function writeTrainingSample(options: TrainingSampleOptions): Promise<TrainingSample> {
  const several = options.codebook !== undefined && options.codebook.questions.length > 1 ? options.codebook : null;
  const questions = several?.questions ?? [];
  const multi = questions.findIndex((q) => q.type !== 'single_label');
  if (several !== null && multi >= 0) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `${several.source ?? 'codebook'}: field "questions[${multi}].type": rescale sample writes single-label ` +
        'questions; write multi-label training files with your own script',
    );
  }
  // Several questions: each question's gold labels are in the column named after it; the first one stratifies.
  const gold = await readGoldLabels(options.gold, {
    idColumn: options.idColumn,
    labelColumn: questions[0]?.name ?? options.labelColumn,
    extraColumns: [
      { name: options.textColumn, option: '--text-column' },
      ...questions.slice(1).map((q) => ({ name: q.name, option: `the gold column of question ${q.name}` })),
    ],
  });
  const texts = gold.extra.get(options.textColumn) ?? [];
  const documents: SampleDocument[] = [];
  let noText = 0;
  let noLabel = 0;
  gold.labels.forEach((label, row) => {
    const raw = texts[row];
    const text =
      raw === null || raw === undefined
        ? ''
        : raw instanceof Uint8Array
          ? Buffer.from(raw).toString('utf8')
          : String(raw);
    const answers = Object.fromEntries(
      questions.map((q, k) => {
        const value = k === 0 ? label : gold.extra.get(q.name)?.[row];
        return [q.name, value === null || value === undefined ? null : String(value)];
      }),
    );
    if (label === null || Object.values(answers).some((a) => a === null)) noLabel++;
    else if (text.trim() === '') noText++;
    else {
      documents.push({
        id: gold.keys[row] as string,
        text,
        label,
        ...(several !== null ? { answers: answers as Record<string, string> } : {}),
      });
    }
  });
  if (documents.length === 0)
    throw new RescaleError('INPUT_INVALID', `--gold ${gold.file} has no row with both a text and a label`);

  // Labels and answers: the codebook's when given (every gold label must be one of them), else the labels seen.
  const seen = [...new Set(documents.map((d) => d.label))].sort();
  let labels: string[];
  let answer: (label: string) => string;
  let prompt: (text: string) => { system: string | null; user: string };
  let promptRecord: TrainingSampleManifest['prompt'];
  if (several !== null) {
    checkPromptVariables(several);
    for (const question of questions) {
      const names = question.labels.map((l) => l.name);
      const unknown = [...new Set(documents.map((d) => d.answers?.[question.name] ?? ''))].filter(
        (l) => !names.includes(l),
      );
      if (unknown.length > 0) {
        throw new RescaleError(
          'INPUT_INVALID',
          `column "${question.name}" of ${gold.file} holds ${unknown.map((l) => JSON.stringify(l)).join(', ')}, ` +
            `not labels of question ${question.name} (${names.join(', ')}); map them to the question's labels first`,
        );
      }
    }
    labels = (questions[0] as Question).labels.map((l) => l.name);
    answer = (label) => label;
    prompt = () => ({ system: null, user: '' });
    promptRecord = {
      source: 'codebook',
      codebook: several.source,
      system: several.prompt.system,
      template: several.prompt.template,
    };
  } else if (options.codebook !== undefined) {
    const codebook = options.codebook;
    const question: Question = singleQuestion(codebook);
    const byName = new Map(question.labels.map((l) => [l.name, l]));
    const unknown = seen.filter((l) => !byName.has(l));
    if (unknown.length > 0) {
      throw new RescaleError(
        'INPUT_INVALID',
        `column "${options.labelColumn}" of ${gold.file} holds ` +
          `${unknown.map((l) => JSON.stringify(l)).join(', ')}, not labels of the codebook ${codebook.source ?? ''} ` +
          `(${question.labels.map((l) => l.name).join(', ')}); map them to codebook labels first`,
      );
    }
    checkPromptVariables(codebook);
    labels = question.labels.map((l) => l.name);
    answer = (label) => (byName.get(label) as { answer: string }).answer;
    prompt = (text) => promptMessages(codebook, question, { text });
    promptRecord = {
      source: 'codebook',
      codebook: codebook.source,
      system: codebook.prompt.system,
      template: codebook.prompt.template,
    };
  } else {
    labels = seen;
    answer = (label) => label;
    const labelList = labels.join(', ');
    prompt = (text) => ({
      system: DEFAULT_SYSTEM_PROMPT,
      user: DEFAULT_USER_TEMPLATE.replace('{labels}', labelList).replace('{text}', text),
    });
    promptRecord = {
      source: 'default',
      codebook: null,
      system: DEFAULT_SYSTEM_PROMPT,
      template: DEFAULT_USER_TEMPLATE,
    };
  }

  const split = nestedStratifiedSubsets(
    documents.map((d) => d.label),
    options.sizes,
    options.seed,
    { heldOut: options.heldOut },
  );
  const outDir = path.resolve(options.outDir);
  try {
    await mkdir(outDir, { recursive: true });
  } catch (cause) {
    throw new RescaleError('OUTPUT_NOT_WRITABLE', `cannot create --out ${outDir}: ${errorMessage(cause)}`, { cause });
  }
  const pick = (indices: readonly number[]): SampleDocument[] => indices.map((i) => documents[i] as SampleDocument);

  const heldOutDocs = pick(split.heldOut.indices);
  const heldOutFile = 'held-out.parquet';
  await writeParquetAtomic(path.join(outDir, heldOutFile), sampleColumns(heldOutDocs, options, gold.idColumn));

  const width = String(Math.max(...options.sizes)).length;
  const subsets: WrittenSubset[] = [];
  const subsetDocs: { size: number; documents: SampleDocument[] }[] = [];
  for (const subset of split.subsets) {
    const docs = pick(subset.indices);
    const jsonl = subsetFileName(subset.size, width, 'jsonl');
    const parquet = subsetFileName(subset.size, width, 'parquet');
    const examples =
      several === null
        ? docs.map((d) => chatExample(d, prompt, answer))
        : docs.flatMap((d) => questionExamples(several, d));
    const body = examples.map((e) => JSON.stringify(e)).join('\n') + '\n';
    await writeTextAtomic(path.join(outDir, jsonl), body);
    await writeParquetAtomic(path.join(outDir, parquet), sampleColumns(docs, options, gold.idColumn));
    subsets.push({
      size: subset.size,
      counts: subset.counts,
      jsonl,
      parquet,
      jsonlSha256: createHash('sha256').update(body).digest('hex'),
    });
    subsetDocs.push({ size: subset.size, documents: docs });
  }

  const manifest: TrainingSampleManifest = {
    kind: 'rescale.sample',
    version: 1,
    rescale: RESCALE_VERSION,
    createdAt: new Date().toISOString(),
    seed: options.seed,
    source: {
      file: gold.file,
      rows: gold.rows,
      idColumn: gold.idColumn,
      textColumn: options.textColumn,
      labelColumn: gold.labelColumn,
    },
    skipped: { noText, noLabel },
    labels,
    ...(several !== null
      ? { questions: questions.map((q) => ({ name: q.name, labels: q.labels.map((l) => l.name) })) }
      : {}),
    prompt: promptRecord,
    heldOut: { size: split.heldOut.size, counts: split.heldOut.counts, parquet: heldOutFile },
    poolSize: split.poolSize,
    subsets,
  };
  const manifestPath = await writeJsonFile(path.join(outDir, 'sample.json'), manifest);
  return { manifest, manifestPath, heldOut: heldOutDocs, subsets: subsetDocs };
}

/** id, text and label columns under the input's names; integer ids stay INT64, anything else is text. */
function sampleColumns(
  docs: readonly SampleDocument[],
  options: TrainingSampleOptions,
  idColumn: string,
): ColumnSource[] {
  const ids = docs.map((d) => d.id);
  // Only ids that round-trip exactly ("7", not "007") become integers, so the join keys stay the same.
  const integer =
    ids.length > 0 &&
    ids.every((id) => /^-?\d+$/.test(id) && String(BigInt(id)) === id && BigInt.asIntN(64, BigInt(id)) === BigInt(id));
  return [
    integer
      ? { name: idColumn, data: BigInt64Array.from(ids, (id) => BigInt(id)), type: 'INT64', nullable: false }
      : { name: idColumn, data: ids, type: 'STRING', nullable: false },
    { name: options.textColumn, data: docs.map((d) => d.text), type: 'STRING', nullable: false },
    ...(docs[0]?.answers === undefined && docs.every((d) => d.answers === undefined)
      ? [{ name: options.labelColumn, data: docs.map((d) => d.label), type: 'STRING' as const, nullable: false }]
      : Object.keys(docs[0]?.answers ?? {}).map((name) => ({
          name,
          data: docs.map((d) => d.answers?.[name] ?? null),
          type: 'STRING' as const,
          nullable: false,
        }))),
  ];
}

/**
 * A document's examples for a multi-question codebook: one per question, in codebook order, each with the question's
 * full prompt as the scorer renders it (the shared prefix and the document, then the question's part) and its answer.
 */
function questionExamples(codebook: Codebook, doc: SampleDocument): { messages: ChatMessage[] }[] {
  return codebook.questions.map((question) => {
    const label = doc.answers?.[question.name] as string;
    const answerOf = (name: string): string => question.labels.find((l) => l.name === name)?.answer ?? name;
    return chatExample({ ...doc, label }, (text) => promptMessages(codebook, question, { text }), answerOf);
  });
}

/** rescale sample fills {text} and the codebook's own variables only. */
function checkPromptVariables(codebook: Codebook): void {
  const own: readonly string[] = CODEBOOK_VARIABLES;
  const otherVariables = codebook.prompt.variables.filter((v) => v !== 'text' && !own.includes(v));
  if (otherVariables.length > 0) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `the codebook template uses ${otherVariables.map((v) => `{${v}}`).join(', ')} besides {text}; rescale ` +
        `sample renders {text} and the label variables only — write the training file with your own script for ` +
        `multi-column prompts`,
    );
  }
}

async function writeTextAtomic(file: string, text: string): Promise<void> {
  try {
    await writeBytesAtomic(file, text);
  } catch (cause) {
    throw new RescaleError('OUTPUT_NOT_WRITABLE', `cannot write ${file}: ${errorMessage(cause)}`, { cause });
  }
}
