// Whether a results file is a complete run's: no run holds its lock (in progress, cancelled or failed), and when its
// manifest records the results file's sha256, the file has that hash. Readers (evaluate, report, calibrate) check it
// so that a results file and a manifest of different runs, or a run cut short, never pass as a finished run.

import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { RescaleError } from '../contracts/errors.js';
import { outputLayout } from './output-layout.js';
import { describeLock, readOutputLock } from './output-lock.js';

async function isDirectory(file: string): Promise<boolean> {
  return (await stat(file).catch(() => null))?.isDirectory() ?? false;
}

/** sha256 of a file, streamed. */
export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Refuses (INPUT_INVALID, naming the file and `role`) results whose output is locked by a run, whose manifest's
 * sha256 does not match them, or that have rescale's parts folder but no manifest. Results without a manifest or a
 * parts folder (written by other tools) pass.
 */
export async function checkResultsComplete(results: string, role: string): Promise<void> {
  const layout = outputLayout(path.resolve(results));
  const lock = await readOutputLock(layout).catch(() => null);
  if (lock !== null) {
    throw new RescaleError(
      'INPUT_INVALID',
      `${role} ${results} is not a finished run: ${layout.lockFile} says it is being written by ` +
        `${describeLock(lock)}; let the run finish (or resume it), then read the results`,
    );
  }
  let text: string;
  try {
    text = await readFile(layout.manifestFile, 'utf8');
  } catch {
    if (!(await isDirectory(layout.partsDir))) return;
    // rescale's own output (its parts folder is beside it) without the manifest the merge writes last: the run was
    // stopped between renaming the results into place and writing the manifest.
    throw new RescaleError(
      'INPUT_INVALID',
      `${role} ${results} is not a finished run: it has no manifest ${layout.manifestFile} beside its parts folder ` +
        `${layout.partsDir}, so the run that wrote it stopped before it finished; run the same command again to ` +
        'finish it',
    );
  }
  let recorded: unknown;
  try {
    recorded = (JSON.parse(text) as { merge?: { sha256?: unknown } }).merge?.sha256;
  } catch {
    return; // a malformed manifest is reported by its own reader, naming the field
  }
  if (typeof recorded !== 'string') return;
  const actual = await sha256OfFile(layout.output).catch(() => null);
  if (actual !== recorded) {
    throw new RescaleError(
      'INPUT_INVALID',
      `${role} ${results} does not match its manifest ${layout.manifestFile} (sha256 ${recorded.slice(0, 12)} ` +
        `recorded, ${actual?.slice(0, 12) ?? 'unreadable'} found): they come from different runs or the file was ` +
        'changed; run the same command again to merge the results anew',
    );
  }
}
