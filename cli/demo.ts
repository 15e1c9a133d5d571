// `rescale demo` (what `npm start` runs): a real classification on the embedded default. TweetEval sentiment
// tweets are converted to Parquet, the fixture keyword model + an adapter learned from the labelled val split
// score the test split, and the summary compares the labels with the human gold labels.

import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parquetReadObjects, asyncBufferFromFile } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { parquetWriteFile } from 'hyparquet-writer';
import { RescaleError } from '../contracts/errors.js';
import type { Logger } from '../contracts/logger.js';
import { agreementMetrics } from '../study/evaluation/agreement-metrics.js';
import { ensureFixtureModel } from '../gguf/fixtures/fixture-catalog.js';
import type { Progress } from './progress.js';
import type { LlamaBuild } from '../contracts/environment.js';
import { runLocalMode } from './local-mode.js';
import { PACKAGE_ROOT } from './version.js';

export const SENTIMENT_LABELS = ['negative', 'neutral', 'positive'] as const;

export interface DemoOptions {
  readonly output?: string;
  readonly limit?: number;
  readonly shardRows?: number;
  readonly threads?: number;
  /** llama.cpp build to load (the CLI passes RESCALE_LLAMA_BUILD, parsed). */
  readonly llamaBuild?: LlamaBuild;
  readonly logger: Logger;
  readonly progress: Progress;
  readonly signal?: AbortSignal;
  /** Folder with TweetEval's sentiment/{test,val}_{text,labels}.txt (default ../shared/data/tweeteval). */
  readonly dataDir?: string;
}

export function defaultTweetEvalDir(): string {
  return path.resolve(PACKAGE_ROOT, '..', 'shared', 'data', 'tweeteval');
}

/** Reads one TweetEval split as (text, gold label name) pairs, checking the two files line up. */
export async function readTweetEvalSplit(
  dataDir: string,
  task: string,
  split: string,
): Promise<{ texts: string[]; labels: string[] }> {
  const dir = path.join(dataDir, task);
  const read = async (name: string): Promise<string[]> => {
    const file = path.join(dir, name);
    if (!existsSync(file))
      throw new RescaleError(
        'INPUT_NOT_FOUND',
        `TweetEval file ${file} is missing; the demo expects the TweetEval data in ${dataDir}`,
      );
    const lines = (await readFile(file, 'utf8')).split('\n');
    if (lines.at(-1) === '') lines.pop();
    return lines;
  };
  const [texts, codes, mapping] = await Promise.all([
    read(`${split}_text.txt`),
    read(`${split}_labels.txt`),
    read('mapping.txt'),
  ]);
  if (texts.length !== codes.length)
    throw new RescaleError(
      'INPUT_INVALID',
      `${dir}: ${split}_text.txt has ${texts.length} lines but ${split}_labels.txt has ${codes.length}`,
    );
  const names = new Map(mapping.map((line) => line.split('\t') as [string, string]));
  const labels = codes.map((code, i) => {
    const name = names.get(code.trim());
    if (name === undefined)
      throw new RescaleError(
        'INPUT_INVALID',
        `${dir}/${split}_labels.txt line ${i + 1}: label code "${code}" is not in mapping.txt`,
      );
    return name;
  });
  return { texts, labels };
}

/** Writes a TweetEval split as Parquet (id int64, text, gold) unless it is already there. */
export async function tweetEvalParquet(dataDir: string, task: string, split: string, file: string): Promise<string> {
  if (existsSync(file)) return file;
  const { texts, labels } = await readTweetEvalSplit(dataDir, task, split);
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  parquetWriteFile({
    filename: tmp,
    columnData: [
      { name: 'id', data: BigInt64Array.from(texts, (_, i) => BigInt(i)), type: 'INT64', nullable: false },
      { name: 'text', data: texts, type: 'STRING' },
      { name: 'gold', data: labels, type: 'STRING' },
    ],
  });
  const { rename } = await import('node:fs/promises');
  await rename(tmp, file);
  return file;
}

export async function runDemo(options: DemoOptions): Promise<void> {
  const dataDir = options.dataDir ?? defaultTweetEvalDir();
  const workDir = path.join(PACKAGE_ROOT, 'out', 'demo');
  // A trial (--limit) or another shard size is another run: it gets its own default output, so running the demo
  // again in another way never meets an output holding a different run's results.
  const variant = [
    options.limit !== undefined ? `limit-${options.limit}` : '',
    options.shardRows !== undefined ? `shards-${options.shardRows}` : '',
  ]
    .filter((part) => part !== '')
    .map((part) => `-${part}`)
    .join('');
  const output = path.resolve(options.output ?? path.join(workDir, `tweeteval-sentiment${variant}.parquet`));
  const say = (line: string): boolean => process.stdout.write(line + '\n');

  say(
    'rescale demo: TweetEval sentiment (test split) with the fixture keyword model + adapter learned from the val ' +
      'split',
  );
  const models = { model: await ensureFixtureModel('keyword'), adapter: await ensureFixtureModel('keyword-adapter') };
  const corpus = await tweetEvalParquet(
    dataDir,
    'sentiment',
    'test',
    path.join(workDir, 'tweeteval-sentiment-test.parquet'),
  );
  const codebookFile = path.join(workDir, 'sentiment.codebook.yaml');
  await writeFile(codebookFile, sentimentCodebookYaml(models.model, models.adapter));
  say(`corpus: ${corpus}\ncodebook: ${codebookFile}`);

  const summary = await runLocalMode(
    {
      codebook: codebookFile,
      input: [corpus],
      output,
      ...(options.limit !== undefined ? { limit: options.limit } : {}),
      ...(options.shardRows !== undefined ? { shardRows: options.shardRows } : {}),
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
      logger: options.logger,
      progress: options.progress,
      ...(options.signal ? { signal: options.signal } : {}),
      // The demo codebook has no fallback section, so no key variable is ever looked up.
      env: {},
    },
    options.llamaBuild,
  );

  const results = await parquetReadObjects({
    file: await asyncBufferFromFile(output),
    columns: ['id', 'label', 'status'],
    compressors,
  });
  const gold = await parquetReadObjects({
    file: await asyncBufferFromFile(corpus),
    columns: ['id', 'gold'],
    compressors,
  });
  const goldById = new Map(gold.map((r) => [String(r.id), String(r.gold)]));
  const counts = new Map<string, number>();
  const goldLabels: string[] = [];
  const predicted: string[] = [];
  for (const row of results) {
    const label = row.label === null ? `(${String(row.status)})` : String(row.label);
    counts.set(label, (counts.get(label) ?? 0) + 1);
    const g = goldById.get(String(row.id));
    if (row.label !== null && g !== undefined) {
      goldLabels.push(g);
      predicted.push(String(row.label));
    }
  }
  const metrics = agreementMetrics(goldLabels, predicted, [...SENTIMENT_LABELS]);
  say('');
  say(`results:  ${summary.output}`);
  say(`manifest: ${summary.manifest}`);
  say(
    `documents: ${summary.rows} (${summary.documentsScored} scored now, ${summary.shardsSkipped}/${summary.shards} ` +
      `shards reused)`,
  );
  say(`labels:   ${[...counts.entries()].map(([l, n]) => `${l} ${n}`).join(', ')}`);
  say(
    `accuracy against TweetEval gold: ${metrics.accuracy.toFixed(4)}  macro-F1 ${metrics.macroF1.toFixed(4)}  ` +
      `Cohen's kappa ${metrics.cohenKappa.toFixed(4)}  (n=${goldLabels.length})`,
  );
  say(`speed:    ${summary.documentsPerSecond.toFixed(1)} docs/s over ${summary.seconds.toFixed(1)} s`);
}

/** The TweetEval sentiment codebook the demo and the learning curve score with (adapter optional). */
export function sentimentCodebookYaml(model: string, adapter: string | null): string {
  const adapterNote = adapter === null ? '' : ' with an adapter learned from labelled tweets';
  const adapterYaml = adapter === null ? '' : `  adapters:\n    - path: ${JSON.stringify(adapter)}\n      scale: 1.0\n`;
  return `# TweetEval sentiment, scored by the fixture keyword model${adapterNote}.
task: tweeteval-sentiment
description: Sentiment of English tweets (TweetEval).
input:
  text_column: text
  id_column: id
labels:
  - name: negative
    description: The tweet expresses a negative opinion or emotion.
  - name: neutral
    description: The tweet is factual or expresses no clear sentiment.
  - name: positive
    description: The tweet expresses a positive opinion or emotion.
prompt:
  format: chat
  system: You are a careful annotator. Answer with exactly one label.
  template: |-
    Classify the sentiment of the tweet as one of: {labels}.
    {label_descriptions}

    Tweet: {text}
model:
  path: ${JSON.stringify(model)}
${adapterYaml}  max_document_tokens: 256
  # The fixture model is tiny: each decode takes well under a millisecond, so a second thread adds only
  # synchronisation (prebuilt binary, 2 cores: 177 docs/s with 1 thread, 59 with 2). Real models want more threads.
  threads: 1
`;
}
