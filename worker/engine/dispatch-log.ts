// What a context's batching did: node-llama-cpp collects the evaluations queued on its sequences and decodes them
// together; these hooks (its public `batching` options) count how often a dispatch was scheduled and what each decode
// took in, so a decode strategy can check that the batch layout was the one it asked for and not one timing made.

import type { BatchingOptions, BatchItem, PrioritizedBatchItem } from 'node-llama-cpp';

/** One decode call as node-llama-cpp laid it out. */
export interface DispatchedDecode {
  /** Evaluations waiting when the decode was laid out (one per sequence). */
  readonly queued: number;
  /** Evaluations that went into this decode whole. */
  readonly whole: number;
  /** Tokens in the decode. */
  readonly tokens: number;
}

export interface DispatchRecord {
  /** Batch dispatches scheduled: a second one means an evaluation arrived after a decode had been laid out. */
  readonly schedules: number;
  readonly decodes: readonly DispatchedDecode[];
}

/**
 * The context's batching options plus a record of what they did since `begin()`. Items are taken first in, first
 * out, as many tokens as the batch holds (for a single evaluation this is what node-llama-cpp's default does), and a
 * dispatch runs on the next event-loop cycle, as node-llama-cpp's default "nextCycle".
 */
export class DispatchLog {
  private schedules = 0;
  private decodes: DispatchedDecode[] = [];
  private total = 0;

  readonly batching: BatchingOptions = {
    dispatchSchedule: (dispatch) => {
      this.schedules++;
      setImmediate(dispatch);
    },
    itemPrioritizationStrategy: ({ items, size }) => this.layOut(items, size),
  };

  /** Decode calls since the context was created. */
  get decodeCalls(): number {
    return this.total;
  }

  /** Forgets what was recorded so far (but not the total of decode calls). */
  begin(): void {
    this.schedules = 0;
    this.decodes = [];
  }

  /** What happened since `begin()`. */
  record(): DispatchRecord {
    return { schedules: this.schedules, decodes: [...this.decodes] };
  }

  private layOut(items: readonly BatchItem[], size: number): PrioritizedBatchItem[] {
    let left = size;
    const laidOut: PrioritizedBatchItem[] = [];
    let whole = 0;
    for (const item of items) {
      if (left <= 0) break;
      const processAmount = Math.min(item.tokens.length, left);
      laidOut.push({ item, processAmount });
      left -= processAmount;
      if (processAmount === item.tokens.length) whole++;
    }
    this.decodes.push({ queued: items.length, whole, tokens: size - left });
    if (laidOut.length > 0) this.total++;
    return laidOut;
  }
}
