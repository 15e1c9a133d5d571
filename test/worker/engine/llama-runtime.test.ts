// The process-wide llama.cpp binding: one build per process, and llama.cpp's own messages reach the latest
// caller's logger (not the first caller's).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { llamaBuildFromEnvironment } from '../../../contracts/environment.js';
import { RescaleError, isRescaleError } from '../../../contracts/errors.js';
import type { LogLevel, Logger, LogMeta } from '../../../contracts/logger.js';
import { getRuntime, loadModel } from '../../../worker/engine/llama-runtime.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';

function recordingLogger(): Logger & { readonly lines: { level: LogLevel; message: string; meta?: LogMeta }[] } {
  const lines: { level: LogLevel; message: string; meta?: LogMeta }[] = [];
  const logger = {
    lines,
    log: (level: LogLevel, message: string, meta?: LogMeta) =>
      void lines.push({ level, message, ...(meta ? { meta } : {}) }),
    child: () => logger,
  };
  return logger;
}

describe('getRuntime', () => {
  it('returns one binding per process and refuses a second build preference', async () => {
    const build = llamaBuildFromEnvironment();
    const first = await getRuntime({ build });
    assert.equal(await getRuntime({ build }), first);
    const other = build === 'auto' ? 'prebuilt' : 'auto';
    await assert.rejects(
      getRuntime({ build: other }),
      (e: unknown) => e instanceof RescaleError && /already loaded as/.test(e.message),
    );
  });

  it("sends llama.cpp's messages to the latest caller's logger, at debug level only", async () => {
    const build = llamaBuildFromEnvironment();
    const first = recordingLogger();
    const latest = recordingLogger();
    await getRuntime({ build, logger: first });
    const llama = await getRuntime({ build, logger: latest });
    // An adapter is a GGUF file without a model's keys and tensors: llama.cpp logs errors while refusing it.
    await assert.rejects(llama.loadModel({ modelPath: await fixtureModel('keyword-adapter'), gpuLayers: 0 }));
    assert.ok(
      latest.lines.some((l) => l.message === 'llama.cpp' && l.level === 'debug'),
      JSON.stringify(latest.lines),
    );
    // What llama.cpp says on its own is not a failure of the run: nothing above debug reaches the terminal.
    assert.deepEqual(
      latest.lines.filter((l) => l.level !== 'debug'),
      [],
    );
    assert.equal(first.lines.length, 0);
  });

  it("puts llama.cpp's error lines into the error of a load that fails", async () => {
    const build = llamaBuildFromEnvironment();
    const logger = recordingLogger();
    const llama = await getRuntime({ build, logger });
    const adapter = await fixtureModel('keyword-adapter');
    await assert.rejects(
      loadModel(llama, adapter, 0),
      (e: unknown) =>
        isRescaleError(e, 'MODEL_INVALID') && e.message.includes(adapter) && e.message.includes('error loading model'),
    );
    assert.deepEqual(
      logger.lines.filter((l) => l.level !== 'debug'),
      [],
    );
  });
});
