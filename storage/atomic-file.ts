// Writes files so that readers see the old content or the complete new one, never a part: a temp file in the same
// folder, written, fsynced, renamed over the target, then the folder fsynced so the rename survives a crash.

import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { tempFileFor } from './output-layout.js';

/**
 * Writes `target` through a temp file in the same directory: create, write, fsync, close, rename, fsync the
 * directory. On any failure the temp file is removed and `target` is untouched. `write` gets the open temp file, so
 * streamed writers (the merge's Parquet writer) go through the same path as whole-buffer ones.
 */
export async function writeFileAtomic(target: string, write: (handle: FileHandle) => Promise<void>): Promise<void> {
  const dir = path.dirname(target);
  const temp = tempFileFor(target, `${process.pid}-${randomBytes(4).toString('hex')}`);
  const handle = await open(temp, 'wx');
  let renamed = false;
  try {
    try {
      await write(handle);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
    renamed = true;
    await fsyncDirectory(dir);
  } finally {
    if (!renamed) await unlink(temp).catch(() => undefined);
  }
}

/** writeFileAtomic for content already in memory (JSON, JSONL, an encoded file). */
export async function writeBytesAtomic(target: string, data: string | Uint8Array): Promise<void> {
  await writeFileAtomic(target, async (handle) => {
    await handle.writeFile(data);
  });
}

/** Makes a rename durable: the directory entry is flushed too (a no-op where directories cannot be opened). */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => undefined);
  if (handle === undefined) return;
  try {
    await handle.sync().catch(() => undefined);
  } finally {
    await handle.close();
  }
}
