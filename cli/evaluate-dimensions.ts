// `rescale evaluate --dimensions`: the printed form of a dimension evaluation
// (study/evaluation/evaluate-dimensions.ts): verify-test.R's figures with their intervals, then accuracy per dimension.

import type { DimensionEvaluationResult } from '../study/evaluation/evaluate-dimensions.js';
import { fixed, formatTable, percent, withInterval } from '../study/text-table.js';

const ROWS: readonly (readonly [keyof DimensionEvaluationResult['figures'], string])[] = [
  ['dimensionAccuracy', 'accD: dimension accuracy (present/absent)'],
  ['intensityAccuracy', 'accI: level accuracy (absent a level)'],
  ['falseNegativeRate', 'FN: present in gold, absent predicted'],
  ['falsePositiveRate', 'FP: absent in gold, present predicted'],
  ['jaccard', 'jac: Jaccard over present dimensions'],
  ['jaccardWithAbsent', 'jac2: Jaccard with absent cells'],
  ['hammingLoss', 'Hamming loss'],
];

export function formatDimensionEvaluation(result: DimensionEvaluationResult): string {
  const { bootstrap } = result;
  const out: string[] = [];
  out.push(
    `gold: ${result.gold.file} (id "${result.gold.idColumn}", one column per dimension, ${result.gold.rows} rows)`,
  );
  out.push(
    `dimensions: ${result.dimensions.length}; levels: ${result.absentLabel} (not present) < ` +
      result.levels.join(' < '),
  );
  out.push(
    `documents evaluated: ${result.documents} (${result.cells} cells); ${percent(bootstrap.confidence, 0)} CIs from ` +
      `${bootstrap.resamples} percentile bootstrap resamples over documents, seed ${bootstrap.seed}`,
  );
  if (result.missingPredictions > 0)
    out.push(`note: ${result.missingPredictions} gold documents have no row in ${result.predictions.file}`);
  for (const [status, count] of Object.entries(result.unscored))
    out.push(`note: ${count} gold documents left out: some dimension not scored (status ${status})`);
  if (result.notInGold > 0) out.push(`note: ${result.notInGold} result rows have no gold row`);
  out.push(
    '',
    formatTable(
      ['figure', 'estimate [95% CI]'],
      ROWS.map(([key, name]) => [name, withInterval(result.figures[key])]),
    ),
  );
  out.push(
    '',
    'per dimension:',
    formatTable(
      ['dimension', 'gold present', 'predicted present', 'accD', 'accI'],
      result.perDimension.map((d) => [
        d.dimension,
        String(d.goldPresent),
        String(d.predictedPresent),
        fixed(d.dimensionAccuracy),
        fixed(d.levelAccuracy),
      ]),
    ),
  );
  return out.join('\n') + '\n';
}
