// How a failed fallback request is recognised and retried, in one place: errors from the HTTP client are
// classified once (retryable or not, billed or not, the server's Retry-After), and backoff is exponential with
// jitter unless the server says how long to wait.

import { APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import { RescaleError } from '../contracts/errors.js';
import { redactKey } from './api-key.js';

export type FailureKind =
  | 'rate_limited'
  | 'server_error'
  | 'timeout'
  | 'connection'
  | 'malformed'
  | 'auth'
  | 'quota'
  | 'not_found'
  | 'bad_request'
  | 'aborted';

export interface CallFailure {
  readonly kind: FailureKind;
  /** Another attempt may succeed. */
  readonly retryable: boolean;
  /** The whole run should stop: every later request would fail the same way (key, quota, model). */
  readonly fatal: boolean;
  /**
   * The request may have been processed and billed (a timeout, an abort or an unreadable 200), so its reservation
   * is kept as spent; a refusal with an HTTP error status was not billed.
   */
  readonly mayBeBilled: boolean;
  readonly httpStatus: number | null;
  /** From Retry-After / retry-after-ms, in ms; null when the server did not say. */
  readonly retryAfterMs: number | null;
  /** Short, without the API key, without document text. */
  readonly message: string;
}

/**
 * Thrown by the client for a 200 whose body is not a chat completion: retried, never cached. It never leaves the
 * request loop (classifyFailure turns it into a `malformed` call), so its short message is what the audit and the
 * row's fallback error say, as before.
 */
export class MalformedResponseError extends RescaleError {
  constructor(message: string) {
    super('FALLBACK_MALFORMED', message, { retryable: true });
    this.name = 'MalformedResponseError';
  }
}

const MESSAGE_CHARS = 200;

/** The longest wait a Retry-After may impose on one request; beyond it the request counts as failed. */
export const MAX_RETRY_AFTER_MS = 10 * 60_000;

/** A server's machine-readable error field (code, type, param) when it looks like one; anything else is dropped. */
function errorToken(value: unknown): string | null {
  if (typeof value !== 'string' && typeof value !== 'number') return null;
  const text = String(value);
  return /^[A-Za-z0-9_.:-]{1,64}$/.test(text) ? text : null;
}

/**
 * What is stored of a server's error (the row's fallback_error, the audit file, logs, messages): the HTTP status and
 * the error's code, type and param when they are short identifiers, never the free-text message, which a server may
 * use to quote the prompt (document text) or part of the key.
 */
export function serverErrorSummary(
  status: number | null,
  fields: { readonly code?: unknown; readonly type?: unknown; readonly param?: unknown } = {},
): string {
  const parts = [status === null ? 'error' : `HTTP ${status}`];
  for (const name of ['code', 'type', 'param'] as const) {
    const token = errorToken(fields[name]);
    if (token !== null && !(name === 'type' && parts.includes(`code=${token}`))) parts.push(`${name}=${token}`);
  }
  return parts.join(' ');
}

const isFieldRecord = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

export function classifyFailure(error: unknown, apiKey: string | null, timedOut: boolean): CallFailure {
  const short = (text: string): string => {
    const clean = redactKey(text, apiKey).replace(/\s+/g, ' ').trim();
    return clean.length > MESSAGE_CHARS ? `${clean.slice(0, MESSAGE_CHARS)}…` : clean;
  };
  const base = { retryAfterMs: null, httpStatus: null, fatal: false };
  if (error instanceof MalformedResponseError) {
    return { ...base, kind: 'malformed', retryable: true, mayBeBilled: true, message: short(error.message) };
  }
  if (timedOut || error instanceof APIConnectionTimeoutError) {
    return { ...base, kind: 'timeout', retryable: true, mayBeBilled: true, message: 'no response before the timeout' };
  }
  if (error instanceof APIUserAbortError || (error instanceof Error && error.name === 'AbortError')) {
    return { ...base, kind: 'aborted', retryable: false, mayBeBilled: true, message: 'aborted' };
  }
  if (error instanceof APIError && typeof error.status === 'number') {
    const status = error.status;
    const retryAfterMs = retryAfter(error.headers);
    const body = isFieldRecord(error.error) ? error.error : {};
    const code = typeof error.code === 'string' ? error.code : null;
    // Status, code, type and param only: the body's message is free text and may quote the document.
    const summary = serverErrorSummary(status, {
      code: error.code ?? body.code,
      type: error.type ?? body.type,
      param: error.param ?? body.param,
    });
    const common = { httpStatus: status, retryAfterMs, mayBeBilled: false };
    if (status === 401 || status === 403) {
      // The server's text may quote part of the key ("Incorrect API key provided: sk-...abcd"): never copied.
      return {
        ...common,
        kind: 'auth',
        retryable: false,
        fatal: true,
        message: `HTTP ${status}: the endpoint refused the API key`,
      };
    }
    if (status === 429 && (code === 'insufficient_quota' || error.type === 'insufficient_quota')) {
      return { ...common, kind: 'quota', retryable: false, fatal: true, message: summary };
    }
    if (status === 429) return { ...common, kind: 'rate_limited', retryable: true, fatal: false, message: summary };
    if (status === 404) return { ...common, kind: 'not_found', retryable: false, fatal: true, message: summary };
    if (status === 408 || status === 409 || status >= 500) {
      return { ...common, kind: 'server_error', retryable: true, fatal: false, message: summary };
    }
    return { ...common, kind: 'bad_request', retryable: false, fatal: false, message: summary };
  }
  // Not an answer from the server (refused connection, DNS, TLS): the local error's name and system code only.
  const cause = error instanceof Error && isFieldRecord(error.cause) ? error.cause : {};
  const systemCode = errorToken(cause.code) ?? (isFieldRecord(error) ? errorToken(error.code) : null);
  const name = error instanceof Error ? (errorToken(error.name) ?? 'Error') : 'error';
  const message = `connection failed (${name}${systemCode !== null ? ` ${systemCode}` : ''})`;
  return { ...base, kind: 'connection', retryable: true, mayBeBilled: false, message };
}

/** Retry-After as ms: OpenAI's `retry-after-ms`, else `Retry-After` in seconds or as an HTTP date. */
export function retryAfter(headers: Headers | undefined, now = Date.now()): number | null {
  if (headers === undefined) return null;
  const ms = Number.parseFloat(headers.get('retry-after-ms') ?? '');
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const value = headers.get('retry-after');
  if (value === null) return null;
  const seconds = Number.parseFloat(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - now) : null;
}

export interface BackoffOptions {
  readonly baseMs: number;
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 60_000 };

/**
 * Delay before retry number `retry` (1 for the first retry): the server's Retry-After when given (plus up to 10%
 * jitter, so clients released together do not return together), else base·2^(retry−1) capped, with "equal jitter"
 * (half fixed, half random) so the wait grows with every failure yet never lines up across workers.
 */
export function backoffDelay(
  retry: number,
  retryAfterMs: number | null,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  if (retryAfterMs !== null) return Math.round(retryAfterMs * (1 + 0.1 * random()));
  const exponential = Math.min(options.maxMs, options.baseMs * 2 ** (retry - 1));
  return Math.round(exponential / 2 + (exponential / 2) * random());
}
