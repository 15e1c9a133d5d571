// The list syntax of a multi-label question answered as one list (`multi_label.format: list`), e.g. the paper's
// Dataverse answers `['Social Sciences', 'Law']`: raw options, their defaults, and the validated, frozen form.

import { z } from 'zod';
import { RescaleError } from './errors.js';

/** How each label's answer is quoted inside the list. */
export type ListQuote = 'single' | 'double' | 'none';

const QUOTES: Record<ListQuote, string> = { single: "'", double: '"', none: '' };

/** The raw YAML shape (snake_case), defaults matching the paper's Dataverse adapters. */
export const labelListSyntaxSchema = z
  .object({
    open: z.string().default('['),
    separator: z.string().default(', '),
    close: z.string().default(']'),
    quote: z.string().default('single'),
    max_labels: z.number().int().default(3),
    allow_empty: z.boolean().default(false),
    min_branch_mass: z.number().default(1e-4),
  })
  .strict();

export type LabelListSyntaxInput = z.input<typeof labelListSyntaxSchema>;

export interface LabelListSyntax {
  readonly open: string;
  readonly separator: string;
  readonly close: string;
  readonly quote: ListQuote;
  /** At most this many labels in one list; the grammar closes the list after the last. */
  readonly maxLabels: number;
  /** Whether the empty list (`open` + `close`) is an answer of the grammar. */
  readonly allowEmpty: boolean;
  /** A branch whose prefix probability falls below this is not expanded; its mass is reported as unscored. */
  readonly minBranchMass: number;
}

/**
 * Validates a list syntax against the labels' answers. `field` is the syntax's path in the codebook (e.g.
 * "questions[0].multi_label") and `source` the codebook file, so every error names where to fix it.
 */
export function compileLabelListSyntax(
  input: LabelListSyntaxInput,
  answers: readonly string[],
  field: string,
  source = 'codebook',
): LabelListSyntax {
  const fail = (name: string, message: string): never => {
    throw new RescaleError('CODEBOOK_INVALID', `${source}: field "${field}.${name}": ${message}`);
  };
  const parsed = labelListSyntaxSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    fail(issue?.path.join('.') ?? '', issue?.message ?? 'invalid list syntax');
  }
  const raw = (parsed as { data: z.output<typeof labelListSyntaxSchema> }).data;
  if (!Object.hasOwn(QUOTES, raw.quote))
    fail('quote', `unknown quote style "${raw.quote}"; use single ('A'), double ("A") or none (A)`);
  const quote = raw.quote as ListQuote;
  if (raw.max_labels < 1) fail('max_labels', `must be at least 1, got ${raw.max_labels}`);
  if (raw.max_labels > answers.length)
    fail(
      'max_labels',
      `${raw.max_labels} is more than the question's ${answers.length} labels; a list never repeats a label, ` +
        `so set it to at most ${answers.length}`,
    );
  if (!(raw.min_branch_mass >= 0 && raw.min_branch_mass < 1))
    fail('min_branch_mass', `must be in [0, 1) (0 expands every branch), got ${raw.min_branch_mass}`);
  if (raw.close === '') fail('close', 'must not be empty: the close string ends every list');
  if (raw.max_labels > 1 && raw.separator === '') fail('separator', 'must not be empty when max_labels is above 1');
  // Inside quotes a label may hold the separator ("Medicine, Health and Life Sciences" in the paper's lists); only
  // the quote itself would end it early. Unquoted, the separator and the close string would.
  const delimiters: [string, string][] =
    quote === 'none'
      ? [
          ['separator', raw.separator],
          ['close', raw.close],
        ]
      : [['quote', QUOTES[quote]]];
  answers.forEach((answer, i) => {
    for (const [name, text] of delimiters) {
      if (text !== '' && answer.includes(text))
        fail(
          name,
          `the ${name} ${JSON.stringify(text)} occurs inside label ${i}'s answer ${JSON.stringify(answer)}, so a ` +
            `list could not be read back; change the ${name} or the label's "answer"`,
        );
    }
  });
  return Object.freeze({
    open: raw.open,
    separator: raw.separator,
    close: raw.close,
    quote,
    maxLabels: raw.max_labels,
    allowEmpty: raw.allow_empty,
    minBranchMass: raw.min_branch_mass,
  });
}

/** The list text for labels' answers in the given order, e.g. `['Social Sciences', 'Law']`. */
export function renderLabelList(syntax: LabelListSyntax, answers: readonly string[]): string {
  const q = QUOTES[syntax.quote];
  return syntax.open + answers.map((a) => q + a + q).join(syntax.separator) + syntax.close;
}
