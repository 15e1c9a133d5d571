import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseEnvironment } from '../../contracts/environment.js';
import { isRescaleError } from '../../contracts/errors.js';

describe('parseEnvironment', () => {
  it('reads the cluster variables and defaults the llama.cpp build to auto', () => {
    const env = parseEnvironment({
      RESCALE_REDIS_URL: 'redis://:pw@db:6379',
      RESCALE_COORDINATOR: 'head:7400',
      RESCALE_TOKEN_FILE: '/run/token',
      RESCALE_TOKEN: '  secret\n',
    });
    assert.equal(env.redisUrl, 'redis://:pw@db:6379');
    assert.equal(env.coordinator, 'head:7400');
    assert.equal(env.tokenFile, '/run/token');
    assert.equal(env.token, 'secret');
    assert.equal(env.llamaBuild, 'auto');
  });

  it('treats an empty variable as unset', () => {
    const env = parseEnvironment({
      RESCALE_REDIS_URL: '',
      RESCALE_COORDINATOR: '',
      RESCALE_TOKEN_FILE: '',
      RESCALE_TOKEN: ' ',
    });
    assert.deepEqual(
      [env.redisUrl, env.coordinator, env.tokenFile, env.token],
      [undefined, undefined, undefined, undefined],
    );
  });

  it('keeps every variable in a frozen snapshot, for the key variable a codebook names', () => {
    const source: Record<string, string | undefined> = { OPENAI_API_KEY: 'sk-test' };
    const env = parseEnvironment(source);
    source.OPENAI_API_KEY = 'changed later';
    assert.equal(env.variables.OPENAI_API_KEY, 'sk-test');
    assert.ok(Object.isFrozen(env));
    assert.ok(Object.isFrozen(env.variables));
  });

  it('rejects an unknown llama.cpp build, naming the variable and the values it takes', () => {
    assert.equal(parseEnvironment({ RESCALE_LLAMA_BUILD: 'prebuilt' }).llamaBuild, 'prebuilt');
    assert.throws(
      () => parseEnvironment({ RESCALE_LLAMA_BUILD: 'cuda' }),
      (error: unknown) =>
        isRescaleError(error, 'CONFIG_INVALID') &&
        error.message === 'environment variable RESCALE_LLAMA_BUILD is "cuda"; use "auto" or "prebuilt"',
    );
  });
});
