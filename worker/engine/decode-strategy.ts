// The decode strategy seam: how the evaluations of one phase, one per document of a group (each on its own
// sequence), reach llama.cpp. It decides the batch layout, so a strategy is part of what a result depends on.

/** The strategies: "serial" (serial-decode.ts) and "batched" (batched-decode.ts). */
export type DecodeStrategyName = 'serial' | 'batched';

export interface DecodeStrategy {
  /** Short name for logs and settings. */
  readonly name: DecodeStrategyName;
  /**
   * Runs `evaluate` once per document of a group (slot = the document's index in the group, its sequence) and
   * returns the results in group order. Whether the evaluations share a decode call is the strategy's choice.
   */
  each<T, R>(group: readonly T[], evaluate: (item: T, slot: number) => Promise<R>): Promise<R[]>;
}
