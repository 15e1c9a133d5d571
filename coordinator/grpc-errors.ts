// The one place where errors cross the gRPC boundary: RescaleError codes become status codes on the server, and
// status codes become RescaleErrors (with a message saying what to do) in the client.

import { Metadata, status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { RescaleError, type ErrorCode } from '../contracts/errors.js';

const STATUS_OF: Partial<Record<ErrorCode, status>> = {
  CODEBOOK_INVALID: status.INVALID_ARGUMENT,
  CONFIG_INVALID: status.INVALID_ARGUMENT,
  LABEL_INVALID: status.INVALID_ARGUMENT,
  TEMPLATE_INVALID: status.INVALID_ARGUMENT,
  CONTEXT_TOO_SMALL: status.INVALID_ARGUMENT,
  INPUT_INVALID: status.INVALID_ARGUMENT,
  COLUMN_MISSING: status.INVALID_ARGUMENT,
  INPUT_NOT_FOUND: status.NOT_FOUND,
  MODEL_NOT_FOUND: status.NOT_FOUND,
  ADAPTER_NOT_FOUND: status.NOT_FOUND,
  MODEL_INVALID: status.INVALID_ARGUMENT,
  ADAPTER_INVALID: status.INVALID_ARGUMENT,
  ADAPTER_MISMATCH: status.INVALID_ARGUMENT,
  RUN_NOT_FOUND: status.NOT_FOUND,
  RUN_CONFLICT: status.FAILED_PRECONDITION,
  OUTPUT_NOT_WRITABLE: status.FAILED_PRECONDITION,
  SHARD_INCOMPLETE: status.FAILED_PRECONDITION,
  SERVICE_UNAVAILABLE: status.UNAVAILABLE,
  AUTH_FAILED: status.UNAUTHENTICATED,
  ABORTED: status.CANCELLED,
};

/** Metadata key carrying the RescaleError code, so the client restores it exactly. */
const CODE_KEY = 'rescale-error-code';

/**
 * Server side: a RescaleError keeps its message (written for users, never holding secrets or document text);
 * anything else is an internal error whose details stay in the coordinator log.
 */
export function toGrpcError(error: unknown): Partial<StatusObject> {
  const metadata = new Metadata();
  if (error instanceof RescaleError) {
    metadata.set(CODE_KEY, error.code);
    return { code: STATUS_OF[error.code] ?? status.INTERNAL, details: error.message, metadata };
  }
  metadata.set(CODE_KEY, 'INTERNAL');
  return { code: status.INTERNAL, details: 'internal error in the coordinator; see its log', metadata };
}

/** Client side: what a failed call means for the user, as a RescaleError. */
export function fromGrpcError(error: ServiceError, coordinator: string): RescaleError {
  const code = error.metadata?.get(CODE_KEY)[0];
  if (typeof code === 'string' && isErrorCode(code) && code !== 'INTERNAL') {
    return new RescaleError(code, error.details, { cause: error, retryable: error.code === status.UNAVAILABLE });
  }
  switch (error.code) {
    case status.UNAUTHENTICATED:
      return new RescaleError('AUTH_FAILED', `the coordinator at ${coordinator} rejected the token (${error.details}); pass the coordinator's token with --token-file or RESCALE_TOKEN`, { cause: error });
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
      return new RescaleError('SERVICE_UNAVAILABLE', `cannot reach the coordinator at ${coordinator} (${error.details}); check --coordinator (or RESCALE_COORDINATOR) and that \`rescale coordinator\` runs there`, { cause: error, retryable: true });
    default:
      return new RescaleError('INTERNAL', `the coordinator at ${coordinator} failed: ${error.details}`, { cause: error });
  }
}

const KNOWN_CODES = new Set<string>([...Object.keys(STATUS_OF), 'INTERNAL', 'SHARD_INCOMPLETE', 'ENGINE_FAILED']);

function isErrorCode(value: string): value is ErrorCode {
  return KNOWN_CODES.has(value);
}

export function isServiceError(value: unknown): value is ServiceError {
  return value instanceof Error && typeof (value as Partial<ServiceError>).code === 'number' && 'details' in value;
}
