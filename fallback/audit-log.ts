// The fallback audit: one JSON line per event, appended to `<output>.fallback-audit.jsonl` across runs. It is also
// the budget's ledger: a `reserve` line is on disk before its request is sent, so after a crash a request with no
// `call` line still counts at its worst-case cost. Never holds the API key or document text. This module is the
// file's only writer and only reader: the ledger, the Batch API's reservations and the study report all read it here.

import { open, readFile, type FileHandle } from 'node:fs/promises';
import { errorMessage, RescaleError } from '../contracts/errors.js';
import { toNanoUsd } from './budget.js';
import type { FailureKind } from './retry-policy.js';

interface AuditBase {
  readonly time: string;
  /** The document's id as text (ids of every type), its corpus row and shard. */
  readonly document_id: string | null;
  readonly row: number;
  readonly shard_id: string;
  readonly request_hash: string;
}

/** Written before a request is sent: the worst-case cost it may be billed. */
export interface ReserveRecord extends AuditBase {
  readonly event: 'reserve';
  readonly call_id: string;
  readonly attempt: number;
  readonly reserved_usd: number;
}

export type CallOutcome = 'label' | 'invalid_label' | FailureKind;

/** One HTTP request and what came of it. */
export interface CallRecord extends AuditBase {
  readonly event: 'call';
  readonly call_id: string;
  readonly attempt: number;
  readonly model: string;
  /** The model version the server reports having used, when it says. */
  readonly response_model: string | null;
  readonly outcome: CallOutcome;
  readonly http_status: number | null;
  readonly prompt_tokens: number | null;
  readonly completion_tokens: number | null;
  /** What the request counts against the budget: from usage, or the reservation when it may be billed unseen. */
  readonly cost_usd: number;
  readonly latency_ms: number;
  readonly retry_after_ms: number | null;
  readonly error: string | null;
  /** The reserved request was never sent (a batch the endpoint refused): it does not count against budget.requests. */
  readonly not_sent?: boolean;
}

/** A request answered from the cache: nothing sent, nothing paid. */
export interface CacheHitRecord extends AuditBase {
  readonly event: 'cache_hit';
  readonly model: string;
  readonly response_model: string | null;
  readonly outcome: 'label' | 'invalid_label';
  readonly prompt_tokens: number | null;
  readonly completion_tokens: number | null;
  readonly cost_usd: 0;
}

/** A routed document no request was sent for (budget reached, or offline replay without a cached answer). */
export interface SkippedRecord extends AuditBase {
  readonly event: 'skipped';
  readonly model: string;
  readonly outcome: 'over_budget';
}

export type AuditRecord = ReserveRecord | CallRecord | CacheHitRecord | SkippedRecord;

/**
 * A line as read back: lines written by older versions may lack fields, so every field is optional and each reader
 * of the file's records supplies its own default.
 */
export type AuditEntry = Partial<AuditRecord>;

/**
 * The one reader of the audit file: its records in order ([] when there is no file yet). A line cut by a crash is
 * skipped; whatever it was, the lines around it still count (a reserve without its call counts at its worst case).
 */
export async function readAuditLog(file: string): Promise<AuditEntry[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return [];
    const why = (cause as NodeJS.ErrnoException).code ?? errorMessage(cause);
    throw new RescaleError(
      'OUTPUT_NOT_WRITABLE',
      `cannot read the fallback audit ${file} (${why}); fix its permissions — it is the budget's ledger, so nothing ` +
        'is sent without it',
      { cause },
    );
  }
  const records: AuditEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      continue; // a line cut by a crash
    }
    if (record !== null && typeof record === 'object' && !Array.isArray(record)) records.push(record as AuditEntry);
  }
  return records;
}

/** What earlier runs spent, from the audit file: settled costs plus reservations that never got a `call` line. */
export interface LedgerTotals {
  readonly nanoUsd: number;
  readonly requests: number;
}

export async function readLedger(file: string): Promise<LedgerTotals> {
  let nanoUsd = 0;
  let requests = 0;
  const open = new Map<string, number>();
  for (const record of await readAuditLog(file)) {
    if (record.event === 'reserve') {
      requests += 1;
      open.set(record.call_id ?? '', toNanoUsd(record.reserved_usd ?? 0));
    } else if (record.event === 'call') {
      if (open.delete(record.call_id ?? '') && record.not_sent === true) requests -= 1;
      nanoUsd += toNanoUsd(record.cost_usd ?? 0);
    }
  }
  for (const reserved of open.values()) nanoUsd += reserved;
  return { nanoUsd, requests };
}

/** Appends records in order from concurrent callers; `reserve` lines are flushed to disk before `write` resolves. */
export class AuditLog {
  private queue: Promise<void> = Promise.resolve();

  private constructor(
    readonly file: string,
    private readonly handle: FileHandle,
  ) {}

  static async open(file: string): Promise<AuditLog> {
    const handle = await open(file, 'a+');
    // A line cut by a crash is ended first, so the next record starts a line of its own.
    const { size } = await handle.stat();
    if (size > 0) {
      const last = Buffer.alloc(1);
      await handle.read(last, 0, 1, size - 1);
      if (last[0] !== 0x0a) await handle.write('\n');
    }
    return new AuditLog(file, handle);
  }

  write(record: AuditRecord): Promise<void> {
    const line = `${JSON.stringify(record)}\n`;
    const next = this.queue.then(async () => {
      await this.handle.write(line);
      if (record.event === 'reserve') await this.handle.datasync();
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.handle.sync().catch(() => undefined);
    await this.handle.close();
  }
}
