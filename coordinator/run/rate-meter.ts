// The document rate of a followed run: documents done over the last minute, for its status, its ETA and the
// coordinator's docs/s metric.

const RATE_WINDOW_MS = 60_000;

/** Documents done over time, for docs/s over the last minute (decaying to 0 when nothing moves). */
export class RateMeter {
  private samples: [number, number][] = [];

  add(documents: number, now = Date.now()): void {
    this.samples.push([now, documents]);
    // Keep one sample older than the window as the baseline.
    while (this.samples.length > 2 && (this.samples[1] as [number, number])[0] < now - RATE_WINDOW_MS)
      this.samples.shift();
  }

  perSecond(now = Date.now()): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (first === undefined || last === undefined || first === last) return 0;
    const seconds = (now - first[0]) / 1000;
    return seconds >= 1 ? Math.max(0, last[1] - first[1]) / seconds : 0;
  }
}
