// The cluster verbs of `rescale`: the two services (coordinator, worker) and the client commands that talk to the
// coordinator (submit, status, watch, cancel, retry, workers). Each parses its own options; services log pino JSON.

import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Environment } from '../contracts/environment.js';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import type { Logger } from '../contracts/logger.js';
import type { RunStatusMessage, WorkerMessage } from '../coordinator/control-proto.js';
import type { EndpointList } from '../fallback/endpoint-list.js';
import { duplicatesLine } from './duplicates-line.js';
import { ControlClient } from './control-client.js';
import {
  coordinatorAddress,
  logLevel,
  parseHostPort,
  positiveInteger,
  positiveNumber,
  readPem,
  redisTarget,
  token,
} from './cluster-options.js';
import { startMetricsServer } from './metrics-server.js';
import type { ClusterCommand } from './cluster-verbs.js';
import { createPinoLogger } from './pino-logger.js';

export const CLUSTER_USAGE = `Cluster mode (see docs/cluster.md):
  rescale coordinator --redis URL --listen HOST:PORT [--token-file F] [--tls-cert F --tls-key F]
                      [--metrics HOST:PORT] [--address-file F] [--redis-timeout S] [--worker-silence S]
                      [--data-root DIR ...] [--endpoints FILE]
      The long-running service: plans runs, queues shards in Redis, merges finished runs, serves the gRPC API.
      A dead worker's shard goes back to the queue at once (its Redis connections closed), or when its
      heartbeat is older than --worker-silence (default 20 s: a node gone without closing them).
      --data-root (repeatable): submitted codebooks, inputs, outputs, models and adapters must lie inside these.
      --endpoints: the closed-model endpoints runs may use (URL, allowed models, key source); a codebook's
      fallback names one with "endpoint:". Without it, runs with the fallback on are refused.
  rescale worker --redis URL [--threads N] [--name NAME] [--metrics HOST:PORT] [--grace S] [--redis-timeout S]
      Takes shards from the queue and scores them. SIGTERM hands the current shard back and exits 0.
  rescale submit --codebook C --input P [--input P2 ...] --output O [--shard-rows N] [--limit N]
                 [--sequences N] [--overwrite] [--no-fallback | --fallback-offline] [--no-dedupe] [--watch]
  rescale status [RUN] | watch RUN | cancel RUN | retry RUN | workers          [--json]
      Client options: --coordinator HOST:PORT (or RESCALE_COORDINATOR), --token-file F (or RESCALE_TOKEN_FILE,
      RESCALE_TOKEN), --tls [--tls-ca F] when the coordinator serves TLS.
      Services read --redis from RESCALE_REDIS_URL when it is not given (keeps the password out of \`ps\`).
`;

const common = {
  'log-level': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} satisfies ParseArgsConfig['options'];

const client = {
  ...common,
  coordinator: { type: 'string' },
  'token-file': { type: 'string' },
  tls: { type: 'boolean' },
  'tls-ca': { type: 'string' },
} satisfies ParseArgsConfig['options'];

const OPTIONS = {
  coordinator: {
    ...common,
    redis: { type: 'string' },
    listen: { type: 'string' },
    'token-file': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    metrics: { type: 'string' },
    'address-file': { type: 'string' },
    'redis-timeout': { type: 'string' },
    'reconcile-interval': { type: 'string' },
    'worker-silence': { type: 'string' },
    'data-root': { type: 'string', multiple: true },
    endpoints: { type: 'string' },
  },
  worker: {
    ...common,
    redis: { type: 'string' },
    threads: { type: 'string' },
    name: { type: 'string' },
    metrics: { type: 'string' },
    grace: { type: 'string' },
    'redis-timeout': { type: 'string' },
    'lock-seconds': { type: 'string' },
    'stalled-interval': { type: 'string' },
    'max-stalled': { type: 'string' },
  },
  submit: {
    ...client,
    codebook: { type: 'string' },
    input: { type: 'string', multiple: true },
    output: { type: 'string' },
    'shard-rows': { type: 'string' },
    limit: { type: 'string' },
    sequences: { type: 'string' },
    overwrite: { type: 'boolean' },
    'no-fallback': { type: 'boolean' },
    'fallback-offline': { type: 'boolean' },
    'no-dedupe': { type: 'boolean' },
    watch: { type: 'boolean' },
  },
  status: client,
  watch: client,
  cancel: client,
  retry: client,
  workers: client,
} satisfies Record<ClusterCommand, ParseArgsConfig['options']>;

type Values = Record<string, string | boolean | string[] | undefined>;

/** Runs one cluster verb with the arguments after it and the parsed environment; resolves with the exit code. */
export async function runClusterCommand(
  command: ClusterCommand,
  argv: readonly string[],
  env: Environment,
): Promise<number> {
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...argv],
      options: OPTIONS[command],
      allowPositionals: true,
      strict: true,
    }) as { values: Values; positionals: string[] });
  } catch (error) {
    throw new RescaleError('CONFIG_INVALID', `${errorMessage(error)}; see "rescale ${command} --help"`);
  }
  if (values.help === true) {
    process.stdout.write(CLUSTER_USAGE);
    return 0;
  }
  switch (command) {
    case 'coordinator':
      return runCoordinator(values, env);
    case 'worker':
      return runWorker(values, env);
    default:
      return runClientCommand(command, values, positionals, env);
  }
}

const str = (values: Values, name: string): string | undefined =>
  typeof values[name] === 'string' ? (values[name] as string) : undefined;

// ---- services -------------------------------------------------------------------------------------------------

async function runCoordinator(values: Values, env: Environment): Promise<number> {
  const logger = createPinoLogger(logLevel(str(values, 'log-level')), { service: 'coordinator' });
  const redis = redisTarget(str(values, 'redis'), env);
  const listen = str(values, 'listen') ?? '127.0.0.1:7400';
  parseHostPort(listen, '--listen');
  const secret = token(str(values, 'token-file'), env);
  const cert = str(values, 'tls-cert');
  const key = str(values, 'tls-key');
  if ((cert === undefined) !== (key === undefined))
    throw new RescaleError('CONFIG_INVALID', 'TLS needs both --tls-cert and --tls-key');
  const tls =
    cert !== undefined && key !== undefined
      ? { cert: readPem(cert, '--tls-cert'), key: readPem(key, '--tls-key') }
      : undefined;
  const redisTimeout = positiveNumber('redis-timeout', str(values, 'redis-timeout'));
  const reconcile = positiveNumber('reconcile-interval', str(values, 'reconcile-interval'));
  const workerSilence = positiveNumber('worker-silence', str(values, 'worker-silence'));

  const { RunCoordinator } = await import('../coordinator/run-coordinator.js');
  const { ControlServer } = await import('../coordinator/control-server.js');
  const { DataRoots } = await import('../coordinator/data-roots.js');
  const rootFolders = Array.isArray(values['data-root']) ? values['data-root'] : [];
  const dataRoots = await DataRoots.open(rootFolders);
  const endpoints = await openEndpointList(str(values, 'endpoints'), env, logger);
  // Closed in reverse order on every path, each even when closing the one after it failed: the coordinator
  // holds Redis connections.
  await using coordinator = await RunCoordinator.start({
    redis,
    logger,
    env: env.variables,
    dataRoots,
    endpoints,
    ...(redisTimeout !== undefined ? { redisTimeoutMs: redisTimeout * 1000 } : {}),
    ...(reconcile !== undefined ? { reconcileIntervalMs: reconcile * 1000 } : {}),
    ...(workerSilence !== undefined ? { workerSilenceMs: workerSilence * 1000 } : {}),
  });
  await using server = await ControlServer.start({
    coordinator,
    token: secret,
    listen,
    ...(tls !== undefined ? { tls } : {}),
    logger,
  });
  const metricsListen = str(values, 'metrics');
  await using _metrics =
    metricsListen === undefined
      ? undefined
      : await startMetricsServer(metricsListen, coordinator.metrics.registry, logger);
  const addressFile = str(values, 'address-file');
  if (addressFile !== undefined) await writeAtomically(addressFile, `${server.address}\n`);
  process.stdout.write(`coordinator listening on ${server.address}\n`);
  const outcome = await Promise.race([stopSignal(), coordinator.lost.then((error) => error)]);
  if (outcome instanceof RescaleError) {
    logger.log('error', 'giving up: redis unreachable for too long', { error: outcome.message });
    throw outcome;
  }
  logger.log('info', 'stopping', { signal: outcome });
  return 0;
}

/** `--endpoints FILE`, validated before anything starts; a key that cannot be read now is a warning. */
async function openEndpointList(
  file: string | undefined,
  env: Environment,
  logger: Logger,
): Promise<EndpointList | null> {
  if (file === undefined) {
    logger.log('warn', 'no --endpoints: runs with the closed-model fallback on are refused', {});
    return null;
  }
  const { EndpointList } = await import('../fallback/endpoint-list.js');
  const list = await EndpointList.load(file);
  for (const warning of await list.keyWarnings(env.variables)) logger.log('warn', warning, {});
  logger.log('info', 'closed-model endpoints', { file: list.file, endpoints: list.names });
  return list;
}

async function runWorker(values: Values, env: Environment): Promise<number> {
  const logger = createPinoLogger(logLevel(str(values, 'log-level')), { service: 'worker' });
  const redis = redisTarget(str(values, 'redis'), env);
  const threads = positiveInteger('threads', str(values, 'threads'));
  const grace = positiveNumber('grace', str(values, 'grace'));
  const redisTimeout = positiveNumber('redis-timeout', str(values, 'redis-timeout'));
  const lock = positiveNumber('lock-seconds', str(values, 'lock-seconds'));
  const stalled = positiveNumber('stalled-interval', str(values, 'stalled-interval'));
  const maxStalled = positiveInteger('max-stalled', str(values, 'max-stalled'));
  const name = str(values, 'name');

  const { ShardWorker } = await import('../worker/shard-worker.js');
  // SIGTERM may come while connecting or loading: remember it and stop as soon as the worker exists.
  const signal = stopSignal();
  const worker = await ShardWorker.start({
    redis,
    logger,
    llamaBuild: env.llamaBuild,
    ...(name !== undefined ? { name } : {}),
    ...(threads !== undefined ? { threads } : {}),
    ...(grace !== undefined ? { shutdownGraceMs: grace * 1000 } : {}),
    ...(redisTimeout !== undefined ? { redisTimeoutMs: redisTimeout * 1000 } : {}),
    ...(lock !== undefined ? { lockDurationMs: lock * 1000 } : {}),
    ...(stalled !== undefined ? { stalledIntervalMs: stalled * 1000 } : {}),
    ...(maxStalled !== undefined ? { maxStalledCount: maxStalled } : {}),
  });
  const metricsListen = str(values, 'metrics');
  // The worker is registered and may hold a shard already: if the metrics server cannot start, hand the shard back
  // and deregister before exiting, instead of running on unwatched.
  await using _metrics =
    metricsListen === undefined
      ? undefined
      : await startMetricsServer(metricsListen, worker.metrics.registry, logger).catch(async (error: unknown) => {
          logger.log('error', 'metrics server did not start; stopping the worker', { error: errorMessage(error) });
          await worker.close('metrics server did not start');
          throw error;
        });
  const outcome = await Promise.race([signal, worker.lost]);
  if (typeof outcome === 'number') return outcome;
  const stopped = await worker.close(outcome);
  return stopped === 'timeout' ? 1 : 0;
}

/**
 * Resolves with the first SIGTERM or SIGINT. A repeated SIGTERM is ignored (SLURM signals every process of a job
 * and a forwarding trap may send another), so the shard is still handed back; a second Ctrl-C exits at once.
 */
function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const on = (signal: NodeJS.Signals): void => {
      if (received) {
        if (signal === 'SIGINT') process.exit(130);
        return;
      }
      received = true;
      resolve(signal);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  await writeFile(temp, text, { mode: 0o644 });
  await rename(temp, file);
}

// ---- client commands ------------------------------------------------------------------------------------------

async function runClientCommand(
  command: Exclude<ClusterCommand, 'coordinator' | 'worker'>,
  values: Values,
  positionals: string[],
  env: Environment,
): Promise<number> {
  const address = coordinatorAddress(str(values, 'coordinator'), env);
  const ca = str(values, 'tls-ca');
  const controlClient = new ControlClient({
    address,
    token: token(str(values, 'token-file'), env),
    ...(values.tls === true || ca !== undefined
      ? { tls: ca !== undefined ? { ca: readPem(ca, '--tls-ca') } : {} }
      : {}),
  });
  const json = values.json === true;
  const runArg = (): string => {
    const runId = positionals[0];
    if (runId === undefined)
      throw new RescaleError(
        'CONFIG_INVALID',
        `give the run id: rescale ${command} RUN (list runs with "rescale status")`,
      );
    return runId;
  };
  try {
    switch (command) {
      case 'submit': {
        const codebook = str(values, 'codebook');
        const output = str(values, 'output');
        const inputs = (values.input as string[] | undefined) ?? [];
        if (codebook === undefined || output === undefined || inputs.length === 0)
          throw new RescaleError(
            'CONFIG_INVALID',
            'submit needs --codebook, --input and --output; see "rescale submit --help"',
          );
        const limit = positiveInteger('limit', str(values, 'limit'));
        const shardRows = positiveInteger('shard-rows', str(values, 'shard-rows'));
        const sequences = positiveInteger('sequences', str(values, 'sequences'));
        const response = await controlClient.submit({
          codebook: path.resolve(codebook),
          // Globs and folders are resolved against this directory too; the coordinator sees the same paths.
          inputs: inputs.map((input) => path.resolve(input)),
          output: path.resolve(output),
          options: {
            shardRows: shardRows ?? 0,
            limit: limit ?? 0,
            sequences: sequences ?? 0,
            overwrite: values.overwrite === true,
            noFallback: values['no-fallback'] === true,
            fallbackOffline: values['fallback-offline'] === true,
            noDedupe: values['no-dedupe'] === true,
          },
        });
        if (json) process.stdout.write(`${JSON.stringify(response)}\n`);
        else {
          const s = response.status;
          const counts = s ? ` (${s.shardsTotal} shards, ${s.documentsTotal} documents, ${stateName(s.state)})` : '';
          process.stdout.write(
            `${response.created ? 'submitted' : 'already submitted:'} run ${response.runId}${counts}\n`,
          );
        }
        if (values.watch !== true) return 0;
        return await watch(controlClient, response.runId, json);
      }
      case 'status': {
        const runId = positionals[0];
        if (runId === undefined) {
          const { runs } = await controlClient.listRuns();
          process.stdout.write(
            json ? `${JSON.stringify(runs)}\n` : runs.length === 0 ? 'no runs\n' : `${runs.map(runLine).join('\n')}\n`,
          );
          return 0;
        }
        const status = await controlClient.getRun(runId);
        process.stdout.write(json ? `${JSON.stringify(status)}\n` : describeRun(status));
        return 0;
      }
      case 'watch':
        return await watch(controlClient, runArg(), json);
      case 'cancel': {
        const status = await controlClient.cancel(runArg());
        process.stdout.write(
          json ? `${JSON.stringify(status)}\n` : `run ${status.runId} is ${stateName(status.state)}\n`,
        );
        return 0;
      }
      case 'retry': {
        const { retried, status } = await controlClient.retryFailed(runArg());
        process.stdout.write(
          json
            ? `${JSON.stringify({ retried, status })}\n`
            : `queued ${retried} shard(s) again; run ${status?.runId ?? ''} is ` +
                `${status ? stateName(status.state) : '?'}\n`,
        );
        return 0;
      }
      case 'workers': {
        const { workers } = await controlClient.workers();
        process.stdout.write(
          json
            ? `${JSON.stringify(workers)}\n`
            : workers.length === 0
              ? 'no live workers\n'
              : `${workers.map(workerLine).join('\n')}\n`,
        );
        return 0;
      }
    }
  } finally {
    controlClient.close();
  }
}

/** Follows a run with a progress bar (TTY) or a line every 10 s; exit 0 when it succeeds, 1 otherwise. */
async function watch(controlClient: ControlClient, runId: string, json: boolean): Promise<number> {
  const stream = process.stderr;
  let lastLine = 0;
  let lastState = '';
  const controller = new AbortController();
  const onSignal = (): void => controller.abort();
  process.once('SIGINT', onSignal);
  try {
    const final = await controlClient.watch(
      runId,
      (status) => {
        if (json) {
          process.stdout.write(`${JSON.stringify(status)}\n`);
          return;
        }
        const line = progressLine(status);
        if (stream.isTTY) stream.write(`\r${line}\x1b[K`);
        else if (Date.now() - lastLine >= 10_000 || status.state !== lastState) {
          stream.write(`${line}\n`);
          lastLine = Date.now();
        }
        lastState = status.state;
      },
      { signal: controller.signal },
    );
    if (!json) {
      if (stream.isTTY) stream.write('\n');
      process.stdout.write(describeRun(final));
    }
    return final.state === 'RUN_STATE_SUCCEEDED' ? 0 : controller.signal.aborted ? 130 : 1;
  } finally {
    process.off('SIGINT', onSignal);
  }
}

function stateName(state: string): string {
  return state.replace(/^RUN_STATE_/, '').toLowerCase();
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

function progressLine(status: RunStatusMessage): string {
  const width = 30;
  const filled =
    status.documentsTotal > 0
      ? Math.min(width, Math.round((status.documentsDone / status.documentsTotal) * width))
      : width;
  return (
    `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${status.documentsDone}/${status.documentsTotal} docs  ` +
    `shards ${status.shardsDone}/${status.shardsTotal} (${status.shardsActive} active, ${status.shardsFailed} ` +
    `failed)  ` +
    `${status.documentsPerSecond.toFixed(1)} docs/s  ETA ${duration(status.etaSeconds)}  ${stateName(status.state)}`
  );
}

function runLine(status: RunStatusMessage): string {
  return (
    `${status.runId}  ${stateName(status.state).padEnd(9)}  ${status.task}  ` +
    `${status.shardsDone}/${status.shardsTotal} shards  ${status.documentsDone}/${status.documentsTotal} docs  ` +
    `${status.createdAt}  ${status.output}`
  );
}

function describeRun(status: RunStatusMessage): string {
  const lines = [
    `run ${status.runId} (${status.task}): ${stateName(status.state)}`,
    `  output     ${status.output}`,
    `  shards     ${status.shardsDone}/${status.shardsTotal} done, ${status.shardsActive} active, ` +
      `${status.shardsFailed} failed`,
    `  documents  ${status.documentsDone}/${status.documentsTotal}  ${status.documentsPerSecond.toFixed(1)} docs/s ` +
      ` ETA ${duration(status.etaSeconds)}`,
    `  created    ${status.createdAt}${status.finishedAt !== '' ? `  finished ${status.finishedAt}` : ''}`,
  ];
  if (status.manifest !== '') {
    lines.push(`  manifest   ${status.manifest}`);
    lines.push(`  duplicates ${duplicatesLine(status.duplicates)}`);
  }
  if (status.error !== '') lines.push(`  error      ${status.error}`);
  for (const failure of status.failures) lines.push(`  failed shard ${failure.shardId}: ${failure.reason}`);
  return `${lines.join('\n')}\n`;
}

function workerLine(worker: WorkerMessage): string {
  const age = Math.max(0, (Date.now() - Date.parse(worker.heartbeatAt)) / 1000);
  const doing = worker.shardId !== '' ? `${worker.runId}/${worker.shardId}` : '-';
  return (
    `${worker.id}  ${worker.state.padEnd(8)}  ${worker.host}  ${worker.gpu === '' ? 'cpu' : worker.gpu}  ` +
    `${worker.model === '' ? '-' : path.basename(worker.model)}  ${doing}  ${worker.shardsDone} shards  ` +
    `${worker.documentsDone} docs  seen ${age.toFixed(0)}s ago`
  );
}
