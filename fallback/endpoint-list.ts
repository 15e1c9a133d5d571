// The operator's list of closed-model endpoints (`--endpoints FILE`): where requests may go, which models each
// allows, where the coordinator reads each key, and the limits it imposes. A codebook names an endpoint
// (`fallback.endpoint`) and never chooses a URL or a key source itself, so whoever submits a run cannot send the
// coordinator's secrets elsewhere. Parsed once at start, frozen; errors name the file, the field and its line.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { RescaleError } from '../contracts/errors.js';
import {
  ENDPOINT_NAME,
  ENV_NAME,
  HTTP_URL,
  type ApiKeySource,
  type FallbackConfig,
} from '../contracts/fallback-config.js';
import { fieldAt, issueLines } from '../contracts/validation-issues.js';
import { parseYamlSource } from '../contracts/yaml-source.js';
import { describeKeySource, readApiKey } from './api-key.js';

export interface Endpoint {
  readonly name: string;
  readonly baseUrl: string;
  /** The models (or Azure deployments) a codebook may ask this endpoint for. */
  readonly models: readonly string[];
  readonly apiKey: ApiKeySource;
  readonly authHeader: 'authorization' | 'api-key';
  readonly apiVersion: string | null;
  /** A run's `budget.usd` must be set and at most this; null: no cap. */
  readonly maxBudgetUsd: number | null;
  /** A run's rate limits are lowered to these; null: as the codebook says. */
  readonly maxRequestsPerMinute: number | null;
  readonly maxTokensPerMinute: number | null;
}

const FIELDS_DOC = 'the endpoint list fields (docs/cluster.md, "Endpoint list")';

const endpointSchema = z
  .strictObject({
    name: z.string().regex(ENDPOINT_NAME, 'name the endpoint with letters, digits, _ . - (at most 64), e.g. "openai"'),
    base_url: z.string().regex(HTTP_URL, 'give an http(s) URL such as https://api.openai.com/v1'),
    models: z
      .array(z.string().min(1, 'a model name may not be empty'))
      .min(1, 'list the models (or Azure deployments) codebooks may ask for, e.g. [gpt-4o-2024-08-06]'),
    api_key_env: z.string().regex(ENV_NAME, 'an environment variable name such as OPENAI_API_KEY').optional(),
    api_key_file: z.string().min(1, 'give the path of a file holding only the key').optional(),
    auth_header: z.enum(['authorization', 'api-key']).default('authorization'),
    api_version: z.string().min(1).optional(),
    limits: z
      .strictObject({
        max_budget_usd: z.number().finite().positive().optional(),
        max_requests_per_minute: z.number().finite().positive().optional(),
        max_tokens_per_minute: z.number().finite().positive().optional(),
      })
      .default({}),
  })
  .superRefine((value, ctx) => {
    if ((value.api_key_env === undefined) === (value.api_key_file === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['api_key_env'],
        message: 'give exactly one of api_key_env or api_key_file: where the coordinator reads this endpoint’s key',
      });
    }
  });

const listSchema = z.strictObject({
  endpoints: z.array(endpointSchema).min(1, 'list at least one endpoint'),
});

export class EndpointList {
  private constructor(
    /** The file the list was read from (absolute). */
    readonly file: string,
    private readonly byName: ReadonlyMap<string, Endpoint>,
  ) {}

  /** Reads and validates the list; any problem is a CONFIG_INVALID naming the file and the field. */
  static async load(file: string): Promise<EndpointList> {
    const absolute = path.resolve(file);
    let text: string;
    try {
      text = await readFile(absolute, 'utf8');
    } catch (cause) {
      throw new RescaleError(
        'CONFIG_INVALID',
        `cannot read the endpoint list ${absolute} (--endpoints): ` +
          `${(cause as NodeJS.ErrnoException).code ?? String(cause)}`,
        { cause },
      );
    }
    return EndpointList.parse(text, absolute);
  }

  /** The list from its YAML text; relative `api_key_file` paths resolve against the file's folder. */
  static parse(text: string, file: string): EndpointList {
    const { raw, locate } = parseYamlSource(text, file, {
      code: 'CONFIG_INVALID',
      what: 'an endpoint list',
      check: 'the --endpoints path',
    });
    const parsed = listSchema.safeParse(raw);
    if (!parsed.success) {
      const lines = issueLines(parsed.error.issues, [], locate, FIELDS_DOC);
      throw new RescaleError('CONFIG_INVALID', `${file} is not a valid endpoint list:\n  ${lines.join('\n  ')}`);
    }
    const baseDir = path.dirname(file);
    const byName = new Map<string, Endpoint>();
    for (const [index, entry] of parsed.data.endpoints.entries()) {
      if (byName.has(entry.name)) {
        throw new RescaleError(
          'CONFIG_INVALID',
          `${file}: ${fieldAt(['endpoints', index, 'name'], locate)}: the name "${entry.name}" is given to an ` +
            'earlier endpoint too; give each endpoint its own name',
        );
      }
      const apiKey: ApiKeySource =
        entry.api_key_file !== undefined
          ? Object.freeze({ kind: 'file' as const, path: path.resolve(baseDir, entry.api_key_file) })
          : Object.freeze({ kind: 'env' as const, name: entry.api_key_env ?? '' });
      byName.set(
        entry.name,
        Object.freeze({
          name: entry.name,
          baseUrl: entry.base_url.replace(/\/+$/, ''),
          models: Object.freeze([...entry.models]),
          apiKey,
          authHeader: entry.auth_header,
          apiVersion: entry.api_version ?? null,
          maxBudgetUsd: entry.limits.max_budget_usd ?? null,
          maxRequestsPerMinute: entry.limits.max_requests_per_minute ?? null,
          maxTokensPerMinute: entry.limits.max_tokens_per_minute ?? null,
        }),
      );
    }
    return new EndpointList(file, byName);
  }

  /** The endpoints' names, in the file's order (not secret: they are told to whoever submits a run). */
  get names(): string[] {
    return [...this.byName.keys()];
  }

  endpoint(name: string): Endpoint | undefined {
    return this.byName.get(name);
  }

  /**
   * The codebook's fallback with its named endpoint resolved: URL, key source, header and API version from the list,
   * rate limits lowered to the endpoint's caps. An unknown name, a model the endpoint does not allow or a budget over
   * its cap is a CODEBOOK_INVALID naming the field (`source`: the codebook, for messages).
   */
  bind(config: FallbackConfig, source: string): FallbackConfig {
    const fail = (field: string, message: string): never => {
      throw new RescaleError('CODEBOOK_INVALID', `${source}: field "fallback.${field}": ${message}`);
    };
    if (config.endpoint === null) return fail('endpoint', `name one of the endpoints: ${this.describeNames()}`);
    const endpoint = this.byName.get(config.endpoint);
    if (endpoint === undefined) {
      return fail(
        'endpoint',
        `no endpoint "${config.endpoint}" in the endpoint list; use one of: ${this.describeNames()}`,
      );
    }
    if (!endpoint.models.includes(config.model)) {
      fail('model', `endpoint "${endpoint.name}" does not allow this model; allowed: ${endpoint.models.join(', ')}`);
    }
    const { maxBudgetUsd } = endpoint;
    if (maxBudgetUsd !== null && (config.budget.usd === null || config.budget.usd > maxBudgetUsd)) {
      fail(
        'budget.usd',
        `endpoint "${endpoint.name}" allows a run at most ${maxBudgetUsd} USD; set budget.usd to that or less`,
      );
    }
    return Object.freeze({
      ...config,
      baseUrl: endpoint.baseUrl,
      apiKey: endpoint.apiKey,
      authHeader: endpoint.authHeader,
      apiVersion: endpoint.apiVersion,
      rateLimit: Object.freeze({
        requestsPerMinute: lowest(config.rateLimit.requestsPerMinute, endpoint.maxRequestsPerMinute),
        tokensPerMinute: lowest(config.rateLimit.tokensPerMinute, endpoint.maxTokensPerMinute),
      }),
    });
  }

  /** One line per endpoint whose key cannot be read now, naming the endpoint and the key's source (never the key). */
  async keyWarnings(env: Readonly<Record<string, string | undefined>>): Promise<string[]> {
    const warnings: string[] = [];
    for (const endpoint of this.byName.values()) {
      const lookup = await readApiKey(endpoint.apiKey, env);
      if (!lookup.found) {
        warnings.push(
          `endpoint "${endpoint.name}" of ${this.file}: ${lookup.reason}; runs that name it are refused while ` +
            `${describeKeySource(endpoint.apiKey)} gives no key`,
        );
      } else if (lookup.warning !== null) {
        warnings.push(`endpoint "${endpoint.name}" of ${this.file}: ${lookup.warning}`);
      }
    }
    return warnings;
  }

  private describeNames(): string {
    return this.names.join(', ');
  }
}

function lowest(value: number | null, cap: number | null): number | null {
  if (cap === null) return value;
  return value === null ? cap : Math.min(value, cap);
}
