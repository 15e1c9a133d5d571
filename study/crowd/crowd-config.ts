// The crowd configuration (`rescale crowd --config crowd.yaml`): raw YAML → zod schema → a compiled, frozen
// CrowdConfig with its codebooks loaded and every labeller checked against the crowd's codebook. Errors name the
// file and the field (`labellers[2].strategy`) and say what to write instead.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { loadCodebook, type Codebook, type Label, type Question } from '../../contracts/codebook.js';
import { RescaleError, errorMessage, isRescaleError } from '../../contracts/errors.js';
import { parseFallbackConfig, type FallbackConfig } from '../../contracts/fallback-config.js';
import { issueLines, type FieldLocator } from '../../contracts/validation-issues.js';
import { parseYamlSource } from '../../contracts/yaml-source.js';

/** A fine label of the `mapped` strategy: what the closed model may answer, and the codebook label it stands for. */
export interface FineLabel {
  readonly name: string;
  readonly description: string | null;
  readonly mapsTo: string;
}

export type ClosedStrategy = 'direct' | 'mapped';

export interface LocalLabeller {
  readonly kind: 'local';
  readonly name: string;
  /** Its own codebook (model, adapters, prompt); questions and labels as the crowd's codebook. */
  readonly codebook: Codebook;
}

export interface ClosedLabeller {
  readonly kind: 'closed';
  readonly name: string;
  readonly strategy: ClosedStrategy;
  /** The fallback's settings for this labeller: model, endpoint, key source, price, budget, limits, prompt. */
  readonly config: FallbackConfig;
  /** `mapped` only: per question, the finer labels offered to the model. */
  readonly fineLabels: ReadonlyMap<string, readonly FineLabel[]>;
}

export type Labeller = LocalLabeller | ClosedLabeller;

export interface CrowdConfig {
  /** Absolute path of the config file. */
  readonly file: string;
  readonly codebook: Codebook;
  /** Question name → the sample's truth column for it. */
  readonly gold: ReadonlyMap<string, string>;
  readonly labellers: readonly Labeller[];
  /** Absolute; null = `<out>/fallback-cache`. */
  readonly cacheDir: string | null;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const fineLabelSchema = z.strictObject({
  name: z.string().min(1, 'a fine label needs a non-empty name'),
  description: z.string().optional(),
  maps_to: z.string().min(1, 'name the codebook label this fine label counts as'),
});

const labellerSchema = z.looseObject({
  name: z.string().regex(NAME, 'a name of letters, digits, _ . - (at most 64), e.g. "gpt-4o-direct"'),
  kind: z.enum(['local', 'closed'], 'say kind: local (a codebook with a GGUF model) or kind: closed (an API)'),
});

const localSchema = z.strictObject({
  name: z.string(),
  kind: z.literal('local'),
  codebook: z.string().min(1, 'the path of the labeller’s codebook (relative to the crowd config)'),
});

const closedOwnFields = {
  name: z.string(),
  kind: z.literal('closed'),
  strategy: z
    .enum(['direct', 'mapped', 'hierarchical'], 'say strategy: direct, mapped or hierarchical')
    .default('direct'),
  fine_labels: z
    .union([z.array(fineLabelSchema).min(1), z.record(z.string(), z.array(fineLabelSchema).min(1))])
    .optional(),
};

const configSchema = z.strictObject({
  codebook: z.string().min(1, 'the path of the crowd’s codebook (its questions and labels)'),
  gold: z.record(z.string(), z.string().min(1)).optional(),
  cache_dir: z.string().min(1).optional(),
  labellers: z.array(z.unknown()).min(2, 'a crowd needs at least two labellers'),
});

export async function loadCrowdConfig(file: string): Promise<CrowdConfig> {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = await readFile(absolute, 'utf8');
  } catch (cause) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `cannot read the crowd config ${absolute} (--config): ${(cause as NodeJS.ErrnoException).code ?? String(cause)}`,
      { cause },
    );
  }
  const { raw, locate } = parseYamlSource(text, absolute, {
    code: 'CONFIG_INVALID',
    what: 'a crowd config',
    check: 'the --config path',
  });
  return compileCrowdConfig(raw, absolute, locate);
}

function invalid(file: string, lines: readonly string[]): RescaleError {
  return new RescaleError('CONFIG_INVALID', `crowd config ${file} is invalid:\n  ${lines.join('\n  ')}`);
}

export async function compileCrowdConfig(
  raw: unknown,
  file: string,
  locate: FieldLocator | null,
): Promise<CrowdConfig> {
  const fail = (field: string, message: string): never => {
    throw new RescaleError('CONFIG_INVALID', `crowd config ${file}: field "${field}": ${message}`);
  };
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw invalid(file, issueLines(parsed.error.issues, [], locate, 'the crowd config fields'));
  const value = parsed.data;
  const baseDir = path.dirname(file);
  const codebook = await codebookAt(path.resolve(baseDir, value.codebook), 'codebook', fail);
  const questions = new Map(codebook.questions.map((q) => [q.name, q]));
  const multi = codebook.questions.find((q) => q.type === 'multi_label');

  const gold = new Map<string, string>();
  for (const [question, column] of Object.entries(value.gold ?? {})) {
    if (!questions.has(question)) {
      fail(
        `gold.${question}`,
        `the codebook has no question "${question}"; its questions are ${questionList(codebook)}`,
      );
    }
    gold.set(question, column);
  }

  const labellers: Labeller[] = [];
  const names = new Set<string>();
  for (const [index, entry] of value.labellers.entries()) {
    const at = `labellers[${index}]`;
    const head = labellerSchema.safeParse(entry);
    if (!head.success)
      throw invalid(file, issueLines(head.error.issues, ['labellers', index], locate, 'the crowd config fields'));
    const { name, kind } = head.data;
    if (names.has(name)) fail(`${at}.name`, `"${name}" names two labellers; give each labeller its own name`);
    names.add(name);
    if (kind === 'local') {
      const local = localSchema.safeParse(entry);
      if (!local.success) throw invalid(file, issueLines(local.error.issues, ['labellers', index], locate));
      const own = await codebookAt(path.resolve(baseDir, local.data.codebook), `${at}.codebook`, fail);
      checkSameQuestions(own, codebook, `${at}.codebook`, fail);
      labellers.push(Object.freeze({ kind, name, codebook: own }));
    } else {
      const { strategy } = entry as Record<string, unknown>;
      if (multi !== undefined && (strategy === 'mapped' || strategy === 'hierarchical')) {
        fail(
          `${at}.strategy`,
          `question "${multi.name}" is multi-label, and the ${strategy} strategy maps one fine label to one codebook ` +
            'label; use strategy: direct (the model answers the set of labels that apply), or give this labeller a ' +
            'crowd of the single-label questions',
        );
      }
      labellers.push(closedLabeller(entry as Record<string, unknown>, index, codebook, file, baseDir, fail));
    }
  }
  return Object.freeze({
    file,
    codebook,
    gold,
    labellers: Object.freeze(labellers),
    cacheDir: value.cache_dir === undefined ? null : path.resolve(baseDir, value.cache_dir),
  });
}

async function codebookAt(
  file: string,
  field: string,
  fail: (field: string, message: string) => never,
): Promise<Codebook> {
  try {
    return await loadCodebook(file);
  } catch (error) {
    if (isRescaleError(error) && /cannot read codebook/.test(error.message)) {
      return fail(field, `cannot read the codebook ${file}; check the path (relative to the crowd config)`);
    }
    throw error;
  }
}

function questionList(codebook: Codebook): string {
  return codebook.questions.map((q) => `"${q.name}"`).join(', ');
}

/** A local labeller's codebook must ask the crowd's questions with the crowd's label names (answers may differ). */
function checkSameQuestions(
  own: Codebook,
  crowd: Codebook,
  field: string,
  fail: (field: string, message: string) => never,
): void {
  const ownNames = own.questions.map((q) => q.name).join(', ');
  const crowdNames = crowd.questions.map((q) => q.name).join(', ');
  if (ownNames !== crowdNames) {
    fail(
      field,
      `${own.source ?? ''} asks ${ownNames}; the crowd's codebook asks ${crowdNames}: ask the same questions`,
    );
  }
  crowd.questions.forEach((question, i) => {
    const ownQuestion = own.questions[i] as Question;
    if (ownQuestion.type !== question.type) {
      fail(
        field,
        `question "${question.name}" of ${own.source ?? ''} is ${ownQuestion.type}; in the crowd's codebook it is ` +
          `${question.type}: ask it the same way`,
      );
    }
    if (ownQuestion.type === 'multi_label' && ownQuestion.multiLabel === null) {
      fail(
        field,
        `question "${question.name}" of ${own.source ?? ''} is multi-label without a "multi_label" section, so the ` +
          'labeller cannot score it: add "multi_label: { format: per_label }" (or format: list)',
      );
    }
    const mine = ownQuestion.labels.map((l) => l.name);
    const theirs = question.labels.map((l) => l.name);
    if ([...mine].sort().join('\n') !== [...theirs].sort().join('\n')) {
      fail(
        field,
        `question "${question.name}" of ${own.source ?? ''} has labels ${mine.join(', ')}; the crowd's codebook has ` +
          `${theirs.join(', ')}: give the labels the crowd's names (the answers may differ)`,
      );
    }
  });
}

function closedLabeller(
  entry: Record<string, unknown>,
  index: number,
  codebook: Codebook,
  file: string,
  baseDir: string,
  fail: (field: string, message: string) => never,
): ClosedLabeller {
  const at = `labellers[${index}]`;
  const { name, kind, strategy, fine_labels: fine, ...connection } = entry;
  const own = z.strictObject(closedOwnFields).safeParse({ name, kind, strategy, fine_labels: fine });
  if (!own.success) throw invalid(file, issueLines(own.error.issues, ['labellers', index], null));
  for (const field of ['enabled', 'routing', 'cache_dir']) {
    if (field in connection)
      fail(`${at}.${field}`, 'is a fallback setting with no meaning for a crowd labeller; remove it');
  }
  let config: FallbackConfig | null;
  try {
    // The fallback's own schema and checks (key sources, prices, budget, limits, prompt); routing is unused here.
    config = parseFallbackConfig(
      { ...connection, enabled: true, routing: { confidence_below: 1 } },
      { source: `crowd config ${file}`, baseDir, promptFormat: codebook.prompt.format },
    );
  } catch (error) {
    // Its messages name "fallback.<field>"; here the field lives under the labeller.
    if (isRescaleError(error)) {
      const message = errorMessage(error)
        .replaceAll('"fallback.', `"${at}.`)
        .replace('has an invalid fallback section', `has an invalid closed labeller ${at}`);
      throw new RescaleError('CONFIG_INVALID', message, { cause: error });
    }
    throw error;
  }
  const strategy_ = own.data.strategy === 'hierarchical' ? 'mapped' : own.data.strategy;
  const fineLabels = new Map<string, readonly FineLabel[]>();
  if (strategy_ === 'mapped') {
    const given = own.data.fine_labels;
    if (given === undefined) fail(`${at}.fine_labels`, 'the mapped strategy needs the finer labels, each with maps_to');
    const byQuestion = Array.isArray(given)
      ? codebook.questions.length === 1
        ? { [(codebook.questions[0] as Question).name]: given }
        : fail(`${at}.fine_labels`, `the codebook has several questions: give fine labels per question name`)
      : (given as Record<string, z.infer<typeof fineLabelSchema>[]>);
    for (const question of codebook.questions) {
      const list = byQuestion[question.name];
      if (list === undefined) fail(`${at}.fine_labels.${question.name}`, 'give the fine labels of this question');
      const seen = new Set<string>();
      const labels = (list as z.infer<typeof fineLabelSchema>[]).map((label, i) => {
        const field = `${at}.fine_labels${Array.isArray(given) ? '' : `.${question.name}`}[${i}]`;
        if (seen.has(label.name)) fail(`${field}.name`, `"${label.name}" is listed twice`);
        seen.add(label.name);
        if (!question.labels.some((l: Label) => l.name === label.maps_to)) {
          fail(
            `${field}.maps_to`,
            `question "${question.name}" has no label "${label.maps_to}"; use one of ` +
              question.labels.map((l) => l.name).join(', '),
          );
        }
        return Object.freeze({ name: label.name, description: label.description ?? null, mapsTo: label.maps_to });
      });
      fineLabels.set(question.name, Object.freeze(labels));
    }
    for (const question of Object.keys(byQuestion)) {
      if (!codebook.questions.some((q) => q.name === question)) {
        fail(`${at}.fine_labels.${question}`, `the codebook has no question "${question}"`);
      }
    }
  } else if (own.data.fine_labels !== undefined) {
    fail(`${at}.fine_labels`, 'fine labels need strategy: mapped (or hierarchical)');
  }
  return Object.freeze({
    kind: 'closed',
    name: name as string,
    strategy: strategy_,
    config: config as FallbackConfig,
    fineLabels,
  });
}
