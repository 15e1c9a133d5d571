import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { readCrowdFolder, type CrowdFolder } from '../../../study/review/crowd-folder.js';
import { exportReview, type ReviewExportManifest } from '../../../study/review/review-export.js';
import { ReviewState } from '../../../study/review/review-state.js';
import { ReviewStore } from '../../../study/review/review-store.js';
import { CLI } from '../../helpers/analysis-files.js';
import { writeCrowdFolder } from '../../helpers/crowd-folder.js';

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/** The label a coder verifies for document i: 15 negative, 9 neutral, 6 positive among the first 30. */
function verifiedLabel(i: number): string {
  const r = i % 10;
  return r < 5 ? 'negative' : r < 8 ? 'neutral' : 'positive';
}

function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

function answers(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of lines(text)) {
    const example = JSON.parse(line) as { messages: { role: string; content: string }[] };
    const answer = example.messages.at(-1)?.content as string;
    counts.set(answer, (counts.get(answer) ?? 0) + 1);
  }
  return counts;
}

describe('rescale review export --sizes', () => {
  let dir: string;
  let crowd: CrowdFolder;
  let db: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'rescale-review-export-'));
    crowd = await readCrowdFolder((await writeCrowdFolder(path.join(dir, 'crowd'), 32)).dir);
    db = path.join(dir, 'review.db');
    const store = ReviewStore.open(db);
    try {
      const ana = store.addReviewer('ana', 'coder').reviewer.id;
      store.assign(
        crowd.documents.map((d) => d.id),
        0,
        1,
      );
      crowd.documents.forEach((d, i) => {
        // The last two documents are rejected: no verified label, so no training example.
        const rejected = i >= 30;
        store.decide({
          reviewerId: ana,
          key: `k${i}`,
          document: d.id,
          question: 'sentiment',
          decision: rejected ? 'reject' : 'pick',
          labels: [rejected ? 'positive' : verifiedLabel(i)],
        });
      });
    } finally {
      store.close();
    }
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes nested subsets stratified by the verified label, each file in export.json with its sha256', async () => {
    const out = path.join(dir, 'gold');
    const run = spawnSync(
      process.execPath,
      ['--import', 'tsx', CLI, 'review', 'export', '--crowd', crowd.dir, '--db', db, '--out', out].concat([
        '--sizes',
        '20,5,10',
        '--seed',
        '3',
      ]),
      { encoding: 'utf8' },
    );
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /train-05\.jsonl: 5 examples \(sentiment: negative 3, neutral 1, positive 1\)/);
    assert.deepEqual((await readdir(out)).sort(), [
      'export.json',
      'gold.parquet',
      'train-05.jsonl',
      'train-10.jsonl',
      'train-20.jsonl',
      'train.jsonl',
    ]);
    const text = async (name: string): Promise<string> => readFile(path.join(out, name), 'utf8');
    const all = await text('train.jsonl');
    const subsets = [await text('train-05.jsonl'), await text('train-10.jsonl'), await text('train-20.jsonl')];
    assert.equal(lines(all).length, 30, 'rejected documents give no example');

    // Nested: each file holds every line of the smaller one, and all of them come from train.jsonl.
    const sets = [...subsets, all].map((t) => new Set(lines(t)));
    for (let i = 0; i + 1 < sets.length; i++)
      for (const line of sets[i] as Set<string>) assert.ok((sets[i + 1] as Set<string>).has(line));

    // Largest remainder over 15 / 9 / 6, each size built on the one before (counted by hand):
    // 5 → quotas 2.5, 1.5, 1 → 3, 1, 1 (the tie goes to the first label); 10 → 5, 3, 2; 20 → 10, 6, 4.
    const expected = [
      [3, 1, 1],
      [5, 3, 2],
      [10, 6, 4],
    ];
    subsets.forEach((t, i) => {
      const counts = answers(t);
      assert.deepEqual(
        ['negative', 'neutral', 'positive'].map((l) => counts.get(l) ?? 0),
        expected[i],
      );
    });

    const manifest = JSON.parse(await text('export.json')) as ReviewExportManifest;
    assert.equal(manifest.kind, 'rescale.review-export');
    assert.equal(manifest.seed, 3);
    assert.equal(manifest.db, db);
    assert.equal(manifest.gold.sha256, sha256(await readFile(path.join(out, 'gold.parquet'))));
    assert.equal(manifest.training[0]?.sha256, sha256(all));
    assert.deepEqual(
      manifest.training[0]?.counts.map((c) => c.count),
      [15, 9, 6],
    );
    assert.deepEqual(
      manifest.subsets.map((s) => [s.size, s.jsonl, s.jsonlSha256, s.counts.map((c) => c.count)]),
      subsets.map((t, i) => [[5, 10, 20][i], `train-${['05', '10', '20'][i]}.jsonl`, sha256(t), expected[i]]),
    );

    // Same seed, same files; another seed, other documents in the small subsets.
    const store = ReviewStore.open(db, '--db', { mustExist: true });
    try {
      const rows = new ReviewState(store, crowd).gold();
      const again = await exportReview(crowd, rows, path.join(dir, 'again'), { sizes: [5, 10, 20], seed: 3 });
      const other = await exportReview(crowd, rows, path.join(dir, 'other'), { sizes: [5, 10, 20], seed: 4 });
      assert.equal(await readFile(again.subsets[0]?.file as string, 'utf8'), subsets[0]);
      assert.notEqual(await readFile(other.subsets[0]?.file as string, 'utf8'), subsets[0]);
      await assert.rejects(
        exportReview(crowd, rows, path.join(dir, 'x'), { sizes: [5] }),
        /--seed is required with --sizes/,
      );
    } finally {
      store.close();
    }
  });

  it('re-exporting into a folder removes the training files only the earlier export listed', async () => {
    const out = path.join(dir, 'shrink');
    const store = ReviewStore.open(db, '--db', { mustExist: true });
    try {
      const rows = new ReviewState(store, crowd).gold();
      await exportReview(crowd, rows, out, { sizes: [5, 10, 20], seed: 3 });
      await writeFile(path.join(out, 'notes.txt'), 'mine\n');
      assert.ok((await readdir(out)).includes('train-20.jsonl'));
      const second = await exportReview(crowd, rows, out, { sizes: [5, 10], seed: 3 });
      assert.deepEqual((await readdir(out)).sort(), [
        'export.json',
        'gold.parquet',
        'notes.txt',
        'train-05.jsonl',
        'train-10.jsonl',
        'train.jsonl',
      ]);
      assert.deepEqual(
        second.subsets.map((s) => path.basename(s.file)),
        ['train-05.jsonl', 'train-10.jsonl'],
      );
    } finally {
      store.close();
    }
  });

  it('refuses a size larger than the verified set, naming --sizes, and writes nothing', async () => {
    const out = path.join(dir, 'too-many');
    const run = spawnSync(
      process.execPath,
      ['--import', 'tsx', CLI, 'review', 'export', '--crowd', crowd.dir, '--db', db, '--out', out].concat([
        '--sizes',
        '10,31',
        '--seed',
        '3',
      ]),
      { encoding: 'utf8' },
    );
    assert.equal(run.status, 2, run.stdout);
    assert.match(run.stderr, /--sizes 31 exceeds the 30 documents with a verified label for question "sentiment"/);
    assert.deepEqual(await readdir(out), []);
    const missing = spawnSync(
      process.execPath,
      ['--import', 'tsx', CLI, 'review', 'stats', '--crowd', crowd.dir, '--db', path.join(dir, 'nope.db')],
      { encoding: 'utf8' },
    );
    assert.notEqual(missing.status, 0);
    assert.match(missing.stderr, /--db .*nope\.db does not exist/);
  });
});
