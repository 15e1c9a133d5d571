// What a fallback request costs: the codebook's prices per million tokens applied to a response's usage, and the
// worst case a request can be billed, which the budget reserves before it is sent (live, or in a Batch API upload).

import type { FallbackConfig } from '../contracts/fallback-config.js';
import type { ChatRequestBody } from './fallback-prompt.js';

/**
 * Slack over the request body's UTF-8 bytes for chat-format tokens (role markers, separators) per message and overall.
 */
const TOKENS_PER_MESSAGE = 16;
const TOKENS_PER_REQUEST = 64;

/**
 * Price in nano-USD of the given token counts (rounded up for reservations, to nearest for actual usage), times
 * `factor` (the Batch API's discount).
 */
export function priceNanoUsd(
  price: FallbackConfig['price'],
  promptTokens: number,
  completionTokens: number,
  round: (x: number) => number,
  factor = 1,
): number {
  return (
    round(promptTokens * price.inputPerMillion * 1000 * factor) +
    round(completionTokens * price.outputPerMillion * 1000 * factor)
  );
}

/**
 * The most a request can cost: every body byte a token (true of byte-level BPE tokenizers), chat-format tokens, the
 * output cap.
 */
export function worstCaseNanoUsd(config: FallbackConfig, body: ChatRequestBody, factor = 1): number {
  const bodyBytes = Buffer.byteLength(JSON.stringify(body), 'utf8');
  const inputBound = bodyBytes + TOKENS_PER_MESSAGE * body.messages.length + TOKENS_PER_REQUEST;
  return priceNanoUsd(config.price, inputBound, config.maxOutputTokens, Math.ceil, factor);
}
