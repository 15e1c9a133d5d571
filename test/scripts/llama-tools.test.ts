// How scripts/llama-tools.ts names its cache folder and assembles the cmake, llama-server and llama-bench command
// lines (the builds themselves are not run here).

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  bundledSource,
  cmakeBuildArgs,
  cmakeConfigureArgs,
  llamaBatchedBenchArgs,
  llamaBenchArgs,
  llamaServerArgs,
  llamaToolsFolder,
} from '../../scripts/llama-tools.js';

describe('llamaToolsFolder', () => {
  it('is one folder per llama.cpp release and backend under the cache root', () => {
    assert.equal(llamaToolsFolder('/r/.cache', 'b6000', 'cpu'), path.join('/r/.cache', 'llama-tools', 'b6000-cpu'));
    assert.equal(llamaToolsFolder('/r/.cache', 'b6000', 'cuda'), path.join('/r/.cache', 'llama-tools', 'b6000-cuda'));
  });

  it('refuses a release that is not a plain name, naming the file it came from', () => {
    assert.throws(() => llamaToolsFolder('/r/.cache', '../x', 'cpu'), /llama\.cpp\.info\.json, field "tag"/);
  });
});

describe('bundledSource', () => {
  it('is the release node-llama-cpp names, in the git bundle it ships', async () => {
    const source = await bundledSource();
    assert.match(source.release, /^[A-Za-z0-9._-]+$/);
    assert.ok(source.bundle.endsWith(path.join('llama', 'gitRelease.bundle')));
  });
});

describe('cmake arguments', () => {
  it('configure a native Release build that downloads nothing, CUDA only when asked', () => {
    const cpu = cmakeConfigureArgs('/s', '/b', 'cpu');
    for (const flag of [
      '-DCMAKE_BUILD_TYPE=Release',
      '-DGGML_NATIVE=ON',
      '-DLLAMA_CURL=OFF',
      '-DLLAMA_USE_PREBUILT_UI=OFF',
    ])
      assert.ok(cpu.includes(flag), flag);
    assert.ok(!cpu.includes('-DGGML_CUDA=ON'));
    assert.ok(cmakeConfigureArgs('/s', '/b', 'cuda').includes('-DGGML_CUDA=ON'));
  });

  it('build only llama-bench, llama-batched-bench and llama-server', () => {
    assert.deepEqual(cmakeBuildArgs('/b', 2), [
      '--build',
      '/b',
      '--config',
      'Release',
      '--target',
      'llama-bench',
      'llama-batched-bench',
      'llama-server',
      '-j',
      '2',
    ]);
  });
});

describe('tool command lines', () => {
  it('give llama-server a context of the engine’s size per slot, on the engine’s threads and attention', () => {
    const args = llamaServerArgs({
      model: 'm.gguf',
      threads: 2,
      slots: 4,
      contextPerSlot: 768,
      flashAttention: 'off',
      port: 8080,
    });
    const value = (flag: string): string | undefined => args[args.indexOf(flag) + 1];
    assert.equal(value('-np'), '4');
    assert.equal(value('-c'), String(4 * 768));
    assert.equal(value('-t'), '2');
    assert.equal(value('-fa'), 'off');
    assert.equal(value('--host'), '127.0.0.1');
    assert.equal(args.includes('--cache-ram'), false, 'the server’s default prompt cache stays on unless asked');
  });

  it('turn llama-server’s host-memory prompt cache off when asked', () => {
    const base = {
      model: 'm.gguf',
      threads: 2,
      slots: 1,
      contextPerSlot: 768,
      flashAttention: 'auto',
      port: 1,
    } as const;
    const off = llamaServerArgs({ ...base, promptCache: false });
    assert.equal(off[off.indexOf('--cache-ram') + 1], '0');
    assert.equal(llamaServerArgs({ ...base, promptCache: true }).includes('--cache-ram'), false);
  });

  it('ask llama-bench for prompt processing only, at the shared prefix’s depth', () => {
    const args = llamaBenchArgs({
      model: 'm.gguf',
      threads: 2,
      promptTokens: 224,
      depth: 199,
      repetitions: 20,
      flashAttention: 'auto',
    });
    const value = (flag: string): string | undefined => args[args.indexOf(flag) + 1];
    assert.equal(value('-p'), '224');
    assert.equal(value('-d'), '199');
    assert.equal(value('-n'), '0');
    // The engine's own setting, passed through: "auto" resolves the same way in both (on where the backend has it).
    assert.equal(value('-fa'), 'auto');
    assert.equal(value('-o'), 'json');
  });

  it('ask llama-batched-bench for whole groups in one batch, one generated token, as JSON lines', () => {
    const args = llamaBatchedBenchArgs({
      model: 'm.gguf',
      threads: 2,
      promptTokens: 222,
      parallel: [1, 4],
      flashAttention: 'auto',
    });
    const value = (flag: string): string | undefined => args[args.indexOf(flag) + 1];
    assert.equal(value('-npp'), '222');
    assert.equal(value('-ntg'), '1');
    assert.equal(value('-npl'), '1,4');
    assert.equal(value('-ub'), String(4 * 222));
    assert.equal(value('-b'), String(4 * 222));
    assert.equal(value('-c'), String(4 * 223));
    assert.equal(value('-fa'), 'auto');
    assert.equal(value('--output-format'), 'jsonl');
  });
});
