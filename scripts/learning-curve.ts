// A real training-set-size learning curve on TweetEval sentiment, end to end on this machine: `rescale sample`'s
// nested subsets → one "fine-tuned" adapter per subset (a keyword LoRA derived from the subset's labelled texts, the
// stand-in for LoRA fine-tuning here) → `rescale run` on the held-out split → `rescale evaluate` → `rescale
// calibrate` on the largest adapter → `rescale report`.
//
//   npx tsx scripts/learning-curve.ts [--sizes 100,250,500,1000,2500,5000,10000] [--seed 7] [--held-out 0.2]
//       [--out out/learning-curve] [--pool-limit N] [--resamples 2000] [--threads N] [--data-dir DIR]

import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import { JsonLogger, silentLogger, type Logger } from '../contracts/logger.js';
import { parseCodebook, singleQuestion, type Codebook } from '../contracts/codebook.js';
import { evaluatePredictions, type EvaluationResult } from '../study/evaluation/evaluate-predictions.js';
import { writeJsonFile } from '../study/json-file.js';
import { readGoldLabels, readPredictions } from '../study/evaluation/labelled-predictions.js';
import { writeParquetAtomic } from '../storage/parquet-table.js';
import { writeTrainingSample, type TrainingSample } from '../study/sampling/training-sample.js';
import { formatLearningCurveTable, formatSummaryTable } from '../cli/evaluate.js';
import { formatCalibration } from '../cli/calibrate.js';
import { calibrateRouting, type CalibrationResult } from '../study/calibration/routing-calibration.js';
import { defaultTweetEvalDir, readTweetEvalSplit, sentimentCodebookYaml } from '../cli/demo.js';
import { runLocalMode } from '../cli/local-mode.js';
import { silentProgress } from '../cli/progress.js';
import { runReport } from '../cli/report.js';
import { PACKAGE_ROOT } from '../contracts/package-root.js';
import {
  ensureFixtureModel,
  KEYWORD_ADAPTER_DERIVATION,
  SENTIMENT_KEYWORD_SPEC,
} from '../gguf/fixtures/fixture-catalog.js';
import { deriveKeywords, textWords, writeKeywordAdapter } from '../gguf/fixtures/keyword-adapter.js';
import { isSingleTokenWord } from '../gguf/fixtures/keyword-model.js';
import { vocabTokenizerFromModel } from '../gguf/fixtures/vocab.js';
import { llamaBuildFromEnvironment } from '../contracts/environment.js';
import { getRuntime } from '../worker/engine/llama-runtime.js';
import { promptMessages } from '../contracts/prompt-text.js';

export const DEFAULT_SIZES = [100, 250, 500, 1000, 2500, 5000, 10000] as const;
export const DEFAULT_SEED = 7;
/** The walk-through's routing question (docs/hybrid-workflow.md): an assumed closed model and a corpus to price. */
export const CALIBRATION_EXAMPLE = {
  fallbackAccuracy: 0.75,
  corpusSize: 1_000_000,
  costPerDocument: 0.0004,
  targetAccuracy: 0.65,
} as const;

export interface LearningCurveOptions {
  /** Folder with TweetEval's sentiment/ (default ../shared/data/tweeteval). */
  readonly dataDir?: string;
  readonly outDir: string;
  readonly sizes: readonly number[];
  readonly seed: number;
  /** Held-out share or count (default 0.2). */
  readonly heldOut?: number;
  /** Use only the first N pooled documents (val first, then test): for quick checks. */
  readonly poolLimit?: number;
  readonly resamples?: number;
  readonly threads?: number;
  readonly logger?: Logger;
  /** Progress lines for a person watching. */
  readonly say?: (line: string) => void;
}

export interface LearningCurveResult {
  readonly sample: TrainingSample;
  readonly evaluation: EvaluationResult;
  readonly evaluationPath: string;
  readonly calibration: CalibrationResult;
  readonly calibrationPath: string;
  readonly tablePath: string;
  readonly reportPath: string;
  /** Result file per training size (0 = the base model without adapter). */
  readonly runs: readonly {
    readonly size: number;
    readonly results: string;
    readonly adapter: string | null;
    readonly keywords: number;
  }[];
}

/** The stand-in for LoRA fine-tuning: labelled texts in, a keyword adapter for the fixture keyword model out. */
export interface KeywordAdapterTrainer {
  /** Derives the keywords of `texts` (labels beside them) and writes them as a GGUF LoRA adapter to `file`. */
  train(
    texts: readonly string[],
    labels: readonly string[],
    file: string,
  ): Promise<{ keywords: Record<string, string[]>; count: number }>;
  close(): Promise<void>;
}

/**
 * Opens the keyword model's vocabulary (its tokenizer) once for several adapters. Words every prompt of `codebook`
 * shares (instructions, label descriptions) and the base lexicon are left out: a trainer learns nothing from them,
 * and as keywords they would fire on every document.
 */
export async function openKeywordAdapterTrainer(
  model: string,
  codebook: Codebook,
  logger: Logger,
): Promise<KeywordAdapterTrainer> {
  // The keyword model carries the llama-bpe vocabulary verbatim: its vocabulary is the tokenizer.
  const llama = await getRuntime({ build: llamaBuildFromEnvironment(), logger });
  const vocabModel = await llama.loadModel({ modelPath: model, vocabOnly: true, gpuLayers: 0 });
  const tokenizer = vocabTokenizerFromModel(vocabModel, 'llama-bpe');
  const empty = promptMessages(codebook, singleQuestion(codebook), { text: '' });
  const promptWords = [...textWords(`${empty.system ?? ''}\n${empty.user}`)];
  const baseWords = [...Object.values(SENTIMENT_KEYWORD_SPEC.keywords).flat(), ...promptWords];
  return {
    async train(texts, labels, file) {
      const keywords = deriveKeywords(texts, labels, {
        perLabel: KEYWORD_ADAPTER_DERIVATION.perLabel,
        minCount: KEYWORD_ADAPTER_DERIVATION.minCount,
        exclude: baseWords,
        accept: (word) => isSingleTokenWord(tokenizer, word),
      });
      await writeKeywordAdapter(file, SENTIMENT_KEYWORD_SPEC, keywords, {
        tokenizer,
        rank: KEYWORD_ADAPTER_DERIVATION.rank,
      });
      return { keywords, count: Object.values(keywords).reduce((n, words) => n + words.length, 0) };
    },
    close: () => vocabModel.dispose(),
  };
}

/** TweetEval sentiment val + test pooled into one labelled Parquet file (id, text, gold, split). */
async function writePool(dataDir: string, file: string, limit: number | undefined): Promise<number> {
  const val = await readTweetEvalSplit(dataDir, 'sentiment', 'val');
  const test = await readTweetEvalSplit(dataDir, 'sentiment', 'test');
  let texts = [...val.texts, ...test.texts];
  let labels = [...val.labels, ...test.labels];
  let splits = [...val.texts.map(() => 'val'), ...test.texts.map(() => 'test')];
  if (limit !== undefined) {
    texts = texts.slice(0, limit);
    labels = labels.slice(0, limit);
    splits = splits.slice(0, limit);
  }
  await writeParquetAtomic(file, [
    { name: 'id', data: BigInt64Array.from(texts, (_, i) => BigInt(i)), type: 'INT64', nullable: false },
    { name: 'text', data: texts, type: 'STRING', nullable: false },
    { name: 'gold', data: labels, type: 'STRING', nullable: false },
    { name: 'split', data: splits, type: 'STRING', nullable: false },
  ]);
  return texts.length;
}

export async function runLearningCurve(options: LearningCurveOptions): Promise<LearningCurveResult> {
  const say = options.say ?? (() => undefined);
  const logger = options.logger ?? silentLogger;
  const dataDir = options.dataDir ?? defaultTweetEvalDir();
  const outDir = path.resolve(options.outDir);
  for (const dir of ['sample', 'adapters', 'codebooks', 'runs'])
    await mkdir(path.join(outDir, dir), { recursive: true });

  const model = await ensureFixtureModel('keyword');
  const pool = path.join(outDir, 'tweeteval-sentiment-pool.parquet');
  const pooled = await writePool(dataDir, pool, options.poolLimit);
  say(`pooled ${pooled} labelled tweets (TweetEval sentiment val + test) into ${pool}`);

  // 1. rescale sample: held-out split + nested subsets, prompts rendered from the base codebook.
  const baseCodebookFile = path.join(outDir, 'codebooks', 'base.yaml');
  const baseYaml = sentimentCodebookYaml(model, null);
  await writeFile(baseCodebookFile, baseYaml);
  const codebook = parseCodebook((await import('yaml')).parse(baseYaml), {
    source: baseCodebookFile,
    baseDir: path.dirname(baseCodebookFile),
  });
  const sample = await writeTrainingSample({
    gold: pool,
    idColumn: 'id',
    textColumn: 'text',
    labelColumn: 'gold',
    sizes: options.sizes,
    seed: options.seed,
    heldOut: options.heldOut ?? 0.2,
    outDir: path.join(outDir, 'sample'),
    codebook,
  });
  const sampleDir = path.dirname(sample.manifestPath);
  const heldOut = path.join(sampleDir, sample.manifest.heldOut.parquet);
  say(
    `sample: ${sample.manifest.heldOut.size} held out, subsets ` +
      `${sample.manifest.subsets.map((s) => s.size).join(', ')} (seed ${options.seed})`,
  );

  // 2. "Fine-tune": one keyword adapter per training subset, read back from the subset's Parquet file.
  const adapters: { size: number; adapter: string; keywords: number }[] = [];
  const trainer = await openKeywordAdapterTrainer(model, codebook, logger);
  try {
    for (const subset of sample.manifest.subsets) {
      const train = await readGoldLabels(path.join(sampleDir, subset.parquet), {
        idColumn: 'id',
        labelColumn: 'gold',
        extraColumns: [{ name: 'text' }],
        role: 'training subset',
      });
      const texts = (train.extra.get('text') ?? []).map(String);
      const adapter = path.join(outDir, 'adapters', `keyword-adapter-${subset.size}.gguf`);
      const { keywords, count } = await trainer.train(texts, train.labels as string[], adapter);
      adapters.push({ size: subset.size, adapter, keywords: count });
      say(
        `adapter for ${subset.size} training examples: ${count} keywords (${Object.entries(keywords)
          .map(([l, w]) => `${l} ${w.length}`)
          .join(', ')})`,
      );
    }
  } finally {
    await trainer.close();
  }

  // 3. rescale run on the held-out split: the base model, then each adapter.
  const runs: { size: number; results: string; adapter: string | null; keywords: number }[] = [];
  for (const entry of [{ size: 0, adapter: null as string | null, keywords: 0 }, ...adapters]) {
    const codebookFile =
      entry.adapter === null ? baseCodebookFile : path.join(outDir, 'codebooks', `size-${entry.size}.yaml`);
    if (entry.adapter !== null) await writeFile(codebookFile, sentimentCodebookYaml(model, entry.adapter));
    const results = path.join(outDir, 'runs', `held-out-${entry.size}.parquet`);
    const summary = await runLocalMode({
      codebook: codebookFile,
      input: [heldOut],
      output: results,
      // The learning-curve codebooks have no fallback section, so no key variable is looked up.
      env: {},
      logger,
      progress: silentProgress,
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
    });
    runs.push({ size: entry.size, results, adapter: entry.adapter, keywords: entry.keywords });
    const scoredWith = entry.adapter === null ? 'the base model' : `the ${entry.size}-example adapter`;
    const speed =
      summary.documentsScored === 0 ? 'reused from an earlier run' : `${summary.documentsPerSecond.toFixed(0)} docs/s`;
    say(`scored ${summary.rows} held-out tweets with ${scoredWith} (${speed})`);
  }

  // 4. rescale evaluate, every run side by side on the same held-out documents.
  const gold = await readGoldLabels(heldOut, { idColumn: 'id', labelColumn: 'gold' });
  const predictions = [];
  for (const run of runs) predictions.push(await readPredictions(run.results));
  const evaluation = evaluatePredictions(gold, predictions, {
    labels: sample.manifest.labels,
    seed: options.seed,
    resamples: options.resamples ?? 2000,
    names: runs.map((r) => (r.size === 0 ? 'base (no adapter)' : `${r.size} examples`)),
    trainingSizes: runs.map((r) => r.size),
  });
  const evaluationPath = await writeJsonFile(path.join(outDir, 'learning-curve.json'), evaluation);
  const tablePath = path.join(outDir, 'learning-curve.md');
  await writeFile(tablePath, `${formatLearningCurveTable(evaluation, true) ?? ''}\n`);

  // 5. rescale calibrate on the largest adapter's run: where to route to a closed model (CALIBRATION_EXAMPLE).
  const largest = runs[runs.length - 1] as (typeof runs)[number];
  const calibration = calibrateRouting(gold, await readPredictions(largest.results), {
    fallback: { kind: 'assumed', accuracy: CALIBRATION_EXAMPLE.fallbackAccuracy },
    corpusSize: CALIBRATION_EXAMPLE.corpusSize,
    costPerDocument: CALIBRATION_EXAMPLE.costPerDocument,
    goal: { targetAccuracy: CALIBRATION_EXAMPLE.targetAccuracy },
    labelCount: sample.manifest.labels.length,
    seed: options.seed,
    resamples: options.resamples ?? 2000,
  });
  const calibrationPath = await writeJsonFile(path.join(outDir, 'calibration.json'), calibration);

  // 6. rescale report for the largest adapter, with the curve and the calibration.
  const reportPath = await runReport({
    results: largest.results,
    gold: heldOut,
    idColumn: 'id',
    labelColumn: 'gold',
    seed: options.seed,
    resamples: options.resamples ?? 2000,
    learningCurve: evaluationPath,
    calibration: calibrationPath,
    out: path.join(outDir, 'report.html'),
  });
  return { sample, evaluation, evaluationPath, calibration, calibrationPath, tablePath, reportPath, runs };
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      sizes: { type: 'string' },
      seed: { type: 'string' },
      'held-out': { type: 'string' },
      out: { type: 'string' },
      'pool-limit': { type: 'string' },
      resamples: { type: 'string' },
      threads: { type: 'string' },
      'data-dir': { type: 'string' },
      'log-level': { type: 'string' },
    },
    strict: true,
  });
  const num = (name: string, value: string | undefined): number | undefined => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0)
      throw new RescaleError('CONFIG_INVALID', `--${name} must be a number ≥ 0, got "${value}"`);
    return n;
  };
  const sizes =
    values.sizes === undefined
      ? [...DEFAULT_SIZES]
      : values.sizes.split(',').map((s) => num('sizes', s.trim()) as number);
  const outDir = values.out ?? path.join(PACKAGE_ROOT, 'out', 'learning-curve');
  const say = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  const poolLimit = num('pool-limit', values['pool-limit']);
  const resamples = num('resamples', values.resamples);
  const threads = num('threads', values.threads);
  const heldOut = num('held-out', values['held-out']);
  const result = await runLearningCurve({
    outDir,
    sizes,
    seed: num('seed', values.seed) ?? DEFAULT_SEED,
    say,
    logger: new JsonLogger((values['log-level'] as 'debug' | 'info' | 'warn' | 'error' | undefined) ?? 'warn'),
    ...(values['data-dir'] !== undefined ? { dataDir: values['data-dir'] } : {}),
    ...(poolLimit !== undefined ? { poolLimit } : {}),
    ...(resamples !== undefined ? { resamples } : {}),
    ...(threads !== undefined ? { threads } : {}),
    ...(heldOut !== undefined ? { heldOut } : {}),
  });
  say('');
  say(
    `learning curve on ${result.evaluation.documents} held-out tweets (95% bootstrap CI, seed ` +
      `${result.evaluation.bootstrap.seed}):`,
  );
  say(formatLearningCurveTable(result.evaluation) ?? '');
  say('');
  say(formatSummaryTable(result.evaluation));
  say('');
  say(`calibration of the ${result.runs[result.runs.length - 1]?.size ?? ''}-example adapter on the held-out split:`);
  say(formatCalibration(result.calibration));
  say(`wrote ${result.evaluationPath}, ${result.calibrationPath}, ${result.tablePath} and ${result.reportPath}`);
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`learning-curve: ${error instanceof RescaleError ? error.message : errorMessage(error)}\n`);
    if (!(error instanceof RescaleError) && error instanceof Error && error.stack)
      process.stderr.write(`${error.stack}\n`);
    process.exit(1);
  });
}
