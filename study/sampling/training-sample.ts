// `rescale sample`: from one labelled file, a held-out evaluation split and nested stratified training subsets,
// each written as JSONL (what LoRA trainers such as TRL, axolotl or Unsloth read) and as Parquet, plus a manifest.
// With a codebook every example is the prompt the scorer renders and the answer it scores: chat messages for a chat
// codebook, a raw prompt and its completion for a raw one; one example per (document, question), and per label of a
// per_label multi-label question.

import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { SchemaElement } from 'hyparquet';
import type { ColumnSource } from 'hyparquet-writer';
import { CODEBOOK_VARIABLES, scoredQuestions, type Codebook, type Question } from '../../contracts/codebook.js';
import { RescaleError, errorMessage } from '../../contracts/errors.js';
import { renderLabelList } from '../../contracts/label-list-syntax.js';
import { promptMessages, rawPromptText } from '../../contracts/prompt-text.js';
import { RESCALE_VERSION } from '../../contracts/package-root.js';
import { EMPTY_SET_STRATUM, nestedStratifiedSubsets, rarestLabelStrata, type LabelCount } from './sampling.js';
import { writeJsonFile } from '../json-file.js';
import { labelSetOf } from '../evaluation/evaluate-multi-label.js';
import { readGoldLabels } from '../evaluation/labelled-predictions.js';
import { writeBytesAtomic } from '../../storage/atomic-file.js';
import { readParquetTable, utf8Element, utf8ListElements, writeParquetAtomic } from '../../storage/parquet-table.js';

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
  /**
   * A multi-label question's gold held as a string of labels separated by this (as evaluate's --truth-separator);
   * without it the gold column must be a list column.
   */
  readonly truthSeparator?: string;
}

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

/** A training example of a chat codebook (or without a codebook): the messages, the answer as the assistant's. */
export interface ChatExample {
  readonly messages: ChatMessage[];
}

/**
 * A training example of a raw codebook: the whole prompt string and the answer text after it (prompt.answer_prefix
 * and the answer). `prompt + completion`, tokenised whole with special-token text parsed (what llama.cpp and Hugging
 * Face tokenizers do with a string), is the token sequence the scorer scores; a trainer appends its end-of-text.
 */
export interface RawExample {
  readonly prompt: string;
  readonly completion: string;
}

export type TrainingExample = ChatExample | RawExample;

/** A question's gold answer: a label name, or a multi-label question's label names in codebook order. */
export type GoldAnswer = string | readonly string[];

export interface SampleDocument {
  /** The id's join key (its text). */
  readonly id: string;
  readonly text: string;
  /**
   * The stratum the splits are drawn by: the label (with several questions, the first question's); for a multi-label
   * first question, the document's rarest label (EMPTY_SET_STRATUM for an empty set; rarestLabelStrata).
   */
  readonly label: string;
  /** With several questions or a multi-label one: each question's gold answer, by question name. */
  readonly answers?: Readonly<Record<string, GoldAnswer>>;
  /** Other input columns the codebook template names (e.g. {title}), by name; null where the row has none. */
  readonly columns?: Readonly<Record<string, string | null>>;
}

export interface WrittenSubset {
  readonly size: number;
  /**
   * Items per label. For a multi-label first question: documents holding each label, in codebook order (a document
   * counts once under each of its labels); the strata drawn are in `strata`.
   */
  readonly counts: readonly LabelCount[];
  /** Multi-label first question only: documents per stratum (rarest label; "" for an empty set). */
  readonly strata?: readonly LabelCount[];
  /** Paths relative to the sample folder. */
  readonly jsonl: string;
  readonly parquet: string;
  readonly jsonlSha256: string;
}

/** A question of the codebook as the manifest records it. */
export interface SampleQuestion {
  readonly name: string;
  readonly labels: readonly string[];
  /** A multi-label question: how it is asked (an example per label, or one list). */
  readonly multiLabel?: 'per_label' | 'list';
  /** The gold column it was read from. */
  readonly goldColumn?: string;
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
    /** Multi-label gold held as delimited strings: the separator. */
    readonly truthSeparator?: string;
  };
  /**
   * Rows left out: no text, a label missing, and for a list question a gold set the list cannot hold (more labels
   * than max_labels, or empty where allow_empty is false).
   */
  readonly skipped: {
    readonly noText: number;
    readonly noLabel: number;
    readonly overMaxLabels?: number;
    readonly emptySet?: number;
  };
  readonly labels: readonly string[];
  /**
   * A codebook with several questions or a multi-label one: its questions, each with its labels and gold column.
   * Each training example is one (document, question) pair with that question's full prompt (one per label for a
   * per_label question); splits are stratified by the first.
   */
  readonly questions?: readonly SampleQuestion[];
  /** What the splits are stratified by: a question's label, or (multi-label) each document's rarest label. */
  readonly stratifiedBy?: { readonly question: string; readonly by: 'label' | 'rarest label' };
  readonly prompt: {
    readonly source: 'codebook' | 'default';
    readonly codebook: string | null;
    /** chat: examples are `messages`; raw: `prompt` and `completion`. */
    readonly format: 'chat' | 'raw';
    readonly system: string | null;
    readonly template: string;
  };
  readonly heldOut: {
    readonly size: number;
    readonly counts: readonly LabelCount[];
    readonly strata?: readonly LabelCount[];
    readonly parquet: string;
  };
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
): ChatExample {
  const { system, user } = prompt(doc.text);
  const messages: ChatMessage[] = [];
  if (system !== null) messages.push({ role: 'system', content: system });
  messages.push({ role: 'user', content: user }, { role: 'assistant', content: answer(doc.label) });
  return { messages };
}

/** The labels the default prompt lists: those the documents hold, sorted. */
export function defaultPromptLabels(documents: readonly { readonly label: string }[]): string[] {
  return [...new Set(documents.map((d) => d.label))].sort();
}

/** A training example without a codebook: the default system prompt and template, listing `labels`. */
export function defaultExample(labels: readonly string[], doc: SampleDocument): ChatExample {
  const labelList = labels.join(', ');
  const prompt = (text: string): { system: string; user: string } => ({
    system: DEFAULT_SYSTEM_PROMPT,
    user: DEFAULT_USER_TEMPLATE.replace('{labels}', labelList).replace('{text}', text),
  });
  return chatExample(doc, prompt, (label) => label);
}

/** A document with each codebook question's gold answer (a label, or a multi-label question's labels; null: none). */
export interface AnsweredDocument {
  readonly id: string;
  readonly text: string;
  readonly answers: Readonly<Record<string, GoldAnswer | null>>;
  /** The codebook template's other columns ({title}), by name. */
  readonly columns?: Readonly<Record<string, string | null>>;
}

export interface CodebookDocuments {
  /** In input order; `label` is the stratum the splits are drawn by (see SampleDocument). */
  readonly documents: SampleDocument[];
  /** Left out: a question without an answer, no text, a gold set a list question cannot answer. */
  readonly skipped: { noText: number; noLabel: number; overMaxLabels: number; emptySet: number };
}

/**
 * The documents a codebook's training examples are rendered from, as `rescale sample` and `rescale review export`
 * both take them: a document needs every question's answer and a text (and for a list question a set the list can
 * hold); multi-label sets are put in codebook order without duplicates; every gold label must be one of its
 * question's (`where` names the gold of a question in the error). A multi-label first question stratifies by each
 * document's rarest label.
 */
export function codebookDocuments(
  codebook: Codebook,
  rows: readonly AnsweredDocument[],
  where: (question: Question) => string,
): CodebookDocuments {
  const questions = scoredQuestions(codebook);
  const first = questions[0] as Question;
  const structured = questions.length > 1 || questions.some((q) => q.type === 'multi_label');
  const skipped = { noText: 0, noLabel: 0, overMaxLabels: 0, emptySet: 0 };
  const raw: SampleDocument[] = [];
  for (const row of rows) {
    const answers: Record<string, GoldAnswer> = {};
    let missing = false;
    for (const question of questions) {
      const value = row.answers[question.name] ?? null;
      const answer = question.type === 'multi_label' && value !== null ? goldSet(question, [value].flat()) : value;
      if (answer === null) missing = true;
      else answers[question.name] = answer;
    }
    if (missing) {
      skipped.noLabel++;
      continue;
    }
    if (row.text.trim() === '') {
      skipped.noText++;
      continue;
    }
    const unfit = listUnfit(questions, answers);
    if (unfit !== null) {
      skipped[unfit]++;
      continue;
    }
    raw.push({
      id: row.id,
      text: row.text,
      label: stratumSeed(answers[first.name] as GoldAnswer),
      ...(structured ? { answers } : {}),
      ...(row.columns !== undefined ? { columns: row.columns } : {}),
    });
  }
  for (const question of questions) checkGoldLabels(question, raw, where(question), structured);
  if (first.type !== 'multi_label') return { documents: raw, skipped };
  const strata = rarestLabelStrata(
    raw.map((d) => d.answers?.[first.name] as readonly string[]),
    first.labels.map((l) => l.name),
  );
  return { documents: raw.map((d, i) => ({ ...d, label: strata[i] as string })), skipped };
}

/**
 * A document's training examples under a codebook, as the scorer renders and scores them (documentExamples): what
 * `rescale sample` and `rescale review export` write, one JSON line each.
 */
export function trainingExamples(codebook: Codebook, doc: SampleDocument): TrainingExample[] {
  return documentExamples(codebook, scoredQuestions(codebook), doc);
}

/** Values as text; null stays null. */
function textOf(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return value instanceof Uint8Array ? Buffer.from(value).toString('utf8') : String(value);
}

export async function writeTrainingSample(options: TrainingSampleOptions): Promise<TrainingSample> {
  const codebook = options.codebook ?? null;
  // A multi-label question without its `multi_label` section is refused here, by name, as the scorer refuses it.
  const questions = codebook === null ? [] : scoredQuestions(codebook);
  const several = questions.length > 1;
  // Answers per question are kept (and written as a column each) for several questions or a multi-label one.
  const structured = several || questions.some((q) => q.type === 'multi_label');
  // Several questions: each question's gold is the column named after it; a multi-label question's may also be
  // `<question>__labels`, as results and `review export` name a label-set column.
  const fileColumns = several ? (await readParquetTable(options.gold, '--gold', [])).columnNames : [];
  const goldColumnOf = (question: Question): string => {
    if (!several) return options.labelColumn;
    const sets = `${question.name}__labels`;
    return question.type === 'multi_label' && !fileColumns.includes(question.name) && fileColumns.includes(sets)
      ? sets
      : question.name;
  };
  const columnNames = codebook === null ? [] : templateColumns(codebook);
  const separator = options.truthSeparator ?? null;
  const first = questions[0];
  const gold = await readGoldLabels(options.gold, {
    idColumn: options.idColumn,
    labelColumn: first === undefined ? options.labelColumn : goldColumnOf(first),
    extraColumns: [
      { name: options.textColumn, option: '--text-column' },
      ...questions.slice(1).map((q) => ({
        name: goldColumnOf(q),
        option: `the gold column of question ${q.name}${q.type === 'multi_label' ? ` (or ${q.name}__labels)` : ''}`,
      })),
      ...columnNames.map((name) => ({ name, option: `the column {${name}} of the codebook template` })),
    ],
  });
  const texts = gold.extra.get(options.textColumn) ?? [];
  const valuesOf = (k: number): readonly unknown[] =>
    k === 0 ? gold.values : (gold.extra.get(goldColumnOf(questions[k] as Question)) ?? []);

  let documents: SampleDocument[];
  const skipped = { noText: 0, noLabel: 0, overMaxLabels: 0, emptySet: 0 };
  if (codebook !== null) {
    const rows: AnsweredDocument[] = [];
    for (let row = 0; row < gold.rows; row++) {
      const answers: Record<string, GoldAnswer | null> = {};
      questions.forEach((question, k) => {
        const value = valuesOf(k)[row];
        const where = (): string => `--gold ${gold.file}, column "${goldColumnOf(question)}", row ${row},`;
        answers[question.name] = question.type === 'multi_label' ? labelSetOf(value, separator, where) : textOf(value);
      });
      rows.push({
        id: gold.keys[row] as string,
        text: textOf(texts[row]) ?? '',
        answers,
        ...(columnNames.length > 0
          ? { columns: Object.fromEntries(columnNames.map((name) => [name, textOf(gold.extra.get(name)?.[row])])) }
          : {}),
      });
    }
    const prepared = codebookDocuments(
      codebook,
      rows,
      (question) => `column "${goldColumnOf(question)}" of ${gold.file}`,
    );
    documents = prepared.documents;
    Object.assign(skipped, prepared.skipped);
  } else {
    documents = [];
    for (let row = 0; row < gold.rows; row++) {
      const text = textOf(texts[row]) ?? '';
      if (gold.labels[row] === null) skipped.noLabel++;
      else if (text.trim() === '') skipped.noText++;
      else documents.push({ id: gold.keys[row] as string, text, label: gold.labels[row] as string });
    }
  }
  if (documents.length === 0)
    throw new RescaleError('INPUT_INVALID', `--gold ${gold.file} has no row with both a text and a label`);
  const rarest = first?.type === 'multi_label';

  let labels: string[];
  let examplesOf: (doc: SampleDocument) => TrainingExample[];
  let promptRecord: TrainingSampleManifest['prompt'];
  if (codebook !== null) {
    labels = (first as Question).labels.map((l) => l.name);
    examplesOf = (doc) => trainingExamples(codebook, doc);
    promptRecord = {
      source: 'codebook',
      codebook: codebook.source,
      format: codebook.prompt.format,
      system: codebook.prompt.system,
      template: codebook.prompt.template,
    };
  } else {
    labels = defaultPromptLabels(documents);
    const labelList = labels;
    examplesOf = (doc) => [defaultExample(labelList, doc)];
    promptRecord = {
      source: 'default',
      codebook: null,
      format: 'chat',
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
  const parquetLayout = {
    idColumn: gold.idColumn,
    textColumn: options.textColumn,
    columns: columnNames,
    gold:
      codebook === null || !structured
        ? [{ name: options.labelColumn, question: null }]
        : questions.map((q) => ({ name: goldColumnOf(q), question: q })),
  };
  // Multi-label: counts are documents per label, and the strata drawn are kept beside them.
  const countsOf = (docs: readonly SampleDocument[], strata: readonly LabelCount[]) =>
    rarest
      ? { counts: labelHolders(first, docs), strata: strata.map((c) => ({ label: c.label, count: c.count })) }
      : { counts: strata };

  const heldOutDocs = pick(split.heldOut.indices);
  const heldOutFile = 'held-out.parquet';
  await writeSampleParquet(path.join(outDir, heldOutFile), heldOutDocs, parquetLayout);

  const width = String(Math.max(...options.sizes)).length;
  const subsets: WrittenSubset[] = [];
  const subsetDocs: { size: number; documents: SampleDocument[] }[] = [];
  for (const subset of split.subsets) {
    const docs = pick(subset.indices);
    const jsonl = subsetFileName(subset.size, width, 'jsonl');
    const parquet = subsetFileName(subset.size, width, 'parquet');
    const body = docs.flatMap((d) => examplesOf(d).map((e) => JSON.stringify(e))).join('\n') + '\n';
    await writeTextAtomic(path.join(outDir, jsonl), body);
    await writeSampleParquet(path.join(outDir, parquet), docs, parquetLayout);
    subsets.push({
      size: subset.size,
      ...countsOf(docs, subset.counts),
      jsonl,
      parquet,
      jsonlSha256: createHash('sha256').update(body).digest('hex'),
    });
    subsetDocs.push({ size: subset.size, documents: docs });
  }

  const lists = questions.some((q) => q.multiLabel?.format === 'list');
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
      ...(separator !== null && questions.some((q) => q.type === 'multi_label') ? { truthSeparator: separator } : {}),
    },
    skipped: {
      noText: skipped.noText,
      noLabel: skipped.noLabel,
      ...(lists ? { overMaxLabels: skipped.overMaxLabels, emptySet: skipped.emptySet } : {}),
    },
    labels,
    ...(structured
      ? {
          questions: questions.map((q) => ({
            name: q.name,
            labels: q.labels.map((l) => l.name),
            ...(q.multiLabel !== null ? { multiLabel: q.multiLabel.format } : {}),
            ...(several || q.type === 'multi_label' ? { goldColumn: goldColumnOf(q) } : {}),
          })),
        }
      : {}),
    ...(rarest ? { stratifiedBy: { question: first.name, by: 'rarest label' as const } } : {}),
    prompt: promptRecord,
    heldOut: { size: split.heldOut.size, ...countsOf(heldOutDocs, split.heldOut.counts), parquet: heldOutFile },
    poolSize: split.poolSize,
    subsets,
  };
  const manifestPath = await writeJsonFile(path.join(outDir, 'sample.json'), manifest);
  return { manifest, manifestPath, heldOut: heldOutDocs, subsets: subsetDocs };
}

/** A multi-label gold set: duplicates dropped, labels in codebook order (unknown ones last, in the order given). */
function goldSet(question: Question, set: readonly string[] | null): readonly string[] | null {
  if (set === null) return null;
  const rank = new Map(question.labels.map((l, i) => [l.name, i]));
  return [...new Set(set)].sort((a, b) => (rank.get(a) ?? rank.size) - (rank.get(b) ?? rank.size));
}

/** The placeholder stratum before multi-label strata are known: a label, or the set's first label. */
function stratumSeed(answer: GoldAnswer): string {
  return typeof answer === 'string' ? answer : (answer[0] ?? EMPTY_SET_STRATUM);
}

/** Why a list question cannot answer a document's gold set, or null when every list question can. */
function listUnfit(
  questions: readonly Question[],
  answers: Readonly<Record<string, GoldAnswer>>,
): 'overMaxLabels' | 'emptySet' | null {
  for (const question of questions) {
    const spec = question.multiLabel;
    if (spec?.format !== 'list') continue;
    const set = answers[question.name] as readonly string[];
    if (set.length > spec.list.maxLabels) return 'overMaxLabels';
    if (set.length === 0 && !spec.list.allowEmpty) return 'emptySet';
  }
  return null;
}

/** Every gold label must be one of the question's (label names, as evaluate compares them). */
function checkGoldLabels(
  question: Question,
  docs: readonly SampleDocument[],
  where: string,
  structured: boolean,
): void {
  const names = question.labels.map((l) => l.name);
  const seen = new Set<string>();
  for (const doc of docs) {
    const answer = structured ? doc.answers?.[question.name] : doc.label;
    for (const label of typeof answer === 'string' ? [answer] : (answer ?? [])) seen.add(label);
  }
  const unknown = [...seen].filter((l) => !names.includes(l));
  if (unknown.length > 0) {
    throw new RescaleError(
      'INPUT_INVALID',
      `${where} holds ${unknown.map((l) => JSON.stringify(l)).join(', ')}, not labels of ` +
        `question ${question.name} (${names.join(', ')}); map them to the question's label names first`,
    );
  }
}

/** Documents holding each label of a multi-label question, in codebook order. */
function labelHolders(question: Question, docs: readonly SampleDocument[]): LabelCount[] {
  return question.labels.map((label) => ({
    label: label.name,
    count: docs.filter((d) => (d.answers?.[question.name] as readonly string[]).includes(label.name)).length,
  }));
}

/**
 * A document's examples, in codebook order: one per single-label or list question, one per label of a per_label
 * question (its yes/no question, answered yes when the label is in the gold set). Each is the prompt exactly as the
 * scorer renders it for that question (the shared prefix and the document, then the question's part) and the answer
 * text the scorer scores: the label's answer, the yes or no answer, or the gold set as a list in the codebook's
 * syntax with its labels in codebook order.
 */
function documentExamples(codebook: Codebook, questions: readonly Question[], doc: SampleDocument): TrainingExample[] {
  const input = { text: doc.text, ...(doc.columns !== undefined ? { columns: doc.columns } : {}) };
  const example = (question: Question, answer: string, label?: number): TrainingExample => {
    if (codebook.prompt.format === 'raw') {
      return {
        prompt: rawPromptText(codebook, question, input, label),
        completion: codebook.prompt.answerPrefix + answer,
      };
    }
    const { system, user } = promptMessages(codebook, question, input, label);
    const messages: ChatMessage[] = system === null ? [] : [{ role: 'system', content: system }];
    messages.push({ role: 'user', content: user }, { role: 'assistant', content: answer });
    return { messages };
  };
  return questions.flatMap((question): TrainingExample[] => {
    const gold = doc.answers?.[question.name] ?? doc.label;
    const answerOf = (name: string): string => question.labels.find((l) => l.name === name)?.answer ?? name;
    const spec = question.multiLabel;
    if (spec === null) return [example(question, answerOf(gold as string))];
    const set = gold as readonly string[];
    if (spec.format === 'per_label') {
      return question.labels.map((label, i) =>
        example(question, set.includes(label.name) ? spec.answers.yes : spec.answers.no, i),
      );
    }
    return [example(question, renderLabelList(spec.list, set.map(answerOf)))];
  });
}

/** Input columns the codebook template names besides the text ({title}): read from the gold file by name. */
export function templateColumns(codebook: Codebook): string[] {
  const own: readonly string[] = CODEBOOK_VARIABLES;
  return codebook.prompt.variables.filter((v) => v !== 'text' && !own.includes(v));
}

interface ParquetLayout {
  readonly idColumn: string;
  readonly textColumn: string;
  /** Template columns ({title}). */
  readonly columns: readonly string[];
  /** Gold columns: the label column, or one per question (a multi-label question's as a list of label names). */
  readonly gold: readonly { readonly name: string; readonly question: Question | null }[];
}

/**
 * id, text, the template's other columns and the gold columns under the input's names; integer ids stay INT64, anything
 * else is text. A multi-label question's gold is a list of label names (what evaluate reads).
 */
async function writeSampleParquet(file: string, docs: readonly SampleDocument[], layout: ParquetLayout): Promise<void> {
  const ids = docs.map((d) => d.id);
  // Only ids that round-trip exactly ("7", not "007") become integers, so the join keys stay the same.
  const integer =
    ids.length > 0 &&
    ids.every((id) => /^-?\d+$/.test(id) && String(BigInt(id)) === id && BigInt.asIntN(64, BigInt(id)) === BigInt(id));
  const taken = new Set([layout.idColumn, layout.textColumn, ...layout.gold.map((g) => g.name)]);
  const extra = layout.columns.filter((name) => !taken.has(name));
  const goldOf = (doc: SampleDocument, question: Question | null): GoldAnswer =>
    question === null ? doc.label : (doc.answers?.[question.name] as GoldAnswer);
  const lists = layout.gold.some((g) => g.question?.type === 'multi_label');
  if (!lists) {
    const columns: ColumnSource[] = [
      integer
        ? { name: layout.idColumn, data: BigInt64Array.from(ids, (id) => BigInt(id)), type: 'INT64', nullable: false }
        : { name: layout.idColumn, data: ids, type: 'STRING', nullable: false },
      { name: layout.textColumn, data: docs.map((d) => d.text), type: 'STRING', nullable: false },
      ...extra.map((name) => ({
        name,
        data: docs.map((d) => d.columns?.[name] ?? null),
        type: 'STRING' as const,
        nullable: true,
      })),
      ...layout.gold.map((g) => ({
        name: g.name,
        data: docs.map((d) => goldOf(d, g.question) as string),
        type: 'STRING' as const,
        nullable: false,
      })),
    ];
    await writeParquetAtomic(file, columns);
    return;
  }
  // A list column needs the schema spelled out (Parquet's three-level LIST of UTF8), so every column is described.
  const schema: SchemaElement[] = [
    { name: 'root', num_children: 2 + extra.length + layout.gold.length },
    integer
      ? { name: layout.idColumn, type: 'INT64', repetition_type: 'REQUIRED' }
      : utf8Element(layout.idColumn, false),
    utf8Element(layout.textColumn, false),
    ...extra.map((name): SchemaElement => utf8Element(name, true)),
    ...layout.gold.flatMap((g): SchemaElement[] =>
      g.question?.type === 'multi_label' ? utf8ListElements(g.name, false) : [utf8Element(g.name, false)],
    ),
  ];
  const columns: ColumnSource[] = [
    { name: layout.idColumn, data: integer ? ids.map((id) => BigInt(id)) : ids },
    { name: layout.textColumn, data: docs.map((d) => d.text) },
    ...extra.map((name) => ({ name, data: docs.map((d) => d.columns?.[name] ?? null) })),
    ...layout.gold.map((g) => ({ name: g.name, data: docs.map((d) => goldOf(d, g.question)) })),
  ];
  await writeParquetAtomic(file, columns, schema);
}

async function writeTextAtomic(file: string, text: string): Promise<void> {
  try {
    await writeBytesAtomic(file, text);
  } catch (cause) {
    throw new RescaleError('OUTPUT_NOT_WRITABLE', `cannot write ${file}: ${errorMessage(cause)}`, { cause });
  }
}
