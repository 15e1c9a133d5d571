// `rescale review`: people verify the crowd's proposals in a small web app. serve, add-reviewer, assign and export
// share one database file (--db) and one crowd folder (--crowd).

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadCodebook } from '../contracts/codebook.js';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import { JsonLogger, type LogLevel } from '../contracts/logger.js';
import { readCrowdFolder } from '../study/review/crowd-folder.js';
import { writeBytesAtomic } from '../storage/atomic-file.js';
import { exportReview } from '../study/review/review-export.js';
import { createReviewServer } from '../study/review/review-server.js';
import { ReviewState } from '../study/review/review-state.js';
import { formatReviewStats, reviewStats } from '../study/review/review-stats.js';
import { ReviewStore, type Role } from '../study/review/review-store.js';
import { assertSeed } from '../study/evaluation/seeded-random.js';

export const REVIEW_USAGE = `  rescale review serve --crowd DIR --db FILE [--host 127.0.0.1] [--port 8377]
      The review web app: reviewers log in with their link, accept or reject the crowd's proposals or pick another
      label (keys: a accept, r reject, 1-9 pick, n next, u undo). Every decision is kept (append-only) in --db.
  rescale review add-reviewer NAME --role coder|adjudicator --db FILE [--host H --port N]
      Prints the reviewer's login link; its token is shown this once (only a hash is stored).
  rescale review assign --crowd DIR --db FILE --overlap 0.2 --seed S
      Every document to one coder and the --overlap share to two (seeded, deterministic); the documents two coders
      decide differently go to the adjudicators.
  rescale review export --crowd DIR --db FILE --out DIR [--codebook C] [--sizes 50,100,200 --seed S]
      gold.parquet (id, text, verified labels per question, reviewers, adjudicated) and train.jsonl, the lines
      "rescale sample" writes for the same documents: with --codebook (the one the crowd used) its chat messages or
      raw prompt + completion, every question (multi-label ones per label or as a list); without, the default chat
      prompt per single-label question. --sizes: also train-050.jsonl, train-100.jsonl, ... for a learning curve,
      nested (each holds the smaller ones) and stratified as "rescale sample" stratifies, fixed by --seed.
      export.json lists every file with its sha256.
  rescale review stats --crowd DIR --db FILE [--json OUT]
      Acceptance rate per labeller and label, each labeller's accuracy and Cohen's kappa against the verified labels,
      Krippendorff's alpha of the two coders on the overlap documents, and seconds per decision (median, p90).
`;

const DEFAULT_PORT = 8377;

const options = {
  crowd: { type: 'string' },
  db: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  role: { type: 'string' },
  overlap: { type: 'string' },
  seed: { type: 'string' },
  out: { type: 'string' },
  codebook: { type: 'string' },
  sizes: { type: 'string' },
  json: { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} satisfies ParseArgsConfig['options'];

function required(name: string, value: string | undefined): string {
  if (value === undefined || value === '')
    throw new RescaleError('CONFIG_INVALID', `--${name} is required; see "rescale review --help"`);
  return value;
}

function port(value: string | undefined): number {
  if (value === undefined) return DEFAULT_PORT;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new RescaleError('CONFIG_INVALID', `--port must be a whole number from 0 to 65535, got "${value}"`);
  return n;
}

function number(name: string, value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n))
    throw new RescaleError('CONFIG_INVALID', `--${name} must be a number, got "${value}"`);
  return n;
}

function sizesOf(value: string): number[] {
  return value.split(',').map((item) => {
    const n = Number(item.trim());
    if (item.trim() === '' || !Number.isInteger(n) || n < 1)
      throw new RescaleError(
        'CONFIG_INVALID',
        `--sizes must be a comma-separated list of positive whole numbers, e.g. 50,100,200; got "${value}"`,
      );
    return n;
  });
}

function hostInUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export async function runReviewCommand(argv: readonly string[], signal: AbortSignal): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new RescaleError('CONFIG_INVALID', `${errorMessage(error)}; see "rescale review --help"`);
  }
  const { values, positionals } = parsed;
  const action = positionals[0];
  if (values.help || action === undefined) {
    process.stdout.write(`Usage:\n${REVIEW_USAGE}`);
    return values.help ? 0 : 2;
  }
  const level = (values['log-level'] ?? 'info') as LogLevel;
  if (!['debug', 'info', 'warn', 'error'].includes(level))
    throw new RescaleError('CONFIG_INVALID', `--log-level must be debug, info, warn or error, got "${level}"`);
  const host = values.host ?? '127.0.0.1';

  switch (action) {
    case 'add-reviewer': {
      const name = required('NAME (the reviewer name after add-reviewer)', positionals[1]);
      const role = values.role;
      if (role !== 'coder' && role !== 'adjudicator')
        throw new RescaleError('CONFIG_INVALID', `--role must be coder or adjudicator, got "${role ?? ''}"`);
      const store = ReviewStore.open(required('db', values.db));
      try {
        const { token } = store.addReviewer(name, role as Role);
        process.stdout.write(
          `${name} (${role}) can log in with this link; it is shown only now, keep it private:\n` +
            `http://${hostInUrl(host)}:${port(values.port)}/login?token=${token}\n`,
        );
      } finally {
        store.close();
      }
      return 0;
    }
    case 'assign': {
      const crowd = await readCrowdFolder(required('crowd', values.crowd));
      const overlap = number('overlap', required('overlap', values.overlap));
      const seed = number('seed', required('seed', values.seed));
      const store = ReviewStore.open(required('db', values.db));
      try {
        const summary = store.assign(
          crowd.documents.map((d) => d.id),
          overlap,
          seed,
        );
        const coders = store.reviewers().filter((r) => r.role === 'coder');
        process.stdout.write(
          `assigned ${summary.documents} documents to ${coders.length} coders; ` +
            `${summary.overlapping} go to two coders\n`,
        );
        for (const c of coders) process.stdout.write(`  ${c.name}: ${store.assignments(c.id).length}\n`);
      } finally {
        store.close();
      }
      return 0;
    }
    case 'export': {
      const sizes = values.sizes === undefined ? undefined : sizesOf(values.sizes);
      const seed = values.seed === undefined ? undefined : number('seed', values.seed);
      if (seed !== undefined) assertSeed(seed, '--seed');
      if (seed !== undefined && sizes === undefined)
        throw new RescaleError(
          'CONFIG_INVALID',
          '--seed applies to the --sizes subsets; give --sizes or leave --seed out',
        );
      const crowd = await readCrowdFolder(required('crowd', values.crowd));
      const codebook = values.codebook === undefined ? undefined : await loadCodebook(values.codebook);
      const out = required('out', values.out);
      const store = ReviewStore.open(required('db', values.db), '--db', { mustExist: true });
      try {
        const summary = await exportReview(crowd, new ReviewState(store, crowd).gold(), out, {
          ...(codebook !== undefined ? { codebook } : {}),
          ...(sizes !== undefined ? { sizes } : {}),
          ...(seed !== undefined ? { seed } : {}),
          db: store.file,
        });
        process.stdout.write(
          `wrote ${summary.gold}: ${summary.documents} reviewed documents, ${summary.adjudicated} adjudicated\n`,
        );
        for (const t of summary.training)
          process.stdout.write(
            t.examples === t.documents
              ? `wrote ${t.file}: ${t.examples} examples (${t.question})\n`
              : `wrote ${t.file}: ${t.examples} examples from ${t.documents} documents (stratified by ${t.question})\n`,
          );
        for (const name of summary.unrendered)
          process.stdout.write(
            `note: ${name} is multi-label; its verified sets are in gold.parquet, and --codebook (the codebook the ` +
              'crowd used) renders its training examples\n',
          );
        for (const s of summary.subsets) {
          const examples =
            s.examples === s.size ? `${s.size} examples` : `${s.examples} examples from ${s.size} documents`;
          process.stdout.write(
            `wrote ${s.file}: ${examples} (${s.question}: ` +
              `${s.counts.map((c) => `${c.label} ${c.count}`).join(', ')})\n`,
          );
        }
        process.stdout.write(`wrote ${summary.manifest}\n`);
      } finally {
        store.close();
      }
      return 0;
    }
    case 'stats': {
      const crowd = await readCrowdFolder(required('crowd', values.crowd));
      const store = ReviewStore.open(required('db', values.db), '--db', { mustExist: true });
      try {
        const stats = reviewStats(crowd, store);
        if (values.json !== undefined) {
          try {
            await writeBytesAtomic(values.json, `${JSON.stringify(stats, null, 2)}\n`);
          } catch (cause) {
            throw new RescaleError(
              'OUTPUT_NOT_WRITABLE',
              `--json ${values.json}: cannot write it (${errorMessage(cause)}); choose a file you can write`,
              { cause },
            );
          }
        }
        process.stdout.write(formatReviewStats(stats));
      } finally {
        store.close();
      }
      return 0;
    }
    case 'serve': {
      const crowd = await readCrowdFolder(required('crowd', values.crowd));
      const store = ReviewStore.open(required('db', values.db));
      const missing = store.allAssignments().find((a) => !crowd.byId.has(a.document));
      if (missing !== undefined) {
        store.close();
        throw new RescaleError(
          'INPUT_INVALID',
          `--db ${store.file} assigns document "${missing.document}", which --crowd ${crowd.dir} does not hold; pass ` +
            'the crowd folder the assignment was made from',
        );
      }
      const app = createReviewServer({ store, crowd, logger: new JsonLogger(level, { service: 'review' }) });
      try {
        const address = await app.listen({ host, port: port(values.port) });
        process.stdout.write(`rescale review: listening on ${address}\n`);
        await new Promise<void>((resolve) => {
          if (signal.aborted) resolve();
          signal.addEventListener('abort', () => resolve(), { once: true });
        });
      } finally {
        await app.close();
        store.close();
      }
      return 0;
    }
    default:
      throw new RescaleError(
        'CONFIG_INVALID',
        `unknown review action "${action}"; use serve, add-reviewer, assign, export or stats ` +
          '(see "rescale review --help")',
      );
  }
}
