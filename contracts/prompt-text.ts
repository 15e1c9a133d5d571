// The codebook prompt as plain text (system and user message), shared by the worker's prompt builder and by the
// training-set writer, so a fine-tuning example says exactly what the model will later be asked.

import { parseTemplate, perLabelText, type Codebook, type Question } from './codebook.js';

/**
 * Values of the codebook variables ({question}, {labels}, {label_descriptions}) for a question; with `label`, for that
 * label's own yes/no prompt of a per_label multi-label question ({question} is the question text filled with it).
 */
export function promptVariables(question: Question, label?: number): Readonly<Record<string, string>> {
  const asked = label === undefined ? undefined : question.labels[label];
  return {
    question: asked === undefined ? (question.text ?? '') : perLabelText(question.text ?? '', asked),
    labels: question.labels.map((l) => l.answer).join(', '),
    label_descriptions: question.labels
      .map((l) => `- ${l.answer}${l.description ? `: ${l.description}` : ''}`)
      .join('\n'),
  };
}

/** A template with every `{name}` replaced by `lookup(name)` and `{{`/`}}` unescaped. */
export function fillTemplate(template: string, lookup: (name: string) => string): string {
  return parseTemplate(template)
    .map((part) => (part.kind === 'text' ? part.text : lookup(part.name)))
    .join('');
}

export interface PromptMessages {
  readonly system: string | null;
  readonly user: string;
}

/** The first `chars` code points of `text`, as Python's `text[:chars]` (not UTF-16 units, not tokens). */
export function firstCodePoints(text: string, chars: number): string {
  let end = 0;
  let count = 0;
  for (const ch of text) {
    if (count === chars) return text.slice(0, end);
    end += ch.length;
    count++;
  }
  return text;
}

/**
 * System and user message for one document in chat format: the text between the chat template's markers.
 * `columns` holds the other input columns the template names; a missing one renders as empty, as in the worker.
 * `label`: that label's yes/no prompt of a per_label multi-label question. A `truncate` of the document cuts the
 * text to its first characters first, as the scorer does (the scorer's cut to max_document_tokens needs the model's
 * tokenizer and is not applied here).
 */
export function promptMessages(
  codebook: Codebook,
  question: Question,
  doc: { readonly text: string; readonly columns?: Readonly<Record<string, string | null | undefined>> },
  label?: number,
): PromptMessages {
  const variables = promptVariables(question, label);
  const { truncate } = codebook.prompt;
  const text = truncate?.of === 'document' ? firstCodePoints(doc.text, truncate.chars) : doc.text;
  const system =
    codebook.prompt.system === null ? null : fillTemplate(codebook.prompt.system, (name) => variables[name] ?? '');
  const user = fillTemplate(codebook.prompt.template, (name) => {
    if (name === 'text') return text;
    return variables[name] ?? doc.columns?.[name] ?? '';
  });
  return { system, user };
}

/**
 * A raw-format codebook's whole prompt string for one document, as the scorer tokenises it: the system text, then the
 * filled template, cut to its first characters by `truncate: {of: prompt}`. Special-token text the codebook writes
 * (e.g. "<s>") stays text here; a trainer that tokenises the string with special tokens parsed gets the scorer's
 * tokens (the document itself never holds special tokens for the scorer).
 */
export function rawPromptText(
  codebook: Codebook,
  question: Question,
  doc: { readonly text: string; readonly columns?: Readonly<Record<string, string | null | undefined>> },
  label?: number,
): string {
  const { system, user } = promptMessages(codebook, question, doc, label);
  const whole = (system ?? '') + user;
  const { truncate } = codebook.prompt;
  return truncate?.of === 'prompt' ? firstCodePoints(whole, truncate.chars) : whole;
}
