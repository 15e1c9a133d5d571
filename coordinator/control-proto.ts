// proto/rescale.proto loaded at run time (no codegen), and the TypeScript shapes of its messages as
// proto-loader delivers them (camelCase fields, enums as strings, 64-bit integers as numbers, defaults filled).

import path from 'node:path';
import {
  loadPackageDefinition,
  type GrpcObject,
  type ServiceClientConstructor,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { PACKAGE_ROOT } from '../contracts/package-root.js';

export const PROTO_PATH = path.join(PACKAGE_ROOT, 'proto', 'rescale.proto');

export type RunStateName =
  | 'RUN_STATE_UNSPECIFIED'
  | 'RUN_STATE_RUNNING'
  | 'RUN_STATE_MERGING'
  | 'RUN_STATE_SUCCEEDED'
  | 'RUN_STATE_FAILED'
  | 'RUN_STATE_CANCELLED';

export interface RunOptionsMessage {
  shardRows: number;
  limit: number;
  sequences: number;
  overwrite: boolean;
  noFallback: boolean;
  fallbackOffline: boolean;
  /** Optional for senders (false when left out, as proto3 sends it); a server always sees it filled in. */
  noDedupe?: boolean;
}

export interface SubmitRunRequest {
  codebook: string;
  inputs: string[];
  output: string;
  options: RunOptionsMessage | null;
}

export interface ShardFailureMessage {
  shardId: string;
  reason: string;
}

export interface RunStatusMessage {
  runId: string;
  state: RunStateName;
  task: string;
  codebook: string;
  output: string;
  shardsTotal: number;
  shardsDone: number;
  shardsActive: number;
  shardsFailed: number;
  documentsTotal: number;
  documentsDone: number;
  documentsPerSecond: number;
  etaSeconds: number;
  failures: ShardFailureMessage[];
  createdAt: string;
  finishedAt: string;
  error: string;
  manifest: string;
  duplicates: number;
}

export interface SubmitRunResponse {
  runId: string;
  created: boolean;
  status: RunStatusMessage | null;
}

export interface RunIdRequest {
  runId: string;
}

export interface WatchRunRequest extends RunIdRequest {
  intervalMs: number;
}

export interface ListRunsRequest {
  limit: number;
}

export interface ListRunsResponse {
  runs: RunStatusMessage[];
}

export interface RetryFailedResponse {
  retried: number;
  status: RunStatusMessage | null;
}

export interface WorkerMessage {
  id: string;
  host: string;
  pid: number;
  gpu: string;
  cpus: number;
  state: string;
  model: string;
  runId: string;
  shardId: string;
  shardsDone: number;
  documentsDone: number;
  startedAt: string;
  heartbeatAt: string;
  version: string;
}

export interface ListWorkersResponse {
  workers: WorkerMessage[];
}

let loaded: ServiceClientConstructor | undefined;

/** The `rescale.v1.Control` service: its client constructor, whose `.service` is the server-side definition. */
export function controlService(): { client: ServiceClientConstructor; definition: ServiceDefinition } {
  if (loaded === undefined) {
    const definition = loadSync(PROTO_PATH, {
      keepCase: false,
      longs: Number,
      enums: String,
      defaults: true,
      arrays: true,
      oneofs: true,
    });
    const root = loadPackageDefinition(definition);
    const v1 = (root.rescale as GrpcObject | undefined)?.v1 as GrpcObject | undefined;
    const control = v1?.Control as ServiceClientConstructor | undefined;
    if (control === undefined) throw new Error(`${PROTO_PATH} does not define rescale.v1.Control`);
    loaded = control;
  }
  return { client: loaded, definition: loaded.service };
}
