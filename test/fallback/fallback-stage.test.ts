// The fallback stage against a real Chat Completions server on loopback, with each injected fault: nothing lost,
// the budget never exceeded, nothing paid twice, Retry-After honoured, the key in no log line and no file.

import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import type { Codebook } from '../../contracts/codebook.js';
import { isRescaleError } from '../../contracts/errors.js';
import type { FallbackConfigInput } from '../../contracts/fallback-config.js';
import type { ResultRow } from '../../contracts/results.js';
import { FallbackStage, type FallbackStageOptions } from '../../fallback/fallback-stage.js';
import type { DocumentInput } from '../../contracts/document-input.js';
import {
  auditRecords,
  capturingLogger,
  fallbackSection,
  filesContaining,
  routedBatch,
  scoredRow,
  sentimentCodebook,
} from '../helpers/fallback.js';
import { OpenAIServer, type Fault, type SeenRequest } from '../helpers/openai-server.js';

const FAST_BACKOFF = { baseMs: 20, maxMs: 200 };

let server: OpenAIServer;
let dir: string;
const dirs: string[] = [];

async function tempDir(): Promise<string> {
  const created = await mkdtemp(path.join(tmpdir(), 'rescale-fallback-'));
  dirs.push(created);
  return created;
}

before(async () => {
  server = await OpenAIServer.start();
});
after(async () => {
  await server.close();
});
afterEach(async () => {
  server.setResponder(() => null);
});

interface Run {
  readonly rows: ResultRow[];
  readonly stage: FallbackStage;
  readonly lines: string[];
  readonly requests: SeenRequest[];
  readonly auditFile: string;
  readonly cacheDir: string;
}

/** A fresh temp dir per test run unless `reuse` names one (re-runs share cache and audit). */
async function runStage(
  batch: { rows: ResultRow[]; docs: DocumentInput[] },
  overrides: Partial<FallbackConfigInput> = {},
  stageOptions: Partial<FallbackStageOptions> & { reuse?: string } = {},
): Promise<Run> {
  const workDir = stageOptions.reuse ?? (await tempDir());
  dir = workDir;
  const codebook: Codebook = sentimentCodebook(fallbackSection(server.baseUrl, overrides));
  const config = codebook.fallback;
  assert.ok(config !== null);
  const { logger, lines } = capturingLogger();
  const before = server.requests.length;
  const stage = await FallbackStage.open({
    codebook,
    config,
    mode: 'live',
    apiKey: server.apiKey,
    cacheDir: path.join(workDir, 'cache'),
    auditFile: path.join(workDir, 'audit.jsonl'),
    logger,
    backoff: FAST_BACKOFF,
    ...stageOptions,
  });
  try {
    const rows = await stage.resolve(batch.rows, batch.docs, { shardId: 'shard-0' });
    return {
      rows,
      stage,
      lines,
      requests: server.requests.slice(before),
      auditFile: path.join(workDir, 'audit.jsonl'),
      cacheDir: path.join(workDir, 'cache'),
    };
  } finally {
    await stage.close();
  }
}

/** The dummy key appears in no log line and no file the run wrote. */
async function assertKeyNowhere(run: { lines: string[] }, key = server.apiKey): Promise<void> {
  assert.equal(run.lines.filter((line) => line.includes(key)).length, 0, 'a log line holds the key');
  assert.deepEqual(await filesContaining(dir, key), [], 'a file holds the key');
}

function failFirst(n: number, fault: Fault): (request: SeenRequest) => Fault | null {
  let seen = 0;
  return () => (seen++ < n ? fault : null);
}

describe('FallbackStage.resolve', () => {
  it('sends only routed documents and keeps both opinions, with the fallback confidence from logprobs', async () => {
    const rows = [
      scoredRow(0, 'positive', 0.9),
      scoredRow(1, 'neutral', 0.4),
      scoredRow(2, 'negative', 0.95),
      scoredRow(3, 'neutral', 0.5),
      scoredRow(4, 'positive', 0.59),
    ];
    const docs = [
      { text: 'great game' },
      { text: 'I love this, good times' },
      { text: 'awful' },
      { text: 'bad bad day' },
      { text: 'the report is out' },
    ];
    const run = await runStage({ rows, docs });
    assert.equal(run.rows.length, 5);
    assert.equal(run.requests.length, 3);
    for (const i of [0, 2]) {
      assert.equal(run.rows[i]?.fallback, null);
      assert.equal(run.rows[i]?.source, 'local');
      assert.equal(run.rows[i]?.label, rows[i]?.label);
    }
    const expected = { 1: 'positive', 3: 'negative', 4: 'neutral' } as const;
    for (const [i, label] of Object.entries(expected)) {
      const row = run.rows[Number(i)];
      assert.equal(row?.label, label);
      assert.equal(row?.localLabel, rows[Number(i)]?.label);
      assert.equal(row?.source, 'fallback');
      assert.equal(row?.fallback?.status, 'ok');
      assert.equal(row?.fallback?.label, label);
      assert.ok(Math.abs((row?.fallback?.confidence ?? 0) - Math.exp(-0.1)) < 1e-12);
      assert.equal(row?.confidence, rows[Number(i)]?.confidence, 'confidence stays the local model’s');
    }
    const body = run.requests[0]?.body;
    assert.equal(body?.model, 'gpt-test');
    assert.deepEqual(body?.response_format?.json_schema?.schema?.properties?.label?.enum, [
      'negative',
      'neutral',
      'positive',
    ]);
    assert.equal(body?.logprobs, true);
    assert.equal(body?.temperature, 0);
    assert.equal(body?.max_completion_tokens, 64);
    assert.equal(run.requests[0]?.authorization, `Bearer ${server.apiKey}`);
    assert.ok(!JSON.stringify(body).includes('1001'), 'document ids never leave the machine');
    const calls = (await auditRecords(run.auditFile)).filter((r) => r.event === 'call');
    assert.equal(calls.length, 3);
    assert.ok(
      calls.every(
        (c) =>
          c.outcome === 'label' &&
          typeof c.cost_usd === 'number' &&
          (c.cost_usd as number) > 0 &&
          c.response_model === 'gpt-test-2024-08-06',
      ),
    );
    assert.ok(
      calls.every((c) => !JSON.stringify(c).includes('love')),
      'no document text in the audit',
    );
    await assertKeyNowhere(run);
  });

  it('routes by margin and entropy rules too, and never routes unscored rows', async () => {
    const rows = [
      scoredRow(0, 'positive', 0.7),
      scoredRow(1, 'positive', 0.9),
      {
        ...scoredRow(2, 'neutral', 0.3),
        status: 'empty_text' as const,
        label: null,
        confidence: null,
        margin: null,
        entropy: null,
        probabilities: null,
      },
    ];
    const docs = [{ text: 'good' }, { text: 'good' }, { text: '' }];
    const byMargin = await runStage({ rows, docs }, { routing: { margin_below: 0.6 } });
    assert.deepEqual(
      byMargin.rows.map((r) => r.fallback?.status ?? null),
      ['ok', null, null],
    ); // margins 0.55, 0.85
    const byEntropy = await runStage({ rows, docs }, { routing: { entropy_above: 0.5 } });
    assert.deepEqual(
      byEntropy.rows.map((r) => r.fallback?.status ?? null),
      ['ok', null, null],
    ); // entropies 0.80, 0.39
  });

  it('honours Retry-After on a 429 (measured) and does not count the refused request as spent', async (t) => {
    server.setResponder(failFirst(1, { kind: 'status', status: 429, retryAfter: '1' }));
    const run = await runStage(routedBatch(1), { concurrency: 1 });
    assert.equal(run.requests.length, 2);
    const waited = (run.requests[1]?.at ?? 0) - (run.requests[0]?.at ?? 0);
    assert.ok(waited >= 1000, `retried after ${waited.toFixed(0)} ms, before the 1 s Retry-After`);
    assert.ok(
      waited < 2500,
      `retried after ${waited.toFixed(0)} ms: Retry-After plus at most 10% jitter and (loaded-machine) overhead`,
    );
    t.diagnostic(`Retry-After: 1 s; retried after ${waited.toFixed(0)} ms`);
    assert.equal(run.rows[0]?.fallback?.status, 'ok');
    const calls = (await auditRecords(run.auditFile)).filter((r) => r.event === 'call');
    assert.deepEqual(
      calls.map((c) => [c.outcome, c.http_status, c.retry_after_ms]),
      [
        ['rate_limited', 429, 1000],
        ['label', 200, null],
      ],
    );
    assert.equal(calls[0]?.cost_usd, 0);
    await assertKeyNowhere(run);
  });

  it(
    'retries 500s with backoff, then answers; ' + 'after the retries it keeps the local label as fallback_failed',
    async () => {
      server.setResponder(failFirst(2, { kind: 'status', status: 500 }));
      const recovered = await runStage(routedBatch(1));
      assert.equal(recovered.requests.length, 3);
      assert.equal(recovered.rows[0]?.fallback?.status, 'ok');

      server.setResponder(() => ({ kind: 'status', status: 503 }));
      const failed = await runStage(routedBatch(2), { max_retries: 2 });
      assert.equal(failed.requests.length, 6, 'each document: one request plus two retries');
      for (const row of failed.rows) {
        assert.equal(row.fallback?.status, 'fallback_failed');
        assert.match(row.fallback?.error ?? '', /HTTP 503.*3 requests/);
        assert.equal(row.label, 'neutral');
        assert.equal(row.source, 'local');
        assert.equal(row.fallback?.label, null);
      }
      assert.equal(failed.stage.stats().costUsd, 0, 'refused requests are not billed');
      await assertKeyNowhere(failed);
    },
  );

  it('stores a server error as status, code and type, never its free text (which may quote the document)', async () => {
    const batch = routedBatch(2);
    const quote = (request: SeenRequest): string => `could not process your message: "${request.user}"`;
    server.setResponder((request) => ({
      kind: 'status',
      status: 503,
      code: 'overloaded',
      type: 'server_error',
      message: quote(request),
    }));
    const failed = await runStage(batch, { max_retries: 1 });
    server.setResponder((request) => ({
      kind: 'status',
      status: 422,
      code: 'context_length_exceeded',
      type: 'invalid_request_error',
      param: 'messages',
      message: `${quote(request)} ${'x'.repeat(5000)}`,
    }));
    const refused = await runStage(routedBatch(2), { max_retries: 1 });
    for (const run of [failed, refused]) {
      const audit = await readFile(run.auditFile, 'utf8');
      for (const doc of batch.docs) {
        const fragment = (doc.text ?? '').slice(0, 12);
        assert.ok(!audit.includes(fragment), `the audit file quotes document text: ${fragment}`);
        for (const row of run.rows) assert.ok(!(row.fallback?.error ?? '').includes(fragment));
        assert.equal(run.lines.filter((line) => line.includes(fragment)).length, 0, 'a log line quotes the document');
      }
      assert.ok(!audit.includes('could not process'), "the server's free text is stored");
      for (const row of run.rows) assert.ok((row.fallback?.error ?? '').length <= 300, 'the stored error is bounded');
    }
    assert.match(failed.rows[0]?.fallback?.error ?? '', /^HTTP 503 code=overloaded type=server_error/);
    assert.match(refused.rows[0]?.fallback?.error ?? '', /HTTP 422 code=context_length_exceeded/);
    assert.match(refused.rows[0]?.fallback?.error ?? '', /param=messages/);
  });

  it('times out a request that hangs, counts it as possibly billed, and retries', async () => {
    server.setResponder(failFirst(1, { kind: 'hang' }));
    const started = performance.now();
    const run = await runStage(routedBatch(1), { timeout_seconds: 0.3 });
    assert.ok(performance.now() - started >= 300);
    assert.equal(run.requests.length, 2);
    assert.equal(run.rows[0]?.fallback?.status, 'ok');
    const calls = (await auditRecords(run.auditFile)).filter((r) => r.event === 'call');
    const reserves = (await auditRecords(run.auditFile)).filter((r) => r.event === 'reserve');
    assert.equal(calls[0]?.outcome, 'timeout');
    assert.equal(calls[0]?.cost_usd, reserves[0]?.reserved_usd, 'an unanswered request is charged its worst case');
  });

  it('retries a response body that is not JSON (charged at its worst case), and never caches it', async () => {
    server.setResponder(failFirst(1, { kind: 'malformed' }));
    const run = await runStage(routedBatch(1));
    assert.equal(run.requests.length, 2);
    assert.equal(run.rows[0]?.fallback?.status, 'ok');
    const calls = (await auditRecords(run.auditFile)).filter((r) => r.event === 'call');
    assert.equal(calls[0]?.outcome, 'malformed');
    assert.ok((calls[0]?.cost_usd as number) > 0);
    assert.equal(
      (await readdir(run.cacheDir, { recursive: true })).filter((f) => String(f).endsWith('.json')).length,
      1,
    );
  });

  it(
    'never invents a label: an answer outside the set is retried with a correction, ' + 'then kept as fallback_invalid',
    async () => {
      server.setResponder(failFirst(1, { kind: 'answer', content: '{"label":"mixed"}' }));
      const corrected = await runStage(routedBatch(1));
      assert.equal(corrected.requests.length, 2);
      assert.equal(corrected.rows[0]?.fallback?.status, 'ok');
      const retry = corrected.requests[1]?.body.messages ?? [];
      assert.deepEqual(
        retry.slice(-2).map((m) => m.role),
        ['assistant', 'user'],
      );
      assert.equal(retry.at(-2)?.content, '{"label":"mixed"}');
      assert.match(retry.at(-1)?.content ?? '', /not one of the allowed labels/);

      server.setResponder(() => ({ kind: 'answer', content: '{"label":"very positive"}' }));
      const invalid = await runStage(routedBatch(3), { invalid_retries: 2 });
      assert.equal(invalid.requests.length, 9);
      for (const row of invalid.rows) {
        assert.equal(row.fallback?.status, 'fallback_invalid');
        assert.equal(row.fallback?.label, null);
        assert.equal(row.label, 'neutral');
        assert.equal(row.source, 'local');
      }
      const outcomes = (await auditRecords(invalid.auditFile)).filter((r) => r.event === 'call').map((c) => c.outcome);
      assert.deepEqual([...new Set(outcomes)], ['invalid_label']);

      server.setResponder(() => ({ kind: 'answer', content: 'positive, probably' }));
      const notJson = await runStage(routedBatch(1), { invalid_retries: 0 });
      assert.equal(notJson.rows[0]?.fallback?.status, 'fallback_invalid');
      assert.match(notJson.rows[0]?.fallback?.error ?? '', /not valid JSON/);
    },
  );

  it('parses plain-text answers strictly when the server has no structured outputs', async () => {
    const run = await runStage(routedBatch(3), { response_format: 'text', logprobs: false });
    assert.equal(run.requests[0]?.body.response_format, undefined);
    assert.deepEqual(
      run.rows.map((r) => r.label),
      ['positive', 'negative', 'neutral'],
    );
    assert.ok(run.rows.every((r) => r.fallback?.confidence === null));
    server.setResponder(() => ({ kind: 'answer', content: 'It is positive.' }));
    const loose = await runStage(routedBatch(1), { response_format: 'text', invalid_retries: 0 });
    assert.equal(loose.rows[0]?.fallback?.status, 'fallback_invalid');
  });

  it('stops the run on a wrong key, naming the variable, with the key in no message, log line or file', async () => {
    const wrongKey = 'sk-test-wrong-0123456789abcdef';
    const started = server.requests.length;
    await assert.rejects(runStage(routedBatch(6), { concurrency: 2 }, { apiKey: wrongKey }), (error: unknown) => {
      assert.ok(isRescaleError(error, 'FALLBACK_AUTH'));
      assert.match(error.message, /RESCALE_TEST_FALLBACK_KEY/);
      assert.ok(!error.message.includes(wrongKey));
      return true;
    });
    assert.ok(server.requests.length - started <= 2, 'no request after the refusal');
    const records = await auditRecords(path.join(dir, 'audit.jsonl'));
    assert.ok(records.some((r) => r.outcome === 'auth' && r.http_status === 401));
    assert.deepEqual(await filesContaining(dir, wrongKey), []);
    assert.deepEqual(await filesContaining(dir, 'sk-test-'), []);
  });

  it('stops the run when the model does not exist, or when every request is a bad request', async () => {
    await assert.rejects(
      runStage(routedBatch(2), { model: 'no-such-model' }),
      (e: unknown) => isRescaleError(e, 'FALLBACK_REJECTED') && /fallback\.model/.test(e.message),
    );
    server.setResponder(() => ({
      kind: 'status',
      status: 400,
      type: 'invalid_request_error',
      param: 'response_format',
      message: 'response_format json_schema is not supported',
    }));
    await assert.rejects(
      runStage(routedBatch(10), { concurrency: 1 }),
      (e: unknown) =>
        isRescaleError(e, 'FALLBACK_REJECTED') &&
        /HTTP 400 type=invalid_request_error param=response_format/.test(e.message),
    );
  });

  it(
    'never exceeds the budget: ' + 'routed documents beyond it keep their local label as over_budget, none dropped',
    async (t) => {
      const budgetUsd = 0.01;
      const batch = routedBatch(40);
      const run = await runStage(batch, { budget: { usd: budgetUsd }, concurrency: 8 });
      assert.equal(run.rows.length, 40);
      const statuses = run.rows.map((r) => r.fallback?.status);
      const ok = statuses.filter((s) => s === 'ok').length;
      const over = statuses.filter((s) => s === 'over_budget').length;
      assert.equal(ok + over, 40);
      assert.ok(ok >= 5 && over >= 5, `answered ${ok}, over budget ${over}`);
      // What the provider would bill, from its own token counts.
      const billed = server.billed
        .filter((r) => run.requests.includes(r))
        .reduce((sum, r) => sum + r.promptTokens * 2.5e-6 + r.completionTokens * 10e-6, 0);
      assert.ok(billed <= budgetUsd, `billed $${billed}`);
      const stats = run.stage.stats();
      assert.ok(stats.budgetCommittedUsd <= budgetUsd);
      assert.ok(Math.abs(stats.costUsd - billed) < 1e-9, `ledger $${stats.costUsd} vs billed $${billed}`);
      t.diagnostic(
        `budget $${budgetUsd}: ${ok} answered, ${over} over budget, billed $${billed.toFixed(6)}, ` +
          `committed $${stats.budgetCommittedUsd.toFixed(6)}`,
      );
      for (const row of run.rows.filter((r) => r.fallback?.status === 'over_budget')) {
        assert.equal(row.label, 'neutral');
        assert.equal(row.source, 'local');
        assert.match(row.fallback?.error ?? '', /budget reached \(\$0\.01\)/);
      }
      assert.ok(run.lines.some((line) => line.includes('fallback budget reached')));

      const capped = await runStage(routedBatch(9), { budget: { requests: 4 } });
      assert.equal(capped.requests.length, 4);
      assert.equal(capped.rows.filter((r) => r.fallback?.status === 'over_budget').length, 5);
    },
  );

  it('counts retries against the budget: a storm of 500s cannot send more requests than the cap', async () => {
    server.setResponder(() => ({ kind: 'status', status: 500 }));
    const run = await runStage(routedBatch(5), { budget: { requests: 7 }, max_retries: 3, concurrency: 1 });
    assert.equal(run.requests.length, 7);
    // The first document uses its 4 attempts; the second gets 3 before the cap; the rest are never sent.
    assert.deepEqual(
      run.rows.map((r) => r.fallback?.status),
      ['fallback_failed', 'over_budget', 'over_budget', 'over_budget', 'over_budget'],
    );
  });

  it('pays nothing twice: a re-run answers every request from the cache, and the budget carries over', async () => {
    server.setResponder(failFirst(1, { kind: 'answer', content: '{"label":"mixed"}' }));
    const batch = routedBatch(12);
    const first = await runStage(batch);
    const paidFirst = first.requests.filter((r) => r.billed).length;
    assert.equal(paidFirst, 13); // one correction round
    const firstStats = first.stage.stats();
    const again = await runStage(batch, {}, { reuse: dir });
    assert.equal(again.requests.length, 0);
    assert.deepEqual(again.rows, first.rows);
    const stats = again.stage.stats();
    assert.equal(stats.cacheHits, 13);
    assert.equal(stats.costUsd, 0);
    assert.ok(
      Math.abs(stats.budgetCommittedUsd - firstStats.costUsd) < 1e-9,
      'the ledger starts from the first run’s spending',
    );
    const hits = (await auditRecords(again.auditFile)).filter((r) => r.event === 'cache_hit');
    assert.equal(hits.length, 13);
    assert.ok(hits.every((h) => h.cost_usd === 0));
    await assertKeyNowhere(again);
  });

  it('sends a request once when duplicate documents are in flight together', async () => {
    const rows = Array.from({ length: 6 }, (_, i) => scoredRow(i, 'neutral', 0.3));
    const docs = Array.from({ length: 6 }, (_, i) => ({ text: i < 4 ? 'RT same tweet, love it' : `other tweet ${i}` }));
    const run = await runStage({ rows, docs }, { concurrency: 6 });
    assert.equal(run.requests.length, 3);
    assert.ok(run.rows.every((r) => r.fallback?.status === 'ok'));
    assert.equal(run.stage.stats().cacheHits, 3);
  });

  it(
    'replays offline from the cache, with no key and no server; ' + 'a request never answered gets over_budget',
    async () => {
      const batch = routedBatch(6);
      const live = await runStage(batch);
      const liveDir = dir;
      const codebook = sentimentCodebook(fallbackSection('http://127.0.0.1:9/v1'));
      const config = codebook.fallback;
      assert.ok(config !== null);
      const { logger, lines } = capturingLogger();
      const stage = await FallbackStage.open({
        codebook,
        config: { ...config, baseUrl: server.baseUrl },
        mode: 'offline',
        apiKey: null,
        cacheDir: path.join(liveDir, 'cache'),
        auditFile: path.join(liveDir, 'replay.jsonl'),
        logger,
      });
      const before = server.requests.length;
      const extra = {
        rows: [...batch.rows, scoredRow(6, 'neutral', 0.3)],
        docs: [...batch.docs, { text: 'never asked before' }],
      };
      const rows = await stage.resolve(extra.rows, extra.docs, { shardId: 'shard-0' });
      await stage.close();
      assert.equal(server.requests.length, before);
      assert.deepEqual(rows.slice(0, 6), live.rows);
      assert.equal(rows[6]?.fallback?.status, 'over_budget');
      assert.match(rows[6]?.fallback?.error ?? '', /offline replay/);
      assert.equal(lines.filter((l) => l.includes(server.apiKey)).length, 0);
    },
  );

  it('counts a request whose reservation was logged but never settled (a crash) at its worst case', async () => {
    const first = await runStage(routedBatch(2), { budget: { usd: 1 } });
    const spent = first.stage.stats().costUsd;
    await appendFile(
      first.auditFile,
      `${JSON.stringify({ event: 'reserve', call_id: 'lost', reserved_usd: 0.25 })}\n{"event":"call","cut`,
    );
    const next = await runStage(
      { rows: [scoredRow(0, 'neutral', 0.1)], docs: [{ text: 'fresh text' }] },
      { budget: { usd: 1 } },
      { reuse: dir },
    );
    assert.ok(Math.abs(next.stage.stats().budgetCommittedUsd - (spent + 0.25 + next.stage.stats().costUsd)) < 1e-9);
  });

  it('sends the Azure api-key header and api-version query when configured', async () => {
    const run = await runStage(routedBatch(1), { auth_header: 'api-key', api_version: '2024-10-21' });
    assert.equal(run.requests[0]?.apiKeyHeader, server.apiKey);
    assert.equal(run.requests[0]?.authorization, null);
    assert.equal(run.rows[0]?.fallback?.status, 'ok');
  });

  it('aborts in-flight requests when the run is interrupted, and audits them at their worst case', async () => {
    server.setResponder(() => ({ kind: 'hang' }));
    const controller = new AbortController();
    const workDir = await tempDir();
    dir = workDir;
    const codebook = sentimentCodebook(fallbackSection(server.baseUrl));
    const stage = await FallbackStage.open({
      codebook,
      config: codebook.fallback!,
      mode: 'live',
      apiKey: server.apiKey,
      cacheDir: path.join(workDir, 'cache'),
      auditFile: path.join(workDir, 'audit.jsonl'),
    });
    const batch = routedBatch(3);
    setTimeout(() => controller.abort(new Error('interrupted')), 100);
    await assert.rejects(
      stage.resolve(batch.rows, batch.docs, { shardId: 's', signal: controller.signal }),
      /interrupted/,
    );
    await stage.close();
    const calls = (await auditRecords(path.join(workDir, 'audit.jsonl'))).filter((r) => r.event === 'call');
    assert.equal(calls.length, 3);
    assert.ok(calls.every((c) => c.outcome === 'aborted' && (c.cost_usd as number) > 0));
  });
});

after(async () => {
  for (const created of dirs) await rm(created, { recursive: true, force: true });
});
