// File identities: a quick fingerprint (size + head + tail) for cache keys and result hashes, and a full sha256
// for the run manifest. Both are memoised per process by (path, size, mtime).

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';

const SAMPLE_BYTES = 1 << 20;
const quickCache = new Map<string, string>();
const fullCache = new Map<string, Promise<string>>();

async function cacheKey(file: string): Promise<{ key: string; size: number }> {
  const info = await stat(file);
  return { key: `${file}\0${info.size}\0${info.mtimeMs}`, size: info.size };
}

/** sha256 over the size, the first and the last MiB: cheap even for 5 GB models, and changes when they do. */
export async function quickFingerprint(file: string): Promise<string> {
  const { key, size } = await cacheKey(file);
  const cached = quickCache.get(key);
  if (cached !== undefined) return cached;
  const hash = createHash('sha256').update(`${size}\n`);
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(Math.min(SAMPLE_BYTES, size));
    await handle.read(head, 0, head.length, 0);
    hash.update(head);
    if (size > SAMPLE_BYTES) {
      const tail = Buffer.alloc(Math.min(SAMPLE_BYTES, size - SAMPLE_BYTES));
      await handle.read(tail, 0, tail.length, size - tail.length);
      hash.update(tail);
    }
  } finally {
    await handle.close();
  }
  const digest = hash.digest('hex');
  quickCache.set(key, digest);
  return digest;
}

/** Full sha256 of a file, streamed. */
export async function sha256File(file: string): Promise<string> {
  const { key } = await cacheKey(file);
  let pending = fullCache.get(key);
  if (pending === undefined) {
    pending = new Promise<string>((resolve, reject) => {
      const hash = createHash('sha256');
      createReadStream(file)
        .on('data', (chunk) => hash.update(chunk))
        .on('error', reject)
        .on('end', () => resolve(hash.digest('hex')));
    });
    fullCache.set(key, pending);
    pending.catch(() => fullCache.delete(key));
  }
  return pending;
}
