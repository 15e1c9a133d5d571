// Content-addressed store of every fallback exchange: the key is the sha256 of (endpoint, request body), and the
// response bytes are on disk before anyone uses them, so a re-run pays nothing again and a study replays offline.

import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { canonicalJson } from '../contracts/codebook.js';
import type { FallbackConfig } from '../contracts/fallback-config.js';
import { writeFileAtomic } from '../storage/atomic-file.js';
import type { ChatRequestBody } from './fallback-prompt.js';

export const CACHE_FORMAT = 'rescale.fallback-exchange/1';

export interface CachedExchange {
  readonly format: typeof CACHE_FORMAT;
  readonly key: string;
  /** Base URL (and api-version) the request went to; part of the key. */
  readonly endpoint: string;
  readonly request: ChatRequestBody;
  /** The response body exactly as received (a chat completion JSON). */
  readonly response: string;
  readonly receivedAt: string;
}

/** Where requests go, as the cache key sees it: the base URL, and Azure's api-version when set. */
export function fallbackEndpoint(config: FallbackConfig): string {
  return config.apiVersion === null ? config.baseUrl : `${config.baseUrl}?api-version=${config.apiVersion}`;
}

/** The cache key of a request: sha256 over the canonical JSON of endpoint and body (model, messages, parameters). */
export function exchangeKey(endpoint: string, body: ChatRequestBody): string {
  return createHash('sha256').update(canonicalJson({ endpoint, body })).digest('hex');
}

export class ResponseCache {
  constructor(readonly dir: string) {}

  /** `<dir>/<key[0..2]>/<key>.json`. */
  pathFor(key: string): string {
    return path.join(this.dir, key.slice(0, 2), `${key}.json`);
  }

  /** The stored exchange, or null when absent (or unreadable / not this key: treated as absent and rewritten). */
  async get(key: string): Promise<CachedExchange | null> {
    let text: string;
    try {
      text = await readFile(this.pathFor(key), 'utf8');
    } catch {
      return null;
    }
    try {
      const entry = JSON.parse(text) as Partial<CachedExchange>;
      if (entry.format !== CACHE_FORMAT || entry.key !== key || typeof entry.response !== 'string') return null;
      return entry as CachedExchange;
    } catch {
      return null;
    }
  }

  /** Writes the exchange atomically (temp file, fsync, rename); resolves once it is durable. */
  async put(entry: CachedExchange): Promise<void> {
    const file = this.pathFor(entry.key);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFileAtomic(file, async (handle) => {
      await handle.writeFile(`${JSON.stringify(entry)}\n`);
    });
  }
}
