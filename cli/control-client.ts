// A client of the coordinator's control API: sends the token with every call, applies deadlines, and turns gRPC
// failures into RescaleErrors (via coordinator/grpc-errors.ts) that say what to do.

import {
  credentials,
  Metadata,
  type CallOptions,
  type Client,
  type ClientReadableStream,
  type ServiceError,
} from '@grpc/grpc-js';
import { RescaleError } from '../contracts/errors.js';
import {
  controlService,
  type ListRunsResponse,
  type ListWorkersResponse,
  type RetryFailedResponse,
  type RunStatusMessage,
  type SubmitRunRequest,
  type SubmitRunResponse,
} from '../coordinator/control-proto.js';
import { fromGrpcError, isServiceError } from '../coordinator/grpc-errors.js';

export interface ControlClientOptions {
  /** HOST:PORT of `rescale coordinator`. */
  readonly address: string;
  readonly token: string;
  /** Connect with TLS, trusting `ca` (PEM) or, without it, the system roots. */
  readonly tls?: { readonly ca?: Buffer };
  /** Deadline of unary calls (default 30 s; SubmitRun gets 10 min, since it plans the corpus). */
  readonly deadlineMs?: number;
}

type UnaryMethod = (
  request: unknown,
  metadata: Metadata,
  options: CallOptions,
  callback: (error: ServiceError | null, response: unknown) => void,
) => void;

export class ControlClient {
  private readonly client: Client;
  private readonly metadata = new Metadata();

  constructor(private readonly options: ControlClientOptions) {
    const channel =
      options.tls === undefined ? credentials.createInsecure() : credentials.createSsl(options.tls.ca ?? null);
    this.client = new (controlService().client)(options.address, channel);
    this.metadata.set('authorization', `Bearer ${options.token}`);
  }

  submit(request: SubmitRunRequest): Promise<SubmitRunResponse> {
    return this.unary('SubmitRun', request, 600_000);
  }

  getRun(runId: string): Promise<RunStatusMessage> {
    return this.unary('GetRun', { runId });
  }

  listRuns(limit = 50): Promise<ListRunsResponse> {
    return this.unary('ListRuns', { limit });
  }

  cancel(runId: string): Promise<RunStatusMessage> {
    return this.unary('CancelRun', { runId });
  }

  retryFailed(runId: string): Promise<RetryFailedResponse> {
    return this.unary('RetryFailed', { runId });
  }

  workers(): Promise<ListWorkersResponse> {
    return this.unary('ListWorkers', {});
  }

  /** Streams the run's status until it ends (or `signal` aborts); resolves with the last status received. */
  watch(
    runId: string,
    onStatus: (status: RunStatusMessage) => void,
    options: { intervalMs?: number; signal?: AbortSignal } = {},
  ): Promise<RunStatusMessage> {
    const method = (
      this.client as unknown as Record<
        string,
        (request: unknown, metadata: Metadata) => ClientReadableStream<RunStatusMessage>
      >
    ).WatchRun;
    if (method === undefined) throw new RescaleError('INTERNAL', 'the control API has no WatchRun method');
    const stream = method.call(this.client, { runId, intervalMs: options.intervalMs ?? 1_000 }, this.metadata);
    return new Promise((resolve, reject) => {
      let last: RunStatusMessage | undefined;
      const abort = (): void => stream.cancel();
      options.signal?.addEventListener('abort', abort, { once: true });
      stream.on('data', (status: RunStatusMessage) => {
        last = status;
        onStatus(status);
      });
      stream.on('error', (error: unknown) => {
        options.signal?.removeEventListener('abort', abort);
        if (options.signal?.aborted === true && last !== undefined) resolve(last);
        else reject(isServiceError(error) ? fromGrpcError(error, this.options.address) : error);
      });
      stream.on('end', () => {
        options.signal?.removeEventListener('abort', abort);
        if (last === undefined)
          reject(new RescaleError('INTERNAL', `the coordinator ended the watch of run ${runId} without any status`));
        else resolve(last);
      });
    });
  }

  close(): void {
    this.client.close();
  }

  private unary<Res>(name: string, request: unknown, deadlineMs = this.options.deadlineMs ?? 30_000): Promise<Res> {
    const method = (this.client as unknown as Record<string, UnaryMethod>)[name];
    if (method === undefined) throw new RescaleError('INTERNAL', `the control API has no ${name} method`);
    return new Promise((resolve, reject) => {
      method.call(this.client, request, this.metadata, { deadline: Date.now() + deadlineMs }, (error, response) => {
        if (error !== null) reject(fromGrpcError(error, this.options.address));
        else resolve(response as Res);
      });
    });
  }
}
