// What the fallback is asked for a document of a multi-question codebook: all the document's unsure questions in one
// request. The template up to its first per-question variable (the document, in the usual layout) is written once,
// then each asked question's part of the template; the answer is one JSON object with a property per question, each
// constrained to the question's labels by a JSON schema enum where the server supports it.

import { CODEBOOK_VARIABLES, parseTemplate, type Codebook, type Label, type Question } from '../contracts/codebook.js';
import type { DocumentInput } from '../contracts/document-input.js';
import type { FallbackConfig } from '../contracts/fallback-config.js';
import { promptVariables } from '../contracts/prompt-text.js';
import { matchAnswer, requestBody, type ChatMessage, type ChatRequestBody } from './fallback-prompt.js';

type TemplatePart = ReturnType<typeof parseTemplate>[number];

/** One asked question's reading of the reply. */
export type QuestionReading =
  | { readonly kind: 'label'; readonly label: Label; readonly span: readonly [number, number] }
  | { readonly kind: 'invalid'; readonly reason: string };

const perQuestion: readonly string[] = CODEBOOK_VARIABLES;

export class QuestionsFallbackPrompt {
  private readonly system: string | null;
  /** The template before its first per-question variable: written once per request. */
  private readonly head: readonly TemplatePart[];
  /** The rest: written once per asked question, with that question's variables. Empty when the template has none. */
  private readonly tail: readonly TemplatePart[];

  constructor(
    codebook: Codebook,
    readonly questions: readonly Question[],
    private readonly config: FallbackConfig,
  ) {
    // A system prompt is shared by every question asked together, so per-question variables in it are left empty.
    const system = config.prompt.system ?? codebook.prompt.system;
    this.system = system === null ? null : fill(parseTemplate(system), { text: '' }, {});
    const parts = parseTemplate(config.prompt.template ?? codebook.prompt.template);
    const split = parts.findIndex((part) => part.kind === 'var' && perQuestion.includes(part.name));
    this.head = split < 0 ? parts : parts.slice(0, split);
    this.tail = split < 0 ? [] : parts.slice(split);
  }

  /** System prompt (if any) and one user message: the document once, each asked question, the answer format. */
  messages(doc: DocumentInput, asked: readonly number[]): ChatMessage[] {
    const sections = asked.map((q) => {
      const question = this.question(q);
      const own =
        this.tail.length > 0
          ? fill(this.tail, doc, promptVariables(question)).trim()
          : `${question.text ?? ''} Answer with one of: ${promptVariables(question).labels}.`.trim();
      return `${question.name}: ${own}`;
    });
    const user =
      `${fill(this.head, doc, {}).trimEnd()}\n\nAnswer each question:\n\n${sections.join('\n\n')}\n\n` +
      this.answerInstruction(asked);
    return [
      ...(this.system === null ? [] : [{ role: 'system' as const, content: this.system }]),
      { role: 'user', content: user },
    ];
  }

  /** The conversation continued after answers outside the label sets: the reply, then a request to answer again. */
  correction(
    messages: readonly ChatMessage[],
    answer: string,
    asked: readonly number[],
    wrong: readonly number[],
  ): ChatMessage[] {
    const names = wrong.map((q) => this.question(q).name).join(', ');
    return [
      ...messages,
      { role: 'assistant' as const, content: answer },
      {
        role: 'user' as const,
        content: `The answer for ${names} is not one of the allowed labels. ${this.answerInstruction(asked)}`,
      },
    ];
  }

  body(messages: readonly ChatMessage[], asked: readonly number[]): ChatRequestBody {
    const properties = Object.fromEntries(
      asked.map((q) => [this.question(q).name, this.question(q).labels.map((l) => l.answer)]),
    );
    return requestBody(this.config, messages, 'labels', properties);
  }

  /**
   * Each asked question's label from the reply: a JSON object whose property named after the question is one of its
   * answers (exactly, else case-insensitively if unique). One question's bad value leaves the others' readings.
   */
  parse(content: string | null, asked: readonly number[]): QuestionReading[] {
    const fail = (reason: string): QuestionReading[] => asked.map(() => ({ kind: 'invalid', reason }));
    if (content === null || content.trim() === '') return fail('empty answer');
    let parsed: unknown;
    try {
      parsed = JSON.parse(content);
    } catch {
      return fail('answer is not valid JSON');
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return fail('answer is not an object');
    const record = parsed as Record<string, unknown>;
    return asked.map((q): QuestionReading => {
      const question = this.question(q);
      const value = record[question.name];
      if (typeof value !== 'string') return { kind: 'invalid', reason: `answer has no "${question.name}" string` };
      const label = matchAnswer(question.labels, value);
      if (label === null) return { kind: 'invalid', reason: `answer for "${question.name}" outside its label set` };
      const key = new RegExp(`"${question.name}"\\s*:\\s*"`).exec(content);
      const raw = JSON.stringify(value).slice(1, -1);
      const at = key === null ? -1 : content.indexOf(raw, key.index + key[0].length);
      return { kind: 'label', label, span: at < 0 ? [0, 0] : [at, at + raw.length] };
    });
  }

  /** Whether a reply answers every asked question with one of its labels (the audit's `label` outcome). */
  answersAll(content: string | null, asked: readonly number[]): boolean {
    return this.parse(content, asked).every((reading) => reading.kind === 'label');
  }

  private question(q: number): Question {
    const question = this.questions[q];
    if (question === undefined) throw new RangeError(`no question ${q}`);
    return question;
  }

  private answerInstruction(asked: readonly number[]): string {
    const shape = asked.map((q) => `${JSON.stringify(this.question(q).name)}: "<label>"`).join(', ');
    const sets = asked
      .map((q) => {
        const question = this.question(q);
        return `${question.name} is exactly one of: ${question.labels.map((l) => JSON.stringify(l.answer)).join(', ')}`;
      })
      .join('; ');
    return `Answer with a JSON object {${shape}} where ${sets}.`;
  }
}

function fill(parts: readonly TemplatePart[], doc: DocumentInput, variables: Readonly<Record<string, string>>): string {
  let out = '';
  for (const part of parts) {
    if (part.kind === 'text') out += part.text;
    else if (part.name === 'text') out += doc.text ?? '';
    else if (perQuestion.includes(part.name)) out += variables[part.name] ?? '';
    else out += doc.columns?.[part.name] ?? '';
  }
  return out;
}
