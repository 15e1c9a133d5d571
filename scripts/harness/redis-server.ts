// A real, throwaway redis-server per test (free port, fresh --dir), so cluster-mode tests can also stop, kill,
// pause and restart it. Never touches the system instance on 6379. No client library: a minimal RESP client.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface RedisServerOptions {
  /** Sets `--requirepass`; clients must AUTH (the url carries it). */
  readonly password?: string;
  /** `--appendonly yes --appendfsync everysec`, so data survives restart(). Without it, restart() loses everything. */
  readonly appendonly?: boolean;
  /** Path to the binary; default /usr/bin/redis-server (Debian's `redis-server` package). */
  readonly binary?: string;
  /** How long to wait for PING after a start, default 10 s. */
  readonly startTimeoutMs?: number;
}

export type RedisStopSignal = 'SIGTERM' | 'SIGKILL' | 'SIGINT';

export interface RedisRestartOptions {
  /** SIGTERM (default) lets Redis flush the AOF; SIGKILL simulates a crash or a lost node. */
  readonly signal?: RedisStopSignal;
  /** Time to stay down before starting again, so clients see a real outage. */
  readonly downtimeMs?: number;
}

export interface RedisServerHandle {
  /** `redis://[:password@]127.0.0.1:port`, for BullMQ/ioredis. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly password: string | undefined;
  /** The server's --dir (AOF lives in `appendonlydir/` inside it); removed by stop(). */
  readonly dir: string;
  /** Pid of the running server, or undefined while it is down. */
  readonly pid: number | undefined;
  /** The server's recent log lines, for assertion messages. */
  log(): string;
  /** SIGTERM (SIGKILL after 10 s), wait for exit, remove the dir. Idempotent; the handle is dead afterwards. */
  stop(): Promise<void>;
  /** Sends a terminating signal and waits for the process to exit; the dir stays, so restart() can follow. */
  kill(signal?: RedisStopSignal): Promise<void>;
  /** Stops the server if it is up, then starts it again on the same port and dir and waits for PING. */
  restart(options?: RedisRestartOptions): Promise<void>;
  /** SIGSTOP: the port stays open but nothing answers, like a frozen or partitioned server. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  [Symbol.asyncDispose](): Promise<void>;
}

const HOST = '127.0.0.1';
const LOG_LINES = 200;

/** Starts redis-server on a free port with a fresh temp dir and resolves once it answers PING. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServerHandle> {
  const dir = await mkdtemp(path.join(tmpdir(), 'rescale-redis-'));
  const server = new RedisServer(options, dir);
  live.add(server);
  try {
    // A port found free can be taken before redis binds it; try a few.
    for (let attempt = 1; ; attempt++) {
      try {
        await server.start(await findFreePort());
        return server;
      } catch (error) {
        if (!(error instanceof PortInUseError) || attempt >= 5) throw error;
      }
    }
  } catch (error) {
    await server.stop();
    throw error;
  }
}

class PortInUseError extends Error {}

class RedisServer implements RedisServerHandle {
  readonly host = HOST;
  readonly password: string | undefined;
  port = 0;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private readonly lines: string[] = [];
  private stopped = false;

  constructor(
    private readonly options: RedisServerOptions,
    readonly dir: string,
  ) {
    this.password = options.password;
  }

  get url(): string {
    const auth = this.password === undefined ? '' : `:${encodeURIComponent(this.password)}@`;
    return `redis://${auth}${HOST}:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  log(): string {
    return this.lines.join('\n');
  }

  async start(port: number): Promise<void> {
    if (this.stopped) throw new Error('this Redis server was stopped; call startRedisServer() for a new one');
    this.port = port;
    const args = [
      '--port',
      String(port),
      '--bind',
      HOST,
      '--dir',
      this.dir,
      '--save',
      '',
      '--maxmemory-policy',
      'noeviction',
      '--daemonize',
      'no',
      '--logfile',
      '',
      '--loglevel',
      'notice',
      ...(this.password === undefined ? [] : ['--requirepass', this.password]),
      ...(this.options.appendonly === true
        ? ['--appendonly', 'yes', '--appendfsync', 'everysec']
        : ['--appendonly', 'no']),
    ];
    const binary = this.options.binary ?? '/usr/bin/redis-server';
    // setpriv --pdeathsig: the kernel kills redis if this test process dies without running its cleanup.
    const [command, commandArgs] = hasSetpriv()
      ? ['setpriv', ['--pdeathsig', 'KILL', '--', binary, ...args]]
      : [binary, args];
    const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let portInUse = false;
    const onData = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') this.lines.push(line);
      portInUse ||= /Address already in use/i.test(chunk.toString('utf8'));
      this.lines.splice(0, Math.max(0, this.lines.length - LOG_LINES));
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    // A server a test forgot to stop must not keep the test process alive; the 'exit' hook below kills it.
    child.unref();
    for (const stream of [child.stdout, child.stderr]) (stream as net.Socket | null)?.unref();
    let exitInfo: string | undefined;
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        exitInfo = signal === null ? `exit code ${code}` : `signal ${signal}`;
        if (this.child === child) this.child = undefined;
        resolve();
      });
      // 'on', not 'once': a failed kill() also reports here, and an unheard 'error' would crash the test.
      child.on('error', (error) => {
        if (child.pid !== undefined) return; // a failed signal to a running server, not a failed start
        exitInfo = `spawn error: ${error.message}`;
        if (this.child === child) this.child = undefined;
        resolve();
      });
    });

    const deadline = Date.now() + (this.options.startTimeoutMs ?? 10_000);
    for (;;) {
      if (exitInfo !== undefined) {
        if (portInUse) throw new PortInUseError(`port ${port} is in use`);
        throw new Error(
          `redis-server (${binary}) exited during startup (${exitInfo}); is the redis-server package installed? ` +
            `Log:\n${this.log()}`,
        );
      }
      const reply = await this.ping().catch(() => undefined);
      if (reply === 'PONG') return;
      if (Date.now() > deadline) {
        await this.kill('SIGKILL');
        throw new Error(
          `redis-server on port ${port} did not answer PING within ${this.options.startTimeoutMs ?? 10_000} ms ` +
            `(last reply: ${String(reply)}). Log:\n${this.log()}`,
        );
      }
      await sleep(25);
    }
  }

  /** PONG when up; LOADING while it replays the AOF; undefined when nothing listens. */
  private async ping(): Promise<string | undefined> {
    const commands: string[][] = this.password === undefined ? [['PING']] : [['AUTH', this.password], ['PING']];
    const replies = await redisCommands({ host: HOST, port: this.port }, commands, 1_000);
    const last = replies[replies.length - 1];
    if (last instanceof RedisReplyError) return last.message.split(' ')[0];
    return typeof last === 'string' ? last : undefined;
  }

  async kill(signal: RedisStopSignal = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    if (child.exitCode === null && child.signalCode === null) {
      // A paused server only acts on SIGTERM once it runs again.
      child.kill('SIGCONT');
      child.kill(signal);
    }
    const escalate = setTimeout(() => child.kill('SIGKILL'), 10_000);
    try {
      await this.exited;
    } finally {
      clearTimeout(escalate);
    }
  }

  async restart(options: RedisRestartOptions = {}): Promise<void> {
    await this.kill(options.signal ?? 'SIGTERM');
    if (options.downtimeMs !== undefined && options.downtimeMs > 0) await sleep(options.downtimeMs);
    await this.start(this.port);
  }

  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    await this.kill('SIGTERM');
    this.stopped = true;
    live.delete(this);
    await rm(this.dir, { recursive: true, force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Last resort from the process 'exit' hook: synchronous, so no awaiting. */
  killNow(): void {
    this.child?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// Servers a failed test forgot to stop still go when the test process exits.
const live = new Set<RedisServer>();
process.once('exit', () => {
  for (const server of live) server.killNow();
});

let setprivAvailable: boolean | undefined;
function hasSetpriv(): boolean {
  setprivAvailable ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', '--', 'true']).status === 0;
  return setprivAvailable;
}

/**
 * A port nothing listens on, below Linux's ephemeral range (32768+) so outgoing connections do not take it
 * between our probe and redis binding it, or while the server is down during restart().
 */
async function findFreePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await canListen(port)) return port;
  }
  throw new Error('found no free TCP port in 20000-31999 after 50 tries');
}

export function canListen(port: number, host = HOST): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve(true)));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---- minimal RESP client ----------------------------------------------------------------------------------

/** An error reply (`-ERR ...`, `-NOAUTH ...`), returned as a value so a test can assert on it. */
export class RedisReplyError extends Error {
  override readonly name = 'RedisReplyError';
}

export type RedisReply = string | number | null | RedisReplyError | RedisReply[];

/**
 * Sends commands on one fresh connection and returns one reply each. For health checks and assertions in
 * tests, not for load: the code under test uses its own client.
 */
export function redisCommands(
  target: { readonly host: string; readonly port: number },
  commands: readonly (readonly string[])[],
  timeoutMs = 5_000,
): Promise<RedisReply[]> {
  if (commands.length === 0) return Promise.resolve([]);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port });
    let buffer = Buffer.alloc(0);
    const replies: RedisReply[] = [];
    const finish = (error?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error === undefined) resolve(replies);
      else reject(error);
    };
    const timer = setTimeout(
      () => finish(new Error(`no reply from Redis at ${target.host}:${target.port} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.once('error', (error) => finish(error));
    socket.once('close', () => {
      if (replies.length < commands.length)
        finish(
          new Error(
            `Redis at ${target.host}:${target.port} closed the connection after ${replies.length} of ` +
              `${commands.length} replies`,
          ),
        );
    });
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      try {
        for (;;) {
          const parsed = parseReply(buffer, 0);
          if (parsed === undefined) return;
          replies.push(parsed.value);
          buffer = buffer.subarray(parsed.end);
          if (replies.length === commands.length) return finish();
        }
      } catch (error) {
        finish(error instanceof Error ? error : new Error(String(error)));
      }
    });
    socket.write(commands.map(encodeCommand).join(''));
  });
}

/** One command on its own connection, AUTHenticated first when the server has a password. */
export async function redisCommand(
  server: Pick<RedisServerHandle, 'host' | 'port' | 'password'>,
  ...args: string[]
): Promise<RedisReply> {
  const auth = server.password === undefined ? [] : [['AUTH', server.password]];
  const replies = await redisCommands(server, [...auth, args]);
  return replies[replies.length - 1] ?? null;
}

function encodeCommand(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
}

/** Parses one reply starting at `start`; undefined if the buffer does not hold all of it yet. */
function parseReply(buffer: Buffer, start: number): { value: RedisReply; end: number } | undefined {
  const lineEnd = buffer.indexOf('\r\n', start);
  if (lineEnd === -1) return undefined;
  const type = String.fromCharCode(buffer[start] ?? 0);
  const line = buffer.toString('utf8', start + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new RedisReplyError(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, end: next };
      if (buffer.length < next + length + 2) return undefined;
      return { value: buffer.toString('utf8', next, next + length), end: next + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: RedisReply[] = [];
      let end = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buffer, end);
        if (item === undefined) return undefined;
        items.push(item.value);
        end = item.end;
      }
      return { value: items, end };
    }
    default:
      throw new Error(`unexpected RESP reply type ${JSON.stringify(type)}`);
  }
}
