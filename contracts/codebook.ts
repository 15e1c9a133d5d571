// The codebook: the task spec a researcher writes in YAML. Parsed once at the edge (raw YAML → zod schema →
// normalised, frozen object with absolute paths); every error names the file and the field at fault.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { RescaleError } from './errors.js';
import { parseFallbackConfig, type FallbackConfig } from './fallback-config.js';
import { compileLabelListSyntax, labelListSyntaxSchema, type LabelListSyntax } from './label-list-syntax.js';
import { issueLines, type FieldLocator } from './validation-issues.js';
import { parseYamlSource } from './yaml-source.js';

const THRESHOLD_MESSAGE = 'a threshold is a probability: use a value between 0 and 1';

const labelSchema = z.strictObject({
  name: z
    .string()
    .min(1, 'a label needs a non-empty name')
    .regex(/^[^\s:,]+(?: [^\s:,]+)*$/, 'label names may not contain ":" or ",", nor start or end with a space'),
  description: z.string().optional(),
  /** The text the model answers for this label (what the adapter was trained to emit). Defaults to the name. */
  answer: z.string().min(1).optional(),
  examples: z.array(z.string()).optional(),
  /** Multi-label questions only: this label's decision threshold, overriding multi_label.threshold. */
  threshold: z.number().min(0, THRESHOLD_MESSAGE).max(1, THRESHOLD_MESSAGE).optional(),
});

/**
 * How a multi-label question is scored. `per_label`: each label is asked as a yes/no question of its own (the
 * question text filled with the label), and P(label) is P(yes) over the two answers. `list`: the model answers one
 * list of labels (`['A', 'B']`) and every label set gets its exact probability (label-list-syntax.ts).
 */
const perLabelSchema = z.strictObject({
  format: z.literal('per_label'),
  /** The answers a label's yes/no question is scored over (after prompt.answer_prefix, as label answers are). */
  answers: z
    .strictObject({ yes: z.string().min(1).default('yes'), no: z.string().min(1).default('no') })
    .default({ yes: 'yes', no: 'no' }),
  /** A label is in the question's labels when P(label) ≥ its threshold. */
  threshold: z.number().min(0, THRESHOLD_MESSAGE).max(1, THRESHOLD_MESSAGE).default(0.5),
});

const multiLabelSchema = z.discriminatedUnion(
  'format',
  [perLabelSchema, labelListSyntaxSchema.extend({ format: z.literal('list') })],
  {
    error: (issue) =>
      issue.code === 'invalid_union'
        ? 'unknown format; use "per_label" (each label asked as a yes/no question about the document) or "list" ' +
          "(the model answers one list of labels, e.g. ['A', 'B'])"
        : undefined,
  },
);

const questionSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'use letters, digits and "_" (it becomes a column name)'),
  type: z.enum(['single_label', 'multi_label']).default('single_label'),
  /** The question's own text, put where the template says {question}. */
  question: z.string().min(1).optional(),
  labels: z
    .array(labelSchema, { error: 'a question needs its labels: give "labels" with at least two' })
    .min(2, 'a question needs at least two labels'),
  /** The labels are ordered as listed, lowest first (e.g. absent, low, medium, high); used by evaluation only. */
  ordered: z.boolean().optional(),
  /** type multi_label: how the model is asked (without it, the question serves evaluation only). */
  multi_label: multiLabelSchema.optional(),
});

/** The largest adapter scale (in absolute value) a codebook may set. */
export const MAX_ADAPTER_SCALE = 4;
const ADAPTER_SCALE_MESSAGE =
  `the scale multiplies the adapter's trained update (1 = as trained, 0 = off); use a value between ` +
  `-${MAX_ADAPTER_SCALE} and ${MAX_ADAPTER_SCALE}: far outside it the model's label probabilities go flat`;

const adapterSchema = z.strictObject({
  path: z.string().min(1),
  // 1 applies the adapter as trained, 0 switches it off; far beyond that the update swamps the model and every label
  // becomes equally likely, which would be scored as `ok`.
  scale: z
    .number()
    .finite()
    .min(-MAX_ADAPTER_SCALE, ADAPTER_SCALE_MESSAGE)
    .max(MAX_ADAPTER_SCALE, ADAPTER_SCALE_MESSAGE)
    .default(1),
});

const modelSchema = z.strictObject({
  path: z.string().min(1),
  adapters: z.array(adapterSchema).default([]),
  context_size: z.number().int().positive().optional(),
  max_document_tokens: z.number().int().positive().default(512),
  threads: z.number().int().nonnegative().optional(),
  gpu_layers: z.union([z.number().int().nonnegative(), z.literal('auto'), z.literal('max')]).default('auto'),
  /** Documents decoded together in one batch; a layout setting that can move probabilities (see README). */
  sequences: z.union([z.number().int().positive().max(64), z.literal('auto')]).default('auto'),
});

const promptSchema = z.strictObject({
  format: z.enum(['chat', 'raw']).default('chat'),
  system: z.string().optional(),
  template: z.string().min(1),
  /** raw format only: text placed between the prompt and the answer (e.g. " "). */
  answer_prefix: z.string().default(''),
  /** Cut to `chars` characters (Unicode code points): the whole rendered prompt (raw format) or the document. */
  truncate: z
    .strictObject({
      chars: z.number().int('a whole number of characters').positive('a positive number of characters'),
      of: z.enum(['prompt', 'document']),
    })
    .optional(),
});

const inputSchema = z.strictObject({
  text_column: z.string().min(1).default('text'),
  id_column: z.string().min(1).optional(),
});

const codebookSchema = z
  .strictObject({
    task: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'use letters, digits, ".", "_" and "-"'),
    description: z.string().optional(),
    version: z.union([z.string(), z.number()]).optional(),
    input: inputSchema.default({ text_column: 'text' }),
    labels: z.array(labelSchema).min(2, 'a codebook needs at least two labels').optional(),
    /** With "labels": they are ordered as listed, lowest first; used by evaluation only. */
    ordered: z.boolean().optional(),
    questions: z.array(questionSchema).min(1).optional(),
    prompt: promptSchema,
    model: modelSchema,
    /** Validated by parseFallbackConfig (contracts/fallback-config.ts), fully only when enabled. */
    fallback: z.unknown().optional(),
  })
  .superRefine((value, ctx) => {
    if ((value.labels === undefined) === (value.questions === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['labels'],
        message: 'give either "labels" (one question) or "questions", not both or neither',
      });
    }
    if (value.ordered !== undefined && value.questions !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['ordered'],
        message: 'with "questions", set "ordered" on each question instead',
      });
    }
  });

export type CodebookInput = z.input<typeof codebookSchema>;

export interface Label {
  readonly name: string;
  readonly description: string | null;
  /** The exact text the model answers for this label. */
  readonly answer: string;
  readonly examples: readonly string[];
}

/** How a multi-label question is scored (codebook `multi_label:`). */
export type MultiLabelSpec = PerLabelSpec | ListSpec;

/** `list`: the model answers one list of labels; each label set's exact probability over the list grammar. */
export interface ListSpec {
  readonly format: 'list';
  readonly list: LabelListSyntax;
}

export interface PerLabelSpec {
  /** `per_label`: each label asked as a yes/no question of its own; P(label) = P(yes) over the two answers. */
  readonly format: 'per_label';
  /** Each label's decision threshold, in label order: a label is in the labels list when P(label) ≥ its threshold. */
  readonly thresholds: readonly number[];
  /** The answer texts each label's question is scored over. */
  readonly answers: { readonly yes: string; readonly no: string };
}

export interface Question {
  /** The column prefix of the question's results in a multi-question codebook ("label" for `labels:`). */
  readonly name: string;
  readonly type: 'single_label' | 'multi_label';
  /** The question's text (`{question}` in the template), or null. */
  readonly text: string | null;
  readonly labels: readonly Label[];
  /** Labels ordered as listed, lowest first (codebook `ordered: true`); evaluation adds ordinal figures. */
  readonly ordered: boolean;
  /** A multi-label question's scoring (null for single-label questions, and multi-label ones kept for evaluation). */
  readonly multiLabel: MultiLabelSpec | null;
}

export interface AdapterSpec {
  /** Absolute path. */
  readonly path: string;
  readonly scale: number;
}

export interface ModelSpec {
  readonly path: string;
  readonly adapters: readonly AdapterSpec[];
  readonly contextSize: number | null;
  readonly maxDocumentTokens: number;
  readonly threads: number | null;
  readonly gpuLayers: number | 'auto' | 'max';
  readonly sequences: number | 'auto';
}

/** Character truncation, as Python's `text[:chars]` (code points, not UTF-16 units or tokens). */
export interface CharTruncation {
  readonly chars: number;
  /** "prompt": the raw prompt string after the template is filled (special-token text counted as written). */
  readonly of: 'prompt' | 'document';
}

export interface PromptSpec {
  readonly format: 'chat' | 'raw';
  readonly system: string | null;
  readonly template: string;
  readonly answerPrefix: string;
  /** Applied before tokenising, besides model.max_document_tokens; null when not set. */
  readonly truncate: CharTruncation | null;
  /** Variables the template uses, in order of first appearance ("text" always among them). */
  readonly variables: readonly string[];
}

export interface Codebook {
  readonly task: string;
  readonly description: string | null;
  readonly version: string | null;
  /** The file it was read from (absolute), or null when built in memory. */
  readonly source: string | null;
  readonly textColumn: string;
  readonly idColumn: string | null;
  readonly questions: readonly Question[];
  readonly prompt: PromptSpec;
  readonly model: ModelSpec;
  /** The closed-model fallback; null when the section is absent or says `enabled: false`. */
  readonly fallback: FallbackConfig | null;
}

/** Template variables: `{name}`; `{{` and `}}` are literal braces. */
const variablePattern = /\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** Variables derived from the codebook itself rather than from input columns; each has one value per question. */
export const CODEBOOK_VARIABLES = ['question', 'labels', 'label_descriptions'] as const;

export function templateVariables(template: string): string[] {
  const names: string[] = [];
  for (const match of template.matchAll(variablePattern)) {
    const name = match[1];
    if (name !== undefined && !names.includes(name)) names.push(name);
  }
  return names;
}

/** Splits a template into literal text and variable references, braces unescaped. */
export function parseTemplate(template: string): ({ kind: 'text'; text: string } | { kind: 'var'; name: string })[] {
  const parts: ({ kind: 'text'; text: string } | { kind: 'var'; name: string })[] = [];
  let last = 0;
  let text = '';
  for (const match of template.matchAll(variablePattern)) {
    const at = match.index;
    text += template.slice(last, at);
    last = at + match[0].length;
    if (match[0] === '{{') text += '{';
    else if (match[0] === '}}') text += '}';
    else {
      if (text !== '') parts.push({ kind: 'text', text });
      text = '';
      parts.push({ kind: 'var', name: match[1] as string });
    }
  }
  text += template.slice(last);
  if (text !== '') parts.push({ kind: 'text', text });
  return parts;
}

function invalid(source: string, field: string, message: string): RescaleError {
  return new RescaleError('CODEBOOK_INVALID', `${source}: field "${field}": ${message}`);
}

/** Validates a parsed YAML/JSON value; `baseDir` resolves relative model and adapter paths. */
export function parseCodebook(
  raw: unknown,
  options: { source?: string; baseDir?: string; locate?: FieldLocator } = {},
): Codebook {
  const source = options.source ?? 'codebook';
  const locate = options.locate ?? null;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    // Not a mapping: most likely some other file. Its content is not echoed, only what it is.
    const found = raw === null || raw === undefined ? 'empty' : Array.isArray(raw) ? 'a list' : `a ${typeof raw}`;
    throw new RescaleError(
      'CODEBOOK_INVALID',
      `${source} is not a codebook: it holds ${found}, not a mapping with task, labels, prompt and model; check the ` +
        '--codebook path',
    );
  }
  const parsed = codebookSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = issueLines(parsed.error.issues, [], locate);
    throw new RescaleError('CODEBOOK_INVALID', `${source} is not a valid codebook:\n  ${lines.join('\n  ')}`);
  }
  const value = parsed.data;
  const baseDir = options.baseDir ?? process.cwd();

  const questions: Question[] = (
    value.questions ?? [
      {
        name: 'label',
        type: 'single_label' as const,
        question: undefined,
        labels: value.labels ?? [],
        ordered: value.ordered,
        multi_label: undefined,
      },
    ]
  ).map((question, qi) => {
    const fieldBase = value.questions === undefined ? 'labels' : `questions[${qi}].labels`;
    if (question.ordered === true && question.type === 'multi_label') {
      throw invalid(
        source,
        value.questions === undefined ? 'ordered' : `questions[${qi}].ordered`,
        'a multi_label question cannot be ordered; order applies to single_label questions (e.g. absent < low < high)',
      );
    }
    const questionField = `questions[${qi}]`;
    if (question.multi_label !== undefined && question.type !== 'multi_label') {
      throw invalid(
        source,
        `${questionField}.multi_label`,
        'only a multi-label question is scored this way; set type: multi_label, or remove the section',
      );
    }
    const thresholdAt = question.labels.findIndex((label) => label.threshold !== undefined);
    if (thresholdAt >= 0 && question.type !== 'multi_label') {
      throw invalid(
        source,
        `${fieldBase}[${thresholdAt}].threshold`,
        'a threshold decides membership in a multi-label question; a single-label question takes its top label',
      );
    }
    if (thresholdAt >= 0 && question.multi_label?.format === 'list') {
      throw invalid(
        source,
        `${fieldBase}[${thresholdAt}].threshold`,
        'a list question takes the most probable label set, not labels over a threshold; remove the threshold',
      );
    }
    const seenNames = new Set<string>();
    const seenAnswers = new Set<string>();
    const labels = question.labels.map((label, li): Label => {
      const answer = label.answer ?? label.name;
      if (seenNames.has(label.name))
        throw invalid(source, `${fieldBase}[${li}].name`, `label "${label.name}" appears twice`);
      if (seenAnswers.has(answer))
        throw invalid(source, `${fieldBase}[${li}].answer`, `answer "${answer}" is used by two labels`);
      seenNames.add(label.name);
      seenAnswers.add(answer);
      return Object.freeze({
        name: label.name,
        description: label.description ?? null,
        answer,
        examples: Object.freeze([...(label.examples ?? [])]),
      });
    });
    return Object.freeze({
      name: question.name,
      type: question.type,
      text: question.question ?? null,
      labels: Object.freeze(labels),
      ordered: question.ordered ?? false,
      multiLabel: multiLabelSpec(source, questionField, question),
    });
  });
  const questionNames = new Set<string>();
  questions.forEach((question, qi) => {
    if (questionNames.has(question.name))
      throw invalid(source, `questions[${qi}].name`, `question "${question.name}" appears twice`);
    questionNames.add(question.name);
  });

  const variables = templateVariables(value.prompt.template);
  if (!variables.includes('text')) {
    throw invalid(
      source,
      'prompt.template',
      'the template must contain the document variable {text} (write {{ and }} for literal braces)',
    );
  }
  if (
    value.prompt.system !== undefined &&
    templateVariables(value.prompt.system).some((name) => !(CODEBOOK_VARIABLES as readonly string[]).includes(name))
  ) {
    throw invalid(
      source,
      'prompt.system',
      `the system prompt may only use ${CODEBOOK_VARIABLES.map((n) => `{${n}}`).join(', ')}; put document variables ` +
        'in prompt.template',
    );
  }
  checkQuestionPlaces(source, questions, value.prompt, value.questions !== undefined);
  if (value.prompt.format === 'chat' && value.prompt.answer_prefix !== '') {
    throw invalid(
      source,
      'prompt.answer_prefix',
      'only used with format "raw"; in chat format the answer is the assistant reply',
    );
  }
  if (value.prompt.format === 'chat' && value.prompt.truncate?.of === 'prompt') {
    throw invalid(
      source,
      'prompt.truncate.of',
      '"prompt" cuts the raw prompt string and needs format "raw"; in chat format use "document"',
    );
  }

  const resolvePath = (p: string): string => path.resolve(baseDir, p);
  const model: ModelSpec = Object.freeze({
    path: resolvePath(value.model.path),
    adapters: Object.freeze(
      value.model.adapters.map((a) => Object.freeze({ path: resolvePath(a.path), scale: a.scale })),
    ),
    contextSize: value.model.context_size ?? null,
    maxDocumentTokens: value.model.max_document_tokens,
    threads: value.model.threads ?? null,
    gpuLayers: value.model.gpu_layers,
    sequences: value.model.sequences,
  });

  const fallback = parseFallbackConfig(value.fallback, {
    source,
    baseDir,
    promptFormat: value.prompt.format,
    ...(locate !== null ? { locate } : {}),
  });
  if (fallback !== null) checkFallbackQuestions(source, questions, fallback, value.questions !== undefined);

  return Object.freeze({
    task: value.task,
    description: value.description ?? null,
    version: value.version === undefined ? null : String(value.version),
    source: options.source === undefined ? null : path.resolve(options.source),
    textColumn: value.input.text_column,
    idColumn: value.input.id_column ?? null,
    questions: Object.freeze(questions),
    prompt: Object.freeze({
      format: value.prompt.format,
      system: value.prompt.system ?? null,
      template: value.prompt.template,
      answerPrefix: value.prompt.answer_prefix,
      truncate: value.prompt.truncate === undefined ? null : Object.freeze({ ...value.prompt.truncate }),
      variables: Object.freeze(variables),
    }),
    model,
    fallback,
  });
}

/** Variables a per-label question text may use. */
const PER_LABEL_VARIABLES = ['label', 'description'] as const;

/** A multi-label question's scoring spec, checked; null when the question has no `multi_label` section. */
function multiLabelSpec(
  source: string,
  field: string,
  question: z.output<typeof questionSchema>,
): MultiLabelSpec | null {
  const spec = question.multi_label;
  if (spec === undefined) return null;
  if (spec.format === 'list') {
    const { format, ...syntax } = spec;
    const answers = question.labels.map((label) => label.answer ?? label.name);
    const list = compileLabelListSyntax(syntax, answers, `${field}.multi_label`, source);
    return Object.freeze({ format, list });
  }
  if (spec.answers.yes === spec.answers.no) {
    throw invalid(source, `${field}.multi_label.answers`, 'the yes and no answers must differ');
  }
  if (question.question === undefined) {
    throw invalid(
      source,
      `${field}.question`,
      'a per_label question is asked once per label: give its text with {label} (and optionally {description}), ' +
        'e.g. "Is the text about {label}?", and put {question} in the template after the document',
    );
  }
  const unknown = templateVariables(question.question).find(
    (name) => !(PER_LABEL_VARIABLES as readonly string[]).includes(name),
  );
  if (unknown !== undefined) {
    throw invalid(
      source,
      `${field}.question`,
      `{${unknown}} is not a per-label variable; use {label} (the label's name) and {description} (its description)`,
    );
  }
  const texts = question.labels.map((label) => perLabelText(question.question as string, label));
  const twin = texts.findIndex((text, i) => texts.indexOf(text) !== i);
  if (twin >= 0) {
    throw invalid(
      source,
      `${field}.question`,
      `labels ${texts.indexOf(texts[twin] as string)} and ${twin} would be asked the same question; put {label} ` +
        '(or {description}, with distinct descriptions) in the question text',
    );
  }
  return Object.freeze({
    format: spec.format,
    thresholds: Object.freeze(question.labels.map((label) => label.threshold ?? spec.threshold)),
    answers: Object.freeze({ yes: spec.answers.yes, no: spec.answers.no }),
  });
}

/**
 * A per-label question's text for one label: `{label}` is its name, `{description}` its description (its name when it
 * has none); `{{`/`}}` are literal braces.
 */
export function perLabelText(
  text: string,
  label: { readonly name: string; readonly description?: string | null | undefined },
): string {
  return parseTemplate(text)
    .map((part) =>
      part.kind === 'text' ? part.text : part.name === 'label' ? label.name : (label.description ?? label.name),
    )
    .join('');
}

/**
 * The fallback asks a document's unsure questions in one request: per-question rules must name questions of the
 * codebook, and the answer is one JSON object.
 */
function checkFallbackQuestions(
  source: string,
  questions: readonly Question[],
  fallback: FallbackConfig,
  listed: boolean,
): void {
  const names = questions.map((q) => q.name);
  for (const name of Object.keys(fallback.questions)) {
    if (!listed) {
      throw invalid(
        source,
        `fallback.questions.${name}`,
        'per-question routing is for codebooks with "questions"; with "labels" give the rules in fallback.routing',
      );
    }
    if (!names.includes(name)) {
      throw invalid(
        source,
        `fallback.questions.${name}`,
        `names no question of the codebook; the questions are ${names.join(', ')}`,
      );
    }
  }
  const multiLabel = questions.some((q) => q.type === 'multi_label');
  if ((questions.length > 1 || multiLabel) && fallback.responseFormat === 'text') {
    throw invalid(
      source,
      'fallback.response_format',
      (multiLabel
        ? 'a multi-label question is answered as a JSON list of its labels'
        : "with several questions the fallback answers all of a document's unsure questions as one JSON object") +
        '; use json_schema (or json_object for servers without JSON-schema outputs)',
    );
  }
  checkMultiLabelRouting(source, questions, fallback);
}

/**
 * The routing rules a multi-label question is routed by must be able to fire on it (it has no entropy), and the
 * unscored-mass rule is for list questions only: a rule that can never fire is refused by field, not ignored.
 */
function checkMultiLabelRouting(source: string, questions: readonly Question[], fallback: FallbackConfig): void {
  let listOnDefault = false;
  questions.forEach((question, q) => {
    const own = fallback.questions[question.name];
    const rules = own === undefined ? fallback.routing : own;
    if (rules === null) return;
    const field = own === undefined ? 'fallback.routing' : `fallback.questions.${question.name}.routing`;
    const list = question.multiLabel?.format === 'list';
    if (own === undefined && list) listOnDefault = true;
    if (own != null && own.unscoredMassAbove !== null && !list) {
      throw invalid(
        source,
        `${field}.unscored_mass_above`,
        `questions[${q}] (${question.name}) is not a list multi-label question, and only a list question's walk ` +
          'leaves mass unscored; use confidence_below, margin_below or label_mass_below',
      );
    }
    if (question.type !== 'multi_label') return;
    const fires =
      rules.confidenceBelow !== null ||
      rules.marginBelow !== null ||
      rules.labelMassBelow !== null ||
      (list && rules.unscoredMassAbove !== null);
    if (!fires) {
      throw invalid(
        source,
        field,
        `questions[${q}] (${question.name}) is multi-label and has no entropy, so entropy_above never routes it; ` +
          `give confidence_below, margin_below or label_mass_below${list ? ' or unscored_mass_above' : ''} ` +
          `(or fallback.questions.${question.name} its own rules, or enabled: false)`,
      );
    }
  });
  if (fallback.routing.unscoredMassAbove !== null && !listOnDefault) {
    throw invalid(
      source,
      'fallback.routing.unscored_mass_above',
      'applies to list multi-label questions (multi_label.format: list) routed by these rules, and there are none; ' +
        'remove it',
    );
  }
}

/**
 * Each question's prompt must be its own: question text needs a `{question}` to go to, `{question}` needs every
 * question's text, and two questions with the same answers need some per-question variable to tell them apart.
 */
function checkQuestionPlaces(
  source: string,
  questions: readonly Question[],
  prompt: { template: string; system?: string | undefined },
  explicit: boolean,
): void {
  const used = new Set([...templateVariables(prompt.template), ...templateVariables(prompt.system ?? '')]);
  if (used.has('question')) {
    if (!explicit) {
      throw invalid(
        source,
        'prompt.template',
        '{question} is filled from each question\'s "question" text, and a codebook with "labels" has none; write ' +
          'the question into the template, or use "questions" with a "question" text each',
      );
    }
    const missing = questions.findIndex((q) => q.text === null);
    if (missing >= 0) {
      throw invalid(
        source,
        `questions[${missing}].question`,
        'the template uses {question}: give every question its text ("question: ...")',
      );
    }
  } else {
    const withText = questions.findIndex((q) => q.text !== null);
    if (withText >= 0) {
      throw invalid(
        source,
        'prompt.template',
        `questions[${withText}] has a "question" text but the template has no {question} to put it in; add ` +
          '{question} after the document variables (e.g. "Tweet: {text}\\n\\n{question}") so each document is ' +
          'evaluated once for all questions',
      );
    }
  }
  if ((CODEBOOK_VARIABLES as readonly string[]).some((name) => used.has(name))) return;
  const answers = questions.map((q) => q.labels.map((l) => l.answer).join('\n'));
  const twin = answers.findIndex((a, i) => answers.indexOf(a) !== i);
  if (twin >= 0) {
    throw invalid(
      source,
      'prompt.template',
      `questions[${answers.indexOf(answers[twin] as string)}] and questions[${twin}] would be the same question: ` +
        'the same prompt and the same answers; put {question} (or {labels}, {label_descriptions}) in the ' +
        'template, after the document variables, and give each question its text',
    );
  }
}

export async function loadCodebook(file: string): Promise<Codebook> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new RescaleError(
      'CODEBOOK_INVALID',
      `cannot read codebook ${file}: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}; check the --codebook ` +
        'path',
      { cause },
    );
  }
  return parseCodebookText(text, file);
}

/**
 * A codebook from its YAML text as read from `file` (cluster workers get the text the coordinator read). A syntax
 * error is reported by its line, column, kind and the parser's sentence (short and escaped, cut before any quote of
 * the file), never the file's lines: the file may not be a codebook at all.
 */
export function parseCodebookText(text: string, file: string): Codebook {
  const { raw, locate } = parseYamlSource(text, file, {
    code: 'CODEBOOK_INVALID',
    what: 'a codebook',
    check: 'the --codebook path',
  });
  return parseCodebook(raw, { source: file, baseDir: path.dirname(path.resolve(file)), locate });
}

/** The single question of a one-question single-label codebook, for the tools that handle one question only. */
export function singleQuestion(codebook: Codebook, tool = 'this command'): Question {
  const [question, ...rest] = codebook.questions;
  if (question === undefined || rest.length > 0 || question.type !== 'single_label') {
    throw new RescaleError(
      'CODEBOOK_INVALID',
      `${codebook.source ?? 'codebook'}: field "questions": ${tool} handles one single-label question per ` +
        'codebook; split multi-question or multi-label codebooks into one codebook per question',
    );
  }
  return question;
}

/**
 * The questions the engine scores: single-label questions, and multi-label ones with their `multi_label` section (one
 * without it describes labels for evaluation only and is refused by name).
 */
export function scoredQuestions(codebook: Codebook): readonly Question[] {
  const unscorable = codebook.questions.findIndex((q) => q.type === 'multi_label' && q.multiLabel === null);
  if (unscorable >= 0) {
    throw new RescaleError(
      'CODEBOOK_INVALID',
      `${codebook.source ?? 'codebook'}: field "questions[${unscorable}].multi_label": a multi-label question needs ` +
        'to say how the model is asked before it can be scored: add "multi_label: { format: per_label }" and a ' +
        'question text with {label} (see README, "Multi-label questions")',
    );
  }
  return codebook.questions;
}

/** Stable JSON: object keys sorted, so equal codebooks hash equally whatever the YAML key order. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/**
 * Documents decoded together (the batch layout, part of the result hash and of the shard ids): the override
 * (`--sequences`), else the codebook's `model.sequences`, where "auto" is 1. "auto" is resolved once, when a run is
 * planned, and never by the machine: cluster workers differ, and one picking by its hardware would change the
 * layout under the run. 1 because one sequence is what every machine runs well: several sequences decode a group's
 * documents together (worker/engine/batched-decode.ts), meant for GPUs (set it there; unmeasured here), and it showed
 * no reliable gain on the shared 2-core CPU it was measured on.
 */
export function resolveSequences(codebook: Codebook, override?: number): number {
  if (override !== undefined) return override;
  return codebook.model.sequences === 'auto' ? 1 : codebook.model.sequences;
}
