// Reads the fallback's API key from the environment variable or file the codebook names; never from the codebook.
// The key stays in memory only: it is handed to the HTTP client and to `redactKey`, and never logged.

import { readFile, stat } from 'node:fs/promises';
import type { ApiKeySource } from '../contracts/fallback-config.js';

export type ApiKeyLookup =
  | { readonly found: true; readonly key: string; readonly warning: string | null }
  | { readonly found: false; readonly reason: string };

/** Where the key comes from, for messages (names the variable or file, never the key). */
export function describeKeySource(source: ApiKeySource): string {
  return source.kind === 'env' ? `environment variable ${source.name}` : `key file ${source.path}`;
}

export async function readApiKey(
  source: ApiKeySource,
  env: Readonly<Record<string, string | undefined>>,
): Promise<ApiKeyLookup> {
  if (source.kind === 'env') {
    const key = env[source.name]?.trim() ?? '';
    if (key === '') return { found: false, reason: `${describeKeySource(source)} is not set` };
    return { found: true, key, warning: null };
  }
  let text: string;
  let mode: number;
  try {
    [text, mode] = await Promise.all([readFile(source.path, 'utf8'), stat(source.path).then((info) => info.mode)]);
  } catch (cause) {
    return {
      found: false,
      reason: `${describeKeySource(source)} cannot be read (${(cause as NodeJS.ErrnoException).code ?? String(cause)})`,
    };
  }
  const key = text.trim();
  if (key === '') return { found: false, reason: `${describeKeySource(source)} is empty` };
  if (/\s/.test(key))
    return {
      found: false,
      reason: `${describeKeySource(source)} holds more than one line or word; put only the key in it`,
    };
  const warning = (mode & 0o077) !== 0 ? `${describeKeySource(source)} is readable by other users; chmod 600 it` : null;
  return { found: true, key, warning };
}

/** Replaces every occurrence of the key in a message from elsewhere (server errors), before it is logged or stored. */
export function redactKey(text: string, key: string | null): string {
  if (key === null || key.length < 4) return text;
  return text.split(key).join('[redacted]');
}
