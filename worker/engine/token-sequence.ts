// Comparisons of token sequences: label tries, answer terminators and prompt tokenisation checks all ask whether one
// sequence equals another or starts with it.

import type { Token } from 'node-llama-cpp';

/** Whether `tokens` starts with `prefix` (equal sequences included). */
export function startsWithTokens(tokens: readonly Token[], prefix: readonly Token[]): boolean {
  return prefix.length <= tokens.length && prefix.every((token, i) => tokens[i] === token);
}

export function sameTokens(a: readonly Token[], b: readonly Token[]): boolean {
  return a.length === b.length && startsWithTokens(a, b);
}

/** Whether `a` is a prefix of `b` and shorter. */
export function isStrictTokenPrefix(a: readonly Token[], b: readonly Token[]): boolean {
  return a.length < b.length && startsWithTokens(b, a);
}
