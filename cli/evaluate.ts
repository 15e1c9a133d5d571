// `rescale evaluate`: reads gold labels and prediction files, evaluates them side by side and prints the tables
// (optionally writing the full result as JSON for `rescale report`).

import path from 'node:path';
import type { Codebook, Question } from '../contracts/codebook.js';
import { RescaleError } from '../contracts/errors.js';
import { readParquetTable } from '../storage/parquet-table.js';
import {
  evaluateMultiLabel,
  goldLabelSets,
  MULTI_LABEL_SUMMARY,
  predictedLabelSets,
  resolveLabelSetOrder,
  type MultiLabelEvaluationResult,
  type MultiLabelSystemEvaluation,
} from '../study/evaluation/evaluate-multi-label.js';
import {
  assertCompleteJoin,
  describeCoverage,
  joinByIds,
  readGoldLabels,
  readPredictions,
  resolveLabelOrder,
} from '../study/evaluation/labelled-predictions.js';
import {
  evaluatePredictions,
  type ClassEvaluation,
  type EvaluationResult,
  type SystemEvaluation,
} from '../study/evaluation/evaluate-predictions.js';
import { fixed, formatMarkdownTable, formatTable, percent, signedInterval, withInterval } from '../study/text-table.js';
import type { BootstrapInterval } from '../study/evaluation/bootstrap.js';
import { writeJsonFile } from '../study/json-file.js';
import type { ReviewEvaluation } from '../study/review/review-study.js';

export interface EvaluateCommandOptions {
  readonly predictions: readonly string[];
  readonly gold: string;
  readonly idColumn: string;
  readonly labelColumn: string;
  readonly seed: number;
  readonly resamples: number;
  readonly ordered: boolean;
  readonly labels?: readonly string[];
  readonly names?: readonly string[];
  readonly trainingSizes?: readonly number[];
  /** Fail instead of reporting when any id does not join. */
  readonly strictIds?: boolean;
  readonly json?: string;
  /** The codebook: the question's labels, type (multi_label) and `ordered` apply unless options say otherwise. */
  readonly codebook?: Codebook;
  /** The question to evaluate (a codebook question; names the `<question>__labels` column of multi-label results). */
  readonly question?: string;
  /** Evaluate label sets even without a multi-label codebook question or a list gold column. */
  readonly multiLabel?: boolean;
  /** Splits a gold string column into labels (multi-label). */
  readonly truthSeparator?: string;
  /** For ordered labels: the lowest label, meaning "not present" (adds dimension and level accuracy). */
  readonly absentLabel?: string;
  /** The review measures of a study (`--review`): written into the JSON as `review`. */
  readonly review?: ReviewEvaluation;
}

/** The codebook question to evaluate: the one named by --question, or the codebook's only question. */
function pickQuestion(codebook: Codebook | undefined, name: string | undefined): Question | null {
  if (codebook === undefined) return null;
  const names = codebook.questions.map((q) => q.name).join(', ');
  if (name !== undefined) {
    const found = codebook.questions.find((q) => q.name === name);
    if (found === undefined) {
      throw new RescaleError('CONFIG_INVALID', `--question ${name} is not a question of the codebook (${names})`);
    }
    return found;
  }
  if (codebook.questions.length === 1) return codebook.questions[0] as Question;
  throw new RescaleError('CONFIG_INVALID', `the codebook has several questions (${names}); pass --question NAME`);
}

/** Suffix of the results column holding a multi-label question's predicted label list. */
export const LABELS_COLUMN_SUFFIX = '__labels';

/** The multi-label results column: `<question>__labels`, or the file's only column ending in `__labels`. */
async function labelSetColumn(file: string, question: string | undefined): Promise<string> {
  if (question !== undefined) return `${question}${LABELS_COLUMN_SUFFIX}`;
  const { columnNames } = await readParquetTable(file, '--predictions', []);
  const candidates = columnNames.filter((c) => c.endsWith(LABELS_COLUMN_SUFFIX));
  if (candidates.length === 1) return candidates[0] as string;
  throw new RescaleError(
    'CONFIG_INVALID',
    candidates.length === 0
      ? `--predictions ${file} has no column ending in "${LABELS_COLUMN_SUFFIX}" (multi-label results name it ` +
          `<question>${LABELS_COLUMN_SUFFIX}); pass --question NAME or check the file`
      : `--predictions ${file} has several label-set columns (${candidates.join(', ')}); pass --question NAME`,
  );
}

/** Suffix of a multi-question results column holding a single-label question's label. */
export const LABEL_COLUMN_SUFFIX = '__label';

/** The single-label results column: `<question>__label` when the file has it (several questions), else `label`. */
async function labelColumn(file: string, question: string | undefined): Promise<string> {
  if (question === undefined) return 'label';
  const { columnNames } = await readParquetTable(file, '--predictions', []);
  const column = `${question}${LABEL_COLUMN_SUFFIX}`;
  if (columnNames.includes(column)) return column;
  if (columnNames.includes('label')) return 'label';
  throw new RescaleError(
    'COLUMN_MISSING',
    `--predictions ${file} has neither "${column}" nor "label" (it has: ${columnNames.join(', ')}); check --question`,
  );
}

export async function runEvaluate(
  options: EvaluateCommandOptions,
): Promise<EvaluationResult | MultiLabelEvaluationResult> {
  if (options.predictions.length === 0)
    throw new RescaleError('CONFIG_INVALID', '--predictions is required; see "rescale --help"');
  const question = pickQuestion(options.codebook, options.question);
  const gold = await readGoldLabels(options.gold, { idColumn: options.idColumn, labelColumn: options.labelColumn });
  const codebookLabels = question?.labels.map((l) => l.name);
  const explicitLabels = options.labels ?? codebookLabels;
  const multiLabel =
    options.multiLabel === true ||
    question?.type === 'multi_label' ||
    options.truthSeparator !== undefined ||
    gold.values.some((v) => Array.isArray(v));
  const predictions = [];
  for (const file of options.predictions) {
    const questionName = options.question ?? question?.name;
    const column = multiLabel ? await labelSetColumn(file, questionName) : await labelColumn(file, questionName);
    predictions.push(await readPredictions(file, '--predictions', column));
  }
  if (options.strictIds) for (const p of predictions) assertCompleteJoin(joinByIds(gold, p).coverage, gold.file);
  let result: EvaluationResult | MultiLabelEvaluationResult;
  if (multiLabel) {
    if (options.ordered || options.absentLabel !== undefined) {
      throw new RescaleError(
        'CONFIG_INVALID',
        '--ordered and --absent-label apply to single-label questions; this evaluation compares label sets',
      );
    }
    const separator = options.truthSeparator ?? null;
    const labels = resolveLabelSetOrder(
      goldLabelSets(gold, separator),
      predictions.map((p) => predictedLabelSets(p)),
      explicitLabels,
    );
    result = evaluateMultiLabel(gold, predictions, {
      labels,
      seed: options.seed,
      resamples: options.resamples,
      separator,
      ...(options.names !== undefined ? { names: options.names } : {}),
    });
  } else {
    const labels = resolveLabelOrder(gold, predictions, explicitLabels);
    result = evaluatePredictions(gold, predictions, {
      labels,
      seed: options.seed,
      resamples: options.resamples,
      ordered: options.ordered || question?.ordered === true,
      ...(options.absentLabel !== undefined ? { absentLabel: options.absentLabel } : {}),
      ...(options.names !== undefined ? { names: options.names } : {}),
      ...(options.trainingSizes !== undefined ? { trainingSizes: options.trainingSizes } : {}),
    });
  }
  if (options.json !== undefined)
    await writeJsonFile(options.json, options.review === undefined ? result : { ...result, review: options.review });
  return result;
}

interface MetricRow {
  readonly name: string;
  readonly pick: (s: SystemEvaluation) => BootstrapInterval | null;
}

function metricRows(result: EvaluationResult): MetricRow[] {
  const rows: MetricRow[] = [
    { name: 'accuracy', pick: (s) => s.accuracy },
    { name: 'macro-F1', pick: (s) => s.macroF1 },
    { name: 'weighted-F1', pick: (s) => s.weightedF1 },
    { name: "Cohen's kappa", pick: (s) => s.cohenKappa },
    { name: "Krippendorff's alpha (nominal)", pick: (s) => s.alphaNominal },
  ];
  if (result.ordered) {
    rows.push({ name: "Krippendorff's alpha (ordinal)", pick: (s) => s.alphaOrdinal });
    rows.push({ name: 'kappa (quadratic weights)', pick: (s) => s.kappaQuadratic });
    rows.push({ name: "Krippendorff's alpha (interval)", pick: (s) => s.alphaInterval ?? null });
  }
  if (result.systems.some((s) => s.dimensionAccuracy)) {
    rows.push({ name: 'dimension accuracy (present/absent)', pick: (s) => s.dimensionAccuracy ?? null });
    rows.push({ name: 'level accuracy where both present', pick: (s) => s.intensityGivenPresent ?? null });
  }
  return rows;
}

/** The overall table: one row per metric, one column per predictions file, estimate [95% CI]. */
export function formatSummaryTable(result: EvaluationResult, markdown = false): string {
  const header = ['metric', ...result.systems.map((s) => s.name)];
  const rows = metricRows(result).map((m) => [
    m.name,
    ...result.systems.map((s) => {
      const ci = m.pick(s);
      return ci === null ? 'n/a' : withInterval(ci);
    }),
  ]);
  return markdown ? formatMarkdownTable(header, rows) : formatTable(header, rows);
}

/** Per-class precision, recall and F1 of one file. */
export function formatPerClassTable(system: SystemEvaluation, markdown = false): string {
  return formatLabelScores(system.perClass, markdown);
}

/** Per-label support, predicted count, precision, recall and F1 with their intervals. */
function formatLabelScores(classes: readonly ClassEvaluation[], markdown = false): string {
  const header = ['label', 'support', 'predicted', 'precision', 'recall', 'F1'];
  const rows = classes.map((c) => [
    c.label,
    String(c.support),
    String(c.predicted),
    withInterval(c.precision),
    withInterval(c.recall),
    withInterval(c.f1),
  ]);
  return markdown ? formatMarkdownTable(header, rows) : formatTable(header, rows);
}

/** Confusion matrix of one file: rows gold, columns predicted. */
export function formatConfusionTable(system: SystemEvaluation, markdown = false): string {
  const { labels, counts } = system.confusion;
  const header = ['gold \\ predicted', ...labels, 'total'];
  const rows = labels.map((label, i) => {
    const row = counts[i] ?? [];
    return [label, ...row.map(String), String(row.reduce((a, b) => a + b, 0))];
  });
  return markdown ? formatMarkdownTable(header, rows) : formatTable(header, rows);
}

/** Training-set size against the metrics: the learning curve, when the files carry training sizes. */
export function formatLearningCurveTable(result: EvaluationResult, markdown = false): string | null {
  const points = result.systems.filter((s) => s.trainingSize !== null);
  if (points.length === 0) return null;
  const header = ['training examples', 'accuracy', 'macro-F1', "Cohen's kappa", "Krippendorff's alpha"];
  const rows = points.map((s) => [
    String(s.trainingSize),
    withInterval(s.accuracy),
    withInterval(s.macroF1),
    withInterval(s.cohenKappa),
    withInterval(s.alphaNominal),
  ]);
  return markdown ? formatMarkdownTable(header, rows) : formatTable(header, rows);
}

export function formatEvaluation(result: EvaluationResult): string {
  const { bootstrap } = result;
  const out: string[] = [];
  out.push(
    `gold: ${result.gold.file} (column "${result.gold.labelColumn}", ${result.gold.rows} ` +
      `rows${result.gold.unlabelled > 0 ? `, ${result.gold.unlabelled} without a label` : ''})`,
  );
  out.push(`labels: ${result.labels.join(', ')}${result.ordered ? ' (ordered)' : ''}`);
  out.push(
    `documents evaluated: ` +
      `${result.documents}${result.systems.length > 1 ? ' (labelled in every predictions file)' : ''}; ` +
      `${percent(bootstrap.confidence, 0)} CIs from ${bootstrap.resamples} percentile bootstrap resamples, seed ` +
      `${bootstrap.seed}`,
  );
  for (const s of result.systems) {
    if (s.coverage.key !== 'id') {
      out.push(
        `note: ${s.name}: joined by ${s.coverage.key} (its corpus files reuse ids; the corpus file of each result ` +
          'row comes from its manifest)',
      );
    }
    const note = describeCoverage(s.coverage);
    if (note !== null) out.push(`note: ${note}`);
    if (s.coverage.evaluated > result.documents)
      out.push(
        `note: ${s.name}: ${s.coverage.evaluated - result.documents} documents it labelled are left out because ` +
          `another file did not label them`,
      );
  }
  out.push('', formatSummaryTable(result));
  const curve = formatLearningCurveTable(result);
  if (curve !== null) out.push('', 'learning curve:', curve);
  if (result.differences.length > 0) {
    out.push('', `difference against ${result.differences[0]?.baseline ?? ''} (paired bootstrap, same resamples):`);
    out.push(
      formatTable(
        ['file', 'Δ accuracy', 'Δ macro-F1'],
        result.differences.map((d) => [d.system, signedInterval(d.accuracy), signedInterval(d.macroF1)]),
      ),
    );
  }
  for (const s of result.systems) {
    out.push('', `${s.name}: per class`, formatPerClassTable(s));
    out.push('', `${s.name}: confusion matrix (rows gold, columns predicted)`, formatConfusionTable(s));
    const undefinedKappa = s.cohenKappa.undefinedResamples;
    if (undefinedKappa > 0)
      out.push(`note: kappa was undefined on ${undefinedKappa} resamples (a single label), left out of its interval`);
  }
  return out.join('\n') + '\n';
}

/** One-line summary, e.g. for logs: "accuracy 0.612 [0.595, 0.630], macro-F1 …". */
export function summaryLine(system: SystemEvaluation): string {
  return (
    `${path.basename(system.file)}: accuracy ${withInterval(system.accuracy)}, macro-F1 ` +
    `${withInterval(system.macroF1)}, kappa ${fixed(system.cohenKappa.estimate)}`
  );
}

/** The printed form of a multi-label evaluation: summary table, then per-label P/R/F1 per file. */
export function formatMultiLabelEvaluation(result: MultiLabelEvaluationResult): string {
  const { bootstrap } = result;
  const out: string[] = [];
  const separator =
    result.gold.separator === null ? 'a list column' : `split on ${JSON.stringify(result.gold.separator)}`;
  out.push(
    `gold: ${result.gold.file} (column "${result.gold.labelColumn}", ${separator}, ${result.gold.rows} ` +
      `rows${result.gold.unlabelled > 0 ? `, ${result.gold.unlabelled} without a label set` : ''})`,
  );
  out.push(`labels (multi-label): ${result.labels.join(', ')}`);
  out.push(
    `documents evaluated: ${result.documents}` +
      `${result.systems.length > 1 ? ' (labelled in every predictions file)' : ''}; ` +
      `${percent(bootstrap.confidence, 0)} CIs from ${bootstrap.resamples} percentile bootstrap resamples, seed ` +
      `${bootstrap.seed}`,
  );
  for (const s of result.systems) {
    const note = describeCoverage(s.coverage);
    if (note !== null) out.push(`note: ${note}`);
    if (s.emptyGold > 0 || s.emptyPredicted > 0)
      out.push(
        `note: ${s.name}: ${s.emptyGold} empty gold sets, ${s.emptyPredicted} empty predicted sets ` +
          '(0/0 ratios count 0)',
      );
  }
  const header = ['metric', ...result.systems.map((s) => `${s.name} (${s.column})`)];
  const rows = MULTI_LABEL_SUMMARY.map((m) => [
    m.name,
    ...result.systems.map((s: MultiLabelSystemEvaluation) => {
      const ci = s.metrics[m.key];
      return ci === undefined ? 'n/a' : withInterval(ci);
    }),
  ]);
  out.push('', formatTable(header, rows));
  for (const s of result.systems) {
    out.push('', `${s.name}: per label`, formatLabelScores(s.perLabel));
  }
  return out.join('\n') + '\n';
}
