// `rescale sample` output: what was written where, with the counts per label a methods section reports.

import path from 'node:path';
import type { TrainingSample } from '../study/sampling/training-sample.js';
import { formatTable } from '../study/text-table.js';

export function formatSample(sample: TrainingSample): string {
  const { manifest } = sample;
  const dir = path.dirname(sample.manifestPath);
  const out: string[] = [];
  out.push(`source: ${manifest.source.file} (${manifest.source.rows} rows; seed ${manifest.seed})`);
  if (manifest.skipped.noLabel + manifest.skipped.noText > 0) {
    out.push(
      `note: left out ${manifest.skipped.noLabel} rows without a label and ${manifest.skipped.noText} without text`,
    );
  }
  const { overMaxLabels = 0, emptySet = 0 } = manifest.skipped;
  if (overMaxLabels + emptySet > 0) {
    out.push(
      `note: left out ${overMaxLabels} rows whose gold set has more labels than a list question's max_labels and ` +
        `${emptySet} with an empty set where allow_empty is false (the list cannot answer them)`,
    );
  }
  const prompt =
    manifest.prompt.source === 'codebook'
      ? `from the codebook ${manifest.prompt.codebook ?? ''}`
      : 'the default (pass --codebook so training prompts match scoring prompts)';
  out.push(`prompt: ${prompt}`);
  const header = ['split', 'documents', ...manifest.labels, 'file'];
  const countsOf = (counts: readonly { label: string; count: number }[]): string[] =>
    manifest.labels.map((label) => String(counts.find((c) => c.label === label)?.count ?? 0));
  const rows = [
    ['held-out', String(manifest.heldOut.size), ...countsOf(manifest.heldOut.counts), manifest.heldOut.parquet],
    ...manifest.subsets.map((s) => [`train ${s.size}`, String(s.size), ...countsOf(s.counts), s.jsonl]),
  ];
  out.push('', formatTable(header, rows, ['left', ...header.slice(1, -1).map(() => 'right' as const), 'left']));
  if (manifest.stratifiedBy?.by === 'rarest label') {
    out.push(
      '',
      `${manifest.stratifiedBy.question} is multi-label: the counts are documents holding each label; the splits ` +
        "are stratified by each document's rarest label (sample.json lists the strata)",
    );
  }
  out.push(
    '',
    `each training subset contains the smaller ones; none touches the held-out split (${manifest.poolSize} ` +
      `documents were available for training)`,
  );
  out.push(`wrote ${dir}/ (sample.json, held-out.parquet, train-*.jsonl, train-*.parquet)`);
  return out.join('\n') + '\n';
}
