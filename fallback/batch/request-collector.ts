// The fallback that asks nothing: plugged into the shard path of an ordinary local run (`rescale batch submit`), it
// records the request the live stage would send for each routed document not yet answered in the response cache
// (with several questions or a multi-label one: the first request for the document's unsure questions).

import { singleQuestion, type Codebook, type Question } from '../../contracts/codebook.js';
import type { DocumentInput } from '../../contracts/document-input.js';
import type { FallbackConfig } from '../../contracts/fallback-config.js';
import type { ResultRow } from '../../contracts/results.js';
import type { ShardFallback, ShardFallbackContext } from '../../contracts/shard-fallback.js';
import { FallbackPrompt, type ChatRequestBody } from '../fallback-prompt.js';
import { QuestionsFallbackPrompt } from '../questions-fallback-prompt.js';
import { exchangeKey, fallbackEndpoint, type ResponseCache } from '../response-cache.js';
import { asksByQuestion, documentIdText, routedRows, withoutFallback } from '../routing.js';

/** A request the live stage would send, and the document it is for (as the audit's `reserve` line names it). */
export interface CollectedRequest {
  readonly body: ChatRequestBody;
  readonly documentId: string | null;
  readonly row: number;
  readonly shardId: string;
}

export class RequestCollector implements ShardFallback {
  /** By cache key, in corpus order; duplicate documents share one request. */
  readonly pending = new Map<string, CollectedRequest>();
  routed = 0;
  /** Routed documents whose request is already answered in the cache. */
  cached = 0;
  /** A routed document's first request (`asked`: its unsure questions when the codebook is asked by question). */
  private readonly request: (doc: DocumentInput, asked: readonly number[] | null) => ChatRequestBody;
  /** A codebook asked by question: its questions; else null. */
  private readonly questions: readonly Question[] | null;
  private readonly endpoint: string;

  constructor(
    codebook: Codebook,
    private readonly config: FallbackConfig,
    private readonly cache: ResponseCache,
  ) {
    if (asksByQuestion(codebook)) {
      // The request FallbackStage.askQuestions sends first: the document's unsure questions together.
      const prompt = new QuestionsFallbackPrompt(codebook, codebook.questions, config);
      this.questions = codebook.questions;
      this.request = (doc, asked) => prompt.body(prompt.messages(doc, asked ?? []), asked ?? []);
    } else {
      const prompt = new FallbackPrompt(
        codebook,
        singleQuestion(codebook, 'the Batch API fallback (rescale batch)'),
        config,
      );
      this.questions = null;
      this.request = (doc) => prompt.body(prompt.messages(doc));
    }
    this.endpoint = fallbackEndpoint(config);
  }

  /**
   * Every row back with its local label only: the batch's answers reach the results through the cache, in the real run.
   */
  async resolve(
    rows: readonly ResultRow[],
    docs: readonly DocumentInput[],
    context: ShardFallbackContext,
  ): Promise<ResultRow[]> {
    for (const { index, asked } of routedRows(this.config, this.questions, rows)) {
      const row = rows[index] as ResultRow;
      const doc = docs[index];
      if (doc === undefined) continue;
      const body = this.request(doc, asked);
      this.routed++;
      const key = exchangeKey(this.endpoint, body);
      if (this.pending.has(key)) continue;
      if ((await this.cache.get(key)) !== null) {
        this.cached++;
        continue;
      }
      this.pending.set(key, { body, documentId: documentIdText(row.id), row: row.row, shardId: context.shardId });
    }
    return withoutFallback(rows);
  }
}
