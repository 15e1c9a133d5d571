// Shared helpers for the analysis tests: gold and result Parquet files written by DuckDB (an independent writer)
// from plain rows, and the rescale CLI run in a child process.

import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sqlString, withDuckDB } from '../../scripts/harness/parquet.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = path.join(ROOT, 'cli', 'rescale.ts');

export type DuckType = 'BIGINT' | 'INTEGER' | 'VARCHAR' | 'DOUBLE' | 'VARCHAR[]';

/** Writes rows to Parquet through DuckDB with the given column types (and key-value metadata). */
export async function writeRowsParquet(
  file: string,
  columns: Readonly<Record<string, DuckType>>,
  rows: readonly Readonly<Record<string, unknown>>[],
  keyValue: Readonly<Record<string, string>> = {},
): Promise<string> {
  const json = `${file}.rows.json`;
  await writeFile(
    json,
    JSON.stringify(rows, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v)),
  );
  const spec = Object.entries(columns)
    .map(([name, type]) => `"${name}": '${type}'`)
    .join(', ');
  const kv = Object.entries(keyValue)
    .map(([k, v]) => `"${k}": '${sqlString(v)}'`)
    .join(', ');
  try {
    await withDuckDB(async (connection) => {
      await connection.run(
        `COPY (SELECT * FROM read_json('${sqlString(json)}', columns={${spec}}, format='array')) ` +
          `TO '${sqlString(file)}' (FORMAT parquet${kv ? `, KV_METADATA {${kv}}` : ''})`,
      );
    });
  } finally {
    await rm(json, { force: true });
  }
  return file;
}

export interface PredictionRow {
  readonly id: number | string;
  readonly label: string | null;
  readonly confidence?: number | null;
  readonly margin?: number | null;
  readonly entropy?: number | null;
  readonly status?: string;
  readonly local_label?: string | null;
  readonly fallback_label?: string | null;
  readonly fallback_status?: string | null;
  readonly source?: string;
}

/** A result file as docs/results-schema.md describes it (the columns the analysis reads), with rescale.labels. */
export async function writePredictions(
  file: string,
  rows: readonly PredictionRow[],
  labels?: readonly string[],
  idType: DuckType = 'BIGINT',
): Promise<string> {
  const withFallback = rows.some((r) => r.fallback_status !== undefined || r.local_label !== undefined);
  const columns: Record<string, DuckType> = {
    id: idType,
    label: 'VARCHAR',
    confidence: 'DOUBLE',
    margin: 'DOUBLE',
    entropy: 'DOUBLE',
    status: 'VARCHAR',
    source: 'VARCHAR',
  };
  if (withFallback)
    Object.assign(columns, { local_label: 'VARCHAR', fallback_label: 'VARCHAR', fallback_status: 'VARCHAR' });
  const full = rows.map((r) => ({
    confidence: null,
    margin: null,
    entropy: null,
    status: r.label === null ? 'error' : 'ok',
    source: 'local',
    ...(withFallback ? { local_label: r.label, fallback_label: null, fallback_status: null } : {}),
    ...r,
  }));
  return writeRowsParquet(
    file,
    columns,
    full,
    labels === undefined ? {} : { 'rescale.labels': JSON.stringify(labels) },
  );
}

/** A gold file: id, text, gold label. */
export async function writeGold(
  file: string,
  rows: readonly { id: number | string; gold: string | null; text?: string }[],
  idType: DuckType = 'BIGINT',
  labelColumn = 'gold',
): Promise<string> {
  return writeRowsParquet(
    file,
    { id: idType, text: 'VARCHAR', [labelColumn]: 'VARCHAR' },
    rows.map((r) => ({ id: r.id, text: r.text ?? `document ${r.id}`, [labelColumn]: r.gold })),
  );
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runCli(args: readonly string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args, '--no-progress', '--log-level', 'warn'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
