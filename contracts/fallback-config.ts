// The codebook's `fallback` section (closed-model fallback for low-confidence documents): raw YAML → zod schema
// with defaults → compiled, frozen FallbackConfig. The routing rules' logic is fallback/routing.ts, pricing
// fallback/pricing.ts.

import { createHash } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { RescaleError } from './errors.js';
import { issueLines, type FieldLocator } from './validation-issues.js';

/** Where the API key comes from. Never the key itself: a codebook is shared, versioned and written into manifests. */
export type ApiKeySource =
  { readonly kind: 'env'; readonly name: string } | { readonly kind: 'file'; readonly path: string };

/**
 * Route when any given rule fires: confidence < t, margin < t, entropy > t (same orientation as `thresholdSweep`),
 * label mass < t (the model puts little probability on any label: it does not see the document as this task),
 * unscored mass > t (a list multi-label question's walk left that much probability unscored). Each rule reads the
 * question's own column of that name, so on a multi-label question margin_below is "a label's P(yes) within t of its
 * threshold" (per_label) or "the top set ahead of the second by less than t" (list), and confidence_below on a list
 * question is its set probability; entropy is not defined there and never fires.
 */
export interface RoutingRules {
  readonly confidenceBelow: number | null;
  readonly marginBelow: number | null;
  readonly entropyAbove: number | null;
  readonly labelMassBelow: number | null;
  /** List multi-label questions only (`fallback.routing.unscored_mass_above`); null: not set. */
  readonly unscoredMassAbove: number | null;
}

export type RouteReason = 'confidence' | 'margin' | 'entropy' | 'label_mass' | 'unscored_mass';

export type FallbackResponseFormat = 'json_schema' | 'json_object' | 'text';

/** The codebook fields that say where requests go and where the key comes from (a cluster run may set none). */
export const CONNECTION_FIELDS = ['base_url', 'api_key_env', 'api_key_file', 'auth_header', 'api_version'] as const;
export type ConnectionField = (typeof CONNECTION_FIELDS)[number];

export interface FallbackConfig {
  readonly model: string;
  /**
   * The name of an endpoint in an operator's endpoint list (`fallback.endpoint`), which gives the URL, the key source,
   * the header and the API version; null when the codebook gives them itself. Until the name is resolved
   * (fallback/endpoint-list.ts, `bindEndpoint`) `baseUrl` is empty and the config can call nothing.
   */
  readonly endpoint: string | null;
  /** The connection fields the codebook itself set (a cluster coordinator refuses them). */
  readonly connectionFields: readonly ConnectionField[];
  /** OpenAI-compatible base URL, e.g. https://api.openai.com/v1, http://localhost:8000/v1 (vLLM, llama.cpp). */
  readonly baseUrl: string;
  readonly apiKey: ApiKeySource;
  /** `authorization` sends `Authorization: Bearer <key>`; `api-key` sends Azure's `api-key: <key>` header. */
  readonly authHeader: 'authorization' | 'api-key';
  /** Sent as the `api-version` query parameter (Azure deployment URLs); null sends none. */
  readonly apiVersion: string | null;
  /** USD per million tokens. */
  readonly price: { readonly inputPerMillion: number; readonly outputPerMillion: number; readonly batchFactor: number };
  /** Hard caps over the whole output's fallback spending; null = no cap of that kind (at least one is set). */
  readonly budget: { readonly usd: number | null; readonly requests: number | null };
  readonly rateLimit: { readonly requestsPerMinute: number | null; readonly tokensPerMinute: number | null };
  readonly routing: RoutingRules;
  /**
   * A multi-question codebook's own rules per question (`fallback.questions.<name>.routing`), replacing `routing` for
   * that question; null: the question is never routed (`enabled: false`). Questions not named use `routing`.
   */
  readonly questions: Readonly<Record<string, RoutingRules | null>>;
  readonly timeoutMs: number;
  /** Retries of one request after 429, 5xx, timeouts and unreadable responses. */
  readonly maxRetries: number;
  /** Further requests (with a correction) after an answer outside the label set, before `fallback_invalid`. */
  readonly invalidRetries: number;
  /** Requests in flight at once from one process. */
  readonly concurrency: number;
  readonly maxOutputTokens: number;
  readonly maxTokensField: 'max_completion_tokens' | 'max_tokens';
  /** null: not sent (some reasoning models refuse it). */
  readonly temperature: number | null;
  readonly seed: number | null;
  readonly logprobs: boolean;
  readonly responseFormat: FallbackResponseFormat;
  /** Overrides of the codebook prompt for the fallback; null = use the codebook's. */
  readonly prompt: { readonly system: string | null; readonly template: string | null };
  /** Absolute; null = beside the run's output (`<output>.fallback-cache`). */
  readonly cacheDir: string | null;
}

export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** An endpoint's name in an endpoint list, and in a codebook's `fallback.endpoint`. */
export const ENDPOINT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** An http(s) URL with a host. */
export const HTTP_URL = /^https?:\/\/[^\s/]+/;
const FORBIDDEN_KEY_FIELDS = ['api_key', 'apiKey', 'key', 'token', 'secret', 'password'];

const probability = z.number().min(0).max(1);

const routingSchema = z
  .strictObject({
    confidence_below: probability.optional(),
    margin_below: probability.optional(),
    entropy_above: z.number().finite().nonnegative().optional(),
    label_mass_below: probability.optional(),
    unscored_mass_above: probability.optional(),
  })
  .refine(
    (r) =>
      r.confidence_below !== undefined ||
      r.margin_below !== undefined ||
      r.entropy_above !== undefined ||
      r.label_mass_below !== undefined ||
      r.unscored_mass_above !== undefined,
    'give at least one of confidence_below, margin_below, entropy_above, label_mass_below, unscored_mass_above',
  );

/** One question's override: its own rules, or `enabled: false` to never route it. */
const questionRoutingSchema = z
  .strictObject({ enabled: z.boolean().default(true), routing: routingSchema.optional() })
  .refine(
    (q) => !q.enabled || q.routing !== undefined,
    'give the question its own "routing" rules, or "enabled: false" to never route it',
  );

const rawSchema = z
  .strictObject({
    enabled: z.literal(true),
    model: z.string().min(1, 'name the model (or Azure deployment), e.g. "gpt-4o-2024-08-06"'),
    endpoint: z
      .string()
      .regex(ENDPOINT_NAME, 'name an endpoint of the endpoint list, e.g. "openai" (letters, digits, _ . -)')
      .optional(),
    base_url: z
      .string()
      .regex(HTTP_URL, 'give an http(s) URL such as https://api.openai.com/v1')
      .default('https://api.openai.com/v1'),
    api_key_env: z.string().regex(ENV_NAME, 'an environment variable name such as OPENAI_API_KEY').optional(),
    api_key_file: z.string().min(1).optional(),
    auth_header: z.enum(['authorization', 'api-key']).default('authorization'),
    api_version: z.string().min(1).optional(),
    price: z.strictObject({
      input_per_million: z.number().finite().nonnegative(),
      output_per_million: z.number().finite().nonnegative(),
      /** Share of the price the Batch API charges (OpenAI: half). */
      batch_factor: z.number().finite().positive().max(1).default(0.5),
    }),
    budget: z
      .strictObject({
        usd: z.number().finite().positive().optional(),
        requests: z.number().int().positive().optional(),
      })
      .refine((b) => b.usd !== undefined || b.requests !== undefined, 'give budget.usd, budget.requests or both'),
    rate_limit: z
      .strictObject({
        requests_per_minute: z.number().finite().positive().optional(),
        tokens_per_minute: z.number().finite().positive().optional(),
      })
      .default({}),
    routing: routingSchema,
    /** Per-question routing of a multi-question codebook, by question name (checked against the questions there). */
    questions: z.record(z.string(), questionRoutingSchema).default({}),
    timeout_seconds: z.number().finite().positive().default(60),
    max_retries: z.number().int().nonnegative().max(20).default(6),
    invalid_retries: z.number().int().nonnegative().max(5).default(1),
    concurrency: z.number().int().positive().max(256).default(8),
    max_output_tokens: z.number().int().positive().default(64),
    max_tokens_field: z.enum(['max_completion_tokens', 'max_tokens']).default('max_completion_tokens'),
    temperature: z.number().min(0).max(2).nullable().default(0),
    seed: z.number().int().optional(),
    logprobs: z.boolean().default(true),
    response_format: z.enum(['json_schema', 'json_object', 'text']).default('json_schema'),
    prompt: z
      .strictObject({
        system: z.string().optional(),
        template: z.string().min(1).optional(),
      })
      .default({}),
    cache_dir: z.string().min(1).optional(),
  })
  .superRefine((value, ctx) => {
    if (value.api_key_env !== undefined && value.api_key_file !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['api_key_file'], message: 'give api_key_env or api_key_file, not both' });
    }
  });

/** Connection settings of a named endpoint before it is resolved: nothing can be called with them. */
const UNBOUND = Object.freeze({
  baseUrl: '',
  apiKey: Object.freeze({ kind: 'env' as const, name: '' }),
  authHeader: 'authorization' as const,
  apiVersion: null,
});

/** A question's rules: its own (`fallback.questions.<name>.routing`), else the codebook's; null: never routed. */
export function questionRules(config: FallbackConfig, question: string): RoutingRules | null {
  const own = config.questions[question];
  return own === undefined ? config.routing : own;
}

export type FallbackConfigInput = z.input<typeof rawSchema>;

/**
 * Validates the codebook's `fallback` section. Absent, or `enabled: false` → null (the rest is then not checked,
 * so a disabled section may be a sketch). Relative `api_key_file` and `cache_dir` resolve against `baseDir`.
 */
export function parseFallbackConfig(
  raw: unknown,
  options: { source?: string; baseDir?: string; promptFormat?: 'chat' | 'raw'; locate?: FieldLocator } = {},
): FallbackConfig | null {
  const source = options.source ?? 'codebook';
  const fail = (field: string, message: string): never => {
    throw new RescaleError('CODEBOOK_INVALID', `${source}: field "${field}": ${message}`);
  };
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) fail('fallback', 'must be a mapping with at least "enabled"');
  const record = raw as Record<string, unknown>;
  for (const name of FORBIDDEN_KEY_FIELDS) {
    if (name in record) {
      fail(
        `fallback.${name}`,
        'never put an API key in the codebook (it is shared and copied into manifests); name an environment variable ' +
          'with api_key_env, or a file with api_key_file',
      );
    }
  }
  if (typeof record.enabled !== 'boolean') fail('fallback.enabled', 'say enabled: true or enabled: false');
  if (record.enabled === false) return null;

  const connectionFields = CONNECTION_FIELDS.filter((name) => record[name] !== undefined);
  if (record.endpoint !== undefined && connectionFields.length > 0) {
    fail(
      `fallback.${connectionFields[0]}`,
      'the endpoint named by "endpoint" gives the URL, the key, the header and the API version; remove ' +
        `${connectionFields.join(', ')} from the fallback section`,
    );
  }
  const parsed = rawSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = issueLines(parsed.error.issues, ['fallback'], options.locate ?? null);
    throw new RescaleError('CODEBOOK_INVALID', `${source} has an invalid fallback section:\n  ${lines.join('\n  ')}`);
  }
  const value = parsed.data;
  if (options.promptFormat === 'raw' && value.prompt.template === undefined) {
    fail(
      'fallback.prompt.template',
      'the codebook prompt is in raw format (model-specific text); give the fallback its own chat template with {text}',
    );
  }
  if (value.prompt.template !== undefined && !/\{text\}/.test(value.prompt.template)) {
    fail('fallback.prompt.template', 'the template must contain the document variable {text}');
  }
  const baseDir = options.baseDir ?? process.cwd();
  const apiKey: ApiKeySource =
    value.api_key_file !== undefined
      ? Object.freeze({ kind: 'file' as const, path: path.resolve(baseDir, value.api_key_file) })
      : Object.freeze({ kind: 'env' as const, name: value.api_key_env ?? 'OPENAI_API_KEY' });
  const connection =
    value.endpoint !== undefined
      ? UNBOUND
      : {
          baseUrl: value.base_url.replace(/\/+$/, ''),
          apiKey,
          authHeader: value.auth_header,
          apiVersion: value.api_version ?? null,
        };
  return Object.freeze({
    model: value.model,
    endpoint: value.endpoint ?? null,
    connectionFields: Object.freeze(connectionFields),
    ...connection,
    price: Object.freeze({
      inputPerMillion: value.price.input_per_million,
      outputPerMillion: value.price.output_per_million,
      batchFactor: value.price.batch_factor,
    }),
    budget: Object.freeze({ usd: value.budget.usd ?? null, requests: value.budget.requests ?? null }),
    rateLimit: Object.freeze({
      requestsPerMinute: value.rate_limit.requests_per_minute ?? null,
      tokensPerMinute: value.rate_limit.tokens_per_minute ?? null,
    }),
    routing: compileRules(value.routing),
    questions: Object.freeze(
      Object.fromEntries(
        Object.entries(value.questions).map(([name, q]) => [
          name,
          q.enabled && q.routing !== undefined ? compileRules(q.routing) : null,
        ]),
      ),
    ),
    timeoutMs: Math.round(value.timeout_seconds * 1000),
    maxRetries: value.max_retries,
    invalidRetries: value.invalid_retries,
    concurrency: value.concurrency,
    maxOutputTokens: value.max_output_tokens,
    maxTokensField: value.max_tokens_field,
    temperature: value.temperature,
    seed: value.seed ?? null,
    logprobs: value.logprobs,
    responseFormat: value.response_format,
    prompt: Object.freeze({ system: value.prompt.system ?? null, template: value.prompt.template ?? null }),
    cacheDir: value.cache_dir === undefined ? null : path.resolve(baseDir, value.cache_dir),
  });
}

function compileRules(rules: z.output<typeof routingSchema>): RoutingRules {
  return Object.freeze({
    confidenceBelow: rules.confidence_below ?? null,
    marginBelow: rules.margin_below ?? null,
    entropyAbove: rules.entropy_above ?? null,
    labelMassBelow: rules.label_mass_below ?? null,
    unscoredMassAbove: rules.unscored_mass_above ?? null,
  });
}

/**
 * Rules as the fallback identity hashes them: an unset unscored-mass rule left out, so codebooks written before it
 * existed keep their identity.
 */
function identityRules(rules: RoutingRules | null): Omit<RoutingRules, 'unscoredMassAbove'> | RoutingRules | null {
  if (rules === null || rules.unscoredMassAbove !== null) return rules;
  const { unscoredMassAbove: _unset, ...earlier } = rules;
  return earlier;
}

/**
 * Hash of the settings that can change a fallback answer or which documents are routed (model, endpoint URL and API
 * version, routing, prompt, request parameters); mixed into shard ids so a changed fallback never reuses finished
 * shards. Budget, rate limits, concurrency, timeouts and retries only decide whether and when a call is made, so they
 * are left out; so are the key's source and the endpoint's name (a named endpoint hashes as the URL it resolves to).
 * A named endpoint must be resolved first: its identity depends on the URL the endpoint list gives it.
 */
export function fallbackIdentity(config: FallbackConfig): string {
  if (config.baseUrl === '') {
    throw new RescaleError(
      'INTERNAL',
      `the fallback's endpoint "${config.endpoint ?? ''}" has no identity until it is resolved against an ` +
        'endpoint list',
    );
  }
  // Without a label-mass rule the routing part is as before that rule existed: earlier runs keep their identity.
  const { labelMassBelow, unscoredMassAbove, ...earlierRules } = config.routing;
  const identity = {
    model: config.model,
    baseUrl: config.baseUrl,
    apiVersion: config.apiVersion,
    routing: labelMassBelow === null && unscoredMassAbove === null ? earlierRules : identityRules(config.routing),
    // Only when set, so codebooks without per-question rules keep their identity.
    ...(Object.keys(config.questions).length > 0
      ? {
          questions: Object.fromEntries(
            Object.entries(config.questions).map(([name, rules]) => [name, identityRules(rules)]),
          ),
        }
      : {}),
    invalidRetries: config.invalidRetries,
    maxOutputTokens: config.maxOutputTokens,
    maxTokensField: config.maxTokensField,
    temperature: config.temperature,
    seed: config.seed,
    logprobs: config.logprobs,
    responseFormat: config.responseFormat,
    prompt: config.prompt,
  };
  return createHash('sha256').update(JSON.stringify(identity)).digest('hex');
}

/** The endpoint for messages: its URL and where that was set (the codebook, or a named endpoint of a list). */
export function describeEndpoint(config: FallbackConfig): string {
  return config.endpoint === null
    ? `${config.baseUrl} (codebook field "fallback.base_url")`
    : `${config.baseUrl} (endpoint "${config.endpoint}" of the endpoint list)`;
}

/** How one run uses the fallback, decided once at the edge (codebook, key, CLI flags). */
export type FallbackMode =
  /** Calls the API for routed documents not in the cache. */
  | 'live'
  /**
   * Replays from the cache only: no network, no key needed; routed documents without a cached answer get over_budget.
   */
  | 'offline';
