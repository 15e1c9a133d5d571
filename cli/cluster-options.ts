// Options of the cluster verbs, parsed once at the edge: command-line flags first, then the parsed environment the
// CLI entry passes in, validated, with errors naming the flag or variable.

import { readFileSync } from 'node:fs';
import { ENVIRONMENT_VARIABLES as ENV, type Environment } from '../contracts/environment.js';
import { RescaleError } from '../contracts/errors.js';
import type { LogLevel } from '../contracts/logger.js';
import { parseRedisUrl, type RedisTarget } from '../contracts/redis-connection.js';

export function parseHostPort(value: string, option: string): { host: string; port: number } {
  const at = value.lastIndexOf(':');
  const host = at > 0 ? value.slice(0, at).replace(/^\[|\]$/g, '') : '';
  const port = Number(value.slice(at + 1));
  if (at <= 0 || host === '' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RescaleError('CONFIG_INVALID', `${option} must be HOST:PORT (e.g. 0.0.0.0:7400), got "${value}"`);
  }
  return { host, port };
}

export function redisTarget(flag: string | undefined, env: Environment): RedisTarget {
  const url = flag ?? env.redisUrl;
  if (url === undefined || url === '') {
    throw new RescaleError(
      'CONFIG_INVALID',
      `give the Redis URL with --redis redis://:PASSWORD@HOST:6379 or ${ENV.redisUrl}`,
    );
  }
  return parseRedisUrl(url, flag !== undefined ? '--redis' : ENV.redisUrl);
}

export function coordinatorAddress(flag: string | undefined, env: Environment): string {
  const address = flag ?? env.coordinator;
  if (address === undefined || address === '') {
    throw new RescaleError('CONFIG_INVALID', `give the coordinator with --coordinator HOST:PORT or ${ENV.coordinator}`);
  }
  parseHostPort(address, flag !== undefined ? '--coordinator' : ENV.coordinator);
  return address;
}

/** The shared token: --token-file, else RESCALE_TOKEN_FILE, else RESCALE_TOKEN. */
export function token(fileFlag: string | undefined, env: Environment): string {
  const file = fileFlag ?? env.tokenFile;
  if (file !== undefined && file !== '') {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (cause) {
      const reason = (cause as NodeJS.ErrnoException).code ?? String(cause);
      const message = `cannot read the token file ${file} (${reason}); check --token-file or ${ENV.tokenFile}`;
      throw new RescaleError('CONFIG_INVALID', message, { cause });
    }
    const value = text.trim();
    if (value === '')
      throw new RescaleError(
        'CONFIG_INVALID',
        `the token file ${file} is empty; write a secret into it, e.g. openssl rand -hex 32 > ${file}`,
      );
    return value;
  }
  const value = env.token;
  if (value === undefined || value === '') {
    throw new RescaleError(
      'CONFIG_INVALID',
      `no token: pass --token-file F, or set ${ENV.tokenFile} or ${ENV.token} (create one with: openssl rand -hex ` +
        `32 > token)`,
    );
  }
  return value;
}

export function readPem(file: string, option: string): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `cannot read ${option} ${file} (${(cause as NodeJS.ErrnoException).code ?? String(cause)})`,
      { cause },
    );
  }
}

export function positiveNumber(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0)
    throw new RescaleError('CONFIG_INVALID', `--${name} must be a positive number, got "${value}"`);
  return n;
}

export function positiveInteger(name: string, value: string | undefined): number | undefined {
  const n = positiveNumber(name, value);
  if (n !== undefined && !Number.isInteger(n))
    throw new RescaleError('CONFIG_INVALID', `--${name} must be a positive whole number, got "${value}"`);
  return n;
}

export function logLevel(value: string | undefined): LogLevel {
  const level = value ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(level))
    throw new RescaleError('CONFIG_INVALID', `--log-level must be debug, info, warn or error, got "${level}"`);
  return level as LogLevel;
}
