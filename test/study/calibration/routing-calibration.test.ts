// rescale calibrate on synthetic data with a known answer: six confidence groups whose accuracy equals their
// confidence exactly (ECE 0), so every threshold's routed share, hybrid accuracy and cost can be written down.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { isRescaleError } from '../../../contracts/errors.js';
import { readGoldLabels, readPredictions } from '../../../study/evaluation/labelled-predictions.js';
import { calibrateRouting, type CalibrateOptions } from '../../../study/calibration/routing-calibration.js';
import { runCli, writeGold, writePredictions, type PredictionRow } from '../../helpers/analysis-files.js';
import { withTempDir } from '../../../scripts/harness/parquet.js';

const GROUPS = [0.45, 0.55, 0.65, 0.75, 0.85, 0.95];
const PER_GROUP = 200;
const N = GROUPS.length * PER_GROUP;

/** Group g: PER_GROUP documents at confidence GROUPS[g], the first GROUPS[g]·PER_GROUP of them right. */
function synthetic(): { gold: { id: number; gold: string }[]; predictions: PredictionRow[] } {
  const gold: { id: number; gold: string }[] = [];
  const predictions: PredictionRow[] = [];
  GROUPS.forEach((confidence, g) => {
    const right = Math.round(confidence * PER_GROUP);
    for (let i = 0; i < PER_GROUP; i++) {
      const id = g * PER_GROUP + i;
      const truth = id % 2 === 0 ? 'yes' : 'no';
      const other = truth === 'yes' ? 'no' : 'yes';
      gold.push({ id, gold: truth });
      // margin and entropy follow confidence (two labels): margin 2c − 1, entropy decreasing in c.
      const entropy = -(confidence * Math.log(confidence) + (1 - confidence) * Math.log(1 - confidence));
      predictions.push({ id, label: i < right ? truth : other, confidence, margin: 2 * confidence - 1, entropy });
    }
  });
  return { gold, predictions };
}

/** Expected hybrid accuracy when the `routed` lowest groups go to a fallback of accuracy `f`. */
function expectedAccuracy(routed: number, f: number): number {
  let correct = 0;
  GROUPS.forEach((c, g) => (correct += g < routed ? f * PER_GROUP : Math.round(c * PER_GROUP)));
  return correct / N;
}

async function setup(dir: string) {
  const data = synthetic();
  const goldFile = await writeGold(path.join(dir, 'val_gold.parquet'), data.gold);
  const predictionsFile = await writePredictions(path.join(dir, 'val.parquet'), data.predictions, ['no', 'yes']);
  return {
    goldFile,
    predictionsFile,
    gold: await readGoldLabels(goldFile, { idColumn: 'id', labelColumn: 'gold' }),
    predictions: await readPredictions(predictionsFile),
  };
}

const base = (extra: Partial<CalibrateOptions> = {}): CalibrateOptions => ({
  fallback: { kind: 'assumed', accuracy: 0.9 },
  labelCount: 2,
  seed: 1,
  resamples: 200,
  corpusSize: 1_000_000,
  costPerDocument: 0.001,
  ...extra,
});

const close = (a: number, b: number, tolerance = 1e-9): void => assert.ok(Math.abs(a - b) <= tolerance, `${a} vs ${b}`);

describe('calibrateRouting', () => {
  it('finds zero calibration error when accuracy equals confidence in every bin', async () => {
    await withTempDir(async (dir) => {
      const { gold, predictions } = await setup(dir);
      const result = calibrateRouting(gold, predictions, base());
      close(result.ece.estimate, 0, 1e-12);
      assert.equal(result.documents, N);
      close(result.localAccuracy, expectedAccuracy(0, 0));
      const used = result.bins.filter((b) => b.count > 0);
      assert.deepEqual(
        used.map((b) => b.count),
        GROUPS.map(() => PER_GROUP),
      );
      used.forEach((b, g) => close(b.accuracy ?? Number.NaN, GROUPS[g] as number));
    });
  });

  it('gives the known routed share, hybrid accuracy and cost at every threshold', async () => {
    await withTempDir(async (dir) => {
      const { gold, predictions } = await setup(dir);
      const result = calibrateRouting(gold, predictions, base());
      // The sweep has one point per distinct confidence (routing the groups below it) plus route-everything.
      assert.equal(result.sweep.length, GROUPS.length + 1);
      result.sweep.forEach((point, routedGroups) => {
        const share = (routedGroups * PER_GROUP) / N;
        close(point.routedShare, share);
        close(point.hybridAccuracy, expectedAccuracy(routedGroups, 0.9));
        close(point.expectedCost, 1_000_000 * share * 0.001);
      });
    });
  });

  it(
    'recommends the cheapest threshold that meets a target, ' + 'the best within a budget, else the most accurate',
    async () => {
      await withTempDir(async (dir) => {
        const { gold, predictions } = await setup(dir);
        // Routing 0, 1, 2, 3, 4, 5, 6 groups gives 0.700, 0.775, 0.833, 0.875, 0.900, 0.908, 0.900.
        const target = calibrateRouting(gold, predictions, base({ goal: { targetAccuracy: 0.85 } })).recommendation
          .point;
        assert.equal(target?.threshold, 0.75);
        close(target?.routedShare ?? Number.NaN, 0.5);
        close(target?.expectedCost ?? Number.NaN, 500);
        const budget = calibrateRouting(gold, predictions, base({ goal: { budget: 700 } })).recommendation.point;
        assert.equal(budget?.threshold, 0.85);
        close(budget?.hybridAccuracy ?? Number.NaN, 0.9);
        const best = calibrateRouting(gold, predictions, base()).recommendation.point;
        assert.equal(best?.threshold, 0.95);
        close(best?.hybridAccuracy ?? Number.NaN, expectedAccuracy(5, 0.9));
        const impossible = calibrateRouting(gold, predictions, base({ goal: { targetAccuracy: 0.95 } }));
        assert.equal(impossible.recommendation.point, null);
      });
    },
  );

  it('routes by margin and entropy in the right direction', async () => {
    await withTempDir(async (dir) => {
      const { gold, predictions } = await setup(dir);
      for (const rule of ['margin', 'entropy'] as const) {
        const result = calibrateRouting(gold, predictions, base({ rule, goal: { targetAccuracy: 0.85 } }));
        const point = result.recommendation.point;
        close(point?.routedShare ?? Number.NaN, 0.5);
        close(point?.hybridAccuracy ?? Number.NaN, expectedAccuracy(3, 0.9));
      }
    });
  });

  it("uses the fallback's own answers per document, or its accuracy on a sample", async () => {
    await withTempDir(async (dir) => {
      const { gold, predictions } = await setup(dir);
      const data = synthetic();
      // A fallback right on every document of the two least confident groups and wrong everywhere else.
      const all = await writePredictions(
        path.join(dir, 'fallback.parquet'),
        data.gold.map((g) => ({ id: g.id, label: g.id < 2 * PER_GROUP ? g.gold : g.gold === 'yes' ? 'no' : 'yes' })),
      );
      const perDocument = calibrateRouting(
        gold,
        predictions,
        base({ fallback: { kind: 'predictions', predictions: await readPredictions(all) } }),
      );
      assert.equal(perDocument.fallback.source, 'per-document');
      close(perDocument.fallback.accuracy, 2 / 6);
      // Routing two groups: those documents all become right.
      const two = perDocument.sweep[2];
      close(
        two?.hybridAccuracy ?? Number.NaN,
        (2 * PER_GROUP + Math.round((0.65 + 0.75 + 0.85 + 0.95) * PER_GROUP)) / N,
      );
      // A hybrid run's file: fallback_label only where it routed (here 100 documents, 75 right).
      const sample = await writePredictions(
        path.join(dir, 'hybrid.parquet'),
        data.gold.map((g) => ({
          id: g.id,
          label: g.gold,
          fallback_label: g.id < 100 ? (g.id < 75 ? g.gold : g.gold === 'yes' ? 'no' : 'yes') : null,
          fallback_status: g.id < 100 ? 'ok' : null,
        })),
      );
      const measured = calibrateRouting(
        gold,
        predictions,
        base({ fallback: { kind: 'predictions', predictions: await readPredictions(sample) } }),
      );
      assert.equal(measured.fallback.source, 'sample');
      assert.equal(measured.fallback.documents, 100);
      close(measured.fallback.accuracy, 0.75);
      close(measured.sweep[1]?.hybridAccuracy ?? Number.NaN, expectedAccuracy(1, 0.75));
    });
  });

  it('rejects a rule the file has no scores for and a fallback accuracy outside [0, 1]', async () => {
    await withTempDir(async (dir) => {
      const { gold } = await setup(dir);
      const bare = await readPredictions(
        await writePredictions(path.join(dir, 'bare.parquet'), [{ id: 0, label: 'yes', confidence: 0.9 }]),
      );
      assert.throws(
        () => calibrateRouting(gold, bare, base({ rule: 'margin' })),
        (e: unknown) => isRescaleError(e, 'INPUT_INVALID'),
      );
      const { predictions } = await setup(dir);
      assert.throws(
        () => calibrateRouting(gold, predictions, base({ fallback: { kind: 'assumed', accuracy: 1.5 } })),
        (e: unknown) => isRescaleError(e, 'CONFIG_INVALID') && e.message.includes('--fallback-accuracy'),
      );
    });
  });
});

describe('rescale calibrate (CLI)', () => {
  it('prints the reliability diagram, the threshold table and the recommended threshold', async () => {
    await withTempDir(async (dir) => {
      const { goldFile, predictionsFile } = await setup(dir);
      const result = await runCli([
        'calibrate',
        '--predictions',
        predictionsFile,
        '--gold',
        goldFile,
        '--fallback-accuracy',
        '0.9',
        '--corpus-size',
        '1000000',
        '--cost-per-document',
        '0.001',
        '--target-accuracy',
        '0.85',
        '--resamples',
        '200',
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /expected calibration error \(10 equal-width bins\): 0\.000 \[/);
      assert.match(result.stdout, /\(0\.40, 0\.50\]\s+200\s+0\.450\s+0\.450/);
      assert.match(result.stdout, /0\.750 \*\s+600\s+50\.0%\s+0\.850\s+0\.875\s+500000\s+500/);
      assert.match(
        result.stdout,
        /recommended threshold: confidence 0\.7500 — routes 50\.0% \(500000 of 1000000 documents\), expected accuracy 0\.875, expected cost 500/,
      );
    });
  });

  it('asks for exactly one source of fallback accuracy', async () => {
    await withTempDir(async (dir) => {
      const { goldFile, predictionsFile } = await setup(dir);
      const result = await runCli(['calibrate', '--predictions', predictionsFile, '--gold', goldFile]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /--fallback-accuracy .* or --fallback-predictions/);
    });
  });
});
