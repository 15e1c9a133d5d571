// The port between the shard path and the closed-model fallback: the shard path (worker/process-shard.ts) calls it,
// and each way of answering routed documents implements it (live stage, cluster queue, Batch API request collector).

import type { DocumentInput } from './document-input.js';
import type { ResultRow } from './results.js';

export interface ShardFallbackContext {
  readonly shardId: string;
  readonly signal?: AbortSignal;
}

/**
 * Given a read batch's scored rows and their documents, the same rows in order with both opinions (`localLabel`
 * set; routed rows carry the fallback's outcome). A shard without one keeps its local labels.
 */
export interface ShardFallback {
  resolve(
    rows: readonly ResultRow[],
    docs: readonly DocumentInput[],
    context: ShardFallbackContext,
  ): Promise<ResultRow[]>;
}
