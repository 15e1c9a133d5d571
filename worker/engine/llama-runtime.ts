// Loads llama.cpp (a build made for this machine by `npm run build:llama` when one exists, else node-llama-cpp's
// prebuilt binary; never a download or a compile at run time) and GGUF files, with errors that name the file.

import { open, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { getLlama, LlamaLogLevel, readGgufFileInfo, type Llama, type LlamaModel } from 'node-llama-cpp';
import { RescaleError, errorMessage } from '../../contracts/errors.js';
import { silentLogger, type Logger } from '../../contracts/logger.js';

export interface RuntimeInfo {
  /** "localBuild" (compiled for this machine) or "prebuilt" (shipped with node-llama-cpp). */
  readonly build: 'localBuild' | 'prebuilt';
  readonly gpu: string | false;
  readonly llamaCppRelease: string;
  readonly nodeLlamaCppVersion: string;
}

/** "auto" loads the build made by `npm run build:llama` when there is one, else the prebuilt binary. */
export type BuildPreference = 'auto' | 'prebuilt';

export interface RuntimeOptions {
  /** Which build to load; the caller decides (RESCALE_LLAMA_BUILD is read by contracts/environment.ts). */
  readonly build: BuildPreference;
  /** Receives llama.cpp's own warnings and errors from this call on; absent = keep the current one. */
  readonly logger?: Logger;
}

let llamaPromise: Promise<Llama> | null = null;
let loadedPreference: BuildPreference | null = null;
/**
 * llama.cpp logs through one callback per process, set when the binding loads; it forwards to the latest caller's
 * logger rather than keeping the first one's (a test's or a probe's silent logger would otherwise mute a worker).
 */
let runtimeLogger: Logger = silentLogger;
/**
 * llama.cpp's latest error lines. Its own messages go to the log at debug level only (a new user reads "error loading
 * model" as a failure of the run); when a load does fail, loadModel puts these lines into its error instead.
 */
const recentErrors: string[] = [];
const RECENT_ERRORS = 4;

/** Takes (and clears) the error lines llama.cpp logged since the last call. */
function takeRecentErrors(): string[] {
  return recentErrors.splice(0, recentErrors.length);
}

/** One llama.cpp binding per process, shared by every model and context; one build per process. */
export async function getRuntime(options: RuntimeOptions): Promise<Llama> {
  const preference = options.build;
  if (loadedPreference !== null && loadedPreference !== preference) {
    throw new RescaleError(
      'INTERNAL',
      `llama.cpp is already loaded as "${loadedPreference}" in this process, not "${preference}"; ` +
        'one build per process: pass every caller the same build (RESCALE_LLAMA_BUILD)',
    );
  }
  loadedPreference = preference;
  if (options.logger !== undefined) runtimeLogger = options.logger;
  llamaPromise ??= getLlama({
    build: 'never',
    skipDownload: true,
    // A local build is looked up by its build options; options no local build has make getLlama skip it.
    ...(preference === 'prebuilt' ? { cmakeOptions: { RESCALE_PREBUILT_ONLY: 'ON' } } : {}),
    progressLogs: false,
    logLevel: LlamaLogLevel.warn,
    logger: (level, message) => {
      const text = message.trim();
      if (text === '') return;
      const isError = level === LlamaLogLevel.error || level === LlamaLogLevel.fatal;
      if (isError) {
        recentErrors.push(text);
        if (recentErrors.length > RECENT_ERRORS) recentErrors.shift();
      }
      runtimeLogger.log('debug', 'llama.cpp', { level: isError ? 'error' : 'warn', message: text });
    },
  }).catch((cause: unknown) => {
    llamaPromise = null;
    loadedPreference = null;
    throw new RescaleError(
      'ENGINE_FAILED',
      `cannot load llama.cpp: ${errorMessage(cause)}; reinstall with "npm ci" or rebuild with "npm run build:llama"`,
      { cause },
    );
  });
  return llamaPromise;
}

let packageVersion: string | null = null;

/** The installed node-llama-cpp package folder (its package.json is not exported). */
export function nodeLlamaCppRoot(): string {
  // The main entry is <root>/dist/index.js.
  return path.dirname(path.dirname(createRequire(import.meta.url).resolve('node-llama-cpp')));
}

export async function runtimeInfo(llama: Llama): Promise<RuntimeInfo> {
  packageVersion ??= (
    JSON.parse(await readFile(path.join(nodeLlamaCppRoot(), 'package.json'), 'utf8')) as { version: string }
  ).version;
  return {
    build: llama.buildType,
    gpu: llama.gpu,
    llamaCppRelease: `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`,
    nodeLlamaCppVersion: packageVersion,
  };
}

const GGUF_MAGIC = Buffer.from('GGUF', 'latin1');

/** Fails with a clear error unless `file` exists and starts with the GGUF magic. */
export async function assertGgufFile(file: string, what: 'model' | 'adapter', field: string): Promise<void> {
  const missing = what === 'model' ? 'MODEL_NOT_FOUND' : 'ADAPTER_NOT_FOUND';
  const bad = what === 'model' ? 'MODEL_INVALID' : 'ADAPTER_INVALID';
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (cause) {
    throw new RescaleError(
      missing,
      `${what} file not found: ${file} (codebook field "${field}"); check the path, which is relative to the ` +
        'codebook file',
      { cause },
    );
  }
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await handle.read(head, 0, 4, 0);
    if (bytesRead < 4 || !head.equals(GGUF_MAGIC)) {
      throw new RescaleError(
        bad,
        `${file} is not a GGUF file (codebook field "${field}"); convert the ${what} with llama.cpp's convert ` +
          'scripts first',
      );
    }
  } finally {
    await handle.close();
  }
}

/** Checks that an adapter file is a LoRA adapter GGUF before llama.cpp sees it. */
export async function assertLoraAdapter(file: string, field: string): Promise<void> {
  await assertGgufFile(file, 'adapter', field);
  let type: unknown;
  try {
    const info = await readGgufFileInfo(file, { readTensorInfo: false });
    type = (info.metadata as { general?: { type?: unknown } }).general?.type;
  } catch (cause) {
    throw new RescaleError(
      'ADAPTER_INVALID',
      `${file} (codebook field "${field}") cannot be read as GGUF: ${errorMessage(cause)}`,
      { cause },
    );
  }
  if (type !== 'adapter') {
    throw new RescaleError(
      'ADAPTER_INVALID',
      `${file} (codebook field "${field}") is not a LoRA adapter (general.type is ${JSON.stringify(type ?? null)}, ` +
        `expected "adapter"); convert it with llama.cpp's convert_lora_to_gguf.py`,
    );
  }
}

/** Loads a model; `signal` aborts the load midway (a worker told to stop must not wait for a slow load). */
export async function loadModel(
  llama: Llama,
  file: string,
  gpuLayers: number | 'auto' | 'max',
  signal?: AbortSignal,
): Promise<LlamaModel> {
  await assertGgufFile(file, 'model', 'model.path');
  signal?.throwIfAborted();
  takeRecentErrors();
  try {
    return await llama.loadModel({
      modelPath: file,
      gpuLayers,
      useMmap: true,
      ...(signal !== undefined ? { loadSignal: signal } : {}),
    });
  } catch (cause) {
    const said = takeRecentErrors();
    if (signal?.aborted === true)
      throw new RescaleError('ABORTED', `loading model ${file} was aborted (${errorMessage(signal.reason)})`, {
        cause,
      });
    throw new RescaleError(
      'MODEL_INVALID',
      `llama.cpp could not load model ${file} (codebook field "model.path"): ${errorMessage(cause)}` +
        `${said.length > 0 ? ` (llama.cpp: ${said.join('; ')})` : ''}`,
      { cause },
    );
  }
}
