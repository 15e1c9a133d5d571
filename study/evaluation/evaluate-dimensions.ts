// `rescale evaluate --dimensions`: a multi-question results file whose ordered questions are the dimensions of one
// coding (flourishing's 46 dimensions, each absent < low < medium < high) against a gold file with one column per
// dimension, as verify-test.R scores it: every document expanded into its dimension cells (accD, accI, FN and FP
// rates, jac, jac2, Hamming loss), with seeded percentile-bootstrap intervals over documents.

import type { Question } from '../../contracts/codebook.js';
import { RescaleError } from '../../contracts/errors.js';
import { readParquetTable } from '../../storage/parquet-table.js';
import { bootstrapCis, type BootstrapInterval } from './bootstrap.js';
import { idKey, readPredictions } from './labelled-predictions.js';
import { dimensionLevelAgreement, type DimensionLevels } from './ordinal-metrics.js';

export interface DimensionEvaluationOptions {
  readonly gold: string;
  readonly predictions: string;
  readonly idColumn: string;
  /** The codebook's questions, the dimensions in order: gold column `<name>`, results column `<name>__label`. */
  readonly questions: readonly Question[];
  /** The label meaning "not present" (default: every question's first, lowest label). */
  readonly absentLabel?: string;
  readonly seed: number;
  readonly resamples: number;
}

/** The figures of verify-test.R, each an estimate with its interval. */
export interface DimensionFigures {
  /** accD: cells whose present/absent agrees. */
  readonly dimensionAccuracy: BootstrapInterval;
  /** accI: cells whose level agrees, absent counted as a level. */
  readonly intensityAccuracy: BootstrapInterval;
  /** FN: cells present in gold, absent in the predictions. */
  readonly falseNegativeRate: BootstrapInterval;
  /** FP: cells absent in gold, present in the predictions. */
  readonly falsePositiveRate: BootstrapInterval;
  /** jac: mean per document of Jaccard over the present dimensions. */
  readonly jaccard: BootstrapInterval;
  /** jac2: verify-test.R's Jaccard with the absent cells counted (see ordinal-metrics.ts). */
  readonly jaccardWithAbsent: BootstrapInterval;
  /** ham: mean per document of wrong present/absent cells over the dimensions. */
  readonly hammingLoss: BootstrapInterval;
}

export interface DimensionScore {
  readonly dimension: string;
  /** Documents the gold codes present on this dimension, and the predictions. */
  readonly goldPresent: number;
  readonly predictedPresent: number;
  /** Present/absent right, and the level right (absent a level), over the evaluated documents. */
  readonly dimensionAccuracy: number;
  readonly levelAccuracy: number;
}

export interface DimensionEvaluationResult {
  readonly kind: 'rescale.dimension-evaluation';
  readonly gold: { readonly file: string; readonly idColumn: string; readonly rows: number };
  readonly predictions: { readonly file: string; readonly rows: number };
  readonly dimensions: readonly string[];
  /** Present levels, lowest first; `absentLabel` comes before them. */
  readonly levels: readonly string[];
  readonly absentLabel: string;
  /** Documents in both files with every dimension scored: the ones evaluated. */
  readonly documents: number;
  readonly cells: number;
  /** Gold documents with no row in the predictions file. */
  readonly missingPredictions: number;
  /** Gold documents whose result row has some dimension unscored, by row status. */
  readonly unscored: Readonly<Record<string, number>>;
  /** Result rows whose id is not in the gold file. */
  readonly notInGold: number;
  readonly bootstrap: { readonly seed: number; readonly resamples: number; readonly confidence: number };
  readonly figures: DimensionFigures;
  readonly perDimension: readonly DimensionScore[];
}

const FIGURES = [
  'dimensionAccuracy',
  'intensityAccuracy',
  'falseNegativeRate',
  'falsePositiveRate',
  'jaccard',
  'jaccardWithAbsent',
  'hammingLoss',
] as const;

/** The shared level list of the questions, lowest first; refuses questions that are not one coding's dimensions. */
function levelsOf(
  questions: readonly Question[],
  absentLabel: string | undefined,
): { absent: string; levels: string[] } {
  const [first] = questions;
  if (first === undefined || questions.length < 2) {
    throw new RescaleError(
      'CONFIG_INVALID',
      '--dimensions needs a codebook with several questions (one per dimension); use --question for one',
    );
  }
  const names = first.labels.map((l) => l.name);
  for (const question of questions) {
    const own = question.labels.map((l) => l.name);
    if (question.type !== 'single_label' || !question.ordered || own.join('\n') !== names.join('\n')) {
      throw new RescaleError(
        'CONFIG_INVALID',
        `--dimensions: question "${question.name}" is not ordered with the labels ${names.join(', ')} of ` +
          `"${first.name}"; every question must be a single-label question with ordered: true and the same labels`,
      );
    }
  }
  const absent = absentLabel ?? (names[0] as string);
  if (names[0] !== absent) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `--absent-label ${absent} must be the questions' lowest label (${names[0] ?? ''}), which means "not present"`,
    );
  }
  return { absent, levels: names.slice(1) };
}

function cellText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  return String(value);
}

export async function evaluateDimensions(options: DimensionEvaluationOptions): Promise<DimensionEvaluationResult> {
  const { questions } = options;
  const { absent, levels } = levelsOf(questions, options.absentLabel);
  const allowed = new Set([absent, ...levels]);
  const dimensions = questions.map((q) => q.name);
  const gold = await readParquetTable(options.gold, '--gold', [
    { name: options.idColumn, option: '--id-column' },
    ...dimensions.map((name) => ({ name, option: '--codebook (a question name)' })),
  ]);
  const resultColumns = dimensions.map((name) => `${name}__label`);
  const predictions = await readPredictions(options.predictions, '--predictions', resultColumns[0] as string);
  const results = await readParquetTable(
    options.predictions,
    '--predictions',
    resultColumns.map((name) => ({ name, option: '--codebook (its questions name the result columns)' })),
  );
  const goldIds = (gold.columns.get(options.idColumn) ?? []).map(idKey);
  const goldRows = gold.columns.get(dimensions[0] as string)?.length ?? 0;
  const goldCodings: DimensionLevels[] = [];
  const predictedCodings: DimensionLevels[] = [];
  const unscored: Record<string, number> = {};
  const seen = new Set<string>();
  let missingPredictions = 0;
  for (let g = 0; g < goldRows; g++) {
    const id = goldIds[g];
    if (id === null || id === undefined) {
      throw new RescaleError('INPUT_INVALID', `--gold ${options.gold}: row ${g} has no id in "${options.idColumn}"`);
    }
    if (seen.has(id)) {
      throw new RescaleError(
        'INPUT_INVALID',
        `--gold ${options.gold}: id ${JSON.stringify(id)} appears twice in "${options.idColumn}"; one row per document`,
      );
    }
    seen.add(id);
    const goldCoding = new Map<string, string>();
    for (const name of dimensions) {
      const level = cellText(gold.columns.get(name)?.[g]);
      if (level !== null && !allowed.has(level)) {
        throw new RescaleError(
          'INPUT_INVALID',
          `--gold ${options.gold}: column "${name}", id ${JSON.stringify(id)}: ${JSON.stringify(level)} is not one ` +
            `of ${[absent, ...levels].join(', ')} (null also means ${absent})`,
        );
      }
      if (level !== null && level !== absent) goldCoding.set(name, level);
    }
    const p = predictions.index.get(id);
    if (p === undefined) {
      missingPredictions++;
      continue;
    }
    const predictedCoding = new Map<string, string>();
    let scored = true;
    for (const column of resultColumns) {
      const level = cellText(results.columns.get(column)?.[p]);
      if (level === null) scored = false;
      else if (level !== absent) predictedCoding.set(column.slice(0, -'__label'.length), level);
    }
    if (!scored) {
      const status = predictions.statuses?.[p] ?? 'no_label';
      unscored[status] = (unscored[status] ?? 0) + 1;
      continue;
    }
    goldCodings.push(goldCoding);
    predictedCodings.push(predictedCoding);
  }
  if (goldCodings.length === 0) {
    throw new RescaleError(
      'INPUT_INVALID',
      `no document of --gold ${options.gold} has a fully scored row in --predictions ${options.predictions} ` +
        `(joined on "${options.idColumn}" and "id"); check the id columns`,
    );
  }
  let notInGold = 0;
  for (const key of predictions.index.keys()) if (!seen.has(key)) notInGold++;

  const units = goldCodings.map((_, i) => i);
  const intervals = bootstrapCis(
    units,
    (sample) => {
      const r = dimensionLevelAgreement(
        sample.map((i) => goldCodings[i] as DimensionLevels),
        sample.map((i) => predictedCodings[i] as DimensionLevels),
        dimensions,
        levels,
      );
      return FIGURES.map((key) => r[key]);
    },
    { seed: options.seed, resamples: options.resamples },
  );
  const figures = Object.fromEntries(FIGURES.map((key, i) => [key, intervals[i]])) as unknown as DimensionFigures;
  const n = goldCodings.length;
  const perDimension = dimensions.map((dimension): DimensionScore => {
    let goldPresent = 0;
    let predictedPresent = 0;
    let presenceAgrees = 0;
    let levelAgrees = 0;
    for (let i = 0; i < n; i++) {
      const g = goldCodings[i]?.get(dimension) ?? absent;
      const p = predictedCodings[i]?.get(dimension) ?? absent;
      if (g !== absent) goldPresent++;
      if (p !== absent) predictedPresent++;
      if ((g === absent) === (p === absent)) presenceAgrees++;
      if (g === p) levelAgrees++;
    }
    return {
      dimension,
      goldPresent,
      predictedPresent,
      dimensionAccuracy: presenceAgrees / n,
      levelAccuracy: levelAgrees / n,
    };
  });
  const first = intervals[0] as BootstrapInterval;
  return {
    kind: 'rescale.dimension-evaluation',
    gold: { file: gold.file, idColumn: options.idColumn, rows: goldRows },
    predictions: { file: predictions.file, rows: predictions.rows },
    dimensions,
    levels,
    absentLabel: absent,
    documents: n,
    cells: n * dimensions.length,
    missingPredictions,
    unscored,
    notInGold,
    bootstrap: { seed: options.seed, resamples: options.resamples, confidence: first.confidence },
    figures,
    perDimension,
  };
}
