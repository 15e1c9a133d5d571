// A closed labeller's proposals: each (document, question) asked through the fallback's stage (client, retries,
// budget, rate limit, content-addressed cache, audit log), offering either the question's labels (`direct`) or the
// labeller's finer labels, each mapped to a codebook label afterwards (`mapped`, the paper's 244-subtopic method).
// An answer outside the offered labels is an `invalid_label` row, never mapped to a near label. A multi-label question
// (`direct` only) is asked as the fallback asks it: one JSON list of the labels that apply, its set the proposal.

import type { Codebook, Label, Question } from '../../contracts/codebook.js';
import { RescaleError, errorMessage, isRescaleError } from '../../contracts/errors.js';
import type { FallbackConfig } from '../../contracts/fallback-config.js';
import type { Logger } from '../../contracts/logger.js';
import type { FallbackOutcome } from '../../contracts/results.js';
import { describeKeySource, readApiKey } from '../../fallback/api-key.js';
import { readLedger } from '../../fallback/audit-log.js';
import { budgetLimits, InProcessBudget } from '../../fallback/budget.js';
import type { EndpointList } from '../../fallback/endpoint-list.js';
import { FallbackStage, type FallbackStats } from '../../fallback/fallback-stage.js';
import { InProcessRateLimiter } from '../../fallback/rate-limiter.js';
import type { BackoffOptions } from '../../fallback/retry-policy.js';
import type { ClosedLabeller } from './crowd-config.js';
import type { CrowdSample } from './crowd-sample.js';
import type { Proposal, ProposalError } from './proposal.js';

export interface ClosedLabellerContext {
  readonly codebook: Codebook;
  readonly sample: CrowdSample;
  readonly cacheDir: string;
  readonly auditFile: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly endpoints: EndpointList | null;
  /** Answers from the cache only: no key, no network; uncached requests give `over_budget`. */
  readonly offline: boolean;
  readonly logger: Logger;
  readonly signal?: AbortSignal | undefined;
  readonly backoff?: BackoffOptions | undefined;
}

export interface ClosedLabellerResult {
  /** Per question (codebook order), one proposal per sample document. */
  readonly proposals: Proposal[][];
  /** Summed over the questions. */
  readonly requests: number;
  readonly cacheHits: number;
  readonly costUsd: number;
}

const ERROR_OF: Record<Exclude<FallbackOutcome['status'], 'ok'>, ProposalError> = {
  fallback_invalid: 'invalid_label',
  fallback_failed: 'request_failed',
  over_budget: 'over_budget',
};

/** The labeller's settings with its named endpoint (if any) resolved against the operator's list. */
function connected(labeller: ClosedLabeller, endpoints: EndpointList | null, field: string): FallbackConfig {
  const { config } = labeller;
  if (config.endpoint === null) return config;
  if (endpoints === null) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `field "${field}.endpoint": labeller "${labeller.name}" names the endpoint "${config.endpoint}"; pass the ` +
        'endpoint list with --endpoints FILE',
    );
  }
  try {
    return endpoints.bind(config, `labeller "${labeller.name}"`);
  } catch (error) {
    if (!isRescaleError(error)) throw error;
    throw new RescaleError('CONFIG_INVALID', errorMessage(error).replaceAll('"fallback.', `"${field}.`), {
      cause: error,
    });
  }
}

/** The one-question codebook the fallback prompt is built from: the offered labels, each answered by its name. */
function offeredCodebook(codebook: Codebook, question: Question, labeller: ClosedLabeller): Codebook {
  const fine = labeller.fineLabels.get(question.name);
  const labels: Label[] =
    labeller.strategy === 'mapped' && fine !== undefined
      ? fine.map((l) => ({ name: l.name, description: l.description, answer: l.name, examples: [] }))
      : question.labels.map((l) => ({ ...l, answer: l.name }));
  return { ...codebook, questions: [{ ...question, labels }], fallback: null };
}

export async function closedProposals(
  labeller: ClosedLabeller,
  field: string,
  context: ClosedLabellerContext,
): Promise<ClosedLabellerResult> {
  const config = connected(labeller, context.endpoints, field);
  let apiKey: string | null = null;
  if (!context.offline) {
    const lookup = await readApiKey(config.apiKey, context.env);
    if (!lookup.found) {
      throw new RescaleError(
        'CONFIG_INVALID',
        `labeller "${labeller.name}" has no API key: ${lookup.reason}; set ${describeKeySource(config.apiKey)} ` +
          '(or run with --offline to replay cached answers)',
      );
    }
    if (lookup.warning !== null) context.logger.log('warn', lookup.warning, { labeller: labeller.name });
    apiKey = lookup.key;
  }
  // One budget and one rate limit for the labeller, whatever the number of questions; the audit file is its ledger.
  const budget = new InProcessBudget(budgetLimits(config), await readLedger(context.auditFile));
  const rateLimiter = new InProcessRateLimiter(config.rateLimit);
  const { sample } = context;
  const proposals: Proposal[][] = [];
  const totals = { requests: 0, cacheHits: 0, costUsd: 0 };
  for (const question of context.codebook.questions) {
    const stage = await FallbackStage.open({
      codebook: offeredCodebook(context.codebook, question, labeller),
      config,
      mode: context.offline ? 'offline' : 'live',
      apiKey,
      cacheDir: context.cacheDir,
      auditFile: context.auditFile,
      budget,
      rateLimiter,
      logger: context.logger.child({ labeller: labeller.name, question: question.name }),
      ...(context.backoff !== undefined ? { backoff: context.backoff } : {}),
    });
    let stats: FallbackStats;
    const answers: Proposal[] = new Array<Proposal>(sample.ids.length);
    try {
      const mapsTo = new Map((labeller.fineLabels.get(question.name) ?? []).map((l) => [l.name, l.mapsTo]));
      let next = 0;
      const work = async (): Promise<void> => {
        for (let i = next++; i < sample.ids.length; i = next++) {
          answers[i] = await ask(stage, i, question, labeller, mapsTo, context);
        }
      };
      await Promise.all(Array.from({ length: Math.min(config.concurrency, sample.ids.length) }, work));
      stats = stage.stats();
    } finally {
      await stage.close();
    }
    totals.requests += stats.requests;
    totals.cacheHits += stats.cacheHits;
    totals.costUsd += stats.costUsd;
    proposals.push(answers);
  }
  return { proposals, ...totals };
}

async function ask(
  stage: FallbackStage,
  i: number,
  question: Question,
  labeller: ClosedLabeller,
  mapsTo: ReadonlyMap<string, string>,
  context: ClosedLabellerContext,
): Promise<Proposal> {
  const { sample } = context;
  const text = sample.texts[i] ?? null;
  if (text === null || text.trim() === '') return { labels: [], probability: null, error: 'empty_text' };
  const columns: Record<string, string | null> = {};
  for (const [name, values] of sample.columns) columns[name] = values[i] ?? null;
  const document = {
    documentId: sample.ids[i] as string,
    row: i,
    shardId: `crowd/${labeller.name}/${question.name}`,
    doc: { text, columns },
  };
  if (question.type === 'multi_label') {
    // The fallback's request for a question asked by question: a list of the labels that apply (codebook order).
    const outcome = (await stage.answerQuestions(document, [0], context.signal)).get(0);
    if (outcome === undefined) throw new RescaleError('INTERNAL', `no fallback outcome for question ${question.name}`);
    if (outcome.status !== 'ok' || outcome.labels === null || outcome.labels === undefined) {
      return {
        labels: [],
        probability: null,
        error: outcome.status === 'ok' ? 'invalid_label' : ERROR_OF[outcome.status],
      };
    }
    return { labels: outcome.labels, probability: outcome.confidence, error: null };
  }
  const outcome = await stage.answer(document, context.signal);
  if (outcome.status !== 'ok' || outcome.label === null) {
    return {
      labels: [],
      probability: null,
      error: outcome.status === 'ok' ? 'invalid_label' : ERROR_OF[outcome.status],
    };
  }
  if (labeller.strategy === 'direct') return { labels: [outcome.label], probability: outcome.confidence, error: null };
  const label = mapsTo.get(outcome.label);
  // The logprob of one fine label is not the probability of its codebook label (other fine labels map there too).
  return label === undefined
    ? { labels: [], probability: null, error: 'invalid_label' }
    : { labels: [label], probability: null, error: null };
}
