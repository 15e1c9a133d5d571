// The per-document result every shard writes and the merge combines: one row per input row, never dropped.

export const ROW_STATUSES = ['ok', 'truncated', 'empty_text', 'error'] as const;
export type RowStatus = (typeof ROW_STATUSES)[number];

export const RESULT_SOURCES = ['local', 'fallback'] as const;
export type ResultSource = (typeof RESULT_SOURCES)[number];

/**
 * What became of a routed document's fallback request (null for documents not routed, or with the fallback off):
 * - `ok`: the fallback answered a label of the set, which is the final label (source 'fallback');
 * - `fallback_invalid`: it answered outside the label set (after the retries); the local label stays;
 * - `over_budget`: the budget (or an offline replay without a cached answer) allowed no call; the local label stays;
 * - `fallback_failed`: the request failed after its retries (HTTP errors, timeouts); the local label stays.
 */
export const FALLBACK_STATUSES = ['ok', 'fallback_invalid', 'over_budget', 'fallback_failed'] as const;
export type FallbackStatus = (typeof FALLBACK_STATUSES)[number];

/** The fallback's opinion on one routed document. */
export interface FallbackOutcome {
  readonly status: FallbackStatus;
  /**
   * The fallback's label (a codebook label name); null unless status is ok — never an invented label. Always null for
   * a multi-label question, whose answer is `labels`.
   */
  readonly label: string | null;
  /**
   * A multi-label question only: the fallback's label set (codebook label names, in codebook order, possibly empty);
   * null unless status is ok. Absent for a single-label question.
   */
  readonly labels?: readonly string[] | null;
  /**
   * exp(sum of the label tokens' logprobs) when the endpoint returns logprobs, else null; for a multi-label question
   * the tokens of the answered list's contents.
   */
  readonly confidence: number | null;
  /** Why the status is not ok; null when ok. Never contains document text or the API key. */
  readonly error: string | null;
}

/** A document id as read from the input's id column; its Arrow/Parquet type is preserved end to end. */
export type DocumentId = string | number | bigint;

/** Arrow type of the `id` result column (and the matching Parquet type in the merged output). */
export const ID_TYPES = [
  'int8',
  'int16',
  'int32',
  'int64',
  'uint8',
  'uint16',
  'uint32',
  'uint64',
  'float32',
  'float64',
  'utf8',
] as const;
export type IdType = (typeof ID_TYPES)[number];

/**
 * The result id type for an input id column, from its Parquet physical and logical type (as recorded in
 * CorpusColumn: integer logical types spelled INT_8 ... UINT_64). Integers and floats keep their width and
 * sign; strings, UUIDs and every other type (dates, decimals, binary, ...) become utf8, written as text.
 */
export function idTypeOf(column: { readonly physicalType: string; readonly logicalType: string | null }): IdType {
  const { physicalType, logicalType } = column;
  if (physicalType === 'INT32' || physicalType === 'INT64') {
    if (logicalType === null) return physicalType === 'INT32' ? 'int32' : 'int64';
    const match = /^(U?)INT_(8|16|32|64)$/.exec(logicalType);
    if (match === null) return 'utf8';
    return `${match[1] === 'U' ? 'uint' : 'int'}${match[2]}` as IdType;
  }
  if (physicalType === 'FLOAT' && logicalType === null) return 'float32';
  if (physicalType === 'DOUBLE' && logicalType === null) return 'float64';
  return 'utf8';
}

/**
 * One question's answer for a document, in a codebook with several questions (a `<question>__` column group each).
 * The fields mean what the row's own fields of that name mean for a one-question codebook.
 */
export interface QuestionAnswer {
  /** A single-label question's top label (null for a multi-label question). */
  readonly label: string | null;
  /**
   * A multi-label question's labels, in codebook order (possibly none): per_label, those whose P(label) reaches their
   * threshold; list, the most probable set. Null when not scored. Absent for a single-label question.
   */
  readonly labels?: readonly string[] | null;
  /**
   * Single-label: the top probability. Multi-label (per_label): the probability of the decided set were the labels
   * independent, Π over labels of P(label) when in the set, else 1 − P(label). (list): the top set's probability.
   */
  readonly confidence: number | null;
  /**
   * Single-label: top minus second. Multi-label (per_label): the smallest |P(label) − threshold|, the closest
   * decision. (list): the top set's probability minus the second most probable set's.
   */
  readonly margin: number | null;
  /** Single-label: entropy in nats. Multi-label: null. */
  readonly entropy: number | null;
  /**
   * In the question's label order; null when not scored. Single-label: P(label), summing to 1. Multi-label: each
   * label's marginal P(label ∈ labels), each in [0, 1].
   */
  readonly probabilities: Float64Array | null;
  /**
   * Single-label: as the row's labelMass. Multi-label (per_label): the smallest over labels of P(yes) + P(no); (list):
   * the probability of the list's first tokens right after the prompt (full vocabulary).
   */
  readonly labelMass: number | null;
  /** A list multi-label question (format: list): the probability of `labels`, the most probable set. Else absent. */
  readonly setProbability?: number | null;
  /**
   * A list multi-label question: the probability of the branches not expanded (below min_branch_mass, or where the
   * model gave every allowed token probability 0). Else absent.
   */
  readonly unscoredMass?: number | null;
  /**
   * A list multi-label question: the greedy constrained decode's set (argmax allowed token at each step among those
   * that can still end in a valid list), in codebook order; from the same walk, no extra decodes. Else absent.
   */
  readonly greedyLabels?: readonly string[] | null;
  /** A list multi-label question: the mass of entering a list that repeats a label (sets + unscored + invalid = 1). */
  readonly invalidMass?: number | null;
  /** Who gave `label`: the fallback when it answered this question, else the local model (absent: local). */
  readonly source?: ResultSource;
  /** The local model's top label when the fallback's replaced it; absent means equal to `label`. */
  readonly localLabel?: string | null;
  /** A routed multi-label question: the local model's label set (the fallback's may replace `labels`). */
  readonly localLabels?: readonly string[] | null;
  /** The fallback's opinion on this question; null or absent when the question was not routed. */
  readonly fallback?: FallbackOutcome | null;
}

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
  /**
   * The local model's top label. `label` is the final label: the fallback's when source is 'fallback'. Absent means
   * equal to `label`. (`confidence`, `margin`, `entropy` and the probabilities always describe the local model.)
   */
  readonly localLabel?: string | null;
  /** The fallback's opinion; null or absent when the document was not routed or the fallback is off. */
  readonly fallback?: FallbackOutcome | null;
  /**
   * The local model's probability on the labels' first tokens right after the prompt (full vocabulary): how much it
   * sees the prompt as this task. Absent or null when not scored (and in files written before the column existed).
   */
  readonly labelMass?: number | null;
  /**
   * A multi-question codebook's answers, one per question in codebook order; the row's own label and score fields
   * are then null, and `source` is 'fallback' when the fallback answered any question. Absent for one question.
   */
  readonly answers?: readonly QuestionAnswer[];
  /**
   * For a copy of an earlier document of the same shard (identical prompt input), scored once: that document's corpus
   * row index; its results are copied bit for bit and `tokens` is 0. Absent or null for documents scored themselves
   * (and in files written before the column existed).
   */
  readonly duplicateOf?: number | null;
}

/** A multi-label question's column group (`<question>__labels`, …), also when it is a codebook's only question. */
export type QuestionType = 'single_label' | 'multi_label';

/** Column name of a label's probability in result files: `p_<label>`. */
export function probabilityColumn(label: string): string {
  return `p_${label}`;
}
