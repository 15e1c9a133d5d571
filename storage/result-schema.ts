// The result columns as one table, built once from the codebook's questions and the id type: each column's name,
// Arrow type, Parquet element and getter. The shard file's Arrow schema, the merged file's Parquet schema, the
// encoder and the decoder all come from it (docs/results-schema.md), so a column is added or changed in one place.

import {
  Field,
  Float64,
  Int32,
  Int64,
  List,
  RecordBatch,
  Schema,
  Struct,
  Table,
  Utf8,
  makeData,
  type Data,
  type DataType,
  type Vector,
} from 'apache-arrow';
import type { SchemaElement } from 'hyparquet';
import type { Codebook } from '../contracts/codebook.js';
import { RescaleError } from '../contracts/errors.js';
import {
  ID_TYPES,
  probabilityColumn,
  type DocumentId,
  type FallbackOutcome,
  type FallbackStatus,
  type IdType,
  type QuestionAnswer,
  type QuestionType,
  type ResultRow,
  type ResultSource,
  type RowStatus,
} from '../contracts/results.js';
import { arrowIdType } from './parquet-rows.js';
import { utf8Element, utf8ListElements } from './parquet-table.js';

/** One question of the codebook as the result columns see it: its labels in codebook order (one `p_<label>` each). */
export interface ResultQuestion {
  readonly name: string;
  readonly labels: readonly string[];
  /** Absent for single-label questions (so files and metadata written before multi-label questions read the same). */
  readonly type?: QuestionType;
  /**
   * A multi-label question answered as one list (`multi_label.format: list`): its group adds `__set_probability`,
   * `__unscored_mass`, `__greedy_labels` and `__invalid_mass`. Absent otherwise (so per_label and single-label files
   * and metadata read as before).
   */
  readonly format?: 'list';
  /**
   * Several questions: the codebook's fallback may answer this question, so its group has the source and opinion
   * columns (`<question>__source`, `__local_label`, `__fallback_label`, …). A one-question file always has them.
   */
  readonly routed?: boolean;
}

/**
 * Whether results carry one `<question>__` column group per question: with several questions, or any multi-label one
 * (its `__labels` list has no unprefixed form). Otherwise the one question's columns carry no prefix.
 */
export function groupedQuestions(questions: readonly ResultQuestion[]): boolean {
  return questions.length > 1 || questions.some((q) => q.type === 'multi_label');
}

/** A question as written to shard metadata, the manifest and the merged file's key-value metadata. */
export function describeQuestion(question: ResultQuestion): ResultQuestion {
  return {
    name: question.name,
    labels: [...question.labels],
    ...(question.type === 'multi_label' ? { type: question.type } : {}),
    ...(question.type === 'multi_label' && question.format === 'list' ? { format: question.format } : {}),
    ...(question.routed === true ? { routed: true } : {}),
  };
}

/** The question of a codebook written with `labels:` (parseCodebook names it "label"). */
export function labelsQuestion(labels: readonly string[]): ResultQuestion {
  return { name: 'label', labels };
}

/** The column name of a question's base column in a multi-question result: `<question>__<base>`. */
export function questionColumn(question: string, base: string): string {
  return `${question}__${base}`;
}

/** How a shard file written before a column existed reads it: as another column's values, or as nulls. */
export type LegacyColumn = { readonly copyOf: string } | 'nulls';

export interface ResultColumn {
  readonly name: string;
  readonly arrowType: DataType;
  readonly nullable: boolean;
  /** The column's elements in the merged file's Parquet schema: its own, then a nested type's children. */
  readonly parquet: readonly SchemaElement[];
  /** The column's values for these rows, as Arrow data: the getter applied, then encoded by type. */
  encode(rows: readonly ResultRow[]): Data;
  /** Null for the original columns, which every result file has. */
  readonly legacy: LegacyColumn | null;
}

/** A column's values when a file lacks it: `nulls` of them. */
export interface NullColumn {
  readonly nulls: number;
}

/**
 * The part of a ResultRow that belongs to one question: the row itself for a one-question codebook, an entry of its
 * `answers` for several.
 */
type RowAnswer = Pick<
  ResultRow,
  'label' | 'confidence' | 'margin' | 'entropy' | 'probabilities' | 'localLabel' | 'fallback' | 'labelMass'
>;

/** Reads a column's value at the row being decoded. */
type Cell = (column: ResultColumn) => unknown;

/** A question's two runs of columns: its scores (after id and row) and its opinions (after the row columns). */
interface QuestionColumns {
  readonly scores: readonly ResultColumn[];
  readonly opinions: readonly ResultColumn[];
  decodeScores(
    cell: Cell,
  ): Pick<RowAnswer, 'label' | 'confidence' | 'margin' | 'entropy' | 'probabilities'> & Pick<QuestionAnswer, 'labels'>;
  decodeOpinions(cell: Cell): Pick<RowAnswer, 'localLabel' | 'fallback'>;
  /** Columns added after the opinions (read as nulls from older files). */
  readonly added: readonly ResultColumn[];
  decodeAdded(
    cell: Cell,
  ): Pick<RowAnswer, 'labelMass'> &
    Pick<QuestionAnswer, 'setProbability' | 'unscoredMass' | 'greedyLabels' | 'invalidMass'>;
  /** Several questions, a routed question only: who answered it, and both opinions. */
  readonly routed: readonly ResultColumn[];
  decodeRouted(cell: Cell): Pick<QuestionAnswer, 'source' | 'localLabel' | 'localLabels' | 'fallback'>;
}

const NO_ANSWER: QuestionAnswer = {
  label: null,
  confidence: null,
  margin: null,
  entropy: null,
  probabilities: null,
  labelMass: null,
};

export class ResultSchema {
  /** All columns in file order. */
  readonly columns: readonly ResultColumn[];

  private constructor(
    readonly questions: readonly ResultQuestion[],
    readonly idType: IdType,
    private readonly head: RowColumns['head'],
    /** One group per question: a one-question codebook's unprefixed, or each question's `<name>__` group. */
    private readonly groups: readonly QuestionColumns[],
    private readonly tail: RowColumns['tail'],
    private readonly added: RowColumns['added'],
  ) {
    // One question: today's layout (scores, row columns, opinions, label mass). Several: each question's scores and
    // label mass together (and a routed question's source and opinions), then the row columns.
    // The row's added columns (duplicate_of) come last in both.
    const [single] = groups;
    this.columns =
      !groupedQuestions(questions) && single !== undefined
        ? [...head.columns, ...single.scores, ...tail.columns, ...single.opinions, ...single.added, ...added.columns]
        : [
            ...head.columns,
            ...groups.flatMap((group) => [...group.scores, ...group.added, ...group.routed]),
            ...tail.columns,
            ...added.columns,
          ];
    const seen = new Set<string>();
    for (const column of this.columns) {
      if (seen.has(column.name)) {
        const fix = 'rename the label (or the question) so its column is unique';
        throw new RescaleError('CODEBOOK_INVALID', `Two result columns would be named "${column.name}"; ${fix}.`);
      }
      seen.add(column.name);
    }
  }

  /**
   * One column group per question: a one-question codebook's columns carry no prefix (the layout files always had);
   * with several questions each column is `<question>__<column>`.
   */
  static build(questions: readonly ResultQuestion[], idType: IdType): ResultSchema {
    if (questions.length === 0) throw new RescaleError('INTERNAL', 'Result columns need at least one question.');
    if (!ID_TYPES.includes(idType)) {
      throw new RescaleError('INTERNAL', `Unknown id type ${String(idType)}; the id type must come from the plan.`);
    }
    const row = rowColumns(idType);
    const groups = !groupedQuestions(questions)
      ? [
          questionColumns(
            questions[0] as ResultQuestion,
            (name) => name,
            (r) => r,
          ),
        ]
      : questions.map((question, q) =>
          (question.type === 'multi_label' ? multiLabelColumns : questionColumns)(
            question,
            (base) => questionColumn(question.name, base),
            (r) => r.answers?.[q] ?? NO_ANSWER,
          ),
        );
    return new ResultSchema(questions, idType, row.head, groups, row.tail, row.added);
  }

  /** Several questions or a multi-label one: each question with its own `<question>__` column group. */
  get multiQuestion(): boolean {
    return groupedQuestions(this.questions);
  }

  /** The Arrow schema of a shard result file, with the file's metadata. */
  arrowSchema(metadata: ReadonlyMap<string, string> = new Map()): Schema {
    return new Schema(
      this.columns.map((column) => new Field(column.name, column.arrowType, column.nullable)),
      new Map(metadata),
    );
  }

  /** The rows as one record batch under arrowSchema(metadata). */
  encode(rows: readonly ResultRow[], metadata?: ReadonlyMap<string, string>): Table {
    const schema = this.arrowSchema(metadata);
    const children = this.columns.map((column) => column.encode(rows));
    const data = makeData({ type: new Struct(schema.fields), length: rows.length, nullCount: 0, children });
    return new Table(schema, new RecordBatch(schema, data));
  }

  /** A column of a result file; older files read as docs/results-schema.md says; null when the file lacks it. */
  columnOf(table: Table, column: ResultColumn): Vector | NullColumn | null {
    const vector = table.getChild(column.name);
    if (vector !== null) return vector;
    if (column.legacy === 'nulls') return { nulls: table.numRows };
    if (column.legacy !== null) return table.getChild(column.legacy.copyOf);
    return null;
  }

  /** Decodes a result table back into ResultRows (tests, fallback re-scoring, inspection). */
  decode(table: Table): ResultRow[] {
    const readers = new Map<ResultColumn, (i: number) => unknown>();
    for (const column of this.columns) {
      const source = this.columnOf(table, column);
      if (source === null) {
        throw new RescaleError(
          'SHARD_INCOMPLETE',
          `Result table has no column "${column.name}"; it was written for other labels.`,
        );
      }
      readers.set(column, 'nulls' in source ? () => null : (i) => source.get(i) as unknown);
    }
    const rows: ResultRow[] = [];
    for (let i = 0; i < table.numRows; i++) {
      const cell: Cell = (column) => (readers.get(column) as (i: number) => unknown)(i);
      // Field order as the writer's callers build rows, so decoded rows print like the originals.
      const { head, groups, tail, added } = this;
      const [single] = groups;
      if (!this.multiQuestion && single !== undefined) {
        rows.push({
          ...head.decode(cell),
          ...single.decodeScores(cell),
          ...tail.decode(cell),
          ...single.decodeOpinions(cell),
          ...single.decodeAdded(cell),
          ...added.decode(cell),
        });
        continue;
      }
      const answers = groups.map((group): QuestionAnswer => {
        const { labelMass, ...list } = group.decodeAdded(cell);
        return { ...group.decodeScores(cell), labelMass: labelMass ?? null, ...list, ...group.decodeRouted(cell) };
      });
      rows.push({ ...head.decode(cell), ...NO_ANSWER_ROW, ...tail.decode(cell), answers, ...added.decode(cell) });
    }
    return rows;
  }

  /** The merged file's Parquet schema: the root element, then one element per column. */
  parquetSchema(): SchemaElement[] {
    return [{ name: 'schema', num_children: this.columns.length }, ...this.columns.flatMap((column) => column.parquet)];
  }

  /**
   * The merged file's key-value metadata: the label order and the id type, for readers that do not know the codebook.
   */
  parquetKeyValue(): { key: string; value: string }[] {
    if (this.multiQuestion) {
      const questions = this.questions.map(describeQuestion);
      return [
        { key: 'rescale.questions', value: JSON.stringify(questions) },
        { key: 'rescale.id_type', value: this.idType },
      ];
    }
    const labels = this.questions[0]?.labels ?? [];
    return [
      { key: 'rescale.labels', value: JSON.stringify(labels) },
      { key: 'rescale.id_type', value: this.idType },
    ];
  }
}

/** A multi-question row's own label and score fields: null, its answers hold them. */
const NO_ANSWER_ROW = { label: null, confidence: null, margin: null, entropy: null, probabilities: null } as const;

/** The columns of a codebook's questions with the plan's id type. */
export function resultSchemaFor(questions: readonly ResultQuestion[], idType: IdType): ResultSchema {
  return ResultSchema.build(questions, idType);
}

/** The columns of a codebook's results. */
export function resultSchemaOf(codebook: Codebook, idType: IdType): ResultSchema {
  return ResultSchema.build(resultQuestionsOf(codebook), idType);
}

/** A codebook's questions as the result columns see them, each marked routed when its fallback may answer it. */
export function resultQuestionsOf(codebook: Codebook): ResultQuestion[] {
  const { fallback } = codebook;
  return codebook.questions.map((q) =>
    describeQuestion({
      name: q.name,
      labels: q.labels.map((l) => l.name),
      type: q.type,
      ...(q.multiLabel?.format === 'list' ? { format: 'list' as const } : {}),
      routed: fallback !== null && fallback.questions[q.name] !== null,
    }),
  );
}

interface RowColumns {
  readonly head: { readonly columns: readonly ResultColumn[]; decode(cell: Cell): Pick<ResultRow, 'id' | 'row'> };
  readonly tail: {
    readonly columns: readonly ResultColumn[];
    decode(cell: Cell): Pick<ResultRow, 'status' | 'error' | 'tokens' | 'source' | 'shardId'>;
  };
  /** Columns added after the questions' added columns (read as nulls from older files). */
  readonly added: { readonly columns: readonly ResultColumn[]; decode(cell: Cell): Pick<ResultRow, 'duplicateOf'> };
}

/** The columns that describe the document and the run, whatever the questions. */
function rowColumns(idType: IdType): RowColumns {
  const id = idColumn(idType);
  const row = int64Column('row', (r) => r.row);
  const status = utf8Column('status', false, (r) => r.status);
  const error = utf8Column('error', true, (r) => r.error);
  const tokens = int32Column('tokens', (r) => r.tokens);
  const source = utf8Column('source', false, (r) => r.source);
  const shardId = utf8Column('shard_id', false, (r) => r.shardId);
  // Added with scoring identical texts once, last: the corpus row of the document a copy took its results from.
  const duplicateOf = nullableInt64Column('duplicate_of', (r) => r.duplicateOf ?? null, 'nulls');
  return {
    head: {
      columns: [id, row],
      decode: (cell) => ({ id: cell(id) as DocumentId | null, row: Number(cell(row) as bigint) }),
    },
    tail: {
      columns: [status, error, tokens, source, shardId],
      decode: (cell) => ({
        status: cell(status) as RowStatus,
        error: cell(error) as string | null,
        tokens: cell(tokens) as number,
        source: cell(source) as ResultSource,
        shardId: cell(shardId) as string,
      }),
    },
    added: {
      columns: [duplicateOf],
      decode: (cell) => {
        const original = cell(duplicateOf) as bigint | null;
        // Absent when null, so rows scored themselves read back exactly as written.
        return original === null ? {} : { duplicateOf: Number(original) };
      },
    },
  };
}

/**
 * One question's columns. `name` turns a base name into the column name (the identity while files hold one
 * question); `answer` picks the question's part of a row.
 */
function questionColumns(
  question: ResultQuestion,
  name: (base: string) => string,
  answer: (row: ResultRow) => RowAnswer,
): QuestionColumns {
  const label = utf8Column(name('label'), true, (r) => answer(r).label);
  const confidence = float64Column(name('confidence'), (r) => answer(r).confidence);
  const margin = float64Column(name('margin'), (r) => answer(r).margin);
  const entropy = float64Column(name('entropy'), (r) => answer(r).entropy);
  const probabilities = question.labels.map((l, j) =>
    float64Column(name(probabilityColumn(l)), (r) => answer(r).probabilities?.[j] ?? null),
  );
  // Added with the closed-model fallback, after the original columns so positional readers keep working: the local
  // opinion (always filled when scored) and the fallback's (null unless the document was routed).
  const localLabel = utf8Column(
    name('local_label'),
    true,
    (r) => {
      const a = answer(r);
      return a.localLabel === undefined ? a.label : a.localLabel;
    },
    { copyOf: label.name },
  );
  const localConfidence = float64Column(name('local_confidence'), (r) => answer(r).confidence, {
    copyOf: confidence.name,
  });
  const fallbackLabel = utf8Column(name('fallback_label'), true, (r) => answer(r).fallback?.label ?? null, 'nulls');
  const fallbackConfidence = float64Column(
    name('fallback_confidence'),
    (r) => answer(r).fallback?.confidence ?? null,
    'nulls',
  );
  const fallbackStatus = utf8Column(name('fallback_status'), true, (r) => answer(r).fallback?.status ?? null, 'nulls');
  const fallbackError = utf8Column(name('fallback_error'), true, (r) => answer(r).fallback?.error ?? null, 'nulls');
  // Added with the one-pass exact scorer, after the opinions: the probability on the labels' first tokens.
  const labelMass = float64Column(name('label_mass'), (r) => answer(r).labelMass ?? null, 'nulls');
  // A routed question of several: its own source, then the opinions as a one-question file has them (the local
  // confidence is `__confidence` itself, so it has no copy).
  const source = utf8Column(name('source'), false, (r) => (answer(r) as QuestionAnswer).source ?? 'local');
  const routed =
    question.routed === true
      ? [source, localLabel, fallbackLabel, fallbackConfidence, fallbackStatus, fallbackError]
      : [];
  const decodeFallback = (cell: Cell): FallbackOutcome | null => {
    const outcome = cell(fallbackStatus) as FallbackStatus | null;
    return outcome === null
      ? null
      : {
          status: outcome,
          label: cell(fallbackLabel) as string | null,
          confidence: cell(fallbackConfidence) as number | null,
          error: cell(fallbackError) as string | null,
        };
  };
  return {
    routed,
    decodeRouted: (cell) => {
      if (routed.length === 0) return {};
      const fallback = decodeFallback(cell);
      const local = cell(localLabel) as string | null;
      return {
        source: cell(source) as ResultSource,
        localLabel: local,
        fallback,
      };
    },
    scores: [label, confidence, margin, entropy, ...probabilities],
    opinions: [localLabel, localConfidence, fallbackLabel, fallbackConfidence, fallbackStatus, fallbackError],
    added: [labelMass],
    decodeAdded: (cell) => {
      const mass = cell(labelMass) as number | null;
      // Absent when null, so rows without it read back exactly as written.
      return mass === null ? {} : { labelMass: mass };
    },
    decodeScores: (cell) => {
      const p = probabilities.map((column) => cell(column) as number | null);
      return {
        label: cell(label) as string | null,
        confidence: cell(confidence) as number | null,
        margin: cell(margin) as number | null,
        entropy: cell(entropy) as number | null,
        probabilities: p.some((value) => value === null) ? null : Float64Array.from(p as number[]),
      };
    },
    decodeOpinions: (cell) => {
      const fallback = decodeFallback(cell);
      const local = cell(localLabel) as string | null;
      // Only when they add something, so local-only rows read back exactly as written.
      return { ...(local !== cell(label) ? { localLabel: local } : {}), ...(fallback !== null ? { fallback } : {}) };
    },
  };
}

/**
 * A multi-label question's columns: the labels list (labels at or above their threshold, in codebook order), the
 * decided set's confidence and margin, each label's marginal P(label), then the label mass (and a list question's
 * scores); a routed question then has its source and both opinions, as label lists.
 */
function multiLabelColumns(
  question: ResultQuestion,
  name: (base: string) => string,
  answer: (
    row: ResultRow,
  ) => RowAnswer & Pick<QuestionAnswer, 'labels' | 'setProbability' | 'unscoredMass' | 'greedyLabels' | 'invalidMass'>,
): QuestionColumns {
  const labels = utf8ListColumn(name('labels'), (r) => answer(r).labels ?? null);
  const confidence = float64Column(name('confidence'), (r) => answer(r).confidence);
  const margin = float64Column(name('margin'), (r) => answer(r).margin);
  const probabilities = question.labels.map((l, j) =>
    float64Column(name(probabilityColumn(l)), (r) => answer(r).probabilities?.[j] ?? null),
  );
  const labelMass = float64Column(name('label_mass'), (r) => answer(r).labelMass ?? null);
  // A list question only: the top set's probability and the mass its walk left unscored.
  const list = question.format === 'list';
  const setProbability = float64Column(name('set_probability'), (r) => answer(r).setProbability ?? null);
  const unscoredMass = float64Column(name('unscored_mass'), (r) => answer(r).unscoredMass ?? null);
  // Added after them (null in files written before): the greedy constrained decode's set and the invalid mass.
  const greedyLabels = utf8ListColumn(name('greedy_labels'), (r) => answer(r).greedyLabels ?? null, 'nulls');
  const invalidMass = float64Column(name('invalid_mass'), (r) => answer(r).invalidMass ?? null, 'nulls');
  // A routed question: who gave `__labels`, the local model's set, and the fallback's opinion (its set replaces
  // `__labels` when it answered; the scores above stay the local model's).
  const source = utf8Column(name('source'), false, (r) => (answer(r) as QuestionAnswer).source ?? 'local');
  const localLabels = utf8ListColumn(name('local_labels'), (r) => {
    const a = answer(r) as QuestionAnswer;
    return a.localLabels === undefined ? (a.labels ?? null) : a.localLabels;
  });
  const fallbackLabels = utf8ListColumn(name('fallback_labels'), (r) => answer(r).fallback?.labels ?? null);
  const fallbackConfidence = float64Column(name('fallback_confidence'), (r) => answer(r).fallback?.confidence ?? null);
  const fallbackStatus = utf8Column(name('fallback_status'), true, (r) => answer(r).fallback?.status ?? null);
  const fallbackError = utf8Column(name('fallback_error'), true, (r) => answer(r).fallback?.error ?? null);
  const routed =
    question.routed === true
      ? [source, localLabels, fallbackLabels, fallbackConfidence, fallbackStatus, fallbackError]
      : [];
  return {
    scores: [labels, confidence, margin, ...probabilities],
    opinions: [],
    routed,
    decodeRouted: (cell) => {
      if (routed.length === 0) return {};
      const status = cell(fallbackStatus) as FallbackStatus | null;
      const local = cell(localLabels) as Iterable<string> | null;
      const answered = cell(fallbackLabels) as Iterable<string> | null;
      return {
        source: cell(source) as ResultSource,
        localLabels: local === null ? null : Array.from(local),
        fallback:
          status === null
            ? null
            : {
                status,
                label: null,
                labels: answered === null ? null : Array.from(answered),
                confidence: cell(fallbackConfidence) as number | null,
                error: cell(fallbackError) as string | null,
              },
      };
    },
    added: list ? [labelMass, setProbability, unscoredMass, greedyLabels, invalidMass] : [labelMass],
    decodeAdded: (cell) => {
      const mass = cell(labelMass) as number | null;
      const greedy = list ? (cell(greedyLabels) as Iterable<string> | null) : null;
      const scores = list
        ? {
            setProbability: cell(setProbability) as number | null,
            unscoredMass: cell(unscoredMass) as number | null,
            greedyLabels: greedy === null ? null : Array.from(greedy),
            invalidMass: cell(invalidMass) as number | null,
          }
        : {};
      return { ...(mass === null ? {} : { labelMass: mass }), ...scores };
    },
    decodeScores: (cell) => {
      const p = probabilities.map((column) => cell(column) as number | null);
      const list = cell(labels) as Iterable<string> | null;
      return {
        label: null,
        labels: list === null ? null : Array.from(list),
        confidence: cell(confidence) as number | null,
        margin: cell(margin) as number | null,
        entropy: null,
        probabilities: p.some((value) => value === null) ? null : Float64Array.from(p as number[]),
      };
    },
    decodeOpinions: () => ({}),
  };
}

// ---- columns by type: Arrow type, Parquet element and encoder in one place each ----------------------------------

function utf8Column(
  name: string,
  nullable: boolean,
  get: (row: ResultRow) => string | null,
  legacy: LegacyColumn | null = null,
): ResultColumn {
  return {
    name,
    arrowType: new Utf8(),
    nullable,
    parquet: [utf8Element(name, nullable)],
    encode: (rows) => utf8Data(rows.map(get)),
    legacy,
  };
}

/** A list of strings (Arrow List<Utf8>, Parquet's three-level LIST of UTF8); the list itself may be null. */
function utf8ListColumn(
  name: string,
  get: (row: ResultRow) => readonly string[] | null,
  legacy: LegacyColumn | null = null,
): ResultColumn {
  const item = new Field('element', new Utf8(), false);
  return {
    name,
    arrowType: new List(item),
    nullable: true,
    parquet: utf8ListElements(name, true),
    encode: (rows) => {
      const values = rows.map(get);
      const valueOffsets = new Int32Array(values.length + 1);
      values.forEach((list, i) => (valueOffsets[i + 1] = (valueOffsets[i] as number) + (list?.length ?? 0)));
      const child = utf8Data(values.flatMap((list) => list ?? []));
      return makeData({
        type: new List(item),
        length: values.length,
        ...validityBitmap((i) => values[i] !== null, values.length),
        valueOffsets,
        child,
      });
    },
    legacy,
  };
}

function float64Column(
  name: string,
  get: (row: ResultRow) => number | null,
  legacy: LegacyColumn | null = null,
): ResultColumn {
  return {
    name,
    arrowType: new Float64(),
    nullable: true,
    parquet: [{ name, type: 'DOUBLE', repetition_type: 'OPTIONAL' }],
    encode: (rows) => float64Data(rows.map(get)),
    legacy,
  };
}

function int64Column(name: string, get: (row: ResultRow) => number): ResultColumn {
  return {
    name,
    arrowType: new Int64(),
    nullable: false,
    parquet: [{ name, type: 'INT64', repetition_type: 'REQUIRED' }],
    encode: (rows) =>
      makeData({ type: new Int64(), length: rows.length, data: BigInt64Array.from(rows, (row) => BigInt(get(row))) }),
    legacy: null,
  };
}

function nullableInt64Column(
  name: string,
  get: (row: ResultRow) => number | null,
  legacy: LegacyColumn | null = null,
): ResultColumn {
  return {
    name,
    arrowType: new Int64(),
    nullable: true,
    parquet: [{ name, type: 'INT64', repetition_type: 'OPTIONAL' }],
    encode: (rows) => {
      const values = rows.map(get);
      const data = new BigInt64Array(values.length);
      values.forEach((value, i) => {
        if (value !== null) data[i] = BigInt(value);
      });
      const validity = validityBitmap((i) => values[i] !== null, values.length);
      return makeData({ type: new Int64(), length: values.length, ...validity, data });
    },
    legacy,
  };
}

function int32Column(name: string, get: (row: ResultRow) => number): ResultColumn {
  return {
    name,
    arrowType: new Int32(),
    nullable: false,
    parquet: [{ name, type: 'INT32', repetition_type: 'REQUIRED' }],
    encode: (rows) => makeData({ type: new Int32(), length: rows.length, data: Int32Array.from(rows, get) }),
    legacy: null,
  };
}

/** The id column keeps the input id column's type (docs/results-schema.md). */
function idColumn(idType: IdType): ResultColumn {
  return {
    name: 'id',
    arrowType: arrowIdType(idType),
    nullable: true,
    parquet: [idElement(idType)],
    encode: (rows) => idData(idType, rows),
    legacy: null,
  };
}

function idElement(idType: IdType): SchemaElement {
  if (idType === 'utf8') return utf8Element('id', true);
  if (idType === 'float32') return { name: 'id', type: 'FLOAT', repetition_type: 'OPTIONAL' };
  if (idType === 'float64') return { name: 'id', type: 'DOUBLE', repetition_type: 'OPTIONAL' };
  const signed = idType.startsWith('int');
  const bitWidth = Number(idType.replace(/^u?int/, ''));
  const name = `${signed ? '' : 'U'}INT_${bitWidth}` as NonNullable<SchemaElement['converted_type']>;
  return {
    name: 'id',
    type: bitWidth === 64 ? 'INT64' : 'INT32',
    repetition_type: 'OPTIONAL',
    // Converted type only: hyparquet-writer 0.17 encodes the INTEGER logical type's bitWidth as i32 where
    // the Thrift spec says i8, which DuckDB rejects; every reader maps INT_8 ... UINT_64 the same way.
    converted_type: name,
  };
}

function validityBitmap(valid: (i: number) => boolean, length: number): { nullBitmap: Uint8Array; nullCount: number } {
  const nullBitmap = new Uint8Array(Math.ceil(length / 8));
  let nullCount = 0;
  for (let i = 0; i < length; i++) {
    if (valid(i)) nullBitmap[i >> 3]! |= 1 << (i & 7);
    else nullCount++;
  }
  return { nullBitmap, nullCount };
}

function float64Data(values: readonly (number | null)[]): Data<Float64> {
  const data = new Float64Array(values.length);
  values.forEach((value, i) => {
    if (value !== null) data[i] = value;
  });
  return makeData({
    type: new Float64(),
    length: values.length,
    ...validityBitmap((i) => values[i] !== null, values.length),
    data,
  });
}

const utf8Encoder = new TextEncoder();

function utf8Data(values: readonly (string | null)[]): Data<Utf8> {
  const encoded = values.map((value) => (value === null ? null : utf8Encoder.encode(value)));
  const valueOffsets = new Int32Array(values.length + 1);
  let total = 0;
  encoded.forEach((bytes, i) => {
    total += bytes?.length ?? 0;
    valueOffsets[i + 1] = total;
  });
  if (total > 0x7fffffff)
    throw new RescaleError('INTERNAL', 'A shard result string column exceeds 2 GiB; use smaller shards.');
  const data = new Uint8Array(total);
  encoded.forEach((bytes, i) => {
    if (bytes !== null) data.set(bytes, valueOffsets[i]);
  });
  return makeData({
    type: new Utf8(),
    length: values.length,
    ...validityBitmap((i) => values[i] !== null, values.length),
    valueOffsets,
    data,
  });
}

/** The id column in the shard's IdType; a value that does not fit the type is a caller bug, reported by row. */
function idData(idType: IdType, rows: readonly ResultRow[]): Data {
  const type: DataType = arrowIdType(idType);
  const length = rows.length;
  const validity = validityBitmap((i) => rows[i]?.id !== null, length);
  if (idType === 'utf8') return utf8Data(rows.map((row) => (row.id === null ? null : String(row.id))));
  const ArrayType = {
    int8: Int8Array,
    int16: Int16Array,
    int32: Int32Array,
    int64: BigInt64Array,
    uint8: Uint8Array,
    uint16: Uint16Array,
    uint32: Uint32Array,
    uint64: BigUint64Array,
    float32: Float32Array,
    float64: Float64Array,
  }[idType];
  const data = new ArrayType(length);
  const slots = data as unknown as (number | bigint)[];
  const isFloat = idType === 'float32' || idType === 'float64';
  rows.forEach((row, i) => {
    if (row.id === null) return;
    let value: number | bigint;
    try {
      value = idType === 'int64' || idType === 'uint64' ? BigInt(row.id) : Number(row.id);
    } catch {
      value = Number.NaN;
    }
    slots[i] = value;
    // A typed array wraps or truncates silently; reading the value back catches what does not fit.
    const fits = isFloat
      ? typeof value === 'number' &&
        (Number.isNaN(value) ||
          !Number.isFinite(value) ||
          Math.abs(value) <= 3.4028234663852886e38 ||
          idType === 'float64')
      : slots[i] === value;
    if (!fits) {
      throw new RescaleError(
        'INTERNAL',
        `Row ${row.row}: id ${String(row.id)} does not fit the id column type ${idType}; the id type must come from ` +
          'the plan.',
      );
    }
  });
  return makeData({ type, length, ...validity, data } as Parameters<typeof makeData>[0]);
}
