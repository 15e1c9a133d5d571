// Small deterministic SVG charts for the self-contained HTML report: bars, stacked histograms, lines with
// confidence bands, and the reliability diagram. No scripts, no external fonts; every text is escaped.

export interface Margins {
  readonly top: number;
  readonly right: number;
  readonly bottom: number;
  readonly left: number;
}

const WIDTH = 640;
const HEIGHT = 300;
const MARGINS: Margins = { top: 16, right: 20, bottom: 52, left: 64 };
export const PALETTE = [
  '#3b6fb6',
  '#e08a2c',
  '#3a9a5b',
  '#c43c3c',
  '#7b5aa6',
  '#8c6d31',
  '#d45f9b',
  '#5f6b7a',
] as const;

export function escapeXml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** Rounds for SVG coordinates: short, and identical across runs. */
function r(value: number): string {
  return (Math.round(value * 10) / 10).toString();
}

/** About `count` round tick values covering [min, max] (1, 2 or 5 × 10^k steps). */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step - 1e-9) * step; v <= max + step * 1e-9; v += step)
    ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/** Ticks from 0 whose last one is at or above `max`, so the tallest bar stays inside the axis. */
export function ticksCovering(max: number, count = 5): number[] {
  const ticks = niceTicks(0, Math.max(max, 1e-12), count);
  const step = ticks.length > 1 ? (ticks[1] as number) - (ticks[0] as number) : Math.max(max, 1);
  while ((ticks[ticks.length - 1] as number) < max)
    ticks.push(Number(((ticks[ticks.length - 1] as number) + step).toPrecision(12)));
  return ticks;
}

function tickLabel(value: number): string {
  if (value !== 0 && (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3)) return value.toExponential(0);
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US');
  return String(Number(value.toPrecision(4)));
}

interface Frame {
  readonly width: number;
  readonly height: number;
  readonly m: Margins;
  readonly plotWidth: number;
  readonly plotHeight: number;
}

/** Legends sit in the top margin, above the plot, so they never cover data. */
const LEGEND_MARGINS: Margins = { ...MARGINS, top: 36 };

function frame(width = WIDTH, height = HEIGHT, m: Margins = MARGINS): Frame {
  return { width, height, m, plotWidth: width - m.left - m.right, plotHeight: height - m.top - m.bottom };
}

function open(f: Frame, label: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${f.width} ${f.height}" width="${f.width}" ` +
    `height="${f.height}" role="img" aria-label="${escapeXml(label)}" font-family="DejaVu Sans, Helvetica, Arial, ` +
    `sans-serif" font-size="12">`
  );
}

/** Axis titles and the y grid with labels. */
function yAxis(
  f: Frame,
  ticks: readonly number[],
  y: (v: number) => number,
  format: (v: number) => string,
  title: string,
): string {
  const parts = ticks.map((t) => {
    const py = r(y(t));
    return (
      `<line x1="${f.m.left}" x2="${f.m.left + f.plotWidth}" y1="${py}" y2="${py}" stroke="#e3e6ea"/><text ` +
      `x="${f.m.left - 6}" y="${py}" text-anchor="end" dominant-baseline="middle" fill="#444">` +
      `${escapeXml(format(t))}</text>`
    );
  });
  parts.push(
    `<text transform="translate(14 ${r(f.m.top + f.plotHeight / 2)}) rotate(-90)" text-anchor="middle" fill="#222">` +
      `${escapeXml(title)}</text>`,
  );
  parts.push(`<line x1="${f.m.left}" x2="${f.m.left}" y1="${f.m.top}" y2="${f.m.top + f.plotHeight}" stroke="#888"/>`);
  parts.push(
    `<line x1="${f.m.left}" x2="${f.m.left + f.plotWidth}" y1="${f.m.top + f.plotHeight}" ` +
      `y2="${f.m.top + f.plotHeight}" stroke="#888"/>`,
  );
  return parts.join('');
}

function xTitle(f: Frame, title: string): string {
  return (
    `<text x="${r(f.m.left + f.plotWidth / 2)}" y="${f.height - 8}" text-anchor="middle" fill="#222">` +
    `${escapeXml(title)}</text>`
  );
}

function legend(f: Frame, entries: readonly { name: string; color: string }[]): string {
  if (entries.length < 2) return '';
  let x = f.m.left;
  return entries
    .map((e) => {
      const out =
        `<rect x="${r(x)}" y="8" width="10" height="10" fill="${e.color}"/><text x="${r(x + 14)}" y="17" ` +
        `fill="#222">${escapeXml(e.name)}</text>`;
      x += 24 + e.name.length * 7;
      return out;
    })
    .join('');
}

export interface BarChartOptions {
  readonly title: string;
  readonly categories: readonly string[];
  readonly values: readonly number[];
  readonly yTitle: string;
  readonly format?: (value: number) => string;
  readonly colors?: readonly string[];
}

/** Vertical bars with their values written above them. */
export function barChart(options: BarChartOptions): string {
  const f = frame();
  const format = options.format ?? ((v: number) => tickLabel(v));
  const max = Math.max(1e-12, ...options.values);
  const ticks = ticksCovering(max * 1.08);
  const top = ticks[ticks.length - 1] as number;
  const y = (v: number): number => f.m.top + f.plotHeight - (v / top) * f.plotHeight;
  const n = Math.max(1, options.categories.length);
  const slot = f.plotWidth / n;
  const barWidth = Math.min(80, slot * 0.7);
  const bars = options.categories.map((category, i) => {
    const v = options.values[i] ?? 0;
    const x = f.m.left + slot * i + (slot - barWidth) / 2;
    const color = options.colors?.[i] ?? PALETTE[0];
    const label = category.length > 18 ? `${category.slice(0, 17)}…` : category;
    return (
      `<rect x="${r(x)}" y="${r(y(v))}" width="${r(barWidth)}" height="${r(f.m.top + f.plotHeight - y(v))}" ` +
      `fill="${color}"><title>${escapeXml(`${category}: ${format(v)}`)}</title></rect><text ` +
      `x="${r(x + barWidth / 2)}" y="${r(y(v) - 4)}" text-anchor="middle" fill="#222">${escapeXml(format(v))}` +
      `</text><text x="${r(x + barWidth / 2)}" y="${r(f.m.top + f.plotHeight + 16)}" text-anchor="middle" ` +
      `fill="#222">${escapeXml(label)}</text>`
    );
  });
  return `${open(f, options.title)}${yAxis(f, ticks, y, tickLabel, options.yTitle)}${bars.join('')}</svg>`;
}

export interface HistogramOptions {
  readonly title: string;
  /** Bin edges: bins[i] covers [edges[i], edges[i + 1]). */
  readonly edges: readonly number[];
  /** One count array per series, stacked bottom to top. */
  readonly series: readonly { readonly name: string; readonly color: string; readonly counts: readonly number[] }[];
  readonly xTitle: string;
  readonly yTitle: string;
}

/** A histogram with stacked series (e.g. correct and wrong predictions per confidence bin). */
export function stackedHistogram(options: HistogramOptions): string {
  const f = frame(WIDTH, HEIGHT, options.series.length > 1 ? LEGEND_MARGINS : MARGINS);
  const bins = options.edges.length - 1;
  const totals = Array.from({ length: bins }, (_, b) => options.series.reduce((sum, s) => sum + (s.counts[b] ?? 0), 0));
  const ticks = ticksCovering(Math.max(1, ...totals));
  const top = ticks[ticks.length - 1] as number;
  const lo = options.edges[0] ?? 0;
  const hi = options.edges[bins] ?? 1;
  const x = (v: number): number => f.m.left + ((v - lo) / (hi - lo)) * f.plotWidth;
  const y = (v: number): number => f.m.top + f.plotHeight - (v / top) * f.plotHeight;
  const rects: string[] = [];
  for (let b = 0; b < bins; b++) {
    let base = 0;
    const x0 = x(options.edges[b] ?? 0) + 0.5;
    const x1 = x(options.edges[b + 1] ?? 0) - 0.5;
    for (const s of options.series) {
      const c = s.counts[b] ?? 0;
      if (c > 0) {
        rects.push(
          `<rect x="${r(x0)}" y="${r(y(base + c))}" width="${r(Math.max(0.5, x1 - x0))}" ` +
            `height="${r(y(base) - y(base + c))}" fill="${s.color}"><title>` +
            `${escapeXml(`${s.name}, ${options.edges[b]?.toFixed(2)}–${options.edges[b + 1]?.toFixed(2)}: ${c}`)}` +
            `</title></rect>`,
        );
      }
      base += c;
    }
  }
  const xTicks = niceTicks(lo, hi, 10).map(
    (t) =>
      `<text x="${r(x(t))}" y="${r(f.m.top + f.plotHeight + 16)}" text-anchor="middle" fill="#444">` +
      `${escapeXml(tickLabel(t))}</text>`,
  );
  return (
    `${open(f, options.title)}${yAxis(f, ticks, y, tickLabel, options.yTitle)}${rects.join('')}${xTicks.join('')}` +
    `${xTitle(f, options.xTitle)}${legend(f, options.series)}</svg>`
  );
}

export interface LinePoint {
  readonly x: number;
  readonly y: number;
  /** Optional confidence band. */
  readonly lower?: number;
  readonly upper?: number;
  /** Tooltip. */
  readonly label?: string;
}

export interface LineChartOptions {
  readonly title: string;
  readonly series: readonly {
    readonly name: string;
    readonly color: string;
    readonly points: readonly LinePoint[];
    readonly dashed?: boolean;
  }[];
  readonly xTitle: string;
  readonly yTitle: string;
  readonly xScale?: 'linear' | 'log';
  /** Fixed y range (default: the data, padded). */
  readonly yDomain?: readonly [number, number];
  readonly xDomain?: readonly [number, number];
  readonly yFormat?: (value: number) => string;
  /** Vertical marker lines, e.g. the recommended threshold. */
  readonly markers?: readonly { readonly x: number; readonly label: string }[];
  /** Draw each point as a dot (default true). */
  readonly dots?: boolean;
  /** Break the line where consecutive x values are further apart than this, marking the ends with dots. */
  readonly breakGap?: number;
}

/** Lines with optional shaded confidence bands; x may be logarithmic (training-set sizes). */
export function lineChart(options: LineChartOptions): string {
  const f = frame(WIDTH, HEIGHT, options.series.length > 1 ? LEGEND_MARGINS : MARGINS);
  const all = options.series.flatMap((s) => s.points);
  const log = options.xScale === 'log';
  const xs = all.map((p) => p.x).filter((v) => !log || v > 0);
  let [x0, x1] = options.xDomain ?? [Math.min(...xs), Math.max(...xs)];
  if (!(x1 > x0)) {
    x0 = x0 - 1;
    x1 = x1 + 1;
  }
  const ys = all.flatMap((p) => [p.y, p.lower ?? p.y, p.upper ?? p.y]).filter(Number.isFinite);
  let [y0, y1] = options.yDomain ?? [Math.min(...ys), Math.max(...ys)];
  if (options.yDomain === undefined) {
    const pad = (y1 - y0) * 0.1 || Math.abs(y1) * 0.1 || 1;
    y0 -= pad;
    y1 += pad;
  }
  const yTicks = niceTicks(y0, y1);
  const fx = (v: number): number => (log ? Math.log10(v) : v);
  const x = (v: number): number => f.m.left + ((fx(v) - fx(x0)) / (fx(x1) - fx(x0) || 1)) * f.plotWidth;
  const y = (v: number): number => f.m.top + f.plotHeight - ((v - y0) / (y1 - y0)) * f.plotHeight;
  const clipY = (v: number): number => Math.min(f.m.top + f.plotHeight, Math.max(f.m.top, y(v)));
  const parts: string[] = [];
  for (const s of options.series) {
    const pts = s.points.filter((p) => Number.isFinite(p.y) && (!log || p.x > 0));
    const banded = pts.filter(
      (p) => p.lower !== undefined && p.upper !== undefined && Number.isFinite(p.lower) && Number.isFinite(p.upper),
    );
    if (banded.length > 1) {
      const upper = banded.map((p) => `${r(x(p.x))},${r(clipY(p.upper as number))}`);
      const lower = [...banded].reverse().map((p) => `${r(x(p.x))},${r(clipY(p.lower as number))}`);
      parts.push(
        `<polygon points="${[...upper, ...lower].join(' ')}" fill="${s.color}" fill-opacity="0.15" stroke="none"/>`,
      );
    }
    // Runs of points drawn as one line each; a gap wider than breakGap starts a new run.
    const runs: LinePoint[][] = [];
    for (const p of pts) {
      const run = runs[runs.length - 1];
      const previous = run?.[run.length - 1];
      if (
        run === undefined ||
        previous === undefined ||
        (options.breakGap !== undefined && p.x - previous.x > options.breakGap)
      )
        runs.push([p]);
      else run.push(p);
    }
    for (const run of runs) {
      if (run.length > 1) {
        parts.push(
          `<polyline points="${run.map((p) => `${r(x(p.x))},${r(clipY(p.y))}`).join(' ')}" fill="none" ` +
            `stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
        );
      }
      if (options.dots === false && runs.length > 1) {
        for (const p of [run[0], run[run.length - 1]])
          if (p !== undefined) parts.push(`<circle cx="${r(x(p.x))}" cy="${r(clipY(p.y))}" r="3" fill="${s.color}"/>`);
      }
    }
    if (options.dots !== false || pts.length === 1) {
      for (const p of pts) {
        const tip = p.label ?? `${tickLabel(p.x)}: ${(options.yFormat ?? tickLabel)(p.y)}`;
        parts.push(
          `<circle cx="${r(x(p.x))}" cy="${r(clipY(p.y))}" r="3.5" fill="${s.color}"><title>${escapeXml(tip)}` +
            `</title></circle>`,
        );
        if (banded.includes(p)) {
          parts.push(
            `<line x1="${r(x(p.x))}" x2="${r(x(p.x))}" y1="${r(clipY(p.lower as number))}" ` +
              `y2="${r(clipY(p.upper as number))}" stroke="${s.color}" stroke-width="1.2"/>`,
          );
        }
      }
    }
  }
  for (const marker of options.markers ?? []) {
    const mx = r(x(marker.x));
    parts.push(
      `<line x1="${mx}" x2="${mx}" y1="${f.m.top}" y2="${f.m.top + f.plotHeight}" stroke="#555" ` +
        `stroke-dasharray="3 3"/>`,
    );
    parts.push(
      `<text x="${mx}" y="${f.m.top + f.plotHeight - 6}" text-anchor="start" dx="4" fill="#333">` +
        `${escapeXml(marker.label)}</text>`,
    );
  }
  let xTickValues: number[];
  if (log) {
    xTickValues = [];
    for (let e = Math.floor(Math.log10(x0)); e <= Math.ceil(Math.log10(x1)); e++) {
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** e;
        if (v >= x0 * 0.999 && v <= x1 * 1.001) xTickValues.push(v);
      }
    }
  } else {
    xTickValues = niceTicks(x0, x1, 8);
  }
  const xTicks = xTickValues.map(
    (t) =>
      `<line x1="${r(x(t))}" x2="${r(x(t))}" y1="${f.m.top + f.plotHeight}" y2="${f.m.top + f.plotHeight + 4}" ` +
      `stroke="#888"/><text x="${r(x(t))}" y="${r(f.m.top + f.plotHeight + 16)}" text-anchor="middle" fill="#444">` +
      `${escapeXml(tickLabel(t))}</text>`,
  );
  return (
    `${open(f, options.title)}${yAxis(f, yTicks, y, options.yFormat ?? tickLabel, options.yTitle)}${parts.join('')}` +
    `${xTicks.join('')}${xTitle(f, options.xTitle)}${legend(f, options.series)}</svg>`
  );
}

export interface ReliabilityBinPoint {
  readonly lower: number;
  readonly upper: number;
  readonly count: number;
  readonly meanConfidence: number | null;
  readonly accuracy: number | null;
}

/** Accuracy per confidence bin (bars) against the diagonal of perfect calibration; the gap is shaded. */
export function reliabilityDiagram(bins: readonly ReliabilityBinPoint[], title = 'Reliability diagram'): string {
  const f = frame(460, 420, { top: 36, right: 20, bottom: 52, left: 64 });
  const x = (v: number): number => f.m.left + v * f.plotWidth;
  const y = (v: number): number => f.m.top + f.plotHeight - v * f.plotHeight;
  const ticks = [0, 0.2, 0.4, 0.6, 0.8, 1];
  const parts: string[] = [];
  for (const b of bins) {
    if (b.count === 0 || b.accuracy === null || b.meanConfidence === null) continue;
    const x0 = x(b.lower) + 1;
    const w = x(b.upper) - x(b.lower) - 2;
    const tip =
      `(${b.lower.toFixed(2)}, ${b.upper.toFixed(2)}]: ${b.count} documents, accuracy ${b.accuracy.toFixed(3)}, ` +
      `mean confidence ${b.meanConfidence.toFixed(3)}`;
    parts.push(
      `<rect x="${r(x0)}" y="${r(y(b.accuracy))}" width="${r(w)}" height="${r(y(0) - y(b.accuracy))}" ` +
        `fill="${PALETTE[0]}"><title>${escapeXml(tip)}</title></rect>`,
    );
    const top = Math.max(b.accuracy, b.meanConfidence);
    const bottom = Math.min(b.accuracy, b.meanConfidence);
    parts.push(
      `<rect x="${r(x0)}" y="${r(y(top))}" width="${r(w)}" height="${r(y(bottom) - y(top))}" fill="#c43c3c" ` +
        `fill-opacity="0.35"/>`,
    );
    parts.push(`<circle cx="${r(x(b.meanConfidence))}" cy="${r(y(b.meanConfidence))}" r="2.5" fill="#222"/>`);
    // The bin's size: inside the bar's foot when there is room, else just above the bin.
    const inside = y(0) - y(b.accuracy) >= 18;
    parts.push(
      `<text x="${r(x0 + w / 2)}" y="${r(inside ? y(0) - 5 : y(top) - 4)}" text-anchor="middle" font-size="9" ` +
        `fill="${inside ? '#fff' : '#555'}">n=${b.count}</text>`,
    );
  }
  parts.push(
    `<line x1="${r(x(0))}" y1="${r(y(0))}" x2="${r(x(1))}" y2="${r(y(1))}" stroke="#222" stroke-dasharray="5 4"/>`,
  );
  const xTicks = ticks.map(
    (t) => `<text x="${r(x(t))}" y="${r(f.m.top + f.plotHeight + 16)}" text-anchor="middle" fill="#444">${t}</text>`,
  );
  const key =
    `<rect x="${f.m.left}" y="8" width="10" height="10" fill="${PALETTE[0]}"/><text x="${f.m.left + 14}" y="17" ` +
    `fill="#222">accuracy</text><rect x="${f.m.left + 84}" y="8" width="10" height="10" fill="#c43c3c" ` +
    `fill-opacity="0.35"/><text x="${f.m.left + 98}" y="17" fill="#222">gap to confidence</text><circle ` +
    `cx="${f.m.left + 228}" cy="13" r="2.5" fill="#222"/><text x="${f.m.left + 236}" y="17" fill="#222">mean ` +
    `confidence</text>`;
  return (
    `${open(f, title)}${yAxis(f, ticks, y, (v) => String(v), 'accuracy')}${parts.join('')}${xTicks.join('')}` +
    `${xTitle(f, 'confidence (bin)')}${key}</svg>`
  );
}
