// The run manifest schema against what the merge writes: a real manifest parses, a wrong field is named with its file.

import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { isRescaleError } from '../../contracts/errors.js';
import { parsePartialRunManifest, parseRunManifest } from '../../contracts/run-manifest.js';
import { resolveCorpus } from '../../coordinator/corpus.js';
import { mergeShards } from '../../coordinator/merge.js';
import { buildManifest } from '../../coordinator/run-plan.js';
import { planShards } from '../../coordinator/shard-planner.js';
import { outputLayout } from '../../storage/output-layout.js';
import { writeShardResult } from '../../storage/shard-result-file.js';
import { SENTIMENT, scoredRow, sentimentCodebook } from '../helpers/fallback.js';
import { withTempDir, writeParquetWithDuckDB } from '../../scripts/harness/parquet.js';

const LABELS = [...SENTIMENT];

/** A local run's manifest, as local mode writes it, over a stand-in model file (only its sha256 is read). */
async function mergedManifest(dir: string): Promise<string> {
  await mkdir(path.join(dir, 'in'), { recursive: true });
  await writeFile(path.join(dir, 'model.gguf'), 'not a model');
  await writeParquetWithDuckDB(
    `SELECT i::BIGINT AS id, 'text ' || i AS text FROM range(6) t(i)`,
    path.join(dir, 'in', 'a.parquet'),
  );
  const plan = planShards(await resolveCorpus(path.join(dir, 'in')), {
    codebookHash: 'cb',
    maxRowsPerShard: 4,
    idColumn: 'id',
    textColumn: 'text',
  });
  const shardDir = path.join(dir, 'shards');
  for (const shard of plan.shards) {
    const rows = Array.from({ length: shard.rowEnd - shard.rowStart }, (_, k) => ({
      ...scoredRow(shard.corpusRowStart + k, 'neutral', 0.5, shard.id),
      id: BigInt(shard.corpusRowStart + k),
    }));
    await writeShardResult({ dir: shardDir, shard, labels: LABELS, idType: plan.idType, rows });
  }
  const head = await buildManifest({
    mode: 'local',
    codebook: sentimentCodebook(undefined, {}, dir),
    plan,
    sequences: 1,
    dedupe: true,
    shardRows: 4,
    threads: 'auto',
    startedAt: new Date('2025-01-01T00:00:00Z'),
    engines: [{ nodeLlamaCpp: '3.0.0', llamaCpp: 'b1', llamaBuild: 'cpu', gpu: false, settings: { contextSize: 512 } }],
  });
  const output = path.join(dir, 'out.parquet');
  await mergeShards({
    plan,
    shardDir,
    output,
    labels: LABELS,
    manifest: { ...head, fallback: { active: false, reason: 'not enabled in the codebook' } },
  });
  return outputLayout(output).manifestFile;
}

describe('parseRunManifest', () => {
  it('accepts the manifest the merge writes, field for field', async () => {
    await withTempDir(async (dir) => {
      const file = await mergedManifest(dir);
      const text = await readFile(file, 'utf8');
      const manifest = parseRunManifest(text, file);
      assert.equal(manifest.merge.rows, 6);
      assert.equal(manifest.codebook.content.task, 'sentiment');
      assert.deepEqual(manifest.fallback, { active: false, reason: 'not enabled in the codebook' });
      assert.deepEqual(manifest, JSON.parse(text));
    });
  });

  it('names the file and the field when a field has the wrong type or is missing', async () => {
    await withTempDir(async (dir) => {
      const file = await mergedManifest(dir);
      const value = JSON.parse(await readFile(file, 'utf8')) as { merge: Record<string, unknown>; host?: unknown };
      value.merge.rows = 'six';
      delete value.host;
      assert.throws(
        () => parseRunManifest(JSON.stringify(value), file),
        (error: unknown) =>
          isRescaleError(error, 'INPUT_INVALID') &&
          error.message.includes(file) &&
          error.message.includes('field "merge.rows"') &&
          error.message.includes('field "host"'),
      );
      assert.throws(
        () => parseRunManifest('{', file),
        (error: unknown) => isRescaleError(error, 'INPUT_INVALID') && error.message.includes(file),
      );
    });
  });
});

describe('parsePartialRunManifest', () => {
  it('takes a manifest with fields left out, but not one with a field of the wrong type', () => {
    const partial = parsePartialRunManifest(
      JSON.stringify({
        startedAt: '2025-01-01T00:00:00.000Z',
        codebook: { content: { task: 't' } },
        merge: { shards: [{ id: 'a' }] },
      }),
      'x.manifest.json',
    );
    assert.equal(partial.codebook?.content?.task, 't');
    assert.equal(partial.merge?.shards?.[0]?.id, 'a');
    assert.throws(
      () => parsePartialRunManifest(JSON.stringify({ merge: { shards: [{ rows: 'many' }] } }), 'x.manifest.json'),
      (error: unknown) =>
        isRescaleError(error, 'INPUT_INVALID') &&
        error.message.includes('x.manifest.json') &&
        error.message.includes('field "merge.shards[0].rows"'),
    );
  });
});
