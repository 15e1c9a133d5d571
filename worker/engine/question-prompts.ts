// The prompts of all a codebook's questions for one document (a per_label multi-label question has one per label).
// Their longest common token prefix (the shared prefix, then the document where the template puts it before the
// questions) is evaluated once; each prompt's tail is decoded after that checkpoint.

import type { LlamaModel, Token } from 'node-llama-cpp';
import type { Codebook, Question } from '../../contracts/codebook.js';
import type { DocumentInput } from '../../contracts/document-input.js';
import { chatLayoutFor, PromptBuilder } from './prompt-builder.js';

/**
 * One prompt the engine scores per document: a single-label question (`label` null), or one label of a per_label
 * multi-label question, asked as a yes/no question.
 */
export interface PromptUnit {
  /** The question's index in the codebook. */
  readonly question: number;
  readonly label: number | null;
}

/** The prompts of a codebook's questions, in order: one per single-label question, one per label of a per_label one. */
export function promptUnits(questions: readonly Question[]): PromptUnit[] {
  return questions.flatMap((question, q): PromptUnit[] =>
    question.multiLabel?.format === 'per_label'
      ? question.labels.map((_, label) => ({ question: q, label }))
      : [{ question: q, label: null }],
  );
}

export interface DocumentPrompts {
  /** Each prompt unit's full prompt, in unit order (the shared prefix included). */
  readonly prompts: readonly Token[][];
  /**
   * How many leading tokens every prompt shares and is evaluated once: the prompts' common prefix, at most all but
   * the shortest prompt's last token (each question's tail holds at least the token its answer is read after). For
   * one question, all but the last token.
   */
  readonly checkpoint: number;
  /** The text was cut to max_document_tokens. */
  readonly truncated: boolean;
}

export class QuestionPrompts {
  /** Tokens every prompt of every document starts with; evaluated once per sequence. */
  readonly sharedPrefix: readonly Token[];
  readonly chatWrapperName: string | null;

  private constructor(private readonly builders: readonly PromptBuilder[]) {
    const first = builders[0] as PromptBuilder;
    this.chatWrapperName = first.chatWrapperName;
    this.sharedPrefix = first.sharedPrefix.slice(0, commonPrefixLength(builders.map((b) => b.sharedPrefix)));
  }

  static create(model: LlamaModel, codebook: Codebook, questions: readonly Question[]): QuestionPrompts {
    const chat = chatLayoutFor(model, codebook);
    return new QuestionPrompts(
      promptUnits(questions).map((unit) =>
        PromptBuilder.create(model, codebook, questions[unit.question] as Question, chat, unit.label ?? undefined),
      ),
    );
  }

  render(doc: DocumentInput, maxDocumentTokens: number): DocumentPrompts {
    // The document is cut once: how it is cut depends on the codebook and the model, not on the question.
    const fitted = (this.builders[0] as PromptBuilder).fitDocument(doc, maxDocumentTokens);
    const rendered = this.builders.map((builder) => builder.renderFitted(fitted));
    const prompts = rendered.map((r) => r.tokens);
    const shortest = Math.min(...prompts.map((p) => p.length));
    return {
      prompts,
      checkpoint: Math.min(commonPrefixLength(prompts), shortest - 1),
      truncated: rendered[0]?.truncated ?? false,
    };
  }

  /** One prompt unit's full prompt as text with special tokens shown. */
  preview(doc: DocumentInput, maxDocumentTokens: number, question = 0): string {
    return (this.builders[question] as PromptBuilder).preview(doc, maxDocumentTokens);
  }
}

function commonPrefixLength(sequences: readonly (readonly Token[])[]): number {
  const [first, ...rest] = sequences;
  if (first === undefined) return 0;
  let common = 0;
  while (common < first.length && rest.every((s) => s[common] === first[common])) common++;
  return common;
}
