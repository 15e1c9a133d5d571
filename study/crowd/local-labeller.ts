// A local labeller's proposals: its codebook scored over the sample file by the ordinary run path (plan, shards,
// engine, merge; the caller supplies it, since study tooling never loads the model runtime), then read back from
// the merged results: the top label and its exact probability per question (a multi-label question's `__labels` set
// and its `__confidence`).

import type { Codebook, Question } from '../../contracts/codebook.js';
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
  // A multi-label question's columns carry its name also when it is the codebook's only question.
  const column = (question: Question, base: string): string =>
    questions.length === 1 && question.type !== 'multi_label' ? base : questionColumn(question.name, base);
  const table = await readParquetTable(request.output, `the results of labeller "${name}"`, [
    { name: 'status' },
    ...questions.flatMap((q) => [
      { name: column(q, q.type === 'multi_label' ? 'labels' : 'label') },
      { name: column(q, 'confidence') },
    ]),
  ]);
  const statuses = table.columns.get('status') ?? [];
  return questions.map((question) => {
    const multi = question.type === 'multi_label';
    const labels = table.columns.get(column(question, multi ? 'labels' : 'label')) ?? [];
    const confidences = table.columns.get(column(question, 'confidence')) ?? [];
    return Array.from({ length: rows }, (_, row): Proposal => {
      const status = toText(statuses[row]);
      const value = labels[row];
      const confidence = confidences[row];
      if (status === 'empty_text') return { labels: [], probability: null, error: 'empty_text' };
      const proposed = multi
        ? Array.isArray(value)
          ? value.map((l) => toText(l) ?? '')
          : null
        : toText(value) === null
          ? null
          : [toText(value) as string];
      if (proposed === null || (status !== 'ok' && status !== 'truncated')) {
        return { labels: [], probability: null, error: 'scoring_failed' };
      }
      return { labels: proposed, probability: typeof confidence === 'number' ? confidence : null, error: null };
    });
  });
}
