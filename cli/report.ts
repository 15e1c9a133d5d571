// `rescale report`: gathers a run's results (and optional gold labels, learning curve, calibration) into one
// self-contained HTML file next to the results unless --out says otherwise.

import { existsSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import { writeBytesAtomic } from '../storage/atomic-file.js';
import type { EvaluationResult } from '../study/evaluation/evaluate-predictions.js';
import { readJsonFile } from '../study/json-file.js';
import type { CalibrationResult } from '../study/calibration/routing-calibration.js';
import { buildRunReport } from '../study/report/run-report.js';
import type { ReviewEvaluation } from '../study/review/review-study.js';

export interface ReportCommandOptions {
  readonly results: string;
  readonly gold?: string;
  readonly idColumn: string;
  readonly labelColumn: string;
  readonly seed: number;
  readonly resamples: number;
  /** Default: RESULTS with .html instead of .parquet. */
  readonly out?: string;
  /** JSON from `rescale evaluate --json` with --training-sizes. */
  readonly learningCurve?: string;
  /** JSON from `rescale calibrate --json`. */
  readonly calibration?: string;
  /** A review study (folder or database) or the JSON of `rescale evaluate --review --json`. */
  readonly review?: string;
  /** The review's crowd folder when it is not crowd/ beside the database. */
  readonly crowd?: string;
}

/** The review measures from --review: computed from the study, or read from evaluate's JSON. */
async function reviewMeasures(target: string, crowd: string | undefined): Promise<ReviewEvaluation> {
  if (target.endsWith('.json') && existsSync(target) && statSync(target).isFile()) {
    const value = (await readJsonFile(target, '--review')) as {
      kind?: unknown;
      review?: ReviewEvaluation;
    };
    if (value.kind === 'rescale.review-evaluation') return value as ReviewEvaluation;
    if (value.kind === 'rescale.evaluation' && value.review?.kind === 'rescale.review-evaluation') return value.review;
    throw new RescaleError(
      'INPUT_INVALID',
      `--review ${target} holds no review measures; pass the JSON of "rescale evaluate --review STUDY --json F", ` +
        'or the review study itself',
    );
  }
  const { evaluateReview } = await import('../study/review/review-study.js');
  return evaluateReview(target, crowd);
}

export function defaultReportPath(results: string): string {
  const absolute = path.resolve(results);
  return absolute.endsWith('.parquet')
    ? `${absolute.slice(0, -'.parquet'.length)}.report.html`
    : `${absolute}.report.html`;
}

/** Writes the report and returns its path. */
export async function runReport(options: ReportCommandOptions): Promise<string> {
  const learningCurve =
    options.learningCurve === undefined
      ? undefined
      : ((await readJsonFile(options.learningCurve, '--learning-curve', 'rescale.evaluation')) as EvaluationResult);
  if (learningCurve !== undefined && !learningCurve.systems.some((s) => s.trainingSize !== null)) {
    throw new RescaleError(
      'INPUT_INVALID',
      `--learning-curve ${options.learningCurve}: its files carry no training sizes; run rescale evaluate with ` +
        `--training-sizes`,
    );
  }
  const calibration =
    options.calibration === undefined
      ? undefined
      : ((await readJsonFile(options.calibration, '--calibration', 'rescale.calibration')) as CalibrationResult);
  const review = options.review === undefined ? undefined : await reviewMeasures(options.review, options.crowd);
  const html = await buildRunReport({
    results: options.results,
    ...(options.gold !== undefined
      ? { gold: { file: options.gold, idColumn: options.idColumn, labelColumn: options.labelColumn } }
      : {}),
    seed: options.seed,
    resamples: options.resamples,
    ...(learningCurve !== undefined ? { learningCurve } : {}),
    ...(calibration !== undefined ? { calibration } : {}),
    ...(review !== undefined ? { review } : {}),
  });
  const out = path.resolve(options.out ?? defaultReportPath(options.results));
  try {
    await mkdir(path.dirname(out), { recursive: true });
    await writeBytesAtomic(out, html);
  } catch (cause) {
    throw new RescaleError('OUTPUT_NOT_WRITABLE', `cannot write the report to ${out} (--out): ${errorMessage(cause)}`, {
      cause,
    });
  }
  return out;
}
