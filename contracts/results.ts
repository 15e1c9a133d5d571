// The per-document result every shard writes and the merge combines: one row per input row, never dropped.

export const ROW_STATUSES = ['ok', 'truncated', 'empty_text', 'error'] as const;
export type RowStatus = (typeof ROW_STATUSES)[number];

export const RESULT_SOURCES = ['local', 'fallback'] as const;
export type ResultSource = (typeof RESULT_SOURCES)[number];

/** A document id as read from the input's id column; its Arrow/Parquet type is preserved end to end. */
export type DocumentId = string | number | bigint;

export interface ResultRow {
  /** Value of the input id column (null only when the input value itself is null). */
  readonly id: DocumentId | null;
  /** 0-based position of the row in the whole corpus, in input order (files in plan order, then rows). */
  readonly row: number;
  /** Top label; null when the row could not be scored (empty_text, error). */
  readonly label: string | null;
  readonly confidence: number | null;
  readonly margin: number | null;
  readonly entropy: number | null;
  /** P(label | document) in codebook label order, summing to 1; null when not scored. */
  readonly probabilities: Float64Array | null;
  readonly status: RowStatus;
  /** Why the row is empty_text or error; null otherwise. Never contains document text. */
  readonly error: string | null;
  /** Tokens evaluated for this document beyond the shared prompt prefix. */
  readonly tokens: number;
  readonly source: ResultSource;
  readonly shardId: string;
}

/** Column name of a label's probability in result files: `p_<label>`. */
export function probabilityColumn(label: string): string {
  return `p_${label}`;
}
