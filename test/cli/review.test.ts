import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { readCrowdFolder } from '../../study/review/crowd-folder.js';
import { ReviewStore } from '../../study/review/review-store.js';
import { queryDuckDB, sqlString } from '../../scripts/harness/parquet.js';
import { CLI } from '../helpers/analysis-files.js';
import { writeCrowdFolder } from '../helpers/crowd-folder.js';

function rescale(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'review', ...args], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('rescale review add-reviewer, assign, export', () => {
  let dir: string;
  let crowdDir: string;
  let db: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'rescale-review-cli-'));
    crowdDir = (await writeCrowdFolder(path.join(dir, 'crowd'), 20, { topics: true })).dir;
    db = path.join(dir, 'review.db');
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints a login link with a token that is stored only as a hash', async () => {
    const out = rescale(['add-reviewer', 'ana', '--role', 'coder', '--db', db]);
    assert.equal(out.status, 0, out.stderr);
    const token = /^http:\/\/127\.0\.0\.1:8377\/login\?token=([A-Za-z0-9_-]{43})$/m.exec(out.stdout)?.[1];
    assert.ok(token, out.stdout);
    assert.equal((await readFile(db)).includes(Buffer.from(token)), false);
    const store = ReviewStore.open(db);
    assert.equal(store.reviewerByToken(token)?.name, 'ana');
    store.close();
    assert.equal(rescale(['add-reviewer', 'ana', '--role', 'coder', '--db', db]).status, 2, 'names are unique');
    assert.match(rescale(['add-reviewer', 'x', '--role', 'boss', '--db', db]).stderr, /--role must be coder or/);
  });

  it('gives every document to one coder and the overlap share to two, the same way for the same seed', async () => {
    for (const name of ['ben', 'cy'])
      assert.equal(rescale(['add-reviewer', name, '--role', 'coder', '--db', db]).status, 0);
    const out = rescale(['assign', '--crowd', crowdDir, '--db', db, '--overlap', '0.2', '--seed', '5']);
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout, /assigned 20 documents to 3 coders; 4 go to two coders/);
    const store = ReviewStore.open(db);
    const first = store.allAssignments();
    const perDocument = new Map<string, number>();
    for (const a of first) perDocument.set(a.document, (perDocument.get(a.document) ?? 0) + 1);
    assert.equal(perDocument.size, 20);
    assert.equal([...perDocument.values()].filter((n) => n === 2).length, 4);
    const loads = store.reviewers().map((r) => store.assignments(r.id).length);
    assert.ok(Math.max(...loads) - Math.min(...loads) <= 2, `balanced loads ${loads.join(', ')}`);
    store.assign(
      (await readCrowdFolder(crowdDir)).documents.map((d) => d.id),
      0.2,
      5,
    );
    assert.deepEqual(store.allAssignments(), first, 'same seed, same assignment');
    store.assign(
      (await readCrowdFolder(crowdDir)).documents.map((d) => d.id),
      0.2,
      6,
    );
    assert.notDeepEqual(store.allAssignments(), first, 'another seed, another assignment');
    store.close();
    assert.equal(rescale(['assign', '--crowd', crowdDir, '--db', db, '--overlap', '0.2', '--seed', '5']).status, 0);
  });

  it('exports verified labels as gold Parquet and training chat JSONL', async () => {
    const store = ReviewStore.open(db);
    const [ana, ben] = store.reviewers();
    const shared = store.allAssignments().find((a) => a.overlap)?.document as string;
    const coders = store
      .allAssignments()
      .filter((a) => a.document === shared)
      .map((a) => a.reviewerId);
    const single = store.assignments(ana?.id as number).find((a) => !a.overlap)?.document as string;
    let key = 0;
    const decide = (reviewerId: number, document: string, question: string, labels: string[], kind = 'pick') =>
      store.decide({
        reviewerId,
        key: String(key++),
        document,
        question,
        decision: kind as 'pick',
        labels,
      });
    for (const id of coders) {
      decide(id, shared, 'sentiment', ['positive']);
      decide(id, shared, 'topics', ['service', 'price']);
    }
    decide(ana?.id as number, single, 'sentiment', ['neutral'], 'reject');
    decide(ana?.id as number, single, 'topics', [], 'pick');
    assert.ok(ben);
    store.close();
    const out = rescale(['export', '--crowd', crowdDir, '--db', db, '--out', path.join(dir, 'gold')]);
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout, /2 reviewed documents, 0 adjudicated/);
    const gold = path.join(dir, 'gold', 'gold.parquet');
    const rows = await queryDuckDB(
      `SELECT id, text, sentiment, topics__labels, reviewers, adjudicated FROM '${sqlString(gold)}' ORDER BY id`,
    );
    const byId = new Map(rows.map((r) => [r.id, r]));
    assert.equal(byId.get(shared)?.sentiment, 'positive');
    assert.deepEqual([...(byId.get(shared)?.topics__labels as string[])].sort(), ['price', 'service']);
    assert.equal(byId.get(shared)?.reviewers, 2);
    assert.equal(byId.get(shared)?.adjudicated, false);
    assert.equal(byId.get(single)?.sentiment, null, 'a rejection verifies no label');
    assert.match(String(byId.get(single)?.text), /^Tweet number/);
    const jsonl = (await readFile(path.join(dir, 'gold', 'train.jsonl'), 'utf8')).trim().split('\n');
    assert.equal(jsonl.length, 1);
    const example = JSON.parse(jsonl[0] as string) as { messages: { role: string; content: string }[] };
    assert.deepEqual(
      example.messages.map((m) => m.role),
      ['system', 'user', 'assistant'],
    );
    assert.equal(example.messages[2]?.content, 'positive');
    assert.match(example.messages[1]?.content ?? '', /^Classify the text as one of: negative, neutral, positive\./);
  });
});
