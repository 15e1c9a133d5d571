// The upload half of `rescale batch submit`: given the requests a local run collected, chooses those the budget
// covers at the batch price (in corpus order), reserves their worst case in the audit log, uploads them as one batch
// (custom_id = the cache key) and records it in the state file. The local run itself is wired by the CLI.

import { randomUUID } from 'node:crypto';
import { errorMessage, RescaleError } from '../../contracts/errors.js';
import { describeEndpoint, type FallbackConfig } from '../../contracts/fallback-config.js';
import { silentLogger, type Logger } from '../../contracts/logger.js';
import { writeFileAtomic } from '../../storage/atomic-file.js';
import { outputLayout } from '../../storage/output-layout.js';
import { redactKey } from '../api-key.js';
import { AuditLog, readLedger } from '../audit-log.js';
import { budgetLimits, fromNanoUsd } from '../budget.js';
import { worstCaseNanoUsd } from '../pricing.js';
import { BatchApiClient, BatchSubmitError, type BatchInfo, type BatchInputLine } from './batch-api.js';
import { batchCallId, callBase } from './batch-audit.js';
import { readBatchState, writeBatchState, type BatchRecord } from './batch-state.js';
import type { CollectedRequest, RequestCollector } from './request-collector.js';

export interface BatchSubmitSummary {
  /** Null when there was nothing to send. */
  readonly batch: BatchRecord | null;
  readonly routed: number;
  /** Routed documents whose request is already answered in the cache. */
  readonly cached: number;
  /** Distinct requests submitted (duplicate documents share one). */
  readonly submitted: number;
  /** Requests left out because the budget cannot cover their worst case; the real run decides them live. */
  readonly leftOut: number;
  readonly reservedUsd: number;
}

/** The output's batches so far; refuses while one is not collected, so its requests are not submitted twice. */
export async function batchesBeforeSubmit(output: string): Promise<BatchRecord[]> {
  const previous = await readBatchState(output);
  const open = previous.filter((b) => b.collectedAt === null);
  if (open.length > 0) {
    throw new RescaleError(
      'RUN_CONFLICT',
      `batch ${open[0]?.batchId} for ${output} is not collected yet; ` +
        'run "rescale batch collect" first, so its requests are not submitted twice',
    );
  }
  return previous;
}

export interface SubmitCollectedOptions {
  /** Absolute output path: the state file and the batch input files are written beside it. */
  readonly output: string;
  readonly auditFile: string;
  readonly config: FallbackConfig;
  /** Never logged or written. */
  readonly apiKey: string;
  /** The state file's records as `batchesBeforeSubmit` read them. */
  readonly previous: readonly BatchRecord[];
  readonly collected: RequestCollector;
  readonly logger?: Logger;
}

export async function submitCollectedRequests(options: SubmitCollectedOptions): Promise<BatchSubmitSummary> {
  const { output, config, apiKey, previous, collected } = options;
  const logger = options.logger ?? silentLogger;
  // Within the budget, in corpus order: what earlier runs and batches spent or reserved, plus each request's worst
  // case.
  const ledger = await readLedger(options.auditFile);
  const limits = budgetLimits(config);
  let committed = ledger.nanoUsd;
  let requests = ledger.requests;
  const chosen: [string, CollectedRequest, number][] = [];
  let leftOut = 0;
  for (const [key, pending] of collected.pending) {
    const worst = worstCaseNanoUsd(config, pending.body, config.price.batchFactor);
    const fits =
      (limits.nanoUsd === null || committed + worst <= limits.nanoUsd) &&
      (limits.requests === null || requests + 1 <= limits.requests);
    if (!fits) {
      leftOut++;
      continue;
    }
    committed += worst;
    requests += 1;
    chosen.push([key, pending, worst]);
  }
  const summary = {
    routed: collected.routed,
    cached: collected.cached,
    submitted: chosen.length,
    leftOut,
    reservedUsd: fromNanoUsd(chosen.reduce((n, [, , w]) => n + w, 0)),
  };
  if (chosen.length === 0) {
    logger.log('info', 'nothing to submit to the Batch API', summary);
    return { batch: null, ...summary };
  }

  const tag = randomUUID();
  const inputFile = outputLayout(output).fallbackBatchInputFile(tag);
  const jsonl =
    chosen
      .map(([key, pending]) =>
        JSON.stringify({
          custom_id: key,
          method: 'POST',
          url: '/v1/chat/completions',
          body: pending.body,
        } satisfies BatchInputLine),
      )
      .join('\n') + '\n';
  await writeFileAtomic(inputFile, async (handle) => {
    await handle.writeFile(jsonl);
  });
  const unsubmitted = (status: string): BatchRecord => ({
    tag,
    batchId: null,
    inputFile,
    requests: chosen.length,
    submittedAt: new Date().toISOString(),
    collectedAt: null,
    status,
    answered: 0,
    failed: 0,
    missing: 0,
  });
  // Reserved in the ledger before anything is uploaded: a crash from here on can only over-count, never overspend.
  const audit = await AuditLog.open(options.auditFile);
  try {
    const time = new Date().toISOString();
    for (const [key, pending, worst] of chosen) {
      await audit.write({
        event: 'reserve',
        time,
        call_id: batchCallId(tag, key),
        document_id: pending.documentId,
        row: pending.row,
        shard_id: pending.shardId,
        request_hash: key,
        attempt: 1,
        reserved_usd: fromNanoUsd(worst),
      });
    }
    let info: BatchInfo;
    try {
      info = await new BatchApiClient(config, apiKey).submit(jsonl, { rescale_tag: tag });
    } catch (error) {
      if (error instanceof BatchSubmitError && error.maybeCreated) {
        // The batch may exist and be billed: keep the reservations and let `collect` find it by its tag.
        await writeBatchState(output, [...previous, unsubmitted('unknown')]);
        throw new RescaleError(
          'FALLBACK_REJECTED',
          `the Batch API at ${config.baseUrl} did not answer the request that creates the batch (${error.detail}); ` +
            `it may have been created: run "rescale batch collect", which looks it up by its tag ${tag}, before ` +
            'submitting again',
        );
      }
      // Not submitted: release every reservation (nothing can have been billed).
      for (const [key, pending] of chosen) {
        const doc = { document_id: pending.documentId, row: pending.row, shard_id: pending.shardId };
        await audit.write({
          ...callBase(tag, key, doc, config),
          outcome: 'connection',
          http_status: null,
          cost_usd: 0,
          error: 'batch not submitted',
          not_sent: true,
        });
      }
      // No `cause`: the client's error may quote part of the key; its message is kept redacted.
      const detail = error instanceof BatchSubmitError ? error.detail : redactKey(errorMessage(error), apiKey);
      throw new RescaleError(
        'FALLBACK_REJECTED',
        `the Batch API at ${describeEndpoint(config)} did not take the batch: ${detail}; ` +
          'check that the endpoint offers /v1/files and /v1/batches, or use "rescale run" (live requests)',
      );
    }
    const record: BatchRecord = { ...unsubmitted(info.status), batchId: info.id };
    await writeBatchState(output, [...previous, record]);
    logger.log('info', 'batch submitted', { batchId: info.id, ...summary });
    return { batch: record, ...summary };
  } finally {
    await audit.close();
  }
}
