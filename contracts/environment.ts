// The only place rescale reads environment variables: the CLI parses them once into a frozen Environment and
// passes it down; everything else receives parsed settings. Lint forbids `process.env` outside this file.

import { z } from 'zod';
import { RescaleError } from './errors.js';

/** Environment variables rescale reads itself (the fallback's key variable is named by the codebook). */
export const ENVIRONMENT_VARIABLES = {
  redisUrl: 'RESCALE_REDIS_URL',
  coordinator: 'RESCALE_COORDINATOR',
  tokenFile: 'RESCALE_TOKEN_FILE',
  token: 'RESCALE_TOKEN',
  llamaBuild: 'RESCALE_LLAMA_BUILD',
} as const;

export type LlamaBuild = 'auto' | 'prebuilt';

export interface Environment {
  /** RESCALE_REDIS_URL: cluster services' Redis when --redis is not given (keeps the password out of `ps`). */
  readonly redisUrl: string | undefined;
  /** RESCALE_COORDINATOR: HOST:PORT of the coordinator for the client verbs, when --coordinator is not given. */
  readonly coordinator: string | undefined;
  /** RESCALE_TOKEN_FILE: file holding the coordinator token, when --token-file is not given. */
  readonly tokenFile: string | undefined;
  /** RESCALE_TOKEN: the coordinator token itself (trimmed), when no token file is named. */
  readonly token: string | undefined;
  /** RESCALE_LLAMA_BUILD: "auto" (default: a `npm run build:llama` build when present) or "prebuilt". */
  readonly llamaBuild: LlamaBuild;
  /**
   * Every variable, as a frozen snapshot: the codebook names the variable holding the fallback's API key, so the
   * key lookup cannot be limited to the names above.
   */
  readonly variables: Readonly<Record<string, string | undefined>>;
}

// An empty variable counts as unset, as `export RESCALE_TOKEN=` is how shells unset a value for one command.
const optionalText = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value === '' ? undefined : value));

const schema = z.object({
  [ENVIRONMENT_VARIABLES.redisUrl]: optionalText,
  [ENVIRONMENT_VARIABLES.coordinator]: optionalText,
  [ENVIRONMENT_VARIABLES.tokenFile]: optionalText,
  [ENVIRONMENT_VARIABLES.token]: z
    .string()
    .optional()
    .transform((value) => (value === undefined || value.trim() === '' ? undefined : value.trim())),
  [ENVIRONMENT_VARIABLES.llamaBuild]: z
    .enum(['auto', 'prebuilt'], { error: 'use "auto" or "prebuilt"' })
    .default('auto'),
});

/** Parses and freezes an environment; errors name the variable, its value and what to use instead. */
export function parseEnvironment(source: Readonly<Record<string, string | undefined>>): Environment {
  const parsed = schema.safeParse(source);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    // Only the enum can fail (every variable is a string), so quoting the value never shows a token.
    const name = String(issue?.path[0] ?? 'environment');
    const problem = issue?.message ?? 'see README.md';
    throw new RescaleError('CONFIG_INVALID', `environment variable ${name} is "${source[name] ?? ''}"; ${problem}`);
  }
  const values = parsed.data;
  return Object.freeze({
    redisUrl: values[ENVIRONMENT_VARIABLES.redisUrl],
    coordinator: values[ENVIRONMENT_VARIABLES.coordinator],
    tokenFile: values[ENVIRONMENT_VARIABLES.tokenFile],
    token: values[ENVIRONMENT_VARIABLES.token],
    llamaBuild: values[ENVIRONMENT_VARIABLES.llamaBuild],
    variables: Object.freeze({ ...source }),
  });
}

/** The process's environment, parsed: called once, by the CLI entry. */
export function readEnvironment(): Environment {
  return parseEnvironment(process.env);
}

/** RESCALE_LLAMA_BUILD alone, for tests and scripts that load llama.cpp themselves; rescale's own code is handed it. */
export function llamaBuildFromEnvironment(): LlamaBuild {
  return readEnvironment().llamaBuild;
}
