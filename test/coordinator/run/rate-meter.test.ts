import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RateMeter } from '../../../coordinator/run/rate-meter.js';
import { runOrigin } from '../../../coordinator/run/run-tracker.js';

describe('RateMeter', () => {
  it('spans from the run start when the completions found at a restart came later than it', () => {
    const start = 1_000_000;
    const now = start + 20_000;
    // The run began 20 s ago; a coordinator restarted now finds 400 documents completed 10 s and 5 s ago.
    const meter = new RateMeter(start);
    meter.add(200, now - 10_000);
    meter.add(200, now - 5_000);
    assert.equal(meter.perSecond(now), 400 / 20, 'documents over the 20 s since the run began, not the last 10 s');
  });

  it('keeps to the last minute on a long run', () => {
    const start = 1_000_000;
    const now = start + 300_000;
    const meter = new RateMeter(start);
    meter.add(1_000, now - 120_000);
    meter.add(600, now - 30_000);
    assert.equal(meter.perSecond(now), 600 / 60);
  });
});

describe('runOrigin', () => {
  it("is the spec's creation time, or now when that is unreadable or in the future", () => {
    const now = Date.parse('2026-01-01T00:10:00Z');
    assert.equal(runOrigin('2026-01-01T00:00:00Z', now), Date.parse('2026-01-01T00:00:00Z'));
    assert.equal(runOrigin('', now), now);
    assert.equal(runOrigin('2026-01-01T01:00:00Z', now), now);
  });
});
