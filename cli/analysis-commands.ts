// The analysis verbs of the CLI — evaluate, calibrate, sample, report: their options (merged into the CLI's option
// table), how raw option strings become validated values, and what each prints.

import type { ParseArgsConfig } from 'node:util';
import { loadCodebook } from '../contracts/codebook.js';
import { RescaleError } from '../contracts/errors.js';
import type { RoutingRule } from '../study/calibration/calibration.js';
import { DEFAULT_BOOTSTRAP_RESAMPLES } from '../study/evaluation/bootstrap.js';
import type { ReviewEvaluation } from '../study/review/review-study.js';

export const ANALYSIS_USAGE = `  rescale evaluate --predictions R.parquet [--predictions R2.parquet ...] \
--gold G.parquet [options]
      Accuracy, macro/weighted F1, per-class P/R/F1, confusion matrix, Cohen's kappa and Krippendorff's alpha,
      each with a seeded bootstrap 95% CI; several files side by side, on the documents all of them labelled.
        --id-column C      id column of the gold file (default id); result files use "id"
        --label-column C   gold label column (default gold)
        --seed S --resamples N   bootstrap seed (default 1) and resamples (default 2000)
        --ordered          labels are ordered: add ordinal alpha and quadratic-weighted kappa
        --labels a,b,c     label list in order (default: the codebook order in the result file)
        --names a,b        display names, one per --predictions
        --training-sizes 100,250   training-set size per --predictions: prints the learning curve
        --absent-label L   with --ordered: L (the lowest label) means "not present"; adds dimension accuracy and
                           level accuracy where both present
        --codebook C       take labels, multi_label and ordered: true from the codebook question
        --question Q       the codebook question; multi-label results are read from column Q__labels
        --multi-label      compare label sets (implied by a multi_label question, a list gold column or
                           --truth-separator): any-overlap, exact match, Jaccard, Hamming, micro/macro/weighted/
                           samples P/R/F1, per-label P/R/F1, Krippendorff's alpha (MASI and Jaccard distance)
        --truth-separator S   the gold column is a string of labels separated by S (e.g. ";")
        --dimensions       with --codebook: its ordered questions are the dimensions of one coding (e.g.
                           flourishing's 46); the gold file has one column per question, named after it (null =
                           the lowest, absent label); prints accD, accI, FN, FP, jac, jac2 and Hamming loss over
                           every document's dimension cells, as the paper's verify-test.R, and accuracy per dimension
        --strict-ids       fail when any id is missing on either side (default: count and report)
        --review STUDY     the human review of a crowd (docs/review.md): STUDY is the folder holding review.db
                           and crowd/, or the review database (crowd/ beside it; --crowd DIR if elsewhere). Adds
                           each labeller's accuracy and Cohen's kappa against the verified labels (the labeller
                           the coders agreed with most marked *), the coders' Krippendorff's alpha on the overlap
                           and Cohen's kappa per pair of coders, acceptance per labeller and per label, and
                           seconds per decision (median, p90). Without --predictions and --gold: only these.
        --json F           write everything as JSON (for rescale report)
  rescale calibrate --predictions VAL.parquet --gold G.parquet (--fallback-accuracy A | --fallback-predictions F) \
[options]
      ECE and reliability diagram; for each routing threshold the share routed, the expected hybrid accuracy and
      cost; the recommended threshold.
        --corpus-size N --cost-per-document X   price the threshold for the full corpus
        --target-accuracy A | --budget B         cheapest threshold reaching A, or best accuracy within B
        --rule confidence|margin|entropy|unscored_mass   what the threshold applies to (default confidence);
                           a multi-label question reads its own column of that name (per_label: confidence or
                           margin; list: confidence = set probability, margin or unscored_mass), accuracy is
                           exact-set match, and each row adds Jaccard on the kept and routed documents
        --truth-separator S   a multi-label gold column is a string of labels separated by S (else a list column)
        --bins N  --thresholds 0.5,0.6,...       reliability bins (default 10); rows of the printed table
        --id-column --label-column --seed --resamples --json   as for evaluate
        --question Q       a multi-question run: calibrate question Q (columns Q__*) against --label-column;
                           without it every question is calibrated against the gold column named after it
                           (a multi-label one's may be Q__labels, as review export writes it), then the
                           single-label questions pooled
  rescale sample --gold L.parquet --sizes 100,250,500,1000 --seed S --out DIR [options]
      A stratified held-out split plus nested stratified training subsets, as chat JSONL for LoRA trainers
      (and Parquet), with DIR/sample.json recording seed, sizes and counts per label.
        --held-out X       fraction (0.2, the default) or number of documents held out
        --text-column C --label-column C --id-column C   (defaults text, gold, id)
        --codebook C       render prompts and answers exactly as the codebook does (recommended); with several
                           questions, gold columns named after them and an example per document and question
                           (per label for a per_label question); a raw codebook writes prompt/completion JSONL
        --truth-separator S   a multi-label gold column is a string of labels separated by S (else a list column)
  rescale report RESULTS.parquet [--gold G.parquet] [--out report.html] [options]
      One self-contained HTML page: label distribution, confidence histogram, fallback routing, throughput;
      with --gold also evaluation, confusion matrix and reliability diagram.
        --learning-curve E.json   an evaluate --json with --training-sizes: adds the learning curve
        --calibration C.json      a calibrate --json: adds the threshold curve
        --review STUDY            a review study (as for evaluate; --crowd DIR) or an evaluate --review --json:
                                  adds the human review section
        --id-column --label-column --seed --resamples   as for evaluate
`;

export const analysisOptions = {
  predictions: { type: 'string', multiple: true },
  gold: { type: 'string' },
  'id-column': { type: 'string' },
  'label-column': { type: 'string' },
  'text-column': { type: 'string' },
  seed: { type: 'string' },
  resamples: { type: 'string' },
  ordered: { type: 'boolean' },
  labels: { type: 'string' },
  names: { type: 'string' },
  'training-sizes': { type: 'string' },
  'strict-ids': { type: 'boolean' },
  'absent-label': { type: 'string' },
  question: { type: 'string' },
  'multi-label': { type: 'boolean' },
  'truth-separator': { type: 'string' },
  dimensions: { type: 'boolean' },
  json: { type: 'string' },
  'fallback-accuracy': { type: 'string' },
  'fallback-predictions': { type: 'string' },
  'corpus-size': { type: 'string' },
  'cost-per-document': { type: 'string' },
  'target-accuracy': { type: 'string' },
  budget: { type: 'string' },
  rule: { type: 'string' },
  bins: { type: 'string' },
  thresholds: { type: 'string' },
  sizes: { type: 'string' },
  'held-out': { type: 'string' },
  out: { type: 'string' },
  'learning-curve': { type: 'string' },
  calibration: { type: 'string' },
  review: { type: 'string' },
  crowd: { type: 'string' },
} satisfies ParseArgsConfig['options'];

export type AnalysisCommand = 'evaluate' | 'calibrate' | 'sample' | 'report';

type Values = {
  [K in keyof typeof analysisOptions]?: (typeof analysisOptions)[K] extends { multiple: true }
    ? string[]
    : (typeof analysisOptions)[K] extends { type: 'boolean' }
      ? boolean
      : string;
} & {
  codebook?: string;
};

const DEFAULT_SEED = 1;

function need(name: string, value: string | undefined): string {
  if (value === undefined || value === '')
    throw new RescaleError('CONFIG_INVALID', `--${name} is required; see "rescale --help"`);
  return value;
}

function numberOption(
  name: string,
  value: string | undefined,
  check: (n: number) => boolean,
  what: string,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || !check(n))
    throw new RescaleError('CONFIG_INVALID', `--${name} must be ${what}, got "${value}"`);
  return n;
}

const isShare = (n: number): boolean => n >= 0 && n <= 1;
const isNonNegative = (n: number): boolean => n >= 0;
const isPositiveInt = (n: number): boolean => Number.isInteger(n) && n > 0;

function listOption(name: string, value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',').map((s) => s.trim());
  if (items.some((s) => s === ''))
    throw new RescaleError(
      'CONFIG_INVALID',
      `--${name} must be a comma-separated list without empty items, got "${value}"`,
    );
  return items;
}

function numberList(
  name: string,
  value: string | undefined,
  check: (n: number) => boolean,
  what: string,
): number[] | undefined {
  return listOption(name, value)?.map(
    (item) => numberOption(name, item, check, `a comma-separated list of ${what}`) as number,
  );
}

function seedOf(values: Values): number {
  return (
    numberOption(
      'seed',
      values.seed,
      (n) => Number.isInteger(n) && n >= 0 && n <= 0xffffffff,
      'a whole number from 0 to 4294967295',
    ) ?? DEFAULT_SEED
  );
}

function resamplesOf(values: Values): number {
  return (
    numberOption(
      'resamples',
      values.resamples,
      (n) => Number.isInteger(n) && n >= 100,
      'a whole number of at least 100 (2000 is the default)',
    ) ?? DEFAULT_BOOTSTRAP_RESAMPLES
  );
}

function ruleOf(value: string | undefined): RoutingRule {
  const rule = value ?? 'confidence';
  if (rule !== 'confidence' && rule !== 'margin' && rule !== 'entropy' && rule !== 'unscored_mass') {
    throw new RescaleError(
      'CONFIG_INVALID',
      `--rule must be confidence, margin, entropy or unscored_mass (list multi-label questions), got "${rule}"`,
    );
  }
  return rule;
}

function write(text: string): void {
  process.stdout.write(text);
}

/** `evaluate --dimensions`: one results file, the codebook's questions as the dimensions of one coding. */
async function evaluateDimensionsCommand(values: Values, idColumn: string): Promise<number> {
  const predictions = values.predictions ?? [];
  if (predictions.length !== 1)
    throw new RescaleError(
      'CONFIG_INVALID',
      `--dimensions takes exactly one --predictions file (a multi-question run), got ${predictions.length}`,
    );
  for (const option of ['question', 'labels', 'multi-label', 'truth-separator', 'training-sizes', 'names'] as const)
    if (values[option] !== undefined)
      throw new RescaleError('CONFIG_INVALID', `--${option} does not apply with --dimensions; leave it out`);
  const codebook = await loadCodebook(need('codebook', values.codebook));
  const { evaluateDimensions } = await import('../study/evaluation/evaluate-dimensions.js');
  const { formatDimensionEvaluation } = await import('./evaluate-dimensions.js');
  const result = await evaluateDimensions({
    gold: need('gold', values.gold),
    predictions: predictions[0] as string,
    idColumn,
    questions: codebook.questions,
    seed: seedOf(values),
    resamples: resamplesOf(values),
    ...(values['absent-label'] !== undefined ? { absentLabel: values['absent-label'] } : {}),
  });
  write(formatDimensionEvaluation(result));
  if (values.json !== undefined) {
    const { writeJsonFile } = await import('../study/json-file.js');
    await writeJsonFile(values.json, result);
    write(`wrote ${values.json}\n`);
  }
  return 0;
}

/** Runs one analysis verb; returns the exit code. */
export async function runAnalysisCommand(
  command: AnalysisCommand,
  values: Values,
  positionals: readonly string[],
): Promise<number> {
  const idColumn = values['id-column'] ?? 'id';
  const labelColumn = values['label-column'] ?? 'gold';
  if (values.crowd !== undefined && values.review === undefined)
    throw new RescaleError('CONFIG_INVALID', '--crowd applies with --review (the crowd folder of the review study)');
  switch (command) {
    case 'evaluate': {
      if (values.dimensions === true && values.review !== undefined)
        throw new RescaleError(
          'CONFIG_INVALID',
          '--review does not combine with --dimensions; run "rescale evaluate --review STUDY" on its own',
        );
      if (values.dimensions === true) return evaluateDimensionsCommand(values, idColumn);
      // The review study is read first, so a wrong --review fails before the evaluation's work.
      const reviewModule = values.review === undefined ? null : await import('../study/review/review-study.js');
      const review =
        values.review === undefined ? undefined : await reviewModule?.evaluateReview(values.review, values.crowd);
      const formatReview = (r: ReviewEvaluation): string => reviewModule?.formatReviewEvaluation(r) ?? '';
      if (review !== undefined && values.predictions === undefined && values.gold === undefined) {
        write(formatReview(review));
        if (values.json !== undefined) {
          const { writeJsonFile } = await import('../study/json-file.js');
          await writeJsonFile(values.json, review);
          write(`wrote ${values.json}\n`);
        }
        return 0;
      }
      const { runEvaluate, formatEvaluation, formatMultiLabelEvaluation } = await import('./evaluate.js');
      const labels = listOption('labels', values.labels);
      const names = listOption('names', values.names);
      const trainingSizes = numberList(
        'training-sizes',
        values['training-sizes'],
        (n) => Number.isInteger(n) && n >= 0,
        'whole numbers ≥ 0',
      );
      const result = await runEvaluate({
        predictions: values.predictions ?? [need('predictions', undefined)],
        gold: need('gold', values.gold),
        idColumn,
        labelColumn,
        seed: seedOf(values),
        resamples: resamplesOf(values),
        ordered: values.ordered ?? false,
        strictIds: values['strict-ids'] ?? false,
        ...(labels !== undefined ? { labels } : {}),
        ...(names !== undefined ? { names } : {}),
        ...(trainingSizes !== undefined ? { trainingSizes } : {}),
        ...(values.json !== undefined ? { json: values.json } : {}),
        ...(values.codebook !== undefined ? { codebook: await loadCodebook(values.codebook) } : {}),
        ...(values.question !== undefined ? { question: values.question } : {}),
        ...(values['multi-label'] === true ? { multiLabel: true } : {}),
        ...(values['truth-separator'] !== undefined
          ? { truthSeparator: need('truth-separator', values['truth-separator']) }
          : {}),
        ...(values['absent-label'] !== undefined ? { absentLabel: values['absent-label'] } : {}),
        ...(review !== undefined ? { review } : {}),
      });
      write(
        result.kind === 'rescale.multi-label-evaluation'
          ? formatMultiLabelEvaluation(result)
          : formatEvaluation(result),
      );
      if (review !== undefined) write(`\n${formatReview(review)}`);
      if (values.json !== undefined) write(`wrote ${values.json}\n`);
      return 0;
    }
    case 'calibrate': {
      const { runCalibrate, formatCalibration } = await import('./calibrate.js');
      const predictions = values.predictions ?? [];
      if (predictions.length !== 1)
        throw new RescaleError(
          'CONFIG_INVALID',
          `calibrate takes exactly one --predictions file (the local run on the labelled validation set), got ` +
            `${predictions.length}`,
        );
      const fallbackAccuracy = numberOption(
        'fallback-accuracy',
        values['fallback-accuracy'],
        isShare,
        'a share between 0 and 1, e.g. 0.9',
      );
      const corpusSize = numberOption('corpus-size', values['corpus-size'], isPositiveInt, 'a positive whole number');
      const costPerDocument = numberOption(
        'cost-per-document',
        values['cost-per-document'],
        isNonNegative,
        'a number ≥ 0 (e.g. 0.0004 dollars)',
      );
      const targetAccuracy = numberOption(
        'target-accuracy',
        values['target-accuracy'],
        isShare,
        'a share between 0 and 1, e.g. 0.8',
      );
      const budget = numberOption('budget', values.budget, isNonNegative, 'a number ≥ 0');
      const bins = numberOption('bins', values.bins, isPositiveInt, 'a positive whole number');
      const thresholds = numberList('thresholds', values.thresholds, Number.isFinite, 'numbers');
      const labels = listOption('labels', values.labels);
      const result = await runCalibrate({
        predictions: predictions[0] as string,
        gold: need('gold', values.gold),
        idColumn,
        labelColumn,
        rule: ruleOf(values.rule),
        seed: seedOf(values),
        resamples: resamplesOf(values),
        ...(fallbackAccuracy !== undefined ? { fallbackAccuracy } : {}),
        ...(values['fallback-predictions'] !== undefined
          ? { fallbackPredictions: values['fallback-predictions'] }
          : {}),
        ...(corpusSize !== undefined ? { corpusSize } : {}),
        ...(costPerDocument !== undefined ? { costPerDocument } : {}),
        ...(targetAccuracy !== undefined ? { targetAccuracy } : {}),
        ...(budget !== undefined ? { budget } : {}),
        ...(bins !== undefined ? { bins } : {}),
        ...(thresholds !== undefined ? { thresholds } : {}),
        ...(labels !== undefined ? { labels } : {}),
        ...(values.json !== undefined ? { json: values.json } : {}),
        ...(values.question !== undefined ? { question: values.question } : {}),
        ...(values['truth-separator'] !== undefined
          ? { truthSeparator: need('truth-separator', values['truth-separator']) }
          : {}),
      });
      write(formatCalibration(result));
      if (values.json !== undefined) write(`wrote ${values.json}\n`);
      return 0;
    }
    case 'sample': {
      const { writeTrainingSample } = await import('../study/sampling/training-sample.js');
      const { formatSample } = await import('./sample.js');
      const sizes = numberList('sizes', need('sizes', values.sizes), isPositiveInt, 'positive whole numbers');
      const heldOut =
        numberOption(
          'held-out',
          values['held-out'],
          (n) => (n > 0 && n < 1) || (Number.isInteger(n) && n >= 0),
          'a fraction between 0 and 1 or a whole number of documents',
        ) ?? 0.2;
      if (values.seed === undefined)
        throw new RescaleError(
          'CONFIG_INVALID',
          '--seed is required for sample: record it, it fixes which documents are held out and trained on',
        );
      const sample = await writeTrainingSample({
        gold: need('gold', values.gold),
        idColumn,
        textColumn: values['text-column'] ?? 'text',
        labelColumn,
        sizes: sizes as number[],
        seed: seedOf(values),
        heldOut,
        outDir: need('out', values.out),
        ...(values.codebook !== undefined ? { codebook: await loadCodebook(values.codebook) } : {}),
        ...(values['truth-separator'] !== undefined
          ? { truthSeparator: need('truth-separator', values['truth-separator']) }
          : {}),
      });
      write(formatSample(sample));
      return 0;
    }
    case 'report': {
      const { runReport } = await import('./report.js');
      const results = positionals[1] ?? values.predictions?.[0];
      if (results === undefined)
        throw new RescaleError(
          'CONFIG_INVALID',
          'give the run output: rescale report RESULTS.parquet [--gold G.parquet] [--out report.html]',
        );
      const out = await runReport({
        results,
        ...(values.gold !== undefined ? { gold: values.gold } : {}),
        idColumn,
        labelColumn,
        seed: seedOf(values),
        resamples: resamplesOf(values),
        ...(values.out !== undefined ? { out: values.out } : {}),
        ...(values['learning-curve'] !== undefined ? { learningCurve: values['learning-curve'] } : {}),
        ...(values.calibration !== undefined ? { calibration: values.calibration } : {}),
        ...(values.review !== undefined ? { review: values.review } : {}),
        ...(values.crowd !== undefined ? { crowd: values.crowd } : {}),
      });
      write(`wrote ${out}\n`);
      return 0;
    }
  }
}
