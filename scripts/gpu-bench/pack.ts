// `npm run bench:gpu:pack`: builds what bench/gpu/run.sh needs on a machine that has no Node.js, no npm registry
// and no network, into .gpu-pack/ (git-ignored; the device tool's `carry` names it; at most 64 MiB):
//
//   node.xz            this Node.js binary (process.execPath), xz-compressed
//   runtime.tar.xz     engine-bench.mjs (the bench entry and rescale's engine in one esbuild bundle), docs.json
//                      (2,000 documents of ~200 Llama 3 tokens), and a node_modules/ holding node-llama-cpp's JS
//                      and dependencies plus its prebuilt linux-x64 (CPU) and linux-x64-cuda binaries without
//                      libggml-cuda.so (159 MB for every architecture; run.sh builds it for sm_90 from the source)
//   llama-src.tar.xz   the llama.cpp source node-llama-cpp bundles (its git bundle, node-llama-cpp's patches
//                      applied), less docs, models, tests and the backends that are not CPU or CUDA
//   models.tar.xz      GGUF headers and fill plans of the tiny, 1B-shaped and 8B-shaped random models
//   manifest.json      sizes, sha256 and what made each part
//
// Each part is rebuilt only when missing or when --force is given; the runtime also when the bundle changed.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BULK_MODEL_SHAPES, bulkRandomModelParts, type BulkModelShape } from '../../gguf/fixtures/bulk-random-model.js';
import { llamaCppBundlePath, openVocabTokenizer } from '../../gguf/fixtures/vocab.js';
import { getRuntime, nodeLlamaCppRoot } from '../../worker/engine/llama-runtime.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PACK_DIR = path.join(ROOT, '.gpu-pack');
const BUNDLE = path.join(PACK_DIR, 'engine-bench.mjs');
export const PACK_LIMIT_BYTES = 64 * 1024 * 1024;
const DOCUMENTS = 2000;
const DOC_TOKENS = 200;

/** Source of the documents: TweetEval sentiment test tweets, concatenated to ~DOC_TOKENS tokens each. */
const TWEETS = path.resolve(ROOT, '..', 'shared', 'data', 'tweeteval', 'sentiment', 'test_text.txt');

/** Top-level parts of the llama.cpp source that a CUDA + CPU build of ggml, libllama and the tools needs. */
const LLAMA_SOURCE_PATHS = [
  'CMakeLists.txt',
  'LICENSE',
  'cmake',
  'common',
  'ggml',
  'include',
  'src',
  'tools',
  'vendor',
];
const LLAMA_SOURCE_EXCLUDES = [
  'tools/ui',
  'tools/server/public',
  'ggml/src/ggml-vulkan',
  'ggml/src/ggml-sycl',
  'ggml/src/ggml-metal',
  'ggml/src/ggml-opencl',
  'ggml/src/ggml-cann',
  'ggml/src/ggml-webgpu',
  'ggml/src/ggml-hexagon',
  'ggml/src/ggml-openvino',
  'ggml/src/ggml-zdnn',
  'ggml/src/ggml-zendnn',
  'ggml/src/ggml-virtgpu',
  'ggml/src/ggml-et',
];

function run(command: string, args: readonly string[], cwd?: string): Buffer {
  return execFileSync(command, args, { cwd, maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'inherit'] });
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** tar.xz of `entries` (paths relative to `cwd`), written atomically to `target`. */
function tarXz(target: string, cwd: string, entries: readonly string[], extra: readonly string[] = []): void {
  const temporary = `${target}.tmp`;
  // -9 with one thread: the largest dictionary, so the near-identical CPU and CUDA binaries compress as one.
  run('tar', ['-C', cwd, ...extra, '-cf', temporary, '--use-compress-program=xz -9 -T1', ...entries]);
  execFileSync('mv', [temporary, target]);
}

/** node-llama-cpp and every package it depends on, as folders under node_modules (nested ones come along). */
async function runtimePackages(nodeModules: string): Promise<string[]> {
  const seen = new Set<string>();
  const visit = async (name: string): Promise<void> => {
    if (seen.has(name)) return;
    const manifest = path.join(nodeModules, name, 'package.json');
    if (!existsSync(manifest)) return; // an optional dependency for another platform
    seen.add(name);
    const json = JSON.parse(await readFile(manifest, 'utf8')) as { dependencies?: Record<string, string> };
    for (const dependency of Object.keys(json.dependencies ?? {})) await visit(dependency);
  };
  await visit('node-llama-cpp');
  return [...seen].sort();
}

/**
 * What the runtime copy of node_modules leaves out: source maps, and node-llama-cpp's llama.cpp source (its git
 * bundle and any checkout of it) and local builds, which `npm run build:llama` may have added here.
 */
function skipRuntimeFile(relative: string): boolean {
  const llama = path.join('node-llama-cpp', 'llama');
  return (
    relative.endsWith('.map') ||
    [
      path.join(llama, 'gitRelease.bundle'),
      path.join(llama, 'llama.cpp'),
      path.join(llama, 'localBuilds'),
      path.join(llama, 'lastBuild.json'),
      path.join(llama, 'xpack', 'store'),
    ].includes(relative)
  );
}

async function packNode(target: string): Promise<void> {
  const temporary = `${target}.tmp`;
  execFileSync('sh', ['-c', 'xz -9 -T2 -c "$1" > "$2"', 'sh', process.execPath, temporary]);
  await rename(temporary, target);
}

async function benchDocuments(): Promise<string[]> {
  const tweets = (await readFile(TWEETS, 'utf8')).split('\n').filter((t) => t.trim() !== '');
  if (tweets.length === 0) throw new Error(`${TWEETS} holds no tweets; the documents are made from it`);
  // The prebuilt binary: a local build being compiled beside this checkout would hold getLlama on its lock.
  const llama = await getRuntime({ build: 'prebuilt' });
  const tokenizer = await openVocabTokenizer('llama-bpe', { llama });
  try {
    const docs: string[] = [];
    let next = 0;
    while (docs.length < DOCUMENTS) {
      let doc = '';
      while (tokenizer.tokenize(doc).length < DOC_TOKENS)
        doc += (doc === '' ? '' : ' ') + tweets[next++ % tweets.length];
      docs.push(doc);
    }
    return docs;
  } finally {
    await tokenizer.dispose();
    await llama.dispose();
  }
}

/** The bench entry and rescale's engine as one ES module (node-llama-cpp stays a package of its own). */
function bundleEngineBench(outfile: string): void {
  const esbuild = path.join(ROOT, 'node_modules', '.bin', 'esbuild');
  run(esbuild, [
    path.join(ROOT, 'scripts', 'gpu-bench', 'engine-bench.ts'),
    '--bundle',
    '--platform=node',
    '--format=esm',
    '--target=node20',
    '--external:node-llama-cpp',
    // Bundled CommonJS packages (yaml) call require(): give the ES module one.
    "--banner:js=import { createRequire as __rescaleCreateRequire } from 'node:module'; " +
      'const require = __rescaleCreateRequire(import.meta.url);',
    `--outfile=${outfile}`,
    '--log-level=warning',
  ]);
}

async function packRuntime(target: string): Promise<void> {
  const stage = await mkdtemp(path.join(tmpdir(), 'rescale-gpu-runtime-'));
  try {
    await cp(BUNDLE, path.join(stage, 'engine-bench.mjs'));
    const manifest = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    // contracts/package-root.ts finds rescale's package.json above the bundle.
    await writeFile(
      path.join(stage, 'package.json'),
      JSON.stringify({ name: 'rescale', version: manifest.version, private: true, type: 'module' }) + '\n',
    );
    await writeFile(path.join(stage, 'docs.json'), JSON.stringify(await benchDocuments()) + '\n');

    const nodeModules = path.dirname(nodeLlamaCppRoot());
    const packages = await runtimePackages(nodeModules);
    for (const name of packages) {
      await cp(path.join(nodeModules, name), path.join(stage, 'node_modules', name), {
        recursive: true,
        filter: (source) => !skipRuntimeFile(path.relative(nodeModules, source)),
      });
    }
    for (const platform of ['linux-x64', 'linux-x64-cuda']) {
      const source = path.join(nodeModules, '@node-llama-cpp', platform);
      if (!existsSync(source)) throw new Error(`${source} is missing: run npm ci (node-llama-cpp's ${platform} build)`);
      await cp(source, path.join(stage, 'node_modules', '@node-llama-cpp', platform), {
        recursive: true,
        filter: (file) => path.basename(file) !== 'libggml-cuda.so',
      });
    }
    tarXz(target, stage, ['engine-bench.mjs', 'package.json', 'docs.json', 'node_modules']);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

async function packLlamaSource(target: string): Promise<void> {
  const repo = await mkdtemp(path.join(tmpdir(), 'rescale-gpu-llama-'));
  try {
    const tree = path.join(repo, 'llama.cpp');
    run('git', ['-C', repo, 'init', '--quiet', '--bare', 'git']);
    run('git', ['--git-dir', path.join(repo, 'git'), 'fetch', '--quiet', '--no-tags', llamaCppBundlePath()]);
    await mkdir(tree);
    const archive = run('git', [
      '--git-dir',
      path.join(repo, 'git'),
      'archive',
      '--format=tar',
      'FETCH_HEAD',
      '--',
      ...LLAMA_SOURCE_PATHS,
      ...LLAMA_SOURCE_EXCLUDES.map((p) => `:(exclude)${p}`),
    ]);
    execFileSync('tar', ['-C', tree, '-xf', '-'], { input: archive });
    const patches = path.join(nodeLlamaCppRoot(), 'llama', 'patches');
    for (const patch of existsSync(patches) ? (await readdir(patches)).sort() : []) {
      run('git', ['apply', path.join(patches, patch)], tree);
    }
    tarXz(target, repo, ['llama.cpp']);
  } finally {
    await rm(repo, { recursive: true, force: true });
  }
}

async function packModels(target: string): Promise<void> {
  const stage = await mkdtemp(path.join(tmpdir(), 'rescale-gpu-models-'));
  try {
    const entries: string[] = [];
    for (const shape of Object.keys(BULK_MODEL_SHAPES) as BulkModelShape[]) {
      const { header, plan } = await bulkRandomModelParts(BULK_MODEL_SHAPES[shape]);
      await writeFile(path.join(stage, `${shape}.head`), header);
      await writeFile(path.join(stage, `${shape}.plan.json`), JSON.stringify(plan) + '\n');
      entries.push(`${shape}.head`, `${shape}.plan.json`);
    }
    tarXz(target, stage, entries);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const force = process.argv.includes('--force');
  await mkdir(PACK_DIR, { recursive: true });
  // The bundle is cheap to make; when it differs from the one packed (the engine changed), the runtime is remade.
  bundleEngineBench(BUNDLE);
  const bundleSha256 = await sha256(BUNDLE);
  const previous = existsSync(path.join(PACK_DIR, 'manifest.json'))
    ? (JSON.parse(await readFile(path.join(PACK_DIR, 'manifest.json'), 'utf8')) as { bundleSha256?: string })
    : {};
  const staleRuntime = previous.bundleSha256 !== bundleSha256;
  const parts: [string, (target: string) => Promise<void>, string][] = [
    ['node.xz', packNode, `Node.js ${process.version} (${process.execPath})`],
    ['runtime.tar.xz', packRuntime, 'engine-bench.mjs, docs.json, node-llama-cpp runtime packages'],
    ['llama-src.tar.xz', packLlamaSource, `llama.cpp source from ${llamaCppBundlePath()}`],
    ['models.tar.xz', packModels, 'GGUF headers and fill plans: tiny, 1b, 8b'],
  ];
  const manifest: Record<string, unknown>[] = [];
  let total = 0;
  for (const [name, make, what] of parts) {
    const target = path.join(PACK_DIR, name);
    const t0 = performance.now();
    if (force || !existsSync(target) || (name === 'runtime.tar.xz' && staleRuntime)) {
      process.stderr.write(`bench:gpu:pack: ${name}...\n`);
      await make(target);
    }
    const bytes = (await stat(target)).size;
    total += bytes;
    manifest.push({ name, bytes, sha256: await sha256(target), what, seconds: (performance.now() - t0) / 1000 });
  }
  await writeFile(
    path.join(PACK_DIR, 'manifest.json'),
    JSON.stringify({ node: process.version, bundleSha256, totalBytes: total, parts: manifest }, null, 2) + '\n',
  );
  await rm(BUNDLE);
  const mib = (total / 1024 / 1024).toFixed(1);
  if (total > PACK_LIMIT_BYTES - 2 * 1024 * 1024) {
    throw new Error(`.gpu-pack holds ${mib} MiB; the device tool carries at most 64 MiB with the working tree`);
  }
  process.stdout.write(`bench:gpu:pack: ${PACK_DIR}: ${mib} MiB\n`);
}

await main();
