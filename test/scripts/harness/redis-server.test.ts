import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { afterEach, describe, it } from 'node:test';
import {
  canListen,
  redisCommand,
  redisCommands,
  RedisReplyError,
  startRedisServer,
  type RedisServerHandle,
} from '../../../scripts/harness/redis-server.js';

describe('startRedisServer', () => {
  const started: RedisServerHandle[] = [];
  async function start(...args: Parameters<typeof startRedisServer>): Promise<RedisServerHandle> {
    const server = await startRedisServer(...args);
    started.push(server);
    return server;
  }
  afterEach(async () => {
    await Promise.all(started.splice(0).map((server) => server.stop()));
  });

  it('answers PING on a free port, not 6379, with a fresh dir and the test settings', async () => {
    const server = await start();
    assert.notEqual(server.port, 6379);
    assert.equal(server.url, `redis://127.0.0.1:${server.port}`);
    assert.equal(await redisCommand(server, 'PING'), 'PONG');
    assert.deepEqual(await redisCommand(server, 'CONFIG', 'GET', 'dir'), ['dir', server.dir]);
    assert.deepEqual(await redisCommand(server, 'CONFIG', 'GET', 'save'), ['save', '']);
    assert.deepEqual(await redisCommand(server, 'CONFIG', 'GET', 'maxmemory-policy'), [
      'maxmemory-policy',
      'noeviction',
    ]);
    assert.deepEqual(await redisCommand(server, 'CONFIG', 'GET', 'appendonly'), ['appendonly', 'no']);
    assert.equal(await redisCommand(server, 'DBSIZE'), 0);
  });

  it('gives two servers different ports and dirs', async () => {
    const [a, b] = await Promise.all([start(), start()]);
    assert.ok(a !== undefined && b !== undefined);
    assert.notEqual(a.port, b.port);
    assert.notEqual(a.dir, b.dir);
  });

  it('rejects clients without the password or with a wrong one', async () => {
    const server = await start({ password: 'p@ss:word/1' });
    assert.equal(server.url, `redis://:${encodeURIComponent('p@ss:word/1')}@127.0.0.1:${server.port}`);
    const [noAuth] = await redisCommands(server, [['PING']]);
    assert.ok(noAuth instanceof RedisReplyError && noAuth.message.startsWith('NOAUTH'), String(noAuth));
    const [wrong] = await redisCommands(server, [['AUTH', 'nope']]);
    assert.ok(wrong instanceof RedisReplyError && wrong.message.startsWith('WRONGPASS'), String(wrong));
    assert.equal(await redisCommand(server, 'PING'), 'PONG');
  });

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`keeps appendonly data across a ${signal} restart on the same port and dir`, async () => {
      const server = await start({ appendonly: true, password: 'secret' });
      const { port, dir } = server;
      assert.equal(await redisCommand(server, 'SET', 'run:1:state', 'running'), 'OK');
      assert.equal(await redisCommand(server, 'RPUSH', 'run:1:done', 'shard-0', 'shard-1'), 2);
      const pidBefore = server.pid;
      await server.restart({ signal, downtimeMs: 100 });
      assert.notEqual(server.pid, pidBefore);
      assert.equal(server.port, port);
      assert.equal(server.dir, dir);
      assert.equal(await redisCommand(server, 'GET', 'run:1:state'), 'running');
      assert.deepEqual(await redisCommand(server, 'LRANGE', 'run:1:done', '0', '-1'), ['shard-0', 'shard-1']);
    });
  }

  it('loses data across a restart without appendonly (so tests that rely on the AOF must ask for it)', async () => {
    const server = await start();
    await redisCommand(server, 'SET', 'k', 'v');
    await server.restart({ signal: 'SIGKILL' });
    assert.equal(await redisCommand(server, 'GET', 'k'), null);
  });

  it('refuses connections while killed and serves again after restart', async () => {
    const server = await start();
    await server.kill('SIGKILL');
    assert.equal(server.pid, undefined);
    await assert.rejects(redisCommands(server, [['PING']], 1_000), /ECONNREFUSED/);
    await server.restart();
    assert.equal(await redisCommand(server, 'PING'), 'PONG');
  });

  it('pause() leaves the port open but silent until resume()', async () => {
    const server = await start();
    server.pause();
    await assert.rejects(redisCommands(server, [['PING']], 300), /no reply/);
    server.resume();
    assert.equal(await redisCommand(server, 'PING'), 'PONG');
  });

  it('stop() ends the process, frees the port and removes the dir', async () => {
    const server = await startRedisServer({ appendonly: true });
    const { port, dir, pid } = server;
    assert.ok(pid !== undefined && existsSync(dir));
    await server.stop();
    await server.stop(); // idempotent
    assert.equal(existsSync(dir), false);
    assert.equal(await canListen(port), true);
    assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
    await assert.rejects(server.restart(), /was stopped/);
  });
});
