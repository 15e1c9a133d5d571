// rescale evaluate: hand-computed values, agreement with the metrics library, the id join and its errors, several
// files side by side, and the CLI. Inputs are Parquet files written by DuckDB.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { isRescaleError } from '../../../contracts/errors.js';
import { evaluatePredictions } from '../../../study/evaluation/evaluate-predictions.js';
import {
  joinByIds,
  readGoldLabels,
  readPredictions,
  resolveLabelOrder,
} from '../../../study/evaluation/labelled-predictions.js';
import { agreementMetrics, cohenKappa } from '../../../study/evaluation/agreement-metrics.js';
import { bootstrapCi } from '../../../study/evaluation/bootstrap.js';
import { krippendorffAlpha } from '../../../study/evaluation/krippendorff-alpha.js';
import { createSeededRandom } from '../../../study/evaluation/seeded-random.js';
import {
  runCli,
  writeGold,
  writePredictions,
  writeRowsParquet,
  type PredictionRow,
} from '../../helpers/analysis-files.js';
import { withTempDir, writeParquetWithDuckDB } from '../../../scripts/harness/parquet.js';

const LABELS = ['negative', 'neutral', 'positive'];
// Rows gold, columns predicted: [[2,1,0],[0,3,1],[1,0,2]].
const GOLD = [
  'negative',
  'negative',
  'negative',
  'neutral',
  'neutral',
  'neutral',
  'neutral',
  'positive',
  'positive',
  'positive',
];
const PRED = [
  'negative',
  'negative',
  'neutral',
  'neutral',
  'neutral',
  'positive',
  'neutral',
  'positive',
  'negative',
  'positive',
];

async function handExample(dir: string): Promise<{ gold: string; predictions: string }> {
  const gold = await writeGold(
    path.join(dir, 'gold.parquet'),
    GOLD.map((g, i) => ({ id: i + 1, gold: g })),
    'INTEGER',
  );
  const predictions = await writePredictions(
    path.join(dir, 'results.parquet'),
    PRED.map((p, i) => ({ id: i + 1, label: p, confidence: 0.9 })),
    LABELS,
  );
  return { gold, predictions };
}

const close = (actual: number, expected: number, tolerance = 1e-12): void =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${actual} vs ${expected}`);

describe('evaluatePredictions', () => {
  it('reproduces hand-computed accuracy, F1, kappa and alpha on a 10-document example', async () => {
    await withTempDir(async (dir) => {
      const files = await handExample(dir);
      const gold = await readGoldLabels(files.gold, { idColumn: 'id', labelColumn: 'gold' });
      const predictions = await readPredictions(files.predictions);
      const labels = resolveLabelOrder(gold, [predictions], undefined);
      assert.deepEqual(labels, LABELS);
      const result = evaluatePredictions(gold, [predictions], { labels, seed: 3, resamples: 200, ordered: true });
      const s = result.systems[0];
      assert.ok(s !== undefined);
      assert.deepEqual(s.confusion.counts, [
        [2, 1, 0],
        [0, 3, 1],
        [1, 0, 2],
      ]);
      close(s.accuracy.estimate, 0.7);
      close(s.macroF1.estimate, 25 / 36); // (2/3 + 3/4 + 2/3) / 3
      close(s.weightedF1.estimate, 0.7);
      close(s.cohenKappa.estimate, 6 / 11); // (0.7 − 0.34) / (1 − 0.34)
      close(s.alphaNominal.estimate, 25 / 44); // 1 − 19·6/264
      close(s.alphaOrdinal?.estimate ?? Number.NaN, 0.525); // 1 − 19·588/23520
      close(s.kappaQuadratic?.estimate ?? Number.NaN, 0.5); // 1 − 6/12
      assert.deepEqual(
        s.perClass.map((c) => [c.label, c.support, c.predicted]),
        [
          ['negative', 3, 3],
          ['neutral', 4, 4],
          ['positive', 3, 3],
        ],
      );
      close(s.perClass[1]?.precision.estimate ?? Number.NaN, 0.75);
      close(s.perClass[2]?.f1.estimate ?? Number.NaN, 2 / 3);
      assert.equal(result.documents, 10);
      assert.equal(s.coverage.missingPredictions + s.coverage.notInGold, 0);
    });
  });

  it('agrees with the metrics library on random data, estimates and bootstrap intervals alike', async () => {
    await withTempDir(async (dir) => {
      const random = createSeededRandom(77);
      const n = 400;
      const gold = Array.from({ length: n }, () => LABELS[random.nextInt(3)] as string);
      const pred = gold.map((g) => (random.nextFloat() < 0.7 ? g : (LABELS[random.nextInt(3)] as string)));
      await writeGold(
        path.join(dir, 'g.parquet'),
        gold.map((g, i) => ({ id: `doc-${i}`, gold: g })),
        'VARCHAR',
      );
      await writePredictions(
        path.join(dir, 'p.parquet'),
        pred.map((p, i) => ({ id: `doc-${i}`, label: p })),
        LABELS,
        'VARCHAR',
      );
      const g = await readGoldLabels(path.join(dir, 'g.parquet'), { idColumn: 'id', labelColumn: 'gold' });
      const p = await readPredictions(path.join(dir, 'p.parquet'));
      const result = evaluatePredictions(g, [p], { labels: LABELS, seed: 11, resamples: 300, ordered: true });
      const s = result.systems[0];
      assert.ok(s !== undefined);
      const m = agreementMetrics(gold, pred, LABELS);
      close(s.accuracy.estimate, m.accuracy);
      close(s.macroF1.estimate, m.macroF1);
      close(s.weightedF1.estimate, m.weightedF1);
      close(s.cohenKappa.estimate, cohenKappa(gold, pred, LABELS));
      close(s.kappaQuadratic?.estimate ?? Number.NaN, cohenKappa(gold, pred, LABELS, { weights: 'quadratic' }));
      close(s.alphaNominal.estimate, krippendorffAlpha([gold, pred], { level: 'nominal' }).alpha);
      close(
        s.alphaOrdinal?.estimate ?? Number.NaN,
        krippendorffAlpha([gold, pred], { level: 'ordinal', valueOrder: LABELS }).alpha,
      );
      m.perClass.forEach((c, i) => close(s.perClass[i]?.recall.estimate ?? Number.NaN, c.recall));

      // The same seed resamples the same documents as bootstrapCi over (gold, predicted) pairs: identical intervals.
      const pairs = gold.map((label, i) => ({ gold: label, predicted: pred[i] as string }));
      const options = { seed: 11, resamples: 300 };
      assert.deepEqual(
        s.accuracy,
        bootstrapCi(pairs, (x) => x.filter((q) => q.gold === q.predicted).length / x.length, options),
      );
      const alpha = bootstrapCi(
        pairs,
        (x) => krippendorffAlpha([x.map((q) => q.gold), x.map((q) => q.predicted)], { level: 'nominal' }).alpha,
        options,
      );
      close(s.alphaNominal.lower, alpha.lower, 1e-9);
      close(s.alphaNominal.upper, alpha.upper, 1e-9);
      assert.ok(s.accuracy.lower < s.accuracy.estimate && s.accuracy.estimate < s.accuracy.upper);
    });
  });

  it('compares several files on the documents all of them labelled, with paired differences', async () => {
    await withTempDir(async (dir) => {
      const { gold: goldFile, predictions: first } = await handExample(dir);
      // The second file is right everywhere but has no row for id 10 and no label (error) for id 9.
      const second = await writePredictions(
        path.join(dir, 'better.parquet'),
        [...GOLD.slice(0, 8).map((g, i): PredictionRow => ({ id: i + 1, label: g })), { id: 9, label: null }],
        LABELS,
      );
      const gold = await readGoldLabels(goldFile, { idColumn: 'id', labelColumn: 'gold' });
      const files = [await readPredictions(first), await readPredictions(second)];
      const result = evaluatePredictions(gold, files, {
        labels: LABELS,
        seed: 5,
        resamples: 200,
        names: ['base', 'better'],
        trainingSizes: [0, 100],
      });
      assert.equal(result.documents, 8);
      const [base, better] = result.systems;
      assert.ok(base !== undefined && better !== undefined);
      assert.equal(better.coverage.missingPredictions, 1);
      assert.deepEqual(better.coverage.unscored, { error: 1 });
      assert.equal(better.coverage.evaluated, 8);
      close(better.accuracy.estimate, 1);
      close(base.accuracy.estimate, 6 / 8); // the first 8 documents: two mistakes (ids 3 and 6)
      const difference = result.differences[0];
      assert.ok(difference !== undefined);
      assert.equal(difference.baseline, 'base');
      close(difference.accuracy.estimate, 1 - 6 / 8);
      assert.equal(better.trainingSize, 100);
    });
  });
});

describe('the id join', () => {
  it('counts ids missing on either side and unscored rows, and joins integer ids across widths and text', async () => {
    await withTempDir(async (dir) => {
      await writeGold(
        path.join(dir, 'g.parquet'),
        [...[1, 2, 3, 4].map((id) => ({ id, gold: 'a' as string | null })), { id: 5, gold: null }],
        'INTEGER',
      );
      await writePredictions(
        path.join(dir, 'p.parquet'),
        [
          { id: '1', label: 'a' },
          { id: '2', label: null, status: 'empty_text' },
          { id: '4', label: 'b' },
          { id: '77', label: 'a' },
        ],
        undefined,
        'VARCHAR',
      );
      const gold = await readGoldLabels(path.join(dir, 'g.parquet'), { idColumn: 'id', labelColumn: 'gold' });
      const join = joinByIds(gold, await readPredictions(path.join(dir, 'p.parquet')));
      assert.equal(gold.unlabelled, 1);
      assert.equal(join.coverage.goldLabelled, 4);
      assert.equal(join.coverage.evaluated, 2);
      assert.equal(join.coverage.missingPredictions, 1);
      assert.deepEqual(join.coverage.examples.missingPredictions, ['3']);
      assert.equal(join.coverage.notInGold, 1);
      assert.deepEqual(join.coverage.examples.notInGold, ['77']);
      assert.deepEqual(join.coverage.unscored, { empty_text: 1 });
    });
  });

  it('refuses a duplicated id, naming the file, the id and both rows', async () => {
    await withTempDir(async (dir) => {
      const predictions = await writePredictions(path.join(dir, 'dup.parquet'), [
        { id: 1, label: 'a' },
        { id: 2, label: 'a' },
        { id: 1, label: 'b' },
      ]);
      await assert.rejects(
        readPredictions(predictions),
        (e: unknown) =>
          isRescaleError(e, 'INPUT_INVALID') &&
          e.message.includes('dup.parquet') &&
          e.message.includes('"1" appears twice (rows 0 and 2)'),
      );
      const gold = await writeGold(path.join(dir, 'gold-dup.parquet'), [
        { id: 4, gold: 'a' },
        { id: 4, gold: 'a' },
      ]);
      await assert.rejects(
        readGoldLabels(gold, { idColumn: 'id', labelColumn: 'gold' }),
        (e: unknown) => isRescaleError(e, 'INPUT_INVALID') && e.message.includes('gold-dup.parquet'),
      );
    });
  });

  it('keys a multi-file run whose files reuse ids by file and id (from the manifest), and says so', async () => {
    await withTempDir(async (dir) => {
      // The corpus: two files with ids 1 and 2 each; b.parquet also holds gold labels (a labelled split).
      const a = await writeGold(path.join(dir, 'a.parquet'), [
        { id: 1, gold: null },
        { id: 2, gold: null },
      ]);
      const b = await writeGold(path.join(dir, 'b.parquet'), [
        { id: 1, gold: 'x' },
        { id: 2, gold: 'y' },
      ]);
      const results = path.join(dir, 'results.parquet');
      await writeRowsParquet(results, { id: 'BIGINT', label: 'VARCHAR', status: 'VARCHAR', shard_id: 'VARCHAR' }, [
        { id: 1, label: 'y', status: 'ok', shard_id: 'sa' },
        { id: 2, label: 'y', status: 'ok', shard_id: 'sa' },
        { id: 1, label: 'x', status: 'ok', shard_id: 'sb' },
        { id: 2, label: 'x', status: 'ok', shard_id: 'sb' },
      ]);
      await writeFile(
        `${results}.manifest.json`,
        JSON.stringify({
          shards: [
            { id: 'sa', file: a, rowStart: 0, rowEnd: 2 },
            { id: 'sb', file: b, rowStart: 0, rowEnd: 2 },
          ],
        }),
      );
      const predictions = await readPredictions(results);
      assert.equal(predictions.keyedBy, 'file and id');
      // The gold file is one of the corpus files: its rows are keyed by it.
      const gold = await readGoldLabels(b, { idColumn: 'id', labelColumn: 'gold' });
      const join = joinByIds(gold, predictions);
      assert.equal(join.coverage.key, 'file and id');
      assert.equal(join.coverage.evaluated, 2);
      assert.deepEqual([...join.predictionRows], [2, 3]);
      assert.equal(join.coverage.notInGold, 2);
      // A gold file outside the corpus names each row's corpus file in a "file" column (a path or a file name).
      const named = path.join(dir, 'gold-named.parquet');
      await writeRowsParquet(named, { file: 'VARCHAR', id: 'BIGINT', gold: 'VARCHAR' }, [
        { file: 'a.parquet', id: 2, gold: 'y' },
        { file: b, id: 1, gold: 'x' },
      ]);
      const both = joinByIds(await readGoldLabels(named, { idColumn: 'id', labelColumn: 'gold' }), predictions);
      assert.equal(both.coverage.evaluated, 2);
      assert.deepEqual([...both.predictionRows], [1, 2]);
      // Without either, the join cannot be made and says what to add.
      const plain = await writeGold(path.join(dir, 'gold-plain.parquet'), [{ id: 1, gold: 'x' }]);
      assert.throws(
        () => joinByIds(gold.file === plain ? gold : { ...gold, file: plain, files: null }, predictions),
        (e: unknown) => isRescaleError(e, 'INPUT_INVALID') && e.message.includes('"file" column'),
      );
      const cli = await runCli(['evaluate', '--predictions', results, '--gold', b]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /joined by file and id/);
    });
  });

  it('keeps NaN, infinite and -0 float ids apart from null and from 0', async () => {
    await withTempDir(async (dir) => {
      const ids = "('nan'::DOUBLE), ('inf'::DOUBLE), ('-inf'::DOUBLE), (-0.0::DOUBLE), (0.0::DOUBLE)";
      const results = await writeParquetWithDuckDB(
        `SELECT id, CASE WHEN id = 0 AND sign(id) >= 0 THEN 'x' ELSE 'y' END AS label FROM (VALUES ${ids}) t(id)`,
        path.join(dir, 'results.parquet'),
      );
      const gold = await writeParquetWithDuckDB(
        `SELECT id, 'y' AS gold FROM (VALUES ${ids}) t(id)`,
        path.join(dir, 'gold.parquet'),
      );
      const predictions = await readPredictions(results);
      assert.equal(predictions.nullIds, 0);
      assert.deepEqual([...predictions.keys], ['NaN', 'Infinity', '-Infinity', '-0', '0']);
      const join = joinByIds(await readGoldLabels(gold, { idColumn: 'id', labelColumn: 'gold' }), predictions);
      assert.equal(join.coverage.evaluated, 5);
    });
  });

  it('names the option, file and column when a column is missing, and a label outside the codebook', async () => {
    await withTempDir(async (dir) => {
      const { gold, predictions } = await handExample(dir);
      await assert.rejects(
        readGoldLabels(gold, { idColumn: 'id', labelColumn: 'human' }),
        (e: unknown) =>
          isRescaleError(e, 'COLUMN_MISSING') &&
          e.message.includes('--label-column') &&
          e.message.includes('"human"') &&
          e.message.includes('gold.parquet'),
      );
      const g = await readGoldLabels(gold, { idColumn: 'id', labelColumn: 'gold' });
      const p = await readPredictions(predictions);
      assert.throws(
        () => resolveLabelOrder(g, [p], ['negative', 'positive']),
        (e: unknown) =>
          isRescaleError(e, 'INPUT_INVALID') && e.message.includes('"neutral"') && e.message.includes('--labels'),
      );
    });
  });
});

describe('rescale evaluate (CLI)', () => {
  it('prints the tables and writes JSON', async () => {
    await withTempDir(async (dir) => {
      const { gold, predictions } = await handExample(dir);
      const json = path.join(dir, 'eval.json');
      const result = await runCli([
        'evaluate',
        '--predictions',
        predictions,
        '--gold',
        gold,
        '--resamples',
        '200',
        '--seed',
        '4',
        '--ordered',
        '--json',
        json,
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /accuracy\s+0\.700 \[/);
      assert.match(result.stdout, /Krippendorff's alpha \(ordinal\)\s+0\.525 \[/);
      assert.match(result.stdout, /gold \\ predicted\s+negative\s+neutral\s+positive\s+total/);
      const written = JSON.parse(await readFile(json, 'utf8')) as {
        kind: string;
        bootstrap: { seed: number };
        systems: { cohenKappa: { estimate: number } }[];
      };
      assert.equal(written.kind, 'rescale.evaluation');
      assert.equal(written.bootstrap.seed, 4);
      close(written.systems[0]?.cohenKappa.estimate ?? Number.NaN, 6 / 11, 1e-12);
    });
  });

  it('reports missing ids by default and fails with --strict-ids; exit code 3 for bad input', async () => {
    await withTempDir(async (dir) => {
      const gold = await writeGold(
        path.join(dir, 'gold.parquet'),
        [1, 2, 3].map((id) => ({ id, gold: 'a' })),
      );
      const predictions = await writePredictions(
        path.join(dir, 'r.parquet'),
        [
          { id: 1, label: 'a' },
          { id: 2, label: 'b' },
        ],
        ['a', 'b'],
      );
      const lenient = await runCli(['evaluate', '--predictions', predictions, '--gold', gold, '--resamples', '100']);
      assert.equal(lenient.code, 0, lenient.stderr);
      assert.match(lenient.stdout, /note: r\.parquet: 1 gold ids without a prediction row \(e\.g\. "3"\)/);
      const strict = await runCli([
        'evaluate',
        '--predictions',
        predictions,
        '--gold',
        gold,
        '--resamples',
        '100',
        '--strict-ids',
      ]);
      assert.equal(strict.code, 3);
      assert.match(strict.stderr, /r\.parquet does not match the gold file .*1 gold ids have no prediction row/);
      const missing = await runCli(['evaluate', '--predictions', path.join(dir, 'nope.parquet'), '--gold', gold]);
      assert.equal(missing.code, 3);
      assert.match(missing.stderr, /--predictions .*nope\.parquet: cannot open it/);
    });
  });
});
