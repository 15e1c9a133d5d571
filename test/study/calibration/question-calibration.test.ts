// `rescale calibrate` on a multi-question run (DuckDB-written files): each question is calibrated as its own
// one-question file would be, and all (document, question) pairs pooled give the overall calibration.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { formatCalibration, runCalibrate, type CalibrateCommandOptions } from '../../../cli/calibrate.js';
import type { CalibrationResult } from '../../../study/calibration/routing-calibration.js';
import { withTempDir } from '../../../scripts/harness/parquet.js';
import { writeGold, writePredictions, writeRowsParquet } from '../../helpers/analysis-files.js';

const N = 40;
/** Question a: right when confidence ≥ 0.7; question b: right on even ids. Deterministic, no randomness. */
function answers(question: 'a' | 'b', id: number): { label: string; confidence: number; gold: string } {
  const confidence = 0.5 + ((id * 7) % 50) / 100;
  const right = question === 'a' ? confidence >= 0.7 : id % 2 === 0;
  const gold = question === 'a' ? (id % 3 === 0 ? 'x' : 'y') : id % 4 === 0 ? 'p' : 'q';
  const other = question === 'a' ? (gold === 'x' ? 'y' : 'x') : gold === 'p' ? 'q' : 'p';
  return { label: right ? gold : other, confidence, gold };
}

const ids = Array.from({ length: N }, (_, i) => i);

async function files(dir: string): Promise<{ multi: string; gold: string; a: string; b: string; goldOf: string }> {
  const multi = await writeRowsParquet(
    path.join(dir, 'multi.parquet'),
    {
      id: 'BIGINT',
      a__label: 'VARCHAR',
      a__confidence: 'DOUBLE',
      a__margin: 'DOUBLE',
      a__entropy: 'DOUBLE',
      b__label: 'VARCHAR',
      b__confidence: 'DOUBLE',
      b__margin: 'DOUBLE',
      b__entropy: 'DOUBLE',
      status: 'VARCHAR',
      source: 'VARCHAR',
    },
    ids.map((id) => {
      const a = answers('a', id);
      const b = answers('b', id);
      return {
        id,
        a__label: a.label,
        a__confidence: a.confidence,
        a__margin: 2 * a.confidence - 1,
        a__entropy: 0.5,
        b__label: b.label,
        b__confidence: b.confidence,
        b__margin: 2 * b.confidence - 1,
        b__entropy: 0.5,
        status: 'ok',
        source: 'local',
      };
    }),
    {
      'rescale.questions': JSON.stringify([
        { name: 'a', labels: ['x', 'y'] },
        { name: 'b', labels: ['p', 'q'] },
      ]),
    },
  );
  const gold = await writeRowsParquet(
    path.join(dir, 'gold.parquet'),
    { id: 'BIGINT', a: 'VARCHAR', b: 'VARCHAR' },
    ids.map((id) => ({ id, a: answers('a', id).gold, b: answers('b', id).gold })),
  );
  const single = (q: 'a' | 'b', labels: string[]): Promise<string> =>
    writePredictions(
      path.join(dir, `${q}.parquet`),
      ids.map((id) => {
        const x = answers(q, id);
        return { id, label: x.label, confidence: x.confidence, margin: 2 * x.confidence - 1, entropy: 0.5 };
      }),
      labels,
    );
  const goldOf = await writeGold(
    path.join(dir, 'gold-a.parquet'),
    ids.map((id) => ({ id, gold: answers('a', id).gold })),
  );
  return { multi, gold, a: await single('a', ['x', 'y']), b: await single('b', ['p', 'q']), goldOf };
}

const common = {
  idColumn: 'id',
  fallbackAccuracy: 0.9,
  rule: 'confidence',
  seed: 7,
  resamples: 200,
  targetAccuracy: 0.8,
} as const;

/** A result without the file names, which differ between the forms compared. */
function numbers(result: CalibrationResult): object {
  const { predictions: _p, gold: _g, coverage: _c, question: _q, ...rest } = result;
  return rest;
}

describe('rescale calibrate with several questions', () => {
  it('calibrates each question as its own file would be, and all questions pooled', async () => {
    await withTempDir(async (dir) => {
      const f = await files(dir);
      const options: CalibrateCommandOptions = { ...common, predictions: f.multi, gold: f.gold, labelColumn: 'gold' };
      const result = await runCalibrate(options);
      assert.equal(result.kind, 'rescale.calibration.questions');
      if (result.kind !== 'rescale.calibration.questions') return;
      assert.deepEqual(
        result.questions.map((q) => [q.question, q.result.question, q.result.documents]),
        [
          ['a', 'a', N],
          ['b', 'b', N],
        ],
      );
      for (const [q, file] of [
        ['a', f.a],
        ['b', f.b],
      ] as const) {
        const gold = await writeGold(
          path.join(dir, `gold-${q}-own.parquet`),
          ids.map((id) => ({ id, gold: answers(q, id).gold })),
        );
        const own = await runCalibrate({ ...common, predictions: file, gold, labelColumn: 'gold' });
        assert.equal(own.kind, 'rescale.calibration');
        const mine = result.questions.find((x) => x.question === q)?.result as CalibrationResult;
        assert.deepEqual(numbers(mine), numbers(own as CalibrationResult), `question ${q}`);
      }
      const overall = result.overall as CalibrationResult;
      assert.equal(overall.documents, 2 * N);
      const correct =
        ids.filter((id) => answers('a', id).confidence >= 0.7).length + ids.filter((id) => id % 2 === 0).length;
      assert.equal(overall.localAccuracy, correct / (2 * N));
      const text = formatCalibration(result);
      assert.match(text, /== question a \(gold column "a"\)/);
      assert.match(text, /== question b/);
      assert.match(text, /== all single-label questions pooled \(a, b/);
      assert.match(text, /labelled documents: 80;/);
    });
  });

  it('calibrates one question with --question against --label-column, and names unknown questions', async () => {
    await withTempDir(async (dir) => {
      const f = await files(dir);
      const one = await runCalibrate({
        ...common,
        predictions: f.multi,
        gold: f.goldOf,
        labelColumn: 'gold',
        question: 'a',
      });
      assert.equal(one.kind, 'rescale.calibration');
      const own = await runCalibrate({ ...common, predictions: f.a, gold: f.goldOf, labelColumn: 'gold' });
      assert.deepEqual(numbers(one as CalibrationResult), numbers(own as CalibrationResult));
      assert.match(formatCalibration(one), /^question: a$/m);
      await assert.rejects(
        runCalibrate({ ...common, predictions: f.multi, gold: f.goldOf, labelColumn: 'gold', question: 'c' }),
        /--question c is not a question of .*multi\.parquet \(a, b\)/,
      );
      await assert.rejects(
        runCalibrate({ ...common, predictions: f.a, gold: f.goldOf, labelColumn: 'gold', question: 'a' }),
        /holds one question; leave --question out/,
      );
    });
  });
});
