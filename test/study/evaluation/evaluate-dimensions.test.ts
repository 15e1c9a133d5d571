// `rescale evaluate --dimensions`: a multi-question results file against a gold file with one column per dimension,
// on Parquet written by DuckDB, against verify-test.R's figures worked out by hand for a small coding.

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseCodebook, type Codebook } from '../../../contracts/codebook.js';
import { isRescaleError } from '../../../contracts/errors.js';
import { evaluateDimensions } from '../../../study/evaluation/evaluate-dimensions.js';
import { runCli } from '../../helpers/analysis-files.js';
import { withTempDir, writeParquetWithDuckDB } from '../../../scripts/harness/parquet.js';

const LEVELS = ['absent', 'low', 'medium', 'high'];
const DIMENSIONS = ['hope', 'fear', 'gratitude'];

function codebookInput(ordered = true): Record<string, unknown> {
  return {
    task: 'dimensions',
    questions: DIMENSIONS.map((name) => ({ name, question: name, ordered, labels: LEVELS.map((l) => ({ name: l })) })),
    prompt: { template: 'Text: {text}\n\nDimension: {question}' },
    model: { path: 'model.gguf' },
  };
}

function codebook(ordered = true): Codebook {
  return parseCodebook(codebookInput(ordered), { source: 'dimensions.yaml' });
}

const level = (value: string | null): string => (value === null ? 'NULL' : `'${value}'`);

/**
 * Documents 1-3 are evaluated: 1 gold {hope high, fear low} vs {hope high, gratitude medium}; 2 nothing on either side
 * (gold written as nulls); 3 gold {fear medium} vs {fear high}. Document 4 has no result row, 5 a row that failed,
 * and 6 is in the results only.
 */
async function writeFiles(dir: string): Promise<{ gold: string; predictions: string }> {
  const goldRows: [number, string | null, string | null, string | null][] = [
    [1, 'high', 'low', 'absent'],
    [2, null, null, null],
    [3, 'absent', 'medium', null],
    [4, 'low', null, null],
    [5, 'high', null, null],
  ];
  const predictedRows: [number, string | null, string | null, string | null, string][] = [
    [1, 'high', 'absent', 'medium', 'ok'],
    [2, 'absent', 'absent', 'absent', 'ok'],
    [3, 'absent', 'high', 'absent', 'ok'],
    [5, null, null, null, 'error'],
    [6, 'low', 'absent', 'absent', 'ok'],
  ];
  const cells = (values: readonly (string | null)[], suffix: string): string =>
    values.map((v, i) => `${level(v)}::VARCHAR AS ${DIMENSIONS[i]}${suffix}`).join(', ');
  const gold = await writeParquetWithDuckDB(
    goldRows.map(([id, ...c]) => `SELECT ${id}::BIGINT AS doc_id, ${cells(c, '')}`).join(' UNION ALL '),
    path.join(dir, 'gold.parquet'),
  );
  const predictions = await writeParquetWithDuckDB(
    predictedRows
      .map(
        ([id, a, b, c, status]) => `SELECT ${id}::BIGINT AS id, ${cells([a, b, c], '__label')}, '${status}' AS status`,
      )
      .join(' UNION ALL '),
    path.join(dir, 'results.parquet'),
  );
  return { gold, predictions };
}

describe('evaluateDimensions', () => {
  it('gives verify-test.R’s figures over every evaluated document’s dimension cells', async () => {
    await withTempDir(async (dir) => {
      const files = await writeFiles(dir);
      const result = await evaluateDimensions({
        ...files,
        idColumn: 'doc_id',
        questions: codebook().questions,
        seed: 3,
        resamples: 200,
      });
      assert.equal(result.documents, 3);
      assert.equal(result.cells, 9);
      assert.equal(result.missingPredictions, 1);
      assert.deepEqual(result.unscored, { error: 1 });
      assert.equal(result.notInGold, 1);
      assert.equal(result.absentLabel, 'absent');
      assert.deepEqual(result.levels, ['low', 'medium', 'high']);
      // 9 cells: document 1 gets hope right and fear (missed) and gratitude (extra) wrong; 2 is all absent on both
      // sides; 3 gets fear's presence right but not its level.
      const expected = {
        dimensionAccuracy: 7 / 9,
        intensityAccuracy: 6 / 9,
        falseNegativeRate: 1 / 9,
        falsePositiveRate: 1 / 9,
        jaccard: (1 / 3 + 0 + 1) / 3, // |G∩P| / |G∪P|; nothing on either side counts 0
        jaccardWithAbsent: ((3 - 2) / (3 + 1) + 1 + 1) / 3, // (D − e) / (D + 1) when e > 0 errors
        hammingLoss: (2 / 3 + 0 + 0) / 3,
      };
      for (const [key, value] of Object.entries(expected)) {
        const ci = result.figures[key as keyof typeof expected];
        assert.ok(Math.abs(ci.estimate - value) < 1e-12, `${key}: ${ci.estimate} vs ${value}`);
        assert.ok(ci.lower <= ci.estimate && ci.estimate <= ci.upper, `${key} inside its interval`);
      }
      assert.deepEqual(
        result.perDimension.map((d) => [d.dimension, d.goldPresent, d.predictedPresent]),
        [
          ['hope', 1, 1],
          ['fear', 2, 1],
          ['gratitude', 0, 1],
        ],
      );
      assert.deepEqual(
        result.perDimension.map((d) => [d.dimensionAccuracy, d.levelAccuracy]),
        [
          [1, 1],
          [2 / 3, 1 / 3],
          [2 / 3, 2 / 3],
        ],
      );
    });
  });

  it('refuses a gold level outside the questions’ labels, naming the column and the document', async () => {
    await withTempDir(async (dir) => {
      const predictions = (await writeFiles(dir)).predictions;
      const gold = await writeParquetWithDuckDB(
        `SELECT 1::BIGINT AS id, 'huge' AS hope, NULL::VARCHAR AS fear, NULL::VARCHAR AS gratitude`,
        path.join(dir, 'bad.parquet'),
      );
      const questions = codebook().questions;
      await assert.rejects(
        evaluateDimensions({ gold, predictions, idColumn: 'id', questions, seed: 1, resamples: 100 }),
        (error: unknown) => isRescaleError(error) && /column "hope", id "1": "huge"/.test(error.message),
      );
    });
  });

  it('refuses questions that are not ordered', async () => {
    await withTempDir(async (dir) => {
      const files = await writeFiles(dir);
      const questions = codebook(false).questions;
      await assert.rejects(
        evaluateDimensions({ ...files, idColumn: 'doc_id', questions, seed: 1, resamples: 100 }),
        (error: unknown) => isRescaleError(error) && /question "hope" is not ordered/.test(error.message),
      );
    });
  });

  it('prints the figures through `rescale evaluate --dimensions`', async () => {
    await withTempDir(async (dir) => {
      const files = await writeFiles(dir);
      const codebookFile = path.join(dir, 'dimensions.yaml');
      await writeFile(codebookFile, JSON.stringify(codebookInput()));
      const cli = await runCli([
        'evaluate',
        '--dimensions',
        '--codebook',
        codebookFile,
        '--predictions',
        files.predictions,
        '--gold',
        files.gold,
        '--id-column',
        'doc_id',
        '--resamples',
        '100',
      ]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /documents evaluated: 3 \(9 cells\)/);
      assert.match(cli.stdout, /accD: dimension accuracy \(present\/absent\) +0\.778 \[/);
      assert.match(cli.stdout, /Hamming loss +0\.222 \[/);
    });
  });
});
