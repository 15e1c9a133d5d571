// The one place where shard errors become BullMQ outcomes: a RescaleError that no retry can fix fails the job at
// once (UnrecoverableError); anything else is retried with the queue's backoff. The code leads the reason, so the
// coordinator and `rescale status` show it.

import { UnrecoverableError } from 'bullmq';
import { RescaleError, errorMessage } from '../contracts/errors.js';

export function toQueueError(error: unknown): Error {
  if (error instanceof RescaleError) {
    const reason = `${error.code}: ${error.message}`;
    return error.retryable ? new Error(reason, { cause: error }) : new UnrecoverableError(reason);
  }
  // Unknown errors (I/O hiccups, a lost lock's abort) may pass on another try.
  return error instanceof Error ? error : new Error(errorMessage(error));
}
