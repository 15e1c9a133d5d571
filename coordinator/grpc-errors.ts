// The one place where errors cross the gRPC boundary: RescaleError codes become status codes on the server, and
// status codes become RescaleErrors (with a message saying what to do) in the client.

import { Metadata, status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { ERROR_CODES, RescaleError, isErrorCode } from '../contracts/errors.js';

/** Metadata keys carrying the RescaleError code and its retryable flag, so the client restores both exactly. */
const CODE_KEY = 'rescale-error-code';
const RETRYABLE_KEY = 'rescale-error-retryable';

/**
 * Server side: a RescaleError keeps its message (written for users, never holding secrets or document text);
 * anything else is an internal error whose details stay in the coordinator log.
 */
export function toGrpcError(error: unknown): Partial<StatusObject> {
  const metadata = new Metadata();
  if (error instanceof RescaleError) {
    metadata.set(CODE_KEY, error.code);
    metadata.set(RETRYABLE_KEY, String(error.retryable));
    return { code: status[ERROR_CODES[error.code].grpcStatus], details: error.message, metadata };
  }
  metadata.set(CODE_KEY, 'INTERNAL');
  return { code: status.INTERNAL, details: 'internal error in the coordinator; see its log', metadata };
}

/** Client side: what a failed call means for the user, as a RescaleError. */
export function fromGrpcError(error: ServiceError, coordinator: string): RescaleError {
  const code = error.metadata?.get(CODE_KEY)[0];
  const flag = error.metadata?.get(RETRYABLE_KEY)[0];
  if (typeof code === 'string' && isErrorCode(code) && code !== 'INTERNAL') {
    // Without the flag (a coordinator that did not send it) the code's usual policy applies.
    const retryable = flag === 'true' || flag === 'false' ? flag === 'true' : ERROR_CODES[code].retryable;
    return new RescaleError(code, error.details, { cause: error, retryable });
  }
  switch (error.code) {
    case status.UNAUTHENTICATED:
      return new RescaleError(
        'AUTH_FAILED',
        `the coordinator at ${coordinator} rejected the token (${error.details}); pass the coordinator's token with ` +
          '--token-file or RESCALE_TOKEN',
        { cause: error },
      );
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
      return new RescaleError(
        'SERVICE_UNAVAILABLE',
        `cannot reach the coordinator at ${coordinator} (${error.details}); check --coordinator (or ` +
          `RESCALE_COORDINATOR) and that \`rescale coordinator\` runs there`,
        { cause: error, retryable: true },
      );
    default:
      return new RescaleError('INTERNAL', `the coordinator at ${coordinator} failed: ${error.details}`, {
        cause: error,
        retryable: flag === 'true',
      });
  }
}

export function isServiceError(value: unknown): value is ServiceError {
  return value instanceof Error && typeof (value as Partial<ServiceError>).code === 'number' && 'details' in value;
}
