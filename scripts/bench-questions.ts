// `npm run bench:questions`: what a multi-question codebook saves. One codebook asking 10 questions after the document
// (the document evaluated once, each question's tail decoded after it) against the same 10 questions as 10
// one-question codebooks with the same prompts (10 runs, each evaluating the document again), on a fixture model,
// documents of ~200 tokens, interleaved rounds; and the codebook with its tails decoded one by one (no tail slots:
// each tail its own decode after a rewind) against the default batched tails (copies of the document's cache, the
// 10 tails in one decode). Tokens evaluated per document are deterministic and reported exactly;
// docs/s depends on the machine. Then the cost of rendering and tokenising K prompts per document against scoring it,
// for K = 10 and 46, chat and raw. Results go to bench/results/questions.{json,md}.
//
//   npm run bench:questions [-- --documents 24 --rounds 3 --threads 2 --model medium --out bench/results]

import { readFile, mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { LlamaModel } from 'node-llama-cpp';
import { parseCodebook, type Codebook, type CodebookInput } from '../contracts/codebook.js';
import { ensureFixtureModel, type FixtureName } from '../gguf/fixtures/fixture-catalog.js';
import { LabelScorer } from '../worker/engine/label-scorer.js';
import { getRuntime, loadModel, runtimeInfo } from '../worker/engine/llama-runtime.js';
import { QuestionPrompts } from '../worker/engine/question-prompts.js';
import { REPOSITORY_ROOT } from './llama-tools.js';

const DOC_TOKENS = 200;
const TARGET = 0.9;

const SYSTEM =
  'You are an expert annotator working on a study of public opinion on social media. You will read a text made of ' +
  'several tweets and answer one question about it. Follow the codebook strictly and answer yes or no only.';

/** Ten questions, each answered yes or no (one token each in the fixtures' vocabularies). */
const QUESTIONS = [
  'Does the text mention politics or an election?',
  'Does the text express a negative opinion?',
  'Does the text express a positive opinion?',
  'Does the text mention sport?',
  'Does the text mention music or a concert?',
  'Does the text mention a company or a product?',
  'Does the text contain sarcasm?',
  'Does the text mention a date or a day of the week?',
  'Does the text ask a question?',
  'Does the text mention a person by name?',
];

const TEMPLATE = 'Text: {text}\n\nQuestion: {question} Answer yes or no.';

type QuestionInput = NonNullable<CodebookInput['questions']>[number];

function question(text: string, i: number): QuestionInput {
  return { name: `q${i + 1}`, question: text, labels: [{ name: 'yes' }, { name: 'no' }] };
}

function model(modelPath: string, threads: number): CodebookInput['model'] {
  return { path: modelPath, max_document_tokens: 256, threads, gpu_layers: 0 };
}

function multiCodebook(
  modelPath: string,
  threads: number,
  questions: readonly string[],
  format: 'chat' | 'raw',
): Codebook {
  return parseCodebook(
    {
      task: 'bench-questions',
      questions: questions.map(question),
      prompt: { format, system: SYSTEM, template: TEMPLATE, ...(format === 'raw' ? { answer_prefix: ' ' } : {}) },
      model: model(modelPath, threads),
    },
    { source: 'bench-questions.yaml' },
  );
}

/** The one-question codebook whose prompt is the codebook's prompt for that question, token for token. */
function singleCodebook(modelPath: string, threads: number, text: string): Codebook {
  return parseCodebook(
    {
      task: 'bench-one-question',
      labels: [{ name: 'yes' }, { name: 'no' }],
      prompt: {
        format: 'raw',
        system: SYSTEM,
        template: TEMPLATE.replace('{question}', text.replaceAll('{', '{{')),
        answer_prefix: ' ',
      },
      model: model(modelPath, threads),
    },
    { source: 'bench-one-question.yaml' },
  );
}

/** Tweets joined into documents of about DOC_TOKENS tokens, measured with the model's tokenizer. */
async function documents(count: number, llamaModel: LlamaModel): Promise<string[]> {
  const file = path.resolve(REPOSITORY_ROOT, '..', 'shared', 'data', 'tweeteval', 'sentiment', 'test_text.txt');
  const tweets = (await readFile(file, 'utf8')).split('\n').filter((t) => t.trim() !== '');
  const docs: string[] = [];
  let next = 0;
  while (docs.length < count) {
    let doc = '';
    while (llamaModel.tokenize(doc, false).length < DOC_TOKENS) doc += (doc === '' ? '' : ' ') + tweets[next++];
    docs.push(doc);
  }
  return docs;
}

interface Part {
  readonly seconds: number;
  readonly tokens: number;
  readonly documents: number;
}

async function timed(scorers: readonly LabelScorer[], texts: readonly string[]): Promise<Part> {
  let tokens = 0;
  const t0 = performance.now();
  for (const scorer of scorers) {
    for (const score of await scorer.score(texts.map((text) => ({ text })))) {
      if (score.status !== 'ok') throw new Error(`a document was not scored: ${score.error ?? score.status}`);
      tokens += score.tokens;
    }
  }
  return { seconds: (performance.now() - t0) / 1000, tokens, documents: texts.length };
}

interface TokenisationRow {
  readonly questions: number;
  readonly format: 'chat' | 'raw';
  readonly renderMsPerDocument: number;
  readonly scoreMsPerDocument: number;
  readonly tokensPerDocument: number;
}

/** Rendering and tokenising every question's prompt, against scoring the document (which includes that rendering). */
async function tokenisationCost(
  llamaModel: LlamaModel,
  modelPath: string,
  threads: number,
  texts: readonly string[],
  questions: number,
  format: 'chat' | 'raw',
): Promise<TokenisationRow> {
  const texts46 = Array.from({ length: questions }, (_, i) => `${QUESTIONS[i % QUESTIONS.length] ?? ''} (${i + 1})`);
  const codebook = multiCodebook(modelPath, threads, texts46, format);
  const prompts = QuestionPrompts.create(llamaModel, codebook, codebook.questions);
  prompts.render({ text: texts[0] ?? '' }, 256);
  const t0 = performance.now();
  for (const text of texts) prompts.render({ text }, 256);
  const renderMs = (performance.now() - t0) / texts.length;
  const scorer = await LabelScorer.create(codebook, { model: llamaModel });
  try {
    await scorer.score([{ text: texts[0] ?? '' }]);
    const part = await timed([scorer], texts);
    return {
      questions,
      format,
      renderMsPerDocument: renderMs,
      scoreMsPerDocument: (part.seconds * 1000) / part.documents,
      tokensPerDocument: part.tokens / part.documents,
    };
  } finally {
    await scorer.dispose();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      documents: { type: 'string', default: '24' },
      rounds: { type: 'string', default: '3' },
      threads: { type: 'string', default: '2' },
      model: { type: 'string', default: 'medium' },
      out: { type: 'string', default: path.join(REPOSITORY_ROOT, 'bench', 'results') },
    },
  });
  const count = Number(values.documents);
  const rounds = Number(values.rounds);
  const threads = Number(values.threads);
  const fixture = values.model as FixtureName;
  const modelPath = await ensureFixtureModel(fixture);
  const llama = await getRuntime({ build: 'auto' });
  const info = await runtimeInfo(llama);
  const llamaModel = await loadModel(llama, modelPath, 0);
  const loads: number[] = [os.loadavg()[0] ?? Number.NaN];
  const texts = await documents(count + 1, llamaModel);
  const warmup = texts.slice(count);
  const multi = await LabelScorer.create(multiCodebook(modelPath, threads, QUESTIONS, 'raw'), { model: llamaModel });
  const oneByOne = await LabelScorer.create(multiCodebook(modelPath, threads, QUESTIONS, 'raw'), {
    model: llamaModel,
    tailSequences: 0,
  });
  const singles: LabelScorer[] = [];
  for (const text of QUESTIONS)
    singles.push(await LabelScorer.create(singleCodebook(modelPath, threads, text), { model: llamaModel }));
  const runs: { round: number; multi: Part; singles: Part; oneByOne: Part }[] = [];
  try {
    // Same prompts: each question's prompt in the codebook is its one-question codebook's prompt, token for token.
    const probe = { text: texts[0] ?? '' };
    QUESTIONS.forEach((_, q) => {
      const a = multi.promptTokens(probe, q).tokens.join(',');
      if (a !== (singles[q] as LabelScorer).promptTokens(probe).tokens.join(','))
        throw new Error(`question ${q + 1}: the one-question codebook's prompt differs from the codebook's`);
    });
    for (const scorer of [multi, oneByOne, ...singles]) await scorer.score(warmup.map((text) => ({ text })));
    for (let round = 0; round < rounds; round++) {
      const slice = texts.slice(Math.floor((round * count) / rounds), Math.floor(((round + 1) * count) / rounds));
      // Interleaved, the order rotating, so drift in the machine's load falls on every side.
      const arms = [
        { name: 'multi', scorers: [multi] },
        { name: 'singles', scorers: singles },
        { name: 'oneByOne', scorers: [oneByOne] },
      ] as const;
      const parts = new Map<string, Part>();
      for (let k = 0; k < arms.length; k++) {
        const arm = arms[(round + k) % arms.length] as (typeof arms)[number];
        parts.set(arm.name, await timed(arm.scorers, slice));
      }
      const [multiPart, singlesPart, oneByOnePart] = arms.map((a) => parts.get(a.name) as Part) as [Part, Part, Part];
      runs.push({ round, multi: multiPart, singles: singlesPart, oneByOne: oneByOnePart });
      loads.push(os.loadavg()[0] ?? Number.NaN);
      const rate = (p: Part): string => (p.documents / p.seconds).toFixed(2);
      process.stderr.write(
        `round ${round + 1}: codebook ${rate(multiPart)} docs/s, tails one by one ${rate(oneByOnePart)}, 10 runs ` +
          `${rate(singlesPart)} docs/s\n`,
      );
    }
  } finally {
    await Promise.all([multi, oneByOne, ...singles].map((s) => s.dispose()));
  }
  const tokenisation: TokenisationRow[] = [];
  const profileTexts = texts.slice(0, Math.min(8, count));
  for (const [k, format] of [
    [10, 'raw'],
    [10, 'chat'],
    [46, 'raw'],
    [46, 'chat'],
  ] as const) {
    tokenisation.push(await tokenisationCost(llamaModel, modelPath, threads, profileTexts, k, format));
    loads.push(os.loadavg()[0] ?? Number.NaN);
  }
  await llamaModel.dispose();

  const sum = (parts: readonly Part[], key: keyof Part): number => parts.reduce((a, p) => a + p[key], 0);
  const side = (pick: (r: (typeof runs)[number]) => Part) => {
    const parts = runs.map(pick);
    return {
      documentsPerSecond: sum(parts, 'documents') / sum(parts, 'seconds'),
      tokensPerDocument: sum(parts, 'tokens') / sum(parts, 'documents'),
      perRound: parts.map((p) => p.documents / p.seconds),
    };
  };
  const codebookSide = side((r) => r.multi);
  const singlesSide = side((r) => r.singles);
  const oneByOneSide = side((r) => r.oneByOne);
  const tailSpeedup = codebookSide.documentsPerSecond / oneByOneSide.documentsPerSecond;
  const tailPerRound = codebookSide.perRound.map((x, i) => x / (oneByOneSide.perRound[i] as number));
  const tokenRatio = singlesSide.tokensPerDocument / codebookSide.tokensPerDocument;
  const speedup = codebookSide.documentsPerSecond / singlesSide.documentsPerSecond;
  const perRound = codebookSide.perRound.map((x, i) => x / (singlesSide.perRound[i] as number));
  const result = {
    date: new Date().toISOString(),
    host: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, loadAverage1m: loads },
    build: info.build,
    model: path.basename(modelPath),
    threads,
    documents: count,
    rounds,
    questions: QUESTIONS.length,
    codebook: codebookSide,
    singleRuns: singlesSide,
    tailsOneByOne: oneByOneSide,
    tailSequences: multi.settings.tailSequences ?? 0,
    tokenRatio,
    speedup,
    speedupPerRound: perRound,
    batchedTailsSpeedup: tailSpeedup,
    batchedTailsSpeedupPerRound: tailPerRound,
    target: TARGET * tokenRatio,
    tokenisation,
  };
  await mkdir(values.out, { recursive: true });
  await writeFile(path.join(values.out, 'questions.json'), JSON.stringify(result, null, 2) + '\n');
  const f = (x: number, d = 2): string =>
    x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
  const md = [
    `# bench:questions — ${result.date}`,
    '',
    `${result.host.cpu ?? 'CPU'} (${result.host.cores} cores), ${threads} threads, ${result.model} (${info.build}), ` +
      `${count} documents of ~${DOC_TOKENS} tokens, ${rounds} interleaved rounds. 1-minute load average ` +
      `${f(Math.min(...loads), 1)}–${f(Math.max(...loads), 1)} during the run` +
      // The run's own threads load the machine up to `threads`; more than that means other work shared the cores.
      (Math.max(...loads) > threads + 0.5
        ? ': other work shared the cores, so docs/s is only indicative; rerun on a quiet machine before quoting it.'
        : ' (this run alone).') +
      ' Tokens per document are deterministic.',
    '',
    '| scoring | tokens/doc | docs/s | docs/s per round |',
    '|---|---:|---:|---|',
    `| 1 codebook, 10 questions after the document, tails batched | ${f(codebookSide.tokensPerDocument, 1)} | ` +
      `${f(codebookSide.documentsPerSecond)} | ${codebookSide.perRound.map((x) => f(x)).join(' / ')} |`,
    `| 1 codebook, its 10 tails decoded one by one | ${f(oneByOneSide.tokensPerDocument, 1)} | ` +
      `${f(oneByOneSide.documentsPerSecond)} | ${oneByOneSide.perRound.map((x) => f(x)).join(' / ')} |`,
    `| 10 one-question codebooks, same prompts | ${f(singlesSide.tokensPerDocument, 1)} | ` +
      `${f(singlesSide.documentsPerSecond)} | ${singlesSide.perRound.map((x) => f(x)).join(' / ')} |`,
    '',
    `- tokens of the 10 runs ÷ tokens of the codebook: **${f(tokenRatio)}×**`,
    `- speed-up (docs/s ratio): **${f(speedup)}×** (target ≥ ${TARGET} × ${f(tokenRatio)} = ${f(result.target)}×: ` +
      `${speedup >= result.target ? 'met' : 'missed'}; per round ${perRound.map((x) => f(x)).join(' / ')})`,
    `- batched tails (${result.tailSequences} tail slots) vs tails one by one: **${f(tailSpeedup)}×** ` +
      `(per round ${tailPerRound.map((x) => f(x)).join(' / ')})`,
    '',
    '## Rendering and tokenising K prompts per document',
    '',
    'Each document renders and tokenises every question’s whole prompt (worker/engine/question-prompts.ts). Render: ' +
      'that alone; score is the whole scoring of the document, render included.',
    '',
    '| questions | format | render ms/doc | score ms/doc | render share | tokens/doc |',
    '|---:|---|---:|---:|---:|---:|',
    ...tokenisation.map(
      (t) =>
        `| ${t.questions} | ${t.format} | ${f(t.renderMsPerDocument)} | ${f(t.scoreMsPerDocument, 1)} | ` +
        `${f((100 * t.renderMsPerDocument) / t.scoreMsPerDocument, 1)}% | ${f(t.tokensPerDocument, 1)} |`,
    ),
    '',
  ].join('\n');
  await writeFile(path.join(values.out, 'questions.md'), md);
  process.stdout.write(md);
}

await main();
