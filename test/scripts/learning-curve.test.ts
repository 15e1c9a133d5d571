// scripts/learning-curve.ts end to end on a tiny TweetEval subset: sample → keyword adapter per subset → run on the
// held-out split → evaluate → report; the curve's files are consistent with each other.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { EvaluationResult } from '../../study/evaluation/evaluate-predictions.js';
import { runLearningCurve } from '../../scripts/learning-curve.js';
import { queryDuckDB, sqlString, withTempDir } from '../../scripts/harness/parquet.js';

describe('runLearningCurve', () => {
  it(
    'derives one adapter per nested subset, scores the held-out split with each, ' + 'and evaluates them side by side',
    async () => {
      await withTempDir(async (dir) => {
        const result = await runLearningCurve({
          outDir: dir,
          sizes: [40, 120],
          seed: 3,
          heldOut: 60,
          poolLimit: 300,
          resamples: 200,
          threads: 2,
        });
        assert.deepEqual(
          result.runs.map((r) => r.size),
          [0, 40, 120],
        );
        assert.equal(result.runs[0]?.adapter, null);
        assert.ok(
          (result.runs[2]?.keywords ?? 0) > (result.runs[1]?.keywords ?? 0),
          'more training data gives more keywords',
        );

        const evaluation = JSON.parse(await readFile(result.evaluationPath, 'utf8')) as EvaluationResult;
        assert.equal(evaluation.kind, 'rescale.evaluation');
        assert.equal(evaluation.documents, 60);
        assert.deepEqual(
          evaluation.systems.map((s) => s.trainingSize),
          [0, 40, 120],
        );
        for (const s of evaluation.systems) {
          assert.equal(s.coverage.evaluated, 60);
          assert.ok(s.accuracy.lower <= s.accuracy.estimate && s.accuracy.estimate <= s.accuracy.upper);
        }
        // Every run scored exactly the held-out documents, none of which is in a training subset.
        const heldOut = path.join(path.dirname(result.sample.manifestPath), 'held-out.parquet');
        const training = path.join(
          path.dirname(result.sample.manifestPath),
          result.sample.manifest.subsets[1]?.parquet ?? '',
        );
        const overlap = await queryDuckDB(
          `SELECT count(*) AS n FROM read_parquet('${sqlString(heldOut)}') h ` +
            `JOIN read_parquet('${sqlString(training)}') t USING (id)`,
        );
        assert.equal(Number(overlap[0]?.n), 0);
        for (const run of result.runs) {
          const rows = await queryDuckDB(
            `SELECT count(*) AS n FROM read_parquet('${sqlString(run.results)}') r ` +
              `JOIN read_parquet('${sqlString(heldOut)}') h USING (id)`,
          );
          assert.equal(Number(rows[0]?.n), 60);
        }
        assert.match(await readFile(result.tablePath, 'utf8'), /^\| training examples \| accuracy \|/);
        const report = await readFile(result.reportPath, 'utf8');
        assert.match(report, /<section id="learning-curve">/);
        assert.match(report, /<section id="calibration">/);
        const calibration = JSON.parse(await readFile(result.calibrationPath, 'utf8')) as {
          kind: string;
          documents: number;
        };
        assert.equal(calibration.kind, 'rescale.calibration');
        assert.equal(calibration.documents, 60);
      });
    },
  );
});
