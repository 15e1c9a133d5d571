// A crowd folder as `rescale crowd` writes it (documents.parquet, proposals.parquet with LIST<STRING> labels,
// crowd.json), written through DuckDB (an independent Parquet writer), plus a review server started on a free port.

import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sqlString, withDuckDB } from '../../scripts/harness/parquet.js';

export const SENTIMENT = ['negative', 'neutral', 'positive'] as const;

export interface CrowdFixture {
  readonly dir: string;
  readonly ids: readonly string[];
}

async function copyJson(file: string, json: string, columns: string, rows: unknown[]): Promise<void> {
  await writeFile(json, JSON.stringify(rows));
  try {
    await withDuckDB(async (connection) => {
      await connection.run(
        `COPY (SELECT * FROM read_json('${sqlString(json)}', columns={${columns}}, format='array')) ` +
          `TO '${sqlString(file)}' (FORMAT parquet)`,
      );
    });
  } finally {
    await rm(json, { force: true });
  }
}

/**
 * `n` documents with one single-label question "sentiment" (and a multi-label "topics", or `topicsName`, when
 * asked); labellers "keyword" and "gpt" agree on even documents and disagree on odd ones; "gpt" fails on every fifth.
 */
export async function writeCrowdFolder(
  dir: string,
  n: number,
  options: { topics?: boolean; topicsName?: string } = {},
): Promise<CrowdFixture> {
  const topics = options.topicsName ?? 'topics';
  await mkdir(dir, { recursive: true });
  const ids = Array.from({ length: n }, (_, i) => `doc-${String(i + 1).padStart(3, '0')}`);
  await copyJson(
    path.join(dir, 'documents.parquet'),
    path.join(dir, 'documents.json'),
    `"id": 'VARCHAR', "text": 'VARCHAR'`,
    ids.map((id, i) => ({
      id,
      text: `Tweet number ${i + 1}: the <b>service</b> was ${i % 2 === 0 ? 'great' : 'slow'}.`,
    })),
  );
  const proposals: unknown[] = [];
  ids.forEach((id, i) => {
    const first = SENTIMENT[i % 3] as string;
    const second = i % 2 === 0 ? first : (SENTIMENT[(i + 1) % 3] as string);
    proposals.push({ id, labeller: 'keyword', question: 'sentiment', labels: [first], probability: 0.9, error: null });
    proposals.push(
      i % 5 === 4
        ? { id, labeller: 'gpt', question: 'sentiment', labels: [], probability: null, error: 'timeout' }
        : { id, labeller: 'gpt', question: 'sentiment', labels: [second], probability: null, error: null },
    );
    if (options.topics)
      proposals.push({
        id,
        labeller: 'keyword',
        question: topics,
        labels: ['service'],
        probability: 0.7,
        error: null,
      });
  });
  await copyJson(
    path.join(dir, 'proposals.parquet'),
    path.join(dir, 'proposals.json'),
    `"id": 'VARCHAR', "labeller": 'VARCHAR', "question": 'VARCHAR', "labels": 'VARCHAR[]', ` +
      `"probability": 'DOUBLE', "error": 'VARCHAR'`,
    proposals,
  );
  const questions: unknown[] = [
    {
      name: 'sentiment',
      type: 'single_label',
      labels: [
        { name: 'negative', description: 'The author is unhappy.' },
        { name: 'neutral', description: 'No clear feeling.' },
        { name: 'positive', description: 'The author is pleased.' },
      ],
    },
  ];
  if (options.topics)
    questions.push({ name: topics, type: 'multi_label', labels: [{ name: 'service' }, { name: 'price' }] });
  await writeFile(
    path.join(dir, 'crowd.json'),
    JSON.stringify({
      format: 'rescale-crowd/1',
      codebook: { path: 'sentiment.yaml', sha256: '0'.repeat(64) },
      questions,
      labellers: [
        { name: 'keyword', kind: 'local', model: 'keyword.gguf', strategy: 'logprobs' },
        { name: 'gpt', kind: 'closed', endpoint: 'https://example.invalid/v1', strategy: 'answer' },
      ],
      sample: { source: 'tweets.parquet', n, seed: 1 },
      created_at: '2026-01-01T00:00:00Z',
    }),
  );
  return { dir, ids };
}
