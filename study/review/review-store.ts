// The review database (SQLite through better-sqlite3, chosen by scripts/bench-review-storage.ts): reviewers and
// their hashed tokens, sessions, assignments, and every decision as an append-only row from which the current state
// is derived. Each write is one transaction; a repeated form post carries the same key and records nothing twice.

import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { RescaleError, errorMessage } from '../../contracts/errors.js';
import { assertSeed, createSeededRandom, shuffled } from '../evaluation/seeded-random.js';

export type Role = 'coder' | 'adjudicator';
export type DecisionKind = 'accept' | 'reject' | 'pick';

export interface Reviewer {
  readonly id: number;
  readonly name: string;
  readonly role: Role;
}

export interface Assignment {
  readonly document: string;
  /** The document's row in the crowd folder: pages list documents in sample order. */
  readonly position: number;
  /** Whether a second coder has the document too. */
  readonly overlap: boolean;
}

export interface DecisionInput {
  readonly reviewerId: number;
  /** Chosen by the page that rendered the form, so a repeated post of that form is recognised. */
  readonly key: string;
  readonly document: string;
  readonly question: string;
  readonly decision: DecisionKind;
  /** accept/reject: the proposal's labels; pick: the labels the reviewer chose. */
  readonly labels: readonly string[];
}

/** The decision in force for one reviewer, document and question. */
export interface CurrentDecision {
  readonly id: number;
  readonly reviewerId: number;
  readonly document: string;
  readonly question: string;
  readonly decision: DecisionKind;
  readonly labels: readonly string[];
  /** The labels this decision verifies: the accepted or picked ones; null for a rejection. */
  readonly verified: readonly string[] | null;
  readonly at: string;
}

/** One row of the decision log, as written. */
export interface HistoryRow {
  readonly id: number;
  readonly reviewerId: number;
  /** ISO 8601 time the row was written. */
  readonly at: string;
  readonly document: string;
  readonly question: string;
  readonly decision: DecisionKind | 'undo';
  /** A decision: the one it replaced; an undo: the decision it withdrew. */
  readonly previousId: number | null;
}

export interface Recorded {
  readonly id: number;
  /** False when the key had been recorded before (a repeated post). */
  readonly recorded: boolean;
  readonly document: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS reviewers (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL CHECK (role IN ('coder', 'adjudicator')),
  token_sha256 TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
  id_sha256 TEXT PRIMARY KEY,
  reviewer_id INTEGER NOT NULL REFERENCES reviewers (id),
  csrf TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
  document TEXT NOT NULL,
  reviewer_id INTEGER NOT NULL REFERENCES reviewers (id),
  position INTEGER NOT NULL,
  overlap INTEGER NOT NULL,
  PRIMARY KEY (document, reviewer_id)
);
-- previous_id: for a decision, the one it replaces (null if none); for an undo, the decision it withdraws.
CREATE TABLE IF NOT EXISTS decisions (
  id INTEGER PRIMARY KEY,
  reviewer_id INTEGER NOT NULL REFERENCES reviewers (id),
  at TEXT NOT NULL,
  document TEXT NOT NULL,
  question TEXT NOT NULL,
  decision TEXT NOT NULL CHECK (decision IN ('accept', 'reject', 'pick', 'undo')),
  labels TEXT,
  previous_id INTEGER REFERENCES decisions (id),
  key TEXT NOT NULL,
  UNIQUE (reviewer_id, key)
);
CREATE INDEX IF NOT EXISTS decisions_by_item ON decisions (reviewer_id, document, question, id);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
  BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
  BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
`;

// The newest row per (reviewer, document, question) decides; an undo there reinstates what the withdrawn decision
// had replaced (null: nothing, the item is open again).
const CURRENT = `
WITH latest AS (
  SELECT reviewer_id, document, question, MAX(id) AS id FROM decisions WHERE %FILTER% GROUP BY 1, 2, 3
)
SELECT e.id, e.reviewer_id AS reviewerId, e.document, e.question, e.decision, e.labels, e.at
FROM latest l
JOIN decisions d ON d.id = l.id
LEFT JOIN decisions u ON d.decision = 'undo' AND u.id = d.previous_id
JOIN decisions e ON e.id = CASE WHEN d.decision = 'undo' THEN u.previous_id ELSE d.id END
ORDER BY e.id`;

interface CurrentRow {
  id: number;
  reviewerId: number;
  document: string;
  question: string;
  decision: DecisionKind;
  labels: string;
  at: string;
}

function sha256(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

function toCurrent(row: CurrentRow): CurrentDecision {
  const labels = JSON.parse(row.labels) as string[];
  return { ...row, labels, verified: row.decision === 'reject' ? null : labels };
}

export class ReviewStore {
  private constructor(
    private readonly db: Database.Database,
    readonly file: string,
  ) {}

  /**
   * Opens the database, creating it when absent; with `mustExist` (commands that only read a review) a missing file
   * or one that is not a review database is an error. `option` names where the path came from for errors.
   */
  static open(file: string, option = '--db', settings: { mustExist?: boolean } = {}): ReviewStore {
    const absolute = path.resolve(file);
    if (settings.mustExist === true) {
      if (!existsSync(absolute))
        throw new RescaleError(
          'INPUT_NOT_FOUND',
          `${option} ${absolute} does not exist; pass the review database written by "rescale review" ` +
            '(add-reviewer, assign, serve)',
        );
      if (statSync(absolute).isDirectory())
        throw new RescaleError(
          'INPUT_INVALID',
          `${option} ${absolute} is a folder; pass the review database file (e.g. review.db)`,
        );
    }
    let db: Database.Database | undefined;
    try {
      mkdirSync(path.dirname(absolute), { recursive: true });
      db = new Database(absolute, { fileMustExist: settings.mustExist === true });
      if (settings.mustExist === true) {
        const tables = db
          .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('reviewers', 'decisions')")
          .all();
        if (tables.length !== 2)
          throw new RescaleError(
            'INPUT_INVALID',
            `${option} ${absolute} is an SQLite file but not a review database (it has no reviewers and decisions ` +
              'tables); pass the file written by "rescale review"',
          );
      }
      db.pragma('journal_mode = WAL');
      // WAL with synchronous=FULL: a committed decision survives a killed server and a power cut alike.
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
      db.exec(SCHEMA);
    } catch (cause) {
      if (db?.open === true) db.close();
      if (cause instanceof RescaleError) throw cause;
      throw new RescaleError(
        settings.mustExist === true ? 'INPUT_INVALID' : 'OUTPUT_NOT_WRITABLE',
        `${option} ${absolute}: cannot open it as the review database (${errorMessage(cause)}); pass a file you can ` +
          'write, or one written by "rescale review"',
        { cause },
      );
    }
    return new ReviewStore(db, absolute);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** Adds a reviewer; the token is returned once and only its hash is kept. */
  addReviewer(name: string, role: Role): { reviewer: Reviewer; token: string } {
    if (!/^[\p{L}\p{N}._-]{1,64}$/u.test(name))
      throw new RescaleError(
        'CONFIG_INVALID',
        `reviewer name "${name}" must be 1-64 letters, digits, dots, dashes or underscores`,
      );
    const token = randomBytes(32).toString('base64url');
    try {
      const info = this.db
        .prepare('INSERT INTO reviewers (name, role, token_sha256, created_at) VALUES (?, ?, ?, ?)')
        .run(name, role, sha256(token), new Date().toISOString());
      return { reviewer: { id: Number(info.lastInsertRowid), name, role }, token };
    } catch (cause) {
      if ((cause as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE')
        throw new RescaleError(
          'CONFIG_INVALID',
          `a reviewer named "${name}" exists already in ${this.file}; choose another name`,
        );
      throw cause;
    }
  }

  reviewers(): Reviewer[] {
    return this.db.prepare('SELECT id, name, role FROM reviewers ORDER BY id').all() as Reviewer[];
  }

  reviewerByToken(token: string): Reviewer | null {
    const row = this.db.prepare('SELECT id, name, role FROM reviewers WHERE token_sha256 = ?').get(sha256(token));
    return (row as Reviewer | undefined) ?? null;
  }

  /** A new session: the cookie value (only its hash is stored) and the token every form must echo. */
  createSession(reviewerId: number): { sessionId: string; csrf: string } {
    const sessionId = randomBytes(32).toString('base64url');
    const csrf = randomBytes(32).toString('base64url');
    this.db
      .prepare('INSERT INTO sessions (id_sha256, reviewer_id, csrf, created_at) VALUES (?, ?, ?, ?)')
      .run(sha256(sessionId), reviewerId, csrf, new Date().toISOString());
    return { sessionId, csrf };
  }

  session(sessionId: string): { reviewer: Reviewer; csrf: string } | null {
    const row = this.db
      .prepare(
        'SELECT r.id, r.name, r.role, s.csrf FROM sessions s JOIN reviewers r ON r.id = s.reviewer_id ' +
          'WHERE s.id_sha256 = ?',
      )
      .get(sha256(sessionId)) as (Reviewer & { csrf: string }) | undefined;
    if (row === undefined) return null;
    return { reviewer: { id: row.id, name: row.name, role: row.role }, csrf: row.csrf };
  }

  endSession(sessionId: string): void {
    this.db.prepare('DELETE FROM sessions WHERE id_sha256 = ?').run(sha256(sessionId));
  }

  /**
   * Gives every document to one coder and a seeded share `overlap` of them to a second one, round-robin over a
   * seeded shuffle so coders get equal loads. Same documents, coders and seed: same assignment.
   */
  assign(documents: readonly string[], overlap: number, seed: number): { documents: number; overlapping: number } {
    if (!(overlap >= 0 && overlap <= 1))
      throw new RescaleError('CONFIG_INVALID', `--overlap must be a share between 0 and 1, got ${overlap}`);
    assertSeed(seed, '--seed');
    const coders = this.reviewers().filter((r) => r.role === 'coder');
    if (coders.length === 0)
      throw new RescaleError(
        'CONFIG_INVALID',
        'no coders yet; add them with "rescale review add-reviewer NAME --role coder"',
      );
    const overlapping = Math.round(overlap * documents.length);
    if (overlapping > 0 && coders.length < 2)
      throw new RescaleError(
        'CONFIG_INVALID',
        `--overlap ${overlap} needs at least two coders; add another or pass --overlap 0`,
      );
    const decided = this.db.prepare('SELECT COUNT(*) AS n FROM decisions').get() as { n: number };
    if (decided.n > 0)
      throw new RescaleError(
        'RUN_CONFLICT',
        `${this.file} already holds ${decided.n} decisions; assignments are fixed once reviewing starts ` +
          '(use a new --db ' +
          'for a new assignment)',
      );
    const position = new Map(documents.map((d, i) => [d, i]));
    const order = shuffled(documents, createSeededRandom(seed));
    const k = coders.length;
    const insert = this.db.prepare(
      'INSERT INTO assignments (document, reviewer_id, position, overlap) VALUES (?, ?, ?, ?)',
    );
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM assignments').run();
      order.forEach((document, i) => {
        const first = i % k;
        const both = i < overlapping;
        insert.run(document, (coders[first] as Reviewer).id, position.get(document), both ? 1 : 0);
        if (both) {
          // Rotating the partner by round spreads the overlap over every pair of coders.
          const second = (first + 1 + (Math.floor(i / k) % (k - 1))) % k;
          insert.run(document, (coders[second] as Reviewer).id, position.get(document), 1);
        }
      });
    })();
    return { documents: documents.length, overlapping };
  }

  /** Every assignment, for all coders: [document, reviewer id]. */
  allAssignments(): { document: string; reviewerId: number; position: number; overlap: boolean }[] {
    return (
      this.db
        .prepare('SELECT document, reviewer_id, position, overlap FROM assignments ORDER BY position, reviewer_id')
        .all() as {
        document: string;
        reviewer_id: number;
        position: number;
        overlap: number;
      }[]
    ).map((r) => ({ document: r.document, reviewerId: r.reviewer_id, position: r.position, overlap: r.overlap === 1 }));
  }

  assignments(reviewerId: number): Assignment[] {
    return (
      this.db
        .prepare('SELECT document, position, overlap FROM assignments WHERE reviewer_id = ? ORDER BY position')
        .all(reviewerId) as { document: string; position: number; overlap: number }[]
    ).map((r) => ({ document: r.document, position: r.position, overlap: r.overlap === 1 }));
  }

  isAssigned(reviewerId: number, document: string): boolean {
    return (
      this.db.prepare('SELECT 1 FROM assignments WHERE reviewer_id = ? AND document = ?').get(reviewerId, document) !==
      undefined
    );
  }

  /** Appends one decision in a transaction; a key seen before returns the earlier row and writes nothing. */
  decide(input: DecisionInput): Recorded {
    const run = this.db.transaction((): Recorded => {
      const seen = this.byKey(input.reviewerId, input.key);
      if (seen !== null) return seen;
      const previous = this.current({
        reviewerId: input.reviewerId,
        document: input.document,
        question: input.question,
      })[0];
      const info = this.db
        .prepare(
          'INSERT INTO decisions (reviewer_id, at, document, question, decision, labels, previous_id, key) ' +
            'VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        )
        .run(
          input.reviewerId,
          new Date().toISOString(),
          input.document,
          input.question,
          input.decision,
          JSON.stringify(input.labels),
          previous?.id ?? null,
          input.key,
        );
      return { id: Number(info.lastInsertRowid), recorded: true, document: input.document };
    });
    return run.immediate();
  }

  /** Withdraws the reviewer's newest decision still in force; null when there is none. */
  undoLast(reviewerId: number, key: string): Recorded | null {
    const run = this.db.transaction((): Recorded | null => {
      const seen = this.byKey(reviewerId, key);
      if (seen !== null) return seen;
      const last = this.current({ reviewerId }).at(-1);
      if (last === undefined) return null;
      const info = this.db
        .prepare(
          'INSERT INTO decisions (reviewer_id, at, document, question, decision, labels, previous_id, key) ' +
            "VALUES (?, ?, ?, ?, 'undo', NULL, ?, ?)",
        )
        .run(reviewerId, new Date().toISOString(), last.document, last.question, last.id, key);
      return { id: Number(info.lastInsertRowid), recorded: true, document: last.document };
    });
    return run.immediate();
  }

  /** Decisions in force, oldest first, optionally for one reviewer and/or document and question. */
  current(filter: { reviewerId?: number; document?: string; question?: string } = {}): CurrentDecision[] {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (filter.reviewerId !== undefined) {
      where.push('reviewer_id = ?');
      params.push(filter.reviewerId);
    }
    if (filter.document !== undefined) {
      where.push('document = ?');
      params.push(filter.document);
    }
    if (filter.question !== undefined) {
      where.push('question = ?');
      params.push(filter.question);
    }
    const sql = CURRENT.replace('%FILTER%', where.length > 0 ? where.join(' AND ') : '1');
    return (this.db.prepare(sql).all(...params) as CurrentRow[]).map(toCurrent);
  }

  /** Every row ever written, oldest first (the audit trail). */
  history(): HistoryRow[] {
    return this.db
      .prepare(
        'SELECT id, reviewer_id AS reviewerId, at, document, question, decision, previous_id AS previousId ' +
          'FROM decisions ORDER BY id',
      )
      .all() as HistoryRow[];
  }

  private byKey(reviewerId: number, key: string): Recorded | null {
    const row = this.db
      .prepare('SELECT id, document FROM decisions WHERE reviewer_id = ? AND key = ?')
      .get(reviewerId, key) as { id: number; document: string } | undefined;
    return row === undefined ? null : { id: row.id, recorded: false, document: row.document };
  }
}
