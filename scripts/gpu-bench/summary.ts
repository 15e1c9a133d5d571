// Gathers what bench/gpu/run.sh measured (engine-<shape>.json, fill-<shape>.json, vram-<shape>.csv,
// batched-bench.txt, steps.tsv) into results.json, summary.md and vram.csv in the output folder. Run after every
// step, so a run cut off at its time limit still leaves a summary of what it finished.

import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface EnginePart {
  readonly part: string;
  readonly sequences: number;
  readonly documents: number;
  readonly seconds: number;
  readonly documentsPerSecond: number;
  readonly tokensEvaluated: number;
  readonly tokensPerSecond: number;
  /** llama.cpp's own VRAM accounting after the part (bytes); null without a GPU. */
  readonly vramUsedBytes: number | null;
  /** Against sequences 1 on the same documents; null for the serial part itself and the ceiling. */
  readonly maxAbsDeltaP: number | null;
  readonly labelsChanged: number | null;
  readonly nonFinite: number;
  readonly settings: Record<string, unknown>;
}

export interface EngineBenchResult {
  readonly model: string;
  readonly gpu: string | false;
  readonly buildType: string;
  readonly llamaCpp: string;
  readonly documents: number;
  readonly sharedPrefixTokens: number | null;
  readonly loadSeconds: number;
  readonly parts: readonly EnginePart[];
}

/** Batched ÷ serial docs/s the issue asks for on an H100/H200-class GPU. */
export const SPEEDUP_TARGETS: Record<string, number> = { '1b': 4, '8b': 1.5 };

interface FillResult {
  readonly bytes: number;
  readonly seconds: number;
  readonly gbPerSecond: number;
  readonly procs: number;
}

interface ShapeSummary {
  readonly shape: string;
  readonly engine: EngineBenchResult | null;
  readonly fill: FillResult | null;
  /** nvidia-smi's peak memory.used while the engine ran (MiB). */
  readonly peakVramMiB: number | null;
  readonly serialDocsPerSecond: number | null;
  readonly bestBatched: { readonly sequences: number; readonly documentsPerSecond: number } | null;
  readonly speedup: number | null;
  readonly target: number | null;
  readonly maxAbsDeltaP: number | null;
}

async function readJson<T>(file: string): Promise<T | null> {
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

function peakOfCsv(text: string): number | null {
  let peak: number | null = null;
  for (const line of text.split('\n')) {
    const used = Number(line.split(',')[1]);
    if (line.trim() !== '' && Number.isFinite(used)) peak = Math.max(peak ?? 0, used);
  }
  return peak;
}

function verdict(speedup: number | null, target: number): string {
  if (speedup === null) return 'not measured';
  return speedup >= target ? 'met' : 'MISSED';
}

export async function summarize(resultsDir: string, outDir: string, mode: string): Promise<void> {
  const files = existsSync(resultsDir) ? await readdir(resultsDir) : [];
  const shapes = [
    ...new Set(files.map((f) => /^(?:engine|fill)-(.+)\.json$/.exec(f)?.[1]).filter((s) => s !== undefined)),
  ];
  const order = ['tiny', '1b', '8b'];
  shapes.sort((a, b) => order.indexOf(a) - order.indexOf(b));
  const summaries: ShapeSummary[] = [];
  let vramCsv = 'shape,timestamp,memory_used_mib,utilization_gpu_pct\n';
  for (const shape of shapes) {
    const engine = await readJson<EngineBenchResult>(path.join(resultsDir, `engine-${shape}.json`));
    const fill = await readJson<FillResult>(path.join(resultsDir, `fill-${shape}.json`));
    const vramFile = path.join(resultsDir, `vram-${shape}.csv`);
    let peakVramMiB: number | null = null;
    if (existsSync(vramFile)) {
      const text = await readFile(vramFile, 'utf8');
      peakVramMiB = peakOfCsv(text);
      for (const line of text.split('\n')) if (line.trim() !== '') vramCsv += `${shape},${line.trim()}\n`;
    }
    const engineParts = engine?.parts.filter((p) => p.documents > 0) ?? [];
    const serial = engineParts.find((p) => p.sequences === 1) ?? null;
    const batched = engineParts.filter((p) => p.sequences > 1);
    const best = batched.reduce<(typeof batched)[number] | null>(
      (a, p) => (a === null || p.documentsPerSecond > a.documentsPerSecond ? p : a),
      null,
    );
    const deltas = batched.map((p) => p.maxAbsDeltaP).filter((d): d is number => d !== null);
    summaries.push({
      shape,
      engine,
      fill,
      peakVramMiB,
      serialDocsPerSecond: serial?.documentsPerSecond ?? null,
      bestBatched: best === null ? null : { sequences: best.sequences, documentsPerSecond: best.documentsPerSecond },
      speedup: best !== null && serial !== null ? best.documentsPerSecond / serial.documentsPerSecond : null,
      target: SPEEDUP_TARGETS[shape] ?? null,
      maxAbsDeltaP: deltas.length > 0 ? Math.max(...deltas) : null,
    });
  }
  const stepsFile = path.join(outDir, 'steps.tsv');
  const steps = existsSync(stepsFile)
    ? (await readFile(stepsFile, 'utf8'))
        .split('\n')
        .slice(1)
        .filter((l) => l.trim() !== '')
        .map((l) => {
          const [name, seconds, status] = l.split('\t');
          return { name: name ?? '', seconds: Number(seconds), status: status ?? '' };
        })
    : [];
  const batchedBenchFile = path.join(resultsDir, 'batched-bench.txt');
  const batchedBench = existsSync(batchedBenchFile) ? await readFile(batchedBenchFile, 'utf8') : null;
  await writeFile(
    path.join(outDir, 'results.json'),
    JSON.stringify({ mode, date: new Date().toISOString(), shapes: summaries, steps, batchedBench }, null, 2) + '\n',
  );
  if (vramCsv.split('\n').length > 2) await writeFile(path.join(outDir, 'vram.csv'), vramCsv);

  const fmt = (n: number | null | undefined, digits = 1): string => (n == null ? '—' : n.toFixed(digits));
  const md: string[] = [`# GPU benchmark (${mode}) — ${new Date().toISOString()}`, ''];
  for (const s of summaries) {
    const e = s.engine;
    md.push(`## ${s.shape}${e ? `: ${e.model}, ${e.documents} documents, gpu ${String(e.gpu)}` : ''}`, '');
    if (s.fill) {
      md.push(
        `Model written in ${fmt(s.fill.seconds, 2)} s (${(s.fill.bytes / 1e9).toFixed(2)} GB, ` +
          `${fmt(s.fill.gbPerSecond, 2)} GB/s, ${s.fill.procs} processes).` +
          (e ? ` Loaded in ${fmt(e.loadSeconds, 1)} s; shared prefix ${e.sharedPrefixTokens} tokens.` : ''),
        '',
      );
    }
    if (e) {
      md.push(
        '| part | docs/s | tokens/s | seconds | VRAM used (llama.cpp) MiB | max \\|Δp\\| vs serial | labels changed |',
        '|---|---:|---:|---:|---:|---:|---:|',
        ...e.parts.map(
          (p) =>
            `| ${p.part} | ${fmt(p.documentsPerSecond)} | ${fmt(p.tokensPerSecond, 0)} | ${fmt(p.seconds, 2)} | ` +
            `${p.vramUsedBytes === null ? '—' : (p.vramUsedBytes / 2 ** 20).toFixed(0)} | ` +
            `${p.maxAbsDeltaP === null ? '—' : p.maxAbsDeltaP.toExponential(2)} | ${p.labelsChanged ?? '—'} |`,
        ),
        '',
      );
    }
    md.push(
      `- best batched ÷ serial docs/s: **${fmt(s.speedup, 2)}×**` +
        (s.bestBatched ? ` (sequences ${s.bestBatched.sequences})` : '') +
        (s.target === null ? '' : `; target ≥ ${s.target}×: ${verdict(s.speedup, s.target)}`),
      `- max |Δp| batched vs serial: ${s.maxAbsDeltaP === null ? '—' : s.maxAbsDeltaP.toExponential(2)}`,
      `- peak VRAM (nvidia-smi, whole GPU): ${s.peakVramMiB === null ? '—' : `${s.peakVramMiB} MiB`}`,
      '',
    );
  }
  if (batchedBench !== null) md.push('## llama-batched-bench', '', '```', batchedBench.trimEnd(), '```', '');
  md.push('## Steps', '', '| step | seconds | status |', '|---|---:|---|');
  for (const s of steps) md.push(`| ${s.name} | ${s.seconds} | ${s.status} |`);
  md.push('');
  await writeFile(path.join(outDir, 'summary.md'), md.join('\n'));
}
