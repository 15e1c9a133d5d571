// Typed errors shared by every part of rescale: a stable code, whether a retry can help, and a message
// that names the file, column, field or option at fault and what to do about it.

export type ErrorCode =
  | 'CODEBOOK_INVALID'
  | 'MODEL_NOT_FOUND'
  | 'MODEL_INVALID'
  | 'ADAPTER_NOT_FOUND'
  | 'ADAPTER_INVALID'
  | 'ADAPTER_MISMATCH'
  | 'LABEL_INVALID'
  | 'TEMPLATE_INVALID'
  | 'CONTEXT_TOO_SMALL'
  | 'INPUT_NOT_FOUND'
  | 'INPUT_NOT_READABLE'
  | 'INPUT_INVALID'
  | 'COLUMN_MISSING'
  | 'OUTPUT_NOT_WRITABLE'
  | 'SHARD_INCOMPLETE'
  | 'ABORTED'
  | 'ENGINE_FAILED'
  | 'CONFIG_INVALID'
  | 'FALLBACK_AUTH'
  | 'FALLBACK_REJECTED'
  | 'FALLBACK_MALFORMED'
  | 'RUN_NOT_FOUND'
  | 'RUN_CONFLICT'
  | 'SERVICE_UNAVAILABLE'
  | 'AUTH_FAILED'
  | 'INTERNAL';

/** The gRPC status names the control API uses (keys of @grpc/grpc-js's `status`; contracts import no transport). */
export type GrpcStatusName =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'FAILED_PRECONDITION'
  | 'UNAUTHENTICATED'
  | 'UNAVAILABLE'
  | 'CANCELLED'
  | 'INTERNAL';

export interface ErrorCodeInfo {
  /** The status a gRPC client sees (coordinator/grpc-errors.ts). */
  readonly grpcStatus: GrpcStatusName;
  /** The exit code of `rescale` (cli/rescale.ts); README lists them. */
  readonly exitCode: number;
  /** `retryable` when the thrower does not say: a single failure may still override it (an evaluation error is). */
  readonly retryable: boolean;
}

/**
 * Every code's meaning at each edge, in one table: a new code that is not added here does not compile. Exit codes:
 * 1 bug, 2 usage or codebook, 3 input, 4 output, 5 model or adapter, 6 engine, 7 fallback endpoint, 8 cluster auth,
 * 9 Redis or coordinator unreachable, 10 run not found or in conflict, 130 interrupted.
 */
export const ERROR_CODES = {
  CODEBOOK_INVALID: { grpcStatus: 'INVALID_ARGUMENT', exitCode: 2, retryable: false },
  CONFIG_INVALID: { grpcStatus: 'INVALID_ARGUMENT', exitCode: 2, retryable: false },
  LABEL_INVALID: { grpcStatus: 'INVALID_ARGUMENT', exitCode: 2, retryable: false },
  TEMPLATE_INVALID: { grpcStatus: 'INVALID_ARGUMENT', exitCode: 2, retryable: false },
  CONTEXT_TOO_SMALL: { grpcStatus: 'INVALID_ARGUMENT', exitCode: 2, retryable: false },
  INPUT_NOT_FOUND: { grpcStatus: 'NOT_FOUND', exitCode: 3, retryable: false },
  // The file is there but this process may not read it (permissions): the message names the user.
  INPUT_NOT_READABLE: { grpcStatus: 'FAILED_PRECONDITION', exitCode: 3, retryable: false },
  INPUT_INVALID: { grpcStatus: 'INVALID_ARGUMENT', exitCode: 3, retryable: false },
  COLUMN_MISSING: { grpcStatus: 'INVALID_ARGUMENT', exitCode: 3, retryable: false },
  SHARD_INCOMPLETE: { grpcStatus: 'FAILED_PRECONDITION', exitCode: 3, retryable: false },
  OUTPUT_NOT_WRITABLE: { grpcStatus: 'FAILED_PRECONDITION', exitCode: 4, retryable: false },
  MODEL_NOT_FOUND: { grpcStatus: 'NOT_FOUND', exitCode: 5, retryable: false },
  MODEL_INVALID: { grpcStatus: 'INVALID_ARGUMENT', exitCode: 5, retryable: false },
  ADAPTER_NOT_FOUND: { grpcStatus: 'NOT_FOUND', exitCode: 5, retryable: false },
  ADAPTER_INVALID: { grpcStatus: 'INVALID_ARGUMENT', exitCode: 5, retryable: false },
  ADAPTER_MISMATCH: { grpcStatus: 'INVALID_ARGUMENT', exitCode: 5, retryable: false },
  // A failed model load stays failed; the scorer marks one failed evaluation retryable itself.
  ENGINE_FAILED: { grpcStatus: 'INTERNAL', exitCode: 6, retryable: false },
  // The endpoint refused the key, the model or the quota: the coordinator's setup, not the caller's request.
  FALLBACK_AUTH: { grpcStatus: 'FAILED_PRECONDITION', exitCode: 7, retryable: false },
  FALLBACK_REJECTED: { grpcStatus: 'FAILED_PRECONDITION', exitCode: 7, retryable: false },
  // A 200 that is not a chat completion: an upstream fault that the next attempt may not repeat.
  FALLBACK_MALFORMED: { grpcStatus: 'UNAVAILABLE', exitCode: 7, retryable: true },
  AUTH_FAILED: { grpcStatus: 'UNAUTHENTICATED', exitCode: 8, retryable: false },
  SERVICE_UNAVAILABLE: { grpcStatus: 'UNAVAILABLE', exitCode: 9, retryable: true },
  RUN_NOT_FOUND: { grpcStatus: 'NOT_FOUND', exitCode: 10, retryable: false },
  RUN_CONFLICT: { grpcStatus: 'FAILED_PRECONDITION', exitCode: 10, retryable: false },
  ABORTED: { grpcStatus: 'CANCELLED', exitCode: 130, retryable: false },
  INTERNAL: { grpcStatus: 'INTERNAL', exitCode: 1, retryable: false },
} as const satisfies Record<ErrorCode, ErrorCodeInfo>;

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(ERROR_CODES, value);
}

export interface RescaleErrorOptions {
  readonly retryable?: boolean;
  readonly cause?: unknown;
}

export class RescaleError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: RescaleErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RescaleError';
    this.code = code;
    this.retryable = options.retryable ?? ERROR_CODES[code].retryable;
  }
}

export function isRescaleError(value: unknown, code?: ErrorCode): value is RescaleError {
  return value instanceof RescaleError && (code === undefined || value.code === code);
}

/** The message of any thrown value, for logs and result rows. */
export function errorMessage(value: unknown): string {
  if (value instanceof Error) return value.message;
  return String(value);
}
