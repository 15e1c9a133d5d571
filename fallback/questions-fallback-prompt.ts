// What the fallback is asked for a document of a multi-question codebook: all the document's unsure questions in one
// request. The template up to its first per-question variable (the document, in the usual layout) is written once,
// then each asked question's part of the template; the answer is one JSON object with a property per question, each
// constrained to the question's labels by a JSON schema enum where the server supports it. A multi-label question's
// property is a list of distinct labels (at most max_labels for a list question), which replaces its label set; unless
// `fallback.prompt.template` is set, it is asked which of its labels apply rather than in the local template's words
// (a per_label question's local template asks one label at a time for yes or no).

import { CODEBOOK_VARIABLES, parseTemplate, type Codebook, type Label, type Question } from '../contracts/codebook.js';
import type { DocumentInput } from '../contracts/document-input.js';
import type { FallbackConfig } from '../contracts/fallback-config.js';
import { fallbackTemplate } from '../contracts/fallback-template.js';
import { promptVariables } from '../contracts/prompt-text.js';
import {
  matchAnswer,
  requestBody,
  type AnswerListProperty,
  type ChatMessage,
  type ChatRequestBody,
} from './fallback-prompt.js';

type TemplatePart = ReturnType<typeof parseTemplate>[number];

/** One asked question's reading of the reply. */
export type QuestionReading =
  | { readonly kind: 'label'; readonly label: Label; readonly span: readonly [number, number] }
  /** A multi-label question's answer: its labels in codebook order; `span` the list's contents in the reply. */
  | { readonly kind: 'labels'; readonly labels: readonly Label[]; readonly span: readonly [number, number] }
  | { readonly kind: 'invalid'; readonly reason: string };

const perQuestion: readonly string[] = CODEBOOK_VARIABLES;

export class QuestionsFallbackPrompt {
  private readonly system: string | null;
  /** The template before its first per-question variable: written once per request. */
  private readonly head: readonly TemplatePart[];
  /** The rest: written once per asked question, with that question's variables. Empty when the template has none. */
  private readonly tail: readonly TemplatePart[];
  /** Each question's parts of a request, by question index. */
  private readonly parts: readonly QuestionParts[];
  /** Whether a multi-label question is asked by its `ask` instead of the tail (fallbackTemplate). */
  private readonly multiLabelOwnWords: boolean;

  constructor(
    codebook: Codebook,
    readonly questions: readonly Question[],
    private readonly config: FallbackConfig,
  ) {
    // A system prompt is shared by every question asked together, so per-question variables in it are left empty.
    const system = config.prompt.system ?? codebook.prompt.system;
    this.system = system === null ? null : fill(parseTemplate(system), { text: '' }, {});
    const template = fallbackTemplate(codebook, config);
    this.head = template.head;
    this.tail = template.tail;
    this.multiLabelOwnWords = template.multiLabelOwnWords;
    this.parts = questions.map(questionParts);
  }

  /** System prompt (if any) and one user message: the document once, each asked question, the answer format. */
  messages(doc: DocumentInput, asked: readonly number[]): ChatMessage[] {
    const sections = asked.map((q) => {
      const question = this.question(q);
      const { variables, ask } = this.part(q);
      const own =
        this.tail.length === 0 || (question.type === 'multi_label' && this.multiLabelOwnWords)
          ? ask
          : fill(this.tail, doc, variables).trim();
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
    const single = wrong.filter((q) => this.question(q).type !== 'multi_label');
    const multi = wrong.filter((q) => this.question(q).type === 'multi_label');
    const names = (list: readonly number[]): string => list.map((q) => this.question(q).name).join(', ');
    const said = [
      ...(single.length > 0 ? [`The answer for ${names(single)} is not one of the allowed labels.`] : []),
      ...(multi.length > 0 ? [`The answer for ${names(multi)} is not a list of distinct allowed labels.`] : []),
    ];
    return [
      ...messages,
      { role: 'assistant' as const, content: answer },
      { role: 'user' as const, content: `${said.join(' ')} ${this.answerInstruction(asked)}` },
    ];
  }

  body(messages: readonly ChatMessage[], asked: readonly number[]): ChatRequestBody {
    const properties = Object.fromEntries(asked.map((q) => [this.question(q).name, this.part(q).property]));
    return requestBody(this.config, messages, 'labels', properties);
  }

  /**
   * Each asked question's label from the reply: a JSON object whose property named after the question is one of its
   * answers (exactly, else case-insensitively if unique); a multi-label question's is a list of distinct answers
   * within its bounds. One question's bad value leaves the others' readings.
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
      const { list } = this.part(q);
      if (list !== null) return readLabelList(question, list, value, content);
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
    return this.parse(content, asked).every((reading) => reading.kind !== 'invalid');
  }

  private question(q: number): Question {
    const question = this.questions[q];
    if (question === undefined) throw new RangeError(`no question ${q}`);
    return question;
  }

  private part(q: number): QuestionParts {
    const part = this.parts[q];
    if (part === undefined) throw new RangeError(`no question ${q}`);
    return part;
  }

  private answerInstruction(asked: readonly number[]): string {
    const shape = asked.map((q) => this.part(q).shape).join(', ');
    const sets = asked.map((q) => this.part(q).set).join('; ');
    return `Answer with a JSON object {${shape}} where ${sets}.`;
  }
}

/**
 * What a request says of one question, fixed per codebook: its template variables, its property in the answer's schema
 * (its answers, or a multi-label question's list), its entry in the answer's shape and the set it is answered from.
 */
interface QuestionParts {
  readonly variables: Readonly<Record<string, string>>;
  /** The question in the request's own words, where the template has no part of its own for it. */
  readonly ask: string;
  readonly property: readonly string[] | AnswerListProperty;
  /** A multi-label question's list (its property); null for a single-label question. */
  readonly list: AnswerListProperty | null;
  readonly shape: string;
  readonly set: string;
}

function questionParts(question: Question): QuestionParts {
  const variables = fallbackVariables(question);
  const answers = question.labels.map((l) => JSON.stringify(l.answer)).join(', ');
  if (question.type !== 'multi_label') {
    return {
      variables,
      ask: `${variables.question ?? ''} Answer with one of: ${variables.labels}.`.trim(),
      property: question.labels.map((l) => l.answer),
      list: null,
      shape: `${JSON.stringify(question.name)}: "<label>"`,
      set: `${question.name} is exactly one of: ${answers}`,
    };
  }
  const list = listProperty(question);
  const bounds = [
    ...(list.minItems > 0 ? [`at least ${list.minItems}`] : ['[] when none applies']),
    ...(list.maxItems !== null ? [`at most ${list.maxItems}`] : []),
  ];
  const each = `each at most once (${bounds.join(', ')})`;
  return {
    variables,
    ask: multiLabelAsk(question),
    property: list,
    list,
    shape: `${JSON.stringify(question.name)}: ["<label>", ...]`,
    set: `${question.name} is a list of the labels that apply, ${each}, from: ${answers}`,
  };
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

/**
 * A multi-label question's answer list: at most max_labels for a list question (at least one unless it allows the
 * empty list); a per_label question may answer any subset of its labels.
 */
function listProperty(question: Question): AnswerListProperty {
  const spec = question.multiLabel;
  return {
    answers: question.labels.map((l) => l.answer),
    minItems: spec?.format === 'list' && !spec.list.allowEmpty ? 1 : 0,
    maxItems: spec?.format === 'list' ? spec.list.maxLabels : null,
  };
}

/**
 * A multi-label question's value read as its label set: a list of its answers (each exactly, else case-insensitively
 * if unique), no label twice, within the list's bounds; the labels in codebook order.
 */
function readLabelList(
  question: Question,
  { minItems, maxItems }: AnswerListProperty,
  value: unknown,
  content: string,
): QuestionReading {
  const name = question.name;
  if (!Array.isArray(value)) return { kind: 'invalid', reason: `answer has no "${name}" list` };
  const found = new Set<Label>();
  for (const item of value as unknown[]) {
    const label = typeof item === 'string' ? matchAnswer(question.labels, item) : null;
    if (label === null) return { kind: 'invalid', reason: `answer for "${name}" lists a value outside its label set` };
    if (found.has(label)) return { kind: 'invalid', reason: `answer for "${name}" lists a label twice` };
    found.add(label);
  }
  if (maxItems !== null && found.size > maxItems)
    return { kind: 'invalid', reason: `answer for "${name}" lists more than ${maxItems} labels` };
  if (found.size < minItems) return { kind: 'invalid', reason: `answer for "${name}" lists no label` };
  return {
    kind: 'labels',
    labels: question.labels.filter((label) => found.has(label)),
    span: listSpan(content, name),
  };
}

/** Where the list value of property `name` lies in the reply (inside its brackets); [0, 0] when not found. */
function listSpan(content: string, name: string): readonly [number, number] {
  const key = new RegExp(`${escapeRegExp(JSON.stringify(name))}\\s*:\\s*\\[`).exec(content);
  if (key === null) return [0, 0];
  const start = key.index + key[0].length;
  let inString = false;
  for (let i = start; i < content.length; i++) {
    const c = content[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === ']') return [start, i];
  }
  return [0, 0];
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * A multi-label question asked for the list of its labels that apply: a list question's text and its labels; a
 * per_label question's labels each with its own question (`- cheer: Does the tweet feel glad?`), which says what
 * the label means.
 */
function multiLabelAsk(question: Question): string {
  const instruction = 'Answer with the list of the labels that apply.';
  if (question.multiLabel?.format === 'per_label') {
    const each = question.labels.map((label, j) => `- ${label.answer}: ${promptVariables(question, j).question ?? ''}`);
    return `Which of these labels apply?\n${each.join('\n')}\n${instruction}`;
  }
  const labels = question.labels.map((l) => JSON.stringify(l.answer)).join(', ');
  return `${question.text ?? ''} Answer with the list of the labels that apply, from: ${labels}.`.trim();
}

/**
 * A question's template variables in a fallback request: the codebook's, except that a per_label question, whose text
 * is a yes/no question per label, is asked as each label's question in turn (`cheer: Does the tweet feel glad?; …`).
 */
function fallbackVariables(question: Question): Readonly<Record<string, string>> {
  const variables = promptVariables(question);
  if (question.multiLabel?.format !== 'per_label') return variables;
  const each = question.labels.map((label, j) => `${label.answer}: ${promptVariables(question, j).question ?? ''}`);
  return { ...variables, question: `Which labels apply? ${each.join('; ')}` };
}
