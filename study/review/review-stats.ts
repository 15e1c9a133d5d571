// `rescale review stats`: what the decisions say about the crowd — how often each labeller's proposals were accepted,
// how well each labeller matches the verified labels, how reliably two coders agree, and how long a decision takes.

import { cohenKappa } from '../evaluation/agreement-metrics.js';
import { krippendorffAlpha } from '../evaluation/krippendorff-alpha.js';
import type { CrowdFolder, CrowdQuestion } from './crowd-folder.js';
import { ReviewState } from './review-state.js';
import type { CurrentDecision, ReviewStore } from './review-store.js';

/** Longer pauses between two decisions of one reviewer count as breaks, not as time spent deciding. */
export const BREAK_SECONDS = 600;

/** Value of a rejection in the inter-coder comparison: two coders who both reject agree. */
export const REJECTED = '(rejected)';
/** The key of an empty label set (a multi-label proposal of no label). */
export const NO_LABEL = '(none)';

export interface Rate {
  readonly accepted: number;
  readonly reviewed: number;
  /** accepted ÷ reviewed; null when nothing was reviewed. */
  readonly rate: number | null;
}

export interface LabellerAcceptance extends Rate {
  readonly labeller: string;
  /** Per question and proposed label (a multi-label proposal counts towards each of its labels). */
  readonly byLabel: readonly LabelAcceptance[];
}

export interface LabellerAgreement {
  readonly labeller: string;
  /** Documents with a verified label and a proposal of this labeller that did not fail. */
  readonly n: number;
  readonly accuracy: number | null;
  /** Cohen's kappa; null when undefined (no documents, or chance agreement is total). */
  readonly kappa: number | null;
  /** Proposals left out because the labeller failed on the document. */
  readonly failed: number;
}

export interface QuestionAgreement {
  readonly question: string;
  /** Documents with a verified label for the question. */
  readonly verified: number;
  readonly labellers: readonly LabellerAgreement[];
  /** The labeller with the highest accuracy (then kappa, then name); null when none has a document. */
  readonly closest: string | null;
}

export interface CoderPair {
  /** The two coders' names, in reviewer order. */
  readonly coders: readonly [string, string];
  /** Overlap documents both decided for the question. */
  readonly n: number;
  readonly agreement: number | null;
  /** Cohen's kappa of the pair; null when undefined (n = 0, or chance agreement is total). */
  readonly kappa: number | null;
}

export interface Reliability {
  readonly question: string;
  /** Overlap documents both coders decided for this question. */
  readonly n: number;
  readonly agreement: number | null;
  /** Krippendorff's alpha, nominal; null when undefined (n = 0 or every value the same). */
  readonly alpha: number | null;
  /** Each pair of coders that shares overlap documents (Cohen's kappa needs the same two raters throughout). */
  readonly pairs: readonly CoderPair[];
}

export type LabelAcceptance = Rate & { readonly question: string; readonly label: string };

export interface DecisionTime {
  readonly reviewer: string;
  readonly decisions: number;
  /** Gaps between consecutive decisions that count (at most BREAK_SECONDS). */
  readonly gaps: number;
  readonly breaks: number;
  readonly medianSeconds: number | null;
  readonly p90Seconds: number | null;
}

export interface ReviewSummary {
  readonly documents: number;
  /** Documents with at least one decision in force. */
  readonly reviewed: number;
  /** Documents assigned to two coders. */
  readonly overlap: number;
  readonly decisions: number;
  readonly coders: number;
  readonly adjudicators: number;
}

export interface ReviewStats {
  readonly summary: ReviewSummary;
  readonly acceptance: readonly LabellerAcceptance[];
  /** Per question and proposed label, all labellers together. */
  readonly acceptanceByLabel: readonly LabelAcceptance[];
  readonly agreement: readonly QuestionAgreement[];
  readonly reliability: readonly Reliability[];
  readonly time: {
    readonly breakSeconds: number;
    readonly reviewers: readonly DecisionTime[];
    /** Every reviewer's gaps pooled (reviewer "(all)"). */
    readonly all: DecisionTime;
  };
}

const setKey = (labels: readonly string[]): string => (labels.length === 0 ? NO_LABEL : [...labels].sort().join('+'));

const finite = (x: number): number | null => (Number.isFinite(x) ? x : null);

function rate(accepted: number, reviewed: number): Rate {
  return { accepted, reviewed, rate: reviewed === 0 ? null : accepted / reviewed };
}

/** Linear interpolation between order statistics (numpy's default); null for no values. */
export function quantile(values: readonly number[], q: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const low = sorted[lo] as number;
  const high = sorted[Math.min(lo + 1, sorted.length - 1)] as number;
  return low + (h - lo) * (high - low);
}

/** Plain code-unit order (as Array.prototype.sort): the same on every machine, unlike a locale's collation. */
function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A proposal is reviewed once per decision in force on its document and question (coders and adjudicators alike)
 * and accepted when that decision verifies exactly its labels (an accept, or a pick of the same labels). Failed
 * proposals are left out.
 */
function acceptance(crowd: CrowdFolder, decisions: readonly CurrentDecision[]): LabellerAcceptance[] {
  const total = new Map<string, { accepted: number; reviewed: number }>();
  const byLabel = new Map<
    string,
    Map<string, { question: string; label: string; accepted: number; reviewed: number }>
  >();
  for (const d of decisions) {
    const proposals = crowd.byId.get(d.document)?.proposals.get(d.question) ?? [];
    const verified = d.verified === null ? null : setKey(d.verified);
    for (const p of proposals) {
      if (p.error !== null) continue;
      const accepted = verified !== null && verified === setKey(p.labels) ? 1 : 0;
      const t = total.get(p.labeller) ?? { accepted: 0, reviewed: 0 };
      t.accepted += accepted;
      t.reviewed += 1;
      total.set(p.labeller, t);
      const perLabel = byLabel.get(p.labeller) ?? new Map();
      for (const label of p.labels.length === 0 ? [NO_LABEL] : p.labels) {
        const key = JSON.stringify([d.question, label]);
        const l = perLabel.get(key) ?? { question: d.question, label, accepted: 0, reviewed: 0 };
        l.accepted += accepted;
        l.reviewed += 1;
        perLabel.set(key, l);
      }
      byLabel.set(p.labeller, perLabel);
    }
  }
  return [...total.keys()].sort().map((labeller) => {
    const t = total.get(labeller) as { accepted: number; reviewed: number };
    const labels = [...(byLabel.get(labeller)?.values() ?? [])].sort(
      (a, b) => byCodeUnit(a.question, b.question) || byCodeUnit(a.label, b.label),
    );
    return {
      labeller,
      ...rate(t.accepted, t.reviewed),
      byLabel: labels.map((l) => ({ question: l.question, label: l.label, ...rate(l.accepted, l.reviewed) })),
    };
  });
}

/** The per-labeller label rows summed over labellers. */
function acceptanceByLabel(acceptance: readonly LabellerAcceptance[]): LabelAcceptance[] {
  const sums = new Map<string, { question: string; label: string; accepted: number; reviewed: number }>();
  for (const a of acceptance)
    for (const l of a.byLabel) {
      const key = JSON.stringify([l.question, l.label]);
      const sum = sums.get(key) ?? { question: l.question, label: l.label, accepted: 0, reviewed: 0 };
      sum.accepted += l.accepted;
      sum.reviewed += l.reviewed;
      sums.set(key, sum);
    }
  return [...sums.values()]
    .sort((a, b) => byCodeUnit(a.question, b.question) || byCodeUnit(a.label, b.label))
    .map((l) => ({ question: l.question, label: l.label, ...rate(l.accepted, l.reviewed) }));
}

/** Each labeller against the verified labels; a multi-label question compares whole label sets as categories. */
function agreement(crowd: CrowdFolder, state: ReviewState, labellers: readonly string[]): QuestionAgreement[] {
  const gold = state.gold();
  return crowd.questions.map((q: CrowdQuestion) => {
    const pairs = new Map<string, { verified: string[]; proposed: string[]; failed: number }>(
      labellers.map((l) => [l, { verified: [], proposed: [], failed: 0 }]),
    );
    let verifiedCount = 0;
    for (const row of gold) {
      const verified = row.labels.get(q.name) ?? null;
      if (verified === null) continue;
      verifiedCount++;
      for (const p of crowd.byId.get(row.id)?.proposals.get(q.name) ?? []) {
        const pair = pairs.get(p.labeller);
        if (pair === undefined) continue;
        if (p.error !== null) pair.failed++;
        else {
          pair.verified.push(setKey(verified));
          pair.proposed.push(setKey(p.labels));
        }
      }
    }
    const rows: LabellerAgreement[] = labellers.map((labeller) => {
      const { verified, proposed, failed } = pairs.get(labeller) as {
        verified: string[];
        proposed: string[];
        failed: number;
      };
      const n = verified.length;
      if (n === 0) return { labeller, n, accuracy: null, kappa: null, failed };
      const categories = [...new Set([...verified, ...proposed])].sort();
      const agreeing = verified.filter((v, i) => v === proposed[i]).length;
      return { labeller, n, accuracy: agreeing / n, kappa: finite(cohenKappa(verified, proposed, categories)), failed };
    });
    const ranked = rows
      .filter((r) => r.accuracy !== null)
      .sort(
        (a, b) =>
          (b.accuracy as number) - (a.accuracy as number) ||
          (b.kappa ?? -Infinity) - (a.kappa ?? -Infinity) ||
          byCodeUnit(a.labeller, b.labeller),
      );
    return { question: q.name, verified: verifiedCount, labellers: rows, closest: ranked[0]?.labeller ?? null };
  });
}

/** The two coders of each overlap document, per question: their verified label sets (a rejection is a value). */
function reliability(crowd: CrowdFolder, store: ReviewStore, state: ReviewState): Reliability[] {
  const coders = new Map<string, number[]>();
  for (const a of store.allAssignments())
    if (a.overlap) coders.set(a.document, [...(coders.get(a.document) ?? []), a.reviewerId]);
  const names = new Map(store.reviewers().map((r) => [r.id, r.name]));
  const agreeing = (a: readonly string[], b: readonly string[]): number => a.filter((v, i) => v === b[i]).length;
  return crowd.questions.map((q) => {
    const first: string[] = [];
    const second: string[] = [];
    // Per pair of coders (lower reviewer id first): their values on the documents they share.
    const pairs = new Map<string, { ids: [number, number]; a: string[]; b: string[] }>();
    for (const [document, ids] of coders) {
      const values = ids.map((id) => state.decisionsOf(id, document).get(q.name));
      const [a, b] = values;
      if (values.length !== 2 || a === undefined || b === undefined) continue;
      const va = a.verified === null ? REJECTED : setKey(a.verified);
      const vb = b.verified === null ? REJECTED : setKey(b.verified);
      first.push(va);
      second.push(vb);
      const [ida, idb] = ids as [number, number];
      const swap = ida > idb;
      const key = swap ? `${idb},${ida}` : `${ida},${idb}`;
      const pair = pairs.get(key) ?? { ids: swap ? [idb, ida] : [ida, idb], a: [], b: [] };
      pair.a.push(swap ? vb : va);
      pair.b.push(swap ? va : vb);
      pairs.set(key, pair);
    }
    const pairRows: CoderPair[] = [...pairs.values()]
      .sort((x, y) => x.ids[0] - y.ids[0] || x.ids[1] - y.ids[1])
      .map((p) => ({
        coders: [names.get(p.ids[0]) ?? String(p.ids[0]), names.get(p.ids[1]) ?? String(p.ids[1])],
        n: p.a.length,
        agreement: agreeing(p.a, p.b) / p.a.length,
        kappa: finite(cohenKappa(p.a, p.b, [...new Set([...p.a, ...p.b])].sort())),
      }));
    const n = first.length;
    if (n === 0) return { question: q.name, n, agreement: null, alpha: null, pairs: pairRows };
    return {
      question: q.name,
      n,
      agreement: agreeing(first, second) / n,
      alpha: finite(krippendorffAlpha([first, second], { level: 'nominal' }).alpha),
      pairs: pairRows,
    };
  });
}

/** Seconds between a reviewer's consecutive decision rows (undos left out; replaced decisions took time too). */
function decisionTimes(store: ReviewStore): { reviewers: DecisionTime[]; all: DecisionTime } {
  const rows = store.history().filter((h) => h.decision !== 'undo');
  const pooled: number[] = [];
  let pooledBreaks = 0;
  const reviewers = store.reviewers().map((r) => {
    const times = rows.filter((h) => h.reviewerId === r.id).map((h) => Date.parse(h.at) / 1000);
    const gaps: number[] = [];
    let breaks = 0;
    for (let i = 1; i < times.length; i++) {
      const gap = (times[i] as number) - (times[i - 1] as number);
      if (gap > BREAK_SECONDS) breaks++;
      else gaps.push(gap);
    }
    pooled.push(...gaps);
    pooledBreaks += breaks;
    return {
      reviewer: r.name,
      decisions: times.length,
      gaps: gaps.length,
      breaks,
      medianSeconds: quantile(gaps, 0.5),
      p90Seconds: quantile(gaps, 0.9),
    };
  });
  const all: DecisionTime = {
    reviewer: '(all)',
    decisions: rows.length,
    gaps: pooled.length,
    breaks: pooledBreaks,
    medianSeconds: quantile(pooled, 0.5),
    p90Seconds: quantile(pooled, 0.9),
  };
  return { reviewers, all };
}

export function reviewStats(crowd: CrowdFolder, store: ReviewStore): ReviewStats {
  const state = new ReviewState(store, crowd);
  const labellers = [
    ...new Set(crowd.documents.flatMap((d) => [...d.proposals.values()].flatMap((ps) => ps.map((p) => p.labeller)))),
  ].sort();
  const current = store.current();
  const reviewers = store.reviewers();
  const assignments = store.allAssignments();
  const perLabeller = acceptance(crowd, current);
  return {
    summary: {
      documents: crowd.documents.length,
      reviewed: new Set(current.map((d) => d.document)).size,
      overlap: new Set(assignments.filter((a) => a.overlap).map((a) => a.document)).size,
      decisions: current.length,
      coders: reviewers.filter((r) => r.role === 'coder').length,
      adjudicators: reviewers.filter((r) => r.role === 'adjudicator').length,
    },
    acceptance: perLabeller,
    acceptanceByLabel: acceptanceByLabel(perLabeller),
    agreement: agreement(crowd, state, labellers),
    reliability: reliability(crowd, store, state),
    time: { breakSeconds: BREAK_SECONDS, ...decisionTimes(store) },
  };
}

const fixed = (x: number | null, digits = 3): string => (x === null ? '-' : x.toFixed(digits));

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  // Figures right-aligned, names left-aligned.
  const numeric = header.map((_, i) => rows.every((r) => /^(-?[\d.]+|-)$/.test(r[i] ?? '')));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (numeric[i] === true ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].map((l) => `  ${l}\n`).join('');
}

/**
 * The labellers against the verified labels, a row per question and labeller: question, labeller, documents,
 * accuracy, kappa (each written by `figure`), failed proposals, and `closestMark` on the question's closest labeller.
 */
export function agreementRows(
  agreement: readonly QuestionAgreement[],
  figure: (x: number | null) => string,
  closestMark: string,
): string[][] {
  return agreement.flatMap((q) =>
    q.labellers.map((l) => [
      q.question,
      l.labeller,
      String(l.n),
      figure(l.accuracy),
      figure(l.kappa),
      String(l.failed),
      l.labeller === q.closest ? closestMark : '',
    ]),
  );
}

/** The stats as plain-text tables for a terminal. */
export function formatReviewStats(stats: ReviewStats): string {
  const s = stats.summary;
  let out =
    `${s.reviewed} of ${s.documents} documents reviewed (${s.overlap} assigned to two coders); ${s.decisions} ` +
    `decisions in force by ${s.coders} coders and ${s.adjudicators} adjudicators\n\n`;
  out += 'Acceptance (accepted ÷ reviewed proposals; one review per decision in force, failed proposals left out)\n';
  out += table(
    ['labeller', 'question', 'label', 'accepted', 'reviewed', 'rate'],
    [
      ...stats.acceptance.flatMap((a) => [
        [a.labeller, '(all)', '(all)', String(a.accepted), String(a.reviewed), fixed(a.rate)],
        ...a.byLabel.map((l) => [
          a.labeller,
          l.question,
          l.label,
          String(l.accepted),
          String(l.reviewed),
          fixed(l.rate),
        ]),
      ]),
      ...stats.acceptanceByLabel.map((l) => [
        '(all)',
        l.question,
        l.label,
        String(l.accepted),
        String(l.reviewed),
        fixed(l.rate),
      ]),
    ],
  );
  out += '\nAgreement with the verified labels (documents with a verified label; failed proposals left out)\n';
  out += table(
    ['question', 'labeller', 'n', 'accuracy', 'kappa', 'failed', 'closest'],
    agreementRows(stats.agreement, fixed, '*'),
  );
  out +=
    "\nInter-coder reliability on the overlap documents (Krippendorff's alpha, nominal, over all pairs; Cohen's " +
    'kappa per pair of coders; a rejection is a value)\n';
  out += table(
    ['question', 'coders', 'n', 'agreement', 'alpha', 'kappa'],
    stats.reliability.flatMap((r) => [
      [r.question, '(all)', String(r.n), fixed(r.agreement), fixed(r.alpha), '-'],
      ...r.pairs.map((p) => [r.question, p.coders.join(' & '), String(p.n), fixed(p.agreement), '-', fixed(p.kappa)]),
    ]),
  );
  out += `\nSeconds per decision (gaps over ${stats.time.breakSeconds} s between decisions are breaks, left out)\n`;
  out += table(
    ['reviewer', 'decisions', 'gaps', 'breaks', 'median', 'p90'],
    [...stats.time.reviewers, stats.time.all].map((t) => [
      t.reviewer,
      String(t.decisions),
      String(t.gaps),
      String(t.breaks),
      fixed(t.medianSeconds, 1),
      fixed(t.p90Seconds, 1),
    ]),
  );
  return out;
}
