// Agreement among a crowd's labellers, per question: Fleiss' kappa over the documents every labeller labelled,
// Krippendorff's alpha over all proposals (nominal; ordinal for an ordered question), Cohen's kappa for each pair
// on the documents both labelled, and the documents on which the labellers who answered disagree.

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
}

const finite = (x: number): number | null => (Number.isFinite(x) ? x : null);

/** `proposals[l][d]`: labeller l's proposal for document d, labellers in `names` order. */
export function questionAgreement(
  question: Question,
  names: readonly string[],
  proposals: readonly (readonly Proposal[])[],
): QuestionAgreement {
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
  const errors: Record<string, number> = {};
  names.forEach((name, l) => {
    errors[name] = (proposals[l] ?? []).filter((p) => p.error !== null).length;
  });
  return {
    question: question.name,
    labellers: names,
    documents,
    completeDocuments: counts.length,
    fleissKappa: fleiss,
    krippendorffAlpha: { level, value: alpha },
    pairwiseCohenKappa: pairwise,
    disagreements,
    errors,
  };
}
