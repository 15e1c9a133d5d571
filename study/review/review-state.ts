// What the decisions add up to: each reviewer's queue and progress, the overlap documents whose two coders disagree
// (the adjudicators' queue), and the verified labels per document that `rescale review export` writes.

import type { CrowdFolder } from './crowd-folder.js';
import type { CurrentDecision, Reviewer, ReviewStore } from './review-store.js';

export interface QueueItem {
  readonly document: string;
  readonly position: number;
  /** Every question has a decision of this reviewer in force. */
  readonly done: boolean;
}

export interface ReviewerProgress {
  readonly name: string;
  readonly role: Reviewer['role'];
  readonly assigned: number;
  readonly done: number;
}

export interface GoldRow {
  readonly id: string;
  readonly text: string;
  /** Per question: the verified labels, or null (rejected, unresolved disagreement, or not reviewed). */
  readonly labels: ReadonlyMap<string, readonly string[] | null>;
  readonly reviewers: number;
  readonly adjudicated: boolean;
}

type ByDocument = Map<string, Map<number, Map<string, CurrentDecision>>>;

/** Decisions in force: document → reviewer id → question → decision. */
function decisionsByDocument(store: ReviewStore): ByDocument {
  const out: ByDocument = new Map();
  for (const d of store.current()) {
    const perReviewer = out.get(d.document) ?? new Map<number, Map<string, CurrentDecision>>();
    const perQuestion = perReviewer.get(d.reviewerId) ?? new Map<string, CurrentDecision>();
    perQuestion.set(d.question, d);
    perReviewer.set(d.reviewerId, perQuestion);
    out.set(d.document, perReviewer);
  }
  return out;
}

function complete(crowd: CrowdFolder, decisions: ReadonlyMap<string, CurrentDecision> | undefined): boolean {
  return decisions !== undefined && crowd.questions.every((q) => decisions.has(q.name));
}

const same = (a: readonly string[] | null, b: readonly string[] | null): boolean =>
  JSON.stringify(a === null ? null : [...a].sort()) === JSON.stringify(b === null ? null : [...b].sort());

/** A snapshot of the review: computed per request from the decision log (small: one row per decision). */
export class ReviewState {
  private readonly byDocument: ByDocument;
  private readonly coders: ReadonlyMap<string, readonly number[]>;
  private readonly reviewers: readonly Reviewer[];

  constructor(
    private readonly store: ReviewStore,
    private readonly crowd: CrowdFolder,
  ) {
    this.byDocument = decisionsByDocument(store);
    const coders = new Map<string, number[]>();
    for (const a of store.allAssignments()) coders.set(a.document, [...(coders.get(a.document) ?? []), a.reviewerId]);
    this.coders = coders;
    this.reviewers = store.reviewers();
  }

  /** Overlap documents both coders finished with different verified labels on some question, in sample order. */
  disagreements(): string[] {
    return this.crowd.documents
      .map((d) => d.id)
      .filter((id) => {
        const coders = this.coders.get(id) ?? [];
        if (coders.length < 2) return false;
        const [a, b] = coders.map((c) => this.byDocument.get(id)?.get(c));
        if (!complete(this.crowd, a) || !complete(this.crowd, b)) return false;
        return this.crowd.questions.some(
          (q) => !same(a?.get(q.name)?.verified ?? null, b?.get(q.name)?.verified ?? null),
        );
      });
  }

  /** The documents a reviewer may open: a coder's assignments; for an adjudicator, the disagreements. */
  queue(reviewer: Reviewer): QueueItem[] {
    const done = (document: string): boolean => complete(this.crowd, this.byDocument.get(document)?.get(reviewer.id));
    if (reviewer.role === 'coder')
      return this.store.assignments(reviewer.id).map((a) => ({ ...a, done: done(a.document) }));
    const open = new Set(this.disagreements());
    // Documents adjudicated before stay visible even if a coder's undo later resolved the disagreement.
    for (const [document, perReviewer] of this.byDocument) if (perReviewer.has(reviewer.id)) open.add(document);
    return this.crowd.documents
      .map((d, position) => ({ document: d.id, position, done: done(d.id) }))
      .filter((item) => open.has(item.document));
  }

  canSee(reviewer: Reviewer, document: string): boolean {
    if (reviewer.role === 'coder') return this.store.isAssigned(reviewer.id, document);
    return this.queue(reviewer).some((q) => q.document === document);
  }

  /** The reviewer's decisions in force on one document, by question. */
  decisionsOf(reviewerId: number, document: string): ReadonlyMap<string, CurrentDecision> {
    return this.byDocument.get(document)?.get(reviewerId) ?? new Map();
  }

  /** The coders' decisions on a document, for the adjudicator's page. */
  coderDecisions(document: string): { reviewer: Reviewer; decisions: ReadonlyMap<string, CurrentDecision> }[] {
    return (this.coders.get(document) ?? []).map((id) => ({
      reviewer: this.reviewers.find((r) => r.id === id) as Reviewer,
      decisions: this.decisionsOf(id, document),
    }));
  }

  progress(): ReviewerProgress[] {
    return this.reviewers.map((r) => {
      const queue = this.queue(r);
      return { name: r.name, role: r.role, assigned: queue.length, done: queue.filter((q) => q.done).length };
    });
  }

  /**
   * Verified labels of every document someone reviewed: an adjudicator's decision first; else the coders' when all
   * who finished agree; else null (an open disagreement).
   */
  gold(): GoldRow[] {
    const adjudicators = new Set(this.reviewers.filter((r) => r.role === 'adjudicator').map((r) => r.id));
    const rows: GoldRow[] = [];
    for (const doc of this.crowd.documents) {
      const perReviewer = this.byDocument.get(doc.id);
      if (perReviewer === undefined || perReviewer.size === 0) continue;
      const adjudicated = [...perReviewer.keys()].some((id) => adjudicators.has(id));
      const labels = new Map<string, readonly string[] | null>();
      for (const q of this.crowd.questions) {
        const judged = [...perReviewer.entries()]
          .filter(([, decisions]) => decisions.has(q.name))
          .map(([id, decisions]) => ({ id, decision: decisions.get(q.name) as CurrentDecision }));
        const adjudication = judged.filter((j) => adjudicators.has(j.id)).at(-1);
        const coders = judged.filter((j) => !adjudicators.has(j.id)).map((j) => j.decision.verified);
        let verified: readonly string[] | null = null;
        if (adjudication !== undefined) verified = adjudication.decision.verified;
        else if (coders.length > 0 && coders.every((c) => same(c, coders[0] ?? null))) verified = coders[0] ?? null;
        labels.set(q.name, verified);
      }
      rows.push({ id: doc.id, text: doc.text, labels, reviewers: perReviewer.size, adjudicated });
    }
    return rows;
  }
}
