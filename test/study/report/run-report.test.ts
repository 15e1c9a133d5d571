// rescale report: a real run (fixture keyword model on TweetEval tweets) with gold labels, a learning curve and a
// calibration, rendered in Debian's headless chromium; and the fallback section from a run with fallback columns.

import assert from 'node:assert/strict';
import { copyFile, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { readTweetEvalSplit, defaultTweetEvalDir } from '../../../cli/demo.js';
import { runLocalMode } from '../../../cli/local-mode.js';
import { runReport } from '../../../cli/report.js';
import { evaluatePredictions } from '../../../study/evaluation/evaluate-predictions.js';
import { writeJsonFile } from '../../../study/json-file.js';
import { readGoldLabels, readPredictions } from '../../../study/evaluation/labelled-predictions.js';
import { calibrateRouting } from '../../../study/calibration/routing-calibration.js';
import { runCli, writeGold, writePredictions } from '../../helpers/analysis-files.js';
import { findChromium, renderPage } from '../../helpers/chromium.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';
import { withTempDir } from '../../../scripts/harness/parquet.js';

const LABELS = ['negative', 'neutral', 'positive'];

let model: string;
before(async () => {
  model = await fixtureModel('keyword');
});

/** 90 TweetEval tweets scored in 3 shards; the corpus doubles as the gold file (column gold). */
async function realRun(dir: string): Promise<{ results: string; gold: string }> {
  const { texts, labels } = await readTweetEvalSplit(defaultTweetEvalDir(), 'sentiment', 'val');
  const gold = await writeGold(
    path.join(dir, 'tweets.parquet'),
    texts.slice(0, 90).map((text, i) => ({ id: i, text, gold: labels[i] ?? null })),
  );
  const codebook = path.join(dir, 'codebook.yaml');
  await writeFile(
    codebook,
    `task: report-test
input: { text_column: text, id_column: id }
labels: [{ name: negative }, { name: neutral }, { name: positive }]
prompt:
  system: Answer with one label.
  template: "Sentiment ({labels}) of: {text}"
model: { path: ${JSON.stringify(model)}, max_document_tokens: 64, threads: 2 }
`,
  );
  const results = path.join(dir, 'results.parquet');
  await runLocalMode({ codebook, input: [gold], output: results, shardRows: 30, env: {} });
  return { results, gold };
}

/** A learning curve from three synthetic prediction files of increasing accuracy. */
async function learningCurve(dir: string): Promise<string> {
  const n = 300;
  const truth = Array.from({ length: n }, (_, i) => LABELS[i % 3] as string);
  const goldFile = await writeGold(
    path.join(dir, 'lc-gold.parquet'),
    truth.map((gold, id) => ({ id, gold })),
  );
  const files = [];
  for (const [k, accuracy] of [0.5, 0.65, 0.8].entries()) {
    files.push(
      await writePredictions(
        path.join(dir, `lc-${k}.parquet`),
        truth.map((g, id) => ({
          id,
          label: (id * 7919) % 100 < accuracy * 100 ? g : (LABELS[(id + 1) % 3] as string),
        })),
        LABELS,
      ),
    );
  }
  const gold = await readGoldLabels(goldFile, { idColumn: 'id', labelColumn: 'gold' });
  const predictions = await Promise.all(files.map((f) => readPredictions(f)));
  const evaluation = evaluatePredictions(gold, predictions, {
    labels: LABELS,
    seed: 2,
    resamples: 200,
    trainingSizes: [0, 100, 1000],
  });
  return writeJsonFile(path.join(dir, 'learning-curve.json'), evaluation);
}

describe('rescale report', () => {
  it('writes one self-contained page that renders in headless chromium', async (t) => {
    await withTempDir(async (dir) => {
      const { results, gold } = await realRun(dir);
      const calibration = calibrateRouting(
        await readGoldLabels(gold, { idColumn: 'id', labelColumn: 'gold' }),
        await readPredictions(results),
        {
          fallback: { kind: 'assumed', accuracy: 0.9 },
          labelCount: 3,
          seed: 1,
          resamples: 200,
          corpusSize: 100_000,
          costPerDocument: 0.0005,
          goal: { targetAccuracy: 0.7 },
        },
      );
      const calibrationFile = await writeJsonFile(path.join(dir, 'calibration.json'), calibration);
      const out = await runReport({
        results,
        gold,
        idColumn: 'id',
        labelColumn: 'gold',
        seed: 1,
        resamples: 200,
        learningCurve: await learningCurve(dir),
        calibration: calibrationFile,
        out: path.join(dir, 'report.html'),
      });
      const html = await readFile(out, 'utf8');
      assert.match(html, /<title>rescale report — report-test<\/title>/);
      for (const id of ['run', 'labels', 'confidence', 'throughput', 'evaluation', 'calibration', 'learning-curve'])
        assert.match(html, new RegExp(`<section id="${id}">`));
      assert.equal((html.match(/<svg /g) ?? []).length >= 7, true, 'one inline SVG per plot');
      // Self-contained: nothing fetched, nothing run.
      assert.doesNotMatch(html, /<script|<link|<img|src=|url\(|href="(?!#)/i);
      // No document text in the page.
      const { texts } = await readTweetEvalSplit(defaultTweetEvalDir(), 'sentiment', 'val');
      for (const text of texts.slice(0, 90))
        if (text.length > 30) assert.ok(!html.includes(text.slice(0, 30)), 'document text leaked into the report');

      const chromium = await findChromium();
      if ('reason' in chromium) {
        t.skip(`headless chromium unavailable: ${chromium.reason}`);
        return;
      }
      const screenshot = path.join(dir, 'report.png');
      const { dom } = await renderPage(chromium.path, out, screenshot);
      assert.match(dom, /<title>rescale report — report-test<\/title>/);
      assert.match(dom, /Agreement with the gold labels/);
      const png = await readFile(screenshot);
      // RESCALE_REPORT_SCREENSHOT=/some/file.png keeps the screenshot to look at.
      const keep = process.env.RESCALE_REPORT_SCREENSHOT;
      if (keep) await copyFile(screenshot, keep);
      assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      assert.ok((await stat(screenshot)).size > 50_000, `screenshot is only ${png.length} bytes: the page looks empty`);
    });
  });

  it('shows routing and cost for a run with fallback columns and an audit file', async () => {
    await withTempDir(async (dir) => {
      const results = await writePredictions(
        path.join(dir, 'hybrid.parquet'),
        Array.from({ length: 40 }, (_, id) => {
          const routed = id < 10;
          return {
            id,
            label: LABELS[id % 3] as string,
            confidence: routed ? 0.4 : 0.9,
            local_label: LABELS[(id + 1) % 3] as string,
            fallback_label: routed && id < 8 ? (LABELS[id % 3] as string) : null,
            fallback_status: routed ? (id < 8 ? 'ok' : id === 8 ? 'fallback_invalid' : 'over_budget') : null,
            source: routed && id < 8 ? 'fallback' : 'local',
          };
        }),
        LABELS,
      );
      const start = Date.parse('2025-01-01T00:00:00Z');
      const audit = Array.from({ length: 8 }, (_, i) =>
        JSON.stringify({
          event: 'call',
          time: new Date(start + (i + 1) * 15_000).toISOString(),
          cost_usd: 0.0015,
          document_id: String(i),
        }),
      );
      audit.push(JSON.stringify({ event: 'skipped', time: new Date(start + 200_000).toISOString(), document_id: '9' }));
      await writeFile(`${results}.fallback-audit.jsonl`, `${audit.join('\n')}\n`);
      await writeFile(
        `${results}.manifest.json`,
        JSON.stringify({
          startedAt: new Date(start).toISOString(),
          endedAt: new Date(start + 240_000).toISOString(),
          codebook: { content: { task: 'hybrid-test' } },
        }),
      );
      const result = await runCli(['report', results, '--out', path.join(dir, 'hybrid.html')]);
      assert.equal(result.code, 0, result.stderr);
      const html = await readFile(path.join(dir, 'hybrid.html'), 'utf8');
      assert.match(html, /<section id="fallback">/);
      assert.match(html, /routed to the fallback<\/th><td>10 \(25\.0%\)/);
      assert.match(html, /final label from the fallback<\/th><td>8 \(20\.0%\)/);
      assert.match(html, /\$0\.0120 for 8 requests; 0 answered from the cache; 1 skipped over budget/);
      assert.match(html, /Fallback cost over time/);
      assert.doesNotMatch(html, /<section id="evaluation">/);
    });
  });

  it('says what to do when the results file is missing', async () => {
    await withTempDir(async (dir) => {
      const result = await runCli(['report', path.join(dir, 'missing.parquet')]);
      assert.equal(result.code, 3);
      assert.match(result.stderr, /missing\.parquet: cannot open it/);
      const noArg = await runCli(['report']);
      assert.equal(noArg.code, 2);
      assert.match(noArg.stderr, /rescale report RESULTS\.parquet/);
    });
  });
});
