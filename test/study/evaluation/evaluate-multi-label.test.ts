// `rescale evaluate` on label sets and on ordered questions, end to end on Parquet written by DuckDB: a list<string>
// gold column or a delimited string, results with a `<question>__labels` list column, the CLI's table and JSON.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseCodebook } from '../../../contracts/codebook.js';
import { isRescaleError } from '../../../contracts/errors.js';
import { runEvaluate } from '../../../cli/evaluate.js';
import type { MultiLabelEvaluationResult } from '../../../study/evaluation/evaluate-multi-label.js';
import type { EvaluationResult } from '../../../study/evaluation/evaluate-predictions.js';
import { krippendorffAlpha } from '../../../study/evaluation/krippendorff-alpha.js';
import { multiLabelMetrics } from '../../../study/evaluation/multi-label-metrics.js';
import { presenceLevelAgreement } from '../../../study/evaluation/ordinal-metrics.js';
import { runCli } from '../../helpers/analysis-files.js';
import { withTempDir, writeParquetWithDuckDB } from '../../../scripts/harness/parquet.js';

const LABELS = ['economy', 'health', 'law', 'science'];
const GOLD: string[][] = [
  ['economy'],
  ['health', 'science'],
  ['law'],
  ['economy', 'law'],
  ['science'],
  ['health'],
  ['economy', 'health', 'law'],
  [],
  ['law'],
  ['science', 'economy'],
];
const PRED: string[][] = [
  ['economy'],
  ['health'],
  ['economy'],
  ['economy', 'law'],
  ['science', 'health'],
  [],
  ['economy', 'health'],
  [],
  ['law'],
  ['science'],
];

const sqlList = (set: readonly string[]): string =>
  set.length === 0 ? '[]::VARCHAR[]' : `[${set.map((l) => `'${l}'`).join(', ')}]`;

async function writeFiles(dir: string, goldAs: 'list' | 'string'): Promise<{ gold: string; results: string }> {
  const goldRows = GOLD.map((set, i) => `(${i + 1}, ${goldAs === 'list' ? sqlList(set) : `'${set.join('; ')}'`})`).join(
    ', ',
  );
  // An unlabelled gold row (null, id 12) and an unscored prediction row (null list, id 11) are left out.
  const extra = goldAs === 'list' ? "['law']" : "'law'";
  const gold = await writeParquetWithDuckDB(
    `SELECT * FROM (VALUES ${goldRows}, (11, ${extra}), (12, NULL)) t(id, topics)`,
    path.join(dir, 'gold.parquet'),
  );
  const resultRows = PRED.map((set, i) => `(${i + 1}::BIGINT, ${sqlList(set)}, 'ok')`).join(', ');
  const results = await writeParquetWithDuckDB(
    `SELECT * FROM (VALUES ${resultRows}, (11::BIGINT, NULL, 'error')) t(id, topics__labels, status)`,
    path.join(dir, 'results.parquet'),
  );
  return { gold, results };
}

const close = (actual: number, expected: number, what: string): void =>
  assert.ok(Math.abs(actual - expected) <= 1e-12, `${what}: expected ${expected}, got ${actual}`);

describe('rescale evaluate on label sets', () => {
  it('evaluates a list<string> gold column against <question>__labels with every multi-label figure', async () => {
    await withTempDir(async (dir) => {
      const { gold, results } = await writeFiles(dir, 'list');
      const result = (await runEvaluate({
        predictions: [results],
        gold,
        idColumn: 'id',
        labelColumn: 'topics',
        seed: 7,
        resamples: 200,
        ordered: false,
        labels: LABELS,
      })) as MultiLabelEvaluationResult;
      assert.equal(result.kind, 'rescale.multi-label-evaluation');
      assert.equal(result.documents, 10);
      const [system] = result.systems;
      assert.ok(system !== undefined);
      assert.equal(system.column, 'topics__labels');
      const expected = multiLabelMetrics(GOLD, PRED, LABELS);
      close(system.metrics.anyOverlapAccuracy?.estimate ?? NaN, expected.anyOverlapAccuracy, 'any-overlap');
      close(system.metrics.anyOverlapAccuracy?.estimate ?? NaN, 7 / 10, 'any-overlap by hand');
      close(system.metrics.exactMatch?.estimate ?? NaN, 4 / 10, 'exact match by hand');
      close(system.metrics.jaccardSamples?.estimate ?? NaN, expected.samples.jaccard, 'jaccard');
      close(system.metrics.hammingLoss?.estimate ?? NaN, expected.hammingLoss, 'hamming');
      close(system.metrics.microF1?.estimate ?? NaN, expected.micro.f1, 'micro f1');
      close(system.metrics.alphaMasi?.estimate ?? NaN, expected.alphaMasi, 'alpha masi');
      assert.deepEqual(
        system.perLabel.map((c) => [c.label, c.support, c.predicted]),
        expected.perLabel.map((c) => [c.label, c.support, c.predicted]),
      );
      const ci = system.metrics.macroF1;
      assert.ok(ci !== undefined && ci.lower <= ci.estimate && ci.estimate <= ci.upper);
      assert.equal(system.coverage.unscored.error, 1);
      assert.equal(result.gold.unlabelled, 1);
    });
  });

  it('splits a delimited gold string with --truth-separator: the same figures in the table and the JSON', async () => {
    await withTempDir(async (dir) => {
      const { gold, results } = await writeFiles(dir, 'string');
      const json = path.join(dir, 'evaluation.json');
      const args = ['evaluate', '--predictions', results, '--gold', gold, '--label-column', 'topics'];
      const cli = await runCli([...args, '--truth-separator', ';', '--labels', LABELS.join(','), '--json', json]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /any-overlap accuracy \(paper\)\s+0\.700 \[/);
      assert.match(cli.stdout, /exact set match\s+0\.400 \[/);
      assert.match(cli.stdout, /Krippendorff's alpha \(MASI\)/);
      assert.match(cli.stdout, /results\.parquet: per label/);
      const written = JSON.parse(await readFile(json, 'utf8')) as MultiLabelEvaluationResult;
      assert.equal(written.kind, 'rescale.multi-label-evaluation');
      assert.equal(written.gold.separator, ';');
      const expected = multiLabelMetrics(GOLD, PRED, LABELS);
      close(written.systems[0]?.metrics.weightedF1?.estimate ?? NaN, expected.weighted.f1, 'weighted f1');

      // Without the separator the string column is refused, naming the column and the option to pass.
      const refused = await runCli([...args, '--multi-label']);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /column "topics", row 0.*--truth-separator/s);
    });
  });

  it('names the file, column, id and label when a predicted label is not in the codebook question', async () => {
    await withTempDir(async (dir) => {
      const { gold, results } = await writeFiles(dir, 'list');
      const codebook = parseCodebook(
        {
          task: 'topics',
          questions: [
            { name: 'topics', type: 'multi_label', labels: ['economy', 'health', 'law'].map((name) => ({ name })) },
          ],
          prompt: { template: '{text}' },
          model: { path: 'm.gguf' },
        },
        { source: 'cb.yaml' },
      );
      await assert.rejects(
        runEvaluate({
          predictions: [results],
          gold,
          idColumn: 'id',
          labelColumn: 'topics',
          seed: 1,
          resamples: 100,
          ordered: false,
          codebook,
        }),
        (e: unknown) =>
          isRescaleError(e, 'INPUT_INVALID') && /column "topics", id 2, holds the label "science"/.test(e.message),
      );
    });
  });
});

describe('rescale evaluate on an ordered question', () => {
  it('adds interval alpha, dimension and level accuracy for a codebook question with ordered: true', async () => {
    await withTempDir(async (dir) => {
      const levels = ['absent', 'low', 'medium', 'high'];
      const goldLevels = ['absent', 'low', 'high', 'medium', 'absent', 'high', 'low', 'absent'];
      const predLevels = ['absent', 'medium', 'high', 'absent', 'low', 'high', 'low', 'absent'];
      const rows = (values: string[]): string => values.map((v, i) => `(${i + 1}, '${v}')`).join(', ');
      const gold = await writeParquetWithDuckDB(
        `SELECT * FROM (VALUES ${rows(goldLevels)}) t(id, gold)`,
        path.join(dir, 'gold.parquet'),
      );
      const results = await writeParquetWithDuckDB(
        `SELECT * FROM (VALUES ${rows(predLevels)}) t(id, label)`,
        path.join(dir, 'results.parquet'),
      );
      const codebook = parseCodebook(
        {
          task: 'hope',
          labels: levels.map((name) => ({ name })),
          ordered: true,
          prompt: { template: '{text}' },
          model: { path: 'm.gguf' },
        },
        { source: 'cb.yaml' },
      );
      const result = (await runEvaluate({
        predictions: [results],
        gold,
        idColumn: 'id',
        labelColumn: 'gold',
        seed: 3,
        resamples: 200,
        ordered: false,
        codebook,
        absentLabel: 'absent',
      })) as EvaluationResult;
      assert.equal(result.ordered, true);
      assert.deepEqual(result.labels, levels);
      const s = result.systems[0];
      assert.ok(s !== undefined);
      const code = (v: string): number => levels.indexOf(v);
      close(
        s.alphaInterval?.estimate ?? NaN,
        krippendorffAlpha([goldLevels.map(code), predLevels.map(code)], { level: 'interval' }).alpha,
        'interval alpha',
      );
      const presence = presenceLevelAgreement(goldLevels.map(code), predLevels.map(code), 0);
      close(s.dimensionAccuracy?.estimate ?? NaN, presence.dimensionAccuracy, 'dimension accuracy');
      close(s.dimensionAccuracy?.estimate ?? NaN, 6 / 8, 'dimension accuracy by hand');
      close(s.intensityGivenPresent?.estimate ?? NaN, 3 / 4, 'level accuracy where both present by hand');
      close(s.accuracy.estimate, presence.intensityAccuracy, "the paper's accI is accuracy for one question");
    });
  });

  it('reads a multi-question results file: --question picks <question>__label and the question labels', async () => {
    await withTempDir(async (dir) => {
      const rows = (values: string[]): string => values.map((v, i) => `(${i + 1}, '${v}')`).join(', ');
      const gold = await writeParquetWithDuckDB(
        `SELECT * FROM (VALUES ${rows(['low', 'high', 'low', 'medium'])}) t(id, gold)`,
        path.join(dir, 'gold.parquet'),
      );
      const results = await writeParquetWithDuckDB(
        `SELECT id, a AS hope__label, 'x' AS topic__label FROM (VALUES ${rows(['low', 'high', 'medium', 'medium'])}) ` +
          't(id, a)',
        path.join(dir, 'results.parquet'),
      );
      const codebook = parseCodebook(
        {
          task: 'two',
          questions: [
            { name: 'topic', labels: [{ name: 'x' }, { name: 'y' }] },
            { name: 'hope', labels: ['low', 'medium', 'high'].map((name) => ({ name })), ordered: true },
          ],
          prompt: { template: '{text}' },
          model: { path: 'm.gguf' },
        },
        { source: 'cb.yaml' },
      );
      const result = (await runEvaluate({
        predictions: [results],
        gold,
        idColumn: 'id',
        labelColumn: 'gold',
        seed: 2,
        resamples: 100,
        ordered: false,
        codebook,
        question: 'hope',
      })) as EvaluationResult;
      assert.deepEqual(result.labels, ['low', 'medium', 'high']);
      assert.equal(result.ordered, true);
      close(result.systems[0]?.accuracy.estimate ?? NaN, 3 / 4, 'accuracy');
    });
  });
});
