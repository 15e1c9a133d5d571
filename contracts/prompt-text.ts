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

/**
 * System and user message for one document in chat format: the text between the chat template's markers.
 * `columns` holds the other input columns the template names; a missing one renders as empty, as in the worker.
 */
export function promptMessages(
  codebook: Codebook,
  question: Question,
  doc: { readonly text: string; readonly columns?: Readonly<Record<string, string | null | undefined>> },
): PromptMessages {
  const variables = promptVariables(question);
  const system =
    codebook.prompt.system === null ? null : fillTemplate(codebook.prompt.system, (name) => variables[name] ?? '');
  const user = fillTemplate(codebook.prompt.template, (name) => {
    if (name === 'text') return doc.text;
    return variables[name] ?? doc.columns?.[name] ?? '';
  });
  return { system, user };
}
