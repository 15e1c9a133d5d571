import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metadata, status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { ERROR_CODES, RescaleError, isErrorCode, type ErrorCode } from '../../contracts/errors.js';
import { fromGrpcError, toGrpcError } from '../../coordinator/grpc-errors.js';

const CODES = Object.keys(ERROR_CODES) as ErrorCode[];

/** What a grpc-js client receives for a status the server sent. */
function received(sent: Partial<StatusObject>): ServiceError {
  const details = sent.details ?? '';
  return Object.assign(new Error(`${sent.code ?? status.UNKNOWN} ${details}`), {
    code: sent.code ?? status.UNKNOWN,
    details,
    metadata: sent.metadata ?? new Metadata(),
  });
}

describe('ERROR_CODES', () => {
  it('gives every code a gRPC status, an exit code and a retry policy', () => {
    assert.ok(CODES.length >= 24);
    for (const code of CODES) {
      const info = ERROR_CODES[code];
      assert.equal(typeof status[info.grpcStatus], 'number', code);
      assert.ok(Number.isInteger(info.exitCode) && info.exitCode > 0 && info.exitCode < 256, code);
      assert.equal(typeof info.retryable, 'boolean', code);
      assert.ok(isErrorCode(code));
    }
    assert.equal(isErrorCode('toString'), false);
  });

  it('keeps the exit codes the README documents', () => {
    const exit = (code: ErrorCode): number => ERROR_CODES[code].exitCode;
    assert.deepEqual(
      [
        exit('CODEBOOK_INVALID'),
        exit('INPUT_NOT_FOUND'),
        exit('OUTPUT_NOT_WRITABLE'),
        exit('MODEL_NOT_FOUND'),
        exit('ENGINE_FAILED'),
      ],
      [2, 3, 4, 5, 6],
    );
    assert.deepEqual(
      [exit('FALLBACK_AUTH'), exit('AUTH_FAILED'), exit('SERVICE_UNAVAILABLE'), exit('RUN_CONFLICT')],
      [7, 8, 9, 10],
    );
    assert.equal(exit('ABORTED'), 130);
    assert.equal(exit('INTERNAL'), 1);
  });

  it('sends only internal and engine failures as gRPC INTERNAL (the fallback codes included)', () => {
    const internal = CODES.filter((code) => toGrpcError(new RescaleError(code, 'x')).code === status.INTERNAL);
    assert.deepEqual(internal.sort(), ['ENGINE_FAILED', 'INTERNAL']);
    assert.equal(toGrpcError(new RescaleError('FALLBACK_AUTH', 'x')).code, status.FAILED_PRECONDITION);
    assert.equal(toGrpcError(new RescaleError('FALLBACK_REJECTED', 'x')).code, status.FAILED_PRECONDITION);
    assert.equal(toGrpcError(new RescaleError('FALLBACK_MALFORMED', 'x')).code, status.UNAVAILABLE);
  });

  it("makes the code's retry policy the default of a RescaleError", () => {
    assert.equal(new RescaleError('SERVICE_UNAVAILABLE', 'x').retryable, true);
    assert.equal(new RescaleError('ENGINE_FAILED', 'x').retryable, false);
    assert.equal(new RescaleError('ENGINE_FAILED', 'x', { retryable: true }).retryable, true);
  });
});

describe('toGrpcError and fromGrpcError', () => {
  it('round-trip every code with its message and retryable flag', () => {
    for (const code of CODES.filter((c) => c !== 'INTERNAL')) {
      for (const retryable of [false, true]) {
        const back = fromGrpcError(
          received(toGrpcError(new RescaleError(code, `message of ${code}`, { retryable }))),
          'head:7400',
        );
        assert.equal(back.code, code);
        assert.equal(back.retryable, retryable, `${code} retryable=${String(retryable)}`);
        assert.equal(back.message, `message of ${code}`);
      }
    }
  });

  it('round-trip an internal RescaleError as INTERNAL, keeping retryable and naming the coordinator', () => {
    const back = fromGrpcError(
      received(toGrpcError(new RescaleError('INTERNAL', 'broken', { retryable: true }))),
      'head:7400',
    );
    assert.equal(back.code, 'INTERNAL');
    assert.equal(back.retryable, true);
    assert.match(back.message, /head:7400 failed: broken/);
  });

  it('hide anything but a RescaleError behind INTERNAL', () => {
    const sent = toGrpcError(new Error('secret detail'));
    assert.equal(sent.code, status.INTERNAL);
    assert.doesNotMatch(sent.details ?? '', /secret/);
    const back = fromGrpcError(received(sent), 'head:7400');
    assert.equal(back.code, 'INTERNAL');
    assert.equal(back.retryable, false);
  });

  it("fall back to the code's policy when the retryable flag is missing", () => {
    const metadata = new Metadata();
    metadata.set('rescale-error-code', 'SERVICE_UNAVAILABLE');
    assert.equal(fromGrpcError(received({ code: status.UNAVAILABLE, details: 'x', metadata }), 'h:1').retryable, true);
    const run = new Metadata();
    run.set('rescale-error-code', 'RUN_NOT_FOUND');
    assert.equal(
      fromGrpcError(received({ code: status.NOT_FOUND, details: 'x', metadata: run }), 'h:1').retryable,
      false,
    );
  });

  it('turn a transport failure without a code into what the user should check', () => {
    const unreachable = fromGrpcError(
      received({ code: status.UNAVAILABLE, details: 'connect ECONNREFUSED' }),
      'head:7400',
    );
    assert.equal(unreachable.code, 'SERVICE_UNAVAILABLE');
    assert.equal(unreachable.retryable, true);
    assert.match(unreachable.message, /RESCALE_COORDINATOR/);
    const refused = fromGrpcError(received({ code: status.UNAUTHENTICATED, details: 'bad token' }), 'head:7400');
    assert.equal(refused.code, 'AUTH_FAILED');
    assert.match(refused.message, /RESCALE_TOKEN/);
  });
});
