// The paper's hybrid workflow end to end on TweetEval sentiment, through the rescale commands themselves (each one a
// child process, as a person would type it): a seeded training sample → `rescale crowd` (two local fixture codebooks
// and two stand-in closed models on a loopback OpenAI-compatible server, one fairly accurate, one noisy) → `rescale
// review` (add-reviewer, assign with an overlap share, serve; stand-in coders decide through the review server over
// HTTP, like the browser's forms) → `review stats` and `review export` → a keyword adapter derived from the verified
// set (the learning-curve script's stand-in for fine-tuning), and one from the crowd's majority vote without review
// → `rescale run` on held-out TweetEval test tweets → `rescale evaluate` against the TweetEval gold.
//
// What stands in for what: the closed models are not models — the loopback server answers the TweetEval gold label,
// changed to another label for a seeded share of tweets (their error rates); the human coders decide by the TweetEval
// gold too (accept a proposal equal to it, else pick it), with an optional seeded slip rate.
//
//   npx tsx scripts/hybrid-walkthrough.ts [--sample 1000] [--held-out 2000] [--seed 7] [--overlap 0.2]
//       [--slip 0.05] [--out out/hybrid-walkthrough] [--resamples 2000] [--data-dir DIR]

import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { loadCodebook } from '../contracts/codebook.js';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import { silentLogger } from '../contracts/logger.js';
import { PACKAGE_ROOT } from '../contracts/package-root.js';
import { writeParquetAtomic } from '../storage/parquet-table.js';
import { defaultTweetEvalDir, readTweetEvalSplit, sentimentCodebookYaml, tweetEvalParquet } from '../cli/demo.js';
import { readGoldLabels } from '../study/evaluation/labelled-predictions.js';
import type { EvaluationResult } from '../study/evaluation/evaluate-predictions.js';
import { createSeededRandom, shuffled } from '../study/evaluation/seeded-random.js';
import { readCrowdFolder, type CrowdFolder } from '../study/review/crowd-folder.js';
import type { ReviewStats } from '../study/review/review-stats.js';
import { fixed, formatMarkdownTable } from '../study/text-table.js';
import { ensureFixtureModel } from '../gguf/fixtures/fixture-catalog.js';
import { dummyApiKey, OpenAIServer, type ChatBody } from './harness/openai-server.js';
import { openKeywordAdapterTrainer } from './learning-curve.js';

export const SENTIMENT = ['negative', 'neutral', 'positive'] as const;
/** The environment variable the stand-in closed models' key is passed in (a dummy key, never a real one). */
export const KEY_VARIABLE = 'RESCALE_WALKTHROUGH_KEY';
const CLI = path.join(PACKAGE_ROOT, 'cli', 'rescale.ts');

/** A stand-in closed model: its name, and the share of tweets it answers with a label other than the gold one. */
export interface StandInModel {
  readonly labeller: string;
  readonly model: string;
  readonly errorRate: number;
}

export const STAND_IN_MODELS: readonly StandInModel[] = [
  { labeller: 'closed-good', model: 'standin-good', errorRate: 0.2 },
  { labeller: 'closed-noisy', model: 'standin-noisy', errorRate: 0.6 },
];

/**
 * What scores the held-out set, by name: the two local labellers as they are (keyword, keyword-val), each stand-in
 * closed model alone (by its labeller name: the fallback with every document routed to it), and the keyword model
 * with the adapter derived from the crowd's majority vote or from the verified set.
 */
export const MAJORITY_ADAPTER = 'majority-adapter';
export const VERIFIED_ADAPTER = 'verified-adapter';

export interface WalkthroughOptions {
  /** Folder with TweetEval's sentiment/ (default ../shared/data/tweeteval). */
  readonly dataDir?: string;
  readonly outDir: string;
  /** Training sample the crowd labels and the coders review (TweetEval test tweets). */
  readonly sample: number;
  /** Held-out evaluation tweets: TweetEval test tweets outside the sample. */
  readonly heldOut: number;
  readonly seed: number;
  /** Share of the sample two coders review (default 0.2). */
  readonly overlap?: number;
  /** Share of documents on which a stand-in coder means another label than the gold one (default 0). */
  readonly slip?: number;
  readonly resamples?: number;
  readonly models?: readonly StandInModel[];
  /**
   * Which systems score the held-out set, by name (default all: keyword, keyword-val, the closed models by labeller
   * name, MAJORITY_ADAPTER, VERIFIED_ADAPTER).
   */
  readonly systems?: readonly string[];
  /** Runs once the review server is up, before the stand-in coders; e.g. a browser reviews some documents. */
  readonly beforeStandIn?: (session: ReviewSession) => Promise<void>;
  readonly say?: (line: string) => void;
}

export interface ReviewSession {
  /** The review server's base URL (http://127.0.0.1:PORT). */
  readonly url: string;
  /** Reviewer name → login token, as `rescale review add-reviewer` printed it. */
  readonly tokens: ReadonlyMap<string, string>;
  readonly db: string;
  readonly crowd: CrowdFolder;
  /** The label a stand-in reviewer means to give a document (the gold one, unless the reviewer slips). */
  intended(reviewer: string, document: string): string;
}

/** One line of the agreement table: a labeller's accuracy against the TweetEval gold on the crowd sample. */
export interface LabellerAccuracy {
  readonly labeller: string;
  readonly n: number;
  readonly accuracy: number;
}

export interface AgreementJson {
  readonly questions: readonly {
    readonly question: string;
    readonly labellers: readonly string[];
    readonly documents: number;
    readonly complete_documents: number;
    readonly fleiss_kappa: number | null;
    readonly krippendorff_alpha: { readonly level: string; readonly value: number | null };
    readonly pairwise_cohen_kappa: readonly {
      readonly a: string;
      readonly b: string;
      readonly documents: number;
      readonly kappa: number | null;
    }[];
    readonly disagreements: number;
    readonly errors: Readonly<Record<string, number>>;
  }[];
}

export interface WalkthroughResult {
  readonly outDir: string;
  /** Each rescale command as run (relative to outDir), with what it printed. */
  readonly commands: readonly { readonly args: readonly string[]; readonly stdout: string; readonly seconds: number }[];
  readonly sampleIds: readonly string[];
  readonly heldOutIds: readonly string[];
  readonly agreement: AgreementJson;
  readonly labellerAccuracy: readonly LabellerAccuracy[];
  readonly review: {
    readonly reviewers: readonly { readonly name: string; readonly role: 'coder' | 'adjudicator' }[];
    /** Decisions the stand-in coders posted over HTTP (the browser's, if any, are not counted here). */
    readonly httpDecisions: number;
    readonly stats: ReviewStats;
    readonly statsPath: string;
  };
  readonly exported: {
    readonly gold: string;
    readonly training: string;
    readonly documents: number;
    readonly adjudicated: number;
    readonly trainingExamples: number;
  };
  readonly adapters: {
    readonly verified: {
      readonly file: string;
      readonly examples: number;
      readonly keywords: number;
      /** Verified labels that equal the TweetEval gold. */
      readonly correct: number;
    };
    readonly majority: {
      readonly file: string;
      readonly examples: number;
      readonly keywords: number;
      /** Sample documents without a majority (a tie): left out of the majority-vote training set. */
      readonly ties: number;
      /** Majority labels that equal the TweetEval gold. */
      readonly correct: number;
    };
  };
  /** Systems scored on the held-out set, in evaluation order. */
  readonly systems: readonly { readonly name: string; readonly results: string }[];
  readonly evaluation: EvaluationResult;
  readonly evaluationPath: string;
  /** The verified adapter against the majority-vote one on the same held-out tweets (paired); null unless both ran. */
  readonly reviewGain: EvaluationResult | null;
  /** `rescale report` of the verified adapter's run with the review section; null unless it ran. */
  readonly reportPath: string | null;
  readonly heldOutPath: string;
}

/** A number in [0, 1) from a seeded hash of the parts (the stand-ins' only randomness). */
function unit(...parts: readonly (string | number)[]): number {
  return createHash('sha256').update(parts.join('\0')).digest().readUInt32BE(0) / 2 ** 32;
}

/** `gold`, or with probability `rate` (seeded by the parts) one of the other labels, chosen evenly. */
export function withErrors(gold: string, rate: number, ...parts: readonly (string | number)[]): string {
  if (unit('error', ...parts) >= rate) return gold;
  const others = SENTIMENT.filter((l) => l !== gold);
  return others[Math.floor(unit('other', ...parts) * others.length)] as string;
}

/** The tweet in a prompt rendered from the sentiment codebook's template ("…\n\nTweet: {text}", then the format). */
export function tweetOfPrompt(user: string): string | null {
  const start = user.indexOf('Tweet: ');
  if (start < 0) return null;
  return user.slice(start + 'Tweet: '.length).split('\n')[0] ?? '';
}

/**
 * The stand-in closed models' answer: the TweetEval gold label of the tweet, changed by the model's seeded error
 * rate; a tweet it does not know (never the case here) gets a label chosen by hash.
 */
export function standInLabel(
  goldByText: ReadonlyMap<string, string>,
  models: readonly StandInModel[],
  seed: number,
): (user: string, body: ChatBody) => string {
  return (user, body) => {
    const model = models.find((m) => m.model === body.model);
    const tweet = tweetOfPrompt(user) ?? user;
    const gold = goldByText.get(tweet);
    if (model === undefined || gold === undefined)
      return SENTIMENT[Math.floor(unit('unknown', seed, body.model, tweet) * SENTIMENT.length)] as string;
    return withErrors(gold, model.errorRate, seed, model.model, tweet);
  };
}

/** `rescale ARGS` started in `cwd` as a child process, its stdout and stderr piped. */
function spawnRescale(
  args: readonly string[],
  cwd: string,
  env: Record<string, string> = {},
): ChildProcessByStdio<null, Readable, Readable> {
  return spawn(process.execPath, ['--import', import.meta.resolve('tsx'), CLI, ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Runs `rescale ARGS` in `cwd` as a child process; its stdout, or an error with its stderr. */
export function rescale(args: readonly string[], cwd: string, env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawnRescale(args, cwd, env);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(stdout);
      else reject(new Error(`rescale ${args.join(' ')} exited with ${code}:\n${stderr.trim().slice(-2000)}`));
    });
  });
}

/** `rescale review serve` in the background; resolves once it prints where it listens. */
function serveReview(args: readonly string[], cwd: string): Promise<{ url: string; child: ChildProcess }> {
  return new Promise((resolve, reject) => {
    const child = spawnRescale(args, cwd);
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      const match = /listening on (http:\/\/\S+)/.exec(stdout);
      if (match !== null) resolve({ url: match[1] as string, child });
    });
    child.on('error', reject);
    child.on('close', (code) => reject(new Error(`rescale review serve exited with ${code}: ${stderr.trim()}`)));
  });
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  await exited;
}

const decodeEntities = (value: string): string =>
  value.replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)));

/** The decision forms of a document page, each as the fields its submit would post. */
export function decisionForms(html: string): URLSearchParams[] {
  const forms: URLSearchParams[] = [];
  for (const form of html.matchAll(/<form class="inline" method="post" action="\/decide">(.*?)<\/form>/g)) {
    const fields = new URLSearchParams();
    for (const input of (form[1] as string).matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g))
      fields.append(input[1] as string, decodeEntities(input[2] as string));
    forms.push(fields);
  }
  return forms;
}

/**
 * A stand-in coder: logs in with the token and works through its queue over HTTP as the browser's forms do — on each
 * document it submits the Accept form of the proposal equal to the label it means, or else the form that picks that
 * label. Returns the decisions posted.
 */
export async function reviewOverHttp(
  url: string,
  token: string,
  intended: (document: string) => string,
): Promise<number> {
  const login = await fetch(`${url}/login?token=${encodeURIComponent(token)}`, { redirect: 'manual' });
  if (login.status !== 200) throw new Error(`login answered ${login.status}`);
  const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] as string;
  let location = '/next';
  let decisions = 0;
  for (;;) {
    const response = await fetch(`${url}${location}`, { headers: { cookie }, redirect: 'manual' });
    if (response.status === 303) {
      location = response.headers.get('location') ?? '/';
      if (location === '/') return decisions;
      continue;
    }
    const page = await response.text();
    if (response.status !== 200 || !location.startsWith('/doc/'))
      throw new Error(`GET ${location} answered ${response.status}`);
    const document = decodeURIComponent(location.slice('/doc/'.length));
    const label = intended(document);
    const forms = decisionForms(page);
    const chosen =
      forms.find((f) => f.get('decision') === 'accept' && f.getAll('label').join('\n') === label) ??
      forms.find((f) => f.get('decision') === 'pick' && f.get('label') === label);
    if (chosen === undefined) throw new Error(`document ${document}: no form accepts or picks "${label}"`);
    const posted = await fetch(`${url}/decide`, {
      method: 'POST',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: chosen.toString(),
      redirect: 'manual',
    });
    if (posted.status !== 303) throw new Error(`POST /decide for ${document} answered ${posted.status}`);
    decisions++;
    location = posted.headers.get('location') ?? '/';
    if (location === '/') return decisions;
  }
}

/** The plurality label of each document's proposals (question `question`); null on a tie or without proposals. */
export function majorityVote(crowd: CrowdFolder, question: string): Map<string, string | null> {
  const out = new Map<string, string | null>();
  for (const document of crowd.documents) {
    const votes = new Map<string, number>();
    for (const p of document.proposals.get(question) ?? [])
      if (p.error === null && p.labels.length === 1)
        votes.set(p.labels[0] as string, (votes.get(p.labels[0] as string) ?? 0) + 1);
    const ranked = [...votes.entries()].sort((a, b) => b[1] - a[1]);
    const [first, second] = ranked;
    out.set(document.id, first === undefined || (second !== undefined && second[1] === first[1]) ? null : first[0]);
  }
  return out;
}

/** The fallback section of a codebook whose every document goes to a stand-in closed model. */
function closedSection(baseUrl: string, model: string): Record<string, unknown> {
  return {
    model,
    base_url: baseUrl,
    api_key_env: KEY_VARIABLE,
    // Nominal prices: the stand-in costs nothing, but the budget and the cost columns work as with a real provider.
    price: { input_per_million: 2.5, output_per_million: 10 },
    budget: { usd: 100 },
    timeout_seconds: 10,
    max_retries: 2,
  };
}

/** Marks --out as the walk-through's own folder, which a later walk-through may clear. */
const OUT_MARKER = '.hybrid-walkthrough';

/**
 * Clears --out when it is missing, empty, or written by an earlier walk-through (its marker, or the crowd.yaml and
 * corpus that walk-throughs wrote before the marker); refuses anything else (a file, a folder of other files).
 */
async function clearOutDir(outDir: string): Promise<void> {
  let existing: string[];
  try {
    existing = await readdir(outDir);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new RescaleError(
      'CONFIG_INVALID',
      `--out ${outDir} is not a folder the walk-through can use (${errorMessage(cause)}); ` +
        'choose an empty or new folder',
      { cause },
    );
  }
  const earlier =
    existing.includes(OUT_MARKER) || (existing.includes('crowd.yaml') && existing.includes('tweeteval-test.parquet'));
  if (existing.length > 0 && !earlier)
    throw new RescaleError(
      'CONFIG_INVALID',
      `--out ${outDir} holds other files; choose an empty folder or one an earlier walk-through wrote`,
    );
  await rm(outDir, { recursive: true, force: true });
}

export async function runHybridWalkthrough(options: WalkthroughOptions): Promise<WalkthroughResult> {
  const say = options.say ?? (() => undefined);
  const outDir = path.resolve(options.outDir);
  const dataDir = options.dataDir ?? defaultTweetEvalDir();
  const models = options.models ?? STAND_IN_MODELS;
  const overlap = options.overlap ?? 0.2;
  const slip = options.slip ?? 0;
  const resamples = options.resamples ?? 2000;
  const { seed } = options;
  // A fresh study: the review database and the crowd folder are not meant to be resumed across runs.
  await clearOutDir(outDir);
  for (const dir of ['codebooks', 'adapters', 'runs']) await mkdir(path.join(outDir, dir), { recursive: true });
  await writeFile(path.join(outDir, OUT_MARKER), 'Written by scripts/hybrid-walkthrough.ts; a re-run clears it.\n');
  const commands: { args: readonly string[]; stdout: string; seconds: number }[] = [];
  const key = dummyApiKey();
  const run = async (...args: string[]): Promise<string> => {
    const started = performance.now();
    const stdout = await rescale(args, outDir, { [KEY_VARIABLE]: key });
    commands.push({ args, stdout, seconds: (performance.now() - started) / 1000 });
    return stdout;
  };

  // 1. The corpus: TweetEval sentiment's test split as one Parquet file (id = line number, text, gold).
  const test = await readTweetEvalSplit(dataDir, 'sentiment', 'test');
  const corpus = await tweetEvalParquet(dataDir, 'sentiment', 'test', path.join(outDir, 'tweeteval-test.parquet'));
  const goldById = new Map(test.labels.map((label, i) => [String(i), label]));
  const goldByText = new Map<string, string>();
  test.texts.forEach((text, i) => {
    if (!goldByText.has(text)) goldByText.set(text, test.labels[i] as string);
  });
  say(`corpus: ${test.texts.length} TweetEval sentiment test tweets in ${corpus}`);

  // 2. The AI crowd: two local fixture codebooks, two stand-in closed models on a loopback server.
  const model = await ensureFixtureModel('keyword');
  const valAdapter = await ensureFixtureModel('keyword-adapter');
  const codebookFile = (name: string): string => path.join(outDir, 'codebooks', `${name}.yaml`);
  await writeFile(codebookFile('keyword'), sentimentCodebookYaml(model, null));
  await writeFile(codebookFile('keyword-val'), sentimentCodebookYaml(model, valAdapter));
  const server = await OpenAIServer.start({ apiKey: key, label: standInLabel(goldByText, models, seed) });
  let session: { url: string; child: ChildProcess } | null = null;
  try {
    await writeFile(
      path.join(outDir, 'crowd.yaml'),
      stringify({
        codebook: 'codebooks/keyword.yaml',
        gold: { label: 'gold' },
        labellers: [
          { name: 'keyword', kind: 'local', codebook: 'codebooks/keyword.yaml' },
          { name: 'keyword-val', kind: 'local', codebook: 'codebooks/keyword-val.yaml' },
          ...models.map((m) => ({
            name: m.labeller,
            kind: 'closed',
            strategy: 'direct',
            ...closedSection(server.baseUrl, m.model),
          })),
        ],
      }),
    );
    say(`crowd: ${options.sample} tweets, 2 local labellers and ${models.length} stand-in closed models`);
    await run(
      'crowd',
      '--config',
      'crowd.yaml',
      '--input',
      path.basename(corpus),
      '--sample',
      String(options.sample),
      '--seed',
      String(seed),
      '--out',
      'crowd',
      '--log-level',
      'warn',
    );
    const crowd = await readCrowdFolder(path.join(outDir, 'crowd'));
    const question = (crowd.questions[0] as { name: string }).name;
    const agreement = JSON.parse(await readFile(path.join(outDir, 'crowd', 'agreement.json'), 'utf8')) as AgreementJson;
    const labellerNames = agreement.questions[0]?.labellers ?? [];
    const labellerAccuracy = labellerNames.map((labeller): LabellerAccuracy => {
      let n = 0;
      let right = 0;
      for (const d of crowd.documents) {
        const p = d.proposals.get(question)?.find((x) => x.labeller === labeller);
        if (p === undefined || p.error !== null || p.labels.length !== 1) continue;
        n++;
        if (p.labels[0] === goldById.get(d.id)) right++;
      }
      return { labeller, n, accuracy: n === 0 ? 0 : right / n };
    });
    const sampleIds = crowd.documents.map((d) => d.id);

    // The held-out set: TweetEval test tweets outside the sample, drawn with the seed.
    const inSample = new Set(sampleIds);
    const rest = test.texts.map((_, i) => String(i)).filter((id) => !inSample.has(id));
    const heldOutIds = shuffled(rest, createSeededRandom(seed))
      .slice(0, options.heldOut)
      .sort((a, b) => Number(a) - Number(b));
    const heldOutPath = path.join(outDir, 'held-out.parquet');
    await writeParquetAtomic(heldOutPath, [
      { name: 'id', data: BigInt64Array.from(heldOutIds, (id) => BigInt(id)), type: 'INT64', nullable: false },
      { name: 'text', data: heldOutIds.map((id) => test.texts[Number(id)] as string), type: 'STRING', nullable: false },
      { name: 'gold', data: heldOutIds.map((id) => goldById.get(id) as string), type: 'STRING', nullable: false },
    ]);
    say(`held out: ${heldOutIds.length} other test tweets in ${heldOutPath}`);

    // 3. Review: two coders and an adjudicator, the overlap share to both coders, decisions through the server.
    const reviewers = [
      { name: 'ana', role: 'coder' as const },
      { name: 'ben', role: 'coder' as const },
      { name: 'cleo', role: 'adjudicator' as const },
    ];
    const tokens = new Map<string, string>();
    for (const r of reviewers) {
      const printed = await run('review', 'add-reviewer', r.name, '--role', r.role, '--db', 'review.db');
      const token = /[?&]token=([A-Za-z0-9_-]+)/.exec(printed)?.[1];
      if (token === undefined) throw new Error(`add-reviewer ${r.name} printed no login link: ${printed}`);
      tokens.set(r.name, token);
      // The token is a secret: the recorded output keeps the link's shape only.
      (commands.at(-1) as { stdout: string }).stdout = printed.replace(token, '<token>');
    }
    await run(
      'review',
      'assign',
      '--crowd',
      'crowd',
      '--db',
      'review.db',
      '--overlap',
      String(overlap),
      '--seed',
      String(seed),
    );
    const serveArgs = ['review', 'serve', '--crowd', 'crowd', '--db', 'review.db', '--port', '0'];
    session = await serveReview([...serveArgs, '--log-level', 'warn'], outDir);
    commands.push({ args: serveArgs, stdout: 'rescale review: listening on http://127.0.0.1:<port>\n', seconds: 0 });
    const intended = (reviewer: string, document: string): string => {
      const gold = goldById.get(document) as string;
      const role = reviewers.find((r) => r.name === reviewer)?.role;
      return role === 'coder' ? withErrors(gold, slip, seed, 'coder', reviewer, document) : gold;
    };
    const reviewSession: ReviewSession = {
      url: session.url,
      tokens,
      db: path.join(outDir, 'review.db'),
      crowd,
      intended,
    };
    await options.beforeStandIn?.(reviewSession);
    let httpDecisions = 0;
    // Coders first; the adjudicator's queue is the overlap documents the two coders decided differently.
    for (const r of reviewers)
      httpDecisions += await reviewOverHttp(session.url, tokens.get(r.name) as string, (d) => intended(r.name, d));
    say(`review: ${httpDecisions} decisions posted to ${session.url}`);
    await stopServer(session.child);
    session = null;

    // 4. What the review says, and the verified set.
    await run('review', 'stats', '--crowd', 'crowd', '--db', 'review.db', '--json', 'review-stats.json');
    const statsPath = path.join(outDir, 'review-stats.json');
    const stats = JSON.parse(await readFile(statsPath, 'utf8')) as ReviewStats;
    const exportOut = await run(
      'review',
      'export',
      '--crowd',
      'crowd',
      '--db',
      'review.db',
      '--out',
      'verified',
      '--codebook',
      'codebooks/keyword.yaml',
    );
    const goldFile = path.join(outDir, 'verified', 'gold.parquet');
    const trainingFile = path.join(outDir, 'verified', 'train.jsonl');
    const exportedDocs = Number(/: (\d+) reviewed documents, (\d+) adjudicated/.exec(exportOut)?.[1] ?? NaN);
    const adjudicated = Number(/: (\d+) reviewed documents, (\d+) adjudicated/.exec(exportOut)?.[2] ?? NaN);
    const trainingExamples = (await readFile(trainingFile, 'utf8')).split('\n').filter((l) => l !== '').length;

    // 5. "Fine-tune": keyword adapters from the verified set and from the crowd's majority vote.
    const verified = await readGoldLabels(goldFile, {
      idColumn: 'id',
      labelColumn: question,
      extraColumns: [{ name: 'text' }],
      role: 'verified set',
    });
    const verifiedTexts: string[] = [];
    const verifiedLabels: string[] = [];
    let verifiedCorrect = 0;
    verified.labels.forEach((label, i) => {
      if (label === null) return;
      verifiedTexts.push(String(verified.extra.get('text')?.[i]));
      verifiedLabels.push(label as string);
      if (label === goldById.get(verified.keys[i] as string)) verifiedCorrect++;
    });
    const majority = majorityVote(crowd, question);
    const majorityTexts: string[] = [];
    const majorityLabels: string[] = [];
    let correct = 0;
    for (const d of crowd.documents) {
      const label = majority.get(d.id);
      if (label === null || label === undefined) continue;
      majorityTexts.push(d.text);
      majorityLabels.push(label);
      if (label === goldById.get(d.id)) correct++;
    }
    const trainer = await openKeywordAdapterTrainer(model, await loadCodebook(codebookFile('keyword')), silentLogger);
    const verifiedAdapter = path.join(outDir, 'adapters', 'verified.gguf');
    const majorityAdapter = path.join(outDir, 'adapters', 'majority.gguf');
    let verifiedKeywords: number;
    let majorityKeywords: number;
    try {
      verifiedKeywords = (await trainer.train(verifiedTexts, verifiedLabels, verifiedAdapter)).count;
      majorityKeywords = (await trainer.train(majorityTexts, majorityLabels, majorityAdapter)).count;
    } finally {
      await trainer.close();
    }
    await writeFile(codebookFile('verified'), sentimentCodebookYaml(model, verifiedAdapter));
    await writeFile(codebookFile('majority'), sentimentCodebookYaml(model, majorityAdapter));
    say(
      `adapters: ${verifiedKeywords} keywords from ${verifiedTexts.length} verified tweets, ${majorityKeywords} from ` +
        `${majorityTexts.length} majority-vote labels (${crowd.documents.length - majorityTexts.length} ties)`,
    );

    // 6. Run at scale (here: the held-out set) with each codebook; the closed models through the fallback, every
    // document routed to them.
    for (const m of models) {
      const yaml = `${sentimentCodebookYaml(model, null)}${stringify({
        fallback: { enabled: true, ...closedSection(server.baseUrl, m.model), routing: { confidence_below: 1 } },
      })}`;
      await writeFile(codebookFile(m.labeller), yaml);
    }
    const systems = [
      { name: 'keyword', codebook: 'keyword' },
      { name: 'keyword-val', codebook: 'keyword-val' },
      ...models.map((m) => ({ name: m.labeller, codebook: m.labeller })),
      { name: MAJORITY_ADAPTER, codebook: 'majority' },
      { name: VERIFIED_ADAPTER, codebook: 'verified' },
    ]
      .filter((s) => options.systems === undefined || options.systems.includes(s.name))
      .map((s) => ({ ...s, results: path.join('runs', `${s.codebook}.parquet`) }));
    for (const s of systems) {
      await run(
        'run',
        '--codebook',
        path.join('codebooks', `${s.codebook}.yaml`),
        '--input',
        'held-out.parquet',
        '--output',
        s.results,
        '--no-progress',
        '--log-level',
        'warn',
      );
    }
    say(`scored the held-out set with ${systems.length} codebooks`);

    // 7. Evaluate against the TweetEval gold, with the review's measures (the study folder holds review.db and crowd/).
    await run(
      'evaluate',
      '--review',
      '.',
      '--gold',
      'held-out.parquet',
      '--label-column',
      'gold',
      ...systems.flatMap((s) => ['--predictions', s.results]),
      '--names',
      systems.map((s) => s.name).join(','),
      '--seed',
      String(seed),
      '--resamples',
      String(resamples),
      '--json',
      'evaluation.json',
    );
    const evaluationPath = path.join(outDir, 'evaluation.json');
    const evaluation = JSON.parse(await readFile(evaluationPath, 'utf8')) as EvaluationResult;
    // What review adds: the two adapters compared on the same tweets (a paired bootstrap of the difference).
    let reviewGain: EvaluationResult | null = null;
    const compared = [MAJORITY_ADAPTER, VERIFIED_ADAPTER].map((name) => systems.find((s) => s.name === name));
    if (compared.every((s) => s !== undefined)) {
      await run(
        'evaluate',
        '--gold',
        'held-out.parquet',
        '--label-column',
        'gold',
        ...compared.flatMap((s) => ['--predictions', s.results]),
        '--names',
        compared.map((s) => s.name).join(','),
        '--seed',
        String(seed),
        '--resamples',
        String(resamples),
        '--json',
        'review-gain.json',
      );
      reviewGain = JSON.parse(await readFile(path.join(outDir, 'review-gain.json'), 'utf8')) as EvaluationResult;
    }
    // The report of the verified adapter's run: evaluation, confidence, and a "Human review" section.
    const verifiedRun = systems.find((s) => s.name === VERIFIED_ADAPTER);
    let reportPath: string | null = null;
    if (verifiedRun !== undefined) {
      await run(
        'report',
        verifiedRun.results,
        '--gold',
        'held-out.parquet',
        '--label-column',
        'gold',
        '--review',
        '.',
        '--seed',
        String(seed),
        '--resamples',
        String(resamples),
        '--out',
        'report.html',
      );
      reportPath = path.join(outDir, 'report.html');
    }
    return {
      outDir,
      commands,
      sampleIds,
      heldOutIds,
      agreement,
      labellerAccuracy,
      review: { reviewers, httpDecisions, stats, statsPath },
      exported: { gold: goldFile, training: trainingFile, documents: exportedDocs, adjudicated, trainingExamples },
      adapters: {
        verified: {
          file: verifiedAdapter,
          examples: verifiedTexts.length,
          keywords: verifiedKeywords,
          correct: verifiedCorrect,
        },
        majority: {
          file: majorityAdapter,
          examples: majorityTexts.length,
          keywords: majorityKeywords,
          ties: crowd.documents.length - majorityTexts.length,
          correct,
        },
      },
      systems: systems.map((s) => ({ name: s.name, results: path.join(outDir, s.results) })),
      evaluation,
      evaluationPath,
      reviewGain,
      reportPath,
      heldOutPath,
    };
  } finally {
    if (session !== null) await stopServer(session.child);
    await server.close();
  }
}

const three = (x: number | null | undefined): string => fixed(x ?? null);

/** The walk-through's figures as Markdown tables (what docs/hybrid-workflow.md shows). */
export function formatWalkthrough(result: WalkthroughResult): string {
  const a = result.agreement.questions[0];
  const out: string[] = [];
  if (a !== undefined) {
    out.push(
      `Crowd: ${a.documents} tweets, ${a.labellers.length} labellers; Fleiss' kappa ${three(a.fleiss_kappa)} ` +
        `(${a.complete_documents} tweets every labeller labelled), Krippendorff's alpha ` +
        `(${a.krippendorff_alpha.level}) ${three(a.krippendorff_alpha.value)}; the labellers disagree on ` +
        `${a.disagreements} tweets.`,
      '',
      formatMarkdownTable(
        ['labeller', 'accuracy vs TweetEval gold', 'n', 'errors'],
        result.labellerAccuracy.map((l) => [
          l.labeller,
          three(l.accuracy),
          String(l.n),
          String(a.errors[l.labeller] ?? 0),
        ]),
        ['left', 'right', 'right', 'right'],
      ),
      '',
      formatMarkdownTable(
        ['pair', "Cohen's kappa", 'n'],
        a.pairwise_cohen_kappa.map((p) => [`${p.a} × ${p.b}`, three(p.kappa), String(p.documents)]),
        ['left', 'right', 'right'],
      ),
    );
  }
  const { stats } = result.review;
  out.push(
    '',
    formatMarkdownTable(
      ['reviewer', 'decisions', 'median s', 'p90 s'],
      stats.time.reviewers.map((t) => [
        t.reviewer,
        String(t.decisions),
        fixed(t.medianSeconds, 2),
        fixed(t.p90Seconds, 2),
      ]),
      ['left', 'right', 'right', 'right'],
    ),
    '',
    formatMarkdownTable(
      ['labeller', 'accepted', 'reviewed', 'acceptance rate'],
      stats.acceptance.map((l) => [l.labeller, String(l.accepted), String(l.reviewed), three(l.rate)]),
      ['left', 'right', 'right', 'right'],
    ),
    '',
    ...stats.reliability.map(
      (r) =>
        `Inter-coder reliability on the overlap (${r.n} tweets): agreement ${three(r.agreement)}, Krippendorff's ` +
        `alpha ${three(r.alpha)}.`,
    ),
    '',
    `Export: ${result.exported.documents} reviewed tweets (${result.exported.adjudicated} adjudicated), ` +
      `${result.exported.trainingExamples} training examples. Adapters: ` +
      `${result.adapters.verified.keywords} keywords from ${result.adapters.verified.examples} verified tweets ` +
      `(${result.adapters.verified.correct} labels equal to the TweetEval gold); ` +
      `${result.adapters.majority.keywords} from ` +
      `${result.adapters.majority.examples} majority-vote labels, ${result.adapters.majority.correct} of which equal ` +
      `the TweetEval gold (${result.adapters.majority.ties} ties left out).`,
    '',
    formatMarkdownTable(
      ['system', 'accuracy', 'macro-F1', "Cohen's kappa"],
      result.evaluation.systems.map((s) => [
        s.name,
        `${three(s.accuracy.estimate)} [${three(s.accuracy.lower)}, ${three(s.accuracy.upper)}]`,
        `${three(s.macroF1.estimate)} [${three(s.macroF1.lower)}, ${three(s.macroF1.upper)}]`,
        `${three(s.cohenKappa.estimate)} [${three(s.cohenKappa.lower)}, ${three(s.cohenKappa.upper)}]`,
      ]),
      ['left', 'right', 'right', 'right'],
    ),
  );
  const gain = result.reviewGain?.differences[0];
  if (gain !== undefined) {
    const signed = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(3)}`;
    const interval = (ci: { estimate: number; lower: number; upper: number }): string =>
      `${signed(ci.estimate)} [${signed(ci.lower)}, ${signed(ci.upper)}]`;
    out.push(
      '',
      `${gain.system} − ${gain.baseline} (paired bootstrap): accuracy ${interval(gain.accuracy)}, macro-F1 ` +
        `${interval(gain.macroF1)}.`,
    );
  }
  return `${out.join('\n')}\n`;
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      sample: { type: 'string' },
      'held-out': { type: 'string' },
      seed: { type: 'string' },
      overlap: { type: 'string' },
      slip: { type: 'string' },
      out: { type: 'string' },
      resamples: { type: 'string' },
      'data-dir': { type: 'string' },
    },
    strict: true,
  });
  const num = (name: string, value: string | undefined, fallback: number): number => {
    if (value === undefined) return fallback;
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0)
      throw new RescaleError('CONFIG_INVALID', `--${name} must be a number ≥ 0, got "${value}"`);
    return n;
  };
  const say = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  const started = Date.now();
  const result = await runHybridWalkthrough({
    outDir: values.out ?? path.join(PACKAGE_ROOT, 'out', 'hybrid-walkthrough'),
    sample: num('sample', values.sample, 1000),
    heldOut: num('held-out', values['held-out'], 2000),
    seed: num('seed', values.seed, 7),
    overlap: num('overlap', values.overlap, 0.2),
    slip: num('slip', values.slip, 0.05),
    resamples: num('resamples', values.resamples, 2000),
    ...(values['data-dir'] !== undefined ? { dataDir: values['data-dir'] } : {}),
    say,
  });
  const log = result.commands
    .map((c) => `$ rescale ${c.args.join(' ')}    # ${c.seconds.toFixed(1)} s\n${c.stdout}`)
    .join('\n');
  await writeFile(path.join(result.outDir, 'commands.txt'), log);
  const summary = formatWalkthrough(result);
  await writeFile(path.join(result.outDir, 'walkthrough.md'), summary);
  say('');
  say(summary);
  say(
    `${((Date.now() - started) / 1000).toFixed(0)} s; wrote ${path.join(result.outDir, 'commands.txt')} ` +
      `(every command and its output) and walkthrough.md`,
  );
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`hybrid-walkthrough: ${errorMessage(error)}\n`);
    process.exit(1);
  });
}
