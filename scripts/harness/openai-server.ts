// A real HTTP server on loopback that speaks the Chat Completions protocol (POST /v1/chat/completions): the fallback
// tests' provider, and the stand-in closed models of scripts/hybrid-walkthrough.ts (no model behind it: its answers
// come from the `label` function it is given). It checks the key, answers with a label chosen from the user message
// (JSON for json_schema / json_object requests, plain text otherwise, with usage and logprobs), and injects faults on
// demand. It also speaks the Batch API (POST /v1/files, POST /v1/batches, GET /v1/batches/{id}, GET
// /v1/files/{id}/content), with per-item faults: an item in the error file, a 500 in the output file, or no result.

import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault =
  /** An HTTP error status with an OpenAI-style error body; `retryAfter` sets the Retry-After header verbatim. */
  | {
      readonly kind: 'status';
      readonly status: number;
      readonly retryAfter?: string;
      readonly code?: string;
      readonly message?: string;
      readonly type?: string;
      readonly param?: string;
    }
  /** Accepts the request and never answers. */
  | { readonly kind: 'hang' }
  /** 200 with a body that is not JSON. */
  | { readonly kind: 'malformed' }
  /** 200 with this assistant content instead of the right answer (e.g. a label outside the set). */
  | { readonly kind: 'answer'; readonly content: string };

export interface SeenRequest {
  /** 0-based arrival order. */
  readonly index: number;
  readonly at: number;
  readonly body: ChatBody;
  readonly authorization: string | null;
  readonly apiKeyHeader: string | null;
  /** The last user message. */
  readonly user: string;
  /** Answered 200 with a completion: what a real provider bills. */
  billed: boolean;
  promptTokens: number;
  completionTokens: number;
}

export interface ChatBody {
  readonly model: string;
  readonly messages: readonly { readonly role: string; readonly content: string }[];
  readonly response_format?: {
    readonly type: string;
    readonly json_schema?: {
      readonly schema?: {
        readonly properties?: Readonly<Record<string, { readonly enum?: readonly string[] } | undefined>>;
      };
    };
  };
  readonly logprobs?: boolean;
  readonly [key: string]: unknown;
}

export type Responder = (request: SeenRequest) => Fault | null;

/** What happens to one batch item: answered (null), listed in the error file, answered with a 500, or left out. */
export type BatchItemFault = 'error_file' | 'server_error' | 'missing' | null;

export interface SeenBatch {
  readonly id: string;
  readonly inputFileId: string;
  readonly lines: readonly { readonly custom_id: string; readonly body: ChatBody }[];
  status: 'in_progress' | 'completed' | 'expired';
  retrieves: number;
  outputFileId: string | null;
  errorFileId: string | null;
}

export interface OpenAIServerOptions {
  /** The key the server accepts (as `Authorization: Bearer` or `api-key`). Default: a fresh dummy key. */
  readonly apiKey?: string;
  /** Faults per request; null answers normally. Default: always normal. */
  readonly respond?: Responder;
  /**
   * The label for a user message (and the request body: its model names which stand-in answers). Default: keyword
   * rules (good/love/great → positive, bad/hate/awful → negative, else neutral).
   */
  readonly label?: (user: string, body: ChatBody) => string;
  /**
   * A JSON schema with properties other than "label" (several questions asked at once): each property's answer for a
   * user message. Default: `label`'s answer for every property.
   */
  readonly answer?: (property: string, user: string) => string | readonly string[];
  /** Batch items' fates, by position in the input file. Default: all answered. */
  readonly batchFault?: (customId: string, index: number) => BatchItemFault;
  /** Retrieves of a batch that still report in_progress before it completes (default 1). */
  readonly batchPolls?: number;
  /** Report batches as expired instead of completed (items without a result stay missing). */
  readonly batchExpires?: boolean;
}

/** The label-chooser the tests share: a tiny sentiment lexicon over the user message's tweet. */
export function keywordLabel(user: string): string {
  const tweet = user.split('Tweet:').pop() ?? user;
  if (/\b(good|love|great|happy)\b/i.test(tweet)) return 'positive';
  if (/\b(bad|hate|awful|sad)\b/i.test(tweet)) return 'negative';
  return 'neutral';
}

/** A dummy key in the usual shape, never a real one. */
export function dummyApiKey(): string {
  return `sk-test-${randomBytes(12).toString('hex')}`;
}

/** Tokens as the server counts them: about four bytes each. */
function countTokens(text: string): number {
  return Math.max(1, Math.ceil(Buffer.byteLength(text, 'utf8') / 4));
}

export class OpenAIServer {
  readonly requests: SeenRequest[] = [];
  readonly batches: SeenBatch[] = [];
  readonly files = new Map<string, string>();
  readonly apiKey: string;
  private respond: Responder;
  private readonly label: (user: string, body: ChatBody) => string;
  private readonly options: OpenAIServerOptions;
  private readonly hanging = new Set<http.ServerResponse>();

  private constructor(
    private readonly server: http.Server,
    options: OpenAIServerOptions,
  ) {
    this.options = options;
    this.apiKey = options.apiKey ?? dummyApiKey();
    this.respond = options.respond ?? (() => null);
    this.label = options.label ?? keywordLabel;
  }

  static async start(options: OpenAIServerOptions = {}): Promise<OpenAIServer> {
    const server = http.createServer();
    const instance = new OpenAIServer(server, options);
    server.on('request', (req, res) => instance.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return instance;
  }

  get baseUrl(): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}/v1`;
  }

  /** Requests answered with a billable completion. */
  get billed(): SeenRequest[] {
    return this.requests.filter((r) => r.billed);
  }

  setResponder(respond: Responder): void {
    this.respond = respond;
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.hanging.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (req.url !== undefined && (req.url.startsWith('/v1/files') || req.url.startsWith('/v1/batches'))) {
        void this.handleBatchApi(req, res, Buffer.concat(chunks)).catch((error: unknown) =>
          this.json(res, 500, { error: { message: String(error), type: 'server_error', code: null } }),
        );
        return;
      }
      if (req.method !== 'POST' || !req.url?.startsWith('/v1/chat/completions')) {
        this.json(res, 404, {
          error: { message: `no route ${req.method} ${req.url}`, type: 'invalid_request_error', code: 'not_found' },
        });
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ChatBody;
      const user = [...body.messages].reverse().find((m) => m.role === 'user')?.content ?? '';
      const seen: SeenRequest = {
        index: this.requests.length,
        at: performance.now(),
        body,
        authorization: req.headers.authorization ?? null,
        apiKeyHeader: (req.headers['api-key'] as string | undefined) ?? null,
        user,
        billed: false,
        promptTokens: 0,
        completionTokens: 0,
      };
      this.requests.push(seen);
      const presented = seen.authorization?.replace(/^Bearer /, '') ?? seen.apiKeyHeader;
      if (presented !== this.apiKey) {
        // Like OpenAI, the message quotes the key it was given: the client must never copy it anywhere.
        this.json(res, 401, {
          error: {
            message: `Incorrect API key provided: ${presented ?? '(none)'}.`,
            type: 'invalid_request_error',
            code: 'invalid_api_key',
          },
        });
        return;
      }
      if (body.model === 'no-such-model') {
        this.json(res, 404, {
          error: {
            message: `The model ${body.model} does not exist`,
            type: 'invalid_request_error',
            code: 'model_not_found',
          },
        });
        return;
      }
      const fault = this.respond(seen);
      if (fault?.kind === 'hang') {
        this.hanging.add(res);
        res.on('close', () => this.hanging.delete(res));
        return;
      }
      if (fault?.kind === 'status') {
        const headers: Record<string, string> =
          fault.retryAfter === undefined ? {} : { 'retry-after': fault.retryAfter };
        this.json(
          res,
          fault.status,
          {
            error: {
              message: fault.message ?? `injected ${fault.status}`,
              type: fault.type ?? 'server_error',
              code: fault.code ?? null,
              ...(fault.param !== undefined ? { param: fault.param } : {}),
            },
          },
          headers,
        );
        return;
      }
      if (fault?.kind === 'malformed') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"id": "chatcmpl-broken", "choices": [ {"message": ');
        return;
      }
      const completion = this.completion(
        body,
        user,
        `chatcmpl-${seen.index}`,
        fault?.kind === 'answer' ? fault.content : null,
      );
      seen.billed = true;
      seen.promptTokens = completion.usage.prompt_tokens;
      seen.completionTokens = completion.usage.completion_tokens;
      this.json(res, 200, completion);
    });
  }

  /** The chat completion the server answers for a body (its label from the user message, or `content`). */
  private completion(
    body: ChatBody,
    user: string,
    id: string,
    content: string | null,
  ): { usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number }; [key: string]: unknown } {
    const label = this.label(user, body);
    const json = body.response_format?.type === 'json_schema' || body.response_format?.type === 'json_object';
    const properties = Object.keys(body.response_format?.json_schema?.schema?.properties ?? { label: null });
    const answer = this.options.answer ?? ((_property: string, message: string) => this.label(message, body));
    const object =
      properties.length === 1 && properties[0] === 'label'
        ? { label }
        : Object.fromEntries(properties.map((property) => [property, answer(property, user)]));
    const text = content ?? (json ? JSON.stringify(object) : label);
    const promptTokens = countTokens(JSON.stringify(body.messages));
    const completionTokens = countTokens(text);
    return {
      id,
      object: 'chat.completion',
      created: 1_700_000_000,
      model: `${body.model}-2024-08-06`,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: text, refusal: null },
          logprobs: body.logprobs
            ? {
                content: tokensOf(text).map((token) => ({
                  token,
                  logprob: token.includes(label) || label.includes(token) ? -0.05 : -0.001,
                  bytes: null,
                  top_logprobs: [],
                })),
              }
            : null,
          finish_reason: 'stop',
        },
      ],
      usage: {
        prompt_tokens: promptTokens,
        completion_tokens: completionTokens,
        total_tokens: promptTokens + completionTokens,
      },
    };
  }

  /**
   * The Batch API: upload, create (items answered at once, reported after `batchPolls` retrieves), retrieve,
   * download.
   */
  private async handleBatchApi(req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer): Promise<void> {
    const presented =
      req.headers.authorization?.replace(/^Bearer /, '') ?? (req.headers['api-key'] as string | undefined) ?? null;
    if (presented !== this.apiKey) {
      this.json(res, 401, {
        error: {
          message: `Incorrect API key provided: ${presented ?? '(none)'}.`,
          type: 'invalid_request_error',
          code: 'invalid_api_key',
        },
      });
      return;
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    const content = /^\/v1\/files\/([^/]+)\/content$/.exec(url.pathname);
    if (req.method === 'GET' && content !== null) {
      const text = this.files.get(content[1] as string);
      if (text === undefined)
        return this.json(res, 404, {
          error: { message: 'no such file', type: 'invalid_request_error', code: 'not_found' },
        });
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(text);
      return;
    }
    if (req.method === 'POST' && url.pathname === '/v1/files') {
      const form = await new Response(raw, {
        headers: { 'content-type': req.headers['content-type'] ?? '' },
      }).formData();
      const file = form.get('file');
      if (form.get('purpose') !== 'batch' || file === null || typeof file === 'string')
        return this.json(res, 400, {
          error: { message: 'purpose batch and a file are required', type: 'invalid_request_error', code: null },
        });
      const id = `file-${this.files.size + 1}`;
      this.files.set(id, await file.text());
      return this.json(res, 200, {
        id,
        object: 'file',
        bytes: file.size,
        created_at: 1_700_000_000,
        filename: file.name,
        purpose: 'batch',
        status: 'processed',
      });
    }
    if (req.method === 'POST' && url.pathname === '/v1/batches') {
      const request = JSON.parse(raw.toString('utf8')) as {
        input_file_id: string;
        endpoint: string;
        completion_window: string;
      };
      const input = this.files.get(request.input_file_id);
      if (input === undefined || request.endpoint !== '/v1/chat/completions' || request.completion_window !== '24h')
        return this.json(res, 400, {
          error: { message: 'bad batch request', type: 'invalid_request_error', code: null },
        });
      const lines = input
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as { custom_id: string; body: ChatBody });
      const batch: SeenBatch = {
        id: `batch_${this.batches.length + 1}`,
        inputFileId: request.input_file_id,
        lines,
        status: 'in_progress',
        retrieves: 0,
        outputFileId: null,
        errorFileId: null,
      };
      const output: string[] = [];
      const errors: string[] = [];
      lines.forEach((line, index) => {
        const fault = this.options.batchFault?.(line.custom_id, index) ?? null;
        if (fault === 'missing') return;
        if (fault === 'error_file') {
          errors.push(
            JSON.stringify({
              id: `batch_req_${index}`,
              custom_id: line.custom_id,
              response: null,
              error: {
                code: 'batch_expired',
                message: 'This request could not be executed before the completion window expired.',
              },
            }),
          );
          return;
        }
        if (fault === 'server_error') {
          output.push(
            JSON.stringify({
              id: `batch_req_${index}`,
              custom_id: line.custom_id,
              response: {
                status_code: 500,
                request_id: `req_${index}`,
                body: { error: { message: 'internal error', type: 'server_error' } },
              },
              error: null,
            }),
          );
          return;
        }
        const user = [...line.body.messages].reverse().find((m) => m.role === 'user')?.content ?? '';
        output.push(
          JSON.stringify({
            id: `batch_req_${index}`,
            custom_id: line.custom_id,
            response: {
              status_code: 200,
              request_id: `req_${index}`,
              body: this.completion(line.body, user, `chatcmpl-batch-${index}`, null),
            },
            error: null,
          }),
        );
      });
      if (output.length > 0) {
        batch.outputFileId = `file-${this.files.size + 1}`;
        this.files.set(batch.outputFileId, output.join('\n') + '\n');
      }
      if (errors.length > 0) {
        batch.errorFileId = `file-${this.files.size + 1}`;
        this.files.set(batch.errorFileId, errors.join('\n') + '\n');
      }
      this.batches.push(batch);
      return this.json(res, 200, this.batchObject(batch));
    }
    const retrieve = /^\/v1\/batches\/([^/]+)$/.exec(url.pathname);
    if (req.method === 'GET' && retrieve !== null) {
      const batch = this.batches.find((b) => b.id === retrieve[1]);
      if (batch === undefined)
        return this.json(res, 404, {
          error: { message: 'no such batch', type: 'invalid_request_error', code: 'not_found' },
        });
      batch.retrieves += 1;
      if (batch.retrieves > (this.options.batchPolls ?? 1))
        batch.status = this.options.batchExpires === true ? 'expired' : 'completed';
      return this.json(res, 200, this.batchObject(batch));
    }
    this.json(res, 404, {
      error: { message: `no route ${req.method} ${url.pathname}`, type: 'invalid_request_error', code: 'not_found' },
    });
  }

  private batchObject(batch: SeenBatch): Record<string, unknown> {
    const done = batch.status !== 'in_progress';
    const failed =
      batch.lines.length -
      (done && batch.outputFileId !== null
        ? (this.files.get(batch.outputFileId) ?? '').split('\n').filter((l) => l.includes('"status_code":200')).length
        : 0);
    return {
      id: batch.id,
      object: 'batch',
      endpoint: '/v1/chat/completions',
      input_file_id: batch.inputFileId,
      completion_window: '24h',
      status: batch.status,
      output_file_id: done ? batch.outputFileId : null,
      error_file_id: done ? batch.errorFileId : null,
      created_at: 1_700_000_000,
      request_counts: {
        total: batch.lines.length,
        completed: done ? batch.lines.length - failed : 0,
        failed: done ? failed : 0,
      },
      errors: null,
    };
  }

  private json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }
}

/** Splits content into plausible tokens: JSON punctuation runs, then words in pieces of up to five characters. */
function tokensOf(content: string): string[] {
  const tokens: string[] = [];
  for (const match of content.matchAll(/[{}":,\s]+|[^{}":,\s]+/g)) {
    const piece = match[0];
    if (/^[{}":,\s]+$/.test(piece)) tokens.push(piece);
    else for (let i = 0; i < piece.length; i += 5) tokens.push(piece.slice(i, i + 5));
  }
  return tokens;
}
