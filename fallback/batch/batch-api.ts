// The OpenAI Batch API as a way to fill the fallback's response cache at the batch price: the requests the fallback
// stage would send are written as JSONL (custom_id = the cache key), uploaded and run within the provider's 24 h
// window; the output file's answers go into the content-addressed cache, and the error file's items — and items in
// neither file — are reported and left out of the cache, so the next run sends them live (or in a new batch).
// Nothing is silently lost: every submitted request ends in exactly one of answered, failed, missing.

import OpenAI, { toFile } from 'openai';
import type { Codebook } from '../../contracts/codebook.js';
import { RescaleError } from '../../contracts/errors.js';
import type { FallbackConfig } from '../../contracts/fallback-config.js';
import { openAIClient } from '../fallback-client.js';
import { classifyFailure, serverErrorSummary } from '../retry-policy.js';
import type { ChatRequestBody } from '../fallback-prompt.js';
import { EndpointList } from '../endpoint-list.js';
import { resolveFallback } from '../resolve-fallback.js';

/**
 * The codebook's fallback with its key: the Batch API path runs live only (there is no offline batch). `endpoints`:
 * the `--endpoints FILE` a codebook's `fallback.endpoint` names.
 */
export async function liveBatchFallback(
  codebook: Codebook,
  env: Readonly<Record<string, string | undefined>>,
  endpoints?: string,
): Promise<{ readonly config: FallbackConfig; readonly apiKey: string; readonly identity: string }> {
  const plan = await resolveFallback(codebook, {
    env,
    endpoints: endpoints === undefined ? null : await EndpointList.load(endpoints),
  });
  if (!plan.active || plan.apiKey === null) {
    const why = plan.active ? 'no key' : plan.reason;
    throw new RescaleError('CONFIG_INVALID', `the Batch API path needs the codebook's fallback and its key: ${why}`);
  }
  return { config: plan.config, apiKey: plan.apiKey, identity: plan.identity };
}

/** One line of a batch input file. */
export interface BatchInputLine {
  readonly custom_id: string;
  readonly method: 'POST';
  readonly url: '/v1/chat/completions';
  readonly body: ChatRequestBody;
}

export type BatchState =
  'validating' | 'failed' | 'in_progress' | 'finalizing' | 'completed' | 'expired' | 'cancelling' | 'cancelled';

/** The batch as the provider reports it. */
export interface BatchInfo {
  readonly id: string;
  readonly status: BatchState;
  readonly outputFileId: string | null;
  readonly errorFileId: string | null;
  readonly counts: { readonly total: number; readonly completed: number; readonly failed: number } | null;
  /** Why the whole batch failed validation (status failed), when the provider says. */
  readonly errors: readonly string[];
}

/** States after which the provider writes no more results. */
export const FINAL_BATCH_STATES: readonly BatchState[] = ['failed', 'completed', 'expired', 'cancelled'];

/** A result line, from the output or the error file: a response body (any status), or an error without one. */
export interface BatchResultLine {
  readonly customId: string;
  readonly statusCode: number | null;
  /** The response body as JSON text when the status is 200, for the cache (stored exactly as a live response). */
  readonly body: string | null;
  readonly error: string | null;
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/** Parses an output or error file; lines that are not results (damaged) are returned as `unreadable` counts. */
export function parseBatchResults(text: string): { readonly lines: BatchResultLine[]; readonly unreadable: number } {
  const lines: BatchResultLine[] = [];
  let unreadable = 0;
  for (const raw of text.split('\n')) {
    if (raw.trim() === '') continue;
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      unreadable++;
      continue;
    }
    if (!isRecord(json) || typeof json.custom_id !== 'string') {
      unreadable++;
      continue;
    }
    const response = isRecord(json.response) ? json.response : null;
    const statusCode = response !== null && typeof response.status_code === 'number' ? response.status_code : null;
    const body = response !== null && isRecord(response.body) ? response.body : null;
    // Status, code and type only: an item's error message is free text and may quote the prompt (document text).
    let error: string | null = null;
    if (isRecord(json.error)) error = serverErrorSummary(null, json.error);
    else if (statusCode !== 200) {
      const inner = body !== null && isRecord(body.error) ? body.error : {};
      error =
        statusCode === null ? `${serverErrorSummary(null, inner)} (no status)` : serverErrorSummary(statusCode, inner);
    }
    lines.push({
      customId: json.custom_id,
      statusCode,
      body: statusCode === 200 && body !== null ? JSON.stringify(body) : null,
      error,
    });
  }
  return { lines, unreadable };
}

/** Files and batches on an OpenAI-compatible endpoint, with the same explicit settings as the chat client. */
export class BatchApiClient {
  private readonly client: OpenAI;

  constructor(
    private readonly config: FallbackConfig,
    private readonly apiKey: string,
  ) {
    // The SDK's own retries (3) for these few calls: uploads and polls are idempotent or fail before acting.
    this.client = openAIClient(config, apiKey, { maxRetries: 3, timeoutMs: Math.max(config.timeoutMs, 120_000) });
  }

  /**
   * Uploads the input file (retried: a duplicate upload costs nothing) and creates the batch, once: creating is
   * not idempotent, so a lost answer is not retried. A failure says whether a batch may exist (`maybeCreated`).
   */
  async submit(jsonl: string, metadata: Record<string, string>): Promise<BatchInfo> {
    const file = await this.client.files
      .create({
        file: await toFile(Buffer.from(jsonl, 'utf8'), 'rescale-fallback-batch.jsonl', { type: 'application/jsonl' }),
        purpose: 'batch',
      })
      .catch((error: unknown) => {
        throw this.submitError(error, false);
      });
    try {
      return toInfo(
        await this.client.batches.create(
          { input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata },
          { maxRetries: 0 },
        ),
      );
    } catch (error) {
      // An HTTP error status means the server refused; no status (timeout, connection lost) means it may have created
      // it.
      throw this.submitError(error, !(error instanceof OpenAI.APIError && typeof error.status === 'number'));
    }
  }

  private submitError(error: unknown, maybeCreated: boolean): BatchSubmitError {
    // Classified like a live request: status, code and type of a refusal, never the provider's free text.
    return new BatchSubmitError(this.config.baseUrl, classifyFailure(error, this.apiKey, false).message, maybeCreated);
  }

  /** The batch created with `rescale_tag` = tag, if any (after a create whose answer was lost). */
  async findByTag(tag: string): Promise<BatchInfo | null> {
    for await (const batch of this.client.batches.list({ limit: 100 })) {
      if (batch.metadata?.rescale_tag === tag) return toInfo(batch);
    }
    return null;
  }

  async retrieve(batchId: string): Promise<BatchInfo> {
    return toInfo(await this.client.batches.retrieve(batchId));
  }

  async content(fileId: string): Promise<string> {
    const response = await this.client.files.content(fileId);
    return response.text();
  }
}

/**
 * The batch was not submitted, or may have been without an answer saying so. Never retried: creating a batch is not
 * idempotent. The provider's error is kept as redacted text only (it may quote part of the key), not as `cause`.
 */
export class BatchSubmitError extends RescaleError {
  constructor(
    baseUrl: string,
    /** The provider's or the client's message, with the key redacted. */
    readonly detail: string,
    /** True when the batch may exist at the provider although no answer said so. */
    readonly maybeCreated: boolean,
  ) {
    super(
      'FALLBACK_REJECTED',
      maybeCreated
        ? `the Batch API at ${baseUrl} did not answer the request that creates the batch (${detail}); ` +
            'it may have been created: run "rescale batch collect" before submitting again'
        : `the Batch API at ${baseUrl} (codebook field "fallback.base_url") did not take the batch: ${detail}; ` +
            'check that the endpoint offers /v1/files and /v1/batches',
    );
    this.name = 'BatchSubmitError';
  }
}

function toInfo(batch: OpenAI.Batches.Batch): BatchInfo {
  const counts = batch.request_counts;
  return {
    id: batch.id,
    status: batch.status as BatchState,
    outputFileId: batch.output_file_id ?? null,
    errorFileId: batch.error_file_id ?? null,
    counts:
      counts === undefined || counts === null
        ? null
        : { total: counts.total, completed: counts.completed, failed: counts.failed },
    // The batch's own errors by code and line only: their messages may quote an input line.
    errors: (batch.errors?.data ?? []).map(
      (e) =>
        `${serverErrorSummary(null, { code: e.code, param: e.param })}` +
        `${typeof e.line === 'number' ? ` (line ${e.line})` : ''}`,
    ),
  };
}
