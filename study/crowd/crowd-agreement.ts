// Agreement among a crowd's labellers, per question: Fleiss' kappa over the documents every labeller labelled,
// Krippendorff's alpha over all proposals (nominal; ordinal for an ordered question), Cohen's kappa for each pair
// on the documents both labelled, and the documents on which the labellers who answered disagree. A multi-label
// question is agreement on each label: every labeller's proposal says yes or no to it (in the set or not), and
// Krippendorff's alpha (nominal) is computed per label over those judgements, then averaged over the labels.

import type { Question } from '../../contracts/codebook.js';
import { isRescaleError } from '../../contracts/errors.js';
import { cohenKappa } from '../evaluation/agreement-metrics.js';
import { fleissKappa } from '../evaluation/fleiss-kappa.js';
import { krippendorffAlpha, type MeasurementLevel } from '../evaluation/krippendorff-alpha.js';
import type { Proposal } from './proposal.js';

export interface PairKappa {
  readonly a: string;
  readonly b: string;
  /** Documents both labelled. */
  readonly documents: number;
  /** null when they share no document or kappa is undefined (one label throughout). */
  readonly kappa: number | null;
}

export interface QuestionAgreement {
  readonly question: string;
  readonly labellers: readonly string[];
  readonly documents: number;
  /** Documents every labeller labelled (Fleiss' kappa needs the same raters per document). */
  readonly completeDocuments: number;
  readonly fleissKappa: number | null;
  readonly krippendorffAlpha: { readonly level: MeasurementLevel; readonly value: number | null };
  readonly pairwiseCohenKappa: readonly PairKappa[];
  /** Documents where at least two labellers answered and not all answers are the same. */
  readonly disagreements: number;
  /** Per labeller: proposals with an error (no label). */
  readonly errors: Readonly<Record<string, number>>;
  /**
   * A multi-label question: each label's alpha over the labellers' yes/no judgements (null where undefined: every
   * judgement the same, or no document with two), in codebook order. `krippendorffAlpha.value` is then their mean
   * over the labels that have one; Fleiss' and Cohen's kappa are left null (they compare single labels).
   */
  readonly perLabelAlpha?: readonly { readonly label: string; readonly alpha: number | null }[];
}

const finite = (x: number): number | null => (Number.isFinite(x) ? x : null);

/** `proposals[l][d]`: labeller l's proposal for document d, labellers in `names` order. */
export function questionAgreement(
  question: Question,
  names: readonly string[],
  proposals: readonly (readonly Proposal[])[],
): QuestionAgreement {
  if (question.type === 'multi_label') return labelSetAgreement(question, names, proposals);
  const labels = question.labels.map((l) => l.name);
  const documents = proposals[0]?.length ?? 0;
  const label = (l: number, d: number): string | null => {
    const proposal = proposals[l]?.[d];
    return proposal !== undefined && proposal.error === null && proposal.labels.length === 1
      ? (proposal.labels[0] as string)
      : null;
  };

  const counts: number[][] = [];
  let disagreements = 0;
  for (let d = 0; d < documents; d++) {
    const given = names.map((_, l) => label(l, d)).filter((x): x is string => x !== null);
    if (given.length >= 2 && new Set(given).size > 1) disagreements++;
    if (given.length === names.length) counts.push(labels.map((name) => given.filter((g) => g === name).length));
  }
  const fleiss = counts.length > 0 && names.length >= 2 ? finite(fleissKappa(counts).kappa) : null;

  const level: MeasurementLevel = question.ordered ? 'ordinal' : 'nominal';
  let alpha: number | null = null;
  try {
    const data = names.map((_, l) => Array.from({ length: documents }, (_, d) => label(l, d)));
    alpha = finite(krippendorffAlpha(data, { level, valueOrder: labels }).alpha);
  } catch (error) {
    if (!isRescaleError(error) || error.code !== 'INPUT_INVALID') throw error; // no document with two answers
  }

  const pairwise: PairKappa[] = [];
  for (let a = 0; a < names.length; a++) {
    for (let b = a + 1; b < names.length; b++) {
      const left: string[] = [];
      const right: string[] = [];
      for (let d = 0; d < documents; d++) {
        const x = label(a, d);
        const y = label(b, d);
        if (x !== null && y !== null) {
          left.push(x);
          right.push(y);
        }
      }
      pairwise.push({
        a: names[a] as string,
        b: names[b] as string,
        documents: left.length,
        kappa: left.length === 0 ? null : finite(cohenKappa(left, right, labels)),
      });
    }
  }
  return {
    question: question.name,
    labellers: names,
    documents,
    completeDocuments: counts.length,
    fleissKappa: fleiss,
    krippendorffAlpha: { level, value: alpha },
    pairwiseCohenKappa: pairwise,
    disagreements,
    errors: errorCounts(names, proposals),
  };
}

function errorCounts(names: readonly string[], proposals: readonly (readonly Proposal[])[]): Record<string, number> {
  const errors: Record<string, number> = {};
  names.forEach((name, l) => {
    errors[name] = (proposals[l] ?? []).filter((p) => p.error !== null).length;
  });
  return errors;
}

/** Nominal alpha, or null where it is undefined (no document with two judgements, or all judgements alike). */
function nominalAlpha(data: readonly (readonly (string | null)[])[]): number | null {
  try {
    return finite(krippendorffAlpha(data, { level: 'nominal' }).alpha);
  } catch (error) {
    if (!isRescaleError(error) || error.code !== 'INPUT_INVALID') throw error;
    return null;
  }
}

/** A multi-label question: per-label alpha over yes/no judgements, their mean, and set disagreements. */
function labelSetAgreement(
  question: Question,
  names: readonly string[],
  proposals: readonly (readonly Proposal[])[],
): QuestionAgreement {
  const documents = proposals[0]?.length ?? 0;
  // A proposal without error is a set, empty when the labeller gave no label.
  const set = (l: number, d: number): readonly string[] | null => {
    const proposal = proposals[l]?.[d];
    return proposal !== undefined && proposal.error === null ? proposal.labels : null;
  };
  let complete = 0;
  let disagreements = 0;
  for (let d = 0; d < documents; d++) {
    const given = names.flatMap((_, l) => {
      const s = set(l, d);
      return s === null ? [] : [JSON.stringify([...s].sort())];
    });
    if (given.length === names.length) complete++;
    if (given.length >= 2 && new Set(given).size > 1) disagreements++;
  }
  const perLabelAlpha = question.labels.map(({ name }) => ({
    label: name,
    alpha: nominalAlpha(
      names.map((_, l) =>
        Array.from({ length: documents }, (_, d) => {
          const s = set(l, d);
          return s === null ? null : s.includes(name) ? 'yes' : 'no';
        }),
      ),
    ),
  }));
  const defined = perLabelAlpha.flatMap((p) => (p.alpha === null ? [] : [p.alpha]));
  const pairwise: PairKappa[] = [];
  for (let a = 0; a < names.length; a++) {
    for (let b = a + 1; b < names.length; b++) {
      let both = 0;
      for (let d = 0; d < documents; d++) if (set(a, d) !== null && set(b, d) !== null) both++;
      pairwise.push({ a: names[a] as string, b: names[b] as string, documents: both, kappa: null });
    }
  }
  return {
    question: question.name,
    labellers: names,
    documents,
    completeDocuments: complete,
    fleissKappa: null,
    krippendorffAlpha: {
      level: 'nominal',
      value: defined.length === 0 ? null : defined.reduce((x, y) => x + y, 0) / defined.length,
    },
    pairwiseCohenKappa: pairwise,
    disagreements,
    errors: errorCounts(names, proposals),
    perLabelAlpha,
  };
}
