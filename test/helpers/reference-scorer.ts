// An independent reference for label probabilities: one document at a time, a fresh sequence, the whole prompt in
// one call, and every label's answer scored by plain enumeration (no trie, no prefix reuse, no grouping).

import type { LlamaModel, Token } from 'node-llama-cpp';

export interface ReferenceOptions {
  readonly contextSize: number;
  readonly lora?: readonly { readonly filePath: string; readonly scale: number }[];
}

/** P(label | prompt) renormalised over labels, from node-llama-cpp's public API only. */
export async function referenceProbabilities(
  model: LlamaModel,
  prompt: readonly Token[],
  labels: readonly (readonly Token[])[],
  options: ReferenceOptions,
): Promise<number[]> {
  const context = await model.createContext({
    contextSize: options.contextSize,
    batchSize: options.contextSize,
    sequences: 1,
    ...(options.lora !== undefined && options.lora.length > 0
      ? { lora: { adapters: options.lora.map((a) => ({ ...a })) } }
      : {}),
  });
  try {
    const logProbabilities: number[] = [];
    const sequence = context.getSequence();
    for (const label of labels) {
      await sequence.clearHistory();
      {
        // Ask for the next-token distribution at the last prompt token and after each answer token but the last.
        type Input = Parameters<typeof sequence.controlledEvaluate>[0];
        const input: Input = [...prompt, ...label.slice(0, -1)].map((token, i) =>
          i >= prompt.length - 1
            ? ([token, { generateNext: { probabilities: true } }] as [
                Token,
                { generateNext: { probabilities: boolean } },
              ])
            : token,
        );
        const output = await sequence.controlledEvaluate(input);
        let logProbability = 0;
        label.forEach((token, j) => {
          const distribution = output[prompt.length - 1 + j]?.next.probabilities;
          logProbability += Math.log(distribution?.get(token) ?? 0);
        });
        logProbabilities.push(logProbability);
      }
    }
    const max = Math.max(...logProbabilities);
    const weights = logProbabilities.map((lp) => Math.exp(lp - max));
    const sum = weights.reduce((a, b) => a + b, 0);
    return weights.map((w) => w / sum);
  } finally {
    await context.dispose();
  }
}
