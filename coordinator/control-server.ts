// The coordinator's gRPC server (proto/rescale.proto): checks the shared token on every call, translates messages
// to RunCoordinator calls and back, and maps errors through grpc-errors.ts. Optional TLS.

import { createHash, timingSafeEqual } from 'node:crypto';
import {
  Server,
  ServerCredentials,
  status,
  type Metadata,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { Closeable } from '../contracts/closeable.js';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import { silentLogger, type Logger } from '../contracts/logger.js';
import { TERMINAL_RUN_STATES, type WorkerRecord } from '../contracts/shard-queue.js';
import {
  controlService,
  type ListRunsRequest,
  type ListRunsResponse,
  type ListWorkersResponse,
  type RetryFailedResponse,
  type RunIdRequest,
  type RunStateName,
  type RunStatusMessage,
  type SubmitRunRequest,
  type SubmitRunResponse,
  type WatchRunRequest,
  type WorkerMessage,
} from './control-proto.js';
import { toGrpcError } from './grpc-errors.js';
import type { RunCoordinator, RunStatus } from './run-coordinator.js';

export interface ControlServerOptions {
  readonly coordinator: RunCoordinator;
  /** The shared secret clients send as `authorization: Bearer <token>`. */
  readonly token: string;
  /** HOST:PORT; port 0 picks a free one (see `port`). */
  readonly listen: string;
  /** PEM certificate chain and private key: serve TLS instead of plaintext. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer };
  readonly logger?: Logger;
}

const MIN_TOKEN_LENGTH = 16;
const DEFAULT_WATCH_INTERVAL_MS = 1_000;

export class ControlServer implements Closeable {
  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly address: string,
  ) {}

  static async start(options: ControlServerOptions): Promise<ControlServer> {
    if (options.token.length < MIN_TOKEN_LENGTH) {
      throw new RescaleError(
        'CONFIG_INVALID',
        `the coordinator token must be at least ${MIN_TOKEN_LENGTH} characters; generate one with: openssl rand -hex ` +
          '32 > token',
      );
    }
    const logger = options.logger ?? silentLogger;
    const server = new Server();
    server.addService(controlService().definition, handlers(options.coordinator, tokenChecker(options.token), logger));
    const credentials =
      options.tls === undefined
        ? ServerCredentials.createInsecure()
        : ServerCredentials.createSsl(null, [{ private_key: options.tls.key, cert_chain: options.tls.cert }], false);
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(options.listen, credentials, (error, bound) =>
        error === null ? resolve(bound) : reject(error),
      );
    }).catch((cause: unknown) => {
      throw new RescaleError(
        'CONFIG_INVALID',
        `cannot listen on ${options.listen}: ${errorMessage(cause)}; choose a free HOST:PORT with --listen`,
        { cause },
      );
    });
    const host = options.listen.slice(0, options.listen.lastIndexOf(':'));
    logger.log('info', 'control API listening', { address: `${host}:${port}`, tls: options.tls !== undefined });
    return new ControlServer(server, port, `${host}:${port}`);
  }

  /** Stops taking calls; open WatchRun streams are ended after `graceMs`. */
  async close(graceMs = 2_000): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Constant-time comparison of `authorization: Bearer <token>` with the expected token. */
function tokenChecker(token: string): (metadata: Metadata) => boolean {
  const expected = createHash('sha256').update(token).digest();
  return (metadata) => {
    const header = metadata.get('authorization')[0];
    if (typeof header !== 'string' || !header.startsWith('Bearer ')) return false;
    const given = createHash('sha256').update(header.slice('Bearer '.length)).digest();
    return timingSafeEqual(given, expected);
  };
}

const UNAUTHENTICATED = toGrpcError(
  new RescaleError('AUTH_FAILED', 'missing or wrong token; pass the coordinator token (--token-file or RESCALE_TOKEN)'),
);

function handlers(
  coordinator: RunCoordinator,
  authorized: (metadata: Metadata) => boolean,
  logger: Logger,
): UntypedServiceImplementation {
  /** A unary handler with the token check, a log line per call, and errors mapped in one place. */
  function unary<Req, Res>(method: string, run: (request: Req) => Promise<Res>) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      const started = performance.now();
      if (!authorized(call.metadata)) {
        logger.log('warn', 'rejected call without a valid token', { method, peer: call.getPeer() });
        callback(UNAUTHENTICATED);
        return;
      }
      run(call.request).then(
        (response) => {
          logger.log('debug', 'call', { method, ms: Math.round(performance.now() - started) });
          callback(null, response);
        },
        (error: unknown) => {
          const mapped = toGrpcError(error);
          logger.log(mapped.code === status.INTERNAL ? 'error' : 'info', 'call failed', {
            method,
            code: status[mapped.code ?? status.INTERNAL],
            error: errorMessage(error),
          });
          callback(mapped);
        },
      );
    };
  }

  return {
    SubmitRun: unary<SubmitRunRequest, SubmitRunResponse>('SubmitRun', async (request) => {
      const options = request.options;
      const result = await coordinator.submit({
        codebook: request.codebook,
        inputs: request.inputs,
        output: request.output,
        ...(options !== null && options.shardRows > 0 ? { shardRows: options.shardRows } : {}),
        ...(options !== null && options.limit > 0 ? { limit: options.limit } : {}),
        ...(options !== null && options.sequences > 0 ? { sequences: options.sequences } : {}),
        ...(options !== null && options.overwrite ? { overwrite: true } : {}),
        ...(options !== null && options.noFallback ? { noFallback: true } : {}),
        ...(options !== null && options.fallbackOffline ? { fallbackOffline: true } : {}),
        ...(options !== null && options.noDedupe ? { noDedupe: true } : {}),
      });
      return {
        runId: result.runId,
        created: result.created,
        status: runStatusMessage(await coordinator.status(result.runId)),
      };
    }),
    GetRun: unary<RunIdRequest, RunStatusMessage>('GetRun', async (request) =>
      runStatusMessage(await coordinator.status(request.runId)),
    ),
    ListRuns: unary<ListRunsRequest, ListRunsResponse>('ListRuns', async (request) => ({
      runs: (await coordinator.list(request.limit > 0 ? Math.min(request.limit, 1000) : 50)).map(runStatusMessage),
    })),
    CancelRun: unary<RunIdRequest, RunStatusMessage>('CancelRun', async (request) =>
      runStatusMessage(await coordinator.cancel(request.runId)),
    ),
    RetryFailed: unary<RunIdRequest, RetryFailedResponse>('RetryFailed', async (request) => {
      const { retried, status: runStatus } = await coordinator.retryFailed(request.runId);
      return { retried, status: runStatusMessage(runStatus) };
    }),
    ListWorkers: unary<Record<string, never>, ListWorkersResponse>('ListWorkers', async () => ({
      workers: (await coordinator.workers()).map(workerMessage),
    })),
    WatchRun: (call: ServerWritableStream<WatchRunRequest, RunStatusMessage>): void => {
      if (!authorized(call.metadata)) {
        logger.log('warn', 'rejected call without a valid token', { method: 'WatchRun', peer: call.getPeer() });
        call.emit('error', UNAUTHENTICATED);
        return;
      }
      const interval = call.request.intervalMs > 0 ? Math.max(call.request.intervalMs, 100) : DEFAULT_WATCH_INTERVAL_MS;
      let open = true;
      let wake: () => void = () => undefined;
      call.on('cancelled', () => {
        open = false;
        wake();
      });
      const loop = async (): Promise<void> => {
        while (open) {
          const runStatus = await coordinator.status(call.request.runId);
          call.write(runStatusMessage(runStatus));
          if ((TERMINAL_RUN_STATES as readonly string[]).includes(runStatus.state)) break;
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, interval);
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
        if (open) call.end();
      };
      loop().catch((error: unknown) => {
        if (!open) return;
        const mapped = toGrpcError(error);
        logger.log(mapped.code === status.INTERNAL ? 'error' : 'info', 'call failed', {
          method: 'WatchRun',
          code: status[mapped.code ?? status.INTERNAL],
          error: errorMessage(error),
        });
        call.emit('error', mapped);
      });
    },
  };
}

const STATE_NAMES: Record<RunStatus['state'], RunStateName> = {
  running: 'RUN_STATE_RUNNING',
  merging: 'RUN_STATE_MERGING',
  succeeded: 'RUN_STATE_SUCCEEDED',
  failed: 'RUN_STATE_FAILED',
  cancelled: 'RUN_STATE_CANCELLED',
};

export function runStatusMessage(run: RunStatus): RunStatusMessage {
  return {
    runId: run.runId,
    state: STATE_NAMES[run.state],
    task: run.task,
    codebook: run.codebook,
    output: run.output,
    shardsTotal: run.shardsTotal,
    shardsDone: run.shardsDone,
    shardsActive: run.shardsActive,
    shardsFailed: run.shardsFailed,
    documentsTotal: run.documentsTotal,
    documentsDone: run.documentsDone,
    documentsPerSecond: run.documentsPerSecond,
    etaSeconds: run.etaSeconds ?? -1,
    failures: run.failures.map((f) => ({ shardId: f.shardId, reason: f.reason })),
    createdAt: run.createdAt,
    finishedAt: run.finishedAt ?? '',
    error: run.error ?? '',
    manifest: run.manifest ?? '',
    duplicates: run.duplicates ?? 0,
  };
}

function workerMessage(worker: WorkerRecord): WorkerMessage {
  return {
    id: worker.id,
    host: worker.host,
    pid: worker.pid,
    gpu: typeof worker.gpu === 'string' ? worker.gpu : '',
    cpus: worker.cpus,
    state: worker.state,
    model: worker.model ?? '',
    runId: worker.runId ?? '',
    shardId: worker.shardId ?? '',
    shardsDone: worker.shardsDone,
    documentsDone: worker.documentsDone,
    startedAt: worker.startedAt,
    heartbeatAt: worker.heartbeatAt,
    version: worker.version,
  };
}
