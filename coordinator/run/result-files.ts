// What the coordinator sees of a run's shard result files on the shared filesystem.

import { access, constants, readdir } from 'node:fs/promises';
import { shardResultFileName } from '../../storage/output-layout.js';

export async function fileExists(file: string): Promise<boolean> {
  return access(file, constants.F_OK).then(
    () => true,
    () => false,
  );
}

export function resultFileName(shardId: string): string {
  return shardResultFileName(shardId);
}

/** Names of the files in a results folder (one readdir instead of a stat per shard on a shared filesystem). */
export async function resultFiles(dir: string): Promise<Set<string>> {
  try {
    return new Set(await readdir(dir));
  } catch {
    return new Set();
  }
}
