// A real HTTP server on loopback that speaks the Chat Completions protocol (POST /v1/chat/completions), for the
// fallback tests: it checks the key, answers with a label chosen from the user message (JSON for json_schema /
// json_object requests, plain text otherwise, with usage and logprobs), and injects faults on demand.

import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault =
  /** An HTTP error status with an OpenAI-style error body; `retryAfter` sets the Retry-After header verbatim. */
  | { readonly kind: 'status'; readonly status: number; readonly retryAfter?: string; readonly code?: string; readonly message?: string }
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
  readonly response_format?: { readonly type: string; readonly json_schema?: { readonly schema?: { readonly properties?: { readonly label?: { readonly enum?: readonly string[] } } } } };
  readonly logprobs?: boolean;
  readonly [key: string]: unknown;
}

export type Responder = (request: SeenRequest) => Fault | null;

export interface OpenAIServerOptions {
  /** The key the server accepts (as `Authorization: Bearer` or `api-key`). Default: a fresh dummy key. */
  readonly apiKey?: string;
  /** Faults per request; null answers normally. Default: always normal. */
  readonly respond?: Responder;
  /** The label for a user message. Default: keyword rules (good/love/great → positive, bad/hate/awful → negative, else neutral). */
  readonly label?: (user: string) => string;
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
  readonly apiKey: string;
  private respond: Responder;
  private readonly label: (user: string) => string;
  private readonly hanging = new Set<http.ServerResponse>();

  private constructor(
    private readonly server: http.Server,
    options: OpenAIServerOptions,
  ) {
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
      if (req.method !== 'POST' || !req.url?.startsWith('/v1/chat/completions')) {
        this.json(res, 404, { error: { message: `no route ${req.method} ${req.url}`, type: 'invalid_request_error', code: 'not_found' } });
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
        this.json(res, 401, { error: { message: `Incorrect API key provided: ${presented ?? '(none)'}.`, type: 'invalid_request_error', code: 'invalid_api_key' } });
        return;
      }
      if (body.model === 'no-such-model') {
        this.json(res, 404, { error: { message: `The model ${body.model} does not exist`, type: 'invalid_request_error', code: 'model_not_found' } });
        return;
      }
      const fault = this.respond(seen);
      if (fault?.kind === 'hang') {
        this.hanging.add(res);
        res.on('close', () => this.hanging.delete(res));
        return;
      }
      if (fault?.kind === 'status') {
        const headers: Record<string, string> = fault.retryAfter === undefined ? {} : { 'retry-after': fault.retryAfter };
        this.json(res, fault.status, { error: { message: fault.message ?? `injected ${fault.status}`, type: 'server_error', code: fault.code ?? null } }, headers);
        return;
      }
      if (fault?.kind === 'malformed') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"id": "chatcmpl-broken", "choices": [ {"message": ');
        return;
      }
      const label = this.label(user);
      const json = body.response_format?.type === 'json_schema' || body.response_format?.type === 'json_object';
      const content = fault?.kind === 'answer' ? fault.content : json ? JSON.stringify({ label }) : label;
      seen.billed = true;
      seen.promptTokens = countTokens(JSON.stringify(body.messages));
      seen.completionTokens = countTokens(content);
      this.json(res, 200, {
        id: `chatcmpl-${seen.index}`,
        object: 'chat.completion',
        created: 1_700_000_000,
        model: `${body.model}-2024-08-06`,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content, refusal: null },
            logprobs: body.logprobs ? { content: tokensOf(content).map((token) => ({ token, logprob: token.includes(label) || label.includes(token) ? -0.05 : -0.001, bytes: null, top_logprobs: [] })) } : null,
            finish_reason: 'stop',
          },
        ],
        usage: { prompt_tokens: seen.promptTokens, completion_tokens: seen.completionTokens, total_tokens: seen.promptTokens + seen.completionTokens },
      });
    });
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
