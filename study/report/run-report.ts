// `rescale report`: one self-contained HTML page about a finished run — what was labelled, how sure the model was,
// what went to the fallback and what it cost, how fast it ran, and (with gold labels) how good the labels are.
// No external assets: plots are inline SVG, styles inline, no scripts; document text never appears.

import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { RESCALE_VERSION } from '../../contracts/package-root.js';
import { parsePartialRunManifest, type PartialRunManifest } from '../../contracts/run-manifest.js';
import { outputLayout, shardResultPath } from '../../storage/output-layout.js';
import { readAuditLog, type AuditEntry } from '../../fallback/audit-log.js';
import {
  expectedCalibrationError,
  reliabilityBins,
  thresholdSweep,
  type CalibrationItem,
  type ReliabilityBin,
} from '../calibration/calibration.js';
import {
  evaluatePredictions,
  type EvaluationResult,
  type SystemEvaluation,
} from '../evaluation/evaluate-predictions.js';
import {
  joinByIds,
  readGoldLabels,
  readPredictions,
  resolveLabelOrder,
  resultFileQuestions,
  type Predictions,
} from '../evaluation/labelled-predictions.js';
import { readParquetTable } from '../../storage/parquet-table.js';
import { RescaleError } from '../../contracts/errors.js';
import type { CalibrationResult } from '../calibration/routing-calibration.js';
import { barChart, escapeXml, lineChart, PALETTE, reliabilityDiagram, stackedHistogram } from './svg-charts.js';
import { fixed, percent, withInterval } from '../text-table.js';
import type { BootstrapInterval } from '../evaluation/bootstrap.js';
import type { ReviewEvaluation } from '../review/review-study.js';
import { agreementRows } from '../review/review-stats.js';

export interface RunReportOptions {
  /** The merged result Parquet of a run; its manifest, shard folder and fallback audit are found beside it. */
  readonly results: string;
  readonly gold?: { readonly file: string; readonly idColumn: string; readonly labelColumn: string };
  /** An evaluation (rescale evaluate --json) whose files carry training sizes. */
  readonly learningCurve?: EvaluationResult;
  /** A calibration (rescale calibrate --json). */
  readonly calibration?: CalibrationResult;
  /** The human review of the crowd that produced the training labels (rescale evaluate --review). */
  readonly review?: ReviewEvaluation;
  readonly seed: number;
  readonly resamples: number;
  /** Shown as the generation time (default now). */
  readonly generatedAt?: Date;
}

/** A report describes whatever a manifest holds: one from an older rescale, or cut down, still renders. */
type Manifest = PartialRunManifest;

export interface ThroughputPoint {
  /** Seconds since the run started. */
  readonly seconds: number;
  /** Documents finished so far (reused shards count from the start). */
  readonly documents: number;
  /** Documents per second since the previous point. */
  readonly rate: number;
}

export interface FallbackSummary {
  readonly routed: number;
  readonly byStatus: ReadonlyMap<string, number>;
  readonly fromFallback: number;
  readonly audit: {
    readonly file: string;
    readonly costUsd: number;
    readonly requests: number;
    readonly cacheHits: number;
    readonly skipped: number;
    readonly timeline: readonly { seconds: number; costUsd: number }[];
  } | null;
}

/** Null when there is none to read; a manifest that is there but malformed is an error naming the field. */
async function readManifest(results: string): Promise<Manifest | null> {
  const file = outputLayout(results).manifestFile;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return null;
  }
  return parsePartialRunManifest(text, file);
}

/**
 * Throughput from when each shard's result file was finished (its mtime in `<results>.parts/shards/`), relative to
 * the manifest's start time; null when the shard files or the timing are gone.
 */
export interface Throughput {
  readonly points: readonly ThroughputPoint[];
  /**
   * run-start: seconds since the manifest's start; first-shard: the run reused every shard, so since the first shard
   * file.
   */
  readonly origin: 'run-start' | 'first-shard';
}

export async function throughputTimeline(results: string, manifest: Manifest | null): Promise<Throughput | null> {
  const shards = manifest?.merge?.shards;
  const started = manifest?.startedAt === undefined ? Number.NaN : Date.parse(manifest.startedAt);
  if (shards === undefined || shards.length === 0 || Number.isNaN(started)) return null;
  const dir = outputLayout(results).shardDir;
  const finished: { time: number; rows: number }[] = [];
  for (const shard of shards) {
    if (shard.id === undefined || shard.rows === undefined) return null;
    const info = await stat(shardResultPath(dir, shard.id)).catch(() => undefined);
    if (info === undefined) return null;
    finished.push({ time: info.mtimeMs, rows: shard.rows });
  }
  finished.sort((a, b) => a.time - b.time);
  // A resumed run that found every shard done has no new timing: use the shard files alone, from the first one
  // finished (whose own duration is unknown, so it counts as already done).
  const first = finished[0] as { time: number; rows: number };
  const origin = finished.some((f) => f.time >= started) ? started : first.time;
  const reused = finished
    .filter((f) => f.time < origin || (origin !== started && f === first))
    .reduce((n, f) => n + f.rows, 0);
  const points: ThroughputPoint[] = [{ seconds: 0, documents: reused, rate: 0 }];
  let last = { seconds: 0, documents: reused };
  for (const f of finished) {
    if (f.time < origin || (origin !== started && f === first)) continue;
    const seconds = (f.time - origin) / 1000;
    const documents = last.documents + f.rows;
    const dt = seconds - last.seconds;
    points.push({ seconds, documents, rate: dt > 0 ? f.rows / dt : 0 });
    last = { seconds, documents };
  }
  return points.length > 1 ? { points, origin: origin === started ? 'run-start' : 'first-shard' } : null;
}

async function readAudit(file: string, started: number): Promise<FallbackSummary['audit']> {
  let records: AuditEntry[];
  try {
    records = await readAuditLog(file);
  } catch {
    return null;
  }
  let costUsd = 0;
  let requests = 0;
  let cacheHits = 0;
  let skipped = 0;
  const timeline: { seconds: number; costUsd: number }[] = [];
  let first = Number.isNaN(started) ? Number.NaN : started;
  for (const record of records) {
    const time = record.time === undefined ? Number.NaN : Date.parse(record.time);
    if (Number.isNaN(first) && !Number.isNaN(time)) first = time;
    if (record.event === 'call') {
      requests++;
      costUsd += record.cost_usd ?? 0;
      if (!Number.isNaN(time)) timeline.push({ seconds: Math.max(0, (time - first) / 1000), costUsd });
    } else if (record.event === 'cache_hit') cacheHits++;
    else if (record.event === 'skipped') skipped++;
  }
  return { file, costUsd, requests, cacheHits, skipped, timeline };
}

function countBy(values: readonly (string | null)[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const v of values) if (v !== null) counts.set(v, (counts.get(v) ?? 0) + 1);
  return counts;
}

async function fallbackSummary(
  results: string,
  predictions: Predictions,
  manifest: Manifest | null,
): Promise<FallbackSummary | null> {
  const statuses = predictions.fallbackStatuses;
  const auditFile = outputLayout(results).fallbackAuditFile;
  const hasAudit = existsSync(auditFile);
  if (statuses === null && !hasAudit) return null;
  const byStatus = countBy(statuses ?? []);
  const routed = [...byStatus.values()].reduce((a, b) => a + b, 0);
  if (routed === 0 && !hasAudit) return null;
  const started = manifest?.startedAt === undefined ? Number.NaN : Date.parse(manifest.startedAt);
  return {
    routed,
    byStatus,
    fromFallback: (predictions.sources ?? []).filter((s) => s === 'fallback').length,
    audit: hasAudit ? await readAudit(auditFile, started) : null,
  };
}

interface GoldSection {
  readonly evaluation: EvaluationResult;
  readonly bins: readonly ReliabilityBin[];
  readonly ece: number;
  readonly items: readonly CalibrationItem[];
}

async function goldSection(
  options: RunReportOptions,
  predictions: Predictions,
  labelColumn = options.gold?.labelColumn,
): Promise<GoldSection | null> {
  if (options.gold === undefined || labelColumn === undefined) return null;
  const gold = await readGoldLabels(options.gold.file, { idColumn: options.gold.idColumn, labelColumn });
  const labels = resolveLabelOrder(gold, [predictions], undefined);
  const evaluation = evaluatePredictions(gold, [predictions], {
    labels,
    seed: options.seed,
    resamples: options.resamples,
    names: ['this run'],
  });
  // Calibration of the local model: its own label and confidence, whatever the fallback did.
  const join = joinByIds(gold, predictions, (p) => p.localLabels);
  const items: CalibrationItem[] = [];
  join.goldRows.forEach((g, i) => {
    const p = join.predictionRows[i] as number;
    const confidence = predictions.confidence?.[p];
    if (confidence === null || confidence === undefined) return;
    items.push({ confidence, correct: predictions.localLabels[p] === gold.labels[g] });
  });
  if (items.length === 0) return { evaluation, bins: [], ece: Number.NaN, items };
  return { evaluation, bins: reliabilityBins(items), ece: expectedCalibrationError(items), items };
}

export interface RunReportData {
  readonly results: string;
  readonly predictions: Predictions;
  readonly labels: readonly string[];
  readonly manifest: Manifest | null;
  readonly throughput: Throughput | null;
  readonly fallback: FallbackSummary | null;
  readonly gold: GoldSection | null;
  readonly learningCurve: EvaluationResult | null;
  readonly calibration: CalibrationResult | null;
  readonly review: ReviewEvaluation | null;
  readonly generatedAt: Date;
  /**
   * A multi-question run: each question's part (its label distribution, confidence, fallback share and agreement with
   * the gold column named after it). The fields above then hold the first question's.
   */
  readonly questions: readonly QuestionReport[] | null;
}

export interface QuestionReport {
  readonly name: string;
  readonly predictions: Predictions;
  readonly labels: readonly string[];
  readonly fallback: FallbackSummary | null;
  /** Null without --gold, or when the gold file has no column named after the question. */
  readonly gold: GoldSection | null;
}

/** Each question of a multi-question result file, read through its `<question>__` columns. */
async function questionReports(
  options: RunReportOptions,
  results: string,
  questions: readonly { name: string; labels: string[] }[],
  manifest: Manifest | null,
): Promise<QuestionReport[]> {
  const goldColumns =
    options.gold === undefined ? [] : (await readParquetTable(options.gold.file, '--gold', [])).columnNames;
  if (options.gold !== undefined && !questions.some((q) => goldColumns.includes(q.name))) {
    throw new RescaleError(
      'COLUMN_MISSING',
      `--gold ${options.gold.file} has no column named after a question of ${results} ` +
        `(${questions.map((q) => q.name).join(', ')}); a multi-question report compares each question with the ` +
        'gold column of its name',
    );
  }
  const out: QuestionReport[] = [];
  for (const question of questions) {
    const predictions = await readPredictions(results, 'report', 'label', question.name);
    out.push({
      name: question.name,
      predictions,
      labels: question.labels,
      fallback: await fallbackSummary(results, predictions, manifest),
      gold: goldColumns.includes(question.name) ? await goldSection(options, predictions, question.name) : null,
    });
  }
  return out;
}

export async function collectRunReport(options: RunReportOptions): Promise<RunReportData> {
  const results = path.resolve(options.results);
  const manifest = await readManifest(results);
  const fileQuestions = await resultFileQuestions(results, 'report');
  const questions = fileQuestions === null ? null : await questionReports(options, results, fileQuestions, manifest);
  const first = questions?.[0];
  const predictions = first?.predictions ?? (await readPredictions(results, 'report'));
  const seen = [...countBy(predictions.labels).keys()].sort();
  const labels = first?.labels ?? predictions.labelOrder ?? seen;
  return {
    results,
    predictions,
    labels,
    manifest,
    throughput: await throughputTimeline(results, manifest),
    fallback: first !== undefined ? first.fallback : await fallbackSummary(results, predictions, manifest),
    gold: first !== undefined ? first.gold : await goldSection(options, predictions),
    learningCurve: options.learningCurve ?? null,
    calibration: options.calibration ?? null,
    review: options.review ?? null,
    generatedAt: options.generatedAt ?? new Date(),
    questions,
  };
}

// ---- rendering ----

function table(header: readonly string[], rows: readonly (readonly string[])[], className = ''): string {
  const headCells = header.map((h) => `<th>${escapeXml(h)}</th>`).join('');
  const cells = (row: readonly string[]): string =>
    row
      .map((cell, i) => (i === 0 ? `<th scope="row">${escapeXml(cell)}</th>` : `<td>${escapeXml(cell)}</td>`))
      .join('');
  const body = rows.map((row) => `<tr>${cells(row)}</tr>`).join('');
  return (
    `<table${className ? ` class="${className}"` : ''}><thead><tr>${headCells}</tr></thead><tbody>${body}</tbody>` +
    `</table>`
  );
}

function section(id: string, title: string, body: string, intro?: string): string {
  return (
    `<section id="${id}"><h2>${escapeXml(title)}</h2>${intro ? `<p class="intro">${escapeXml(intro)}</p>` : ''}` +
    `${body}</section>`
  );
}

function figure(svg: string, caption: string): string {
  return `<figure>${svg}<figcaption>${escapeXml(caption)}</figcaption></figure>`;
}

function duration(seconds: number): string {
  if (seconds < 90) return `${seconds.toFixed(1)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(2)} h`;
}

function runSummary(data: RunReportData): string {
  const p = data.predictions;
  const m = data.manifest;
  const statuses = countBy(p.statuses ?? []);
  const rows: string[][] = [
    ['results', data.results],
    ['documents', p.rows.toLocaleString('en-US')],
    ['statuses', [...statuses].map(([s, n]) => `${s} ${n.toLocaleString('en-US')}`).join(', ') || 'n/a'],
    data.questions === null
      ? ['labels', data.labels.join(', ')]
      : ['questions', data.questions.map((q) => `${q.name} (${q.labels.join(', ')})`).join('; ')],
  ];
  if (m !== null) {
    if (m.codebook?.source)
      rows.push([
        'codebook',
        `${m.codebook.source}${m.codebook.hash ? ` (result hash ${m.codebook.hash.slice(0, 12)})` : ''}`,
      ]);
    if (m.model?.path)
      rows.push([
        'model',
        `${path.basename(m.model.path)}${m.model.sha256 ? ` (sha256 ${m.model.sha256.slice(0, 12)}…)` : ''}`,
      ]);
    for (const a of m.adapters ?? []) rows.push(['adapter', `${path.basename(a.path ?? '')} × ${a.scale ?? 1}`]);
    if (m.mode) rows.push(['mode', m.mode]);
    if (m.startedAt && m.endedAt) {
      const seconds = (Date.parse(m.endedAt) - Date.parse(m.startedAt)) / 1000;
      rows.push([
        'time',
        `${m.startedAt} → ${m.endedAt} (${duration(seconds)}` +
          `${seconds > 0 ? `, ${(p.rows / seconds).toFixed(1)} documents/s overall` : ''})`,
      ]);
    }
    if (m.host?.hostname)
      rows.push([
        'host',
        `${m.host.hostname}${m.host.cpus ? `, ${m.host.cpus}` : ''}${m.host.cores ? ` × ${m.host.cores}` : ''}`,
      ]);
    if (m.rescale) rows.push(['rescale', m.rescale]);
  } else {
    rows.push(['manifest', 'not found beside the results (expected RESULTS.manifest.json)']);
  }
  return table(['', ''], rows, 'kv');
}

function labelDistribution(data: RunReportData): string {
  const counts = countBy(data.predictions.labels);
  const unlabelled = data.predictions.labels.filter((l) => l === null).length;
  const categories = [...data.labels, ...(unlabelled > 0 ? ['(no label)'] : [])];
  const values = categories.map((c) => (c === '(no label)' ? unlabelled : (counts.get(c) ?? 0)));
  const total = data.predictions.rows || 1;
  const svg = barChart({
    title: 'Label distribution',
    categories,
    values,
    yTitle: 'documents',
    colors: categories.map((c, i) => (c === '(no label)' ? '#9aa3ad' : (PALETTE[i % PALETTE.length] as string))),
  });
  const rows = categories.map((c, i) => [
    c,
    (values[i] ?? 0).toLocaleString('en-US'),
    percent((values[i] ?? 0) / total),
  ]);
  return section(
    'labels',
    'Label distribution',
    `<div class="row">${figure(svg, 'Final label per document (the fallback’s where it answered).')}` +
      `${table(['label', 'documents', 'share'], rows)}</div>`,
  );
}

function confidenceHistogram(data: RunReportData): string {
  const confidence = data.predictions.confidence;
  if (confidence === null) return '';
  const bins = 20;
  const edges = Array.from({ length: bins + 1 }, (_, i) => i / bins);
  const binOf = (c: number): number => Math.min(bins - 1, Math.max(0, Math.floor(c * bins)));
  let series: { name: string; color: string; counts: number[] }[];
  if (data.gold !== null && data.gold.items.length > 0) {
    const right = new Array<number>(bins).fill(0);
    const wrong = new Array<number>(bins).fill(0);
    for (const item of data.gold.items) {
      const b = binOf(item.confidence);
      if (item.correct) right[b] = (right[b] as number) + 1;
      else wrong[b] = (wrong[b] as number) + 1;
    }
    series = [
      { name: 'local label correct', color: '#3a9a5b', counts: right },
      { name: 'local label wrong', color: '#c43c3c', counts: wrong },
    ];
  } else {
    const counts = new Array<number>(bins).fill(0);
    for (const c of confidence) if (c !== null) counts[binOf(c)] = (counts[binOf(c)] as number) + 1;
    series = [{ name: 'documents', color: PALETTE[0], counts }];
  }
  const scored = confidence.filter((c): c is number => c !== null);
  const mean = scored.reduce((a, b) => a + b, 0) / (scored.length || 1);
  const svg = stackedHistogram({
    title: 'Confidence histogram',
    edges,
    series,
    xTitle: 'confidence of the local model’s label',
    yTitle: 'documents',
  });
  const caption =
    data.gold !== null
      ? `Local model confidence on the ${data.gold.items.length.toLocaleString('en-US')} gold-labelled documents, ` +
        `split by whether its label was right.`
      : `Local model confidence on ${scored.length.toLocaleString('en-US')} scored documents (mean ${fixed(mean)}).`;
  return section('confidence', 'Confidence', figure(svg, caption));
}

function fallbackSection(data: RunReportData): string {
  const f = data.fallback;
  if (f === null) return '';
  const total = data.predictions.rows || 1;
  const statuses = ['ok', 'fallback_invalid', 'over_budget', 'fallback_failed'];
  const other = [...f.byStatus.keys()].filter((s) => !statuses.includes(s));
  const categories = ['local only', ...statuses, ...other];
  const values = [
    total - f.routed,
    ...statuses.map((s) => f.byStatus.get(s) ?? 0),
    ...other.map((s) => f.byStatus.get(s) ?? 0),
  ];
  const svg = barChart({
    title: 'Routing to the fallback',
    categories,
    values,
    yTitle: 'documents',
    colors: ['#9aa3ad', '#3a9a5b', '#e08a2c', '#c43c3c', '#7b5aa6', ...other.map(() => '#5f6b7a')],
  });
  const rows = [
    ['routed to the fallback', `${f.routed.toLocaleString('en-US')} (${percent(f.routed / total)})`],
    ['final label from the fallback', `${f.fromFallback.toLocaleString('en-US')} (${percent(f.fromFallback / total)})`],
    ...[...f.byStatus].map(([s, n]) => [`fallback status ${s}`, n.toLocaleString('en-US')]),
  ];
  let cost = '';
  if (f.audit !== null) {
    rows.push([
      'cost (audit)',
      `$${f.audit.costUsd.toFixed(4)} for ${f.audit.requests} requests; ${f.audit.cacheHits} answered from the ` +
        `cache; ${f.audit.skipped} skipped over budget`,
    ]);
    if (f.routed > 0) rows.push(['cost per routed document', `$${(f.audit.costUsd / f.routed).toFixed(6)}`]);
    if (f.audit.timeline.length > 1) {
      cost = figure(
        lineChart({
          title: 'Fallback cost over time',
          series: [
            {
              name: 'cumulative cost',
              color: '#e08a2c',
              points: f.audit.timeline.map((t) => ({ x: t.seconds / 60, y: t.costUsd })),
            },
          ],
          xTitle: 'minutes since the run started',
          yTitle: 'USD',
          dots: false,
          yFormat: (v) => `$${v.toFixed(v < 1 ? 3 : 2)}`,
        }),
        `From ${path.basename(f.audit.file)} (every request, across runs of this output).`,
      );
    }
  }
  return section(
    'fallback',
    'Fallback routing and cost',
    `<div class="row">${figure(svg, 'Documents kept local vs routed, by what the fallback returned.')}` +
      `${table(['', ''], rows, 'kv')}</div>${cost}`,
    'Routed documents left the machine (their text was sent to the fallback endpoint); the others never did.',
  );
}

function throughputSection(data: RunReportData): string {
  if (data.throughput === null) return '';
  const t = data.throughput.points;
  const resumed = data.throughput.origin === 'first-shard';
  const last = t[t.length - 1] as ThroughputPoint;
  const first = t[0] as ThroughputPoint;
  const rate = last.seconds > 0 ? (last.documents - first.documents) / last.seconds : 0;
  // A step per shard: the rate at which that shard's documents were finished, over the time it took.
  const steps: { x: number; y: number; label: string }[] = [];
  for (let i = 1; i < t.length; i++) {
    const p = t[i] as ThroughputPoint;
    const previous = t[i - 1] as ThroughputPoint;
    const label =
      `${(previous.seconds / 60).toFixed(2)}–${(p.seconds / 60).toFixed(2)} min: ` + `${p.rate.toFixed(1)} docs/s`;
    steps.push({ x: previous.seconds / 60, y: p.rate, label }, { x: p.seconds / 60, y: p.rate, label });
  }
  const svg = lineChart({
    title: 'Throughput over time',
    series: [{ name: 'documents per second', color: PALETTE[0], points: steps }],
    xTitle: resumed ? 'minutes since the first shard finished' : 'minutes since the run started',
    yTitle: 'documents / second',
    xDomain: [0, Math.max(last.seconds / 60, 1e-3)],
    yDomain: [0, Math.max(...t.map((p) => p.rate)) * 1.15 || 1],
    dots: false,
  });
  return section(
    'throughput',
    'Throughput',
    figure(
      svg,
      `Each step is one shard, from the times its result file and the previous one were finished. ` +
        `${(last.documents - first.documents).toLocaleString('en-US')} documents in ${duration(last.seconds)}: ` +
        `${rate.toFixed(1)} documents/s` +
        (resumed
          ? `. The last run found every shard done: these are the times of the shard files, the first shard ` +
            `(${first.documents.toLocaleString('en-US')} documents) counted as done at 0.`
          : first.documents > 0
            ? `; ${first.documents.toLocaleString('en-US')} reused from an earlier run.`
            : '.'),
    ),
  );
}

function metricsTable(evaluation: EvaluationResult): string {
  const rows: [string, (s: SystemEvaluation) => BootstrapInterval | null][] = [
    ['accuracy', (s) => s.accuracy],
    ['macro-F1', (s) => s.macroF1],
    ['weighted-F1', (s) => s.weightedF1],
    ["Cohen's kappa", (s) => s.cohenKappa],
    ["Krippendorff's alpha (nominal)", (s) => s.alphaNominal],
  ];
  if (evaluation.ordered)
    rows.push(
      ["Krippendorff's alpha (ordinal)", (s) => s.alphaOrdinal],
      ['kappa (quadratic)', (s) => s.kappaQuadratic],
    );
  return table(
    ['metric', ...evaluation.systems.map((s) => `${s.name} (95% CI)`)],
    rows.map(([name, pick]) => [
      name,
      ...evaluation.systems.map((s) => {
        const ci = pick(s);
        return ci === null ? 'n/a' : withInterval(ci);
      }),
    ]),
  );
}

function confusionTable(system: SystemEvaluation): string {
  const { labels, counts } = system.confusion;
  const headCells = labels.map((l) => `<th>${escapeXml(l)}</th>`).join('');
  const head = `<tr><th>gold \\ predicted</th>${headCells}<th>recall</th></tr>`;
  const body = labels
    .map((label, i) => {
      const row = counts[i] ?? [];
      const total = row.reduce((a, b) => a + b, 0) || 1;
      const cells = row.map((c, j) => {
        const share = c / total;
        const color =
          i === j ? `rgba(58,154,91,${(0.1 + share * 0.8).toFixed(3)})` : `rgba(196,60,60,${(share * 0.9).toFixed(3)})`;
        return (
          `<td style="background:${color};${share > 0.55 ? 'color:#fff;' : ''}" ` +
          `title="${escapeXml(`${label} → ${labels[j] ?? ''}: ${c} (${percent(share)} of gold ${label})`)}">` +
          `${c.toLocaleString('en-US')}</td>`
        );
      });
      return (
        `<tr><th scope="row">${escapeXml(label)}</th>${cells.join('')}` +
        `<td>${fixed((row[i] ?? 0) / total)}</td></tr>`
      );
    })
    .join('');
  return `<table class="confusion"><thead>${head}</thead><tbody>${body}</tbody></table>`;
}

function goldSectionHtml(data: RunReportData): string {
  const g = data.gold;
  if (g === null) return '';
  const e = g.evaluation;
  const system = e.systems[0] as SystemEvaluation;
  const coverage = system.coverage;
  const left: string[] = [];
  if (coverage.missingPredictions > 0) left.push(`${coverage.missingPredictions} gold documents have no result row`);
  if (coverage.notInGold > 0) left.push(`${coverage.notInGold} result rows are not in the gold file`);
  const unscored = Object.entries(coverage.unscored);
  if (unscored.length > 0)
    left.push(
      `${unscored.reduce((n, [, c]) => n + c, 0)} gold documents were not scored ` +
        `(${unscored.map(([s, c]) => `${s} ${c}`).join(', ')})`,
    );
  const intro =
    `${e.documents.toLocaleString('en-US')} documents with gold labels from ${path.basename(e.gold.file)} (column ` +
    `"${e.gold.labelColumn}"). 95% percentile bootstrap CIs, ${e.bootstrap.resamples} resamples, seed ` +
    `${e.bootstrap.seed}. Joined by ${coverage.key}` +
    `${coverage.key === 'id' ? '' : ' (the corpus files reuse ids)'}.` +
    `${left.length > 0 ? ` Left out: ${left.join('; ')}.` : ''}`;
  const perClass = table(
    ['label', 'support', 'predicted', 'precision', 'recall', 'F1'],
    system.perClass.map((c) => [
      c.label,
      String(c.support),
      String(c.predicted),
      withInterval(c.precision),
      withInterval(c.recall),
      withInterval(c.f1),
    ]),
  );
  let calibration = '';
  if (g.bins.length > 0) {
    // Share routed vs accuracy of what is kept: what a confidence threshold buys, before any fallback assumption.
    // The last few documents kept make a noisy tail; stop where fewer than 2% (at least 20) are left.
    const minKept = Math.max(20, Math.ceil(g.items.length * 0.02));
    const sweep = thresholdSweep(
      g.items.map((i) => ({ correct: i.correct, confidence: i.confidence })),
      { fallbackAccuracy: 1, fallbackCostPerDocument: 0, corpusSize: 1 },
    ).filter((p) => p.keptAccuracy !== null && p.kept >= Math.min(minKept, g.items.length));
    const kept = lineChart({
      title: 'Accuracy of the documents kept local',
      series: [
        {
          name: 'kept accuracy',
          color: PALETTE[0],
          points: sweep.map((p) => ({
            x: p.routedShare * 100,
            y: p.keptAccuracy as number,
            label:
              `confidence ≥ ${fixed(p.threshold)}: ${percent(p.routedShare)} routed, kept accuracy ` +
              `${fixed(p.keptAccuracy)}`,
          })),
        },
      ],
      xTitle: 'share of documents routed away (lowest confidence first), %',
      yTitle: 'accuracy of the rest',
      xDomain: [0, 100],
      // Ties in confidence make jumps (many documents share one score): no line across them.
      dots: sweep.length <= 60,
      breakGap: 5,
    });
    const reliabilityCaption =
      `Expected calibration error ${fixed(g.ece)} (10 equal-width bins). ` +
      'Bars: accuracy per confidence bin; dashed: perfect calibration.';
    const keptCaption =
      'Routing the least confident documents away: the accuracy of those kept rises if confidence is informative. ' +
      'Breaks in the line: many documents share one confidence, so no threshold lies between.';
    calibration =
      `<h3>Calibration of the local model</h3><div class="row">` +
      `${figure(reliabilityDiagram(g.bins), reliabilityCaption)}${figure(kept, keptCaption)}</div>`;
  }
  return section(
    'evaluation',
    'Agreement with the gold labels',
    `${metricsTable(e)}<h3>Per class</h3>${perClass}<h3>Confusion matrix</h3>${confusionTable(system)}${calibration}`,
    intro,
  );
}

function calibrationSection(data: RunReportData): string {
  const c = data.calibration;
  if (c === null) return '';
  const chosen = c.recommendation.point;
  const points = c.sweep.map((p) => ({
    x: p.routedShare * 100,
    y: p.hybridAccuracy,
    label:
      `${c.rule} threshold ${fixed(p.threshold)}: ${percent(p.routedShare)} routed, expected accuracy ` +
      `${fixed(p.hybridAccuracy)}`,
  }));
  const svg = lineChart({
    title: 'Expected hybrid accuracy by routed share',
    series: [{ name: 'expected hybrid accuracy', color: PALETTE[2], points }],
    xTitle: `share routed to the fallback, % (${c.rule} rule)`,
    yTitle: 'expected accuracy',
    xDomain: [0, 100],
    dots: false,
    breakGap: 5,
    markers: chosen === null ? [] : [{ x: chosen.routedShare * 100, label: `recommended: ${fixed(chosen.threshold)}` }],
  });
  const priced = c.costPerDocument !== null;
  const rows = c.table.map((p) => [
    `${Number.isFinite(p.threshold) ? fixed(p.threshold, 3) : 'route all'}` +
      `${chosen !== null && p.threshold === chosen.threshold ? ' (recommended)' : ''}`,
    percent(p.routedShare),
    p.keptAccuracy === null ? 'n/a' : fixed(p.keptAccuracy),
    fixed(p.hybridAccuracy),
    p.expectedFallbackDocuments.toFixed(0),
    ...(priced ? [p.expectedCost.toFixed(2)] : []),
  ]);
  const fallback =
    c.fallback.source === 'assumed'
      ? `an assumed fallback accuracy of ${fixed(c.fallback.accuracy)}`
      : `the fallback’s accuracy measured on ${c.fallback.documents} labelled documents ` +
        `(${fixed(c.fallback.accuracy)})`;
  const recommendation =
    chosen === null
      ? c.recommendation.reason
      : `Recommended ${c.rule} threshold ${fixed(chosen.threshold, 4)}: routes ${percent(chosen.routedShare)}, ` +
        `expected accuracy ${fixed(chosen.hybridAccuracy)}.`;
  const caption =
    `From ${path.basename(c.predictions)} against ${path.basename(c.gold)}, ` + `with ${fallback}. ${recommendation}`;
  return section(
    'calibration',
    'Routing threshold',
    `${figure(svg, caption)}` +
      table(
        [
          `threshold (keep ${c.rule === 'entropy' ? '≤' : '≥'})`,
          'routed',
          'kept accuracy',
          'hybrid accuracy',
          `fallback docs (N=${c.corpusSize})`,
          ...(priced ? ['expected cost'] : []),
        ],
        rows,
      ),
  );
}

function learningCurveSection(data: RunReportData): string {
  const lc = data.learningCurve;
  if (lc === null) return '';
  const points = lc.systems.filter((s) => s.trainingSize !== null);
  if (points.length === 0) return '';
  const positive = points.filter((s) => (s.trainingSize as number) > 0);
  const baseline = points.find((s) => s.trainingSize === 0);
  const curve = (pick: (s: SystemEvaluation) => BootstrapInterval) =>
    positive.map((s) => {
      const ci = pick(s);
      return {
        x: s.trainingSize as number,
        y: ci.estimate,
        lower: ci.lower,
        upper: ci.upper,
        label: `${s.trainingSize} examples: ${withInterval(ci)}`,
      };
    });
  const xs = positive.map((s) => s.trainingSize as number);
  const series: { name: string; color: string; points: ReturnType<typeof curve> }[] = [
    { name: 'accuracy', color: PALETTE[0], points: curve((s) => s.accuracy) },
    { name: 'macro-F1', color: PALETTE[1], points: curve((s) => s.macroF1) },
  ];
  if (baseline !== undefined && xs.length > 0) {
    const span = [Math.min(...xs), Math.max(...xs)];
    series.push({
      name: 'no fine-tuning (accuracy)',
      color: '#5f6b7a',
      points: span.map((x) => ({
        x,
        y: baseline.accuracy.estimate,
        lower: Number.NaN,
        upper: Number.NaN,
        label: `base model: ${withInterval(baseline.accuracy)}`,
      })),
    });
  }
  const svg = lineChart({
    title: 'Learning curve',
    series: series.map((s, i) => (i === 2 ? { ...s, dashed: true } : s)),
    xTitle: 'training examples (log scale)',
    yTitle: 'score on the held-out split',
    xScale: 'log',
  });
  const rows = points.map((s) => [
    String(s.trainingSize),
    withInterval(s.accuracy),
    withInterval(s.macroF1),
    withInterval(s.cohenKappa),
    withInterval(s.alphaNominal),
  ]);
  return section(
    'learning-curve',
    'Learning curve',
    figure(
      svg,
      `${lc.documents.toLocaleString('en-US')} held-out documents from ${path.basename(lc.gold.file)}; shaded: 95% ` +
        `bootstrap CI (seed ${lc.bootstrap.seed}); 0 training examples = the base model without adapter.`,
    ) + table(['training examples', 'accuracy', 'macro-F1', "Cohen's kappa", "Krippendorff's alpha"], rows),
  );
}

/** "0.667 (4/6)"; "n/a" when nothing was reviewed. */
function rateCell(r: { accepted: number; reviewed: number; rate: number | null } | undefined): string {
  return r === undefined || r.rate === null ? 'n/a' : `${fixed(r.rate)} (${r.accepted}/${r.reviewed})`;
}

/** The human review: the crowd against the verified labels, the coders against each other, cost in time. */
function reviewSection(data: RunReportData): string {
  const r = data.review;
  if (r === null) return '';
  const s = r.summary;
  const intro =
    `${s.reviewed} of ${s.documents} crowd documents reviewed (${s.overlap} assigned to two coders); ` +
    `${s.decisions} decisions in force by ${s.coders} coders and ${s.adjudicators} adjudicators. From ` +
    `${path.basename(r.db)} and the crowd folder ${path.basename(r.crowd)}.`;
  const labellers = r.acceptance.map((a) => a.labeller);
  const chart = barChart({
    title: 'Share of proposals the reviewers accepted',
    categories: labellers,
    values: r.acceptance.map((a) => a.rate ?? 0),
    yTitle: 'accepted ÷ reviewed',
    format: (v) => fixed(v),
  });
  const agreement = table(
    ['question', 'labeller', 'documents', 'accuracy', "Cohen's kappa", 'failed', 'closest'],
    agreementRows(r.agreement, fixed, 'closest'),
  );
  const reliability = table(
    ['question', 'coders', 'documents', 'agreement', "Krippendorff's alpha", "Cohen's kappa"],
    r.reliability.flatMap((q) => [
      [q.question, 'all pairs', String(q.n), fixed(q.agreement), fixed(q.alpha), ''],
      ...q.pairs.map((p) => [q.question, p.coders.join(' & '), String(p.n), fixed(p.agreement), '', fixed(p.kappa)]),
    ]),
  );
  const perLabeller = new Map(r.acceptance.map((a) => [a.labeller, a]));
  const byLabel = table(
    ['question', 'label', 'all labellers', ...labellers],
    r.acceptanceByLabel.map((l) => [
      l.question,
      l.label,
      rateCell(l),
      ...labellers.map((name) =>
        rateCell(perLabeller.get(name)?.byLabel.find((b) => b.question === l.question && b.label === l.label)),
      ),
    ]),
  );
  const seconds = (x: number | null): string => (x === null ? 'n/a' : x.toFixed(1));
  const time = table(
    ['reviewer', 'decisions', 'gaps', 'breaks', 'median s', '90th percentile s'],
    [...r.time.reviewers, r.time.all].map((t) => [
      t.reviewer === '(all)' ? 'all reviewers' : t.reviewer,
      String(t.decisions),
      String(t.gaps),
      String(t.breaks),
      seconds(t.medianSeconds),
      seconds(t.p90Seconds),
    ]),
  );
  return section(
    'review',
    'Human review',
    figure(chart, 'Accepted ÷ reviewed proposals per labeller (failed proposals left out).') +
      table(
        ['labeller', 'accepted', 'reviewed', 'rate'],
        r.acceptance.map((a) => [a.labeller, String(a.accepted), String(a.reviewed), fixed(a.rate)]),
      ) +
      '<h3>Each labeller against the verified labels</h3>' +
      agreement +
      '<h3>Inter-coder reliability on the overlap documents</h3>' +
      reliability +
      '<h3>Acceptance per proposed label</h3>' +
      byLabel +
      `<h3>Seconds per decision (gaps over ${r.time.breakSeconds} s are breaks, left out)</h3>` +
      time,
    intro,
  );
}

const STYLE =
  `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", Helvetica, ` +
  `Arial, sans-serif; margin: 0; color: #1d2329; background: #f5f6f8; line-height: 1.45; }
header { background: ` +
  `#1f3550; color: #fff; padding: 20px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; ` +
  `}
header p { margin: 0; color: #c9d4e2; font-size: 13px; }
nav { padding: 8px 32px; background: #e8ecf1; ` +
  `font-size: 13px; }
nav a { margin-right: 14px; color: #1f3550; }
main { max-width: 1160px; margin: 0 auto; ` +
  `padding: 8px 24px 40px; }
section { background: #fff; border: 1px solid #dde2e8; border-radius: 6px; padding: ` +
  `14px 20px 18px; margin: 18px 0; }
h2 { font-size: 18px; margin: 4px 0 8px; }
h3 { font-size: 15px; margin: 18px ` +
  `0 6px; }
p.intro { margin: 0 0 10px; color: #444; font-size: 13px; }
.row { display: flex; flex-wrap: wrap; ` +
  `gap: 20px; align-items: flex-start; }
figure { margin: 6px 0; }
figure svg { max-width: 100%; height: auto; ` +
  `display: block; }
figcaption { font-size: 12px; color: #555; max-width: 640px; margin-top: 4px; }
table { ` +
  `border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border-bottom: 1px solid #e3e6ea; ` +
  `padding: 4px 10px; text-align: right; white-space: nowrap; }
th:first-child, thead th { text-align: left; ` +
  `}
thead th { background: #f0f2f5; font-weight: 600; }
table.kv thead { display: none; }
table.kv td { ` +
  `text-align: left; white-space: normal; max-width: 620px; overflow-wrap: anywhere; }
table.kv th { color: #555; ` +
  `font-weight: 500; }
table.confusion td { text-align: center; min-width: 72px; }
footer { color: #666; ` +
  `font-size: 12px; text-align: center; padding: 12px; }
`;

/** A section rendered for one question of several: its id and title name the question. */
function ofQuestion(question: string, html: string): string {
  return html.replace(
    /<section id="([^"]+)"><h2>([^<]+)<\/h2>/g,
    (_m, id: string, title: string) =>
      `<section id="${escapeXml(question)}-${id}"><h2>${escapeXml(question)}: ${title}</h2>`,
  );
}

export function renderRunReport(data: RunReportData): string {
  const task = data.manifest?.codebook?.content?.task ?? path.basename(data.results, '.parquet');
  const title = `rescale report — ${task}`;
  const perQuestion = (view: RunReportData): string[] => [
    labelDistribution(view),
    confidenceHistogram(view),
    fallbackSection(view),
  ];
  const sections = [
    section('run', 'Run', runSummary(data)),
    ...(data.questions === null
      ? [...perQuestion(data), throughputSection(data), goldSectionHtml(data)]
      : [
          throughputSection(data),
          ...data.questions.flatMap((q) => {
            const view = { ...data, predictions: q.predictions, labels: q.labels, fallback: q.fallback, gold: q.gold };
            return [...perQuestion(view), goldSectionHtml(view)].map((html) => ofQuestion(q.name, html));
          }),
        ]),
    calibrationSection(data),
    learningCurveSection(data),
    reviewSection(data),
  ].filter((s) => s !== '');
  const nav = sections
    .map((s) => /<section id="([^"]+)"><h2>([^<]+)<\/h2>/.exec(s))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => `<a href="#${m[1]}">${m[2]}</a>`)
    .join('');
  return (
    `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" ` +
    `content="width=device-width, initial-scale=1">
<meta name="generator" content="rescale ` +
    `${escapeXml(RESCALE_VERSION)}">
<title>${escapeXml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
` +
    `<header><h1>${escapeXml(title)}</h1><p>${escapeXml(data.results)} · generated ` +
    `${escapeXml(data.generatedAt.toISOString())} by rescale ${escapeXml(RESCALE_VERSION)}</p></header>
<nav>${nav}` +
    `</nav>
<main>
${sections.join('\n')}
</main>
<footer>Self-contained report: no external assets, no scripts. ` +
    `Document texts are not included.</footer>
</body>
</html>
`
  );
}

export async function buildRunReport(options: RunReportOptions): Promise<string> {
  return renderRunReport(await collectRunReport(options));
}
