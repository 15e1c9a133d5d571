// `npm run build:llama`: compiles the llama.cpp source bundled in node-llama-cpp for this machine (native CPU
// instructions; CUDA or Vulkan where the node has them), with no network. The engine prefers this build over the
// prebuilt binary from then on and logs which one it loaded. On a cluster, run it once per node type.
//
//   npm run build:llama               # detect: CUDA, Vulkan, else CPU
//   npm run build:llama -- --gpu false
//   npm run build:llama -- --gpu cuda

import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { getLlama } from 'node-llama-cpp';
import { nodeLlamaCppRoot } from '../worker/engine/llama-runtime.js';

const args = process.argv.slice(2);
const gpuIndex = args.indexOf('--gpu');
const gpu = gpuIndex >= 0 ? (args[gpuIndex + 1] ?? 'auto') : 'auto';

const cli = path.join(nodeLlamaCppRoot(), 'dist', 'cli', 'cli.js');
const started = Date.now();
// "source download" uses the git bundle shipped in the npm package when it holds the pinned release: no download.
const build = spawnSync(process.execPath, [cli, 'source', 'download', '--gpu', gpu, '--noUsageExample'], {
  stdio: 'inherit',
});
if (build.status !== 0) {
  console.error(`build:llama failed (exit ${build.status ?? build.signal}); the prebuilt binary stays in use`);
  process.exit(1);
}
const llama = await getLlama({ build: 'never', skipDownload: true });
console.log(
  `build:llama: done in ${((Date.now() - started) / 1000).toFixed(0)} s; the engine now loads the ` +
    `${llama.buildType} build ` +
    `(gpu: ${llama.gpu === false ? 'none' : llama.gpu}, llama.cpp ${llama.llamaCppRelease.release})`,
);
await llama.dispose();
