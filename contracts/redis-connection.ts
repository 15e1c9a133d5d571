// Redis connections for the coordinator and the workers: one URL parsed once (the password never logged), a
// first contact that turns refusals into errors naming the fix, and a watchdog that gives up after a bound.

import { Redis } from 'ioredis';
import { RescaleError, errorMessage } from './errors.js';
import { silentLogger, type Logger } from './logger.js';

export interface RedisTarget {
  readonly host: string;
  readonly port: number;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly db: number;
  readonly tls: boolean;
  /** The URL with any password replaced by `***`: the only form that goes into logs and messages. */
  readonly display: string;
}

/** Parses `redis://[[user]:password@]host[:port][/db]` (or `rediss://` for TLS). */
export function parseRedisUrl(url: string, option = '--redis'): RedisTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new RescaleError(
      'CONFIG_INVALID',
      `${option} must be a URL like redis://:PASSWORD@HOST:6379, got something that is not a URL`,
    );
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new RescaleError(
      'CONFIG_INVALID',
      `${option} must start with redis:// or rediss:// (TLS), not ${parsed.protocol}//`,
    );
  }
  const dbText = parsed.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0)
    throw new RescaleError(
      'CONFIG_INVALID',
      `${option}: the database number after the host must be a whole number, got "${dbText}"`,
    );
  const decode = (text: string, part: string): string | undefined => {
    if (text === '') return undefined;
    try {
      return decodeURIComponent(text);
    } catch {
      // Neither the value nor the decoder's message: either may hold the password.
      throw new RescaleError(
        'CONFIG_INVALID',
        `${option}: the ${part} in the URL holds a "%" that is not followed by two hex digits; percent-encode it ` +
          '(write "%" as %25, "@" as %40, ":" as %3A, "/" as %2F)',
      );
    }
  };
  const password = decode(parsed.password, 'password');
  const username = decode(parsed.username, 'user name');
  const host = parsed.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
  const port = parsed.port === '' ? 6379 : Number(parsed.port);
  const auth = password === undefined ? (username === undefined ? '' : `${username}@`) : `${username ?? ''}:***@`;
  return Object.freeze({
    host,
    port,
    username,
    password,
    db,
    tls: parsed.protocol === 'rediss:',
    display: `${parsed.protocol}//${auth}${parsed.host}${db === 0 ? '' : `/${db}`}`,
  });
}

/**
 * The options rescale sets, typed exactly (no property that may be undefined), so that both ioredis and BullMQ,
 * whose option types differ, accept them.
 */
export interface RedisConnectionOptions {
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly username?: string;
  readonly password?: string;
  readonly tls?: Record<string, never>;
  readonly connectionName?: string;
  readonly maxRetriesPerRequest: number | null;
  readonly connectTimeout: number;
  readonly retryStrategy: (times: number) => number;
}

/**
 * ioredis options for a target. `blocking` connections (BullMQ workers and event readers) must wait for Redis
 * however long it is away (maxRetriesPerRequest null); command connections give up a request after a few
 * reconnects so callers see an error instead of hanging.
 */
export function redisOptions(
  target: RedisTarget,
  options: { blocking: boolean; name?: string },
): RedisConnectionOptions {
  return {
    host: target.host,
    port: target.port,
    db: target.db,
    ...(target.username !== undefined ? { username: target.username } : {}),
    ...(target.password !== undefined ? { password: target.password } : {}),
    ...(target.tls ? { tls: {} } : {}),
    ...(options.name !== undefined ? { connectionName: options.name } : {}),
    maxRetriesPerRequest: options.blocking ? null : 3,
    connectTimeout: 5_000,
    // Reconnect backoff: 100 ms doubling to 2 s; the RedisWatchdog decides when to give up, not ioredis.
    retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
  };
}

/** The error for a failed contact with Redis, naming what to check. */
export function redisError(target: RedisTarget, cause: unknown, waitedMs?: number): RescaleError {
  const message = errorMessage(cause);
  if (/WRONGPASS|invalid password|invalid username-password/i.test(message)) {
    return new RescaleError(
      'AUTH_FAILED',
      `Redis at ${target.display} rejected the password (WRONGPASS); check the password in --redis or RESCALE_REDIS_URL (redis://:PASSWORD@host:port)`,
      { cause },
    );
  }
  if (/NOAUTH|Authentication required/i.test(message)) {
    return new RescaleError(
      'AUTH_FAILED',
      `Redis at ${target.display} requires a password (NOAUTH); put it in the URL: redis://:PASSWORD@${target.host}:${target.port}`,
      { cause },
    );
  }
  if (/maxmemory-policy/i.test(message)) return new RescaleError('CONFIG_INVALID', message, { cause });
  const waited = waitedMs === undefined ? '' : ` for ${Math.round(waitedMs / 1000)} s`;
  return new RescaleError(
    'SERVICE_UNAVAILABLE',
    `cannot reach Redis at ${target.display}${waited} (${message}); check that redis-server runs there and that ` +
      '--redis is right',
    { cause, retryable: true },
  );
}

function isAuthError(error: RescaleError): boolean {
  return error.code === 'AUTH_FAILED';
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

export interface ConnectRedisOptions {
  /** Give up after this long without a successful PING (default 60 s). */
  readonly timeoutMs?: number;
  readonly logger?: Logger;
  readonly name?: string;
  readonly signal?: AbortSignal;
}

/**
 * Opens a command connection and waits until Redis answers PING: retries with backoff (logging each failure)
 * up to `timeoutMs`, but fails at once on a wrong or missing password, which no retry fixes. Also checks that
 * Redis will not evict keys (a queue loses jobs under any policy but noeviction).
 */
export async function connectRedis(target: RedisTarget, options: ConnectRedisOptions = {}): Promise<Redis> {
  const logger = options.logger ?? silentLogger;
  const timeoutMs = options.timeoutMs ?? 60_000;
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    let lastError: unknown;
    const probe = new Redis({
      ...redisOptions(target, { blocking: false, ...(options.name ? { name: options.name } : {}) }),
      lazyConnect: true,
      retryStrategy: () => null,
      enableOfflineQueue: false,
    });
    probe.on('error', (error: unknown) => {
      lastError = error;
    });
    try {
      await probe.connect();
      await probe.ping();
      await checkEvictionPolicy(probe, target, logger);
      const client = new Redis(
        redisOptions(target, { blocking: false, ...(options.name ? { name: options.name } : {}) }),
      );
      probe.disconnect();
      return client;
    } catch (error) {
      probe.disconnect();
      if (error instanceof RescaleError) throw error;
      const waited = Date.now() - started;
      const failure = redisError(target, lastError ?? error, waited);
      if (isAuthError(failure)) throw failure;
      if (waited >= timeoutMs || options.signal?.aborted === true) throw failure;
      const delay = Math.min(250 * 2 ** Math.min(attempt - 1, 4), 4_000, Math.max(timeoutMs - waited, 0));
      logger.log('warn', 'redis unreachable; retrying', {
        redis: target.display,
        attempt,
        retryInMs: delay,
        waitedMs: waited,
        error: errorMessage(lastError ?? error),
      });
      await sleep(delay, options.signal);
    }
  }
}

async function checkEvictionPolicy(client: Redis, target: RedisTarget, logger: Logger): Promise<void> {
  let policy: string | undefined;
  try {
    const reply = (await client.config('GET', 'maxmemory-policy')) as string[];
    policy = reply[1];
  } catch (error) {
    // Managed Redis services often disable CONFIG; BullMQ still warns on its own.
    logger.log('debug', 'cannot read maxmemory-policy', { redis: target.display, error: errorMessage(error) });
    return;
  }
  if (policy !== undefined && policy !== 'noeviction') {
    throw new RescaleError(
      'CONFIG_INVALID',
      `Redis at ${target.display} has maxmemory-policy ${policy}: it may evict queued shards; start redis-server ` +
        'with --maxmemory-policy noeviction',
    );
  }
}

/**
 * Pings Redis on its own connection and calls `onLost` once Redis has not answered for `timeoutMs`: the process
 * then exits non-zero, so a scheduler can restart it, instead of waiting forever. Outages shorter than the bound
 * (a Redis restart) only log.
 */
export class RedisWatchdog {
  private timer: NodeJS.Timeout | undefined;
  private failingSince: number | null = null;
  private readonly client: Redis;
  private stopped = false;

  constructor(
    private readonly target: RedisTarget,
    private readonly options: {
      timeoutMs: number;
      intervalMs?: number;
      logger: Logger;
      onLost: (error: RescaleError) => void;
    },
  ) {
    this.client = new Redis({
      ...redisOptions(target, { blocking: false, name: 'rescale-watchdog' }),
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
    });
    this.client.on('error', () => undefined); // failures are reported by tick()
  }

  start(): void {
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.tick().then(
        () => this.schedule(),
        () => this.schedule(),
      );
    }, this.options.intervalMs ?? 1_000);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    try {
      await this.client.ping();
      if (this.failingSince !== null) {
        this.options.logger.log('info', 'redis reachable again', {
          redis: this.target.display,
          downMs: Date.now() - this.failingSince,
        });
      }
      this.failingSince = null;
    } catch (error) {
      const now = Date.now();
      if (this.failingSince === null) {
        this.failingSince = now;
        this.options.logger.log('warn', 'redis unreachable; waiting for it', {
          redis: this.target.display,
          giveUpAfterMs: this.options.timeoutMs,
          error: errorMessage(error),
        });
      }
      if (now - this.failingSince >= this.options.timeoutMs && !this.stopped) {
        this.close();
        this.options.onLost(redisError(this.target, error, now - this.failingSince));
      }
    }
  }

  /** Stops pinging and drops its connection. */
  close(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.client.disconnect();
  }
}
