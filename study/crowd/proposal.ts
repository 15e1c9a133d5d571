// One labeller's proposal for one (document, question): the row of proposals.parquet before the ids are attached.

/** Short codes of the `error` column: never document text or a server's words. */
export const PROPOSAL_ERRORS = [
  /** The document's text is null or blank: nobody is asked. */
  'empty_text',
  /** The local engine could not score the document (its results row has status error). */
  'scoring_failed',
  /** The closed model answered outside the labels offered, also after the correction round. */
  'invalid_label',
  /** The request failed after the retries (HTTP errors, timeouts, malformed responses). */
  'request_failed',
  /** The labeller's budget could not cover the request, or an offline replay had no cached answer. */
  'over_budget',
] as const;
export type ProposalError = (typeof PROPOSAL_ERRORS)[number];

export interface Proposal {
  /**
   * Single-label: exactly one label. Multi-label: the labels proposed, in codebook order, possibly none. Empty when
   * `error` is set.
   */
  readonly labels: readonly string[];
  /** The labeller's probability of what it proposed; null when it has none. */
  readonly probability: number | null;
  readonly error: ProposalError | null;
}
