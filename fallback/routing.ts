// The routing rules: which locally scored documents go to the closed model, and how its outcome joins the row.
// The rules' settings are part of the codebook's fallback config (contracts/fallback-config.ts); this is their logic.

import type { Codebook, Question } from '../contracts/codebook.js';
import {
  questionRules,
  type FallbackConfig,
  type RouteReason,
  type RoutingRules,
} from '../contracts/fallback-config.js';
import type { FallbackOutcome, QuestionAnswer, ResultRow } from '../contracts/results.js';

/** Why a locally scored document goes to the fallback, or null to keep the local label. Unscored rows never go. */
export function routeReason(
  rules: RoutingRules,
  score: {
    readonly status: string;
    readonly confidence: number | null;
    readonly margin: number | null;
    readonly entropy: number | null;
    /** Absent or null: not known (e.g. rows from files written before label_mass); the rule then does not fire. */
    readonly labelMass?: number | null | undefined;
    /** A list multi-label question's unscored mass; absent or null elsewhere (the rule then does not fire). */
    readonly unscoredMass?: number | null | undefined;
  },
): RouteReason | null {
  if (score.status !== 'ok' && score.status !== 'truncated') return null;
  if (rules.confidenceBelow !== null && score.confidence !== null && score.confidence < rules.confidenceBelow)
    return 'confidence';
  if (rules.marginBelow !== null && score.margin !== null && score.margin < rules.marginBelow) return 'margin';
  if (rules.entropyAbove !== null && score.entropy !== null && score.entropy > rules.entropyAbove) return 'entropy';
  const mass = score.labelMass ?? null;
  if (rules.labelMassBelow !== null && mass !== null && mass < rules.labelMassBelow) return 'label_mass';
  const unscored = score.unscoredMass ?? null;
  if (rules.unscoredMassAbove !== null && unscored !== null && unscored > rules.unscoredMassAbove)
    return 'unscored_mass';
  return null;
}

/**
 * Whether the fallback asks by question (one JSON property per asked question, opinions in the questions' column
 * groups): with several questions, or a multi-label one (also when it is the only question).
 */
export function asksByQuestion(codebook: Pick<Codebook, 'questions'>): boolean {
  return codebook.questions.length > 1 || codebook.questions.some((q) => q.type === 'multi_label');
}

/** The routed rows of a batch: those whose local score meets one of the codebook's routing rules. */
export function routedIndexes(config: FallbackConfig, rows: readonly ResultRow[]): number[] {
  const out: number[] = [];
  rows.forEach((row, index) => {
    if (routeReason(config.routing, row) !== null) out.push(index);
  });
  return out;
}

/** A row with the fallback's outcome: both opinions kept, the fallback's label final only when it answered one. */
export function withFallbackOutcome(row: ResultRow, outcome: FallbackOutcome): ResultRow {
  return {
    ...row,
    localLabel: row.label,
    fallback: outcome,
    ...(outcome.status === 'ok' ? { label: outcome.label, source: 'fallback' as const } : {}),
  };
}

/**
 * Every row with `localLabel` set and no fallback outcome yet: what a fallback returns for rows it does not answer.
 * Multi-question rows are returned as they are (their routed questions carry their own opinions).
 */
export function withoutFallback(rows: readonly ResultRow[]): ResultRow[] {
  return rows.map((row) => (row.answers !== undefined ? row : { ...row, localLabel: row.label, fallback: null }));
}

/** The document's id as the audit log and the fallback queue write it (null when the row index is the id). */
export function documentIdText(id: ResultRow['id']): string | null {
  return id === null ? null : String(id);
}

/**
 * A multi-question row's unsure questions: the indexes (codebook order) of those whose own score meets one of their
 * rules (a multi-label question's by its own columns: see RoutingRules). The row's status decides for all of them:
 * unscored rows are never routed.
 */
export function routedQuestions(config: FallbackConfig, questions: readonly Question[], row: ResultRow): number[] {
  const out: number[] = [];
  questions.forEach((question, q) => {
    const rules = questionRules(config, question.name);
    const answer = row.answers?.[q];
    if (rules === null || answer === undefined) return;
    if (routeReason(rules, { status: row.status, ...answer }) !== null) out.push(q);
  });
  return out;
}

/** One routed row of a batch: its index, and its unsure questions when the codebook is asked by question. */
export interface RoutedRow {
  readonly index: number;
  /** The row's unsure questions (codebook order, never empty); null: the one-question codebook's row as a whole. */
  readonly asked: number[] | null;
}

/**
 * The routed rows of a batch, in row order. `questions`: a codebook asked by question (see asksByQuestion), whose rows
 * are routed by their unsure questions (routedQuestions); null: one single-label question (routedIndexes).
 */
export function routedRows(
  config: FallbackConfig,
  questions: readonly Question[] | null,
  rows: readonly ResultRow[],
): RoutedRow[] {
  if (questions === null) return routedIndexes(config, rows).map((index) => ({ index, asked: null }));
  return rows.flatMap((row, index) => {
    const asked = routedQuestions(config, questions, row);
    return asked.length === 0 ? [] : [{ index, asked }];
  });
}

/**
 * A multi-question row with the fallback's outcomes on its asked questions: each keeps both opinions, and takes the
 * fallback's label (source 'fallback') only where it answered one of the question's labels; a multi-label question
 * takes the fallback's label set as its `labels`. The local scores (confidence, margin, probabilities, …) stay the
 * local model's, as for a single-label question. The row's source is 'fallback' when any question's is.
 */
export function withQuestionOutcomes(row: ResultRow, outcomes: ReadonlyMap<number, FallbackOutcome>): ResultRow {
  const answers = (row.answers ?? []).map((answer, q): QuestionAnswer => {
    const outcome = outcomes.get(q);
    if (outcome === undefined) return answer;
    if (answer.labels !== undefined) {
      const answered = outcome.status === 'ok' && outcome.labels != null;
      return {
        ...answer,
        localLabels: answer.labels,
        fallback: outcome,
        source: answered ? 'fallback' : 'local',
        ...(answered ? { labels: outcome.labels } : {}),
      };
    }
    return {
      ...answer,
      localLabel: answer.label,
      fallback: outcome,
      source: outcome.status === 'ok' ? 'fallback' : 'local',
      ...(outcome.status === 'ok' ? { label: outcome.label } : {}),
    };
  });
  const fallback = answers.some((answer) => answer.source === 'fallback');
  return { ...row, answers, ...(fallback ? { source: 'fallback' as const } : {}) };
}
