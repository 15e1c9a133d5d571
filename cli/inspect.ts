// `rescale inspect`: what a corpus holds (files, rows, row groups, columns, a few rows) and, given a codebook,
// the exact prompt the model will see for the first document, with its token counts.

import { loadCodebook } from '../contracts/codebook.js';
import type { Logger } from '../contracts/logger.js';
import type { ShardSpec } from '../contracts/shard.js';
import { resolveCorpus } from '../coordinator/corpus.js';
import { LabelScorer } from '../worker/engine/label-scorer.js';
import { readShardRows, toText } from '../storage/parquet-rows.js';

const SAMPLE_ROWS = 5;
const SAMPLE_CHARS = 100;

export async function inspect(options: { input: readonly string[]; codebook?: string; logger: Logger }): Promise<void> {
  const files = await resolveCorpus(options.input);
  const out = (line = ''): boolean => process.stdout.write(line + '\n');
  const total = files.reduce((n, f) => n + f.rows, 0);
  out(`${files.length} file(s), ${total} rows`);
  for (const file of files) {
    out(`\n${file.path}`);
    out(
      `  ${file.rows} rows in ${file.rowGroups.length} row group(s), ${(file.size / 1e6).toFixed(1)} MB, ` +
        `fingerprint ${file.fingerprint.slice(0, 16)}`,
    );
    out('  columns:');
    for (const c of file.columns)
      out(
        `    ${c.name}: ` +
          `${c.physicalType}${c.logicalType ? ` (${c.logicalType})` : ''}${c.nullable ? ', nullable' : ''}`,
      );
  }
  const first = files[0];
  if (first === undefined || first.rows === 0) return;
  const shard: ShardSpec = {
    id: 'inspect',
    index: 0,
    file: first.path,
    fingerprint: first.fingerprint,
    rowStart: 0,
    rowEnd: Math.min(SAMPLE_ROWS, first.rows),
    corpusRowStart: 0,
  };
  const columns = first.columns.filter((c) => c.physicalType !== 'GROUP').map((c) => c.name);
  out(`\nfirst ${shard.rowEnd} row(s) of ${first.path}:`);
  let firstRow: Record<string, string | null> | null = null;
  for await (const batch of readShardRows(shard, columns)) {
    batch.rows.forEach((_, i) => {
      const row: Record<string, string | null> = {};
      for (const name of columns) row[name] = toText(batch.columns.get(name)?.[i]);
      firstRow ??= row;
      out(`  ${columns.map((name) => `${name}=${JSON.stringify(clip(row[name] ?? null))}`).join('  ')}`);
    });
  }
  if (options.codebook === undefined || firstRow === null) return;
  const codebook = await loadCodebook(options.codebook);
  const row: Record<string, string | null> = firstRow;
  const scorer = await LabelScorer.create(codebook, { logger: options.logger });
  try {
    const doc = { text: row[codebook.textColumn] ?? null, columns: row };
    const { tokens, truncated } = scorer.promptTokens(doc);
    out(
      `\nprompt for the first row (${tokens.length} tokens, ${scorer.settings.sharedPrefixTokens} shared and ` +
        `evaluated once${truncated ? ', text truncated' : ''}; chat template: ` +
        `${scorer.settings.chatWrapper ?? 'raw'}):`,
    );
    out(scorer.previewPrompt(doc));
    out(
      `\nanswers scored: ` +
        `${scorer.labels.map((l, i) => `${l.name} → ${scorer.labelTokens[i]?.length ?? 0} token(s)`).join(', ')}`,
    );
  } finally {
    await scorer.dispose();
  }
}

function clip(text: string | null): string | null {
  if (text === null || text.length <= SAMPLE_CHARS) return text;
  return `${text.slice(0, SAMPLE_CHARS)}… (${text.length} chars)`;
}
