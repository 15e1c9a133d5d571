import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser, type Page } from 'playwright-core';

import { silentLogger } from '../../../contracts/logger.js';
import { readCrowdFolder } from '../../../study/review/crowd-folder.js';
import { createReviewServer } from '../../../study/review/review-server.js';
import { ReviewStore } from '../../../study/review/review-store.js';
import { ROOT } from '../../helpers/analysis-files.js';
import { findChromium, press } from '../../helpers/chromium.js';
import { writeCrowdFolder } from '../../helpers/crowd-folder.js';

const found = await findChromium();
const skip = 'reason' in found ? `headless chromium unavailable: ${found.reason}` : false;

describe('review app in headless chromium', { skip }, () => {
  let dir: string;
  let store: ReviewStore;
  let app: FastifyInstance;
  let browser: Browser;
  let base: string;
  const tokens: Record<string, string> = {};

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'rescale-review-browser-'));
    await writeCrowdFolder(path.join(dir, 'crowd'), 24);
    const crowd = await readCrowdFolder(path.join(dir, 'crowd'));
    store = ReviewStore.open(path.join(dir, 'review.db'));
    for (const name of ['ana', 'ben']) tokens[name] = store.addReviewer(name, 'coder').token;
    store.assign(
      crowd.documents.map((d) => d.id),
      0,
      11,
    );
    app = createReviewServer({ store, crowd, logger: silentLogger });
    base = await app.listen({ host: '127.0.0.1', port: 0 });
    browser = await chromium.launch({
      executablePath: (found as { path: string }).path,
      args: ['--no-sandbox', '--disable-gpu'],
    });
  });

  after(async () => {
    await browser?.close();
    await app?.close();
    store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('lets a reviewer log in, review ten documents with the keyboard and undo one', async () => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 640 } });
    const page = await context.newPage();
    await page.goto(`${base}/login?token=${tokens.ana}`);
    await page.waitForURL(`${base}/`);
    const cookie = (await context.cookies()).find((c) => c.name === 'rescale_review');
    assert.equal(cookie?.httpOnly, true);
    assert.equal(cookie?.sameSite, 'Strict');
    await press(page, 'n');
    const anaId = store.reviewers().find((r) => r.name === 'ana')?.id as number;
    const assigned = store.assignments(anaId).map((a) => a.document);
    let shot = process.env.RESCALE_REVIEW_SCREENSHOT !== undefined;
    const keys = ['a', 'r', '1', '2', '3', 'a', 'a', '3', 'r', 'a'];
    for (const [i, key] of keys.entries()) {
      assert.equal(await page.textContent('#doc-id'), assigned[i], `document ${i + 1} comes in queue order`);
      // RESCALE_REVIEW_SCREENSHOT=1 refreshes the README's picture: the first page where the labellers disagree.
      if (shot && (await page.locator('.proposal').count()) > 1) {
        await page.screenshot({ path: path.join(ROOT, 'docs', 'review-page.png') });
        shot = false;
      }
      await press(page, key);
    }
    assert.equal(await page.textContent('#progress'), '10 / 12 done');
    await press(page, 'u');
    assert.equal(await page.textContent('#doc-id'), assigned[9]);
    assert.match((await page.textContent('section.question')) ?? '', /Your decision: open/);
    const current = store.current({ reviewerId: anaId });
    assert.equal(current.length, 9);
    assert.deepEqual(
      current.map((c) => c.decision),
      ['accept', 'reject', 'pick', 'pick', 'pick', 'accept', 'accept', 'pick', 'reject'],
    );
    assert.deepEqual(current[2]?.verified, ['negative'], 'key 1 picks the first codebook label');
    assert.equal(store.history().filter((h) => h.reviewerId === anaId).length, 11, 'ten decisions and one undo');
    await context.close();
  });

  it('serves two reviewers at once, each in their own queue', async () => {
    const contexts = await Promise.all([browser.newContext(), browser.newContext()]);
    const [ana, ben] = await Promise.all(contexts.map((c) => c.newPage()));
    await Promise.all([
      (ana as Page).goto(`${base}/login?token=${tokens.ana}`),
      (ben as Page).goto(`${base}/login?token=${tokens.ben}`),
    ]);
    await Promise.all([(ana as Page).waitForURL(`${base}/`), (ben as Page).waitForURL(`${base}/`)]);
    await Promise.all([press(ana as Page, 'n'), press(ben as Page, 'n')]);
    const benId = store.reviewers().find((r) => r.name === 'ben')?.id as number;
    const benDocs = store.assignments(benId).map((a) => a.document);
    assert.equal(await (ben as Page).textContent('#doc-id'), benDocs[0]);
    for (let i = 0; i < 3; i++) await Promise.all([press(ana as Page, 'a'), press(ben as Page, '2')]);
    assert.equal(await (ben as Page).textContent('#progress'), '3 / 12 done');
    assert.equal(await (ana as Page).textContent('#progress'), '12 / 12 done');
    const benNow = store.current({ reviewerId: benId });
    assert.deepEqual(
      benNow.map((c) => [c.document, c.verified]),
      benDocs.slice(0, 3).map((d) => [d, ['neutral']]),
    );
    const forbidden = await (ben as Page).goto(`${base}/doc/${store.assignments(1)[0]?.document ?? ''}`);
    assert.equal(forbidden?.status(), 403, "ben cannot open ana's document");
    await Promise.all(contexts.map((c) => c.close()));
  });

  it('answers a wrong token with 401', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const response = await page.goto(`${base}/login?token=not-a-token`);
    assert.equal(response?.status(), 401);
    assert.match((await page.textContent('body')) ?? '', /not valid/);
    assert.equal((await context.cookies()).length, 0);
    await context.close();
  });
});
