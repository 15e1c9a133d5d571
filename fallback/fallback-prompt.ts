// What the fallback is asked and how its answer is read: the codebook's prompt as chat messages, the request body
// (the answer constrained to the label set by a JSON schema enum where the server supports it), strict parsing of
// the reply to a codebook label, and the label's probability from the reply's logprobs.

import { CODEBOOK_VARIABLES, parseTemplate, type Codebook, type Label, type Question } from '../contracts/codebook.js';
import type { FallbackConfig } from '../contracts/fallback-config.js';
import { promptVariables } from '../contracts/prompt-text.js';
import type { DocumentInput } from '../contracts/document-input.js';

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

/** The Chat Completions request body exactly as sent (and hashed for the cache). */
export type ChatRequestBody = Readonly<Record<string, unknown>> & {
  readonly model: string;
  readonly messages: readonly ChatMessage[];
};

export type ParsedAnswer =
  | { readonly kind: 'label'; readonly label: Label; readonly span: readonly [number, number] }
  | { readonly kind: 'invalid'; readonly reason: string };

export interface LogprobToken {
  readonly token: string;
  readonly logprob: number;
}

export class FallbackPrompt {
  readonly labels: readonly Label[];
  private readonly variables: Readonly<Record<string, string>>;
  private readonly system: string | null;
  private readonly template: string;

  constructor(
    codebook: Codebook,
    question: Question,
    private readonly config: FallbackConfig,
  ) {
    this.labels = question.labels;
    this.variables = promptVariables(question);
    const system = config.prompt.system ?? codebook.prompt.system;
    this.system = system === null ? null : this.fill(system, { text: '' });
    this.template = config.prompt.template ?? codebook.prompt.template;
  }

  /** System prompt (if any) and the user message: template filled with the document, then the answer format. */
  messages(doc: DocumentInput): ChatMessage[] {
    const user = `${this.fill(this.template, doc)}\n\n${this.answerInstruction()}`;
    return [
      ...(this.system === null ? [] : [{ role: 'system' as const, content: this.system }]),
      { role: 'user', content: user },
    ];
  }

  /** The conversation continued after an answer outside the set: the answer, then a request to answer again. */
  correction(messages: readonly ChatMessage[], answer: string): ChatMessage[] {
    return [
      ...messages,
      { role: 'assistant', content: answer },
      { role: 'user', content: `That answer is not one of the allowed labels. ${this.answerInstruction()}` },
    ];
  }

  body(messages: readonly ChatMessage[]): ChatRequestBody {
    return requestBody(this.config, messages, 'label', { label: this.labels.map((l) => l.answer) });
  }

  /**
   * The reply's label. JSON formats: an object whose "label" is one of the answers; text: the whole reply is one.
   * An exact match first, then a case-insensitive one if it is unique; nothing fuzzier — never an invented label.
   */
  parse(content: string | null): ParsedAnswer {
    if (content === null || content.trim() === '') return { kind: 'invalid', reason: 'empty answer' };
    if (this.config.responseFormat === 'text') {
      const start = content.length - content.trimStart().length;
      let value = content.trim();
      if (value.endsWith('.')) value = value.slice(0, -1);
      const quoted = /^(["'])(.*)\1$/.exec(value);
      const offset = quoted ? 1 : 0;
      if (quoted) value = quoted[2] ?? '';
      const label = this.match(value);
      return label === null
        ? { kind: 'invalid', reason: 'answer outside the label set' }
        : { kind: 'label', label, span: [start + offset, start + offset + value.length] };
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(content);
    } catch {
      return { kind: 'invalid', reason: 'answer is not valid JSON' };
    }
    const value =
      parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)
        ? (parsed as Record<string, unknown>).label
        : undefined;
    if (typeof value !== 'string') return { kind: 'invalid', reason: 'answer has no "label" string' };
    const label = this.match(value);
    if (label === null) return { kind: 'invalid', reason: 'answer outside the label set' };
    const key = /"label"\s*:\s*"/.exec(content);
    const raw = JSON.stringify(value).slice(1, -1);
    const at = key === null ? -1 : content.indexOf(raw, key.index + key[0].length);
    return { kind: 'label', label, span: at < 0 ? [0, 0] : [at, at + raw.length] };
  }

  private match(value: string): Label | null {
    return matchAnswer(this.labels, value);
  }

  private answerInstruction(): string {
    const answers = this.labels.map((l) => l.answer);
    if (this.config.responseFormat === 'text')
      return `Answer with exactly one of: ${answers.join(', ')} — and nothing else.`;
    return (
      'Answer with a JSON object {"label": "<label>"} where <label> is exactly one of: ' +
      `${answers.map((a) => JSON.stringify(a)).join(', ')}.`
    );
  }

  private fill(template: string, doc: DocumentInput): string {
    let out = '';
    for (const part of parseTemplate(template)) {
      if (part.kind === 'text') out += part.text;
      else if (part.name === 'text') out += doc.text ?? '';
      else if ((CODEBOOK_VARIABLES as readonly string[]).includes(part.name)) out += this.variables[part.name] ?? '';
      else out += doc.columns?.[part.name] ?? '';
    }
    return out;
  }
}

/** The label whose answer is `value`: exactly, else case-insensitively if unique; never anything fuzzier. */
export function matchAnswer(labels: readonly Label[], value: string): Label | null {
  const exact = labels.find((l) => l.answer === value);
  if (exact !== undefined) return exact;
  const lower = value.toLowerCase();
  const folded = labels.filter((l) => l.answer.toLowerCase() === lower);
  return folded.length === 1 ? (folded[0] ?? null) : null;
}

/**
 * A multi-label question's property: a list of distinct answers, at most `maxItems` (null: no bound beyond the
 * distinct answers) and at least `minItems`.
 */
export interface AnswerListProperty {
  readonly answers: readonly string[];
  readonly minItems: number;
  readonly maxItems: number | null;
}

/** The JSON schema of one property: a string enum of the answers, or (multi-label) an array of them. */
function propertySchema(spec: readonly string[] | AnswerListProperty): Record<string, unknown> {
  if (isAnswerList(spec)) {
    return {
      type: 'array',
      items: { type: 'string', enum: spec.answers },
      uniqueItems: true,
      ...(spec.minItems > 0 ? { minItems: spec.minItems } : {}),
      ...(spec.maxItems !== null ? { maxItems: spec.maxItems } : {}),
    };
  }
  return { type: 'string', enum: spec };
}

function isAnswerList(spec: readonly string[] | AnswerListProperty): spec is AnswerListProperty {
  return !Array.isArray(spec);
}

/**
 * A Chat Completions body with the codebook's request parameters. With json_schema the answer is an object with one
 * property per key of `properties`, all required: a string constrained to its answers by an enum, or (a multi-label
 * question) an array of distinct such strings.
 */
export function requestBody(
  config: FallbackConfig,
  messages: readonly ChatMessage[],
  schemaName: string,
  properties: Readonly<Record<string, readonly string[] | AnswerListProperty>>,
): ChatRequestBody {
  const body: Record<string, unknown> = { model: config.model, messages };
  body[config.maxTokensField] = config.maxOutputTokens;
  if (config.temperature !== null) body.temperature = config.temperature;
  if (config.seed !== null) body.seed = config.seed;
  if (config.logprobs) body.logprobs = true;
  if (config.responseFormat === 'json_schema') {
    body.response_format = {
      type: 'json_schema',
      json_schema: {
        name: schemaName,
        strict: true,
        schema: {
          type: 'object',
          properties: Object.fromEntries(Object.entries(properties).map(([key, spec]) => [key, propertySchema(spec)])),
          required: Object.keys(properties),
          additionalProperties: false,
        },
      },
    };
  } else if (config.responseFormat === 'json_object') {
    body.response_format = { type: 'json_object' };
  }
  return body as ChatRequestBody;
}

/**
 * P(the answered label) from the reply's token logprobs: exp of the sum over the tokens that overlap the label's
 * characters (given the text before it, e.g. `{"label":"`). Null when there are no logprobs, the tokens do not
 * spell the content, or the span is unknown.
 */
export function labelConfidence(
  content: string,
  span: readonly [number, number],
  tokens: readonly LogprobToken[] | null,
): number | null {
  if (tokens === null || tokens.length === 0 || span[1] <= span[0]) return null;
  if (tokens.map((t) => t.token).join('') !== content) return null;
  let offset = 0;
  let sum = 0;
  let used = 0;
  for (const { token, logprob } of tokens) {
    const end = offset + token.length;
    if (end > span[0] && offset < span[1]) {
      if (!Number.isFinite(logprob)) return null;
      sum += logprob;
      used++;
    }
    offset = end;
  }
  return used === 0 ? null : Math.exp(sum);
}
