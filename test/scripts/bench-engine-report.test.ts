// The result table of `npm run bench:engine`: rates come from sums over rounds, ratios are also given per round,
// and the duplicates corpus is a seeded, exact-copy mix of the slice it is made from.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  best,
  markdownTable,
  median,
  pairedRatio,
  pairedRatioLines,
  ratio,
  ratioLines,
  summarise,
  withDuplicates,
  type PartRun,
} from '../../scripts/bench-engine-report.js';

function run(part: string, parallel: number, round: number, documents: number, seconds: number): PartRun {
  return {
    part,
    build: part.startsWith('engine') ? 'localBuild' : 'bundled source, cpu',
    corpus: 'unique',
    round,
    parallel,
    documents,
    seconds,
    tokensEvaluated: documents * (part.startsWith('engine') ? 224 : 214),
    peakRssMB: 100 + round,
  };
}

describe('summarise', () => {
  it('takes docs/s and tokens/s from the sums over rounds, not a mean of per-round rates', () => {
    const [row] = summarise([run('engine serial', 1, 0, 80, 10), run('engine serial', 1, 1, 80, 30)]);
    assert.equal(row?.rounds, 2);
    assert.equal(row?.documentsPerSecond, 160 / 40);
    assert.equal(row?.tokensPerDocument, 224);
    assert.equal(row?.tokensPerSecond, (160 * 224) / 40);
    assert.deepEqual(row?.roundDocumentsPerSecond, [8, 80 / 30]);
    assert.equal(row?.peakRssMB, 101);
  });

  it('keeps each slot count of llama-server on its own row', () => {
    const rows = summarise([run('llama-server', 1, 0, 80, 10), run('llama-server', 4, 0, 80, 20)]);
    assert.deepEqual(
      rows.map((r) => r.parallel),
      [1, 4],
    );
    assert.equal(best(rows, (r) => r.part === 'llama-server')?.parallel, 1);
  });
});

describe('ratio', () => {
  it('compares two parts side by side, overall and in each round, against its target', () => {
    const rows = summarise([
      run('engine serial', 1, 0, 80, 10),
      run('llama-server', 1, 0, 80, 8),
      run('engine serial', 1, 1, 80, 12),
      run('llama-server', 1, 1, 80, 12),
    ]);
    const r = ratio('engine ÷ server', rows[0]!, rows[1]!, 'documentsPerSecond', 1);
    assert.equal(r.value, 20 / 22);
    assert.deepEqual(r.perRound, [0.8, 1]);
    assert.equal(r.met, false);
    assert.match(ratioLines([r])[0] ?? '', /0\.91×.*target ≥ 1\.00×: missed; per round 0\.80 \/ 1\.00/);
  });

  it('compares token rates with each part’s own tokens per document', () => {
    const rows = summarise([run('engine serial', 1, 0, 80, 10), run('llama-server', 1, 0, 80, 10)]);
    const r = ratio('tokens', rows[0]!, rows[1]!, 'tokensPerSecond', 0.95);
    assert.equal(r.value, 224 / 214);
    assert.equal(r.perRound[0], 224 / 214);
    assert.equal(r.met, true);
  });
});

describe('markdownTable', () => {
  it('writes one row per part with its rounds', () => {
    const lines = markdownTable(summarise([run('llama-server', 8, 0, 80, 16), run('llama-server', 8, 1, 80, 20)]));
    assert.equal(lines.length, 3);
    assert.equal(
      lines[2],
      '| unique | llama-server | 8 | bundled source, cpu | 4.44 | 214 | 951 | 101 | 5.00 / 4.00 |',
    );
  });
});

describe('withDuplicates', () => {
  it('replaces the given share of a slice by exact copies of its other items, the same way for the same seed', () => {
    const items = Array.from({ length: 80 }, (_, i) => i);
    const mixed = withDuplicates(items, 0.3, 1);
    assert.equal(mixed.length, 80);
    assert.equal(new Set(mixed).size, 56);
    assert.ok(mixed.every((i) => i < 56));
    assert.deepEqual(withDuplicates(items, 0.3, 1), mixed);
    assert.notDeepEqual(withDuplicates(items, 0.3, 2), mixed);
  });

  it('rejects a share outside [0, 1), naming the option', () => {
    assert.throws(() => withDuplicates([1, 2], 1, 1), /--duplicates 1: expected a share in \[0, 1\)/);
  });
});

describe('pairedRatio', () => {
  const engine = { match: (r: PartRun) => r.part === 'engine serial', label: 'engine' };
  const server = { match: (r: PartRun) => r.part === 'llama-server', label: 'server' };

  it('takes the ratio within each block and judges the target by the median over blocks', () => {
    const blocks = [
      [run('engine serial', 1, 0, 40, 4), run('llama-server', 1, 0, 40, 5)], // 1.25
      [run('llama-server', 1, 1, 40, 3), run('engine serial', 1, 1, 40, 4)], // 0.75: a slow spell for the engine
      [run('engine serial', 1, 2, 40, 4), run('llama-server', 1, 2, 40, 4.4)], // 1.1
    ];
    const r = pairedRatio('engine ÷ server', blocks, engine, server, 'documentsPerSecond', 1);
    assert.deepEqual(
      r.perBlock.map((x) => Number(x.toFixed(4))),
      [1.25, 0.75, 1.1],
    );
    assert.equal(r.median.toFixed(4), '1.1000');
    assert.equal(r.min, 0.75);
    assert.equal(r.max, 1.25);
    assert.equal(r.blocksMet, 2);
    assert.equal(r.met, true);
    const [line] = pairedRatioLines([r]);
    assert.match(line ?? '', /median \*\*1\.10×\*\* over 3 blocks \(target ≥ 1\.00×: met; 2 of 3 blocks/);
  });

  it('compares token rates when asked, and leaves a block without both parts out of the median', () => {
    const blocks = [
      [run('engine serial', 1, 0, 40, 4), run('llama-server', 1, 0, 40, 4)],
      [run('engine serial', 1, 1, 40, 4)],
    ];
    const r = pairedRatio('tokens', blocks, engine, server, 'tokensPerSecond', 0.95);
    assert.equal(r.perBlock[0], 224 / 214);
    assert.ok(Number.isNaN(r.perBlock[1]));
    assert.equal(r.median, 224 / 214);
    assert.equal(r.blocksMet, 1);
  });

  it('gives the median of an even count as the mean of the middle two', () => {
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.ok(Number.isNaN(median([NaN])));
  });
});
