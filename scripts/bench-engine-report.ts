// The pure half of `npm run bench:engine`: sums each part's interleaved rounds, takes the ratios the targets are
// stated in (from the sums, and per round to show the noise), and writes the result table.

export type Corpus = 'unique' | 'duplicates';

/** One part's measurement in one round: the engine, llama-server at a slot count, or llama-bench. */
export interface PartRun {
  /** e.g. "engine serial", "engine batched", "llama-server", "llama-bench pp224 @ d199". */
  readonly part: string;
  /** "localBuild" / "prebuilt" for the engine; "bundled source, <cpu|cuda>" for the tools. */
  readonly build: string;
  readonly corpus: Corpus;
  readonly round: number;
  /** Engine sequences or llama-server slots (and concurrent requests); 1 for llama-bench. */
  readonly parallel: number;
  /** Documents scored; for llama-bench, repetitions of one document's tokens. */
  readonly documents: number;
  readonly seconds: number;
  readonly tokensEvaluated: number;
  readonly peakRssMB: number;
}

export interface PartRow {
  readonly part: string;
  readonly build: string;
  readonly corpus: Corpus;
  readonly parallel: number;
  readonly rounds: number;
  readonly documents: number;
  readonly seconds: number;
  readonly documentsPerSecond: number;
  readonly tokensEvaluated: number;
  readonly tokensPerDocument: number;
  readonly tokensPerSecond: number;
  readonly peakRssMB: number;
  /** docs/s of each round, in round order. */
  readonly roundDocumentsPerSecond: readonly number[];
}

export function rowKey(r: Pick<PartRun, 'part' | 'build' | 'corpus' | 'parallel'>): string {
  return `${r.part}|${r.build}|${r.corpus}|${r.parallel}`;
}

/** Sums each part over its rounds (rates from the sums, never a mean of rates); rows keep first-seen order. */
export function summarise(runs: readonly PartRun[]): PartRow[] {
  const groups = new Map<string, PartRun[]>();
  for (const run of runs) {
    const key = rowKey(run);
    const group = groups.get(key);
    if (group === undefined) groups.set(key, [run]);
    else group.push(run);
  }
  return [...groups.values()].map((group) => {
    const first = group[0] as PartRun;
    const sorted = [...group].sort((a, b) => a.round - b.round);
    const documents = sum(group.map((r) => r.documents));
    const seconds = sum(group.map((r) => r.seconds));
    const tokensEvaluated = sum(group.map((r) => r.tokensEvaluated));
    return {
      part: first.part,
      build: first.build,
      corpus: first.corpus,
      parallel: first.parallel,
      rounds: group.length,
      documents,
      seconds,
      documentsPerSecond: documents / seconds,
      tokensEvaluated,
      tokensPerDocument: tokensEvaluated / documents,
      tokensPerSecond: tokensEvaluated / seconds,
      peakRssMB: Math.max(...group.map((r) => r.peakRssMB)),
      roundDocumentsPerSecond: sorted.map((r) => r.documents / r.seconds),
    };
  });
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** The best row (highest docs/s) among those matching. */
export function best(rows: readonly PartRow[], match: (row: PartRow) => boolean): PartRow | null {
  let top: PartRow | null = null;
  for (const row of rows)
    if (match(row) && (top === null || row.documentsPerSecond > top.documentsPerSecond)) top = row;
  return top;
}

export interface Ratio {
  readonly name: string;
  /** From the sums over all rounds. */
  readonly value: number;
  /** The same ratio in each round (both parts ran in that round, minutes apart at most). */
  readonly perRound: readonly number[];
  readonly target: number;
  readonly met: boolean;
  readonly numerator: string;
  readonly denominator: string;
}

export type Measure = 'documentsPerSecond' | 'tokensPerSecond';

export function ratio(name: string, a: PartRow, b: PartRow, measure: Measure, target: number): Ratio {
  const value = a[measure] / b[measure];
  const perRound =
    measure === 'documentsPerSecond'
      ? a.roundDocumentsPerSecond.map((x, i) => x / (b.roundDocumentsPerSecond[i] ?? NaN))
      : // tokens per document is fixed per part, so the per-round token rate ratio is the docs/s ratio rescaled
        a.roundDocumentsPerSecond.map(
          (x, i) => (x * a.tokensPerDocument) / ((b.roundDocumentsPerSecond[i] ?? NaN) * b.tokensPerDocument),
        );
  return {
    name,
    value,
    perRound,
    target,
    met: value >= target,
    numerator: label(a),
    denominator: label(b),
  };
}

export function label(row: PartRow): string {
  const unit = row.part.startsWith('llama-server') ? 'slots' : row.part.startsWith('engine') ? 'sequences' : null;
  return `${row.part}${unit === null ? '' : ` (${row.parallel} ${unit})`}, ${row.build}, ${row.corpus}`;
}

export function markdownTable(rows: readonly PartRow[]): string[] {
  const fmt = (x: number, digits: number): string =>
    x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  return [
    '| corpus | part | parallel | build | docs/s | tokens/doc | tokens/s | peak RSS MB | docs/s per round |',
    '|---|---|---:|---|---:|---:|---:|---:|---|',
    ...rows.map(
      (r) =>
        `| ${r.corpus} | ${r.part} | ${r.parallel} | ${r.build} | ${fmt(r.documentsPerSecond, 2)} | ` +
        `${fmt(r.tokensPerDocument, 0)} | ${fmt(r.tokensPerSecond, 0)} | ${fmt(r.peakRssMB, 0)} | ` +
        `${r.roundDocumentsPerSecond.map((x) => fmt(x, 2)).join(' / ')} |`,
    ),
  ];
}

export function ratioLines(ratios: readonly Ratio[]): string[] {
  return ratios.map(
    (r) =>
      `- ${r.name}: **${r.value.toFixed(2)}×** (target ≥ ${r.target.toFixed(2)}×: ${r.met ? 'met' : 'missed'}; ` +
      `per round ${r.perRound.map((x) => x.toFixed(2)).join(' / ')}) — ${r.numerator} ÷ ${r.denominator}`,
  );
}

/** Exact duplicates for a slice: the first `unique` texts, then copies of them, in a seeded shuffle. */
export function withDuplicates<T>(items: readonly T[], share: number, seed: number): T[] {
  if (!(share >= 0 && share < 1)) throw new Error(`--duplicates ${share}: expected a share in [0, 1)`);
  const duplicates = Math.round(items.length * share);
  const unique = items.slice(0, items.length - duplicates);
  if (unique.length === 0 && duplicates > 0) throw new Error('a slice of duplicates needs at least one unique item');
  const random = mulberry32(seed);
  const out = [...unique];
  for (let i = 0; i < duplicates; i++) out.push(unique[Math.floor(random() * unique.length)] as T);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A ratio taken block by block in the paired phase: in each block both parts ran back to back on the same documents,
 * seconds apart, so a slow or fast spell of a shared machine moves both. The median over blocks is what a target is
 * judged by; the spread shows how far single blocks move.
 */
export interface PairedRatio {
  readonly name: string;
  readonly measure: Measure;
  readonly target: number;
  /** The ratio in each block, in block order (NaN where a block lacks either part). */
  readonly perBlock: readonly number[];
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** Blocks whose ratio is at or above the target. */
  readonly blocksMet: number;
  readonly met: boolean;
  readonly numerator: string;
  readonly denominator: string;
}

/** Median of the finite values (NaN when there are none). */
export function median(values: readonly number[]): number {
  const xs = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (xs.length === 0) return NaN;
  const mid = Math.floor(xs.length / 2);
  return xs.length % 2 === 1 ? (xs[mid] as number) : ((xs[mid - 1] as number) + (xs[mid] as number)) / 2;
}

function rate(run: PartRun, measure: Measure): number {
  return (measure === 'documentsPerSecond' ? run.documents : run.tokensEvaluated) / run.seconds;
}

/** `a ÷ b` in every block (`blocks[i]`: the runs of block i), with its median, range and the blocks that meet it. */
export function pairedRatio(
  name: string,
  blocks: readonly (readonly PartRun[])[],
  a: { readonly match: (run: PartRun) => boolean; readonly label: string },
  b: { readonly match: (run: PartRun) => boolean; readonly label: string },
  measure: Measure,
  target: number,
): PairedRatio {
  const perBlock = blocks.map((runs) => {
    const x = runs.find(a.match);
    const y = runs.find(b.match);
    return x === undefined || y === undefined ? NaN : rate(x, measure) / rate(y, measure);
  });
  const finite = perBlock.filter(Number.isFinite);
  const value = median(perBlock);
  return {
    name,
    measure,
    target,
    perBlock,
    median: value,
    min: finite.length === 0 ? NaN : Math.min(...finite),
    max: finite.length === 0 ? NaN : Math.max(...finite),
    blocksMet: finite.filter((x) => x >= target).length,
    met: value >= target,
    numerator: a.label,
    denominator: b.label,
  };
}

export function pairedRatioLines(ratios: readonly PairedRatio[]): string[] {
  return ratios.map((r) => {
    const blocks = r.perBlock.filter(Number.isFinite).length;
    return (
      `- ${r.name}: median **${r.median.toFixed(2)}×** over ${blocks} blocks (target ≥ ${r.target.toFixed(2)}×: ` +
      `${r.met ? 'met' : 'missed'}; ${r.blocksMet} of ${blocks} blocks at or above it; range ` +
      `${r.min.toFixed(2)}–${r.max.toFixed(2)}; per block ${r.perBlock.map((x) => x.toFixed(2)).join(' / ')}) — ` +
      `${r.numerator} ÷ ${r.denominator}`
    );
  });
}
