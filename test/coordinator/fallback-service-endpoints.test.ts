// The coordinator's fallback service resolves a run's endpoint from its own list each time it starts answering the
// run (a run outlives restarts): a codebook that chose its own URL is never answered, and an endpoint whose URL
// changed since the run was submitted fails the run instead of mixing two endpoints' answers (a real redis-server).

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { Codebook } from '../../contracts/codebook.js';
import { isRescaleError } from '../../contracts/errors.js';
import { silentLogger } from '../../contracts/logger.js';
import { parseRedisUrl } from '../../contracts/redis-connection.js';
import type { RunSpec } from '../../contracts/shard-queue.js';
import { FallbackService } from '../../coordinator/fallback-service.js';
import { EndpointList } from '../../fallback/endpoint-list.js';
import { resolveFallback } from '../../fallback/resolve-fallback.js';
import { startRedisServer, type RedisServerHandle } from '../../scripts/harness/redis-server.js';
import { endpointSection, fallbackSection, sentimentCodebook } from '../helpers/fallback.js';

const KEY_VARIABLE = 'RESCALE_TEST_ENDPOINT_KEY';
const env = { [KEY_VARIABLE]: 'sk-test-service' };

function endpointList(baseUrl: string): EndpointList {
  return EndpointList.parse(
    'endpoints:\n  - name: primary\n' +
      `    base_url: ${baseUrl}\n    models: [gpt-test]\n    api_key_env: ${KEY_VARIABLE}\n`,
    '/etc/rescale/endpoints.yaml',
  );
}

function namedCodebook(): Codebook {
  return sentimentCodebook(endpointSection('primary'));
}

function spec(runId: string, dir: string, identity: string | undefined): RunSpec {
  return {
    runId,
    task: 'sentiment',
    codebookPath: path.join(dir, 'codebook.yaml'),
    codebookText: '',
    codebookHash: 'h',
    sequences: 1,
    shardRows: 10,
    limit: null,
    inputs: [],
    output: path.join(dir, 'out.parquet'),
    resultDir: path.join(dir, 'out.parts'),
    idColumn: null,
    idType: 'int64',
    textColumn: 'text',
    totalShards: 1,
    totalRows: 1,
    createdAt: new Date(0).toISOString(),
    fallback: {
      active: true,
      mode: 'live',
      cacheDir: path.join(dir, 'cache'),
      auditFile: path.join(dir, 'audit.jsonl'),
      ...(identity !== undefined ? { identity } : {}),
    },
  };
}

describe('FallbackService with an endpoint list', () => {
  let redis: RedisServerHandle;
  let connection: Redis;
  let dir: string;

  before(async () => {
    redis = await startRedisServer();
    connection = new Redis(redis.url);
    dir = await mkdtemp(path.join(tmpdir(), 'rescale-fallback-service-'));
  });
  after(async () => {
    connection?.disconnect();
    await redis?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  function service(endpoints: EndpointList | null): FallbackService {
    return new FallbackService({
      redis: parseRedisUrl(redis.url),
      connection,
      logger: silentLogger,
      env,
      endpoints,
      isRunning: () => Promise.resolve(true),
      onFatal: () => undefined,
    });
  }

  it('answers a run whose endpoint resolves as at submit', async () => {
    const list = endpointList('http://127.0.0.1:9/v1');
    const codebook = namedCodebook();
    const plan = await resolveFallback(codebook, { env, endpoints: list, endpointsOnly: true });
    assert.ok(plan.active);
    const fallbacks = service(list);
    try {
      await fallbacks.start(spec('r-same', dir, plan.identity), codebook);
      assert.ok((await fallbacks.stats('r-same')) !== null);
    } finally {
      await fallbacks.close();
    }
  });

  it('fails a run whose endpoint now points elsewhere, naming the endpoint', async () => {
    const codebook = namedCodebook();
    const submitted = await resolveFallback(codebook, {
      env,
      endpoints: endpointList('http://127.0.0.1:9/v1'),
      endpointsOnly: true,
    });
    assert.ok(submitted.active);
    const fallbacks = service(endpointList('http://127.0.0.1:10/v1'));
    try {
      await assert.rejects(
        fallbacks.start(spec('r-moved', dir, submitted.identity), codebook),
        (error: unknown) =>
          isRescaleError(error, 'CONFIG_INVALID') &&
          /endpoint "primary" now resolves to another URL/.test(error.message),
      );
    } finally {
      await fallbacks.close();
    }
  });

  it('never answers a run whose codebook chose its own URL (a run stored before the list existed)', async () => {
    const codebook = sentimentCodebook(fallbackSection('http://127.0.0.1:11/v1', { api_key_env: KEY_VARIABLE }));
    for (const endpoints of [endpointList('http://127.0.0.1:9/v1'), null]) {
      const fallbacks = service(endpoints);
      try {
        await assert.rejects(
          fallbacks.start(spec('r-inline', dir, undefined), codebook),
          (error: unknown) => isRescaleError(error, 'CODEBOOK_INVALID') && /fallback\.base_url/.test(error.message),
        );
      } finally {
        await fallbacks.close();
      }
    }
  });
});
