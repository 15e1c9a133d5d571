// Decides once per run whether the fallback is on: the codebook must enable it and a key must be found (or the run
// replays offline from the cache); `--no-fallback` turns it off. The reason is logged and kept in the manifest.

import type { Codebook } from '../contracts/codebook.js';
import { fallbackIdentity, type FallbackConfig, type FallbackMode } from '../contracts/fallback-config.js';
import { outputLayout } from '../storage/output-layout.js';
import { describeKeySource, readApiKey } from './api-key.js';

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
}

export async function resolveFallback(codebook: Codebook, options: ResolveFallbackOptions): Promise<FallbackPlan> {
  const config = codebook.fallback;
  if (config === null) return { active: false, reason: 'not enabled in the codebook' };
  if (options.disabled === true) return { active: false, reason: 'disabled with --no-fallback' };
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
