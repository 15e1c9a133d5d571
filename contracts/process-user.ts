// Who this process runs as, for messages about permissions: on a cluster the workers' user often differs from the
// submitter's, and "permission denied" without the user says little.

import os from 'node:os';

/** `alice (uid 1000) on node17`. */
export function processUser(): string {
  let name = 'unknown';
  try {
    name = os.userInfo().username;
  } catch {
    // No passwd entry (containers): the uid still says it.
  }
  const uid = process.getuid?.();
  return `${name}${uid === undefined ? '' : ` (uid ${uid})`} on ${os.hostname()}`;
}
