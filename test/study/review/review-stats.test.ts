import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it, mock } from 'node:test';

import { readCrowdFolder, type CrowdFolder } from '../../../study/review/crowd-folder.js';
import { formatReviewStats, reviewStats, type ReviewStats } from '../../../study/review/review-stats.js';
import { ReviewStore, type DecisionKind } from '../../../study/review/review-store.js';
import Database from 'better-sqlite3';
import { runReport } from '../../../cli/report.js';
import { evaluateReview, formatReviewEvaluation } from '../../../study/review/review-study.js';
import { CLI, runCli, writeGold, writePredictions } from '../../helpers/analysis-files.js';
import { writeCrowdFolder } from '../../helpers/crowd-folder.js';

/** Cohen's kappa written out from its definition, (p_o − p_e) / (1 − p_e). */
function kappa(a: readonly string[], b: readonly string[]): number {
  const n = a.length;
  const observed = a.filter((x, i) => x === b[i]).length / n;
  let expected = 0;
  for (const c of new Set([...a, ...b]))
    expected += (a.filter((x) => x === c).length / n) * (b.filter((x) => x === c).length / n);
  return (observed - expected) / (1 - expected);
}

/** Nominal alpha for two coders with every unit coded by both: 1 − D_o / D_e over the pooled values. */
function alpha(a: readonly string[], b: readonly string[]): number {
  const values = [...a, ...b];
  const n = values.length;
  const observed = (2 * a.filter((x, i) => x !== b[i]).length) / n;
  const counts = [...new Set(values)].map((c) => values.filter((v) => v === c).length);
  const expected = (n * n - counts.reduce((s, c) => s + c * c, 0)) / (n * (n - 1));
  return 1 - observed / expected;
}

describe('review stats', () => {
  let dir: string;
  let crowd: CrowdFolder;
  let db: string;
  let stats: ReviewStats;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'rescale-review-stats-'));
    // Six documents. keyword: neg neu pos neg neu pos; gpt: neg pos pos neu (failed) neg.
    await writeCrowdFolder(path.join(dir, 'crowd'), 6);
    crowd = await readCrowdFolder(path.join(dir, 'crowd'));
    db = path.join(dir, 'review.db');
    const store = ReviewStore.open(db);
    mock.timers.enable({ apis: ['Date'], now: Date.parse('2026-03-01T09:00:00Z') });
    try {
      const ana = store.addReviewer('ana', 'coder').reviewer.id;
      const ben = store.addReviewer('ben', 'coder').reviewer.id;
      const cleo = store.addReviewer('cleo', 'adjudicator').reviewer.id;
      // With two coders and --overlap 1 both coders get every document.
      store.assign(
        crowd.documents.map((d) => d.id),
        1,
        3,
      );
      let key = 0;
      const decide = (reviewerId: number, doc: number, decision: DecisionKind, label: string, after = 0): void => {
        mock.timers.tick(after * 1000);
        const document = crowd.documents[doc]?.id as string;
        store.decide({ reviewerId, key: `k${key++}`, document, question: 'sentiment', decision, labels: [label] });
      };
      decide(ana, 0, 'accept', 'negative');
      decide(ana, 1, 'pick', 'positive', 10);
      decide(ana, 2, 'accept', 'positive', 20);
      decide(ana, 3, 'accept', 'negative', 30);
      mock.timers.tick(5000);
      store.undoLast(ana, `k${key++}`);
      decide(ana, 3, 'pick', 'neutral', 40);
      decide(ana, 4, 'accept', 'neutral', 700); // a break
      decide(ana, 5, 'reject', 'positive', 50);

      decide(ben, 0, 'accept', 'negative', 12);
      decide(ben, 1, 'accept', 'neutral', 12);
      decide(ben, 2, 'accept', 'positive', 12);
      decide(ben, 3, 'pick', 'neutral', 12);
      decide(ben, 4, 'pick', 'positive', 12);
      decide(ben, 5, 'reject', 'positive', 12);

      decide(cleo, 1, 'pick', 'positive', 100);
      decide(cleo, 4, 'pick', 'neutral', 60);
    } finally {
      mock.timers.reset();
    }
    try {
      stats = reviewStats(crowd, store);
    } finally {
      store.close();
    }
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('counts a proposal accepted when a decision in force verifies exactly its labels', () => {
    // keyword: ana 3/6, ben 3/6, cleo 1/2; gpt (document 5 failed, left out): ana 4/5, ben 3/5, cleo 1/1.
    const [gpt, keyword] = stats.acceptance;
    assert.deepEqual(
      stats.acceptance.map((a) => [a.labeller, a.accepted, a.reviewed]),
      [
        ['gpt', 8, 11],
        ['keyword', 7, 14],
      ],
    );
    assert.equal(keyword?.rate, 0.5);
    assert.deepEqual(
      keyword?.byLabel.map((l) => [l.label, l.accepted, l.reviewed]),
      [
        ['negative', 2, 4],
        ['neutral', 3, 6],
        ['positive', 2, 4],
      ],
    );
    assert.deepEqual(
      gpt?.byLabel.map((l) => [l.label, l.accepted, l.reviewed, l.rate]),
      [
        ['negative', 2, 4, 0.5],
        ['neutral', 2, 2, 1],
        ['positive', 4, 5, 0.8],
      ],
    );
  });

  it("scores each labeller's proposals against the verified labels and names the closest", () => {
    // Verified: negative, positive (adjudicated), positive, neutral, neutral (adjudicated); document 6 rejected.
    const gold = ['negative', 'positive', 'positive', 'neutral', 'neutral'];
    const keyword = ['negative', 'neutral', 'positive', 'negative', 'neutral'];
    const [q] = stats.agreement;
    assert.equal(q?.question, 'sentiment');
    assert.equal(q?.verified, 5);
    assert.equal(q?.closest, 'gpt');
    const byName = new Map(q?.labellers.map((l) => [l.labeller, l]));
    assert.equal(byName.get('keyword')?.n, 5);
    assert.equal(byName.get('keyword')?.accuracy, 0.6);
    assert.ok(Math.abs((byName.get('keyword')?.kappa as number) - kappa(gold, keyword)) < 1e-12);
    assert.ok(Math.abs((byName.get('keyword')?.kappa as number) - 0.28 / 0.68) < 1e-12);
    assert.deepEqual(
      [byName.get('gpt')?.n, byName.get('gpt')?.accuracy, byName.get('gpt')?.kappa, byName.get('gpt')?.failed],
      [4, 1, 1, 1],
    );
  });

  it("measures the two coders' agreement on the overlap documents with Krippendorff's alpha", () => {
    const ana = ['negative', 'positive', 'positive', 'neutral', 'neutral', '(rejected)'];
    const ben = ['negative', 'neutral', 'positive', 'neutral', 'positive', '(rejected)'];
    const [r] = stats.reliability;
    assert.equal(r?.n, 6);
    assert.equal(r?.agreement, 4 / 6);
    assert.ok(Math.abs((r?.alpha as number) - alpha(ana, ben)) < 1e-12);
    assert.ok(Math.abs((r?.alpha as number) - 60 / 104) < 1e-12);
  });

  it('reports seconds between consecutive decisions per reviewer, leaving out breaks and undos', () => {
    assert.equal(stats.time.breakSeconds, 600);
    assert.deepEqual(
      stats.time.reviewers.map((t) => [t.reviewer, t.decisions, t.gaps, t.breaks, t.medianSeconds, t.p90Seconds]),
      [
        // ana's gaps: 10 20 30 45 50 (the undo sits inside the 45), one 700 s break.
        ['ana', 7, 5, 1, 30, 48],
        ['ben', 6, 5, 0, 12, 12],
        ['cleo', 2, 1, 0, 60, 60],
      ],
    );
  });

  it('prints the tables and writes the same figures as JSON from the command line', async () => {
    const json = path.join(dir, 'stats.json');
    const out = spawnSync(
      process.execPath,
      ['--import', 'tsx', CLI, 'review', 'stats', '--crowd', crowd.dir, '--db', db, '--json', json],
      { encoding: 'utf8' },
    );
    assert.equal(out.status, 0, out.stderr);
    assert.equal(out.stdout, formatReviewStats(stats));
    assert.match(out.stdout, /^ {2}keyword +\(all\) +\(all\) +7 +14 +0\.500$/m);
    assert.match(out.stdout, /^ {2}sentiment +gpt +4 +1\.000 +1\.000 +1 +\*$/m);
    assert.match(out.stdout, /^ {2}ana +7 +5 +1 +30\.0 +48\.0$/m);
    assert.match(out.stdout, /gaps over 600 s between decisions are breaks/);
    assert.deepEqual(JSON.parse(await readFile(json, 'utf8')), JSON.parse(JSON.stringify(stats)));
  });

  it("adds Cohen's kappa per pair of coders, acceptance per label over all labellers and pooled decision times", () => {
    // The pair ana & ben on the six overlap documents (values as in the alpha test): p_o = 4/6; both have
    // negative 1, neutral 2, positive 2, rejected 1, so p_e = (1 + 4 + 4 + 1) / 36 and kappa = (24 − 10) / (36 − 10).
    const [r] = stats.reliability;
    assert.deepEqual(
      r?.pairs.map((p) => [p.coders, p.n, p.agreement]),
      [[['ana', 'ben'], 6, 4 / 6]],
    );
    assert.ok(Math.abs((r?.pairs[0]?.kappa as number) - 14 / 26) < 1e-12);
    assert.ok(
      Math.abs(
        (r?.pairs[0]?.kappa as number) -
          kappa(
            ['negative', 'positive', 'positive', 'neutral', 'neutral', '(rejected)'],
            ['negative', 'neutral', 'positive', 'neutral', 'positive', '(rejected)'],
          ),
      ) < 1e-12,
    );
    // keyword + gpt per label: negative 2/4 + 2/4, neutral 3/6 + 2/2, positive 2/4 + 4/5.
    assert.deepEqual(
      stats.acceptanceByLabel.map((l) => [l.question, l.label, l.accepted, l.reviewed]),
      [
        ['sentiment', 'negative', 4, 8],
        ['sentiment', 'neutral', 5, 8],
        ['sentiment', 'positive', 6, 9],
      ],
    );
    // Pooled gaps 10 12 12 12 12 12 20 30 45 50 60: median the 6th (12), p90 at position 9 of 0..10 (50).
    assert.deepEqual(stats.time.all, {
      reviewer: '(all)',
      decisions: 15,
      gaps: 11,
      breaks: 1,
      medianSeconds: 12,
      p90Seconds: 50,
    });
    assert.deepEqual(stats.summary, {
      documents: 6,
      reviewed: 6,
      overlap: 6,
      decisions: 14,
      coders: 2,
      adjudicators: 1,
    });
  });

  it('rescale evaluate --review STUDY prints the review tables and writes them as JSON', async () => {
    const json = path.join(dir, 'review-evaluation.json');
    const out = await runCli(['evaluate', '--review', dir, '--json', json]);
    assert.equal(out.code, 0, out.stderr);
    const evaluation = await evaluateReview(dir);
    assert.equal(evaluation.db, db);
    assert.equal(evaluation.crowd, crowd.dir);
    assert.deepEqual(
      { ...evaluation, kind: undefined, version: undefined, db: undefined, crowd: undefined },
      {
        ...stats,
        kind: undefined,
        version: undefined,
        db: undefined,
        crowd: undefined,
      },
    );
    assert.equal(out.stdout, `${formatReviewEvaluation(evaluation)}wrote ${json}\n`);
    assert.match(out.stdout, /^ {2}sentiment +ana & ben +6 +0\.667 +- +0\.538$/m);
    assert.match(out.stdout, /^ {2}\(all\) +sentiment +positive +6 +9 +0\.667$/m);
    assert.deepEqual(JSON.parse(await readFile(json, 'utf8')), JSON.parse(JSON.stringify(evaluation)));
  });

  it('evaluate --review beside --predictions adds the review to the JSON, and report --review renders it', async () => {
    const labels = ['negative', 'neutral', 'positive'];
    const gold = await writeGold(
      path.join(dir, 'gold.parquet'),
      labels.map((g, id) => ({ id, gold: g })),
    );
    const results = await writePredictions(
      path.join(dir, 'results.parquet'),
      labels.map((label, id) => ({ id, label, confidence: 0.9 })),
      labels,
    );
    const json = path.join(dir, 'evaluation.json');
    const evaluated = await runCli([
      'evaluate',
      '--predictions',
      results,
      '--gold',
      gold,
      '--resamples',
      '100',
      '--review',
      db,
      '--json',
      json,
    ]);
    assert.equal(evaluated.code, 0, evaluated.stderr);
    assert.match(evaluated.stdout, /accuracy +1\.000/);
    assert.match(evaluated.stdout, /human review: .*review\.db/);
    const written = JSON.parse(await readFile(json, 'utf8')) as { kind: string; review: { kind: string } };
    assert.equal(written.kind, 'rescale.evaluation');
    assert.equal(written.review.kind, 'rescale.review-evaluation');

    const html = path.join(dir, 'report.html');
    const reported = await runCli(['report', results, '--review', json, '--out', html]);
    assert.equal(reported.code, 0, reported.stderr);
    const page = await readFile(html, 'utf8');
    const section = /<section id="review">.*?<\/section>/s.exec(page)?.[0] ?? '';
    assert.match(section, /<h2>Human review<\/h2>/);
    assert.match(section, /6 of 6 crowd documents reviewed/);
    assert.match(
      section,
      /<th scope="row">sentiment<\/th><td>ana &amp; ben<\/td><td>6<\/td><td>0\.667<\/td><td><\/td><td>0\.538<\/td>/,
    );
    assert.match(section, /<td>gpt<\/td><td>4<\/td><td>1\.000<\/td><td>1\.000<\/td><td>1<\/td><td>closest<\/td>/);
    assert.match(section, /<td>0\.667 \(6\/9\)<\/td><td>0\.800 \(4\/5\)<\/td><td>0\.500 \(2\/4\)<\/td>/);
    assert.match(
      section,
      /<th scope="row">all reviewers<\/th><td>15<\/td><td>11<\/td><td>1<\/td><td>12\.0<\/td><td>50\.0<\/td>/,
    );
    assert.doesNotMatch(section, /Tweet number/, 'no document text');

    // The study itself gives the same section as evaluate's JSON.
    const direct = path.join(dir, 'direct.html');
    await runReport({
      results,
      review: dir,
      idColumn: 'id',
      labelColumn: 'gold',
      seed: 1,
      resamples: 100,
      out: direct,
    });
    const again = /<section id="review">.*?<\/section>/s.exec(await readFile(direct, 'utf8'))?.[0];
    assert.equal(again, section);
  });

  it('names what is wrong with a --review that is not a review study', async () => {
    await assert.rejects(
      evaluateReview(path.join(dir, 'absent')),
      /--review .*absent does not exist; pass the study folder/,
    );
    const empty = path.join(dir, 'empty');
    await mkdir(empty, { recursive: true });
    await assert.rejects(evaluateReview(empty), /--review .*empty is not a review study: it has no review\.db/);
    const lone = path.join(empty, 'other.db');
    const foreign = new Database(lone);
    foreign.exec('CREATE TABLE t (x)');
    foreign.close();
    await assert.rejects(evaluateReview(lone), /no crowd folder at .*empty\/crowd.*pass --crowd DIR/);
    await assert.rejects(evaluateReview(lone, crowd.dir), /is an SQLite file but not a review database/);
    const text = path.join(empty, 'notes.db');
    await writeFile(text, 'not a database at all, just some text that is long enough to be read as a header');
    await assert.rejects(
      evaluateReview(text, crowd.dir),
      /--review .*notes\.db: cannot open it as the review database/,
    );
    const small = await writeCrowdFolder(path.join(dir, 'small-crowd'), 2);
    await assert.rejects(evaluateReview(db, small.dir), /reviews document "doc-00[3-6]", which the crowd folder/);
    const bad = await runCli(['report', 'results.parquet', '--crowd', crowd.dir]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--crowd applies with --review/);
  });
});

describe('review stats ordering', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'rescale-review-order-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('orders the per-label rows by code unit, the same under every locale', async () => {
    // "Topics" sorts before "sentiment" by code unit; a locale's collation (en: s before T) would put it after.
    await writeCrowdFolder(path.join(dir, 'crowd'), 2, { topics: true, topicsName: 'Topics' });
    const crowd = await readCrowdFolder(path.join(dir, 'crowd'));
    const store = ReviewStore.open(path.join(dir, 'review.db'));
    try {
      const ana = store.addReviewer('ana', 'coder').reviewer.id;
      store.assign(
        crowd.documents.map((d) => d.id),
        0,
        3,
      );
      const document = crowd.documents[0]?.id as string;
      store.decide({
        reviewerId: ana,
        key: 'k0',
        document,
        question: 'sentiment',
        decision: 'accept',
        labels: ['negative'],
      });
      store.decide({
        reviewerId: ana,
        key: 'k1',
        document,
        question: 'Topics',
        decision: 'accept',
        labels: ['service'],
      });
      const stats = reviewStats(crowd, store);
      const rows = (list: readonly { question: string; label: string }[]): string[] =>
        list.map((l) => `${l.question}/${l.label}`);
      assert.deepEqual(rows(stats.acceptanceByLabel), ['Topics/service', 'sentiment/negative']);
      const keyword = stats.acceptance.find((a) => a.labeller === 'keyword');
      assert.deepEqual(rows(keyword?.byLabel ?? []), ['Topics/service', 'sentiment/negative']);
    } finally {
      store.close();
    }
  });
});
