// Progress for long runs: a redrawn bar on a TTY (docs done/total, docs/s, ETA), plain periodic lines otherwise.

export interface Progress {
  start(total: number, alreadyDone: number): void;
  update(done: number): void;
  finish(): void;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export function createProgress(stream: NodeJS.WriteStream = process.stderr, intervalSeconds = 10): Progress {
  let total = 0;
  let base = 0;
  let done = 0;
  let started = 0;
  let lastPrint = 0;
  const rate = (): number => {
    const elapsed = (performance.now() - started) / 1000;
    return elapsed > 0 ? (done - base) / elapsed : 0;
  };
  const line = (): string => {
    const r = rate();
    const eta = r > 0 ? (total - done) / r : Infinity;
    return `${done}/${total} docs  ${r.toFixed(1)} docs/s  ETA ${formatDuration(eta)}`;
  };
  const draw = (force: boolean): void => {
    const now = performance.now();
    if (stream.isTTY) {
      if (!force && now - lastPrint < 100) return;
      const width = 30;
      const filled = total > 0 ? Math.round((done / total) * width) : width;
      stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${line()}\x1b[K`);
    } else {
      if (!force && now - lastPrint < intervalSeconds * 1000) return;
      stream.write(`progress: ${line()}\n`);
    }
    lastPrint = now;
  };
  return {
    start(t, alreadyDone) {
      total = t;
      base = alreadyDone;
      done = alreadyDone;
      started = performance.now();
      lastPrint = stream.isTTY ? 0 : started;
      draw(true);
    },
    update(d) {
      done = d;
      draw(false);
    },
    finish() {
      draw(true);
      if (stream.isTTY) stream.write('\n');
    },
  };
}

export const silentProgress: Progress = { start: () => undefined, update: () => undefined, finish: () => undefined };
