// The engine part of bench/gpu/run.sh: the label scorer at several `sequences` over the same documents behind a
// shared prefix, then big-batch decodes of the same tokens as the ceiling, on one loaded model. Each setting's
// probabilities are compared with sequences 1 (serial): max |Δp| and labels changed. Writes one JSON file.
//
//   engine-bench --model M.gguf --documents docs.json --out result.json [--count 2000] [--sequences 1,8,32,64]
//                [--gpu cuda|off] [--threads 16] [--ceiling-batch 2048]
//
// Runs from the bundle that `npm run bench:gpu:pack` makes (bench/gpu/run.sh) or under tsx here.

import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from 'node-llama-cpp';
import { parseCodebook, type Codebook } from '../../contracts/codebook.js';
import type { DocumentInput } from '../../contracts/document-input.js';
import { LabelScorer } from '../../worker/engine/label-scorer.js';
import { summarize, type EngineBenchResult, type EnginePart } from './summary.js';

export const BENCH_INSTRUCTION =
  'You are an expert annotator working on a study of public opinion on social media. You will read one ' +
  'document and decide which sentiment it expresses towards its main subject. Follow the codebook strictly. ' +
  'Negative: the author expresses anger, sadness, fear, disappointment, criticism or any other unfavourable ' +
  'attitude, including sarcasm that implies criticism. Neutral: the document reports facts, asks a question, ' +
  'shares a link or news without evaluation, or the sentiment is mixed so that neither side dominates. ' +
  'Positive: the author expresses joy, gratitude, admiration, excitement, support or any other favourable ' +
  'attitude. Ignore hashtags unless they carry sentiment, and ignore user mentions. Answer with exactly one ' +
  'label and nothing else.';

function benchCodebook(modelPath: string, threads: number): Codebook {
  return parseCodebook(
    {
      task: 'gpu-bench',
      labels: [{ name: 'negative' }, { name: 'neutral' }, { name: 'positive' }],
      prompt: {
        system: BENCH_INSTRUCTION,
        template: 'Classify the sentiment as negative, neutral or positive.\n\nDocument: {text}',
      },
      model: { path: modelPath, max_document_tokens: 256, threads },
    },
    { source: 'gpu-bench' },
  );
}

function usage(message: string): never {
  process.stderr.write(`engine-bench: ${message}\n`);
  process.exit(2);
}

function positiveInteger(value: string | undefined, option: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) usage(`--${option} must be a positive integer, got "${value}"`);
  return n;
}

async function vramUsed(llama: Llama): Promise<number | null> {
  if (llama.gpu === false) return null;
  return (await llama.getVramState()).used;
}

async function scoreWith(
  llama: Llama,
  model: LlamaModel,
  codebook: Codebook,
  docs: readonly DocumentInput[],
  sequences: number,
  serial: readonly (Float64Array | null)[] | null,
): Promise<{ part: EnginePart; probabilities: (Float64Array | null)[]; labels: (string | null)[]; prefix: number }> {
  const scorer = await LabelScorer.create(codebook, { model, sequences });
  try {
    await scorer.score(docs.slice(0, Math.min(docs.length, sequences))); // warm-up: kernels, graph, caches
    const t0 = performance.now();
    const scores = await scorer.score(docs);
    const seconds = (performance.now() - t0) / 1000;
    const tokens = scores.reduce((n, s) => n + s.tokens, 0);
    const probabilities = scores.map((s) => s.probabilities);
    let maxAbsDeltaP: number | null = null;
    let labelsChanged: number | null = null;
    let nonFinite = 0;
    for (const p of probabilities) for (const v of p ?? []) if (!Number.isFinite(v)) nonFinite++;
    if (serial !== null) {
      maxAbsDeltaP = 0;
      labelsChanged = 0;
      for (const [i, p] of probabilities.entries()) {
        const q = serial[i];
        if (p === null || q === null || q === undefined) continue;
        let argP = 0;
        let argQ = 0;
        for (let k = 0; k < p.length; k++) {
          maxAbsDeltaP = Math.max(maxAbsDeltaP, Math.abs((p[k] ?? 0) - (q[k] ?? 0)));
          if ((p[k] ?? 0) > (p[argP] ?? 0)) argP = k;
          if ((q[k] ?? 0) > (q[argQ] ?? 0)) argQ = k;
        }
        if (argP !== argQ) labelsChanged++;
      }
    }
    return {
      part: {
        part: `engine (sequences ${sequences})`,
        sequences,
        documents: docs.length,
        seconds,
        documentsPerSecond: docs.length / seconds,
        tokensEvaluated: tokens,
        tokensPerSecond: tokens / seconds,
        vramUsedBytes: await vramUsed(llama),
        maxAbsDeltaP,
        labelsChanged,
        nonFinite,
        settings: { ...scorer.settings },
      },
      probabilities,
      labels: scores.map((s) => s.label),
      prefix: scorer.settings.sharedPrefixTokens,
    };
  } finally {
    await scorer.dispose();
  }
}

/** The same document tokens evaluated in `batch`-token decodes from an empty sequence: no prefix reuse, no split. */
async function ceiling(llama: Llama, model: LlamaModel, texts: readonly string[], batch: number): Promise<EnginePart> {
  const all = texts.flatMap((text) => model.tokenize(text, false));
  const context = await model.createContext({ contextSize: batch, batchSize: batch, sequences: 1 });
  try {
    const sequence = context.getSequence();
    await sequence.controlledEvaluate(all.slice(0, batch));
    await sequence.clearHistory();
    const chunks = Math.floor(all.length / batch);
    const t0 = performance.now();
    for (let c = 0; c < chunks; c++) {
      await sequence.controlledEvaluate(all.slice(c * batch, (c + 1) * batch));
      await sequence.clearHistory();
    }
    const seconds = (performance.now() - t0) / 1000;
    const tokens = chunks * batch;
    return {
      part: `${batch}-token decodes (ceiling)`,
      sequences: 1,
      documents: 0,
      seconds,
      documentsPerSecond: 0,
      tokensEvaluated: tokens,
      tokensPerSecond: tokens / seconds,
      vramUsedBytes: await vramUsed(llama),
      maxAbsDeltaP: null,
      labelsChanged: null,
      nonFinite: 0,
      settings: { batch, contextSize: batch },
    };
  } finally {
    await context.dispose();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      documents: { type: 'string' },
      out: { type: 'string' },
      count: { type: 'string' },
      sequences: { type: 'string' },
      gpu: { type: 'string' },
      threads: { type: 'string' },
      'ceiling-batch': { type: 'string' },
      summarize: { type: 'string' },
      mode: { type: 'string' },
    },
  });
  if (values.summarize !== undefined) {
    if (values.out === undefined) usage('--summarize needs --out (the output folder)');
    await summarize(values.summarize, values.out, values.mode ?? 'gpu');
    return;
  }
  if (values.model === undefined) usage('--model is required (a GGUF file)');
  if (values.documents === undefined) usage('--documents is required (a JSON array of strings)');
  if (values.out === undefined) usage('--out is required (the result JSON file)');
  const modelPath = values.model;
  const outPath = values.out;
  const gpuOption = values.gpu ?? 'cuda';
  if (gpuOption !== 'cuda' && gpuOption !== 'off') usage(`--gpu must be "cuda" or "off", got "${gpuOption}"`);
  const count = positiveInteger(values.count, 'count', 2000);
  const threads = positiveInteger(values.threads, 'threads', 4);
  const ceilingBatch = positiveInteger(values['ceiling-batch'], 'ceiling-batch', 2048);
  const sequencesList = (values.sequences ?? '1,8,32,64')
    .split(',')
    .map((s) => positiveInteger(s.trim(), 'sequences', 1));
  const texts = JSON.parse(await readFile(values.documents, 'utf8')) as unknown;
  if (!Array.isArray(texts) || !texts.every((t) => typeof t === 'string'))
    usage(`--documents ${values.documents} must hold a JSON array of strings`);
  if (texts.length < count) usage(`--documents ${values.documents} holds ${texts.length} documents; --count ${count}`);
  const docs: DocumentInput[] = (texts as string[]).slice(0, count).map((text) => ({ text }));

  const llama = await getLlama({
    gpu: gpuOption === 'cuda' ? 'cuda' : false,
    build: 'never',
    skipDownload: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.warn,
  });
  // Without its CUDA backend the addon would quietly run on the CPU, for far longer than the call may take.
  if (gpuOption === 'cuda' && (llama.gpu !== 'cuda' || (await llama.getVramState()).total === 0)) {
    process.stderr.write(
      `engine-bench: --gpu cuda, but llama.cpp loaded with gpu ${String(llama.gpu)} and no VRAM: ` +
        'libggml-cuda.so is missing from the prebuilt folder or failed to load (see the build step)\n',
    );
    process.exit(1);
  }
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: values.model, gpuLayers: gpuOption === 'cuda' ? 'max' : 0 });
  const loadSeconds = (performance.now() - t0) / 1000;
  if (gpuOption === 'cuda' && model.gpuLayers === 0) {
    process.stderr.write(`engine-bench: ${values.model} loaded with no layer on the GPU\n`);
    process.exit(1);
  }
  process.stderr.write(
    `engine-bench: ${path.basename(values.model)} loaded in ${loadSeconds.toFixed(1)} s, gpu ${String(llama.gpu)}, ` +
      `${model.gpuLayers} layers offloaded, build ${llama.buildType}\n`,
  );
  const codebook = benchCodebook(values.model, threads);
  const parts: EnginePart[] = [];
  let sharedPrefixTokens: number | null = null;
  // Written after every part, so a run cut off by the call's time limit still reports what it measured.
  const save = async (): Promise<void> => {
    const result: EngineBenchResult = {
      model: path.basename(modelPath),
      gpu: llama.gpu,
      buildType: llama.buildType,
      llamaCpp: `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`,
      documents: docs.length,
      sharedPrefixTokens,
      loadSeconds,
      parts,
    };
    await writeFile(outPath, JSON.stringify(result, null, 2) + '\n');
  };
  const log = (part: EnginePart): void => {
    process.stderr.write(
      `engine-bench: ${part.part}: ${part.documentsPerSecond.toFixed(1)} docs/s, ` +
        `${part.tokensPerSecond.toFixed(0)} tokens/s, ${part.seconds.toFixed(2)} s` +
        (part.maxAbsDeltaP === null ? '' : `, max |Δp| vs serial ${part.maxAbsDeltaP.toExponential(2)}`) +
        '\n',
    );
  };
  // Serial first: it is the reference for every other setting.
  const serial = await scoreWith(llama, model, codebook, docs, 1, null);
  sharedPrefixTokens = serial.prefix;
  parts.push(serial.part);
  log(serial.part);
  await save();
  for (const sequences of sequencesList.filter((s) => s !== 1)) {
    const run = await scoreWith(llama, model, codebook, docs, sequences, serial.probabilities);
    parts.push(run.part);
    log(run.part);
    await save();
  }
  const top = await ceiling(
    llama,
    model,
    docs.map((d) => d.text ?? ''),
    ceilingBatch,
  );
  parts.push(top);
  log(top);
  await save();
  await model.dispose();
  await llama.dispose();
}

await main();
