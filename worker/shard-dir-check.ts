// Before a worker scores a shard it makes sure it can write the run's shard folder: a folder it cannot write fails
// every shard of the run the same way, so the failure must come before minutes of scoring, must not be retried, and
// must name the folder and the user the worker runs as (on a cluster that user often differs from the submitter).

import { mkdir, open, rm } from 'node:fs/promises';
import path from 'node:path';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import { processUser } from '../contracts/process-user.js';

/**
 * Creates `dir` if needed and writes and removes a probe file in it (stricter than access(): NFS root squash and
 * read-only mounts are caught). Throws OUTPUT_NOT_WRITABLE (not retryable) naming the folder and the user.
 */
export async function assertShardDirWritable(dir: string, workerId: string): Promise<void> {
  const probe = path.join(dir, `.write-check-${workerId}.tmp`);
  try {
    await mkdir(dir, { recursive: true });
    const handle = await open(probe, 'w');
    await handle.close();
    await rm(probe, { force: true });
  } catch (cause) {
    const reason = (cause as NodeJS.ErrnoException).code ?? errorMessage(cause);
    throw new RescaleError(
      'OUTPUT_NOT_WRITABLE',
      `worker ${workerId}, running as ${processUser()}, cannot write the output's shard folder ${dir} (${reason}); ` +
        'every shard of the run writes there: give that user write access to the folder (or run the workers as a ' +
        'user who has it), then "rescale retry RUN"',
      { cause },
    );
  }
}
