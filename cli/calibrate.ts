// `rescale calibrate`: reads a validation run and its gold labels, prints the reliability diagram, ECE and the
// threshold table with the recommended threshold (optionally writing everything as JSON).

import { RescaleError } from '../contracts/errors.js';
import {
  describeCoverage,
  readGoldLabels,
  readPredictions,
  resolveLabelOrder,
  resultFileAllQuestions,
  type GoldLabels,
  type ReadGoldOptions,
  type Predictions,
} from '../study/evaluation/labelled-predictions.js';
import { poolQuestions } from '../study/calibration/pooled-questions.js';
import { calibrateLabelSets } from '../study/calibration/label-set-calibration.js';
import { readParquetTable } from '../storage/parquet-table.js';
import { writeJsonFile } from '../study/json-file.js';
import {
  calibrateRouting,
  type CalibrateOptions,
  type CalibrationResult,
  type FallbackEvidence,
} from '../study/calibration/routing-calibration.js';
import { fixed, formatMarkdownTable, formatTable, percent, withInterval } from '../study/text-table.js';
import {
  keepsLowScores,
  type RoutingRule,
  type ThresholdGoal,
  type ThresholdPoint,
} from '../study/calibration/calibration.js';

export interface CalibrateCommandOptions {
  readonly predictions: string;
  readonly gold: string;
  readonly idColumn: string;
  readonly labelColumn: string;
  readonly fallbackAccuracy?: number;
  readonly fallbackPredictions?: string;
  readonly corpusSize?: number;
  readonly costPerDocument?: number;
  readonly targetAccuracy?: number;
  readonly budget?: number;
  readonly rule: RoutingRule;
  readonly bins?: number;
  readonly thresholds?: readonly number[];
  readonly labels?: readonly string[];
  readonly seed: number;
  readonly resamples: number;
  readonly json?: string;
  /**
   * A question of a multi-question result file: its `<question>__` columns are calibrated against --label-column.
   * Without it, a multi-question file is calibrated per question (gold column named after each question, or
   * `<q>__labels` for a multi-label one) and overall.
   */
  readonly question?: string;
  /** A multi-label question's gold column is a string of labels separated by this (else a list column). */
  readonly truthSeparator?: string;
}

/** A multi-question file's calibration: each question's, and all (document, question) pairs pooled. */
export interface QuestionsCalibration {
  readonly kind: 'rescale.calibration.questions';
  readonly version: 1;
  readonly questions: readonly { readonly question: string; readonly result: CalibrationResult }[];
  /** null when every question is multi-label (label sets are not pooled with single labels). */
  readonly overall: CalibrationResult | null;
}

export async function runCalibrate(
  options: CalibrateCommandOptions,
): Promise<CalibrationResult | QuestionsCalibration> {
  if ((options.fallbackAccuracy === undefined) === (options.fallbackPredictions === undefined)) {
    throw new RescaleError(
      'CONFIG_INVALID',
      'pass exactly one of --fallback-accuracy A (the accuracy you assume for the fallback model, e.g. 0.9) or ' +
        '--fallback-predictions FILE (its labels for the validation documents)',
    );
  }
  if (options.targetAccuracy !== undefined && options.budget !== undefined) {
    throw new RescaleError(
      'CONFIG_INVALID',
      'pass --target-accuracy or --budget, not both: the first buys accuracy at the lowest cost, the second the ' +
        'best accuracy for a cost',
    );
  }
  const questions = await resultFileAllQuestions(options.predictions);
  if (options.question !== undefined && questions?.some((q) => q.name === options.question) !== true) {
    throw new RescaleError(
      'CONFIG_INVALID',
      questions === null
        ? `--question ${options.question}: ${options.predictions} holds one question; leave --question out`
        : `--question ${options.question} is not a question of ${options.predictions} ` +
            `(${questions.map((q) => q.name).join(', ')})`,
    );
  }
  const chosen = questions?.find((q) => q.name === options.question);
  if (questions === null || chosen !== undefined) {
    const result =
      chosen?.type === 'multi_label'
        ? await calibrateMultiLabel(options, chosen, options.labelColumn)
        : calibrateEvidence(options, await readEvidence(options, options.labelColumn, options.question));
    if (options.json !== undefined) await writeJsonFile(options.json, result);
    return result;
  }
  // Every question against the gold column of its name, then the single-label ones pooled.
  const parts: Evidence[] = [];
  const perQuestion: { question: string; result: CalibrationResult }[] = [];
  for (const q of questions) {
    if (q.type === 'multi_label') {
      perQuestion.push({
        question: q.name,
        result: await calibrateMultiLabel(options, q, await setsColumn(options, q)),
      });
      continue;
    }
    const part = await readEvidence(options, q.name, q.name);
    parts.push(part);
    perQuestion.push({ question: q.name, result: calibrateEvidence(options, part) });
  }
  const result: QuestionsCalibration = {
    kind: 'rescale.calibration.questions',
    version: 1,
    questions: perQuestion,
    overall: parts.length === 0 ? null : calibratePooled(options, parts),
  };
  if (options.json !== undefined) await writeJsonFile(options.json, result);
  return result;
}

/** All (document, question) pairs of the single-label questions as one labelled set, with one threshold. */
function calibratePooled(options: CalibrateCommandOptions, parts: readonly Evidence[]): CalibrationResult {
  const pooled = poolQuestions(
    parts.map((p) => ({ question: p.question ?? '', gold: p.gold, predictions: p.predictions })),
  );
  const fallbackPooled =
    parts[0]?.fallback.kind === 'predictions'
      ? {
          kind: 'predictions' as const,
          predictions: poolQuestions(
            parts.map((p) => ({
              question: p.question ?? '',
              gold: p.gold,
              predictions: (p.fallback as { predictions: Predictions }).predictions,
            })),
          ).predictions,
        }
      : (parts[0]?.fallback as FallbackEvidence);
  return calibrateEvidence(options, {
    question: null,
    gold: pooled.gold,
    predictions: pooled.predictions,
    fallback: fallbackPooled,
    labelCount: Math.max(...parts.map((p) => p.labelCount)),
  });
}

/**
 * A multi-label question's gold column when every question is calibrated: the column named after it, else
 * `<question>__labels` (as results and `review export`'s gold.parquet name a label-set column; `rescale sample` reads
 * the same).
 */
async function setsColumn(options: CalibrateCommandOptions, question: { name: string }): Promise<string> {
  const columns = (await readParquetTable(options.gold, '--gold', [])).columnNames;
  return firstColumn(columns, [question.name, `${question.name}__labels`]) ?? question.name;
}

/** The first of `candidates` that `columns` holds; undefined when none. */
function firstColumn(columns: readonly string[], candidates: readonly string[]): string | undefined {
  return candidates.find((c) => columns.includes(c));
}

/**
 * A multi-label question against the gold label sets in `goldColumn` (a list column, or split on --truth-separator):
 * the local model's sets (`<q>__local_labels` when the run routed the question, else `<q>__labels`), and with
 * --fallback-predictions the fallback's (`<q>__fallback_labels` of a hybrid run, else `<q>__labels`).
 */
async function calibrateMultiLabel(
  options: CalibrateCommandOptions,
  question: { name: string; labels: string[]; format?: string },
  goldColumn: string,
): Promise<CalibrationResult> {
  const q = question.name;
  const gold = await readGoldLabels(options.gold, goldOptions(options, goldColumn, q));
  const list = question.format === 'list';
  const table = await readParquetTable(options.predictions, '--predictions', [
    { name: `${q}__unscored_mass`, optional: true },
  ]);
  const localColumn = firstColumn(table.columnNames, [`${q}__local_labels`]) ?? `${q}__labels`;
  const predictions = await readPredictions(options.predictions, '--predictions', localColumn, q);
  const unscored = table.columns.get(`${q}__unscored_mass`);
  return calibrateLabelSets(gold, predictions, {
    question: q,
    form: list ? 'list' : 'per_label',
    labels: options.labels ?? question.labels,
    separator: options.truthSeparator ?? null,
    ...(list && unscored !== undefined
      ? { unscoredMass: unscored.map((v) => (v === null || v === undefined ? null : Number(v))) }
      : {}),
    ...sweepOptions(
      options,
      options.fallbackPredictions === undefined
        ? { kind: 'assumed', accuracy: options.fallbackAccuracy as number }
        : { kind: 'predictions', predictions: await fallbackLabelSets(options.fallbackPredictions, q) },
      question.labels.length,
    ),
  });
}

/** The fallback's label sets for question `q`: `<q>__fallback_labels` (a hybrid run's) when the file has it. */
async function fallbackLabelSets(file: string, q: string): Promise<Predictions> {
  const columns = (await readParquetTable(file, '--fallback-predictions', [])).columnNames;
  const column = firstColumn(columns, [`${q}__fallback_labels`, `${q}__labels`]);
  if (column === undefined) {
    throw new RescaleError(
      'COLUMN_MISSING',
      `--fallback-predictions ${file} has no column "${q}__fallback_labels" or "${q}__labels" with the fallback's ` +
        `label sets for the multi-label question ${q} (it has: ${columns.join(', ')}); pass the result file of a ` +
        'run of this codebook with the fallback on the labelled documents',
    );
  }
  return readPredictions(file, '--fallback-predictions', column, q);
}

/** The command's options as the calibration takes them, with the fallback's evidence and the number of labels. */
function sweepOptions(
  options: CalibrateCommandOptions,
  fallback: FallbackEvidence,
  labelCount: number,
): CalibrateOptions {
  const goal: ThresholdGoal | undefined =
    options.targetAccuracy !== undefined
      ? { targetAccuracy: options.targetAccuracy }
      : options.budget !== undefined
        ? { budget: options.budget }
        : undefined;
  return {
    rule: options.rule,
    fallback,
    labelCount,
    seed: options.seed,
    resamples: options.resamples,
    ...(options.corpusSize !== undefined ? { corpusSize: options.corpusSize } : {}),
    ...(options.costPerDocument !== undefined ? { costPerDocument: options.costPerDocument } : {}),
    ...(goal !== undefined ? { goal } : {}),
    ...(options.bins !== undefined ? { bins: options.bins } : {}),
    ...(options.thresholds !== undefined ? { tableThresholds: options.thresholds } : {}),
  };
}

interface Evidence {
  readonly question: string | null;
  readonly gold: GoldLabels;
  readonly predictions: Predictions;
  readonly fallback: FallbackEvidence;
  readonly labelCount: number;
}

/**
 * How the gold file is read: `goldColumn` is --label-column's, or (every question calibrated) the column named after
 * the question, which a missing-column error then says how to choose instead.
 */
function goldOptions(
  options: CalibrateCommandOptions,
  goldColumn: string,
  question: string | undefined,
): ReadGoldOptions {
  return {
    idColumn: options.idColumn,
    labelColumn: goldColumn,
    ...(goldColumn !== options.labelColumn && question !== undefined
      ? { labelOption: `--question ${question} --label-column` }
      : {}),
  };
}

/** One question's gold labels (from `goldColumn`), local predictions and fallback evidence. */
async function readEvidence(
  options: CalibrateCommandOptions,
  goldColumn: string,
  question: string | undefined,
): Promise<Evidence> {
  const gold = await readGoldLabels(options.gold, goldOptions(options, goldColumn, question));
  const predictions = await readPredictions(options.predictions, '--predictions', 'label', question);
  const fallback: FallbackEvidence =
    options.fallbackPredictions !== undefined
      ? {
          kind: 'predictions',
          predictions: await readPredictions(options.fallbackPredictions, '--fallback-predictions', 'label', question),
        }
      : { kind: 'assumed', accuracy: options.fallbackAccuracy as number };
  const labels = resolveLabelOrder(gold, [predictions], options.labels, (p) => p.localLabels);
  return { question: question ?? null, gold, predictions, fallback, labelCount: labels.length };
}

function calibrateEvidence(options: CalibrateCommandOptions, evidence: Evidence): CalibrationResult {
  const { gold, predictions, fallback } = evidence;
  const result = calibrateRouting(gold, predictions, sweepOptions(options, fallback, evidence.labelCount));
  return evidence.question === null ? result : { ...result, question: evidence.question };
}

function money(value: number): string {
  return value >= 100 ? value.toFixed(0) : value >= 1 ? value.toFixed(2) : value.toFixed(4);
}

function keepWord(rule: RoutingRule): string {
  return keepsLowScores(rule) ? `${rule} ≤ t` : `${rule} ≥ t`;
}

/** The threshold table; `*` marks the recommended threshold. */
export function formatThresholdTable(result: CalibrationResult, markdown = false): string {
  const priced = result.costPerDocument !== null;
  const sets = result.labelSets;
  // With the fallback's own sets: its figures on the routed documents, and the hybrid's Jaccard.
  const measured = sets?.fallback !== undefined;
  const header = [
    `t (keep ${keepWord(result.rule)})`,
    'routed',
    'routed share',
    sets === undefined ? 'kept accuracy' : 'kept exact-set',
    ...(sets === undefined ? [] : ['kept Jaccard', 'routed exact-set', 'routed Jaccard']),
    ...(measured ? ['fallback exact-set', 'fallback Jaccard'] : []),
    sets === undefined ? 'hybrid accuracy' : 'hybrid exact-set',
    ...(measured ? ['hybrid Jaccard'] : []),
    `fallback docs (N=${result.corpusSize})`,
    ...(priced ? ['expected cost'] : []),
  ];
  const chosen = result.recommendation.point;
  const orNa = (value: number | undefined): string => (value === undefined ? 'n/a' : fixed(value));
  const rows = result.table.map((p: ThresholdPoint, i) => {
    const quality = sets?.table[i];
    return [
      `${Number.isFinite(p.threshold) ? fixed(p.threshold, 3) : 'route all'}` +
        `${chosen !== null && p.threshold === chosen.threshold ? ' *' : ''}`,
      String(p.routed),
      percent(p.routedShare),
      p.keptAccuracy === null ? 'n/a' : fixed(p.keptAccuracy),
      ...(sets === undefined
        ? []
        : [orNa(quality?.kept?.jaccard), orNa(quality?.routed?.exactMatch), orNa(quality?.routed?.jaccard)]),
      ...(measured ? [orNa(quality?.fallback?.exactMatch), orNa(quality?.fallback?.jaccard)] : []),
      fixed(p.hybridAccuracy),
      ...(measured ? [orNa(quality?.hybrid?.jaccard)] : []),
      p.expectedFallbackDocuments.toFixed(0),
      ...(priced ? [money(p.expectedCost)] : []),
    ];
  });
  return markdown ? formatMarkdownTable(header, rows) : formatTable(header, rows);
}

/** Reliability diagram as a table with bars: accuracy per confidence bin against the bin's mean confidence. */
export function formatReliabilityTable(result: CalibrationResult, markdown = false): string {
  const header = [
    'confidence bin',
    'documents',
    'mean confidence',
    'accuracy',
    'gap',
    ...(markdown ? [] : ['accuracy (█) vs confidence (|)']),
  ];
  const rows = result.bins
    .filter((b) => b.count > 0)
    .map((b) => {
      const gap = (b.accuracy as number) - (b.meanConfidence as number);
      const cells = [
        `(${fixed(b.lower, 2)}, ${fixed(b.upper, 2)}]`,
        String(b.count),
        fixed(b.meanConfidence),
        fixed(b.accuracy),
        `${gap >= 0 ? '+' : ''}${fixed(gap)}`,
      ];
      if (!markdown) {
        const width = 30;
        const filled = Math.round((b.accuracy as number) * width);
        const mark = Math.min(width - 1, Math.round((b.meanConfidence as number) * width));
        const bar = Array.from({ length: width }, (_, i) => (i === mark ? '|' : i < filled ? '█' : '·')).join('');
        cells.push(bar);
      }
      return cells;
    });
  return markdown
    ? formatMarkdownTable(header, rows, ['left', 'right', 'right', 'right', 'right'])
    : formatTable(header, rows, ['left', 'right', 'right', 'right', 'right', 'left']);
}

/** A calibration as text: one question's, or a multi-question file's sections per question and overall. */
export function formatCalibration(result: CalibrationResult | QuestionsCalibration): string {
  if (result.kind === 'rescale.calibration') return formatOne(result);
  const sections = result.questions.map(
    ({ question, result: one }) =>
      `== question ${question} (gold column "${one.labelSets?.goldColumn ?? question}")\n\n${formatOne(one)}`,
  );
  if (result.overall === null) return sections.join('\n');
  const pooled = result.questions.filter((q) => q.result.labelSets === undefined).map((q) => q.question);
  const overall =
    `== all single-label questions pooled (${pooled.join(', ')}: each document's answer to each question is one ` +
    `item; one threshold for every question)\n\n${formatOne(result.overall)}`;
  return [...sections, overall].join('\n');
}

function formatOne(result: CalibrationResult): string {
  const out: string[] = [];
  const note = describeCoverage(result.coverage);
  if (result.question !== undefined) out.push(`question: ${result.question}`);
  out.push(`predictions: ${result.predictions}`);
  out.push(`gold: ${result.gold}`);
  if (note !== null) out.push(`note: ${note}`);
  const sets = result.labelSets;
  if (sets === undefined) {
    out.push(`labelled documents: ${result.documents}; local accuracy ${fixed(result.localAccuracy)}`);
  } else {
    out.push(
      `multi-label question (${sets.form === 'list' ? 'list' : 'per_label'} form; labels ${sets.labels.join(', ')}; ` +
        `gold ${sets.separator === null ? 'a list column' : `split on ${JSON.stringify(sets.separator)}`}): ` +
        'accuracy below is exact-set match, a document counting as right when its label set equals the gold set',
      `labelled documents: ${result.documents}; local exact-set accuracy ${fixed(result.localAccuracy)}, Jaccard ` +
        `${fixed(sets.local.jaccard)}, Hamming loss ${fixed(sets.local.hammingLoss)}`,
    );
  }
  out.push(
    `expected calibration error (${result.bins.length} equal-width bins): ${withInterval(result.ece)} (95% CI, ` +
      `seed ${result.ece.seed})`,
  );
  out.push('', 'reliability diagram:', formatReliabilityTable(result));
  const f = result.fallback;
  out.push(
    '',
    f.source === 'assumed'
      ? `fallback ${sets === undefined ? '' : 'exact-set '}accuracy: ${fixed(f.accuracy)} (assumed)`
      : sets?.fallback !== undefined
        ? `fallback exact-set accuracy: ${fixed(f.accuracy)}, Jaccard ${fixed(sets.fallback.jaccard)}, Hamming loss ` +
          `${fixed(sets.fallback.hammingLoss)}, measured on ` +
          (f.source === 'per-document'
            ? `all ${f.documents} labelled documents; each routed document counts with the fallback's own set`
            : // per-routed-document: a multi-label question's fallback that answered only some documents.
              `the ${f.documents} labelled documents it answered (of ${result.documents}); where it answered every ` +
              "routed document (a row with hybrid figures) each counts with the fallback's own set, elsewhere its " +
              'exact-set accuracy there stands in')
        : f.source === 'per-document'
          ? `fallback accuracy: ${fixed(f.accuracy)} measured on all ${f.documents} labelled documents; each routed ` +
            `document counts with the fallback's own answer`
          : `fallback accuracy: ${fixed(f.accuracy)} measured on the ${f.documents} labelled documents it answered ` +
            `(of ${result.documents})`,
  );
  out.push(
    result.costPerDocument === null
      ? `cost: counted in documents sent to the fallback (pass --cost-per-document for money), corpus of ` +
          `${result.corpusSize} documents`
      : `cost: ${result.costPerDocument} per fallback document, corpus of ${result.corpusSize} documents`,
  );
  out.push(
    '',
    `routing by ${result.rule}: a document goes to the fallback unless ${keepWord(result.rule)}`,
    formatThresholdTable(result),
  );
  const p = result.recommendation.point;
  out.push('');
  if (p === null) out.push(`no recommendation: ${result.recommendation.reason}`);
  else {
    out.push(
      `recommended threshold: ${result.rule} ` +
        `${Number.isFinite(p.threshold) ? fixed(p.threshold, 4) : '(route everything)'} — routes ` +
        `${percent(p.routedShare)} ` +
        `(${p.expectedFallbackDocuments.toFixed(0)} of ${result.corpusSize} documents), expected accuracy ` +
        `${fixed(p.hybridAccuracy)}` +
        (result.costPerDocument === null ? '' : `, expected cost ${money(p.expectedCost)}`),
    );
    out.push(`why: ${result.recommendation.reason}`);
    out.push(
      'note: accuracies are estimates on the labelled sample; a target met by a hair is not met with confidence',
    );
  }
  return out.join('\n') + '\n';
}
