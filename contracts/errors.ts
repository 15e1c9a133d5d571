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
    this.retryable = options.retryable ?? false;
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
