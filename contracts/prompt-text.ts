// The codebook prompt as plain text (system and user message), shared by the worker's prompt builder and by the
// training-set writer, so a fine-tuning example says exactly what the model will later be asked.

import { parseTemplate, type Codebook, type Question } from './codebook.js';

/** Values of the codebook variables ({labels}, {label_descriptions}) for a question. */
export function promptVariables(question: Question): Readonly<Record<string, string>> {
  return {
    question: question.text ?? '',
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
