// The fallback stage of the shard path: after local scoring, routes unsure documents to the closed model and
// returns every row with both opinions. Each request is answered from the content-addressed cache when it can be;
// otherwise its worst-case cost is reserved, the rate limit awaited, the reservation logged, the request sent
// (retried with backoff on 429/5xx/timeouts), and the response stored before it is used.

import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Closeable } from '../contracts/closeable.js';
import { singleQuestion, type Codebook } from '../contracts/codebook.js';
import { errorMessage, RescaleError } from '../contracts/errors.js';
import { describeEndpoint, type FallbackConfig, type FallbackMode } from '../contracts/fallback-config.js';
import { silentLogger, type Logger } from '../contracts/logger.js';
import type { FallbackOutcome, ResultRow } from '../contracts/results.js';
import type { DocumentInput } from '../contracts/document-input.js';
import type { ShardFallback, ShardFallbackContext } from '../contracts/shard-fallback.js';
import { describeKeySource } from './api-key.js';
import { AuditLog, readLedger, type CallOutcome } from './audit-log.js';
import { budgetLimits, fromNanoUsd, InProcessBudget, type FallbackBudget, type Reservation } from './budget.js';
import { FallbackClient, parseCompletion, type ParsedCompletion } from './fallback-client.js';
import { FallbackPrompt, labelConfidence, type ChatRequestBody } from './fallback-prompt.js';
import { QuestionsFallbackPrompt } from './questions-fallback-prompt.js';
import { InProcessRateLimiter, type FallbackRateLimiter } from './rate-limiter.js';
import { priceNanoUsd, worstCaseNanoUsd } from './pricing.js';
import { exchangeKey, fallbackEndpoint, ResponseCache, CACHE_FORMAT } from './response-cache.js';
import {
  asksByQuestion,
  documentIdText,
  routedRows,
  withFallbackOutcome,
  withoutFallback,
  withQuestionOutcomes,
} from './routing.js';
import {
  backoffDelay,
  classifyFailure,
  DEFAULT_BACKOFF,
  MAX_RETRY_AFTER_MS,
  type BackoffOptions,
  type CallFailure,
} from './retry-policy.js';

export interface FallbackStageOptions {
  readonly codebook: Codebook;
  readonly config: FallbackConfig;
  readonly mode: FallbackMode;
  /** Required in live mode; never logged or written. */
  readonly apiKey: string | null;
  readonly cacheDir: string;
  /** Audit JSONL, appended; also the budget's ledger across runs of the same output. */
  readonly auditFile: string;
  /** Default: an in-process ledger started from the audit file (the cluster seam: see budget.ts). */
  readonly budget?: FallbackBudget;
  /** Default: in-process token buckets from the codebook's rate_limit (the cluster seam: see rate-limiter.ts). */
  readonly rateLimiter?: FallbackRateLimiter;
  readonly logger?: Logger;
  /** Backoff timing and randomness; tests make them small and fixed. */
  readonly backoff?: BackoffOptions;
  readonly random?: () => number;
}

/**
 * Counts of one process. With several questions `routed` … `failed` count routed questions (a document asked two
 * questions counts two), while `requests` and `cacheHits` count requests: one per document, whatever it is asked.
 */
export interface FallbackStats {
  readonly routed: number;
  readonly answered: number;
  readonly invalid: number;
  readonly overBudget: number;
  readonly failed: number;
  /** Requests answered from the cache (nothing sent). */
  readonly cacheHits: number;
  /** HTTP requests sent by this process (every attempt). */
  readonly requests: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Counted against the budget by this process (usage-priced, or worst case when billing is unknown). */
  readonly costUsd: number;
  /** Budget committed over the whole output so far, this run included. */
  readonly budgetCommittedUsd: number;
}

/** Before any request has succeeded, this many bad requests in a row stop the run: the configuration is wrong. */
const BAD_REQUESTS_BEFORE_STOP = 5;

type Exchange =
  | { readonly kind: 'response'; readonly completion: ParsedCompletion }
  | { readonly kind: 'over_budget'; readonly reason: string }
  | { readonly kind: 'failed'; readonly reason: string };

interface AuditBase {
  readonly document_id: string | null;
  readonly row: number;
  readonly shard_id: string;
  readonly request_hash: string;
}

/** A routed document as the request side needs it: what to ask, and what to write in the audit log. */
export interface RoutedDocument {
  /** The document's id as text, or null when the row index is the id. */
  readonly documentId: string | null;
  /** Row index in the shard's input file. */
  readonly row: number;
  readonly shardId: string;
  readonly doc: DocumentInput;
}

export class FallbackStage implements ShardFallback, Closeable {
  /** One question: its prompt. Several: null, and `questionsPrompt` asks a document's unsure questions at once. */
  private readonly prompt: FallbackPrompt | null;
  private readonly questionsPrompt: QuestionsFallbackPrompt | null;
  private readonly endpoint: string;
  private readonly client: FallbackClient | null;
  private readonly logger: Logger;
  private readonly backoff: BackoffOptions;
  private readonly random: () => number;
  private readonly counts = {
    routed: 0,
    answered: 0,
    invalid: 0,
    overBudget: 0,
    failed: 0,
    cacheHits: 0,
    requests: 0,
    promptTokens: 0,
    completionTokens: 0,
    costNanoUsd: 0,
  };
  private anySuccess = false;
  private badRequestsInARow = 0;
  private budgetWarned = false;
  private fatal: RescaleError | null = null;
  private readonly inflight = new Map<string, Promise<Exchange>>();

  private constructor(
    private readonly options: FallbackStageOptions,
    private readonly cache: ResponseCache,
    private readonly audit: AuditLog,
    private readonly budget: FallbackBudget,
    private readonly rateLimiter: FallbackRateLimiter,
  ) {
    const { config, codebook } = options;
    const several = asksByQuestion(codebook);
    this.prompt = several ? null : new FallbackPrompt(codebook, singleQuestion(codebook), config);
    this.questionsPrompt = several ? new QuestionsFallbackPrompt(codebook, codebook.questions, config) : null;
    this.endpoint = fallbackEndpoint(config);
    this.logger = (options.logger ?? silentLogger).child({ stage: 'fallback', model: config.model });
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.random = options.random ?? Math.random;
    if (options.mode === 'live') {
      if (options.apiKey === null)
        throw new RescaleError('INTERNAL', 'the live fallback needs an API key; resolveFallback decides this');
      this.client = new FallbackClient(config, options.apiKey);
    } else {
      this.client = null;
    }
  }

  /** Opens the cache and the audit log, and starts the budget from what the audit says was already spent. */
  static async open(options: FallbackStageOptions): Promise<FallbackStage> {
    const { config } = options;
    const budget = options.budget ?? new InProcessBudget(budgetLimits(config), await readLedger(options.auditFile));
    const rateLimiter = options.rateLimiter ?? new InProcessRateLimiter(config.rateLimit);
    const audit = await AuditLog.open(options.auditFile);
    return new FallbackStage(options, new ResponseCache(options.cacheDir), audit, budget, rateLimiter);
  }

  /**
   * Every row back, in order, with `localLabel` set; routed rows carry the fallback's outcome, and its label
   * (source 'fallback') when it answered one of the set. Throws only when the run must stop (a refused key, an
   * unknown model, a configuration every request fails on, an abort); rows already answered are in the cache.
   */
  async resolve(
    rows: readonly ResultRow[],
    docs: readonly DocumentInput[],
    context: ShardFallbackContext,
  ): Promise<ResultRow[]> {
    const out = withoutFallback(rows);
    const { config, codebook } = this.options;
    const document = (row: ResultRow, doc: DocumentInput): RoutedDocument => ({
      documentId: documentIdText(row.id),
      row: row.row,
      shardId: context.shardId,
      doc,
    });
    // Each routed document: how its row is answered (one request sequence per document, whatever it is asked).
    const routed: { readonly index: number; readonly answer: (signal: AbortSignal) => Promise<ResultRow> }[] = [];
    const questions = this.questionsPrompt === null ? null : codebook.questions;
    for (const { index, asked } of routedRows(config, questions, rows)) {
      const row = rows[index] as ResultRow;
      const doc = docs[index];
      if (doc === undefined) continue;
      this.counts.routed += asked === null ? 1 : asked.length;
      routed.push({
        index,
        answer:
          asked === null
            ? async (signal) => withFallbackOutcome(row, await this.ask(document(row, doc), signal))
            : async (signal) => withQuestionOutcomes(row, await this.askQuestions(document(row, doc), asked, signal)),
      });
    }
    if (routed.length === 0) return out;

    // A fatal error in one document stops the others (their requests are aborted and audited), then is thrown.
    const stop = new AbortController();
    const signal = context.signal === undefined ? stop.signal : AbortSignal.any([stop.signal, context.signal]);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < routed.length) {
        const item = routed[next++] as (typeof routed)[number];
        out[item.index] = await item.answer(signal);
      }
    };
    const workers = Array.from({ length: Math.min(this.options.config.concurrency, routed.length) }, () =>
      worker().catch((error: unknown) => {
        stop.abort(error);
        throw error;
      }),
    );
    const settled = await Promise.allSettled(workers);
    if (this.fatal !== null) throw this.fatal;
    context.signal?.throwIfAborted();
    const failure = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
    return out;
  }

  /**
   * One routed document's outcome (cluster mode: the coordinator answers the fallback queue's jobs one by one).
   * Throws only when the run must stop, as resolve does.
   */
  async answer(document: RoutedDocument, signal?: AbortSignal): Promise<FallbackOutcome> {
    if (this.prompt === null) {
      throw new RescaleError(
        'INTERNAL',
        'a fallback job without questions reached a codebook asked by question; the worker and the coordinator ' +
          'run different codebooks or rescale versions',
      );
    }
    this.counts.routed += 1;
    return this.ask(document, signal ?? new AbortController().signal);
  }

  /**
   * One routed document's unsure questions (cluster mode, a codebook asked by question: several questions or a
   * multi-label one), asked in one request as resolve asks them; each asked question's outcome.
   */
  async answerQuestions(
    document: RoutedDocument,
    asked: readonly number[],
    signal?: AbortSignal,
  ): Promise<Map<number, FallbackOutcome>> {
    const questions = this.options.codebook.questions.length;
    if (this.questionsPrompt === null || asked.some((q) => q >= questions)) {
      throw new RescaleError(
        'INTERNAL',
        `a fallback job asks questions ${asked.join(', ')} of a codebook with ${questions} question(s) not asked by ` +
          'question; the worker and the coordinator run different codebooks or rescale versions',
      );
    }
    this.counts.routed += asked.length;
    return this.askQuestions(document, asked, signal ?? new AbortController().signal);
  }

  stats(): FallbackStats {
    const c = this.counts;
    return {
      routed: c.routed,
      answered: c.answered,
      invalid: c.invalid,
      overBudget: c.overBudget,
      failed: c.failed,
      cacheHits: c.cacheHits,
      requests: c.requests,
      promptTokens: c.promptTokens,
      completionTokens: c.completionTokens,
      costUsd: fromNanoUsd(c.costNanoUsd),
      budgetCommittedUsd: fromNanoUsd(this.budget.snapshot().committedNanoUsd),
    };
  }

  async close(): Promise<void> {
    await this.audit.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** One document: a request, then (for an answer outside the set) the conversation continued with a correction. */
  private async ask(item: RoutedDocument, signal: AbortSignal): Promise<FallbackOutcome> {
    const { config } = this.options;
    const prompt = this.prompt as FallbackPrompt;
    const answered = (content: string | null): boolean => prompt.parse(content).kind === 'label';
    let messages = prompt.messages(item.doc);
    let reason = '';
    const rounds = config.invalidRetries + 1;
    for (let round = 1; round <= rounds; round++) {
      const body = prompt.body(messages);
      const exchange = await this.exchange(body, item, signal, answered);
      if (exchange.kind !== 'response') {
        if (round > 1) break; // it did answer, outside the set; the retry could not be made
        if (exchange.kind === 'over_budget') this.counts.overBudget++;
        else this.counts.failed++;
        return {
          status: exchange.kind === 'over_budget' ? 'over_budget' : 'fallback_failed',
          label: null,
          confidence: null,
          error: exchange.reason,
        };
      }
      const { completion } = exchange;
      const parsed = prompt.parse(completion.content);
      if (parsed.kind === 'label') {
        this.counts.answered++;
        return {
          status: 'ok',
          label: parsed.label.name,
          confidence: labelConfidence(completion.content ?? '', parsed.span, completion.logprobs),
          error: null,
        };
      }
      reason = completion.refusal !== null ? 'the model refused to answer' : parsed.reason;
      messages = prompt.correction(messages, completion.content ?? completion.refusal ?? '');
    }
    this.counts.invalid++;
    return {
      status: 'fallback_invalid',
      label: null,
      confidence: null,
      error: `${reason} (${rounds} request${rounds === 1 ? '' : 's'}); the local label is kept`,
    };
  }

  /**
   * A multi-question document's unsure questions, asked in one request; answers outside a question's labels are
   * asked again (the same questions, with a correction) up to invalid_retries times. Each asked question's outcome.
   */
  private async askQuestions(
    item: RoutedDocument,
    asked: readonly number[],
    signal: AbortSignal,
  ): Promise<Map<number, FallbackOutcome>> {
    const { config } = this.options;
    const prompt = this.questionsPrompt as QuestionsFallbackPrompt;
    const answered = (content: string | null): boolean => prompt.answersAll(content, asked);
    const outcomes = new Map<number, FallbackOutcome>();
    const reasons = new Map<number, string>();
    let messages = prompt.messages(item.doc, asked);
    const rounds = config.invalidRetries + 1;
    for (let round = 1; round <= rounds; round++) {
      const exchange = await this.exchange(prompt.body(messages, asked), item, signal, answered);
      if (exchange.kind !== 'response') {
        if (round > 1) break; // it did answer, outside a set; the retry could not be made
        for (const q of asked) {
          if (exchange.kind === 'over_budget') this.counts.overBudget++;
          else this.counts.failed++;
          outcomes.set(q, {
            status: exchange.kind === 'over_budget' ? 'over_budget' : 'fallback_failed',
            label: null,
            ...this.noLabels(q),
            confidence: null,
            error: exchange.reason,
          });
        }
        return outcomes;
      }
      const { completion } = exchange;
      const wrong: number[] = [];
      prompt.parse(completion.content, asked).forEach((reading, k) => {
        const q = asked[k] as number;
        if (outcomes.has(q)) return; // answered in an earlier round
        if (reading.kind !== 'invalid') {
          this.counts.answered++;
          outcomes.set(q, {
            status: 'ok',
            ...(reading.kind === 'label'
              ? { label: reading.label.name }
              : { label: null, labels: reading.labels.map((label) => label.name) }),
            confidence: labelConfidence(completion.content ?? '', reading.span, completion.logprobs),
            error: null,
          });
        } else {
          wrong.push(q);
          reasons.set(q, completion.refusal !== null ? 'the model refused to answer' : reading.reason);
        }
      });
      if (wrong.length === 0) return outcomes;
      messages = prompt.correction(messages, completion.content ?? completion.refusal ?? '', asked, wrong);
    }
    for (const q of asked) {
      if (outcomes.has(q)) continue;
      this.counts.invalid++;
      outcomes.set(q, {
        status: 'fallback_invalid',
        label: null,
        ...this.noLabels(q),
        confidence: null,
        error: `${reasons.get(q) ?? 'no answer'} (${rounds} request${rounds === 1 ? '' : 's'}); the local label stays`,
      });
    }
    return outcomes;
  }

  /** A multi-label question's outcome without an answer carries `labels: null` (as its result columns read back). */
  private noLabels(q: number): { labels?: null } {
    return this.options.codebook.questions[q]?.type === 'multi_label' ? { labels: null } : {};
  }

  /** One request's answer: from the cache, or sent (with retries) within the budget and the rate limit. */
  private async exchange(
    body: ChatRequestBody,
    item: RoutedDocument,
    signal: AbortSignal,
    answered: (content: string | null) => boolean,
  ): Promise<Exchange> {
    const key = exchangeKey(this.endpoint, body);
    const base = { document_id: item.documentId, row: item.row, shard_id: item.shardId, request_hash: key };
    // Identical requests in flight at once (duplicate documents) are sent once: the others wait, then read the cache.
    for (;;) {
      const hit = await this.fromCache(key, base, answered);
      if (hit !== null) return hit;
      const running = this.inflight.get(key);
      if (running === undefined) break;
      const shared = await running.catch(() => null);
      if (shared !== null && shared.kind !== 'response') return shared;
      if (shared === null) break;
    }
    const live = this.fetchLive(body, base, item, signal, answered);
    this.inflight.set(key, live);
    try {
      return await live;
    } finally {
      this.inflight.delete(key);
    }
  }

  private async fromCache(
    key: string,
    base: AuditBase,
    answered: (content: string | null) => boolean,
  ): Promise<Exchange | null> {
    const { config } = this.options;
    const cached = await this.cache.get(key);
    if (cached !== null) {
      let completion: ParsedCompletion | null = null;
      try {
        completion = parseCompletion(cached.response);
      } catch {
        completion = null; // only responses that parse are stored; a damaged entry is fetched again
      }
      if (completion !== null) {
        this.counts.cacheHits++;
        await this.audit.write({
          event: 'cache_hit',
          time: new Date().toISOString(),
          ...base,
          model: config.model,
          response_model: completion.model,
          outcome: answered(completion.content) ? 'label' : 'invalid_label',
          prompt_tokens: completion.usage?.promptTokens ?? null,
          completion_tokens: completion.usage?.completionTokens ?? null,
          cost_usd: 0,
        });
        return { kind: 'response', completion };
      }
    }
    return null;
  }

  private async fetchLive(
    body: ChatRequestBody,
    base: AuditBase,
    item: RoutedDocument,
    signal: AbortSignal,
    answered: (content: string | null) => boolean,
  ): Promise<Exchange> {
    const { config, mode } = this.options;
    if (mode === 'offline' || this.client === null) {
      await this.audit.write({
        event: 'skipped',
        time: new Date().toISOString(),
        ...base,
        model: config.model,
        outcome: 'over_budget',
      });
      return { kind: 'over_budget', reason: 'offline replay: no cached answer for this request' };
    }

    const bodyBytes = Buffer.byteLength(JSON.stringify(body), 'utf8');
    const reserveNano = worstCaseNanoUsd(config, body);
    const rateEstimate = Math.ceil(bodyBytes / 4) + config.maxOutputTokens;

    for (let attempt = 1; ; attempt++) {
      if (this.fatal !== null) throw this.fatal;
      const reservation = await this.budget.reserve(reserveNano, signal);
      if (reservation === null) {
        this.warnBudget();
        await this.audit.write({
          event: 'skipped',
          time: new Date().toISOString(),
          ...base,
          model: config.model,
          outcome: 'over_budget',
        });
        return { kind: 'over_budget', reason: this.budgetReason() };
      }
      const result = await this.sendOnce(
        body,
        reservation,
        rateEstimate,
        randomUUID(),
        attempt,
        base,
        signal,
        answered,
      );
      if (result.kind === 'response') {
        this.anySuccess = true;
        this.badRequestsInARow = 0;
        return result;
      }
      const failure = result.failure;
      if (failure.kind === 'aborted') throw signal.reason ?? new RescaleError('ABORTED', 'fallback request aborted');
      if (failure.fatal) throw this.stopRun(failure);
      if (failure.kind === 'bad_request') {
        this.badRequestsInARow++;
        if (!this.anySuccess && this.badRequestsInARow >= BAD_REQUESTS_BEFORE_STOP) throw this.stopRun(failure);
      }
      if (failure.kind === 'rate_limited' && failure.retryAfterMs !== null)
        this.rateLimiter.pauseUntil(Date.now() + Math.min(failure.retryAfterMs, MAX_RETRY_AFTER_MS));
      if (!failure.retryable || attempt > config.maxRetries) {
        return {
          kind: 'failed',
          reason: `${failure.message} (${attempt} request${attempt === 1 ? '' : 's'}); the local label is kept`,
        };
      }
      if (failure.retryAfterMs !== null && failure.retryAfterMs > MAX_RETRY_AFTER_MS) {
        return {
          kind: 'failed',
          reason:
            `${failure.message}: the server asked to wait ${Math.round(failure.retryAfterMs / 1000)} s; the ` +
            'local label is kept',
        };
      }
      const delay = backoffDelay(attempt, failure.retryAfterMs, this.backoff, this.random);
      this.logger.log('debug', 'fallback request failed; retrying', {
        row: item.row,
        attempt,
        kind: failure.kind,
        httpStatus: failure.httpStatus,
        delayMs: delay,
      });
      await sleep(delay, undefined, { signal });
    }
  }

  /** Sends once under a reservation; settles it and writes the `call` line whatever happens. */
  private async sendOnce(
    body: ChatRequestBody,
    reservation: Reservation,
    rateEstimate: number,
    callId: string,
    attempt: number,
    base: AuditBase,
    signal: AbortSignal,
    answered: (content: string | null) => boolean,
  ): Promise<{ kind: 'response'; completion: ParsedCompletion } | { kind: 'error'; failure: CallFailure }> {
    const { config, apiKey } = this.options;
    try {
      await this.rateLimiter.acquire(rateEstimate, signal);
      await this.audit.write({
        event: 'reserve',
        time: new Date().toISOString(),
        call_id: callId,
        ...base,
        attempt,
        reserved_usd: fromNanoUsd(reservation.nanoUsd),
      });
    } catch (error) {
      await this.budget.settle(reservation, 0); // nothing was sent
      throw error;
    }
    this.counts.requests++;
    const started = performance.now();
    const sent = await (this.client as FallbackClient).send(body, signal);
    const latency = Math.round(performance.now() - started);
    let completion: ParsedCompletion | null = null;
    let failure: CallFailure | null = null;
    let unstored: unknown = null;
    if (sent.ok) {
      try {
        completion = parseCompletion(sent.text);
      } catch (error) {
        failure = classifyFailure(error, apiKey, false);
      }
      if (completion !== null) {
        try {
          // Stored before it is used: a crash from here on cannot make the next run pay for this answer again.
          await this.cache.put({
            format: CACHE_FORMAT,
            key: base.request_hash,
            endpoint: this.endpoint,
            request: body,
            response: sent.text,
            receivedAt: new Date().toISOString(),
          });
        } catch (error) {
          unstored = error;
        }
      }
    } else {
      failure = classifyFailure(sent.error, apiKey, sent.timedOut);
    }
    let costNano: number;
    if (completion !== null) {
      costNano =
        completion.usage === null
          ? reservation.nanoUsd
          : priceNanoUsd(config.price, completion.usage.promptTokens, completion.usage.completionTokens, Math.round);
      if (costNano > reservation.nanoUsd) {
        this.logger.log(
          'warn',
          'a fallback response cost more than its worst-case reservation; check max_output_tokens is honoured by the ' +
            'server',
          {
            reservedUsd: fromNanoUsd(reservation.nanoUsd),
            costUsd: fromNanoUsd(costNano),
          },
        );
      }
    } else {
      costNano = failure?.mayBeBilled === true ? reservation.nanoUsd : 0;
    }
    await this.budget.settle(reservation, costNano);
    this.counts.costNanoUsd += costNano;
    if (completion?.usage) {
      this.counts.promptTokens += completion.usage.promptTokens;
      this.counts.completionTokens += completion.usage.completionTokens;
    }
    const outcome: CallOutcome =
      completion !== null
        ? answered(completion.content)
          ? 'label'
          : 'invalid_label'
        : (failure?.kind ?? 'connection');
    await this.audit.write({
      event: 'call',
      time: new Date().toISOString(),
      call_id: callId,
      ...base,
      attempt,
      model: config.model,
      response_model: completion?.model ?? null,
      outcome,
      http_status: completion !== null ? 200 : (failure?.httpStatus ?? null),
      prompt_tokens: completion?.usage?.promptTokens ?? null,
      completion_tokens: completion?.usage?.completionTokens ?? null,
      cost_usd: fromNanoUsd(costNano),
      latency_ms: latency,
      retry_after_ms: failure?.retryAfterMs ?? null,
      error: failure?.message ?? null,
    });
    if (unstored !== null) {
      // Paid for and audited, but not stored: using it would break "stored before used", so the run stops.
      throw new RescaleError(
        'OUTPUT_NOT_WRITABLE',
        `cannot write the fallback cache ${this.cache.dir} (${errorMessage(unstored)}); free space or fix its ` +
          'permissions, then re-run',
        { cause: unstored, retryable: true },
      );
    }
    return completion !== null ? { kind: 'response', completion } : { kind: 'error', failure: failure as CallFailure };
  }

  private budgetReason(): string {
    const { budget } = this.options.config;
    const caps = [
      budget.usd !== null ? `$${budget.usd}` : null,
      budget.requests !== null ? `${budget.requests} requests` : null,
    ].filter((c) => c !== null);
    return `fallback budget reached (${caps.join(', ')}); the local label is kept`;
  }

  private warnBudget(): void {
    if (this.budgetWarned) return;
    this.budgetWarned = true;
    const snapshot = this.budget.snapshot();
    this.logger.log(
      'warn',
      'fallback budget reached: remaining routed documents keep their local label (fallback_status over_budget)',
      {
        committedUsd: fromNanoUsd(snapshot.committedNanoUsd),
        requests: snapshot.requests,
        budgetUsd: this.options.config.budget.usd,
        budgetRequests: this.options.config.budget.requests,
      },
    );
  }

  /** The error that stops the run, made once, naming what to fix (never the key). */
  private stopRun(failure: CallFailure): RescaleError {
    if (this.fatal !== null) return this.fatal;
    const { config } = this.options;
    const where = describeEndpoint(config);
    if (failure.kind === 'auth') {
      this.fatal = new RescaleError(
        'FALLBACK_AUTH',
        `the fallback endpoint ${where} refused the API key from ${describeKeySource(config.apiKey)} (HTTP ` +
          `${failure.httpStatus}); set a valid key there, or run with --no-fallback`,
      );
    } else if (failure.kind === 'not_found') {
      this.fatal = new RescaleError(
        'FALLBACK_REJECTED',
        `the fallback endpoint ${where} has no model "${config.model}" (${failure.message}); check fallback.model ` +
          (config.endpoint === null ? 'and fallback.base_url' : 'and the endpoint list'),
      );
    } else if (failure.kind === 'quota') {
      this.fatal = new RescaleError(
        'FALLBACK_REJECTED',
        `the fallback account behind ${where} has no quota left (${failure.message}); add credit or lower the ` +
          'budget, then re-run (answers so far are cached)',
      );
    } else {
      this.fatal = new RescaleError(
        'FALLBACK_REJECTED',
        `the fallback endpoint ${where} rejected the first ${this.badRequestsInARow} requests (${failure.message}); ` +
          'check fallback.model, fallback.response_format (try json_object or text for servers without JSON-schema ' +
          'outputs), fallback.logprobs and fallback.max_tokens_field',
      );
    }
    return this.fatal;
  }
}
