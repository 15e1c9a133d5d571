// `rescale batch submit` and `rescale batch collect`: the closed-model fallback through the OpenAI Batch API, at the
// batch price, as a way to fill the response cache before the real run.
//
// submit: scores the corpus locally exactly as `rescale run` would (same plan, same routing), collects the requests
//   the fallback would send for routed documents not yet in the cache, reserves their worst-case batch cost in the
//   audit log (the budget's ledger), and uploads them as one batch (custom_id = the cache key).
// collect: when the batch has ended, reads both the output and the error file: answers go into the cache (audited
//   at their billed cost), failed or missing items are audited as unbilled and reported — never cached, so the next
//   `rescale run` sends them live (or `batch submit` puts them in a new batch). Nothing is silently lost.
// Then `rescale run` with the same codebook finds every batch answer in the cache and pays nothing for them.

import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadCodebook, resolveSequences, singleQuestion, type Codebook } from '../contracts/codebook.js';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import type { FallbackConfig } from '../contracts/fallback-config.js';
import { silentLogger, type Logger } from '../contracts/logger.js';
import type { ResultRow } from '../contracts/results.js';
import { DEFAULT_SHARD_ROWS, planRun } from '../coordinator/run-plan.js';
import { AuditLog, readLedger, type CallOutcome } from '../fallback/audit-log.js';
import { BatchApiClient, BatchSubmitError, FINAL_BATCH_STATES, parseBatchResults, type BatchInfo, type BatchInputLine } from '../fallback/batch/batch-api.js';
import { fromNanoUsd, toNanoUsd } from '../fallback/budget.js';
import { parseCompletion } from '../fallback/fallback-client.js';
import { FallbackPrompt } from '../fallback/fallback-prompt.js';
import { documentIdText, fallbackEndpoint, priceNanoUsd, routedIndexes, worstCaseNanoUsd } from '../fallback/fallback-stage.js';
import { fallbackPathsFor, resolveFallback } from '../fallback/resolve-fallback.js';
import { CACHE_FORMAT, exchangeKey, ResponseCache } from '../fallback/response-cache.js';
import { LabelScorer } from '../worker/engine/label-scorer.js';
import { RowGroupCache } from '../storage/parquet-rows.js';
import { processShard, type ShardFallback } from '../worker/process-shard.js';
import type { DocumentInput } from '../contracts/document-input.js';
import { writeFileAtomic } from '../storage/shard-result-writer.js';

/** What the state file keeps per batch (`<output>.fallback-batches.json`). */
export interface BatchRecord {
  /** Our id for the batch, in the audit's call ids (`<tag>:<cache key>`) and the input file's name. */
  readonly tag: string;
  /** Null while unknown: the create request's answer was lost, and `collect` looks the batch up by its tag. */
  batchId: string | null;
  /** The submitted JSONL, kept: it maps each custom_id to its request body (the cache stores both). */
  readonly inputFile: string;
  readonly requests: number;
  readonly submittedAt: string;
  collectedAt: string | null;
  status: string;
  answered: number;
  failed: number;
  missing: number;
}

export interface BatchSubmitOptions {
  readonly codebook: string;
  readonly input: readonly string[];
  readonly output: string;
  readonly shardRows?: number;
  readonly limit?: number;
  readonly sequences?: number;
  readonly threads?: number;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly logger?: Logger;
  readonly signal?: AbortSignal;
}

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

interface Pending {
  readonly body: BatchInputLine['body'];
  readonly documentId: string | null;
  readonly row: number;
  readonly shardId: string;
}

/** A ShardFallback that asks nothing: it records the requests the live stage would send for uncached routed documents. */
class RequestCollector implements ShardFallback {
  readonly pending = new Map<string, Pending>();
  routed = 0;
  cached = 0;
  private readonly prompt: FallbackPrompt;
  private readonly endpoint: string;

  constructor(
    codebook: Codebook,
    private readonly config: FallbackConfig,
    private readonly cache: ResponseCache,
  ) {
    this.prompt = new FallbackPrompt(codebook, singleQuestion(codebook), config);
    this.endpoint = fallbackEndpoint(config);
  }

  async resolve(rows: readonly ResultRow[], docs: readonly DocumentInput[], context: { readonly shardId: string }): Promise<ResultRow[]> {
    for (const index of routedIndexes(this.config, rows)) {
      const row = rows[index] as ResultRow;
      const doc = docs[index];
      if (doc === undefined) continue;
      this.routed++;
      const body = this.prompt.body(this.prompt.messages(doc));
      const key = exchangeKey(this.endpoint, body);
      if (this.pending.has(key)) continue;
      if ((await this.cache.get(key)) !== null) {
        this.cached++;
        continue;
      }
      this.pending.set(key, { body, documentId: documentIdText(row.id), row: row.row, shardId: context.shardId });
    }
    return rows.map((row) => ({ ...row, localLabel: row.label, fallback: null }));
  }
}

function statePathFor(output: string): string {
  return `${output}.fallback-batches.json`;
}

async function readState(output: string): Promise<BatchRecord[]> {
  const file = statePathFor(output);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw cause;
  }
  try {
    return JSON.parse(text) as BatchRecord[];
  } catch (cause) {
    throw new RescaleError('INPUT_INVALID', `${file} is not valid JSON (${errorMessage(cause)}); restore it from a backup — it lists the batches submitted for ${output}`, { cause });
  }
}

async function writeState(output: string, records: readonly BatchRecord[]): Promise<void> {
  await writeFileAtomic(statePathFor(output), async (handle) => {
    await handle.writeFile(`${JSON.stringify(records, null, 2)}\n`);
  });
}

async function liveFallback(codebook: Codebook, env: Readonly<Record<string, string | undefined>>): Promise<{ config: FallbackConfig; apiKey: string; identity: string }> {
  const plan = await resolveFallback(codebook, { env });
  if (!plan.active || plan.apiKey === null) {
    throw new RescaleError('CONFIG_INVALID', `the Batch API path needs the codebook's fallback and its key: ${plan.active ? 'no key' : plan.reason}`);
  }
  return { config: plan.config, apiKey: plan.apiKey, identity: plan.identity };
}

/** A request's document as audit lines name it. */
interface DocumentRef {
  readonly document_id: string | null;
  readonly row: number;
  readonly shard_id: string;
}

const UNKNOWN_DOCUMENT: DocumentRef = { document_id: null, row: -1, shard_id: '' };

/** The documents behind a batch's requests, from its `reserve` lines in the audit log (custom_id → document). */
async function reservedDocuments(auditFile: string, tag: string): Promise<Map<string, DocumentRef>> {
  const out = new Map<string, DocumentRef>();
  let text = '';
  try {
    text = await readFile(auditFile, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    if (!line.includes(tag)) continue;
    try {
      const record = JSON.parse(line) as { event?: string; call_id?: string; document_id?: string | null; row?: number; shard_id?: string };
      if (record.event === 'reserve' && record.call_id?.startsWith(`${tag}:`)) {
        out.set(record.call_id.slice(tag.length + 1), { document_id: record.document_id ?? null, row: record.row ?? -1, shard_id: record.shard_id ?? '' });
      }
    } catch {
      // a line cut by a crash
    }
  }
  return out;
}

export async function submitFallbackBatch(options: BatchSubmitOptions): Promise<BatchSubmitSummary> {
  const logger = options.logger ?? silentLogger;
  const codebook = await loadCodebook(options.codebook);
  const { config, apiKey, identity } = await liveFallback(codebook, options.env ?? process.env);
  const output = path.resolve(options.output);
  const paths = fallbackPathsFor(output, config);
  const previous = await readState(output);
  const open = previous.filter((b) => b.collectedAt === null);
  if (open.length > 0) {
    throw new RescaleError('RUN_CONFLICT', `batch ${open[0]?.batchId} for ${output} is not collected yet; run "rescale batch collect" first, so its requests are not submitted twice`);
  }

  // The local pass, exactly as `rescale run` plans and routes it; its shard files go to a scratch folder.
  const sequences = resolveSequences(codebook, options.sequences);
  const plan = await planRun(codebook, options.input, sequences, options.shardRows ?? DEFAULT_SHARD_ROWS, options.limit, identity);
  const cache = new ResponseCache(paths.cacheDir);
  const collector = new RequestCollector(codebook, config, cache);
  let scratch: string;
  try {
    await mkdir(path.dirname(output), { recursive: true });
    scratch = await mkdtemp(path.join(path.dirname(output), '.rescale-batch-scan-'));
  } catch (cause) {
    throw new RescaleError('OUTPUT_NOT_WRITABLE', `cannot write to ${path.dirname(output)} (from --output ${output}): ${(cause as NodeJS.ErrnoException).code ?? String(cause)}; choose a folder you can write to`, { cause });
  }
  const scorer = await LabelScorer.create(codebook, { logger, sequences, ...(options.threads !== undefined ? { threads: options.threads } : {}) });
  try {
    const rowGroups = new RowGroupCache();
    for (const shard of plan.shards) {
      options.signal?.throwIfAborted();
      await processShard(
        { shard, idColumn: plan.idColumn, idType: plan.idType, textColumn: plan.textColumn, resultDir: scratch },
        { scorer, logger, cache: rowGroups, fallback: collector, ...(options.signal ? { signal: options.signal } : {}) },
      );
    }
  } finally {
    await scorer.dispose();
    await rm(scratch, { recursive: true, force: true });
  }

  // Within the budget, in corpus order: what earlier runs and batches spent or reserved, plus each request's worst case.
  const ledger = await readLedger(paths.auditFile);
  const capNano = config.budget.usd === null ? null : toNanoUsd(config.budget.usd);
  let committed = ledger.nanoUsd;
  let requests = ledger.requests;
  const chosen: [string, Pending, number][] = [];
  let leftOut = 0;
  for (const [key, pending] of collector.pending) {
    const worst = worstCaseNanoUsd(config, pending.body, config.price.batchFactor);
    const fits = (capNano === null || committed + worst <= capNano) && (config.budget.requests === null || requests + 1 <= config.budget.requests);
    if (!fits) {
      leftOut++;
      continue;
    }
    committed += worst;
    requests += 1;
    chosen.push([key, pending, worst]);
  }
  const summary = { routed: collector.routed, cached: collector.cached, submitted: chosen.length, leftOut, reservedUsd: fromNanoUsd(chosen.reduce((n, [, , w]) => n + w, 0)) };
  if (chosen.length === 0) {
    logger.log('info', 'nothing to submit to the Batch API', summary);
    return { batch: null, ...summary };
  }

  const tag = randomUUID();
  const inputFile = `${output}.fallback-batch-${tag}.jsonl`;
  const jsonl = chosen.map(([key, pending]) => JSON.stringify({ custom_id: key, method: 'POST', url: '/v1/chat/completions', body: pending.body } satisfies BatchInputLine)).join('\n') + '\n';
  await writeFileAtomic(inputFile, async (handle) => {
    await handle.writeFile(jsonl);
  });
  // Reserved in the ledger before anything is uploaded: a crash from here on can only over-count, never overspend.
  const audit = await AuditLog.open(paths.auditFile);
  try {
    const time = new Date().toISOString();
    for (const [key, pending, worst] of chosen) {
      await audit.write({ event: 'reserve', time, call_id: `${tag}:${key}`, document_id: pending.documentId, row: pending.row, shard_id: pending.shardId, request_hash: key, attempt: 1, reserved_usd: fromNanoUsd(worst) });
    }
    let info: BatchInfo;
    try {
      info = await new BatchApiClient(config, apiKey).submit(jsonl, { rescale_tag: tag });
    } catch (error) {
      if (error instanceof BatchSubmitError && error.maybeCreated) {
        // The batch may exist and be billed: keep the reservations and let `collect` find it by its tag.
        await writeState(output, [...previous, { tag, batchId: null, inputFile, requests: chosen.length, submittedAt: new Date().toISOString(), collectedAt: null, status: 'unknown', answered: 0, failed: 0, missing: 0 }]);
        throw new RescaleError('FALLBACK_REJECTED', `the Batch API at ${config.baseUrl} did not answer the request that creates the batch (${redact(errorMessage(error), apiKey)}); it may have been created: run "rescale batch collect", which looks it up by its tag ${tag}, before submitting again`);
      }
      // Not submitted: release every reservation (nothing can have been billed).
      for (const [key, pending] of chosen) {
        await audit.write({ ...callBase(tag, key, { document_id: pending.documentId, row: pending.row, shard_id: pending.shardId }, config), outcome: 'connection', http_status: null, cost_usd: 0, error: 'batch not submitted', not_sent: true });
      }
      throw new RescaleError('FALLBACK_REJECTED', `the Batch API at ${config.baseUrl} (codebook field "fallback.base_url") did not take the batch: ${redact(errorMessage(error), apiKey)}; check that the endpoint offers /v1/files and /v1/batches, or use "rescale run" (live requests)`);
    }
    const record: BatchRecord = { tag, batchId: info.id, inputFile, requests: chosen.length, submittedAt: new Date().toISOString(), collectedAt: null, status: info.status, answered: 0, failed: 0, missing: 0 };
    await writeState(output, [...previous, record]);
    logger.log('info', 'batch submitted', { batchId: info.id, ...summary });
    return { batch: record, ...summary };
  } finally {
    await audit.close();
  }
}

export interface BatchCollectOptions {
  readonly codebook: string;
  readonly output: string;
  /** Wait for unfinished batches (polling every pollMs) instead of reporting them as pending. */
  readonly wait?: boolean;
  readonly pollMs?: number;
  readonly env?: Readonly<Record<string, string | undefined>>;
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
  const { config, apiKey } = await liveFallback(codebook, options.env ?? process.env);
  const output = path.resolve(options.output);
  const paths = fallbackPathsFor(output, config);
  const records = await readState(output);
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
        Object.assign(record, { collectedAt: new Date().toISOString(), status: 'not created', missing: record.requests });
        totals.missing += record.requests;
        continue;
      }
      record.batchId = found.id;
    }
    const batchId = record.batchId;
    let info = await client.retrieve(batchId);
    while (!FINAL_BATCH_STATES.includes(info.status) && options.wait === true) {
      logger.log('info', 'batch not finished yet; waiting', { batchId: record.batchId, status: info.status, counts: info.counts });
      await sleep(options.pollMs ?? 60_000, undefined, options.signal ? { signal: options.signal } : {});
      info = await client.retrieve(batchId);
    }
    record.status = info.status;
    if (!FINAL_BATCH_STATES.includes(info.status)) {
      totals.pending++;
      continue;
    }
    const inputs = new Map<string, BatchInputLine>();
    for (const line of (await readFile(record.inputFile, 'utf8')).split('\n')) {
      if (line.trim() === '') continue;
      const parsed = JSON.parse(line) as BatchInputLine;
      inputs.set(parsed.custom_id, parsed);
    }
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
        const base = callBase(record.tag, result.customId, documents.get(result.customId) ?? UNKNOWN_DOCUMENT, config, latency);
        let completion = null;
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
          await audit.write({ ...base, outcome: outcomeOf(result.statusCode), http_status: result.statusCode, cost_usd: 0, error: redact(reason, apiKey) });
          continue;
        }
        // Stored before it is counted: the next run reads it from the cache exactly as a live answer.
        await cache.put({ format: CACHE_FORMAT, key: exchangeKey(endpoint, input.body), endpoint, request: input.body, response: result.body as string, receivedAt: new Date().toISOString() });
        const usage = completion.usage;
        const cost = usage === null ? worstCaseNanoUsd(config, input.body, config.price.batchFactor) : priceNanoUsd(config.price, usage.promptTokens, usage.completionTokens, Math.round, config.price.batchFactor);
        counts.answered++;
        await audit.write({ ...base, response_model: completion.model, outcome: 'label', http_status: 200, prompt_tokens: usage?.promptTokens ?? null, completion_tokens: usage?.completionTokens ?? null, cost_usd: fromNanoUsd(cost), error: null });
      }
      for (const [customId] of inputs) {
        if (seen.has(customId)) continue;
        counts.missing++;
        await audit.write({ ...callBase(record.tag, customId, documents.get(customId) ?? UNKNOWN_DOCUMENT, config, latency), outcome: 'timeout', http_status: null, cost_usd: 0, error: `no result for this request in batch ${record.batchId} (status ${info.status})${info.errors.length > 0 ? `: ${info.errors.join('; ')}` : ''}` });
      }
    } finally {
      await audit.close();
    }
    Object.assign(record, { collectedAt: new Date().toISOString(), ...counts });
    totals.answered += counts.answered;
    totals.failed += counts.failed;
    totals.missing += counts.missing;
    logger.log(counts.failed + counts.missing > 0 ? 'warn' : 'info', 'batch collected', { batchId: record.batchId, status: info.status, ...counts });
  }
  await writeState(output, records);
  return { batches: records, ...totals, reasons };
}

/** Call lines (not sent, unbilled) for every request of a batch that was never created. */
async function releaseUncreated(auditFile: string, record: BatchRecord, config: FallbackConfig): Promise<void> {
  const lines = (await readFile(record.inputFile, 'utf8')).split('\n').filter((l) => l.trim() !== '');
  const documents = await reservedDocuments(auditFile, record.tag);
  const audit = await AuditLog.open(auditFile);
  try {
    for (const line of lines) {
      const key = (JSON.parse(line) as BatchInputLine).custom_id;
      await audit.write({ ...callBase(record.tag, key, documents.get(key) ?? UNKNOWN_DOCUMENT, config), outcome: 'connection', http_status: null, cost_usd: 0, error: 'batch never created', not_sent: true });
    }
  } finally {
    await audit.close();
  }
}

/** The fields every `call` line of a batch request shares (its outcome, status, cost and error are the caller's). */
function callBase(tag: string, key: string, doc: DocumentRef, config: FallbackConfig, latencyMs = 0): Omit<Parameters<AuditLog['write']>[0] & { event: 'call' }, 'outcome' | 'http_status' | 'cost_usd' | 'error'> {
  return { event: 'call', time: new Date().toISOString(), call_id: `${tag}:${key}`, ...doc, request_hash: key, attempt: 1, model: config.model, response_model: null, prompt_tokens: null, completion_tokens: null, latency_ms: latencyMs, retry_after_ms: null };
}

function outcomeOf(status: number | null): CallOutcome {
  if (status === null) return 'bad_request';
  if (status === 429) return 'rate_limited';
  if (status === 401 || status === 403) return 'auth';
  if (status === 404) return 'not_found';
  if (status >= 500) return 'server_error';
  return status === 200 ? 'malformed' : 'bad_request';
}

function redact(text: string, apiKey: string): string {
  return apiKey === '' ? text : text.split(apiKey).join('[redacted]');
}
