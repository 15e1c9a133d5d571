// `rescale batch collect`: when a batch has ended, reads both its output and its error file: answers go into the
// response cache (audited at their billed cost), failed or missing items are audited as unbilled and reported — never
// cached, so the next `rescale run` sends them live (or `batch submit` puts them in a new batch). Nothing is lost.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadCodebook } from '../../contracts/codebook.js';
import { errorMessage, RescaleError } from '../../contracts/errors.js';
import type { FallbackConfig } from '../../contracts/fallback-config.js';
import { silentLogger, type Logger } from '../../contracts/logger.js';
import { redactKey } from '../api-key.js';
import { AuditLog } from '../audit-log.js';
import { fromNanoUsd } from '../budget.js';
import { parseCompletion, type ParsedCompletion } from '../fallback-client.js';
import { priceNanoUsd, worstCaseNanoUsd } from '../pricing.js';
import { fallbackPathsFor } from '../resolve-fallback.js';
import { CACHE_FORMAT, exchangeKey, fallbackEndpoint, ResponseCache } from '../response-cache.js';
import {
  BatchApiClient,
  FINAL_BATCH_STATES,
  liveBatchFallback,
  parseBatchResults,
  type BatchInputLine,
} from './batch-api.js';
import { callBase, outcomeOf, reservedDocuments, UNKNOWN_DOCUMENT } from './batch-audit.js';
import { readBatchState, writeBatchState, type BatchRecord } from './batch-state.js';

export interface BatchCollectOptions {
  readonly codebook: string;
  readonly output: string;
  /** Wait for unfinished batches (polling every pollMs) instead of reporting them as pending. */
  readonly wait?: boolean;
  readonly pollMs?: number;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** `--endpoints FILE`, for a codebook whose fallback names an endpoint. */
  readonly endpoints?: string | undefined;
  readonly logger?: Logger;
  readonly signal?: AbortSignal;
}

export interface BatchCollectSummary {
  readonly batches: readonly BatchRecord[];
  readonly answered: number;
  readonly failed: number;
  readonly missing: number;
  /** Batches still running at the provider. */
  readonly pending: number;
  /** Failure reasons and how many items had each. */
  readonly reasons: Readonly<Record<string, number>>;
}

export async function collectFallbackBatches(options: BatchCollectOptions): Promise<BatchCollectSummary> {
  const logger = options.logger ?? silentLogger;
  const codebook = await loadCodebook(options.codebook);
  const { config, apiKey } = await liveBatchFallback(codebook, options.env, options.endpoints);
  const output = path.resolve(options.output);
  const paths = fallbackPathsFor(output, config);
  const records = await readBatchState(output);
  const client = new BatchApiClient(config, apiKey);
  const cache = new ResponseCache(paths.cacheDir);
  const endpoint = fallbackEndpoint(config);
  const totals = { answered: 0, failed: 0, missing: 0, pending: 0 };
  const reasons: Record<string, number> = {};
  for (const record of records) {
    if (record.collectedAt !== null) continue;
    if (record.batchId === null) {
      const found = await client.findByTag(record.tag);
      if (found === null) {
        // Never created: nothing was sent or billed; release its reservations.
        await releaseUncreated(paths.auditFile, record, config);
        Object.assign(record, {
          collectedAt: new Date().toISOString(),
          status: 'not created',
          missing: record.requests,
        });
        totals.missing += record.requests;
        continue;
      }
      record.batchId = found.id;
    }
    const batchId = record.batchId;
    let info = await client.retrieve(batchId);
    while (!FINAL_BATCH_STATES.includes(info.status) && options.wait === true) {
      logger.log('info', 'batch not finished yet; waiting', {
        batchId: record.batchId,
        status: info.status,
        counts: info.counts,
      });
      await sleep(options.pollMs ?? 60_000, undefined, options.signal ? { signal: options.signal } : {});
      info = await client.retrieve(batchId);
    }
    record.status = info.status;
    if (!FINAL_BATCH_STATES.includes(info.status)) {
      totals.pending++;
      continue;
    }
    const inputs = new Map<string, BatchInputLine>();
    for (const line of await readInputLines(record)) inputs.set(line.custom_id, line);
    const results = [
      ...(info.outputFileId !== null ? parseBatchResults(await client.content(info.outputFileId)).lines : []),
      ...(info.errorFileId !== null ? parseBatchResults(await client.content(info.errorFileId)).lines : []),
    ];
    const documents = await reservedDocuments(paths.auditFile, record.tag);
    const audit = await AuditLog.open(paths.auditFile);
    const seen = new Set<string>();
    const counts = { answered: 0, failed: 0, missing: 0 };
    const latency = Date.now() - Date.parse(record.submittedAt);
    const fail = (reason: string): void => {
      counts.failed++;
      reasons[reason] = (reasons[reason] ?? 0) + 1;
    };
    try {
      for (const result of results) {
        const input = inputs.get(result.customId);
        if (input === undefined || seen.has(result.customId)) continue;
        seen.add(result.customId);
        const base = callBase(
          record.tag,
          result.customId,
          documents.get(result.customId) ?? UNKNOWN_DOCUMENT,
          config,
          latency,
        );
        let completion: ParsedCompletion | null = null;
        if (result.body !== null) {
          try {
            completion = parseCompletion(result.body);
          } catch {
            completion = null;
          }
        }
        if (completion === null) {
          const reason = result.error ?? 'malformed response body';
          fail(reason.replace(/\s+/g, ' ').slice(0, 120));
          await audit.write({
            ...base,
            outcome: outcomeOf(result.statusCode),
            http_status: result.statusCode,
            cost_usd: 0,
            error: redactKey(reason, apiKey),
          });
          continue;
        }
        // Stored before it is counted: the next run reads it from the cache exactly as a live answer.
        await cache.put({
          format: CACHE_FORMAT,
          key: exchangeKey(endpoint, input.body),
          endpoint,
          request: input.body,
          response: result.body as string,
          receivedAt: new Date().toISOString(),
        });
        const usage = completion.usage;
        const cost =
          usage === null
            ? worstCaseNanoUsd(config, input.body, config.price.batchFactor)
            : priceNanoUsd(
                config.price,
                usage.promptTokens,
                usage.completionTokens,
                Math.round,
                config.price.batchFactor,
              );
        counts.answered++;
        await audit.write({
          ...base,
          response_model: completion.model,
          outcome: 'label',
          http_status: 200,
          prompt_tokens: usage?.promptTokens ?? null,
          completion_tokens: usage?.completionTokens ?? null,
          cost_usd: fromNanoUsd(cost),
          error: null,
        });
      }
      for (const [customId] of inputs) {
        if (seen.has(customId)) continue;
        counts.missing++;
        const batchErrors = info.errors.length > 0 ? `: ${info.errors.join('; ')}` : '';
        const why = `no result for this request in batch ${record.batchId} (status ${info.status})${batchErrors}`;
        await audit.write({
          ...callBase(record.tag, customId, documents.get(customId) ?? UNKNOWN_DOCUMENT, config, latency),
          outcome: 'timeout',
          http_status: null,
          cost_usd: 0,
          error: why,
        });
      }
    } finally {
      await audit.close();
    }
    Object.assign(record, { collectedAt: new Date().toISOString(), ...counts });
    totals.answered += counts.answered;
    totals.failed += counts.failed;
    totals.missing += counts.missing;
    logger.log(counts.failed + counts.missing > 0 ? 'warn' : 'info', 'batch collected', {
      batchId: record.batchId,
      status: info.status,
      ...counts,
    });
  }
  await writeBatchState(output, records);
  return { batches: records, ...totals, reasons };
}

/** The batch's submitted requests, from the input file kept beside the output. */
async function readInputLines(record: BatchRecord): Promise<BatchInputLine[]> {
  const text = await readFile(record.inputFile, 'utf8');
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, index) => {
      try {
        return JSON.parse(line) as BatchInputLine;
      } catch (cause) {
        throw new RescaleError(
          'INPUT_INVALID',
          `${record.inputFile} line ${index + 1} is not JSON (${errorMessage(cause)}); ` +
            `it maps batch ${record.batchId ?? record.tag}'s results to their requests: restore it from a backup`,
          { cause },
        );
      }
    });
}

/** Call lines (not sent, unbilled) for every request of a batch that was never created. */
async function releaseUncreated(auditFile: string, record: BatchRecord, config: FallbackConfig): Promise<void> {
  const lines = await readInputLines(record);
  const documents = await reservedDocuments(auditFile, record.tag);
  const audit = await AuditLog.open(auditFile);
  try {
    for (const { custom_id: key } of lines) {
      const doc = documents.get(key) ?? UNKNOWN_DOCUMENT;
      await audit.write({
        ...callBase(record.tag, key, doc, config),
        outcome: 'connection',
        http_status: null,
        cost_usd: 0,
        error: 'batch never created',
        not_sent: true,
      });
    }
  } finally {
    await audit.close();
  }
}
