// The documents a crowd labels: a whole ready sample Parquet, or N rows drawn from a corpus with a seed (stratified
// by the first question's truth column when the file has one). The drawn rows keep the columns some labeller's
// prompt or the truth needs, as text, so local labellers can score the sample file through the ordinary run path.

import { parseTemplate, CODEBOOK_VARIABLES, type Codebook } from '../../contracts/codebook.js';
import { RescaleError } from '../../contracts/errors.js';
import { readParquetTable, writeParquetAtomic, type ColumnRequest } from '../../storage/parquet-table.js';
import { toDocumentId, toText } from '../../storage/parquet-rows.js';
import { assertSeed, createSeededRandom, shuffled } from '../evaluation/seeded-random.js';
import { nestedStratifiedSubsets, rarestLabelStrata } from '../sampling/sampling.js';
import type { CrowdConfig } from './crowd-config.js';

export interface CrowdSampleRequest {
  /** The corpus or ready sample (one Parquet file). */
  readonly input: string;
  /** Documents to draw; absent: every row of `input` is the sample. */
  readonly n?: number;
  readonly seed?: number;
}

export interface CrowdSample {
  /** Absolute path of the input. */
  readonly source: string;
  readonly seed: number | null;
  /** The question whose truth column stratified the draw, or null. */
  readonly stratifiedBy: string | null;
  /** Document ids as text (the id column, or the row index in `source` when the codebook has none). */
  readonly ids: readonly string[];
  readonly texts: readonly (string | null)[];
  /**
   * Question → truth labels, for the questions whose truth column the input has: a label, or a multi-label question's
   * labels (from a list column); null where missing.
   */
  readonly gold: ReadonlyMap<string, readonly (string | readonly string[] | null)[]>;
  /** The sample's columns as text (what the labellers' prompts read), in order. */
  readonly columns: ReadonlyMap<string, readonly (string | null)[]>;
}

/** Columns some labeller reads: text, id and template variables of every codebook, and the closed prompts'. */
function neededColumns(config: CrowdConfig): string[] {
  const names = new Set<string>();
  const addTemplate = (template: string | null): void => {
    if (template === null) return;
    for (const part of parseTemplate(template)) {
      if (part.kind === 'var' && !(CODEBOOK_VARIABLES as readonly string[]).includes(part.name) && part.name !== 'text')
        names.add(part.name);
    }
  };
  const addCodebook = (codebook: Codebook): void => {
    names.add(codebook.textColumn);
    if (codebook.idColumn !== null) names.add(codebook.idColumn);
    addTemplate(codebook.prompt.template);
    addTemplate(codebook.prompt.system);
  };
  addCodebook(config.codebook);
  for (const labeller of config.labellers) {
    if (labeller.kind === 'local') addCodebook(labeller.codebook);
    else {
      addTemplate(labeller.config.prompt.template);
      addTemplate(labeller.config.prompt.system);
    }
  }
  return [...names];
}

export async function drawCrowdSample(config: CrowdConfig, request: CrowdSampleRequest): Promise<CrowdSample> {
  const { codebook } = config;
  const needed = neededColumns(config);
  const goldColumns = codebook.questions.map((q) => ({
    question: q.name,
    multi: q.type === 'multi_label',
    labels: q.labels.map((l) => l.name),
    column: config.gold.get(q.name) ?? q.name,
    explicit: config.gold.has(q.name),
  }));
  const requests: ColumnRequest[] = [
    ...needed.map((name) => ({ name })),
    ...goldColumns.map((g) => ({ name: g.column, optional: !g.explicit, option: `gold.${g.question} of --config` })),
  ];
  const table = await readParquetTable(request.input, '--input', requests);
  const column = (name: string): readonly unknown[] => table.columns.get(name) ?? [];
  const gold = goldColumns.filter((g) => table.columns.has(g.column));
  for (const g of gold) {
    if (!g.multi) assertTruthLabels(table.file, g, column(g.column).map(toText));
  }

  let rows: number[];
  let stratifiedBy: string | null = null;
  if (request.n === undefined) {
    rows = Array.from({ length: table.rows }, (_, i) => i);
  } else {
    const seed = request.seed ?? 1;
    assertSeed(seed, '--seed');
    if (request.n > table.rows) {
      throw new RescaleError(
        'CONFIG_INVALID',
        `--sample ${request.n} exceeds the ${table.rows} rows of ${table.file}; lower --sample`,
      );
    }
    const strata = gold[0];
    if (strata !== undefined) {
      stratifiedBy = strata.question;
      // A missing truth label is a stratum of its own; the NUL prefix keeps it apart from every real label. A
      // multi-label truth stratifies by each row's rarest label (as rescale sample does).
      const values = strata.multi
        ? truthSets(table.file, strata.column, column(strata.column), strata)
        : column(strata.column).map(toText);
      const rarest = strata.multi
        ? rarestLabelStrata(
            values.map((v) => (v as readonly string[] | null) ?? []),
            strata.labels,
          )
        : [];
      const labels = values.map((v, i) => (v === null ? '\u0000missing' : strata.multi ? rarest[i] : v) as string);
      rows = [...(nestedStratifiedSubsets(labels, [request.n], seed, { heldOut: 0 }).subsets[0]?.indices ?? [])];
    } else {
      rows = shuffled(
        Array.from({ length: table.rows }, (_, i) => i),
        createSeededRandom(seed),
      )
        .slice(0, request.n)
        .sort((a, b) => a - b);
    }
  }

  const idColumn = codebook.idColumn;
  const ids = rows.map((row) => {
    if (idColumn === null) return String(row);
    const id = toDocumentId(column(idColumn)[row]);
    if (id === null) {
      throw new RescaleError(
        'INPUT_INVALID',
        `${table.file} row ${row}: the id column "${idColumn}" is null; every sampled document needs an id`,
      );
    }
    return String(id);
  });
  const text = (name: string): (string | null)[] => rows.map((row) => toText(column(name)[row]));
  return {
    source: table.file,
    seed: request.n === undefined ? null : (request.seed ?? 1),
    stratifiedBy,
    ids,
    texts: text(codebook.textColumn),
    gold: new Map<string, readonly (string | readonly string[] | null)[]>(
      gold.map((g): [string, readonly (string | readonly string[] | null)[]] => {
        if (!g.multi) return [g.question, text(g.column)];
        const sets = truthSets(table.file, g.column, column(g.column), g);
        return [g.question, rows.map((row) => sets[row] ?? null)];
      }),
    ),
    columns: new Map(needed.filter((name) => table.columns.has(name)).map((name) => [name, text(name)])),
  };
}

/**
 * A multi-label truth column: each row's labels in codebook order (a list column of label names), null if missing.
 * Every label must be one of the question's.
 */
function truthSets(
  file: string,
  name: string,
  values: readonly unknown[],
  question: { readonly question: string; readonly labels: readonly string[] },
): (readonly string[] | null)[] {
  const order = question.labels;
  const rank = new Map(order.map((label, i) => [label, i]));
  return values.map((value, row) => {
    if (value === null || value === undefined) return null;
    if (!Array.isArray(value)) {
      throw new RescaleError(
        'INPUT_INVALID',
        `--input ${file}, column "${name}", row ${row}: a multi-label question's truth is a list column of label ` +
          `names, not a ${typeof value}; store it as a list (e.g. in DuckDB, string_split(${name}, ';'))`,
      );
    }
    const labels = [...new Set(value.map((v) => toText(v) ?? ''))];
    assertTruthLabels(file, { column: name, ...question }, labels, row);
    return labels.sort((a, b) => (rank.get(a) ?? order.length) - (rank.get(b) ?? order.length));
  });
}

/**
 * Truth values must be labels of their question: a misspelt label would otherwise travel into the documents file
 * and the review app as a label no labeller could give, and fail (or be dropped) only when agreement is measured.
 * `row`: the row of all of `values` (a multi-label row's labels); else `values` are the column's rows.
 */
function assertTruthLabels(
  file: string,
  truth: { readonly question: string; readonly column: string; readonly labels: readonly string[] },
  values: readonly (string | null)[],
  row?: number,
): void {
  const known = new Set(truth.labels);
  values.forEach((value, i) => {
    if (value === null || known.has(value)) return;
    throw new RescaleError(
      'INPUT_INVALID',
      `--input ${file}, column "${truth.column}", row ${row ?? i}: truth label ${JSON.stringify(value)} is not a ` +
        `label of question "${truth.question}" (${truth.labels.join(', ')}); correct the value in the file, or ` +
        `point gold.${truth.question} of --config at the column that holds this question's labels`,
    );
  });
}

/** The sample as a Parquet file of text columns, for the local labellers' runs (their codebooks read it). */
export async function writeSampleParquet(sample: CrowdSample, file: string): Promise<void> {
  await writeParquetAtomic(
    file,
    [...sample.columns].map(([name, data]) => ({ name, data: [...data], type: 'STRING' as const, nullable: true })),
  );
}
