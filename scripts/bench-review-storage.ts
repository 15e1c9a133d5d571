// `npm run bench:review-storage`: the review app's storage, measured on its real work. Appends decisions one
// transaction each (look up the form key, find the decision in force, insert), as a form post does, then derives the
// current state of every item, in SQLite (better-sqlite3, the ReviewStore itself) and DuckDB (@duckdb/node-api, the
// same schema and queries). Writes bench/results/review-storage.{json,md}.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DuckDBInstance } from '@duckdb/node-api';
import { ReviewStore } from '../study/review/review-store.js';

const RESULTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bench', 'results');
const DECISIONS = Number(process.env.BENCH_DECISIONS ?? 2000);
const DOCUMENTS = 500;
const REVIEWERS = 4;
const DERIVE_REPEATS = 20;
const LABELS = ['negative', 'neutral', 'positive'];

interface Work {
  reviewer: number;
  document: string;
  question: string;
  labels: string;
  key: string;
}

/** The same decisions for both engines: reviewers revisit documents, so a share of inserts replace earlier ones. */
function workload(): Work[] {
  return Array.from({ length: DECISIONS }, (_, i) => ({
    reviewer: (i % REVIEWERS) + 1,
    document: `doc-${(i * 7919) % DOCUMENTS}`,
    question: 'sentiment',
    labels: JSON.stringify([LABELS[i % 3]]),
    key: `key-${i}`,
  }));
}

interface Result {
  engine: string;
  decisions: number;
  insertMs: number;
  insertPerDecisionMs: number;
  insertP95Ms: number;
  deriveMedianMs: number;
  currentRows: number;
  fileBytes: number;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

function median(values: number[]): number {
  return percentile(values, 0.5);
}

async function fileSize(file: string): Promise<number> {
  const { stat } = await import('node:fs/promises');
  let total = 0;
  for (const f of [file, `${file}-wal`, `${file}.wal`])
    total += await stat(f).then(
      (s) => s.size,
      () => 0,
    );
  return total;
}

async function benchSqlite(dir: string, work: readonly Work[]): Promise<Result> {
  const file = path.join(dir, 'review.db');
  const store = ReviewStore.open(file);
  for (let r = 0; r < REVIEWERS; r++) store.addReviewer(`reviewer-${r + 1}`, 'coder');
  const times: number[] = [];
  const start = performance.now();
  for (const w of work) {
    const t = performance.now();
    store.decide({
      reviewerId: w.reviewer,
      key: w.key,
      document: w.document,
      question: w.question,
      decision: 'pick',
      labels: JSON.parse(w.labels) as string[],
    });
    times.push(performance.now() - t);
  }
  const insertMs = performance.now() - start;
  const derive: number[] = [];
  let rows = 0;
  for (let i = 0; i < DERIVE_REPEATS; i++) {
    const t = performance.now();
    rows = store.current().length;
    derive.push(performance.now() - t);
  }
  store.close();
  return result('SQLite (better-sqlite3, WAL, synchronous=FULL)', insertMs, times, derive, rows, await fileSize(file));
}

const DUCK_SCHEMA = `
CREATE SEQUENCE decision_ids;
CREATE TABLE decisions (
  id BIGINT PRIMARY KEY DEFAULT nextval('decision_ids'),
  reviewer_id INTEGER NOT NULL, "at" VARCHAR NOT NULL, document VARCHAR NOT NULL, question VARCHAR NOT NULL,
  decision VARCHAR NOT NULL, labels VARCHAR, previous_id BIGINT, key VARCHAR NOT NULL, UNIQUE (reviewer_id, key)
);`;

const DUCK_CURRENT = `
WITH latest AS (
  SELECT reviewer_id, document, question, MAX(id) AS id FROM decisions WHERE %FILTER% GROUP BY 1, 2, 3
)
SELECT e.id, e.reviewer_id, e.document, e.question, e.decision, e.labels, e."at"
FROM latest l
JOIN decisions d ON d.id = l.id
LEFT JOIN decisions u ON d.decision = 'undo' AND u.id = d.previous_id
JOIN decisions e ON e.id = CASE WHEN d.decision = 'undo' THEN u.previous_id ELSE d.id END
ORDER BY e.id`;

async function benchDuckdb(dir: string, work: readonly Work[]): Promise<Result> {
  const file = path.join(dir, 'review.duckdb');
  const instance = await DuckDBInstance.create(file, { threads: '2' });
  const db = await instance.connect();
  await db.run(DUCK_SCHEMA);
  const seen = await db.prepare('SELECT id FROM decisions WHERE reviewer_id = $1 AND key = $2');
  const previous = await db.prepare(
    DUCK_CURRENT.replace('%FILTER%', 'reviewer_id = $1 AND document = $2 AND question = $3'),
  );
  const insert = await db.prepare(
    'INSERT INTO decisions (reviewer_id, "at", document, question, decision, labels, previous_id, key) ' +
      "VALUES ($1, $2, $3, $4, 'pick', $5, $6, $7)",
  );
  const times: number[] = [];
  const start = performance.now();
  for (const w of work) {
    const t = performance.now();
    await db.run('BEGIN TRANSACTION');
    seen.bind([w.reviewer, w.key]);
    if ((await seen.runAndReadAll()).getRows().length === 0) {
      previous.bind([w.reviewer, w.document, w.question]);
      const prior = (await previous.runAndReadAll()).getRows()[0]?.[0] ?? null;
      insert.bind([w.reviewer, new Date().toISOString(), w.document, w.question, w.labels, prior, w.key]);
      await insert.run();
    }
    await db.run('COMMIT');
    times.push(performance.now() - t);
  }
  const insertMs = performance.now() - start;
  const derive: number[] = [];
  let rows = 0;
  const all = DUCK_CURRENT.replace('%FILTER%', 'true');
  for (let i = 0; i < DERIVE_REPEATS; i++) {
    const t = performance.now();
    rows = (await db.runAndReadAll(all)).getRows().length;
    derive.push(performance.now() - t);
  }
  await db.run('CHECKPOINT');
  db.closeSync();
  instance.closeSync();
  return result('DuckDB (@duckdb/node-api, file)', insertMs, times, derive, rows, await fileSize(file));
}

function result(
  engine: string,
  insertMs: number,
  times: number[],
  derive: number[],
  rows: number,
  bytes: number,
): Result {
  return {
    engine,
    decisions: times.length,
    insertMs: Math.round(insertMs),
    insertPerDecisionMs: Number((insertMs / times.length).toFixed(3)),
    insertP95Ms: Number(percentile(times, 0.95).toFixed(3)),
    deriveMedianMs: Number(median(derive).toFixed(2)),
    currentRows: rows,
    fileBytes: bytes,
  };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'rescale-bench-review-'));
  const load = [loadavg()[0] as number];
  try {
    const work = workload();
    const sqlite = await benchSqlite(dir, work);
    load.push(loadavg()[0] as number);
    const duckdb = await benchDuckdb(dir, work);
    load.push(loadavg()[0] as number);
    if (sqlite.currentRows !== duckdb.currentRows)
      throw new Error(`the engines disagree on the current state: ${sqlite.currentRows} vs ${duckdb.currentRows} rows`);
    const results = [sqlite, duckdb];
    const date = new Date().toISOString().slice(0, 10);
    const json = { date, node: process.version, platform: `${process.platform}/${process.arch}`, load, results };
    await writeFile(path.join(RESULTS_DIR, 'review-storage.json'), `${JSON.stringify(json, null, 2)}\n`);
    const md =
      `# Review storage benchmark\n\nGenerated by \`npm run bench:review-storage\` on ${date}, ` +
      `Node ${process.version}, ` +
      `${json.platform}, load average ${load.map((l) => l.toFixed(1)).join(' → ')} (2 cores: above 2, other jobs ` +
      `shared them and times are inflated).\n\n${DECISIONS} decisions by ${REVIEWERS} reviewers on ${DOCUMENTS} ` +
      `documents, each its own transaction (key lookup, decision in force, insert) as a form post does; then the ` +
      `current state of every item derived from the log (median of ${DERIVE_REPEATS}).\n\n` +
      `| engine | decisions | total | per decision | p95 | derive state | items | file |\n` +
      `| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n` +
      results
        .map(
          (r) =>
            `| ${r.engine} | ${r.decisions} | ${r.insertMs} ms | ${r.insertPerDecisionMs} ms | ${r.insertP95Ms} ms | ` +
            `${r.deriveMedianMs} ms | ${r.currentRows} | ${(r.fileBytes / 1024).toFixed(0)} KiB |`,
        )
        .join('\n') +
      '\n';
    await writeFile(path.join(RESULTS_DIR, 'review-storage.md'), md);
    process.stdout.write(md);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
