// The fallback queue's failure contract: what a failed document job means for the run is decided in one place and
// survives the trip through BullMQ's failedReason.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RescaleError } from '../../contracts/errors.js';
import {
  encodeFallbackJobFailure,
  fallbackJobFailure,
  parseFallbackJobFailure,
} from '../../contracts/fallback-queue.js';

describe('fallbackJobFailure', () => {
  it('stops the run on an error no retry can fix, and the shard is not retried', () => {
    const failure = fallbackJobFailure(new RescaleError('FALLBACK_AUTH', 'key refused'));
    assert.deepEqual(failure, { code: 'FALLBACK_AUTH', message: 'key refused', stopsRun: true, final: true });
  });

  it('stops the run on an unwritable cache although it is retryable', () => {
    const failure = fallbackJobFailure(new RescaleError('OUTPUT_NOT_WRITABLE', 'disk full', { retryable: true }));
    assert.equal(failure.stopsRun, true);
    assert.equal(failure.final, true);
  });

  it('does not stop a run that is no longer running, but its shard is not retried', () => {
    const failure = fallbackJobFailure(new RescaleError('ABORTED', 'run r is no longer running'));
    assert.deepEqual({ stopsRun: failure.stopsRun, final: failure.final }, { stopsRun: false, final: true });
  });

  it('leaves retryable and unknown errors to a retry of the shard', () => {
    assert.deepEqual(fallbackJobFailure(new RescaleError('INTERNAL', 'vanished', { retryable: true })), {
      code: 'INTERNAL',
      message: 'vanished',
      stopsRun: false,
      final: false,
    });
    assert.deepEqual(fallbackJobFailure(new Error('connection reset')), {
      code: 'INTERNAL',
      message: 'connection reset',
      stopsRun: false,
      final: false,
    });
  });
});

describe('parseFallbackJobFailure', () => {
  it('reads back the failure the coordinator wrote', () => {
    const failure = fallbackJobFailure(new RescaleError('FALLBACK_REJECTED', 'no model "x"; check fallback.model'));
    assert.deepEqual(parseFallbackJobFailure(encodeFallbackJobFailure(failure)), failure);
  });

  it('returns null for a reason BullMQ wrote itself', () => {
    assert.equal(parseFallbackJobFailure('job stalled more than allowable limit'), null);
    assert.equal(parseFallbackJobFailure('{"code":"FALLBACK_AUTH"}'), null);
  });
});
