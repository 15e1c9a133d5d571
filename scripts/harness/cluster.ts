// Shared helpers of the cluster tests: a small sentiment corpus and codebook on the keyword fixture model, and
// real `rescale coordinator` / `rescale worker` processes (spawned through tsx, killed with the test process),
// whose JSON logs the tests read to see which shard ran where.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ControlClient } from '../../cli/control-client.js';
import { PACKAGE_ROOT } from '../../contracts/package-root.js';
import { fixtureModel } from './fixture-models.js';
import { writeParquetWithDuckDB } from './parquet.js';

const CLI = path.join(PACKAGE_ROOT, 'cli', 'rescale.ts');

export interface ClusterFixture {
  readonly dir: string;
  readonly codebook: string;
  readonly corpus: string;
  readonly tokenFile: string;
  readonly token: string;
  cleanup(): Promise<void>;
}

/**
 * A temp dir with `rows` short tweets in Parquet (row groups of `rowGroupRows`), a sentiment codebook on the
 * keyword fixture model, and a token file.
 */
export async function clusterFixture(
  rows: number,
  options: { rowGroupRows?: number; threads?: number; repeatEvery?: number } = {},
): Promise<ClusterFixture> {
  const dir = await mkdtemp(path.join(tmpdir(), 'rescale-cluster-'));
  const model = await fixtureModel('keyword');
  const corpus = await writeCorpus(path.join(dir, 'corpus.parquet'), rows, {
    rowGroupRows: options.rowGroupRows ?? 1000,
    ...(options.repeatEvery !== undefined ? { repeatEvery: options.repeatEvery } : {}),
  });
  const codebook = path.join(dir, 'codebook.yaml');
  await writeFile(
    codebook,
    [
      'task: sentiment',
      'input: { text_column: text, id_column: id }',
      'labels: [{ name: negative }, { name: neutral }, { name: positive }]',
      'prompt:',
      '  system: "You are a careful annotator. Answer with one label."',
      '  template: "Classify the sentiment of the tweet as one of: {labels}.\\n\\nTweet: {text}"',
      'model:',
      `  path: ${JSON.stringify(model)}`,
      '  max_document_tokens: 64',
      `  threads: ${options.threads ?? 1}`,
      '',
    ].join('\n'),
  );
  const token = randomBytes(24).toString('hex');
  const tokenFile = path.join(dir, 'token');
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  return { dir, codebook, corpus, tokenFile, token, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Short tweets with sentiment keywords, ids from `offset`, as DuckDB writes them. */
export async function writeCorpus(
  file: string,
  rows: number,
  options: { rowGroupRows: number; offset?: number; repeatEvery?: number },
): Promise<string> {
  // repeatEvery k: row i with i % k = k - 1 repeats the text of row i - 1 (an exact duplicate).
  const k = options.repeatEvery ?? 0;
  const source = k > 0 ? `CASE WHEN i % ${k} = ${k - 1} THEN i - 1 ELSE i END` : 'i';
  return writeParquetWithDuckDB(
    `SELECT i::BIGINT AS id,
            CASE j % 4 WHEN 0 THEN 'I love this, what a great day ' || j
                       WHEN 1 THEN 'awful service, I hate waiting ' || j
                       WHEN 2 THEN 'the meeting is scheduled for room ' || j
                       ELSE 'not sure about it, good and bad ' || j END AS text
     FROM (SELECT i, ${source} AS j FROM (SELECT i + ${options.offset ?? 0} AS i FROM range(${rows}) t(i)))`,
    file,
    { rowGroupSize: options.rowGroupRows },
  );
}

export interface LogLine {
  readonly level: string;
  readonly msg: string;
  readonly time: string;
  readonly [key: string]: unknown;
}

export interface ServiceProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** JSON log lines so far (non-JSON stderr lines are kept as `{ msg: line, level: 'raw' }`). */
  logs(): LogLine[];
  stdout(): string;
  /** Resolves with the first log line matching, or rejects after `timeoutMs` naming what was awaited. */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number, what?: string): Promise<LogLine>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ServiceProcess>();
process.once('exit', () => {
  for (const service of live) service.child.kill('SIGKILL');
});

let setprivAvailable: boolean | undefined;
function hasSetpriv(): boolean {
  setprivAvailable ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', '--', 'true']).status === 0;
  return setprivAvailable;
}

/** Spawns `rescale <args>` under tsx; the child dies with the test process (setpriv --pdeathsig). */
export function spawnRescale(
  name: string,
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
  runAs?: RunAs,
): ServiceProcess {
  return spawnTsx(name, CLI, args, env, runAs);
}

/** A user id and group id to run a service as (needs root and setpriv), e.g. to test what another user may not do. */
export interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

/** Whether services can be started as another user here (root with setpriv). */
export function canRunAsAnotherUser(): boolean {
  return process.getuid?.() === 0 && hasSetpriv();
}

/** Spawns a TypeScript entry point under tsx, logging JSON lines on stderr like the rescale services. */
export function spawnTsx(
  name: string,
  script: string,
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
  runAs?: RunAs,
): ServiceProcess {
  const nodeArgs = ['--import', 'tsx', script, ...args];
  if (runAs !== undefined && !canRunAsAnotherUser())
    throw new Error(`cannot start ${name} as uid ${runAs.uid}: needs root and setpriv`);
  const user =
    runAs === undefined ? [] : ['--reuid', String(runAs.uid), '--regid', String(runAs.gid), '--clear-groups'];
  // Without setpriv, signals go straight to node: the pid is the service's own.
  const [command, commandArgs] = hasSetpriv()
    ? ['setpriv', ['--pdeathsig', 'KILL', ...user, '--', process.execPath, ...nodeArgs]]
    : [process.execPath, nodeArgs];
  const child = spawn(command, commandArgs, {
    cwd: PACKAGE_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: LogLine[] = [];
  let out = '';
  const waiters = new Set<{ predicate: (line: LogLine) => boolean; resolve: (line: LogLine) => void }>();
  let partial = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    partial += chunk.toString('utf8');
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const text of parts) {
      if (text.trim() === '') continue;
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { level: 'raw', msg: text, time: new Date().toISOString() };
      }
      lines.push(line);
      for (const waiter of [...waiters]) {
        if (waiter.predicate(line)) {
          waiters.delete(waiter);
          waiter.resolve(line);
        }
      }
    }
  });
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const service: ServiceProcess = {
    name,
    child,
    pid: child.pid ?? -1,
    logs: () => [...lines],
    stdout: () => out,
    exited,
    waitForLog(predicate, timeoutMs = 60_000, what = 'a log line') {
      const found = lines.find(predicate);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = { predicate, resolve: (line: LogLine) => (clearTimeout(timer), resolve(line)) };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(
            new Error(
              `${name}: no ${what} within ${timeoutMs} ms; last log lines:\n${lines
                .slice(-15)
                .map((l) => JSON.stringify(l))
                .join('\n')}`,
            ),
          );
        }, timeoutMs);
        waiters.add(waiter);
        void exited.then(({ code, signal }) => {
          if (!waiters.has(waiter)) return;
          waiters.delete(waiter);
          clearTimeout(timer);
          reject(
            new Error(
              `${name} exited (code ${code}, signal ${signal}) before ${what}; last log lines:\n${lines
                .slice(-15)
                .map((l) => JSON.stringify(l))
                .join('\n')}`,
            ),
          );
        });
      });
    },
    kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    async stop(graceMs = 15_000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      live.delete(service);
    },
  };
  live.add(service);
  void exited.then(() => live.delete(service));
  return service;
}

export interface CoordinatorProcess extends ServiceProcess {
  readonly address: string;
}

/** Starts `rescale coordinator` on a free port and waits until it listens. */
export async function startCoordinator(
  redisUrl: string,
  fixture: ClusterFixture,
  extraArgs: readonly string[] = [],
  port = 0,
  env: Readonly<Record<string, string>> = {},
): Promise<CoordinatorProcess> {
  const addressFile = path.join(fixture.dir, `coordinator-${randomBytes(3).toString('hex')}.address`);
  const service = spawnRescale(
    'coordinator',
    [
      'coordinator',
      '--listen',
      `127.0.0.1:${port}`,
      '--token-file',
      fixture.tokenFile,
      '--address-file',
      addressFile,
      '--reconcile-interval',
      '5',
      ...extraArgs,
    ],
    {
      RESCALE_REDIS_URL: redisUrl,
      ...env,
    },
  );
  await service.waitForLog((line) => line.msg === 'control API listening', 60_000, 'listening coordinator');
  for (let i = 0; i < 100 && !existsSync(addressFile); i++) await sleep(50);
  const address = readFileSync(addressFile, 'utf8').trim();
  return Object.assign(service, { address });
}

/** Queue settings that make stall recovery take seconds instead of tens of seconds, for tests. */
export const FAST_RECOVERY_ARGS = ['--lock-seconds', '4', '--stalled-interval', '1'] as const;

/** Starts `rescale worker` and waits until it takes jobs. */
export async function startWorker(
  redisUrl: string,
  name: string,
  extraArgs: readonly string[] = [],
  runAs?: RunAs,
): Promise<ServiceProcess> {
  const service = spawnRescale(
    name,
    ['worker', '--name', name, '--threads', '1', ...extraArgs],
    { RESCALE_REDIS_URL: redisUrl },
    runAs,
  );
  await service.waitForLog((line) => line.msg === 'worker ready', 60_000, 'ready worker');
  return service;
}

export function client(coordinator: { address: string }, fixture: ClusterFixture): ControlClient {
  return new ControlClient({ address: coordinator.address, token: fixture.token });
}

/** Shard ids each worker finished (log "shard done"), as [worker name, shard id] pairs. */
export function shardsDone(workers: readonly ServiceProcess[]): [string, string][] {
  return workers.flatMap((worker) =>
    worker
      .logs()
      .filter((line) => line.msg === 'shard done')
      .map((line) => [worker.name, String(line.shardId)] as [string, string]),
  );
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` every `everyMs` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  what: string,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
