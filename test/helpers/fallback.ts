// Shared helpers for the fallback tests: a sentiment codebook with a fallback section pointing at the loopback
// server, scored rows with chosen confidences, a logger that keeps its lines, and a search for a secret on disk.

import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { parseCodebook, type Codebook, type CodebookInput } from '../../contracts/codebook.js';
import type { FallbackConfigInput } from '../../contracts/fallback-config.js';
import { JsonLogger, type Logger } from '../../contracts/logger.js';
import type { ResultRow } from '../../contracts/results.js';
import type { DocumentInput } from '../../contracts/document-input.js';
import { writeParquetWithDuckDB } from '../../scripts/harness/parquet.js';

export const SENTIMENT = ['negative', 'neutral', 'positive'] as const;

/** The fallback section the tests start from: cheap prices, a generous budget, fast timeouts, route below 0.6. */
export function fallbackSection(baseUrl: string, overrides: Partial<FallbackConfigInput> = {}): FallbackConfigInput {
  return {
    enabled: true,
    model: 'gpt-test',
    base_url: baseUrl,
    api_key_env: 'RESCALE_TEST_FALLBACK_KEY',
    price: { input_per_million: 2.5, output_per_million: 10 },
    budget: { usd: 10 },
    routing: { confidence_below: 0.6 },
    timeout_seconds: 2,
    max_retries: 3,
    ...overrides,
  };
}

/**
 * The cluster form of fallbackSection: the named endpoint of an endpoint list gives the URL and key source, the
 * rest is the same (so local mode with the same list, or the same URL inline, has the same fallback identity).
 */
export function endpointSection(endpoint: string, overrides: Partial<FallbackConfigInput> = {}): FallbackConfigInput {
  const { base_url: _url, api_key_env: _key, ...rest } = fallbackSection('http://unused');
  return { ...rest, endpoint, ...overrides };
}

export function sentimentCodebook(
  fallback: FallbackConfigInput | undefined,
  extra: Partial<CodebookInput> = {},
  baseDir = '/tmp',
): Codebook {
  return parseCodebook(
    {
      task: 'sentiment',
      labels: SENTIMENT.map((name) => ({ name, description: `The tweet is ${name}.` })),
      prompt: {
        format: 'chat',
        system: 'You are a careful annotator.',
        template: 'Classify the tweet as one of: {labels}.\n\nTweet: {text}',
      },
      model: { path: 'model.gguf' },
      ...(fallback === undefined ? {} : { fallback }),
      ...extra,
    },
    { source: path.join(baseDir, 'codebook.yaml'), baseDir },
  );
}

/** A locally scored row whose top label is `label` with probability `confidence` (the rest split evenly). */
export function scoredRow(
  row: number,
  label: (typeof SENTIMENT)[number],
  confidence: number,
  shardId = 'shard-0',
): ResultRow {
  const rest = (1 - confidence) / 2;
  const probabilities = Float64Array.from(SENTIMENT, (name) => (name === label ? confidence : rest));
  const sorted = [...probabilities].sort((a, b) => b - a);
  return {
    id: BigInt(1000 + row),
    row,
    label,
    confidence,
    margin: (sorted[0] ?? 0) - (sorted[1] ?? 0),
    entropy: -probabilities.reduce((sum, p) => sum + (p > 0 ? p * Math.log(p) : 0), 0),
    probabilities,
    status: 'ok',
    error: null,
    tokens: 10,
    source: 'local',
    shardId,
  };
}

/** `n` documents, every one routed (local confidence 0.4, label neutral), texts cycling through the lexicon. */
export function routedBatch(n: number): { rows: ResultRow[]; docs: DocumentInput[] } {
  const words = ['I love it, great day', 'this is bad and awful', 'the meeting is at noon'];
  const rows = Array.from({ length: n }, (_, i) => scoredRow(i, 'neutral', 0.4));
  const docs = Array.from({ length: n }, (_, i) => ({ text: `${words[i % words.length]} #${i}` }));
  return { rows, docs };
}

/** A debug-level JSON logger whose lines are kept for inspection. */
export function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new JsonLogger('debug', {}, (line) => lines.push(line)), lines };
}

/** Every file under `dir` (recursively) that contains `needle`. */
export async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (current: string): Promise<void> => {
    for (const entry of await readdir(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile() && (await readFile(full)).includes(needle)) found.push(full);
    }
  };
  await walk(dir);
  return found;
}

/** The audit file's records. */
export async function auditRecords(file: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/**
 * A study in `dir` for end-to-end fallback tests: tweets written by DuckDB from `corpusSql` (columns id, text), a
 * sentiment codebook on `model` with the given fallback section, and the output path.
 */
export async function writeSentimentStudy(
  dir: string,
  model: string,
  corpusSql: string,
  fallback: object | undefined,
): Promise<{ codebook: string; input: string; output: string }> {
  const input = await writeParquetWithDuckDB(corpusSql, path.join(dir, 'tweets.parquet'));
  const codebook = path.join(dir, 'sentiment.codebook.yaml');
  await writeFile(
    codebook,
    stringify({
      task: 'sentiment',
      input: { text_column: 'text', id_column: 'id' },
      labels: [{ name: 'negative' }, { name: 'neutral' }, { name: 'positive' }],
      prompt: {
        format: 'chat',
        system: 'Classify the sentiment of the tweet. Answer with one word.',
        template: 'Tweet: {text}',
      },
      model: { path: model },
      ...(fallback === undefined ? {} : { fallback }),
    }),
  );
  return { codebook, input, output: path.join(dir, 'out', 'results.parquet') };
}
