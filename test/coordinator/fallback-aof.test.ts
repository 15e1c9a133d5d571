// Document texts of routed documents live in a run's fallback queue; when the run ends the queue is deleted and
// Redis is made to rewrite its append-only file, so the texts leave the disk too (a real redis-server with AOF).

import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { Queue } from 'bullmq';
import { fallbackQueueName } from '../../contracts/fallback-queue.js';
import { parseRedisUrl, redisOptions } from '../../contracts/redis-connection.js';
import { QUEUE_PREFIX } from '../../contracts/shard-queue.js';
import { FallbackService } from '../../coordinator/fallback-service.js';
import { startRedisServer, type RedisServerHandle } from '../../scripts/harness/redis-server.js';

let redis: RedisServerHandle;
before(async () => {
  redis = await startRedisServer({ appendonly: true });
});
after(async () => {
  await redis.stop();
});

async function aofText(): Promise<string> {
  const dir = path.join(redis.dir, 'appendonlydir');
  const files = await readdir(dir);
  return (await Promise.all(files.map((f) => readFile(path.join(dir, f), 'latin1')))).join('\n');
}

it('purging a run’s fallback queue rewrites the AOF, so routed document texts are gone from disk', async () => {
  const target = parseRedisUrl(redis.url);
  const queue = new Queue(fallbackQueueName('r-aof'), {
    connection: redisOptions(target, { blocking: false }),
    prefix: QUEUE_PREFIX,
  });
  await queue.add('doc', { text: 'confidential-document-text-4711' });
  await queue.close();
  for (let i = 0; i < 50 && !(await aofText()).includes('confidential-document-text-4711'); i++)
    await new Promise((r) => setTimeout(r, 100));
  assert.ok((await aofText()).includes('confidential-document-text-4711'), 'the AOF holds the text before');
  await FallbackService.purge(target, 'r-aof');
  let text = await aofText();
  for (let i = 0; i < 100 && text.includes('confidential-document-text-4711'); i++) {
    await new Promise((r) => setTimeout(r, 100));
    text = await aofText();
  }
  assert.ok(!text.includes('confidential-document-text-4711'), 'the AOF still holds the document text');
});
