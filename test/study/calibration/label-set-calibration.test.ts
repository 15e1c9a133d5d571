// `rescale calibrate` on multi-label questions: a results file written by DuckDB with a run's column groups (a list
// question, a per_label question and a single-label one), gold label sets as a list column and as a delimited
// string. Routed shares, exact-set and Jaccard figures on the kept and routed documents, expected exact-set accuracy
// and the recommended threshold are worked out here from the rows themselves.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { formatCalibration, runCalibrate, type CalibrateCommandOptions } from '../../../cli/calibrate.js';
import type { CalibrationResult } from '../../../study/calibration/routing-calibration.js';
import { withTempDir } from '../../../scripts/harness/parquet.js';
import { runCli, writeRowsParquet } from '../../helpers/analysis-files.js';

interface Doc {
  readonly id: number;
  readonly topicsGold: string[];
  readonly topics: string[];
  /** The list question's set probability (its __confidence) and unscored mass. */
  readonly setProbability: number;
  readonly unscored: number;
  readonly tagsGold: string[];
  readonly tags: string[];
  /** The per_label question's smallest distance of a P(yes) to its threshold. */
  readonly tagsMargin: number;
  readonly toneGold: string;
  readonly tone: string;
}

const DOCS: readonly Doc[] = [
  {
    id: 1,
    topicsGold: ['a'],
    topics: ['a'],
    setProbability: 0.9,
    unscored: 0.02,
    tagsGold: ['x'],
    tags: ['x'],
    tagsMargin: 0.4,
    toneGold: 'pos',
    tone: 'pos',
  },
  {
    id: 2,
    topicsGold: ['a', 'b'],
    topics: ['a'],
    setProbability: 0.8,
    unscored: 0.3,
    tagsGold: ['x', 'y'],
    tags: ['x', 'y'],
    tagsMargin: 0.35,
    toneGold: 'neg',
    tone: 'pos',
  },
  {
    id: 3,
    topicsGold: ['b'],
    topics: ['b'],
    setProbability: 0.7,
    unscored: 0.1,
    tagsGold: ['y'],
    tags: ['x'],
    tagsMargin: 0.3,
    toneGold: 'pos',
    tone: 'pos',
  },
  {
    id: 4,
    topicsGold: ['c'],
    topics: ['a'],
    setProbability: 0.6,
    unscored: 0.2,
    tagsGold: ['x'],
    tags: ['x', 'y'],
    tagsMargin: 0.1,
    toneGold: 'neg',
    tone: 'neg',
  },
  {
    id: 5,
    topicsGold: ['a', 'c'],
    topics: ['a', 'c'],
    setProbability: 0.5,
    unscored: 0.05,
    tagsGold: ['y'],
    tags: ['y'],
    tagsMargin: 0.05,
    toneGold: 'pos',
    tone: 'neg',
  },
  {
    id: 6,
    topicsGold: ['b', 'c'],
    topics: ['b'],
    setProbability: 0.4,
    unscored: 0.4,
    tagsGold: ['x'],
    tags: ['x'],
    tagsMargin: 0.02,
    toneGold: 'neg',
    tone: 'neg',
  },
];

const FALLBACK = 0.9;

async function files(dir: string): Promise<{ results: string; gold: string; delimited: string }> {
  const results = await writeRowsParquet(
    path.join(dir, 'val.parquet'),
    {
      id: 'BIGINT',
      status: 'VARCHAR',
      topics__labels: 'VARCHAR[]',
      topics__confidence: 'DOUBLE',
      topics__margin: 'DOUBLE',
      topics__set_probability: 'DOUBLE',
      topics__unscored_mass: 'DOUBLE',
      tags__labels: 'VARCHAR[]',
      tags__confidence: 'DOUBLE',
      tags__margin: 'DOUBLE',
      tone__label: 'VARCHAR',
      tone__confidence: 'DOUBLE',
      tone__margin: 'DOUBLE',
      tone__entropy: 'DOUBLE',
    },
    DOCS.map((d) => ({
      id: d.id,
      status: 'ok',
      topics__labels: d.topics,
      topics__confidence: d.setProbability,
      topics__margin: d.setProbability / 2,
      topics__set_probability: d.setProbability,
      topics__unscored_mass: d.unscored,
      tags__labels: d.tags,
      tags__confidence: 0.5 + d.tagsMargin,
      tags__margin: d.tagsMargin,
      tone__label: d.tone,
      tone__confidence: 0.6,
      tone__margin: 0.2,
      tone__entropy: 0.6,
    })),
    {
      'rescale.questions': JSON.stringify([
        { name: 'topics', labels: ['a', 'b', 'c'], type: 'multi_label', format: 'list' },
        { name: 'tags', labels: ['x', 'y'], type: 'multi_label' },
        { name: 'tone', labels: ['pos', 'neg'] },
      ]),
    },
  );
  const gold = await writeRowsParquet(
    path.join(dir, 'gold.parquet'),
    { id: 'BIGINT', topics: 'VARCHAR[]', tags: 'VARCHAR[]', tone: 'VARCHAR' },
    DOCS.map((d) => ({ id: d.id, topics: d.topicsGold, tags: d.tagsGold, tone: d.toneGold })),
  );
  const delimited = await writeRowsParquet(
    path.join(dir, 'gold-delimited.parquet'),
    { id: 'BIGINT', tags: 'VARCHAR' },
    DOCS.map((d) => ({ id: d.id, tags: d.tagsGold.join('; ') })),
  );
  return { results, gold, delimited };
}

// ---- the figures, worked out from the rows ----

const same = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((l) => b.includes(l));
const jaccard = (a: readonly string[], b: readonly string[]): number =>
  a.filter((l) => b.includes(l)).length / new Set([...a, ...b]).size;
const mean = (values: readonly number[]): number => values.reduce((s, v) => s + v, 0) / values.length;

interface Expected {
  routed: number;
  keptExact: number | null;
  keptJaccard: number | null;
  routedExact: number | null;
  routedJaccard: number | null;
  hybrid: number;
}

function expected(
  docs: readonly Doc[],
  keep: (d: Doc) => boolean,
  gold: (d: Doc) => string[],
  local: (d: Doc) => string[],
): Expected {
  const kept = docs.filter(keep);
  const routed = docs.filter((d) => !keep(d));
  const exact = (ds: readonly Doc[]): number | null =>
    ds.length === 0 ? null : mean(ds.map((d) => (same(gold(d), local(d)) ? 1 : 0)));
  const jac = (ds: readonly Doc[]): number | null =>
    ds.length === 0 ? null : mean(ds.map((d) => jaccard(gold(d), local(d))));
  const keptRight = kept.filter((d) => same(gold(d), local(d))).length;
  return {
    routed: routed.length,
    keptExact: exact(kept),
    keptJaccard: jac(kept),
    routedExact: exact(routed),
    routedJaccard: jac(routed),
    hybrid: (keptRight + routed.length * FALLBACK) / docs.length,
  };
}

function close(actual: number | null | undefined, wanted: number | null, what: string): void {
  if (wanted === null) {
    assert.equal(actual ?? null, null, what);
    return;
  }
  assert.ok(
    actual !== null && actual !== undefined && Math.abs(actual - wanted) < 1e-12,
    `${what}: ${actual} vs ${wanted}`,
  );
}

/** Each table row against the figures worked out for its threshold. */
function checkTable(
  result: CalibrationResult,
  keepAt: (t: number) => (d: Doc) => boolean,
  gold: (d: Doc) => string[],
  local: (d: Doc) => string[],
): void {
  const sets = result.labelSets;
  assert.ok(sets !== undefined);
  assert.equal(sets.table.length, result.table.length);
  result.table.forEach((point, i) => {
    const want = expected(DOCS, keepAt(point.threshold), gold, local);
    const row = sets.table[i];
    const at = `t = ${point.threshold}`;
    assert.equal(point.routed, want.routed, at);
    close(point.routedShare, want.routed / DOCS.length, `${at} routed share`);
    close(point.keptAccuracy, want.keptExact, `${at} kept exact-set`);
    close(row?.kept?.exactMatch ?? null, want.keptExact, `${at} kept exact-set (labelSets)`);
    close(row?.kept?.jaccard ?? null, want.keptJaccard, `${at} kept Jaccard`);
    close(row?.routed?.exactMatch ?? null, want.routedExact, `${at} routed exact-set`);
    close(row?.routed?.jaccard ?? null, want.routedJaccard, `${at} routed Jaccard`);
    close(point.hybridAccuracy, want.hybrid, `${at} hybrid exact-set`);
  });
}

/** The cheapest candidate (fewest routed) whose expected exact-set accuracy reaches the target. */
function cheapestReaching(
  scores: readonly number[],
  keepAt: (t: number) => (d: Doc) => boolean,
  gold: (d: Doc) => string[],
  local: (d: Doc) => string[],
  target: number,
): number {
  let best: { t: number; routed: number; hybrid: number } | null = null;
  for (const t of scores) {
    const e = expected(DOCS, keepAt(t), gold, local);
    if (e.hybrid < target) continue;
    if (best === null || e.routed < best.routed || (e.routed === best.routed && e.hybrid > best.hybrid))
      best = { t, routed: e.routed, hybrid: e.hybrid };
  }
  assert.ok(best !== null);
  return best.t;
}

const base = {
  idColumn: 'id',
  fallbackAccuracy: FALLBACK,
  seed: 3,
  resamples: 200,
} as const;

const topicsGold = (d: Doc): string[] => d.topicsGold;
const topicsLocal = (d: Doc): string[] => d.topics;
const tagsGold = (d: Doc): string[] => d.tagsGold;
const tagsLocal = (d: Doc): string[] => d.tags;

describe('rescale calibrate on multi-label questions', () => {
  it('a list question by set probability and by unscored mass: routed shares, kept and routed quality', async () => {
    await withTempDir(async (dir) => {
      const { results, gold } = await files(dir);
      const options: CalibrateCommandOptions = {
        ...base,
        predictions: results,
        gold,
        labelColumn: 'topics',
        question: 'topics',
        rule: 'confidence',
        thresholds: [0.45, 0.65, 0.85],
        targetAccuracy: 0.75,
      };
      const byConfidence = (await runCalibrate(options)) as CalibrationResult;
      assert.equal(byConfidence.kind, 'rescale.calibration');
      assert.equal(byConfidence.question, 'topics');
      assert.equal(byConfidence.documents, DOCS.length);
      close(byConfidence.localAccuracy, 3 / 6, 'local exact-set accuracy');
      close(
        byConfidence.labelSets?.local.jaccard,
        mean(DOCS.map((d) => jaccard(d.topicsGold, d.topics))),
        'local Jaccard',
      );
      const keepConfidence = (t: number) => (d: Doc) => d.setProbability >= t;
      checkTable(byConfidence, keepConfidence, topicsGold, topicsLocal);
      const pick = cheapestReaching(
        [...DOCS.map((d) => d.setProbability), Infinity],
        keepConfidence,
        topicsGold,
        topicsLocal,
        0.75,
      );
      assert.equal(pick, 0.7);
      assert.equal(byConfidence.recommendation.point?.threshold, pick);
      // The table's thresholds route 1, 3 and 5 documents; the pick is added to it.
      assert.deepEqual(
        byConfidence.table.map((p) => [p.threshold, p.routed]),
        [
          [0.45, 1],
          [0.65, 3],
          [0.7, 3],
          [0.85, 5],
        ],
      );

      // Unscored mass: keep when ≤ t; a budget of 3 documents buys the most exact-set accuracy routing ≤ 3.
      const { targetAccuracy: _target, ...withoutTarget } = options;
      const byMass = (await runCalibrate({
        ...withoutTarget,
        rule: 'unscored_mass',
        thresholds: [0.5, 0.25, 0.15],
        budget: 3,
      })) as CalibrationResult;
      const keepMass = (t: number) => (d: Doc) => d.unscored <= t;
      checkTable(byMass, keepMass, topicsGold, topicsLocal);
      let best: { t: number; hybrid: number; routed: number } | null = null;
      for (const t of [...DOCS.map((d) => d.unscored), -Infinity]) {
        const e = expected(DOCS, keepMass(t), topicsGold, topicsLocal);
        if (e.routed > 3) continue;
        if (best === null || e.hybrid > best.hybrid || (e.hybrid === best.hybrid && e.routed < best.routed))
          best = { t, hybrid: e.hybrid, routed: e.routed };
      }
      assert.equal(byMass.recommendation.point?.threshold, best?.t);
      const text = formatCalibration(byMass);
      assert.match(text, /multi-label question \(list form; labels a, b, c; gold a list column\)/);
      assert.match(text, /routing by unscored_mass: a document goes to the fallback unless unscored_mass ≤ t/);
      assert.match(text, /kept exact-set.*kept Jaccard.*routed exact-set.*routed Jaccard.*hybrid exact-set/);
    });
  });

  it('every question: per_label by margin, the single-label one pooled alone; the CLI, delimited gold', async () => {
    await withTempDir(async (dir) => {
      const { results, gold, delimited } = await files(dir);
      const all = await runCalibrate({
        ...base,
        predictions: results,
        gold,
        labelColumn: 'gold',
        rule: 'margin',
        thresholds: [0.03, 0.2, 0.32],
      });
      // --rule applies to every question; the list question has a margin column too, and tone its own.
      if (all.kind !== 'rescale.calibration.questions') throw new Error('not calibrated per question');
      assert.deepEqual(
        all.questions.map((q) => q.question),
        ['topics', 'tags', 'tone'],
      );
      const tags = all.questions[1]?.result as CalibrationResult;
      assert.equal(tags.labelSets?.form, 'per_label');
      const keepMargin = (t: number) => (d: Doc) => d.tagsMargin >= t;
      checkTable(tags, keepMargin, tagsGold, tagsLocal);
      assert.deepEqual(tags.table.map((p) => p.routed).slice(0, 3), [1, 3, 4]);
      // No goal: the highest expected exact-set accuracy, least routing among equals.
      let top: { t: number; hybrid: number } | null = null;
      for (const t of [...DOCS.map((d) => d.tagsMargin).sort((a, b) => a - b), Infinity]) {
        const e = expected(DOCS, keepMargin(t), tagsGold, tagsLocal);
        if (top === null || e.hybrid > top.hybrid) top = { t, hybrid: e.hybrid };
      }
      assert.equal(tags.recommendation.point?.threshold, top?.t);
      // The pooled calibration is the single-label question's alone.
      assert.equal(all.overall?.documents, DOCS.length);
      close(all.overall?.localAccuracy, DOCS.filter((d) => d.tone === d.toneGold).length / DOCS.length, 'tone');
      assert.match(formatCalibration(all), /== all single-label questions pooled \(tone:/);

      // The CLI, gold sets as "x; y" strings: the same calibration as from the list column.
      const json = path.join(dir, 'tags.json');
      const cli = await runCli([
        'calibrate',
        '--predictions',
        results,
        '--gold',
        delimited,
        '--question',
        'tags',
        '--label-column',
        'tags',
        '--truth-separator',
        ';',
        '--rule',
        'margin',
        '--thresholds',
        '0.03,0.2,0.32',
        '--fallback-accuracy',
        String(FALLBACK),
        '--seed',
        '3',
        '--resamples',
        '200',
        '--json',
        json,
      ]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /gold split on ";"/);
      assert.match(cli.stdout, /recommended threshold: margin /);
      const written = JSON.parse(await readFile(json, 'utf8')) as CalibrationResult;
      const strip = (r: CalibrationResult): object => {
        const { gold: _g, labelSets, ...rest } = r;
        return { ...rest, labelSets: { ...labelSets, separator: null } };
      };
      assert.deepEqual(strip(written), JSON.parse(JSON.stringify(strip(tags))));
    });
  });

  it('every question: a multi-label gold column may be <question>__labels, as review export writes it', async () => {
    await withTempDir(async (dir) => {
      const { results, gold } = await files(dir);
      const exported = await writeRowsParquet(
        path.join(dir, 'exported-gold.parquet'),
        { id: 'BIGINT', topics__labels: 'VARCHAR[]', tags__labels: 'VARCHAR[]', tone: 'VARCHAR' },
        DOCS.map((d) => ({ id: d.id, topics__labels: d.topicsGold, tags__labels: d.tagsGold, tone: d.toneGold })),
      );
      const options = { ...base, predictions: results, labelColumn: 'gold', rule: 'margin' as const };
      const named = await runCalibrate({ ...options, gold });
      const suffixed = await runCalibrate({ ...options, gold: exported });
      if (named.kind !== 'rescale.calibration.questions' || suffixed.kind !== 'rescale.calibration.questions')
        throw new Error('not calibrated per question');
      const strip = (r: CalibrationResult): object => {
        const { gold: _g, labelSets, ...rest } = r;
        return labelSets === undefined ? rest : { ...rest, labelSets: { ...labelSets, goldColumn: null } };
      };
      assert.deepEqual(
        suffixed.questions.map((q) => q.result.labelSets?.goldColumn ?? null),
        ['topics__labels', 'tags__labels', null],
      );
      assert.deepEqual(
        suffixed.questions.map((q) => strip(q.result)),
        named.questions.map((q) => strip(q.result)),
      );
      assert.match(formatCalibration(suffixed), /== question topics \(gold column "topics__labels"\)/);
    });
  });

  it('every question: a gold column missing is named with the options that choose another', async () => {
    await withTempDir(async (dir) => {
      const { results, delimited } = await files(dir);
      // --label-column is not read when every question is calibrated: the error names --question with it.
      await assert.rejects(
        runCalibrate({ ...base, predictions: results, gold: delimited, labelColumn: 'tags', rule: 'confidence' }),
        /has no column "topics"; pass --question topics --label-column with the right column name/,
      );
    });
  });

  it('refuses a rule the question has no column for, naming it', async () => {
    await withTempDir(async (dir) => {
      const { results, gold } = await files(dir);
      const one = (over: Partial<CalibrateCommandOptions>): Promise<unknown> =>
        runCalibrate({
          ...base,
          predictions: results,
          gold,
          labelColumn: 'tags',
          question: 'tags',
          rule: 'confidence',
          ...over,
        });
      await assert.rejects(
        one({ rule: 'entropy' }),
        /--rule entropy does not apply to question tags: .*has no entropy; use --rule confidence or margin/,
      );
      await assert.rejects(
        one({ rule: 'unscored_mass' }),
        /--rule unscored_mass does not apply to question tags: .*only list questions/,
      );
    });
  });
});
