// What a token holder can reach through `rescale submit`: a coordinator started with --data-root accepts a run only
// when its codebook, inputs, output (and the files beside it), model and adapters resolve inside those folders —
// `..`, absolute paths elsewhere and symlinks out are refused with INVALID_ARGUMENT naming the path, before anything
// is read, created or deleted; and a file that is not a codebook comes back as a field-level message, never its lines.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ControlClient } from '../../../cli/control-client.js';
import { isRescaleError } from '../../../contracts/errors.js';
import type { SubmitRunRequest } from '../../../coordinator/control-proto.js';
import {
  client,
  clusterFixture,
  startCoordinator,
  type ClusterFixture,
  type CoordinatorProcess,
} from '../../../scripts/harness/cluster.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';
import { startRedisServer, type RedisServerHandle } from '../../../scripts/harness/redis-server.js';

function request(codebook: string, input: string, output: string, overwrite = false): SubmitRunRequest {
  return {
    codebook,
    inputs: [input],
    output,
    options: { shardRows: 50, limit: 0, sequences: 0, overwrite, noFallback: false, fallbackOffline: false },
  };
}

describe('a coordinator with --data-root', () => {
  let fixture: ClusterFixture;
  let redis: RedisServerHandle;
  let coordinator: CoordinatorProcess;
  let control: ControlClient;
  /** The data root: codebook and corpus copied in. */
  let root: string;
  /** Beside the root, outside it. */
  let outside: string;
  let codebook: string;
  let corpus: string;

  before(async () => {
    fixture = await clusterFixture(100, { rowGroupRows: 50 });
    root = path.join(fixture.dir, 'data');
    outside = path.join(fixture.dir, 'private');
    await mkdir(root, { recursive: true });
    await mkdir(outside, { recursive: true });
    codebook = path.join(root, 'codebook.yaml');
    corpus = path.join(root, 'corpus.parquet');
    await writeFile(codebook, await readFile(fixture.codebook));
    await writeFile(corpus, await readFile(fixture.corpus));
    redis = await startRedisServer();
    const modelDir = path.dirname(await fixtureModel('keyword'));
    coordinator = await startCoordinator(redis.url, fixture, ['--data-root', root, '--data-root', modelDir]);
    control = client(coordinator, fixture);
  });

  after(async () => {
    control?.close();
    await coordinator?.stop();
    await redis?.stop();
    await fixture?.cleanup();
  });

  async function refused(submitted: SubmitRunRequest, named: RegExp): Promise<string> {
    let message = '';
    await assert.rejects(control.submit(submitted), (error: unknown) => {
      message = error instanceof Error ? error.message : String(error);
      return isRescaleError(error, 'CONFIG_INVALID') && named.test(message);
    });
    return message;
  }

  it('refuses an output outside the roots, by ".." or by absolute path, and creates nothing there', async () => {
    const escaped = path.join(root, '..', 'private', 'results.parquet');
    await refused(request(codebook, corpus, escaped), /output .*private.*outside the coordinator's data roots/);
    await refused(request(codebook, corpus, path.join(outside, 'r.parquet'), true), /outside .*data roots/);
    assert.equal(existsSync(path.join(outside, 'results.parquet.parts')), false);
    assert.equal(existsSync(path.join(outside, 'r.parquet.parts')), false);
  });

  it('refuses --overwrite of a file outside the roots reached through a symlink, and leaves it intact', async () => {
    const precious = path.join(outside, 'precious.parquet');
    await writeFile(precious, 'not rescale output');
    await symlink(outside, path.join(root, 'link-out'));
    await refused(
      request(codebook, corpus, path.join(root, 'link-out', 'precious.parquet'), true),
      /output .*link-out.*resolves to .*private/,
    );
    assert.equal(await readFile(precious, 'utf8'), 'not rescale output');
  });

  it('refuses a codebook, an input or a model outside the roots, naming which', async () => {
    const secret = path.join(outside, 'secret.yaml');
    await writeFile(secret, 'password: hunter2\n');
    const message = await refused(request(secret, corpus, path.join(root, 'a.parquet')), /codebook .*secret\.yaml/);
    assert.ok(!message.includes('hunter2') && !message.includes('password'));
    await refused(request(codebook, fixture.corpus, path.join(root, 'b.parquet')), /input .*corpus\.parquet.*outside/);
    await refused(request(codebook, path.join(fixture.dir, '*.parquet'), path.join(root, 'c.parquet')), /input/);
    const foreignModel = path.join(root, 'foreign-model.yaml');
    const text = await readFile(codebook, 'utf8');
    await writeFile(
      foreignModel,
      text.replace(/ {2}path: .*/, `  path: ${JSON.stringify(path.join(outside, 'm.gguf'))}`),
    );
    await refused(
      request(foreignModel, corpus, path.join(root, 'd.parquet')),
      /model \(codebook field "model\.path"\)/,
    );
  });

  it('answers a file that is not a codebook by field names and lines, not its content, in reply or log', async () => {
    const notCodebook = path.join(root, 'passwd');
    await writeFile(notCodebook, 'root:x:0:0:root:/root:/bin/bash\nsvc: hunter2-secret\n');
    let message = '';
    await assert.rejects(control.submit(request(notCodebook, corpus, path.join(root, 'e.parquet'))), (error) => {
      message = error instanceof Error ? error.message : '';
      return isRescaleError(error, 'CODEBOOK_INVALID') && /is not (a codebook|valid YAML at line 1)/.test(message);
    });
    const yamlMap = path.join(root, 'config.yaml');
    await writeFile(yamlMap, 'redis_password: hunter2-secret\nsk-live-0123456789abcdef0123456789: 1\n');
    let reply = '';
    await assert.rejects(control.submit(request(yamlMap, corpus, path.join(root, 'f.parquet'))), (error) => {
      reply = error instanceof Error ? error.message : '';
      return isRescaleError(error, 'CODEBOOK_INVALID');
    });
    assert.match(reply, /unknown key "redis_password"/);
    const logs = JSON.stringify(coordinator.logs());
    for (const text of [message, reply, logs]) {
      for (const secret of ['hunter2', '/bin/bash', 'sk-live-0123']) assert.ok(!text.includes(secret), text);
    }
  });

  it('accepts a run whose every path is inside the roots', async () => {
    const accepted = await control.submit(request(codebook, corpus, path.join(root, 'out', 'results.parquet')));
    assert.equal(accepted.created, true);
    await control.cancel(accepted.runId);
  });
});
