// Decides once per run whether the fallback is on: the codebook must enable it and a key must be found (or the run
// replays offline from the cache); `--no-fallback` turns it off. The reason is logged and kept in the manifest.
// A codebook that names an endpoint gets its URL and key source from the operator's endpoint list, here.

import type { Codebook } from '../contracts/codebook.js';
import { RescaleError } from '../contracts/errors.js';
import { fallbackIdentity, type FallbackConfig, type FallbackMode } from '../contracts/fallback-config.js';
import { outputLayout } from '../storage/output-layout.js';
import { describeKeySource, readApiKey } from './api-key.js';
import type { EndpointList } from './endpoint-list.js';

export type FallbackPlan =
  | { readonly active: false; readonly reason: string }
  | {
      readonly active: true;
      readonly mode: FallbackMode;
      readonly config: FallbackConfig;
      /** null in offline mode. Never logged or written. */
      readonly apiKey: string | null;
      /** Mixed into shard ids (planRun). */
      readonly identity: string;
      /** The key's source, for messages: "environment variable OPENAI_API_KEY" or "key file …". */
      readonly keySource: string;
      readonly warning: string | null;
    };

export interface ResolveFallbackOptions {
  /** `--no-fallback`. */
  readonly disabled?: boolean;
  /** `--fallback-offline`: answers only from the cache; no key, no network. */
  readonly offline?: boolean;
  /** Where env-var keys are looked up (the CLI passes its parsed environment's variables). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The operator's endpoints (`--endpoints FILE`), which a codebook's `fallback.endpoint` names; absent: none. */
  readonly endpoints?: EndpointList | null;
  /**
   * Cluster mode: the URL and the key source come only from `endpoints`; a codebook that sets its own (or relies on
   * the default URL and key variable) is refused, since its author is not the one whose secrets would be sent.
   */
  readonly endpointsOnly?: boolean;
}

export async function resolveFallback(codebook: Codebook, options: ResolveFallbackOptions): Promise<FallbackPlan> {
  if (codebook.fallback === null) return { active: false, reason: 'not enabled in the codebook' };
  if (options.disabled === true) return { active: false, reason: 'disabled with --no-fallback' };
  const config = connectedConfig(codebook.source ?? 'codebook', codebook.fallback, options);
  const base = {
    active: true as const,
    config,
    identity: fallbackIdentity(config),
    keySource: describeKeySource(config.apiKey),
  };
  if (options.offline === true) return { ...base, mode: 'offline', apiKey: null, warning: null };
  const lookup = await readApiKey(config.apiKey, options.env);
  if (!lookup.found) return { active: false, reason: `no API key: ${lookup.reason}` };
  return { ...base, mode: 'live', apiKey: lookup.key, warning: lookup.warning };
}

/** The codebook's fallback with the URL and key source it will use, or a CODEBOOK_INVALID naming the field. */
function connectedConfig(source: string, config: FallbackConfig, options: ResolveFallbackOptions): FallbackConfig {
  const endpoints = options.endpoints ?? null;
  const listed =
    endpoints === null
      ? 'no endpoint list is given (the operator starts the coordinator with --endpoints FILE; local mode takes ' +
        '--endpoints FILE too); until then submit with --no-fallback'
      : `the endpoints are: ${endpoints.names.join(', ')}`;
  if (options.endpointsOnly === true && config.endpoint === null) {
    const [field] = config.connectionFields;
    throw new RescaleError(
      'CODEBOOK_INVALID',
      `${source}: field "fallback.${field ?? 'endpoint'}": a cluster run's fallback URL and API key are the ` +
        'coordinator’s: remove base_url, api_key_env, api_key_file, auth_header and api_version from the fallback ' +
        `section and name one of the coordinator's endpoints with "endpoint:"; ${listed}`,
    );
  }
  if (config.endpoint === null) return config;
  if (endpoints === null) {
    throw new RescaleError(
      'CODEBOOK_INVALID',
      `${source}: field "fallback.endpoint": names an endpoint, but ${listed}`,
    );
  }
  return endpoints.bind(config, source);
}

/**
 * The fallback's response cache and audit log: beside the output unless the codebook names a cache folder (both
 * are kept by --overwrite: money was spent). Local mode and the cluster coordinator use the same places.
 */
export function fallbackPathsFor(
  output: string,
  config: FallbackConfig | null,
): { cacheDir: string; auditFile: string } {
  const layout = outputLayout(output);
  return { cacheDir: config?.cacheDir ?? layout.fallbackCacheDir, auditFile: layout.fallbackAuditFile };
}
