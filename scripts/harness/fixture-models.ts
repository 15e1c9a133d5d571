// Fixture models for tests, generated on demand (and cached in fixtures/models/), so no test depends on a prior
// `npm run fixtures`; plus the chat-prompt probes the fixture tests share.

import { resolveChatWrapper, type LlamaContextSequence, type LlamaModel, type Token } from 'node-llama-cpp';
import { ensureFixtureModel, type FixtureName } from '../../gguf/fixtures/fixture-catalog.js';

export type { FixtureName };

/** The path of the named fixture model, generating it first if it is missing or out of date. */
export async function fixtureModel(name: FixtureName): Promise<string> {
  return ensureFixtureModel(name);
}

export const SENTIMENT_SYSTEM_PROMPT = 'Classify the sentiment of the tweet. Answer with one word.';

/** A system + user chat rendered with the model's own chat template, ending where the assistant reply starts. */
export function chatPromptTokens(model: LlamaModel, user: string, system = SENTIMENT_SYSTEM_PROMPT): Token[] {
  const chatWrapper = resolveChatWrapper(model);
  if (chatWrapper === null) throw new Error(`No chat wrapper for ${model.filename ?? 'the model'}`);
  const { contextText } = chatWrapper.generateContextState({
    chatHistory: [
      { type: 'system', text: system },
      { type: 'user', text: user },
      { type: 'model', response: [] },
    ],
  });
  return contextText.tokenize(model.tokenizer);
}

/** The full next-token distribution after `tokens`, evaluated from an empty sequence. */
export async function nextTokenProbabilities(
  sequence: LlamaContextSequence,
  tokens: readonly Token[],
): Promise<Map<Token, number>> {
  await sequence.clearHistory();
  const last = tokens.length - 1;
  const output = await sequence.controlledEvaluate(
    tokens.map((token, index) => (index === last ? [token, { generateNext: { probabilities: true } }] : token)),
  );
  const probabilities = output[last]?.next.probabilities;
  if (probabilities === undefined) throw new Error('controlledEvaluate returned no probabilities');
  return probabilities;
}
