// `rescale calibrate --fallback-predictions` on a multi-label question: four documents with known gold, local and
// fallback label sets, so every figure of the threshold table (routed documents scored by the fallback's own sets:
// exact-set match, Jaccard, Hamming loss, and the hybrid's) is worked out by hand below. Also the fallback answering
// only some documents (a hybrid run's `__fallback_labels`), the errors naming the file and column, and the CLI.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { formatCalibration, runCalibrate, type CalibrateCommandOptions } from '../../../cli/calibrate.js';
import type { CalibrationResult } from '../../../study/calibration/routing-calibration.js';
import { withTempDir } from '../../../scripts/harness/parquet.js';
import { runCli, writeRowsParquet } from '../../helpers/analysis-files.js';

/**
 * id, gold, local set, local confidence, fallback set. Against gold: the local sets are right on 1 only; the
 * fallback's on 1, 2 and 4, and on 3 it adds x (Jaccard 1/2, one wrong cell of the eight).
 */
const DOCS = [
  { id: 1, gold: ['x'], local: ['x'], confidence: 0.9, fallback: ['x'] },
  { id: 2, gold: ['x', 'y'], local: ['x'], confidence: 0.8, fallback: ['y', 'x'] },
  { id: 3, gold: ['y'], local: ['x'], confidence: 0.7, fallback: ['x', 'y'] },
  { id: 4, gold: ['y'], local: ['x', 'y'], confidence: 0.6, fallback: ['y'] },
] as const;

const QUESTIONS = JSON.stringify([{ name: 'tags', labels: ['x', 'y'], type: 'multi_label' }]);

async function files(dir: string): Promise<{ local: string; gold: string }> {
  const local = await writeRowsParquet(
    path.join(dir, 'val.parquet'),
    { id: 'BIGINT', status: 'VARCHAR', tags__labels: 'VARCHAR[]', tags__confidence: 'DOUBLE', tags__margin: 'DOUBLE' },
    DOCS.map((d) => ({
      id: d.id,
      status: 'ok',
      tags__labels: [...d.local],
      tags__confidence: d.confidence,
      tags__margin: d.confidence - 0.5,
    })),
    { 'rescale.questions': QUESTIONS },
  );
  const gold = await writeRowsParquet(
    path.join(dir, 'gold.parquet'),
    { id: 'BIGINT', tags: 'VARCHAR[]' },
    DOCS.map((d) => ({ id: d.id, tags: [...d.gold] })),
  );
  return { local, gold };
}

/** A run of the fallback on every document: its sets as `tags__labels`. */
async function fallbackRun(dir: string, ids: readonly number[] = DOCS.map((d) => d.id)): Promise<string> {
  return writeRowsParquet(
    path.join(dir, 'fallback.parquet'),
    { id: 'BIGINT', status: 'VARCHAR', tags__labels: 'VARCHAR[]', tags__confidence: 'DOUBLE' },
    DOCS.map((d, i) => ({ id: ids[i], status: 'ok', tags__labels: [...d.fallback], tags__confidence: 0.99 })),
    { 'rescale.questions': QUESTIONS },
  );
}

/** A validation run with the fallback that routed `routed` (by id): `tags__fallback_labels` null elsewhere. */
async function hybridRun(dir: string, routed: readonly number[]): Promise<string> {
  return writeRowsParquet(
    path.join(dir, 'hybrid.parquet'),
    {
      id: 'BIGINT',
      status: 'VARCHAR',
      tags__labels: 'VARCHAR[]',
      tags__local_labels: 'VARCHAR[]',
      tags__fallback_labels: 'VARCHAR[]',
      tags__confidence: 'DOUBLE',
    },
    DOCS.map((d) => ({
      id: d.id,
      status: 'ok',
      tags__labels: [...(routed.includes(d.id) ? d.fallback : d.local)],
      tags__local_labels: [...d.local],
      tags__fallback_labels: routed.includes(d.id) ? [...d.fallback] : null,
      tags__confidence: d.confidence,
    })),
    { 'rescale.questions': QUESTIONS },
  );
}

const options = (local: string, gold: string, fallback: string): CalibrateCommandOptions => ({
  predictions: local,
  gold,
  fallbackPredictions: fallback,
  idColumn: 'id',
  labelColumn: 'tags',
  question: 'tags',
  rule: 'confidence',
  thresholds: [0.65, 0.75, 0.85],
  seed: 3,
  resamples: 200,
});

function close(actual: number | null | undefined, wanted: number | null, what: string): void {
  if (wanted === null) return assert.equal(actual ?? null, null, what);
  assert.ok(
    actual !== null && actual !== undefined && Math.abs(actual - wanted) < 1e-12,
    `${what}: ${actual} vs ${wanted}`,
  );
}

describe('rescale calibrate --fallback-predictions on a multi-label question', () => {
  it('scores routed documents by the fallback’s own sets: exact-set, Jaccard and Hamming loss per row', async () => {
    await withTempDir(async (dir) => {
      const { local, gold } = await files(dir);
      const result = (await runCalibrate(options(local, gold, await fallbackRun(dir)))) as CalibrationResult;
      // The fallback is right on 3 of the 4 documents, each routed document counting with its own set.
      assert.deepEqual([result.fallback.source, result.fallback.documents], ['per-document', 4]);
      close(result.fallback.accuracy, 3 / 4, 'fallback exact-set accuracy');
      const all = result.labelSets?.fallback;
      close(all?.jaccard, (1 + 1 + 1 / 2 + 1) / 4, 'fallback Jaccard');
      close(all?.hammingLoss, 1 / 8, 'fallback Hamming loss');
      close(result.localAccuracy, 1 / 4, 'local exact-set accuracy');

      // No goal: the most accurate point (0.75, routing 2, 3 and 4 or all four), the least routing among equals,
      // which is the observed threshold 0.9; it joins the table's three.
      assert.equal(result.recommendation.point?.threshold, 0.9);
      assert.deepEqual(
        result.table.map((p) => [p.threshold, p.routed]),
        [
          [0.65, 1],
          [0.75, 2],
          [0.85, 3],
          [0.9, 3],
        ],
      );
      // Per row: hybrid exact-set; the fallback's exact-set, Jaccard and Hamming loss on the routed documents; the
      // hybrid's Jaccard (local sets kept, fallback's routed).
      const want = [
        // Routes 4: kept 1, 2, 3 (1 right); the fallback right on 4.
        { hybrid: 2 / 4, fallback: [1, 1, 0], hybridJaccard: (1 + 1 / 2 + 0 + 1) / 4 },
        // Routes 3, 4: the fallback wrong on 3 (Jaccard 1/2, one wrong cell of four).
        { hybrid: 2 / 4, fallback: [1 / 2, 3 / 4, 1 / 4], hybridJaccard: (1 + 1 / 2 + 1 / 2 + 1) / 4 },
        // Routes 2, 3, 4.
        { hybrid: 3 / 4, fallback: [2 / 3, 5 / 6, 1 / 6], hybridJaccard: (1 + 1 + 1 / 2 + 1) / 4 },
        { hybrid: 3 / 4, fallback: [2 / 3, 5 / 6, 1 / 6], hybridJaccard: (1 + 1 + 1 / 2 + 1) / 4 },
      ];
      result.table.forEach((point, i) => {
        const row = result.labelSets?.table[i];
        const w = want[i] as (typeof want)[number];
        const at = `t = ${point.threshold}`;
        close(point.hybridAccuracy, w.hybrid, `${at} hybrid exact-set`);
        close(row?.fallback?.exactMatch, w.fallback[0] as number, `${at} fallback exact-set`);
        close(row?.fallback?.jaccard, w.fallback[1] as number, `${at} fallback Jaccard`);
        close(row?.fallback?.hammingLoss, w.fallback[2] as number, `${at} fallback Hamming loss`);
        close(row?.hybrid?.exactMatch, w.hybrid, `${at} hybrid exact-set (labelSets)`);
        close(row?.hybrid?.jaccard, w.hybridJaccard, `${at} hybrid Jaccard`);
        assert.equal(row?.fallback?.documents, point.routed, `${at} fallback documents`);
      });
      const text = formatCalibration(result);
      assert.match(
        text,
        /fallback exact-set accuracy: 0\.750, Jaccard 0\.875, Hamming loss 0\.125, measured on all 4 labelled documents/,
      );
      assert.match(text, /routed Jaccard.*fallback exact-set.*fallback Jaccard.*hybrid exact-set.*hybrid Jaccard/);
    });
  });

  it('a hybrid run’s __fallback_labels answering some documents: its exact-set accuracy there stands in', async () => {
    await withTempDir(async (dir) => {
      const { local, gold } = await files(dir);
      // The validation run routed documents 2 and 3 only: the fallback's sets are null elsewhere.
      const hybrid = await hybridRun(dir, [2, 3]);
      const result = (await runCalibrate(options(local, gold, hybrid))) as CalibrationResult;
      assert.deepEqual([result.fallback.source, result.fallback.documents], ['per-routed-document', 2]);
      close(result.fallback.accuracy, 1 / 2, 'fallback exact-set accuracy on 2 and 3');
      // Routing 3 and 4: local right on 1 kept, half of the two routed: (1 + 2 · 1/2) / 4. The fallback answered 3
      // of the routed documents only, so the hybrid's own figures are not known.
      const row = result.labelSets?.table[1];
      assert.equal(result.table[1]?.routed, 2);
      close(result.table[1]?.hybridAccuracy, 2 / 4, 'hybrid exact-set at 0.75');
      assert.deepEqual([row?.fallback?.documents, row?.fallback?.exactMatch, row?.fallback?.jaccard], [1, 0, 1 / 2]);
      assert.equal(row?.hybrid, null);
      assert.match(formatCalibration(result), /elsewhere its exact-set accuracy there stands in/);
    });
  });

  it('a hybrid run’s routed documents count with their own sets at the thresholds routing no others', async () => {
    await withTempDir(async (dir) => {
      const { local, gold } = await files(dir);
      // The validation run routed below 0.75: documents 3 (the fallback wrong) and 4 (right), half right.
      const hybrid = await hybridRun(dir, [3, 4]);
      const result = (await runCalibrate(options(local, gold, hybrid))) as CalibrationResult;
      assert.deepEqual([result.fallback.source, result.fallback.documents], ['per-routed-document', 2]);
      close(result.fallback.accuracy, 1 / 2, 'fallback exact-set accuracy on 3 and 4');
      // t = 0.65 routes 4, answered and right: (1 kept right + 1) / 4, not the sample's (1 + 1/2) / 4. t = 0.75
      // routes 3 and 4, one right: (1 + 1) / 4. t = 0.85 also routes 2, which the fallback did not answer: its
      // accuracy on 3 and 4 stands in, (1 + 3 · 1/2) / 4.
      assert.deepEqual(
        result.table.slice(0, 3).map((p) => [p.threshold, p.routed, p.fallbackAccuracy]),
        [
          [0.65, 1, 1],
          [0.75, 2, 1 / 2],
          [0.85, 3, 1 / 2],
        ],
      );
      [2 / 4, 2 / 4, 2.5 / 4].forEach((want, i) => close(result.table[i]?.hybridAccuracy, want, `row ${i} hybrid`));
      // Where every routed document was answered, the point's accuracy is the hybrid's exact-set match.
      const rows = result.labelSets?.table ?? [];
      close(rows[0]?.hybrid?.exactMatch, 2 / 4, 't = 0.65 hybrid exact-set (labelSets)');
      close(rows[1]?.hybrid?.exactMatch, 2 / 4, 't = 0.75 hybrid exact-set (labelSets)');
      assert.equal(rows[2]?.hybrid, null);
      assert.match(
        formatCalibration(result),
        /measured on the 2 labelled documents it answered \(of 4\); where it answered every routed document/,
      );
    });
  });

  it('names the file and column when the ids, the column or a label do not match', async () => {
    await withTempDir(async (dir) => {
      const { local, gold } = await files(dir);
      const others = await fallbackRun(dir, [11, 12, 13, 14]);
      await assert.rejects(
        runCalibrate(options(local, gold, others)),
        (e: Error) =>
          e.message.includes(`--fallback-predictions ${others}, column "tags__labels", holds a label set for none`) &&
          /by id: 4 missing, 4 ids not in the gold file/.test(e.message),
      );
      const noColumn = await writeRowsParquet(
        path.join(dir, 'no-column.parquet'),
        { id: 'BIGINT', tags: 'VARCHAR[]' },
        DOCS.map((d) => ({ id: d.id, tags: [...d.fallback] })),
      );
      await assert.rejects(
        runCalibrate(options(local, gold, noColumn)),
        (e: Error) =>
          e.message.startsWith(
            `--fallback-predictions ${noColumn} has no column "tags__fallback_labels" or "tags__labels"`,
          ) && e.message.includes('(it has: id, tags)'),
      );
      const outside = await writeRowsParquet(
        path.join(dir, 'outside.parquet'),
        { id: 'BIGINT', tags__labels: 'VARCHAR[]' },
        DOCS.map((d) => ({ id: d.id, tags__labels: d.id === 3 ? ['z'] : [...d.fallback] })),
      );
      await assert.rejects(runCalibrate(options(local, gold, outside)), (e: Error) =>
        e.message.startsWith(`--fallback-predictions ${outside}, column "tags__labels", id 3, holds the label "z"`),
      );
    });
  });

  it('through the CLI: the printed table and the JSON', async () => {
    await withTempDir(async (dir) => {
      const { local, gold } = await files(dir);
      const fallback = await fallbackRun(dir);
      const json = path.join(dir, 'calibration.json');
      const cli = await runCli([
        'calibrate',
        '--predictions',
        local,
        '--gold',
        gold,
        '--question',
        'tags',
        '--label-column',
        'tags',
        '--fallback-predictions',
        fallback,
        '--thresholds',
        '0.65,0.75,0.85',
        '--target-accuracy',
        '0.7',
        '--seed',
        '3',
        '--resamples',
        '200',
        '--json',
        json,
      ]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /fallback exact-set accuracy: 0\.750, Jaccard 0\.875, Hamming loss 0\.125/);
      // The cheapest observed threshold reaching 0.7 routes 2, 3 and 4 (expected exact-set 0.75).
      assert.match(cli.stdout, /recommended threshold: confidence 0\.9000 — routes 75\.0% .*expected accuracy 0\.750/);
      // t = 0.75: kept exact-set and Jaccard, routed (local) exact-set and Jaccard, the fallback's on the routed,
      // hybrid exact-set and Jaccard.
      assert.match(
        cli.stdout,
        /^0\.750 +2 +50\.0% +0\.500 +0\.750 +0\.000 +0\.250 +0\.500 +0\.750 +0\.500 +0\.750 +2$/m,
      );
      const written = JSON.parse(await readFile(json, 'utf8')) as CalibrationResult;
      assert.equal(written.fallback.source, 'per-document');
      assert.equal(written.fallback.file, fallback);
      assert.deepEqual(written.labelSets?.fallback, {
        documents: 4,
        exactMatch: 0.75,
        jaccard: 0.875,
        hammingLoss: 0.125,
      });
    });
  });
});
