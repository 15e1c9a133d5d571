// Benchmarks the local pipeline's data layer without a model: plan a DuckDB-made corpus, read every row,
// write shard result files with fake scores, merge them; at 100k and 1M rows, to show memory stays flat.
// Usage: npm run bench:pipeline [-- --rows 100000,1000000 --shard-rows 10000]
// Each size runs in a fresh child process, so peak RSS is that size's alone; DuckDB (corpus generation and
// the final check) runs in the parent and is not counted.

import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import type { DocumentId, ResultRow } from '../contracts/results.js';
import { resolveCorpus } from '../coordinator/corpus.js';
import { mergeShards, type ResultCodec } from '../coordinator/merge.js';
import { planShards } from '../coordinator/shard-planner.js';
import { RowGroupCache, readShardDocuments } from '../storage/parquet-rows.js';
import { writeShardResult } from '../storage/shard-result-file.js';

const LABELS = ['sports', 'politics', 'tech', 'other'];
const RESULTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bench', 'results');

interface Measurement {
  readonly rows: number;
  readonly shards: number;
  readonly shardRows: number;
  readonly planMs: number;
  readonly readMs: number;
  readonly writeMs: number;
  readonly mergeMs: number;
  /** CPU time (user + system, all threads) per phase: less sensitive than wall time to other load on the machine. */
  readonly cpuMs: { readonly plan: number; readonly read: number; readonly write: number; readonly merge: number };
  /** 1-minute load average when the size finished; above the core count, wall times are inflated. */
  readonly loadAverage: number;
  readonly codec: ResultCodec;
  readonly outputMb: number;
  /** Peak RSS of the process (MiB) after each phase; maxRSS only grows. */
  readonly peakRssMb: { readonly plan: number; readonly read: number; readonly write: number; readonly merge: number };
}

const peakRssMb = (): number => Math.round(process.resourceUsage().maxRSS / 1024);
const cpuMsSince = (start: NodeJS.CpuUsage): number => {
  const used = process.cpuUsage(start);
  return Math.round((used.user + used.system) / 1000);
};

/** Fake but plausible scores: a peaked distribution that changes with the row. */
function fakeRow(shardId: string, row: number, id: DocumentId | null, text: string | null): ResultRow {
  if (text === null || text === '') {
    return {
      id,
      row,
      label: null,
      confidence: null,
      margin: null,
      entropy: null,
      probabilities: null,
      status: 'empty_text',
      error: 'text is empty',
      tokens: 0,
      source: 'local',
      shardId,
    };
  }
  const weights = LABELS.map((_, j) => Math.exp(((row * 2654435761 + j * 40503) % 1000) / 250));
  const total = weights.reduce((sum, weight) => sum + weight, 0);
  const probabilities = Float64Array.from(weights, (weight) => weight / total);
  const sorted = [...probabilities].sort((a, b) => b - a);
  const top = sorted[0] ?? 0;
  return {
    id,
    row,
    label: LABELS[probabilities.indexOf(top)] ?? null,
    confidence: top,
    margin: top - (sorted[1] ?? 0),
    entropy: -probabilities.reduce((sum, p) => sum + p * Math.log(p), 0),
    probabilities,
    status: 'ok',
    error: null,
    tokens: Math.min(text.length, 512),
    source: 'local',
    shardId,
  };
}

/** The measured run, in a child process: plan, read, write, merge. */
async function measure(corpusDir: string, workDir: string, rows: number, shardRows: number): Promise<Measurement> {
  let cpu = process.cpuUsage();
  let started = performance.now();
  const plan = planShards(await resolveCorpus(corpusDir), {
    codebookHash: 'bench',
    maxRowsPerShard: shardRows,
    idColumn: 'id',
    textColumn: 'text',
  });
  const planMs = performance.now() - started;
  const planCpu = cpuMsSince(cpu);
  const afterPlan = peakRssMb();

  // Shards in plan order with one row-group cache, as the local loop runs them.
  const cache = new RowGroupCache();
  cpu = process.cpuUsage();
  started = performance.now();
  let seen = 0;
  for (const shard of plan.shards) {
    for await (const batch of readShardDocuments(shard, {
      idColumn: plan.idColumn,
      textColumn: plan.textColumn,
      cache,
    }))
      seen += batch.rows.length;
  }
  const readMs = performance.now() - started;
  const readCpu = cpuMsSince(cpu);
  if (seen !== rows) throw new Error(`read ${seen} rows, expected ${rows}`);
  const afterRead = peakRssMb();

  // Shard processing as the worker does it (read, score, write); only the write is timed here.
  const shardDir = path.join(workDir, 'shards');
  let writeMs = 0;
  let writeCpu = 0;
  for (const shard of plan.shards) {
    const results: ResultRow[] = [];
    for await (const batch of readShardDocuments(shard, {
      idColumn: plan.idColumn,
      textColumn: plan.textColumn,
      cache,
    })) {
      batch.rows.forEach((row, i) =>
        results.push(fakeRow(shard.id, row, batch.ids[i] ?? null, batch.texts[i] ?? null)),
      );
    }
    const writeStarted = performance.now();
    const writeCpuStart = process.cpuUsage();
    await writeShardResult({ dir: shardDir, shard, labels: LABELS, idType: plan.idType, rows: results });
    writeMs += performance.now() - writeStarted;
    writeCpu += cpuMsSince(writeCpuStart);
  }
  const afterWrite = peakRssMb();

  cpu = process.cpuUsage();
  started = performance.now();
  const summary = await mergeShards({
    plan,
    shardDir,
    output: path.join(workDir, 'results.parquet'),
    labels: LABELS,
    manifest: { bench: true },
  });
  const mergeMs = performance.now() - started;
  return {
    rows,
    shards: plan.shards.length,
    shardRows,
    planMs: Math.round(planMs),
    readMs: Math.round(readMs),
    writeMs: Math.round(writeMs),
    mergeMs: Math.round(mergeMs),
    cpuMs: { plan: planCpu, read: readCpu, write: writeCpu, merge: cpuMsSince(cpu) },
    loadAverage: Math.round((loadavg()[0] ?? 0) * 10) / 10,
    codec: summary.codec,
    outputMb: Math.round(summary.bytes / 1e5) / 10,
    peakRssMb: { plan: afterPlan, read: afterRead, write: afterWrite, merge: peakRssMb() },
  };
}

async function generateCorpus(dir: string, rows: number): Promise<void> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    await mkdir(dir, { recursive: true });
    // Short texts as in tweets or titles; DuckDB's default row groups (122,880 rows) and snappy.
    await connection.run(`COPY (SELECT i::BIGINT AS id, 'document ' || i || ' about topic ' || (i % 97) || \
' and more words' AS text FROM range(${rows}) t(i))
      TO '${path.join(dir, 'corpus.parquet')}' (FORMAT parquet, COMPRESSION snappy)`);
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

async function checkOutput(file: string, rows: number): Promise<void> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    const reader = await connection.runAndReadAll(
      `SELECT count(*)::BIGINT AS n, sum(id)::HUGEINT::VARCHAR AS ids, bool_and(id = "row") AS aligned FROM ` +
        `read_parquet('${file}')`,
    );
    const [result] = reader.getRowObjectsJS();
    const expectedIds = ((BigInt(rows) * BigInt(rows - 1)) / 2n).toString();
    if (result?.n !== BigInt(rows) || result.ids !== expectedIds || result.aligned !== true) {
      throw new Error(
        `merged output check failed: ` +
          `${JSON.stringify(result, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`,
      );
    }
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

function report(results: readonly Measurement[]): string {
  const lines = [
    '# Pipeline data-layer benchmark',
    '',
    `Generated by \`npm run bench:pipeline\` on ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ` +
      `${process.platform}/${process.arch}.`,
    'Corpus: one DuckDB-written Parquet file (id BIGINT, short text, snappy, 122,880-row groups). No model: fake ' +
      'scores,',
    `${LABELS.length} labels. Each size runs in its own process; peak RSS is cumulative (maxRSS) after each phase.`,
    '',
    'Wall time (CPU time in parentheses: user + system of all threads, so GC threads count too).',
    '',
    '| rows | shards | plan | read all rows | write shard files | merge | output | peak RSS plan / read / write / ' +
      'merge | load avg |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |',
    ...results.map(
      (r) =>
        `| ${r.rows.toLocaleString('en-US')} | ${r.shards} × ${r.shardRows.toLocaleString('en-US')} | ${r.planMs} ` +
        `ms (${r.cpuMs.plan}) | ${r.readMs} ms (${r.cpuMs.read}) | ${r.writeMs} ms (${r.cpuMs.write}) | ` +
        `${r.mergeMs} ms (${r.cpuMs.merge}) | ${r.outputMb} MB ${r.codec} | ${r.peakRssMb.plan} / ` +
        `${r.peakRssMb.read} / ${r.peakRssMb.write} / ${r.peakRssMb.merge} MiB | ${r.loadAverage} |`,
    ),
    '',
    `Targets: planning ≤ 2 s, merge of 1M rows ≤ 10 s, memory flat as the corpus grows. The machine has ` +
      `${availableParallelism()} cores;`,
    'a load average above that means other jobs shared them and wall times are inflated.',
    '',
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rows: { type: 'string', default: '100000,1000000' },
      'shard-rows': { type: 'string', default: '10000' },
      child: { type: 'boolean', default: false },
      corpus: { type: 'string' },
      work: { type: 'string' },
    },
  });
  const shardRows = Number(values['shard-rows']);
  if (values.child) {
    const result = await measure(values.corpus ?? '', values.work ?? '', Number(values.rows), shardRows);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const results: Measurement[] = [];
  const root = await mkdtemp(path.join(tmpdir(), 'rescale-bench-'));
  try {
    for (const rows of values.rows.split(',').map(Number)) {
      const corpusDir = path.join(root, `corpus-${rows}`);
      const workDir = path.join(root, `work-${rows}`);
      await generateCorpus(corpusDir, rows);
      const child = spawnSync(
        process.execPath,
        [
          ...process.execArgv,
          fileURLToPath(import.meta.url),
          '--child',
          '--rows',
          String(rows),
          '--shard-rows',
          String(shardRows),
          '--corpus',
          corpusDir,
          '--work',
          workDir,
        ],
        {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      if (child.status !== 0) throw new Error(`benchmark child for ${rows} rows failed with status ${child.status}`);
      const measured = JSON.parse(child.stdout.trim().split('\n').at(-1) ?? '{}') as Measurement;
      await checkOutput(path.join(workDir, 'results.parquet'), rows);
      results.push(measured);
      process.stderr.write(`${JSON.stringify(measured)}\n`);
      await rm(corpusDir, { recursive: true, force: true });
      await rm(workDir, { recursive: true, force: true });
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  await mkdir(RESULTS_DIR, { recursive: true });
  await writeFile(path.join(RESULTS_DIR, 'pipeline.json'), `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(path.join(RESULTS_DIR, 'pipeline.md'), report(results));
  process.stdout.write(report(results));
}

await main();
