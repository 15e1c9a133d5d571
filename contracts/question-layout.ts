// Where a codebook's questions sit relative to the document in its prompt template, which decides what each document
// costs: with the document first, it is evaluated once and each question's tail is decoded after it; with a question
// first, every question needs its own prompt.

import { CODEBOOK_VARIABLES, parseTemplate, templateVariables, type Codebook } from './codebook.js';

export interface QuestionLayout {
  /**
   * `single`: one question. `document-first`: every document variable comes before every per-question variable, so
   * the document is shared by the questions' prompts. `question-first`: a per-question variable comes before a
   * document variable (or is in the system prompt), so each question is a prompt of its own (K× the document).
   */
  readonly kind: 'single' | 'document-first' | 'question-first';
  readonly questions: number;
  /** Prompts per document: one per single-label question, one per label of a per_label multi-label question. */
  readonly prompts: number;
  /** For `question-first`: which variable comes before which, in words. */
  readonly reason: string | null;
}

const perQuestion: readonly string[] = CODEBOOK_VARIABLES;

export function questionLayout(codebook: Codebook): QuestionLayout {
  const questions = codebook.questions.length;
  // A per_label multi-label question asks each of its labels in a prompt of its own.
  const asked = (q: Codebook['questions'][number]): number =>
    q.multiLabel?.format === 'per_label' ? q.labels.length : 1;
  const prompts = codebook.questions.reduce((n, q) => n + asked(q), 0);
  if (prompts === 1) return { kind: 'single', questions, prompts, reason: null };
  const inSystem = templateVariables(codebook.prompt.system ?? '').find((name) => perQuestion.includes(name));
  if (inSystem !== undefined) {
    const reason = `the system prompt uses {${inSystem}}, which comes before the document`;
    return { kind: 'question-first', questions, prompts, reason };
  }
  let firstQuestionVariable: string | null = null;
  for (const part of parseTemplate(codebook.prompt.template)) {
    if (part.kind !== 'var') continue;
    if (perQuestion.includes(part.name)) firstQuestionVariable ??= part.name;
    else if (firstQuestionVariable !== null) {
      const reason = `the template puts {${firstQuestionVariable}} before {${part.name}}`;
      return { kind: 'question-first', questions, prompts, reason };
    }
  }
  return { kind: 'document-first', questions, prompts, reason: null };
}
