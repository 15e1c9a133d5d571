// llama.cpp's own reference tools, llama-bench and llama-server, built from the llama.cpp source bundled in
// node-llama-cpp (the same release the engine runs; no network) into .cache/llama-tools/<release>-<cpu|cuda>/,
// reused when present. The engine benchmark measures against them.
//
//   npm run build:llama-tools            # build (or reuse) and print the folder
//   npm run build:llama-tools -- --gpu false

import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeLlamaCppRoot } from '../worker/engine/llama-runtime.js';

export type ToolsBackend = 'cpu' | 'cuda';

/** llama.cpp's flash-attention setting as every tool takes it (`-fa on|off|auto`); the engine's default is auto. */
export type FlashAttentionMode = 'on' | 'off' | 'auto';

export interface LlamaTools {
  readonly folder: string;
  readonly release: string;
  readonly backend: ToolsBackend;
  /** The source commit the tools were built from. */
  readonly commit: string;
  readonly llamaBench: string;
  readonly llamaServer: string;
  /** null in a folder built before it was one of the targets (delete the folder to build it). */
  readonly llamaBatchedBench: string | null;
  readonly cmakeArgs: readonly string[];
}

/** What the bundled source is: node-llama-cpp names its llama.cpp release and ships that release as a git bundle. */
export interface BundledSource {
  readonly release: string;
  readonly bundle: string;
}

const TOOL_TARGETS = ['llama-bench', 'llama-batched-bench', 'llama-server'] as const;
const STAMP = 'tools.json';

/** `.cache/llama-tools/<release>-<backend>`; the release is used as a folder name, so it must be one. */
export function llamaToolsFolder(cacheRoot: string, release: string, backend: ToolsBackend): string {
  if (!/^[A-Za-z0-9._-]+$/.test(release)) {
    throw new Error(
      `llama.cpp release ${JSON.stringify(release)} (node-llama-cpp's llama/llama.cpp.info.json, field "tag") ` +
        'is not a plain name; reinstall node-llama-cpp with "npm ci"',
    );
  }
  return path.join(cacheRoot, 'llama-tools', `${release}-${backend}`);
}

/**
 * cmake configure arguments: Release, native CPU instructions, static, only what the two tools need, and nothing
 * that downloads at build time (no curl or OpenSSL, no prebuilt web UI).
 */
export function cmakeConfigureArgs(source: string, build: string, backend: ToolsBackend): string[] {
  return [
    '-S',
    source,
    '-B',
    build,
    '-DCMAKE_BUILD_TYPE=Release',
    '-DGGML_NATIVE=ON',
    '-DBUILD_SHARED_LIBS=OFF',
    '-DLLAMA_CURL=OFF',
    '-DLLAMA_OPENSSL=OFF',
    '-DLLAMA_BUILD_TESTS=OFF',
    '-DLLAMA_BUILD_EXAMPLES=OFF',
    '-DLLAMA_BUILD_UI=OFF',
    '-DLLAMA_USE_PREBUILT_UI=OFF',
    ...(backend === 'cuda' ? ['-DGGML_CUDA=ON'] : []),
  ];
}

export function cmakeBuildArgs(build: string, jobs: number): string[] {
  return ['--build', build, '--config', 'Release', '--target', ...TOOL_TARGETS, '-j', String(jobs)];
}

/** llama-server: `slots` slots of the engine's context size each, on the engine's threads and attention. */
export function llamaServerArgs(options: {
  readonly model: string;
  readonly threads: number;
  readonly slots: number;
  readonly contextPerSlot: number;
  readonly flashAttention: FlashAttentionMode;
  readonly port: number;
  /**
   * false: `--cache-ram 0`, no prompt cache in host memory. By default llama-server keeps finished prompts' states in
   * RAM and restores one for a request with the same prompt, so an exact duplicate costs it ~1 evaluated token.
   */
  readonly promptCache?: boolean;
}): string[] {
  return [
    ...['-m', options.model, '-t', String(options.threads), '-tb', String(options.threads)],
    ...['-np', String(options.slots), '-c', String(options.contextPerSlot * options.slots), '-ngl', '0'],
    ...['-fa', options.flashAttention, '--host', '127.0.0.1', '--port', String(options.port)],
    ...(options.promptCache === false ? ['--cache-ram', '0'] : []),
    '--no-webui',
  ];
}

/** llama-bench: pp<promptTokens> at depth <depth> (the depth is evaluated untimed before each repetition). */
export function llamaBenchArgs(options: {
  readonly model: string;
  readonly threads: number;
  readonly promptTokens: number;
  readonly depth: number;
  readonly repetitions: number;
  readonly flashAttention: FlashAttentionMode;
}): string[] {
  return [
    ...['-m', options.model, '-t', String(options.threads), '-ngl', '0', '-fa', options.flashAttention],
    ...['-p', String(options.promptTokens), '-d', String(options.depth), '-n', '0'],
    ...['-r', String(options.repetitions), '-o', 'json'],
  ];
}

/**
 * llama-batched-bench: `parallel` sequences each evaluating a `promptTokens`-token prompt in one batch (-npp, -npl),
 * one token generated, its prompt-processing speed (S_PP) the ceiling of the engine's batched decoding. It has no
 * shared depth, so its attention is cheaper than the engine's behind a prefix: a ceiling that errs high.
 */
export function llamaBatchedBenchArgs(options: {
  readonly model: string;
  readonly threads: number;
  readonly promptTokens: number;
  readonly parallel: readonly number[];
  readonly flashAttention: FlashAttentionMode;
}): string[] {
  const maxParallel = Math.max(...options.parallel);
  // The engine decodes a group in one call with a batch (and micro-batch) that holds it whole: so does this.
  const batch = String(options.promptTokens * maxParallel);
  return [
    ...['-m', options.model, '-t', String(options.threads), '-tb', String(options.threads), '-ngl', '0'],
    ...['-fa', options.flashAttention, '-c', String((options.promptTokens + 1) * maxParallel)],
    ...['-b', batch, '-ub', batch],
    ...[
      '-npp',
      String(options.promptTokens),
      '-ntg',
      '1',
      '-npl',
      options.parallel.join(','),
      '--output-format',
      'jsonl',
    ],
  ];
}

/** "auto": CUDA when both the compiler (nvcc) and a GPU (nvidia-smi -L) are there, else CPU. */
export function detectBackend(gpu: 'auto' | 'false' | 'cuda'): ToolsBackend {
  if (gpu === 'false') return 'cpu';
  if (gpu === 'cuda') return 'cuda';
  const works = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
  return works('nvcc', ['--version']) && works('nvidia-smi', ['-L']) ? 'cuda' : 'cpu';
}

export async function bundledSource(): Promise<BundledSource> {
  const llamaDir = path.join(nodeLlamaCppRoot(), 'llama');
  const infoFile = path.join(llamaDir, 'llama.cpp.info.json');
  const info = JSON.parse(await readFile(infoFile, 'utf8')) as { tag?: unknown };
  const bundled = JSON.parse(await readFile(path.join(llamaDir, 'binariesGithubRelease.json'), 'utf8')) as {
    release?: unknown;
  };
  if (typeof info.tag !== 'string') throw new Error(`${infoFile} has no "tag"; reinstall node-llama-cpp with "npm ci"`);
  // node-llama-cpp uses its bundle only for the release it was made from (gitReleaseBundles.js); so do we.
  if (bundled.release !== info.tag) {
    throw new Error(
      `node-llama-cpp's source bundle holds llama.cpp ${String(bundled.release)}, not the release ${info.tag} named ` +
        `in ${infoFile}; reinstall node-llama-cpp with "npm ci" (no download is attempted)`,
    );
  }
  return { release: info.tag, bundle: path.join(llamaDir, 'gitRelease.bundle') };
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

function run(cmd: string, args: readonly string[], what: string, options: { cwd?: string } = {}): string {
  const result: SpawnSyncReturns<string> = spawnSync(cmd, args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 26,
    ...options,
  });
  if (result.status !== 0) {
    throw new Error(
      `${what} failed (${cmd} ${args.join(' ')}: exit ${result.status ?? result.signal}); ` +
        'see the output above, then delete the folder and run again',
    );
  }
  return result.stdout;
}

/** The tools of this release and backend: reused from the cache folder when built there before, else built. */
export async function ensureLlamaTools(options: {
  readonly cacheRoot: string;
  readonly backend: ToolsBackend;
  readonly jobs: number;
  readonly log: (line: string) => void;
}): Promise<LlamaTools> {
  const { release, bundle } = await bundledSource();
  const folder = llamaToolsFolder(options.cacheRoot, release, options.backend);
  const stamp = path.join(folder, STAMP);
  if (await exists(stamp)) {
    const tools = JSON.parse(await readFile(stamp, 'utf8')) as LlamaTools;
    if ((await exists(tools.llamaBench)) && (await exists(tools.llamaServer))) {
      // A folder built before llama-batched-bench was a target is kept: rebuilding it compiles llama.cpp again.
      const batched = path.join(path.dirname(tools.llamaBench), 'llama-batched-bench');
      return { ...tools, llamaBatchedBench: (await exists(batched)) ? batched : null };
    }
  }
  const source = path.join(folder, 'src');
  const build = path.join(folder, 'build');
  await mkdir(folder, { recursive: true });
  if (!(await exists(path.join(source, 'CMakeLists.txt')))) {
    await rm(source, { recursive: true, force: true });
    options.log(`llama-tools: cloning llama.cpp ${release} from ${bundle}`);
    run('git', ['clone', '--quiet', bundle, source], 'cloning the bundled llama.cpp source');
    // The bundle is that release squashed into one commit; a tag, where the bundle has one, must agree.
    const tags = run('git', ['tag', '--list', release], 'listing tags', { cwd: source }).trim();
    if (tags !== '')
      run('git', ['-c', 'advice.detachedHead=false', 'checkout', '--quiet', release], 'checkout', {
        cwd: source,
      });
  }
  const commit = run('git', ['rev-parse', 'HEAD'], 'reading the source commit', { cwd: source }).trim();
  const cmakeArgs = cmakeConfigureArgs(source, build, options.backend);
  options.log(
    `llama-tools: building ${TOOL_TARGETS.join(', ')} (${options.backend}) in ${folder} (~10 min on 2 cores)`,
  );
  run('cmake', cmakeArgs, 'cmake configure');
  run('cmake', cmakeBuildArgs(build, options.jobs), 'cmake build');
  const tools: LlamaTools = {
    folder,
    release,
    backend: options.backend,
    commit,
    llamaBench: path.join(build, 'bin', 'llama-bench'),
    llamaServer: path.join(build, 'bin', 'llama-server'),
    llamaBatchedBench: path.join(build, 'bin', 'llama-batched-bench'),
    cmakeArgs,
  };
  for (const binary of [tools.llamaBench, tools.llamaServer, tools.llamaBatchedBench as string]) {
    if (!(await exists(binary))) throw new Error(`the build finished but ${binary} is missing; delete ${folder}`);
  }
  await writeFile(stamp, JSON.stringify(tools, null, 2) + '\n');
  return tools;
}

export const REPOSITORY_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const gpuIndex = args.indexOf('--gpu');
  const gpu = gpuIndex >= 0 ? (args[gpuIndex + 1] ?? 'auto') : 'auto';
  if (gpu !== 'auto' && gpu !== 'false' && gpu !== 'cuda') {
    console.error(`--gpu ${gpu}: expected auto, false or cuda`);
    process.exit(2);
  }
  const tools = await ensureLlamaTools({
    cacheRoot: path.join(REPOSITORY_ROOT, '.cache'),
    backend: detectBackend(gpu),
    jobs: 2,
    log: (line) => console.error(line),
  });
  console.log(JSON.stringify(tools, null, 2));
}
