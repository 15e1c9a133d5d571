// The fallback's small parts: answer parsing and logprob confidence, the budget ledger under concurrency, the rate
// limiter's measured pace, Retry-After parsing and backoff, key lookup and redaction.

import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { singleQuestion } from '../../contracts/codebook.js';
import { readApiKey, redactKey } from '../../fallback/api-key.js';
import { InProcessBudget } from '../../fallback/budget.js';
import { FallbackPrompt, labelConfidence } from '../../fallback/fallback-prompt.js';
import { InProcessRateLimiter } from '../../fallback/rate-limiter.js';
import { backoffDelay, retryAfter } from '../../fallback/retry-policy.js';
import { fallbackSection, sentimentCodebook } from '../helpers/fallback.js';

function prompt(format: 'json_schema' | 'json_object' | 'text' = 'json_schema'): FallbackPrompt {
  const codebook = sentimentCodebook(fallbackSection('http://127.0.0.1:1/v1', { response_format: format }), {
    labels: [
      { name: 'neg', answer: 'negative' },
      { name: 'neu', answer: 'neutral' },
      { name: 'pos', answer: 'positive' },
    ],
  });
  return new FallbackPrompt(codebook, singleQuestion(codebook), codebook.fallback!);
}

describe('FallbackPrompt', () => {
  it('renders the codebook prompt with the document, then the answer format', () => {
    const messages = prompt().messages({ text: 'so {good}' });
    assert.deepEqual(
      messages.map((m) => m.role),
      ['system', 'user'],
    );
    assert.equal(
      messages[1]?.content,
      'Classify the tweet as one of: negative, neutral, positive.\n\nTweet: so {good}\n\n' +
        'Answer with a JSON object {"label": "<label>"} where <label> ' +
        'is exactly one of: "negative", "neutral", "positive".',
    );
  });

  it(
    'maps an answer to the label it belongs to, exactly or by a unique case-insensitive match, ' + 'and nothing else',
    () => {
      const p = prompt();
      assert.deepEqual(p.parse('{"label":"positive"}'), { kind: 'label', label: p.labels[2], span: [10, 18] });
      assert.equal(p.parse('{"label": "Negative"}').kind, 'label');
      for (const content of [
        '{"label":"positiv"}',
        '{"label":"pos"}',
        '{"label":["positive"]}',
        '["positive"]',
        'positive',
        '{"label":"positive',
        '',
        null,
      ]) {
        assert.equal(p.parse(content).kind, 'invalid', String(content));
      }
      const text = prompt('text');
      assert.equal(text.parse(' neutral.\n').kind, 'label');
      assert.equal(text.parse('"positive"').kind, 'label');
      assert.equal(text.parse('neutral, I think').kind, 'invalid');
    },
  );

  it('computes the label’s probability from the logprobs of its tokens only', () => {
    const content = '{"label":"positive"}';
    const tokens = [
      { token: '{"', logprob: -0.5 },
      { token: 'label', logprob: -0.5 },
      { token: '":"', logprob: -0.5 },
      { token: 'pos', logprob: -0.2 },
      { token: 'itive', logprob: -0.1 },
      { token: '"}', logprob: -0.5 },
    ];
    assert.ok(Math.abs((labelConfidence(content, [10, 18], tokens) ?? 0) - Math.exp(-0.3)) < 1e-12);
    assert.equal(labelConfidence(content, [10, 18], null), null);
    assert.equal(labelConfidence(content, [10, 18], tokens.slice(1)), null, 'tokens that do not spell the content');
  });
});

describe('InProcessBudget', () => {
  it(
    'never commits more than the cap under concurrent reservations, ' + 'and refuses for good once it cannot fit',
    async () => {
      const budget = new InProcessBudget({ nanoUsd: 1000, requests: null });
      let settledTotal = 0;
      const results = await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const reservation = await budget.reserve(100);
          if (reservation === null) return false;
          assert.ok(budget.snapshot().committedNanoUsd <= 1000);
          await new Promise((resolve) => setTimeout(resolve, i % 5));
          const spent = 30 + (i % 3) * 10;
          settledTotal += spent;
          budget.settle(reservation, spent);
          return true;
        }),
      );
      const granted = results.filter(Boolean).length;
      assert.ok(settledTotal <= 1000, `spent ${settledTotal}`);
      assert.ok(granted > 10, `only ${granted} reservations granted: settling must free budget for waiters`);
      assert.equal(budget.snapshot().exhausted, true);
      assert.equal(await budget.reserve(1), null);
    },
  );

  it('starts from what earlier runs spent, and counts requests', async () => {
    const budget = new InProcessBudget({ nanoUsd: null, requests: 3 }, { nanoUsd: 5, requests: 2 });
    assert.ok((await budget.reserve(10)) !== null);
    assert.equal(await budget.reserve(10), null);
    assert.deepEqual(budget.snapshot(), { committedNanoUsd: 15, requests: 3, exhausted: true });
  });
});

describe('InProcessRateLimiter', () => {
  it('paces requests to the per-minute limit after the initial burst (measured)', async () => {
    const limiter = new InProcessRateLimiter({ requestsPerMinute: 600, tokensPerMinute: null }); // one per 100 ms
    const started = performance.now();
    for (let i = 0; i < 600 + 4; i++) await limiter.acquire(1); // the full bucket, then 4 paced
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 380 && elapsed < 1000, `${elapsed.toFixed(0)} ms`);
  });

  it('limits tokens per minute and holds everyone during a pause', async () => {
    const limiter = new InProcessRateLimiter({ requestsPerMinute: null, tokensPerMinute: 60_000 }); // 1 token per ms
    await limiter.acquire(60_000);
    let started = performance.now();
    await limiter.acquire(200);
    assert.ok(performance.now() - started >= 190);
    limiter.pauseUntil(Date.now() + 150);
    started = performance.now();
    await limiter.acquire(0);
    assert.ok(performance.now() - started >= 140);
  });
});

describe('retryAfter and backoffDelay', () => {
  it('reads retry-after-ms, seconds and HTTP dates', () => {
    assert.equal(retryAfter(new Headers({ 'retry-after-ms': '250', 'retry-after': '9' })), 250);
    assert.equal(retryAfter(new Headers({ 'retry-after': '2' })), 2000);
    const now = Date.parse('2025-01-01T00:00:00Z');
    assert.equal(retryAfter(new Headers({ 'retry-after': 'Wed, 01 Jan 2025 00:00:05 GMT' }), now), 5000);
    assert.equal(retryAfter(new Headers({})), null);
  });

  it('grows exponentially with jitter, and follows Retry-After when given', () => {
    const options = { baseMs: 100, maxMs: 1000 };
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((n) => backoffDelay(n, null, options, () => 0)),
      [50, 100, 200, 400, 500],
    );
    assert.deepEqual(
      [1, 2, 5].map((n) => backoffDelay(n, null, options, () => 1)),
      [100, 200, 1000],
    );
    assert.equal(
      backoffDelay(3, 1000, options, () => 0),
      1000,
    );
    assert.equal(
      backoffDelay(3, 1000, options, () => 1),
      1100,
    );
  });
});

describe('readApiKey and redactKey', () => {
  it('reads a key from a variable or a file, never from elsewhere, and says what is missing', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'rescale-key-'));
    try {
      assert.deepEqual(await readApiKey({ kind: 'env', name: 'K' }, { K: ' sk-a \n' }), {
        found: true,
        key: 'sk-a',
        warning: null,
      });
      assert.deepEqual(await readApiKey({ kind: 'env', name: 'K' }, {}), {
        found: false,
        reason: 'environment variable K is not set',
      });
      const file = path.join(dir, 'key');
      await writeFile(file, 'sk-from-file\n');
      await chmod(file, 0o644);
      const lookup = await readApiKey({ kind: 'file', path: file }, {});
      assert.ok(lookup.found && lookup.key === 'sk-from-file' && /chmod 600/.test(lookup.warning ?? ''));
      await chmod(file, 0o600);
      assert.deepEqual(await readApiKey({ kind: 'file', path: file }, {}), {
        found: true,
        key: 'sk-from-file',
        warning: null,
      });
      const missing = await readApiKey({ kind: 'file', path: path.join(dir, 'nope') }, {});
      assert.ok(!missing.found && /ENOENT/.test(missing.reason));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    assert.equal(
      redactKey('bad key sk-abc123 given, sk-abc123!', 'sk-abc123'),
      'bad key [redacted] given, [redacted]!',
    );
  });
});
