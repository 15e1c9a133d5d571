// `npm run bench:engine`: the engine against llama.cpp's own tools, built from the same bundled llama.cpp source
// (scripts/llama-tools.ts), on the same model and the same prompt tokens, interleaved in rounds:
// - the engine, serial (1 sequence) and batched, on the prebuilt binary and on `npm run build:llama`'s local build;
// - llama-server at 1, 2, 4 and 8 slots, each with as many concurrent /completion requests, sent the engine's own
//   prompt tokens as token arrays (cache_prompt on, so the shared prefix stays in each slot), with its host-memory
//   prompt cache (its default: an identical prompt's state is restored, not evaluated) and without it (--cache-ram 0);
// - llama-bench pp<tokens per document> at depth <shared prefix>: the ceiling for the engine's tokens/s.
// Two corpora: unique documents, and the same slices with 30% exact duplicates (--duplicates: copies of earlier
// documents of the slice, placed by a fixed seed). The engine scores each slice through the shard path, as a run does,
// so it scores identical texts once; llama-server is sent every copy (its prompt cache, when on, restores them).
// Every engine measurement runs in its own process (its own build, its own peak RSS).
// The survey above sums each part over its rounds, which lie minutes apart; on a shared machine whose speed moves by
// 20% within minutes its ratios move as much. So a paired phase follows: --pairs blocks of --pair-documents
// documents, each running only what the targets compare (the engine serial, llama-server in the survey's fastest
// configurations, llama-bench) back to back on the same documents; the targets are judged by the median of the
// blocks' ratios. Results go to bench/results/engine.{json,md}.
//
//   npm run bench:engine [-- --documents 240 --rounds 3 --threads 2 --slots 1,2,4,8 --sequences 4
//                            --duplicates 0.3 --corpora unique,duplicates --builds prebuilt,local
//                            --server-prompt-cache on,off --pairs 8 --pair-documents 40
//                            --gpu auto|false|cuda --out bench/results]

import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Token } from 'node-llama-cpp';
import { parseCodebook, type Codebook } from '../contracts/codebook.js';
import { ensureFixtureModel } from '../gguf/fixtures/fixture-catalog.js';
import { readCorpusFile } from '../coordinator/corpus.js';
import { planShards } from '../coordinator/shard-planner.js';
import { LabelScorer } from '../worker/engine/label-scorer.js';
import { processShard } from '../worker/process-shard.js';
import { getRuntime, loadModel, runtimeInfo, type BuildPreference } from '../worker/engine/llama-runtime.js';
import {
  best,
  label,
  markdownTable,
  pairedRatio,
  pairedRatioLines,
  ratio,
  ratioLines,
  summarise,
  withDuplicates,
  type Corpus,
  type PartRow,
  type PairedRatio,
  type PartRun,
  type Ratio,
} from './bench-engine-report.js';
import { sqlString, writeParquetWithDuckDB } from './harness/parquet.js';
import {
  REPOSITORY_ROOT,
  detectBackend,
  ensureLlamaTools,
  llamaBatchedBenchArgs,
  llamaBenchArgs,
  llamaServerArgs,
  type FlashAttentionMode,
  type LlamaTools,
} from './llama-tools.js';

const DOC_TOKENS = 200;
const WARMUP_DOCUMENTS = 8;
/** The part-name suffix of llama-server runs with `--cache-ram 0` (no prompt cache in host memory). */
const SERVER_NO_PROMPT_CACHE = 'prompt cache off';

const INSTRUCTION = `You are an expert annotator working on a study of public opinion on social media. You will read one
tweet and decide which sentiment it expresses towards its main subject. Follow the codebook strictly.
Negative: the author expresses anger, sadness, fear, disappointment, criticism or any other unfavourable
attitude, including sarcasm that implies criticism. Neutral: the tweet reports facts, asks a question,
shares a link or news without evaluation, or the sentiment is mixed so that neither side dominates.
Positive: the author expresses joy, gratitude, admiration, excitement, support or any other favourable
attitude. Ignore hashtags unless they carry sentiment, and ignore user mentions. Answer with exactly one
label and nothing else.`;

function codebook(modelPath: string, threads: number): Codebook {
  return parseCodebook(
    {
      task: 'bench',
      // Answers that are one token in this model's (Llama-2 SPM) vocabulary, as a fine-tuned adapter would use.
      labels: [
        { name: 'negative', answer: 'bad' },
        { name: 'neutral', answer: 'none' },
        { name: 'positive', answer: 'good' },
      ],
      prompt: { system: INSTRUCTION, template: 'Answer bad, none or good.\n\nTweet: {text}' },
      model: { path: modelPath, max_document_tokens: 256, threads, gpu_layers: 0 },
    },
    { source: 'bench' },
  );
}

interface PreparedDocument {
  readonly text: string;
  /** The full prompt as the engine scores it (shared prefix included): what llama-server is sent. */
  readonly tokens: readonly Token[];
}

/** Written by the prepare process, read by every part: one tokenisation for all tools. */
interface Prepared {
  readonly model: string;
  readonly threads: number;
  readonly localBuild: boolean;
  readonly sharedPrefixTokens: number;
  /** The engine's tokens evaluated per document, estimated on a sample: llama-bench's -p. */
  readonly engineTokensPerDocument: number;
  /** The engine's setting, given to every tool as it is ("auto" resolves the same way in all of them). */
  readonly flashAttention: FlashAttentionMode;
  /** What llama.cpp made of it for this model and backend (its log says), for the report. */
  readonly flashAttentionResolved: 'on' | 'off' | 'unknown';
  readonly contextSize: number;
  readonly documents: readonly PreparedDocument[];
  readonly warmup: readonly PreparedDocument[];
  /** Per corpus, per round: indices into `documents`. */
  readonly slices: Record<Corpus, number[][]>;
  /** Per corpus, per block of the paired phase: indices into `documents`. */
  readonly pairSlices: Record<Corpus, number[][]>;
}

/** The survey (every part, in rounds) or the paired phase (target pairs back to back, in short blocks). */
type Phase = 'survey' | 'paired';

function sliceOf(prepared: Prepared, corpus: Corpus, round: number, phase: Phase): number[] {
  return (phase === 'paired' ? prepared.pairSlices : prepared.slices)[corpus][round] ?? [];
}

/** Tweets concatenated into documents of about DOC_TOKENS tokens, measured with the model's tokenizer. */
async function benchDocuments(count: number, tokenize: (text: string) => readonly Token[]): Promise<string[]> {
  const file = path.resolve(REPOSITORY_ROOT, '..', 'shared', 'data', 'tweeteval', 'sentiment', 'test_text.txt');
  const tweets = (await readFile(file, 'utf8')).split('\n').filter((t) => t.trim() !== '');
  const docs: string[] = [];
  let next = 0;
  while (docs.length < count) {
    let doc = '';
    while (tokenize(doc).length < DOC_TOKENS) doc += (doc === '' ? '' : ' ') + tweets[next++ % tweets.length];
    docs.push(doc);
  }
  return docs;
}

async function prepare(file: string, modelPath: string, options: Options): Promise<void> {
  const llama = await getRuntime({ build: 'auto' });
  const info = await runtimeInfo(llama);
  const model = await loadModel(llama, modelPath, 0);
  const texts = await benchDocuments(options.documents + WARMUP_DOCUMENTS, (t) => model.tokenize(t, false));
  const scorer = await LabelScorer.create(codebook(modelPath, options.threads), { model, sequences: 1 });
  const render = (text: string): PreparedDocument => ({ text, tokens: scorer.promptTokens({ text }).tokens });
  const documents = texts.slice(0, options.documents).map(render);
  const warmup = texts.slice(options.documents).map(render);
  const prefix = scorer.settings.sharedPrefixTokens;
  // Tokens the engine evaluates beyond the prompt after the prefix (label paths, tails), from every 10th document.
  const sample = documents.filter((_, i) => i % 10 === 0);
  const scores = await scorer.score(sample.map((d) => ({ text: d.text })));
  const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const extra = mean(scores.map((s, i) => s.tokens - ((sample[i] as PreparedDocument).tokens.length - prefix)));
  const engineTokensPerDocument = Math.round(mean(documents.map((d) => d.tokens.length - prefix)) + extra);
  const slices: Record<Corpus, number[][]> = { unique: [], duplicates: [] };
  for (let round = 0; round < options.rounds; round++) {
    const from = Math.floor((round * options.documents) / options.rounds);
    const to = Math.floor(((round + 1) * options.documents) / options.rounds);
    const indices = Array.from({ length: to - from }, (_, i) => from + i);
    slices.unique.push(indices);
    slices.duplicates.push(withDuplicates(indices, options.duplicates, round + 1));
  }
  // Paired blocks walk the documents in slices of --pair-documents, wrapping around; each block's duplicates slice
  // has a seed of its own.
  const pairSlices: Record<Corpus, number[][]> = { unique: [], duplicates: [] };
  const perBlock = Math.min(options.pairDocuments, options.documents);
  for (let block = 0; block < options.pairs; block++) {
    const indices = Array.from({ length: perBlock }, (_, i) => (block * perBlock + i) % options.documents);
    pairSlices.unique.push(indices);
    pairSlices.duplicates.push(withDuplicates(indices, options.duplicates, 1000 + block));
  }
  const prepared: Prepared = {
    model: modelPath,
    threads: options.threads,
    localBuild: info.build === 'localBuild',
    sharedPrefixTokens: prefix,
    engineTokensPerDocument,
    flashAttention: flashAttentionMode(scorer.settings.flashAttention),
    flashAttentionResolved: await resolvedFlashAttention(modelPath),
    contextSize: scorer.settings.contextSize,
    documents,
    warmup,
    slices,
    pairSlices,
  };
  await scorer.dispose();
  await model.dispose();
  await writeFile(file, JSON.stringify(prepared));
}

function flashAttentionMode(setting: boolean | 'auto'): FlashAttentionMode {
  return setting === 'auto' ? 'auto' : setting ? 'on' : 'off';
}

/**
 * Whether llama.cpp turned flash attention on for the engine's setting: a context made in a child process of its own
 * (one llama.cpp binding per process) whose info-level log says "Flash Attention enabled" or "disabled".
 */
async function resolvedFlashAttention(modelPath: string): Promise<'on' | 'off' | 'unknown'> {
  const child = spawnSync(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), '--probe-flash-attention', modelPath],
    { encoding: 'utf8', maxBuffer: 1 << 26 },
  );
  const line = child.stdout.split('\n').find((l) => l.startsWith('FLASH_ATTENTION '));
  const value = line?.slice('FLASH_ATTENTION '.length).trim();
  return value === 'on' || value === 'off' ? value : 'unknown';
}

async function probeFlashAttention(modelPath: string): Promise<void> {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  let resolved = 'unknown';
  const llama = await getLlama({
    build: 'never',
    skipDownload: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.info,
    logger: (_level, message) => {
      const match = /Flash Attention (enabled|disabled)/i.exec(message);
      if (match) resolved = match[1]?.toLowerCase() === 'enabled' ? 'on' : 'off';
    },
  });
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: 512, sequences: 1 });
  await context.dispose();
  await model.dispose();
  process.stdout.write(`FLASH_ATTENTION ${resolved}\n`);
}

interface EnginePartArgs {
  readonly build: BuildPreference;
  readonly sequences: number;
  readonly corpus: Corpus;
  /** The survey's round, or the paired phase's block. */
  readonly round: number;
  readonly phase: Phase;
}

/**
 * One engine measurement, in a process of its own: warm up every sequence, then score the round's slice through the
 * shard path (a Parquet file of the slice, one shard), which scores identical texts once as a run does.
 */
async function enginePart(prepared: Prepared, args: EnginePartArgs): Promise<PartRun> {
  const llama = await getRuntime({ build: args.build });
  const info = await runtimeInfo(llama);
  const model = await loadModel(llama, prepared.model, 0);
  const bench = codebook(prepared.model, prepared.threads);
  const scorer = await LabelScorer.create(bench, { model, sequences: args.sequences });
  const warmup = prepared.warmup.slice(0, Math.min(args.sequences, WARMUP_DOCUMENTS)).map((d) => ({ text: d.text }));
  await scorer.score(warmup);
  const texts = sliceOf(prepared, args.corpus, args.round, args.phase).map(
    (i) => (prepared.documents[i] as PreparedDocument).text,
  );
  const work = await mkdtemp(path.join(os.tmpdir(), 'rescale-bench-engine-part-'));
  try {
    const corpus = await writeParquetWithDuckDB(
      `SELECT * FROM (VALUES ${texts.map((text, i) => `(${i}::BIGINT, '${sqlString(text)}')`).join(', ')}) t(id, text)`,
      path.join(work, 'slice.parquet'),
    );
    const plan = planShards([await readCorpusFile(corpus)], {
      codebookHash: 'bench',
      maxRowsPerShard: texts.length,
      idColumn: 'id',
      textColumn: 'text',
    });
    const shard = plan.shards[0];
    if (plan.shards.length !== 1 || shard === undefined) throw new Error('the slice must plan into one shard');
    const t0 = performance.now();
    const outcome = await processShard(
      { shard, idColumn: 'id', idType: plan.idType, textColumn: 'text', resultDir: path.join(work, 'shards') },
      { scorer },
    );
    const seconds = (performance.now() - t0) / 1000;
    return {
      part: args.sequences === 1 ? 'engine serial' : 'engine batched',
      build: info.build,
      corpus: args.corpus,
      round: args.round,
      parallel: args.sequences,
      documents: outcome.rows,
      seconds,
      tokensEvaluated: outcome.tokens,
      peakRssMB: process.resourceUsage().maxRSS / 1024,
    };
  } finally {
    await scorer.dispose();
    await model.dispose();
    await rm(work, { recursive: true, force: true });
  }
}

function runEngineChild(preparedFile: string, args: EnginePartArgs): PartRun {
  const child = spawnSync(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), '--engine-part', preparedFile, JSON.stringify(args)],
    { encoding: 'utf8', maxBuffer: 1 << 26 },
  );
  const line = child.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (child.status !== 0 || line === undefined) {
    throw new Error(`engine part ${JSON.stringify(args)} failed (exit ${child.status}):\n${child.stderr}`);
  }
  return JSON.parse(line.slice('RESULT '.length)) as PartRun;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject()));
    });
  });
}

/** llama-server's peak resident memory (VmHWM), read before it is stopped. */
async function peakRssMB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kb = /VmHWM:\s+(\d+)\s+kB/.exec(status)?.[1];
  return kb === undefined ? NaN : Number(kb) / 1024;
}

interface CompletionTimings {
  readonly timings?: { readonly prompt_n?: number };
}

async function complete(port: number, tokens: readonly Token[]): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${port}/completion`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: tokens, n_predict: 1, cache_prompt: true, temperature: 0 }),
  });
  if (!response.ok) throw new Error(`llama-server /completion: HTTP ${response.status}: ${await response.text()}`);
  const body = (await response.json()) as CompletionTimings;
  const evaluated = body.timings?.prompt_n;
  if (typeof evaluated !== 'number') throw new Error('llama-server /completion: no timings.prompt_n in the answer');
  return evaluated;
}

/** llama-server with `slots` slots, sent the round's slice by as many concurrent clients, one request each. */
async function serverPart(
  tools: LlamaTools,
  prepared: Prepared,
  slots: number,
  corpus: Corpus,
  round: number,
  promptCache: boolean,
  phase: Phase,
): Promise<PartRun> {
  const port = await freePort();
  const args = llamaServerArgs({
    model: prepared.model,
    threads: prepared.threads,
    slots,
    contextPerSlot: prepared.contextSize,
    flashAttention: prepared.flashAttention,
    port,
    promptCache,
  });
  const server = spawn(tools.llamaServer, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  server.stderr.on('data', (chunk: Buffer) => (log = (log + chunk.toString('utf8')).slice(-20_000)));
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  try {
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (server.exitCode !== null) throw new Error(`llama-server ${args.join(' ')} exited:\n${log}`);
      const ok = await fetch(`http://127.0.0.1:${port}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`llama-server did not become healthy within 120 s:\n${log}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // One warm-up request per slot, concurrently, so each slot holds the shared prefix as the engine's sequences do.
    await Promise.all(prepared.warmup.slice(0, Math.min(slots, WARMUP_DOCUMENTS)).map((d) => complete(port, d.tokens)));
    const docs = sliceOf(prepared, corpus, round, phase).map((i) => prepared.documents[i] as PreparedDocument);
    let next = 0;
    let evaluated = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: slots }, async () => {
        while (next < docs.length) evaluated += await complete(port, (docs[next++] as PreparedDocument).tokens);
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    return {
      part: promptCache ? 'llama-server' : `llama-server, ${SERVER_NO_PROMPT_CACHE}`,
      build: `bundled source, ${tools.backend}`,
      corpus,
      round,
      parallel: slots,
      documents: docs.length,
      seconds,
      tokensEvaluated: evaluated,
      peakRssMB: await peakRssMB(server.pid as number),
    };
  } finally {
    server.kill('SIGTERM');
    const killer = setTimeout(() => server.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  }
}

interface LlamaBenchTest {
  readonly n_prompt: number;
  readonly n_depth: number;
  readonly samples_ns: readonly number[];
}

/** llama-bench pp<engine tokens per document> @ d<shared prefix>, under /usr/bin/time for its peak RSS. */
async function benchPart(
  tools: LlamaTools,
  prepared: Prepared,
  round: number,
  repetitions: number,
  flashAttention: FlashAttentionMode,
): Promise<PartRun> {
  const args = llamaBenchArgs({
    model: prepared.model,
    threads: prepared.threads,
    promptTokens: prepared.engineTokensPerDocument,
    depth: prepared.sharedPrefixTokens,
    repetitions,
    flashAttention,
  });
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rescale-llama-bench-'));
  try {
    const rssFile = path.join(dir, 'rss');
    const timed = existsSync('/usr/bin/time');
    const [cmd, cmdArgs] = timed
      ? ['/usr/bin/time', ['-f', '%M', '-o', rssFile, tools.llamaBench, ...args]]
      : [tools.llamaBench, args];
    const child = spawnSync(cmd, cmdArgs, { encoding: 'utf8', maxBuffer: 1 << 26 });
    if (child.status !== 0) throw new Error(`llama-bench ${args.join(' ')} failed:\n${child.stderr}`);
    const tests = JSON.parse(child.stdout) as LlamaBenchTest[];
    const test = tests[0];
    if (test === undefined) throw new Error(`llama-bench printed no test:\n${child.stdout}`);
    const rssKB = timed ? Number((await readFile(rssFile, 'utf8')).trim().split('\n').pop()) : NaN;
    const note = flashAttention === prepared.flashAttention ? '' : `, flash attention ${flashAttention}`;
    return {
      part: `llama-bench pp${test.n_prompt} @ d${test.n_depth}${note}`,
      build: `bundled source, ${tools.backend}`,
      corpus: 'unique',
      round,
      parallel: 1,
      documents: test.samples_ns.length,
      seconds: test.samples_ns.reduce((a, b) => a + b, 0) / 1e9,
      tokensEvaluated: test.samples_ns.length * test.n_prompt,
      peakRssMB: rssKB / 1024,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface BatchedBenchLine {
  readonly pp: number;
  readonly pl: number;
  readonly t_pp: number;
}

/**
 * llama-batched-bench: 1 and `sequences` sequences of the engine's per-document tokens decoded as one batch; the
 * ceiling of the engine's serial and batched tokens/s without the shared prefix's depth (so it errs high).
 */
async function batchedBenchPart(
  binary: string,
  tools: LlamaTools,
  prepared: Prepared,
  round: number,
  sequences: number,
): Promise<PartRun[]> {
  const args = llamaBatchedBenchArgs({
    model: prepared.model,
    threads: prepared.threads,
    promptTokens: prepared.engineTokensPerDocument,
    parallel: [1, sequences],
    flashAttention: prepared.flashAttention,
  });
  const child = spawnSync(binary, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (child.status !== 0) throw new Error(`llama-batched-bench ${args.join(' ')} failed:\n${child.stderr}`);
  const lines = `${child.stdout}\n${child.stderr}`
    .split('\n')
    .filter((l) => l.startsWith('{"n_kv_max"'))
    .map((l) => JSON.parse(l) as BatchedBenchLine);
  if (lines.length === 0) throw new Error(`llama-batched-bench printed no result:\n${child.stdout}${child.stderr}`);
  return lines.map((line) => ({
    part: `llama-batched-bench pp${line.pp} × ${line.pl}`,
    build: `bundled source, ${tools.backend}`,
    corpus: 'unique',
    round,
    parallel: line.pl,
    documents: line.pl,
    seconds: line.t_pp,
    tokensEvaluated: line.pl * line.pp,
    peakRssMB: NaN,
  }));
}

interface Options {
  readonly documents: number;
  readonly rounds: number;
  readonly threads: number;
  readonly slots: readonly number[];
  readonly sequences: number;
  readonly duplicates: number;
  readonly gpu: 'auto' | 'false' | 'cuda';
  readonly out: string;
  readonly benchRepetitions: number;
  readonly corpora: readonly Corpus[];
  /** Engine builds: "prebuilt" and "auto" (the local build, when one exists). */
  readonly builds: readonly BuildPreference[];
  /** llama-server with its host-memory prompt cache (its default), without it (`--cache-ram 0`), or both. */
  readonly serverPromptCache: readonly boolean[];
  /** Blocks of the paired phase (0: none). */
  readonly pairs: number;
  /** Documents per paired block. */
  readonly pairDocuments: number;
}

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      documents: { type: 'string', default: '240' },
      rounds: { type: 'string', default: '3' },
      threads: { type: 'string', default: '2' },
      slots: { type: 'string', default: '1,2,4,8' },
      sequences: { type: 'string', default: '4' },
      duplicates: { type: 'string', default: '0.3' },
      gpu: { type: 'string', default: 'auto' },
      out: { type: 'string', default: path.join(REPOSITORY_ROOT, 'bench', 'results') },
      'bench-repetitions': { type: 'string', default: '20' },
      corpora: { type: 'string', default: 'unique,duplicates' },
      builds: { type: 'string', default: 'prebuilt,local' },
      'server-prompt-cache': { type: 'string', default: 'on,off' },
      pairs: { type: 'string', default: '8' },
      'pair-documents': { type: 'string', default: '40' },
    },
  });
  const integer = (name: string, value: string, min: number): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} ${value}: expected an integer ≥ ${min}`);
    return n;
  };
  const gpu = values.gpu;
  if (gpu !== 'auto' && gpu !== 'false' && gpu !== 'cuda')
    throw new Error(`--gpu ${gpu}: expected auto, false or cuda`);
  const rounds = integer('rounds', values.rounds, 1);
  const documents = integer('documents', values.documents, rounds);
  return {
    documents,
    rounds,
    threads: integer('threads', values.threads, 1),
    slots: values.slots.split(',').map((s) => integer('slots', s.trim(), 1)),
    sequences: integer('sequences', values.sequences, 2),
    duplicates: Number(values.duplicates),
    gpu,
    out: path.resolve(values.out),
    benchRepetitions: integer('bench-repetitions', values['bench-repetitions'], 1),
    corpora: values.corpora.split(',').map((c) => {
      if (c !== 'unique' && c !== 'duplicates') throw new Error(`--corpora ${c}: expected unique and/or duplicates`);
      return c;
    }),
    builds: values.builds.split(',').map((b) => {
      if (b !== 'prebuilt' && b !== 'local') throw new Error(`--builds ${b}: expected prebuilt and/or local`);
      return b === 'local' ? 'auto' : 'prebuilt';
    }),
    serverPromptCache: values['server-prompt-cache'].split(',').map((c) => {
      if (c !== 'on' && c !== 'off') throw new Error(`--server-prompt-cache ${c}: expected on and/or off`);
      return c === 'on';
    }),
    pairs: integer('pairs', values.pairs, 0),
    pairDocuments: integer('pair-documents', values['pair-documents'], 1),
  };
}

function loadAverage(): number {
  return os.loadavg()[0] ?? NaN;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--engine-part') {
    const prepared = JSON.parse(await readFile(argv[1] as string, 'utf8')) as Prepared;
    const result = await enginePart(prepared, JSON.parse(argv[2] as string) as EnginePartArgs);
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
    process.exit(0);
  }
  if (argv[0] === '--probe-flash-attention') {
    await probeFlashAttention(argv[1] as string);
    process.exit(0);
  }
  if (argv[0] === '--prepare') {
    await prepare(argv[1] as string, argv[2] as string, parseOptions(argv.slice(3)));
    process.exit(0);
  }
  const options = parseOptions(argv);
  const log = (line: string): void => void process.stderr.write(`bench:engine: ${line}\n`);
  const modelPath = await ensureFixtureModel('medium');
  const tools = await ensureLlamaTools({
    cacheRoot: path.join(REPOSITORY_ROOT, '.cache'),
    backend: detectBackend(options.gpu),
    jobs: os.availableParallelism(),
    log,
  });
  const work = await mkdtemp(path.join(os.tmpdir(), 'rescale-bench-engine-'));
  try {
    const preparedFile = path.join(work, 'prepared.json');
    const prep = spawnSync(
      process.execPath,
      [...process.execArgv, fileURLToPath(import.meta.url), '--prepare', preparedFile, modelPath, ...argv],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
    if (prep.status !== 0) throw new Error(`preparing the documents failed (exit ${prep.status})`);
    const prepared = JSON.parse(await readFile(preparedFile, 'utf8')) as Prepared;
    log(
      `${options.documents} documents, shared prefix ${prepared.sharedPrefixTokens} tokens, ~` +
        `${prepared.engineTokensPerDocument} tokens evaluated per document; local build: ${prepared.localBuild}`,
    );
    const builds = options.builds.filter((b) => b === 'prebuilt' || prepared.localBuild);
    if (tools.llamaBatchedBench === null)
      log(
        `no llama-batched-bench in ${tools.folder} (built before it was a target): no batched ceiling this run; ` +
          'delete that folder and run npm run build:llama-tools to build it',
      );
    const runs: PartRun[] = [];
    const loads: number[] = [];
    const started = new Date();
    for (let round = 0; round < options.rounds; round++) {
      const tasks: { readonly name: string; readonly run: () => Promise<PartRun[]> }[] = [];
      for (const corpus of options.corpora) {
        for (const build of builds) {
          for (const sequences of [1, options.sequences]) {
            tasks.push({
              name: `${corpus}: engine, ${sequences} sequences, ${build === 'auto' ? 'local' : 'prebuilt'} build`,
              run: async () => [runEngineChild(preparedFile, { build, sequences, corpus, round, phase: 'survey' })],
            });
          }
        }
        for (const slots of options.slots) {
          for (const promptCache of options.serverPromptCache) {
            tasks.push({
              name: `${corpus}: llama-server, ${slots} slots${promptCache ? '' : `, ${SERVER_NO_PROMPT_CACHE}`}`,
              run: async () => [await serverPart(tools, prepared, slots, corpus, round, promptCache, 'survey')],
            });
          }
        }
      }
      tasks.push({
        name: 'llama-bench',
        run: async () => [await benchPart(tools, prepared, round, options.benchRepetitions, prepared.flashAttention)],
      });
      // Flash attention forced on and off as reference lines: how far the ceiling moves with it on this machine.
      for (const mode of ['on', 'off'] as const) {
        if (mode === prepared.flashAttention) continue;
        tasks.push({
          name: `llama-bench, flash attention ${mode}`,
          run: async () => [await benchPart(tools, prepared, round, options.benchRepetitions, mode)],
        });
      }
      const batchedBench = tools.llamaBatchedBench;
      if (batchedBench !== null)
        tasks.push({
          name: `llama-batched-bench, 1 and ${options.sequences} sequences`,
          run: () => batchedBenchPart(batchedBench, tools, prepared, round, options.sequences),
        });
      // Every other round runs the parts in reverse, so no part always runs first after a quiet or busy spell.
      if (round % 2 === 1) tasks.reverse();
      for (const task of tasks) {
        log(`round ${round + 1}/${options.rounds}: ${task.name} (1-minute load ${loadAverage().toFixed(1)})`);
        loads.push(loadAverage());
        runs.push(...(await task.run()));
      }
    }
    const engineBuild: BuildPreference = builds.includes('auto') ? 'auto' : 'prebuilt';
    const blocks: PartRun[][] = [];
    const pairParts = pairedParts(options, prepared, preparedFile, tools, summarise(runs), engineBuild);
    for (let block = 0; block < options.pairs; block++) {
      // Every other block runs its parts in reverse, so each pair's two orders weigh the same.
      const order = block % 2 === 0 ? pairParts : [...pairParts].reverse();
      const ran: PartRun[] = [];
      for (const part of order) {
        log(`paired block ${block + 1}/${options.pairs}: ${part.name} (1-minute load ${loadAverage().toFixed(1)})`);
        loads.push(loadAverage());
        ran.push(await part.run(block));
      }
      blocks.push(ran);
    }
    loads.push(loadAverage());
    await writeResults(options, prepared, tools, runs, blocks, loads, started);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The llama-server configurations a corpus's paired blocks compare with: the fastest in the survey, and the fastest
 * without the prompt cache (the same one when that is the fastest). */
function pairedServers(rows: readonly PartRow[], corpus: Corpus): PartRow[] {
  const fastest = best(rows, (r) => r.part.startsWith('llama-server') && r.corpus === corpus);
  const noCache = best(rows, (r) => r.part === `llama-server, ${SERVER_NO_PROMPT_CACHE}` && r.corpus === corpus);
  return [fastest, noCache].filter((r, i, all): r is PartRow => r !== null && all.indexOf(r) === i);
}

interface PairedPart {
  readonly name: string;
  readonly run: (block: number) => Promise<PartRun>;
}

/**
 * The parts of every paired block: per corpus, the engine (serial, 1 sequence: the default) and the llama-server
 * configurations of `pairedServers`, on the block's documents; and llama-bench pp at the shared prefix's depth.
 */
function pairedParts(
  options: Options,
  prepared: Prepared,
  preparedFile: string,
  tools: LlamaTools,
  survey: readonly PartRow[],
  engineBuild: BuildPreference,
): PairedPart[] {
  const parts: PairedPart[] = [];
  for (const corpus of options.corpora) {
    parts.push({
      name: `${corpus}: engine serial, ${engineBuild === 'auto' ? 'local' : 'prebuilt'} build`,
      run: async (block) =>
        runEngineChild(preparedFile, { build: engineBuild, sequences: 1, corpus, round: block, phase: 'paired' }),
    });
    for (const server of pairedServers(survey, corpus)) {
      const promptCache = server.part === 'llama-server';
      parts.push({
        name: `${corpus}: ${server.part}, ${server.parallel} slots`,
        run: (block) => serverPart(tools, prepared, server.parallel, corpus, block, promptCache, 'paired'),
      });
    }
  }
  if (options.corpora.includes('unique'))
    parts.push({
      name: 'llama-bench',
      run: (block) => benchPart(tools, prepared, block, options.benchRepetitions, prepared.flashAttention),
    });
  return parts;
}

/** The targets' ratios, block by block, from the paired phase. */
function pairedTargetRatios(
  options: Options,
  prepared: Prepared,
  survey: readonly PartRow[],
  blocks: readonly PartRun[][],
): PairedRatio[] {
  if (blocks.length === 0) return [];
  const engine = (corpus: Corpus) => ({
    match: (r: PartRun) => r.part === 'engine serial' && r.corpus === corpus,
    label: `engine serial (1 sequence), ${blocks[0]?.find((r) => r.part === 'engine serial')?.build ?? ''}, ${corpus}`,
  });
  const server = (row: PartRow) => ({
    match: (r: PartRun) => r.part === row.part && r.parallel === row.parallel && r.corpus === row.corpus,
    label: label(row),
  });
  const ratios: PairedRatio[] = [];
  const [uniqueServer] = pairedServers(survey, 'unique');
  if (uniqueServer !== undefined)
    ratios.push(
      pairedRatio(
        'engine docs/s ÷ llama-server (fastest in the survey), unique documents',
        blocks,
        engine('unique'),
        server(uniqueServer),
        'documentsPerSecond',
        1,
      ),
    );
  const benchPartName = `llama-bench pp${prepared.engineTokensPerDocument} @ d${prepared.sharedPrefixTokens}`;
  if (options.corpora.includes('unique'))
    ratios.push(
      pairedRatio(
        'engine serial tokens/s ÷ llama-bench pp at the same depth',
        blocks,
        engine('unique'),
        { match: (r) => r.part === benchPartName, label: benchPartName },
        'tokensPerSecond',
        0.95,
      ),
    );
  const share = `${options.duplicates * 100}% exact duplicates`;
  for (const row of pairedServers(survey, 'duplicates'))
    ratios.push(
      pairedRatio(
        row.part === 'llama-server'
          ? `engine docs/s ÷ llama-server (fastest in the survey: with its prompt cache), ${share}`
          : `engine docs/s ÷ llama-server without its prompt cache (fastest in the survey), ${share}`,
        blocks,
        engine('duplicates'),
        server(row),
        'documentsPerSecond',
        1.4,
      ),
    );
  return ratios;
}

function pairedBlockTable(blocks: readonly PartRun[][]): string[] {
  const first = blocks[0];
  if (first === undefined) return [];
  const name = (r: PartRun): string =>
    `${r.corpus}: ${r.part}${r.part.startsWith('llama-bench') ? '' : ` (${r.parallel})`}`;
  const columns = first.map(name);
  const cell = (r: PartRun | undefined): string =>
    r === undefined
      ? '–'
      : r.part.startsWith('llama-bench')
        ? `${Math.round(r.tokensEvaluated / r.seconds).toLocaleString('en-US')} tok/s`
        : (r.documents / r.seconds).toFixed(2);
  return [
    `| block | order | ${columns.join(' | ')} |`,
    `|---:|---|${columns.map(() => '---:').join('|')}|`,
    ...blocks.map(
      (runs, b) =>
        `| ${b + 1} | ${b % 2 === 0 ? 'forward' : 'reverse'} | ` +
        `${columns.map((c) => cell(runs.find((r) => name(r) === c))).join(' | ')} |`,
    ),
  ];
}

async function writeResults(
  options: Options,
  prepared: Prepared,
  tools: LlamaTools,
  runs: readonly PartRun[],
  blocks: readonly PartRun[][],
  loads: readonly number[],
  started: Date,
): Promise<void> {
  const rows = summarise(runs);
  const paired = pairedTargetRatios(options, prepared, rows, blocks);
  const engineBuild = prepared.localBuild ? 'localBuild' : 'prebuilt';
  const is =
    (part: string, corpus: Corpus, build?: string) =>
    (r: PartRow): boolean =>
      r.part.startsWith(part) && r.corpus === corpus && (build === undefined || r.build === build);
  const ratios: Ratio[] = [];
  const server = best(rows, is('llama-server', 'unique'));
  const engine = best(rows, is('engine', 'unique', engineBuild));
  const ceiling = rows.find(
    (r) => r.part === `llama-bench pp${prepared.engineTokensPerDocument} @ d${prepared.sharedPrefixTokens}`,
  );
  const engineSerial = rows.find((r) => is('engine serial', 'unique', engineBuild)(r));
  if (engine && server)
    ratios.push(ratio('engine docs/s ÷ llama-server best, unique documents', engine, server, 'documentsPerSecond', 1));
  if (engineSerial && ceiling)
    ratios.push(
      ratio(
        'engine serial tokens/s ÷ llama-bench pp at the same depth',
        engineSerial,
        ceiling,
        'tokensPerSecond',
        0.95,
      ),
    );
  if (engine && ceiling && engine !== engineSerial)
    ratios.push(
      ratio('engine best tokens/s ÷ llama-bench pp at the same depth', engine, ceiling, 'tokensPerSecond', 0.95),
    );
  const engineBatched = rows.find((r) => is('engine batched', 'unique', engineBuild)(r));
  const batchedCeiling = rows.find(
    (r) => r.part === `llama-batched-bench pp${prepared.engineTokensPerDocument} × ${options.sequences}`,
  );
  if (engineBatched && batchedCeiling)
    ratios.push(
      ratio(
        `engine batched tokens/s ÷ llama-batched-bench, both at ${options.sequences} sequences`,
        engineBatched,
        batchedCeiling,
        'tokensPerSecond',
        0.95,
      ),
    );
  const serverDup = best(rows, is('llama-server', 'duplicates'));
  const engineDup = best(rows, is('engine', 'duplicates', engineBuild));
  if (engineDup && serverDup)
    ratios.push(
      ratio(
        `engine docs/s ÷ llama-server best, ${options.duplicates * 100}% exact duplicates`,
        engineDup,
        serverDup,
        'documentsPerSecond',
        1.4,
      ),
    );
  // llama-server's prompt cache restores an exact duplicate's state from host memory; without it the server
  // evaluates every copy, which is what scoring identical texts once is measured against.
  const serverDupNoCache = best(rows, is(`llama-server, ${SERVER_NO_PROMPT_CACHE}`, 'duplicates'));
  if (engineDup && serverDupNoCache)
    ratios.push(
      ratio(
        `engine docs/s ÷ llama-server without its prompt cache (best slots), ` +
          `${options.duplicates * 100}% exact duplicates`,
        engineDup,
        serverDupNoCache,
        'documentsPerSecond',
        1.4,
      ),
    );
  const enginePrebuilt = best(rows, is('engine serial', 'unique', 'prebuilt'));
  if (engineSerial && enginePrebuilt && engineSerial !== enginePrebuilt)
    ratios.push(ratio('engine serial: local build ÷ prebuilt', engineSerial, enginePrebuilt, 'documentsPerSecond', 1));
  const maxLoad = Math.max(...loads);
  const out = {
    date: started.toISOString(),
    finished: new Date().toISOString(),
    host: {
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      loadAverage1m: { min: Math.min(...loads), max: maxLoad },
    },
    model: path.basename(prepared.model),
    documents: options.documents,
    rounds: options.rounds,
    threads: options.threads,
    duplicates: options.duplicates,
    sharedPrefixTokens: prepared.sharedPrefixTokens,
    engineTokensPerDocument: prepared.engineTokensPerDocument,
    flashAttention: prepared.flashAttention,
    flashAttentionResolved: prepared.flashAttentionResolved,
    tools: { release: tools.release, backend: tools.backend, commit: tools.commit, cmakeArgs: tools.cmakeArgs },
    rows,
    ratios,
    runs,
    paired: { blocks: blocks.length, documentsPerBlock: options.pairDocuments, ratios: paired, runs: blocks },
  };
  await mkdir(options.out, { recursive: true });
  await writeFile(path.join(options.out, 'engine.json'), JSON.stringify(out, null, 2) + '\n');
  const md = [
    `# bench:engine — ${out.date}`,
    '',
    `${out.host.cpu} (${out.host.cores} cores), ${options.threads} threads, model ${out.model}, ` +
      `${options.documents} documents of ~${DOC_TOKENS} tokens behind a ${prepared.sharedPrefixTokens}-token shared ` +
      `prefix, ${options.rounds} interleaved rounds; the duplicates corpus is the same slices with ` +
      `${options.duplicates * 100}% of each replaced by exact copies of others. llama-bench and llama-server: ` +
      `llama.cpp ${tools.release} (${tools.commit.slice(0, 7)}) from node-llama-cpp's bundled source, cmake Release, ` +
      `GGML_NATIVE, ${tools.backend}. Same prompt tokens for every tool; flash attention ` +
      `${prepared.flashAttention} everywhere (the engine's setting; llama.cpp resolved it to ` +
      `${prepared.flashAttentionResolved} here) unless a row says otherwise. llama-batched-bench decodes its ` +
      `sequences without the shared prefix's depth, so its ceiling errs high. llama-server keeps finished prompts' ` +
      `states in host memory by default (--cache-ram, 8 GiB) and restores one for an identical prompt; rows marked ` +
      `"${SERVER_NO_PROMPT_CACHE}" ran with --cache-ram 0. ` +
      `1-minute load average ${Math.min(...loads).toFixed(1)}–${maxLoad.toFixed(1)} during the run.`,
    '',
    ...markdownTable(rows),
    '',
    ...ratioLines(ratios),
    '',
    ...(blocks.length === 0
      ? []
      : [
          '## Paired blocks: the targets',
          '',
          `After the survey, ${blocks.length} blocks of ${Math.min(options.pairDocuments, options.documents)} ` +
            'documents each ran only the parts the targets compare, back to back on the same documents (llama-bench: ' +
            `${options.benchRepetitions} repetitions), every other block in reverse order; llama-server in the ` +
            "configurations that were fastest in the survey. Each block's ratio compares runs seconds apart, so a " +
            "slow or fast spell of the machine moves both sides; a target is judged by the blocks' median.",
          '',
          ...pairedRatioLines(paired),
          '',
          ...pairedBlockTable(blocks),
          '',
        ]),
  ].join('\n');
  await writeFile(path.join(options.out, 'engine.md'), md);
  process.stdout.write(md);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
