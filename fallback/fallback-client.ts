// One Chat Completions request to an OpenAI-compatible endpoint (OpenAI, Azure OpenAI, vLLM, llama.cpp's server)
// through the official `openai` client, with its own retries off (retries, budget and rate limits are ours) and
// nothing taken from the environment: base URL, key, organisation and log level are all explicit.

import OpenAI from 'openai';
import { RescaleError } from '../contracts/errors.js';
import type { FallbackConfig } from '../contracts/fallback-config.js';
import type { ChatRequestBody, LogprobToken } from './fallback-prompt.js';
import { MalformedResponseError } from './retry-policy.js';

export type SendResult =
  | { readonly ok: true; readonly text: string }
  | { readonly ok: false; readonly error: unknown; readonly timedOut: boolean };

/** The parts of a chat completion the fallback uses. */
export interface ParsedCompletion {
  readonly content: string | null;
  readonly refusal: string | null;
  readonly finishReason: string | null;
  readonly logprobs: LogprobToken[] | null;
  readonly usage: { readonly promptTokens: number; readonly completionTokens: number } | null;
  /** The model the server says answered (e.g. a dated version). */
  readonly model: string | null;
}

/** The official client for the codebook's endpoint, with nothing taken from the environment. */
export function openAIClient(
  config: FallbackConfig,
  apiKey: string,
  options: { readonly maxRetries: number; readonly timeoutMs: number },
): OpenAI {
  // A named endpoint not yet resolved has no URL; the SDK would fall back to OPENAI_BASE_URL or api.openai.com.
  if (config.baseUrl === '') {
    throw new RescaleError('INTERNAL', `the fallback endpoint "${config.endpoint ?? ''}" was not resolved before use`);
  }
  return new OpenAI({
    apiKey,
    baseURL: config.baseUrl,
    // Explicit nulls: the SDK would otherwise read OPENAI_ORG_ID, OPENAI_PROJECT_ID, OPENAI_ADMIN_KEY ... and
    // send them to whatever endpoint the codebook names.
    adminAPIKey: null,
    organization: null,
    project: null,
    webhookSecret: null,
    maxRetries: options.maxRetries,
    timeout: options.timeoutMs,
    logLevel: 'off',
    ...(config.authHeader === 'api-key' ? { defaultHeaders: { 'api-key': apiKey, Authorization: null } } : {}),
    ...(config.apiVersion !== null ? { defaultQuery: { 'api-version': config.apiVersion } } : {}),
  });
}

export class FallbackClient {
  private readonly client: OpenAI;

  constructor(
    private readonly config: FallbackConfig,
    apiKey: string,
  ) {
    this.client = openAIClient(config, apiKey, { maxRetries: 0, timeoutMs: config.timeoutMs });
  }

  /** Sends one request; the body is read within the same timeout as the headers. Never throws. */
  async send(body: ChatRequestBody, signal?: AbortSignal): Promise<SendResult> {
    const timer = new AbortController();
    const timeout = setTimeout(() => timer.abort(), this.config.timeoutMs);
    const combined = signal === undefined ? timer.signal : AbortSignal.any([timer.signal, signal]);
    try {
      const response = await this.client.chat.completions
        .create(body as unknown as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming, {
          signal: combined,
          maxRetries: 0,
          timeout: this.config.timeoutMs,
        })
        .asResponse();
      return { ok: true, text: await response.text() };
    } catch (error) {
      return { ok: false, error, timedOut: timer.signal.aborted && signal?.aborted !== true };
    } finally {
      clearTimeout(timeout);
    }
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/** Reads a response body as a chat completion; MalformedResponseError when it is not one (retried, not cached). */
export function parseCompletion(text: string): ParsedCompletion {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new MalformedResponseError(`the response is not JSON (${text.length} bytes)`);
  }
  if (!isRecord(json) || !Array.isArray(json.choices))
    throw new MalformedResponseError('the response has no "choices"');
  const choice: unknown = json.choices[0];
  if (!isRecord(choice) || !isRecord(choice.message))
    throw new MalformedResponseError('the response has no choices[0].message');
  const { message } = choice;
  if (message.content !== null && message.content !== undefined && typeof message.content !== 'string') {
    throw new MalformedResponseError('choices[0].message.content is not a string');
  }
  let logprobs: LogprobToken[] | null = null;
  if (isRecord(choice.logprobs) && Array.isArray(choice.logprobs.content)) {
    logprobs = [];
    for (const item of choice.logprobs.content) {
      if (!isRecord(item) || typeof item.token !== 'string' || typeof item.logprob !== 'number') {
        logprobs = null;
        break;
      }
      logprobs.push({ token: item.token, logprob: item.logprob });
    }
  }
  const usage =
    isRecord(json.usage) &&
    typeof json.usage.prompt_tokens === 'number' &&
    typeof json.usage.completion_tokens === 'number'
      ? { promptTokens: json.usage.prompt_tokens, completionTokens: json.usage.completion_tokens }
      : null;
  return {
    content: typeof message.content === 'string' ? message.content : null,
    refusal: typeof message.refusal === 'string' ? message.refusal : null,
    finishReason: typeof choice.finish_reason === 'string' ? choice.finish_reason : null,
    logprobs,
    usage,
    model: typeof json.model === 'string' ? json.model : null,
  };
}
