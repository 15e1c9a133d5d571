// An independent reference for list-grammar set probabilities: every complete list is scored on its own, from a
// fresh sequence, prompt and list in one call, with the raw logits of the grammar's allowed tokens at every answer
// position; the allowed tokens come from plain prefix matching over all the lists' tokens (no trie, no reuse).

import type { LlamaModel, Token } from 'node-llama-cpp';

export interface ReferenceList {
  /** Label indices in the order written. */
  readonly labels: readonly number[];
  /** The whole list's tokens, as the model writes it after the prompt. */
  readonly tokens: readonly Token[];
}

export interface ReferenceSets {
  /** Each valid set's probability, keyed by its label indices sorted and joined with ",". */
  readonly sets: Map<string, number>;
  /** Mass of the lists that repeat a label. */
  readonly invalid: number;
  /** The greedy list: at each step the most probable allowed token that still leads to a valid list. */
  readonly greedy: readonly number[];
}

/** Each list's probability: Π over its tokens of softmax over the allowed next tokens at that prefix. */
export async function referenceListSets(
  model: LlamaModel,
  prompt: readonly Token[],
  lists: readonly ReferenceList[],
  contextSize: number,
): Promise<ReferenceSets> {
  const key = (tokens: readonly Token[]): string => tokens.join(' ');
  const isValid = (labels: readonly number[]): boolean => new Set(labels).size === labels.length;
  const allowed = new Map<string, Set<Token>>();
  const leadsToValid = new Map<string, Set<Token>>();
  for (const list of lists) {
    list.tokens.forEach((token, i) => {
      const prefix = key(list.tokens.slice(0, i));
      if (!allowed.has(prefix)) allowed.set(prefix, new Set());
      allowed.get(prefix)?.add(token);
      if (isValid(list.labels)) {
        if (!leadsToValid.has(prefix)) leadsToValid.set(prefix, new Set());
        leadsToValid.get(prefix)?.add(token);
      }
    });
  }
  const context = await model.createContext({ contextSize, batchSize: contextSize, sequences: 1 });
  const sets = new Map<string, number>();
  let invalid = 0;
  const logitsAt = new Map<string, Map<Token, number>>();
  try {
    const sequence = context.getSequence();
    for (const list of lists) {
      await sequence.clearHistory();
      // At each answer position only the allowed tokens' raw logits: q = exp(logit) / Σ allowed exp(logit).
      type Input = Parameters<typeof sequence.controlledEvaluate>[0];
      const read = (j: number) => ({
        generateNext: { logits: { filter: { tokens: [...(allowed.get(key(list.tokens.slice(0, j))) ?? [])] } } },
      });
      const input: Input = [...prompt, ...list.tokens.slice(0, -1)].map((token, i) =>
        i >= prompt.length - 1 ? ([token, read(i - prompt.length + 1)] as [Token, ReturnType<typeof read>]) : token,
      );
      const output = await sequence.controlledEvaluate(input);
      let logProbability = 0;
      list.tokens.forEach((token, j) => {
        const logits = output[prompt.length - 1 + j]?.next.logits ?? new Map<Token, number>();
        const prefix = key(list.tokens.slice(0, j));
        if (!logitsAt.has(prefix)) logitsAt.set(prefix, new Map(logits));
        const max = Math.max(...logits.values());
        let total = 0;
        for (const logit of logits.values()) total += Math.exp(logit - max);
        logProbability += (logits.get(token) ?? -Infinity) - max - Math.log(total);
      });
      const p = Math.exp(logProbability);
      if (isValid(list.labels)) {
        const name = [...list.labels].sort((a, b) => a - b).join(',');
        sets.set(name, (sets.get(name) ?? 0) + p);
      } else invalid += p;
    }
  } finally {
    await context.dispose();
  }
  // Greedy: follow the argmax allowed token that still leads to a valid list until a list ends.
  const greedyTokens: Token[] = [];
  for (;;) {
    const done = lists.find((l) => key(l.tokens) === key(greedyTokens) && isValid(l.labels));
    if (done !== undefined) return { sets, invalid, greedy: [...done.labels].sort((a, b) => a - b) };
    const prefix = key(greedyTokens);
    const logits = logitsAt.get(prefix) as Map<Token, number>;
    let best: Token | null = null;
    for (const t of leadsToValid.get(prefix) ?? [])
      if (best === null || (logits.get(t) ?? -Infinity) > (logits.get(best) ?? -Infinity)) best = t;
    if (best === null) throw new Error(`greedy reference: no valid continuation after [${prefix}]`);
    greedyTokens.push(best);
  }
}
