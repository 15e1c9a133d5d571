// The audit lines of Batch API requests: a `reserve` per request before the upload, and a `call` per request when
// the batch is collected (or released unsent), so the budget's ledger counts batch requests as it counts live ones.

import type { FallbackConfig } from '../../contracts/fallback-config.js';
import { readAuditLog, type AuditLog, type CallOutcome } from '../audit-log.js';

/** A request's document as audit lines name it. */
export interface DocumentRef {
  readonly document_id: string | null;
  readonly row: number;
  readonly shard_id: string;
}

export const UNKNOWN_DOCUMENT: DocumentRef = { document_id: null, row: -1, shard_id: '' };

/** The audit call id of a batch request: the batch's tag and the request's cache key (its custom_id). */
export function batchCallId(tag: string, key: string): string {
  return `${tag}:${key}`;
}

/** The documents behind a batch's requests, from its `reserve` lines in the audit log (custom_id → document). */
export async function reservedDocuments(auditFile: string, tag: string): Promise<Map<string, DocumentRef>> {
  const out = new Map<string, DocumentRef>();
  const prefix = batchCallId(tag, '');
  for (const record of await readAuditLog(auditFile)) {
    if (record.event === 'reserve' && record.call_id?.startsWith(prefix) === true) {
      out.set(record.call_id.slice(prefix.length), {
        document_id: record.document_id ?? null,
        row: record.row ?? -1,
        shard_id: record.shard_id ?? '',
      });
    }
  }
  return out;
}

type CallLine = Parameters<AuditLog['write']>[0] & { event: 'call' };

/** The fields every `call` line of a batch request shares (its outcome, status, cost and error are the caller's). */
export function callBase(
  tag: string,
  key: string,
  doc: DocumentRef,
  config: FallbackConfig,
  latencyMs = 0,
): Omit<CallLine, 'outcome' | 'http_status' | 'cost_usd' | 'error'> {
  return {
    event: 'call',
    time: new Date().toISOString(),
    call_id: batchCallId(tag, key),
    ...doc,
    request_hash: key,
    attempt: 1,
    model: config.model,
    response_model: null,
    prompt_tokens: null,
    completion_tokens: null,
    latency_ms: latencyMs,
    retry_after_ms: null,
  };
}

/** A failed batch item's outcome, from the HTTP status its result line carries. */
export function outcomeOf(status: number | null): CallOutcome {
  if (status === null) return 'bad_request';
  if (status === 429) return 'rate_limited';
  if (status === 401 || status === 403) return 'auth';
  if (status === 404) return 'not_found';
  if (status >= 500) return 'server_error';
  return status === 200 ? 'malformed' : 'bad_request';
}
