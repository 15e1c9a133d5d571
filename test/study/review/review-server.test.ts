import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';

import { JsonLogger } from '../../../contracts/logger.js';
import { readCrowdFolder, type CrowdFolder } from '../../../study/review/crowd-folder.js';
import { createReviewServer, SESSION_COOKIE } from '../../../study/review/review-server.js';
import { ReviewState } from '../../../study/review/review-state.js';
import { ReviewStore } from '../../../study/review/review-store.js';
import { CLI } from '../../helpers/analysis-files.js';
import { writeCrowdFolder } from '../../helpers/crowd-folder.js';

interface Login {
  readonly cookie: string;
  readonly csrf: string;
}

/** Logs in with a token through the app and reads the CSRF token from the queue page. */
async function login(app: FastifyInstance, token: string): Promise<Login> {
  const response = await app.inject({ method: 'GET', url: `/login?token=${token}` });
  assert.equal(response.statusCode, 200);
  const set = String(response.headers['set-cookie']);
  const cookie = (set.split(';')[0] as string).trim();
  const page = await app.inject({ method: 'GET', url: '/', headers: { cookie } });
  const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1];
  assert.ok(csrf, 'the queue page carries the CSRF token');
  return { cookie, csrf };
}

function form(fields: Record<string, string | string[]>): string {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) for (const value of [v].flat()) body.append(k, value);
  return body.toString();
}

function post(app: FastifyInstance, url: string, who: Login, fields: Record<string, string | string[]>) {
  return app.inject({
    method: 'POST',
    url,
    headers: { cookie: who.cookie, 'content-type': 'application/x-www-form-urlencoded' },
    payload: form(fields),
  });
}

describe('review server', () => {
  let dir: string;
  let crowd: CrowdFolder;
  let store: ReviewStore;
  let app: FastifyInstance;
  const logLines: string[] = [];
  const tokens: Record<string, string> = {};

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'rescale-review-'));
    await writeCrowdFolder(path.join(dir, 'crowd'), 12);
    crowd = await readCrowdFolder(path.join(dir, 'crowd'));
    store = ReviewStore.open(path.join(dir, 'review.db'));
    for (const name of ['ana', 'ben']) tokens[name] = store.addReviewer(name, 'coder').token;
    tokens.cleo = store.addReviewer('cleo', 'adjudicator').token;
    store.assign(
      crowd.documents.map((d) => d.id),
      0.5,
      7,
    );
    app = createReviewServer({ store, crowd, logger: new JsonLogger('debug', {}, (line) => logLines.push(line)) });
  });

  after(async () => {
    await app.close();
    store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers 401 to a wrong token and to a request without a session', async () => {
    assert.equal((await app.inject({ method: 'GET', url: '/login?token=nope' })).statusCode, 401);
    assert.equal((await app.inject({ method: 'GET', url: '/login' })).statusCode, 401);
    assert.equal((await app.inject({ method: 'GET', url: '/' })).statusCode, 401);
    const forged = `${SESSION_COOKIE}=forged`;
    assert.equal((await app.inject({ method: 'GET', url: '/', headers: { cookie: forged } })).statusCode, 401);
  });

  it('sets an HttpOnly SameSite=Strict session cookie and keeps only token hashes', async () => {
    const response = await app.inject({ method: 'GET', url: `/login?token=${tokens.ana}` });
    const set = String(response.headers['set-cookie']);
    assert.match(set, new RegExp(`^${SESSION_COOKIE}=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=/$`));
    assert.match(String(response.headers['content-security-policy']), /script-src 'nonce-/);
    assert.equal(response.headers['referrer-policy'], 'no-referrer');
    const raw = (await import('node:fs')).readFileSync(store.file);
    assert.equal(raw.includes(Buffer.from(tokens.ana as string)), false, 'the token itself is not stored');
  });

  it('shows a coder only their own documents and refuses the others with 403', async () => {
    const ana = await login(app, tokens.ana as string);
    const state = new ReviewState(store, crowd);
    const anaId = store.reviewers().find((r) => r.name === 'ana')?.id as number;
    const mine = new Set(state.queue({ id: anaId, name: 'ana', role: 'coder' }).map((q) => q.document));
    const other = crowd.documents.find((d) => !mine.has(d.id))?.id as string;
    const own = [...mine][0] as string;
    const page = await app.inject({ method: 'GET', url: `/doc/${own}`, headers: { cookie: ana.cookie } });
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /proposed by keyword \(p=0\.90\)/);
    assert.match(page.body, /The author is pleased\./, 'label descriptions are shown');
    assert.match(page.body, /&#60;b&#62;service&#60;\/b&#62;/, 'document text is escaped');
    assert.equal(
      (await app.inject({ method: 'GET', url: `/doc/${other}`, headers: { cookie: ana.cookie } })).statusCode,
      403,
    );
    const before = store.history().length;
    const response = await post(app, '/decide', ana, {
      csrf: ana.csrf,
      key: 'k-other',
      document: other,
      question: 'sentiment',
      decision: 'pick',
      label: 'neutral',
    });
    assert.equal(response.statusCode, 403);
    assert.equal(store.history().length, before);
  });

  it('refuses a POST without the session CSRF token with 403 and records nothing', async () => {
    const ben = await login(app, tokens.ben as string);
    const benId = store.reviewers().find((r) => r.name === 'ben')?.id as number;
    const document = store.assignments(benId)[0]?.document as string;
    const before = store.history().length;
    for (const csrf of ['', 'x'.repeat(43)]) {
      const response = await post(app, '/decide', ben, {
        csrf,
        key: 'k1',
        document,
        question: 'sentiment',
        decision: 'pick',
        label: 'neutral',
      });
      assert.equal(response.statusCode, 403);
    }
    const other = await login(app, tokens.ana as string);
    const crossed = await post(app, '/decide', ben, {
      csrf: other.csrf,
      key: 'k1',
      document,
      question: 'sentiment',
      decision: 'pick',
      label: 'neutral',
    });
    assert.equal(crossed.statusCode, 403, "another session's token does not pass");
    assert.equal(store.history().length, before);
  });

  it('records a repeated form post once and moves on to the next open document', async () => {
    const ben = await login(app, tokens.ben as string);
    const benId = store.reviewers().find((r) => r.name === 'ben')?.id as number;
    const [first, second] = store.assignments(benId).map((a) => a.document);
    const fields = {
      csrf: ben.csrf,
      key: 'same-form',
      document: first as string,
      question: 'sentiment',
      decision: 'pick',
      label: 'neutral',
    };
    const before = store.history().length;
    const one = await post(app, '/decide', ben, fields);
    const two = await post(app, '/decide', ben, fields);
    assert.equal(one.statusCode, 303);
    assert.equal(one.headers.location, `/doc/${second}`);
    assert.equal(two.statusCode, 303);
    assert.equal(store.history().length, before + 1);
    assert.deepEqual(store.current({ reviewerId: benId, document: first as string })[0]?.verified, ['neutral']);
  });

  it('undoes the newest decision by appending a row, never by changing one', async () => {
    const ben = await login(app, tokens.ben as string);
    const benId = store.reviewers().find((r) => r.name === 'ben')?.id as number;
    const [, second] = store.assignments(benId).map((a) => a.document);
    await post(app, '/decide', ben, {
      csrf: ben.csrf,
      key: 'u-1',
      document: second as string,
      question: 'sentiment',
      decision: 'pick',
      label: 'negative',
    });
    await post(app, '/decide', ben, {
      csrf: ben.csrf,
      key: 'u-2',
      document: second as string,
      question: 'sentiment',
      decision: 'pick',
      label: 'positive',
    });
    const undo = await post(app, '/undo', ben, { csrf: ben.csrf, key: 'u-3' });
    assert.equal(undo.headers.location, `/doc/${second}`);
    assert.deepEqual(store.current({ reviewerId: benId, document: second as string })[0]?.verified, ['negative']);
    await post(app, '/undo', ben, { csrf: ben.csrf, key: 'u-4' });
    await post(app, '/undo', ben, { csrf: ben.csrf, key: 'u-4' });
    assert.equal(store.current({ reviewerId: benId, document: second as string }).length, 0);
    const kinds = store
      .history()
      .filter((h) => h.document === second)
      .map((h) => h.decision);
    assert.deepEqual(kinds, ['pick', 'pick', 'undo', 'undo']);
    assert.throws(
      () => (store as unknown as { db: { exec(sql: string): void } }).db.exec('DELETE FROM decisions'),
      /append-only/,
    );
  });

  it('sends overlap documents the coders decided differently to the adjudicator, and only those', async () => {
    const ana = await login(app, tokens.ana as string);
    const ben = await login(app, tokens.ben as string);
    const cleo = await login(app, tokens.cleo as string);
    const overlap = store.allAssignments().filter((a) => a.overlap);
    const shared = [...new Set(overlap.map((a) => a.document))];
    assert.equal(shared.length, 6);
    const [agreed, disputed] = shared;
    for (const [who, document, label] of [
      [ana, agreed, 'positive'],
      [ben, agreed, 'positive'],
      [ana, disputed, 'positive'],
      [ben, disputed, 'negative'],
    ] as const) {
      const r = await post(app, '/decide', who, {
        csrf: who.csrf,
        key: `adj-${document}-${label}-${who.cookie.slice(-6)}`,
        document: document as string,
        question: 'sentiment',
        decision: 'pick',
        label,
      });
      assert.equal(r.statusCode, 303);
    }
    const queue = await app.inject({ method: 'GET', url: '/', headers: { cookie: cleo.cookie } });
    assert.match(queue.body, new RegExp(`/doc/${disputed}`));
    assert.doesNotMatch(queue.body, new RegExp(`/doc/${agreed}"`));
    assert.equal(
      (await app.inject({ method: 'GET', url: `/doc/${agreed}`, headers: { cookie: cleo.cookie } })).statusCode,
      403,
    );
    const page = await app.inject({ method: 'GET', url: `/doc/${disputed}`, headers: { cookie: cleo.cookie } });
    assert.match(page.body, /ana: <b>picked<\/b>: positive/);
    assert.match(page.body, /ben: <b>picked<\/b>: negative/);
    await post(app, '/decide', cleo, {
      csrf: cleo.csrf,
      key: 'adj-1',
      document: disputed as string,
      question: 'sentiment',
      decision: 'pick',
      label: 'negative',
    });
    const gold = new ReviewState(store, crowd).gold();
    assert.deepEqual(
      gold.find((g) => g.id === disputed),
      {
        id: disputed,
        text: crowd.byId.get(disputed as string)?.text,
        labels: new Map([['sentiment', ['negative']]]),
        reviewers: 3,
        adjudicated: true,
      },
    );
    assert.deepEqual(gold.find((g) => g.id === agreed)?.labels.get('sentiment'), ['positive']);
  });

  it('logs route patterns only: no document id, text or token', () => {
    const log = logLines.join('\n');
    assert.ok(logLines.length > 10);
    assert.match(log, /"route":"\/doc\/:id"/);
    for (const secret of [tokens.ana, tokens.ben, 'Tweet number', 'doc-0'])
      assert.equal(log.includes(secret as string), false, `log holds ${secret}`);
  });
});

function startServe(crowdDir: string, db: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', CLI, 'review', 'serve', '--crowd', crowdDir, '--db', db, '--port', '0'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const url = /listening on (http:\/\/\S+)/.exec(out)?.[1];
      if (url !== undefined) resolve({ child, url });
    });
    child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
}

describe('rescale review serve', () => {
  it('keeps sessions and decisions when the server is killed and started again', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'rescale-review-restart-'));
    const children: ChildProcess[] = [];
    try {
      await writeCrowdFolder(path.join(dir, 'crowd'), 4);
      const crowd = await readCrowdFolder(path.join(dir, 'crowd'));
      const db = path.join(dir, 'review.db');
      const setup = ReviewStore.open(db);
      const { token } = setup.addReviewer('ana', 'coder');
      setup.assign(
        crowd.documents.map((d) => d.id),
        0,
        3,
      );
      setup.close();

      const first = await startServe(crowd.dir, db);
      children.push(first.child);
      assert.match(first.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const loginResponse = await fetch(`${first.url}/login?token=${token}`, { redirect: 'manual' });
      const cookie = (loginResponse.headers.get('set-cookie') ?? '').split(';')[0] as string;
      const queue = await (await fetch(`${first.url}/`, { headers: { cookie } })).text();
      const csrf = /name="csrf" value="([^"]+)"/.exec(queue)?.[1] as string;
      const decide = (url: string, key: string, label: string): Promise<Response> =>
        fetch(`${url}/decide`, {
          method: 'POST',
          redirect: 'manual',
          headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
          body: form({ csrf, key, document: 'doc-001', question: 'sentiment', decision: 'pick', label }),
        });
      assert.equal((await decide(first.url, 'r-1', 'positive')).status, 303);
      first.child.kill('SIGKILL');
      await new Promise((resolve) => first.child.once('exit', resolve));

      const second = await startServe(crowd.dir, db);
      children.push(second.child);
      const page = await (await fetch(`${second.url}/doc/doc-001`, { headers: { cookie } })).text();
      assert.match(page, /Your decision: <b>picked<\/b>: positive/, 'the session cookie and the decision survived');
      assert.equal((await decide(second.url, 'r-1', 'positive')).status, 303, 'a resent form after the restart');
      const check = ReviewStore.open(db);
      assert.equal(check.history().length, 1, 'the resent form recorded nothing');
      check.close();
    } finally {
      for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
