// `npm run bench:engine`: the label scorer against the naive approach and 512-token decodes through node-llama-cpp
// (the ceiling itself is llama-bench's: bench/results/engine.md),
// side by side in one run, on the medium fixture model (300 documents of ~200 tokens of real tweets behind a
// ~150-token shared instruction, 2 threads). Each measurement runs in its own process so each can load its own
// llama.cpp build and report its own peak RSS. Results go to bench/results/engine.{json,md}.

import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LlamaChatSession, type Token } from 'node-llama-cpp';
import { parseCodebook, type Codebook } from '../contracts/codebook.js';
import { LabelScorer } from '../worker/engine/label-scorer.js';
import { llamaBuildFromEnvironment } from '../contracts/environment.js';
import { getRuntime, loadModel, runtimeInfo, type BuildPreference } from '../worker/engine/llama-runtime.js';
import type { DocumentInput } from '../contracts/document-input.js';
import { ensureFixtureModel } from '../gguf/fixtures/fixture-catalog.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DOCUMENTS = Number(process.env.BENCH_DOCUMENTS ?? 300);
const DOC_TOKENS = 200;
const THREADS = 2;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const INSTRUCTION = `You are an expert annotator working on a study of public opinion on social media. You will read one
tweet and decide which sentiment it expresses towards its main subject. Follow the codebook strictly.
Negative: the author expresses anger, sadness, fear, disappointment, criticism or any other unfavourable
attitude, including sarcasm that implies criticism. Neutral: the tweet reports facts, asks a question,
shares a link or news without evaluation, or the sentiment is mixed so that neither side dominates.
Positive: the author expresses joy, gratitude, admiration, excitement, support or any other favourable
attitude. Ignore hashtags unless they carry sentiment, and ignore user mentions. Answer with exactly one
label and nothing else.`;

interface PartResult {
  readonly part: string;
  readonly build: string;
  readonly documents: number;
  readonly seconds: number;
  readonly documentsPerSecond: number;
  readonly tokensEvaluated: number;
  readonly tokensPerSecond: number;
  readonly peakRssMB: number;
  readonly note: string;
}

function codebook(modelPath: string): Codebook {
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
      model: { path: modelPath, max_document_tokens: 256, threads: THREADS, gpu_layers: 0 },
    },
    { source: 'bench' },
  );
}

/** Tweets concatenated into documents of about DOC_TOKENS tokens, measured with the model's tokenizer. */
async function benchDocuments(tokenize: (text: string) => readonly Token[]): Promise<string[]> {
  const tweets = (
    await readFile(path.resolve(ROOT, '..', 'shared', 'data', 'tweeteval', 'sentiment', 'test_text.txt'), 'utf8')
  )
    .split('\n')
    .filter((t) => t.trim() !== '');
  const docs: string[] = [];
  let next = 0;
  while (docs.length < DOCUMENTS) {
    let doc = '';
    while (tokenize(doc).length < DOC_TOKENS) doc += (doc === '' ? '' : ' ') + tweets[next++ % tweets.length];
    docs.push(doc);
  }
  return docs;
}

async function runPart(
  part: string,
  build: BuildPreference,
  modelPath: string,
  sequences: number,
  from: number,
  to: number,
): Promise<PartResult> {
  const llama = await getRuntime({ build });
  const info = await runtimeInfo(llama);
  const model = await loadModel(llama, modelPath, 0);
  const docs = (await benchDocuments((t) => model.tokenize(t, false))).slice(from, to);
  const peak = (): number => process.resourceUsage().maxRSS / 1024;

  if (part === 'engine') {
    const scorer = await LabelScorer.create(codebook(modelPath), { model, sequences });
    const inputs: DocumentInput[] = docs.map((text) => ({ text }));
    await scorer.score(inputs.slice(0, 2)); // warm-up: load weights into the page cache
    const t0 = performance.now();
    const scores = await scorer.score(inputs);
    const seconds = (performance.now() - t0) / 1000;
    const tokens = scores.reduce((n, s) => n + s.tokens, 0);
    const note =
      `shared prefix ${scorer.settings.sharedPrefixTokens} tokens evaluated once; ` +
      `${(tokens / docs.length).toFixed(0)} tokens evaluated per document; sequences ${sequences}`;
    await scorer.dispose();
    return {
      part: `engine (sequences ${sequences})`,
      build: info.build,
      documents: docs.length,
      seconds,
      documentsPerSecond: docs.length / seconds,
      tokensEvaluated: tokens,
      tokensPerSecond: tokens / seconds,
      peakRssMB: peak(),
      note,
    };
  }

  if (part === 'naive') {
    // What a node-llama-cpp user would write: a chat session per document, generate the label, parse it.
    const context = await model.createContext({ contextSize: 1024, threads: THREADS });
    const sequence = context.getSequence();
    const labels = ['bad', 'none', 'good'];
    const t0 = performance.now();
    let parsed = 0;
    let evaluated = 0;
    for (const text of docs) {
      const before = sequence.tokenMeter.usedInputTokens;
      const session = new LlamaChatSession({ contextSequence: sequence, systemPrompt: INSTRUCTION });
      const answer = await session.prompt(`Answer bad, none or good.\n\nTweet: ${text}`, {
        maxTokens: 4,
        temperature: 0,
      });
      if (labels.some((l) => answer.toLowerCase().includes(l))) parsed++;
      evaluated += sequence.tokenMeter.usedInputTokens - before;
      session.dispose({ disposeSequence: false });
    }
    const seconds = (performance.now() - t0) / 1000;
    await context.dispose();
    return {
      part: 'naive (LlamaChatSession, generate + parse)',
      build: info.build,
      documents: docs.length,
      seconds,
      documentsPerSecond: docs.length / seconds,
      tokensEvaluated: evaluated,
      tokensPerSecond: evaluated / seconds,
      peakRssMB: peak(),
      note: `${parsed} answers parseable as a label (random-weight model)`,
    };
  }

  // Ceiling: the same tokens evaluated in large 512-token decodes from an empty sequence (llama-bench "pp512").
  const all = docs.flatMap((d) => model.tokenize(d, false));
  const batch = 512;
  const context = await model.createContext({ contextSize: batch, batchSize: batch, threads: THREADS });
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
  await context.dispose();
  const tokens = chunks * batch;
  return {
    part: '512-token decodes through node-llama-cpp (not a ceiling: llama-bench measures that)',
    build: info.build,
    documents: 0,
    seconds,
    documentsPerSecond: 0,
    tokensEvaluated: tokens,
    tokensPerSecond: tokens / seconds,
    peakRssMB: peak(),
    note: '',
  };
}

async function main(): Promise<void> {
  const [, , flag, part, build, partModel, sequences, from, to] = process.argv;
  if (flag === '--part') {
    const result = await runPart(
      part as string,
      build as BuildPreference,
      partModel as string,
      Number(sequences ?? 1),
      Number(from),
      Number(to),
    );
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
    process.exit(0);
  }
  const modelPath = await ensureFixtureModel('medium');
  const llama = await getRuntime({ build: llamaBuildFromEnvironment() });
  const hasLocal = llama.buildType === 'localBuild';
  const plan: [string, BuildPreference, number][] = [
    ['ceiling', 'prebuilt', 1],
    ['engine', 'prebuilt', 1],
    ['naive', 'prebuilt', 1],
  ];
  if (hasLocal) plan.push(['ceiling', 'auto', 1], ['engine', 'auto', 1], ['engine', 'auto', 4]);
  // The machine is shared and noisy: parts run interleaved in rounds (A B C A B C ...) over slices of the
  // documents, so each part sees the same mix of background load, and ratios are taken from the sums.
  const totals = new Map<string, PartResult>();
  for (let round = 0; round < ROUNDS; round++) {
    const from = Math.floor((round * DOCUMENTS) / ROUNDS);
    const to = Math.floor(((round + 1) * DOCUMENTS) / ROUNDS);
    for (const [part, build, sequences] of plan) {
      process.stderr.write(
        `bench:engine: round ${round + 1}/${ROUNDS}: ${part} (sequences ${sequences}) on the ` +
          `${build === 'auto' ? 'local' : 'prebuilt'} build...\n`,
      );
      const child = spawnSync(
        process.execPath,
        [
          ...process.execArgv,
          fileURLToPath(import.meta.url),
          '--part',
          part,
          build,
          modelPath,
          String(sequences),
          String(from),
          String(to),
        ],
        { encoding: 'utf8', maxBuffer: 1 << 26 },
      );
      const line = child.stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (child.status !== 0 || line === undefined) throw new Error(`bench part ${part} failed:\n${child.stderr}`);
      const r = JSON.parse(line.slice(7)) as PartResult;
      const key = `${r.part}|${r.build}`;
      const t = totals.get(key);
      totals.set(
        key,
        t === undefined
          ? r
          : {
              ...t,
              documents: t.documents + r.documents,
              seconds: t.seconds + r.seconds,
              tokensEvaluated: t.tokensEvaluated + r.tokensEvaluated,
              peakRssMB: Math.max(t.peakRssMB, r.peakRssMB),
              documentsPerSecond: 0,
              tokensPerSecond: 0,
            },
      );
    }
  }
  const results: PartResult[] = [...totals.values()].map((r) => ({
    ...r,
    documentsPerSecond: r.documents / r.seconds,
    tokensPerSecond: r.tokensEvaluated / r.seconds,
  }));
  const find = (part: string, build: string): PartResult | undefined =>
    results.find((r) => r.part.startsWith(part) && r.build === build);
  const naive = find('naive', 'prebuilt');
  const enginePrebuilt = find('engine', 'prebuilt');
  const engineBest = find('engine (sequences 1)', hasLocal ? 'localBuild' : 'prebuilt');
  const ceilingBest = find('ceiling', hasLocal ? 'localBuild' : 'prebuilt');
  const ratios = {
    engineVsNaiveDocsPerSecond: engineBest && naive ? engineBest.documentsPerSecond / naive.documentsPerSecond : null,
    enginePrebuiltVsNaiveDocsPerSecond:
      enginePrebuilt && naive ? enginePrebuilt.documentsPerSecond / naive.documentsPerSecond : null,
    engineTokensVsCeiling: engineBest && ceilingBest ? engineBest.tokensPerSecond / ceilingBest.tokensPerSecond : null,
  };
  const out = {
    date: new Date().toISOString(),
    host: { cpu: os.cpus()[0]?.model, cores: os.cpus().length },
    model: path.basename(modelPath),
    documents: DOCUMENTS,
    threads: THREADS,
    results,
    ratios,
  };
  const dir = path.join(ROOT, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'engine.json'), JSON.stringify(out, null, 2) + '\n');
  const md = [
    `# bench:engine — ${out.date}`,
    '',
    `${out.host.cpu} (${out.host.cores} cores), ${THREADS} threads, model ${out.model}, ${DOCUMENTS} documents of ` +
      `~${DOC_TOKENS} tokens behind a ~150-token shared instruction.`,
    '',
    '| part | build | docs/s | tokens evaluated/s | tokens evaluated | seconds | peak RSS MB | note |',
    '|---|---|---:|---:|---:|---:|---:|---|',
    ...results.map(
      (r) =>
        `| ${r.part} | ${r.build} | ${r.documentsPerSecond.toFixed(2)} | ${r.tokensPerSecond.toFixed(0)} | ` +
        `${r.tokensEvaluated} | ${r.seconds.toFixed(1)} | ${r.peakRssMB.toFixed(0)} | ${r.note} |`,
    ),
    '',
    `- engine ÷ naive docs/s: **${ratios.engineVsNaiveDocsPerSecond?.toFixed(2)}×** (engine on the ` +
      `${hasLocal ? 'local' : 'prebuilt'} build; naive on the prebuilt binary)`,
    `- engine ÷ naive docs/s, both prebuilt: **${ratios.enginePrebuiltVsNaiveDocsPerSecond?.toFixed(2)}×**`,
    `- engine tokens/s ÷ 512-token decodes through node-llama-cpp (same build; not llama-bench's ceiling): ` +
      `**${((ratios.engineTokensVsCeiling ?? NaN) * 100).toFixed(1)}%**`,
    '',
  ].join('\n');
  await writeFile(path.join(dir, 'engine.md'), md);
  process.stdout.write(md);
}

await main();
