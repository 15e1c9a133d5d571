// The document rate of a followed run: documents done over the last minute, for its status, its ETA and the
// coordinator's docs/s metric. Built from when documents were done (a shard's completion time in the queue, a
// progress event's time), never from when the coordinator learnt of them: a restarted coordinator that finds
// minutes of completions at once rebuilds the same rate instead of a burst.

const RATE_WINDOW_MS = 60_000;

export class RateMeter {
  /** [time (ms), documents] increments, possibly negative (progress of a shard that went back to the queue). */
  private increments: [number, number][] = [];

  /** @param origin when counting started (the run's activation): the rate's span never starts before it. */
  constructor(private readonly origin = Date.now()) {}

  /** Documents done at `at` (ms). */
  add(documents: number, at = Date.now()): void {
    if (documents === 0) return;
    this.increments.push([at, documents]);
    const horizon = Date.now() - RATE_WINDOW_MS;
    if (this.increments.length > 64 && (this.increments[0] as [number, number])[0] < horizon)
      this.increments = this.increments.filter(([time]) => time >= horizon);
  }

  perSecond(now = Date.now()): number {
    const windowStart = now - RATE_WINDOW_MS;
    let total = 0;
    let earliest = now;
    for (const [time, documents] of this.increments) {
      if (time <= windowStart || time > now) continue;
      total += documents;
      earliest = Math.min(earliest, time);
    }
    // Over the last minute, or since counting started when that is later (unless earlier completions are known).
    const start = Math.max(windowStart, Math.min(this.origin, earliest));
    const seconds = (now - start) / 1000;
    return seconds >= 1 ? Math.max(0, total) / seconds : 0;
  }
}
