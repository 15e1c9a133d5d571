// A local labeller's proposals: its codebook scored over the sample file by the ordinary run path (plan, shards,
// engine, merge; the caller supplies it, since study tooling never loads the model runtime), then read back from
// the merged results: the top label and its exact probability per question.

import type { Codebook } from '../../contracts/codebook.js';
import { readParquetTable } from '../../storage/parquet-table.js';
import { questionColumn } from '../../storage/result-schema.js';
import { toText } from '../../storage/parquet-rows.js';
import type { Proposal } from './proposal.js';

export interface LocalScoringRequest {
  readonly codebook: Codebook;
  /** The sample Parquet (text columns). */
  readonly input: string;
  /** Where the run writes its results (and beside it its manifest and parts). */
  readonly output: string;
  readonly signal?: AbortSignal | undefined;
}

/** `rescale run` for one labeller, with no fallback: the CLI wires the engine in (cli/crowd.ts). */
export type LocalScoring = (request: LocalScoringRequest) => Promise<void>;

/** Proposals per question (codebook order), one per sample row, in sample order. */
export async function localProposals(
  name: string,
  request: LocalScoringRequest,
  score: LocalScoring,
  rows: number,
): Promise<Proposal[][]> {
  await score(request);
  const { questions } = request.codebook;
  const column = (question: string, base: string): string =>
    questions.length === 1 ? base : questionColumn(question, base);
  const table = await readParquetTable(request.output, `the results of labeller "${name}"`, [
    { name: 'status' },
    ...questions.flatMap((q) => [{ name: column(q.name, 'label') }, { name: column(q.name, 'confidence') }]),
  ]);
  const statuses = table.columns.get('status') ?? [];
  return questions.map((question) => {
    const labels = table.columns.get(column(question.name, 'label')) ?? [];
    const confidences = table.columns.get(column(question.name, 'confidence')) ?? [];
    return Array.from({ length: rows }, (_, row): Proposal => {
      const status = toText(statuses[row]);
      const label = toText(labels[row]);
      const confidence = confidences[row];
      if (status === 'empty_text') return { labels: [], probability: null, error: 'empty_text' };
      if (label === null || (status !== 'ok' && status !== 'truncated')) {
        return { labels: [], probability: null, error: 'scoring_failed' };
      }
      return { labels: [label], probability: typeof confidence === 'number' ? confidence : null, error: null };
    });
  });
}
