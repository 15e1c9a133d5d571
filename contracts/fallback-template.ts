// How a by-question fallback request splits its prompt template, and so which questions it asks in its own words
// rather than the template's. The result hash depends on that wording, so both the request and the hash read it here.

import { CODEBOOK_VARIABLES, parseTemplate, type Codebook } from './codebook.js';
import { questionRules, type FallbackConfig } from './fallback-config.js';

type TemplatePart = ReturnType<typeof parseTemplate>[number];

const perQuestion: readonly string[] = CODEBOOK_VARIABLES;

export interface FallbackTemplate {
  /** The template before its first per-question variable: written once per request. */
  readonly head: readonly TemplatePart[];
  /** The rest: written once per asked question, with that question's variables. Empty when the template has none. */
  readonly tail: readonly TemplatePart[];
  /**
   * Whether a multi-label question is asked in the request's own words (which of its labels apply) instead of the
   * tail: the tail is empty, or it is the codebook's template (the local model's wording) and holds no document
   * variable that would then go missing.
   */
  readonly multiLabelOwnWords: boolean;
}

export function fallbackTemplate(
  codebook: Pick<Codebook, 'prompt'>,
  config: Pick<FallbackConfig, 'prompt'>,
): FallbackTemplate {
  const parts = parseTemplate(config.prompt.template ?? codebook.prompt.template);
  const split = parts.findIndex((part) => part.kind === 'var' && perQuestion.includes(part.name));
  const head = split < 0 ? parts : parts.slice(0, split);
  const tail = split < 0 ? [] : parts.slice(split);
  const multiLabelOwnWords =
    tail.length === 0 ||
    (config.prompt.template === null && tail.every((part) => part.kind === 'text' || perQuestion.includes(part.name)));
  return { head, tail, multiLabelOwnWords };
}

/**
 * Whether the codebook's fallback asks some multi-label question it can route which of its labels apply: the wording
 * that replaced the template's for such questions, so runs from before it are told apart in the result hash.
 */
export function fallbackAsksLabelsThatApply(codebook: Pick<Codebook, 'prompt' | 'questions' | 'fallback'>): boolean {
  const config = codebook.fallback;
  if (config === null) return false;
  const routed = codebook.questions.some(
    (question) => question.type === 'multi_label' && questionRules(config, question.name) !== null,
  );
  return routed && fallbackTemplate(codebook, config).multiLabelOwnWords;
}
