#!/usr/bin/env node
// `rescale`: the command line. Parses options, wires coordinator and worker together for local mode, and maps
// every error to a message and an exit code a user can act on.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readEnvironment } from '../contracts/environment.js';
import { ERROR_CODES, RescaleError, errorMessage } from '../contracts/errors.js';
import { JsonLogger, type LogLevel, type Logger } from '../contracts/logger.js';
import { isClusterCommand } from './cluster-verbs.js';
import { duplicatesLine } from './duplicates-line.js';
import { createProgress, silentProgress } from './progress.js';
import { RESCALE_VERSION } from './version.js';
import { analysisOptions, ANALYSIS_USAGE, runAnalysisCommand } from './analysis-commands.js';
import { CROWD_USAGE } from './crowd-usage.js';

const USAGE = `rescale ${RESCALE_VERSION} — classify documents with small fine-tuned LLMs, reproducibly

Usage:
  rescale run --codebook C --input P [--input P2 ...] --output O [options]
      Plan the corpus into shards, score every document, merge into one Parquet file plus O.manifest.json.
      Re-running the same command resumes: finished shards are kept in O.parts/ and skipped.
        --limit N          score only the first N rows (a trial run)
        --overwrite        discard earlier results for O and start over
        --shard-rows N     rows per shard (default 2000)
        --sequences N      KV sequences per context (default: codebook, else 1)
        --threads N        CPU threads (default: codebook, else all cores)
        --no-fallback      never call the codebook's closed-model fallback (local labels only)
        --fallback-offline replay fallback answers from the cache only: no key, no network (docs/hybrid.md)
        --endpoints FILE   an endpoint list, for a codebook whose fallback names one with "endpoint:"
        --no-dedupe        score every copy of an identical text (default: scored once per shard, results copied)
  rescale inspect --input P [--codebook C]
      Rows, columns and row groups of a corpus, a sample, and with a codebook the prompt of the first document.
  rescale merge --codebook C --input P --output O [--endpoints FILE]
      Merge finished shard results of a run into O (fails naming any missing shard); give the run's
      --shard-rows, --sequences, --no-fallback, --no-dedupe and --endpoints.
  rescale batch submit --codebook C --input P --output O [--limit N] [--shard-rows N] [--endpoints FILE]
  rescale batch collect --codebook C --output O [--wait] [--poll-seconds N] [--endpoints FILE]
      The fallback through the OpenAI Batch API (half price, 24 h window): submit scores locally and uploads the
      requests for routed documents not yet cached; collect stores the answers in the cache and reports failed or
      missing items (sent live by the next "rescale run", which then pays nothing for the batch's answers).
  rescale demo [--output O] [--limit N]
      Classify TweetEval sentiment tweets with the fixture keyword model and adapter; print accuracy.

${ANALYSIS_USAGE}${CROWD_USAGE}
Human review of a crowd folder ("rescale review --help" for options):
  rescale review serve --crowd DIR --db FILE | add-reviewer NAME --role coder|adjudicator --db FILE
  rescale review assign --crowd DIR --db FILE --overlap 0.2 --seed S
  rescale review export --crowd DIR --db FILE --out DIR [--sizes 50,100,200 --seed S]
  rescale review stats --crowd DIR --db FILE [--json OUT]   (also: evaluate/report --review STUDY, above)

Cluster mode (docs/cluster.md; "rescale worker --help" for options):
  rescale coordinator --redis URL --listen HOST:PORT [--token-file F] [--endpoints FILE]
  rescale worker --redis URL
  rescale submit --codebook C --input P --output O [--coordinator HOST:PORT] [--token-file F] [--watch]
  rescale status [RUN] | watch RUN | cancel RUN | retry RUN | workers

Common options:
  --log-level debug|info|warn|error   (default info; logs are JSON lines on stderr, never document text)
  --no-progress                       no progress bar / progress lines
  -h, --help, --version
`;

const options = {
  codebook: { type: 'string' },
  input: { type: 'string', multiple: true },
  output: { type: 'string' },
  limit: { type: 'string' },
  overwrite: { type: 'boolean' },
  'shard-rows': { type: 'string' },
  sequences: { type: 'string' },
  threads: { type: 'string' },
  'log-level': { type: 'string' },
  'no-progress': { type: 'boolean' },
  'no-fallback': { type: 'boolean' },
  'fallback-offline': { type: 'boolean' },
  endpoints: { type: 'string' },
  'no-dedupe': { type: 'boolean' },
  wait: { type: 'boolean' },
  'poll-seconds': { type: 'string' },
  config: { type: 'string' },
  sample: { type: 'string' },
  offline: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
  ...analysisOptions,
} satisfies ParseArgsConfig['options'];

function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new RescaleError('CONFIG_INVALID', `--${name} must be a positive whole number, got "${value}"`);
  return n;
}

function required(name: string, value: string | undefined): string {
  if (value === undefined || value === '')
    throw new RescaleError('CONFIG_INVALID', `--${name} is required; see "rescale --help"`);
  return value;
}

async function main(argv: string[]): Promise<number> {
  // Read once, here; commands receive the frozen result (the fallback's key variable is looked up in it).
  const environment = readEnvironment();
  const verb = argv[0];
  if (verb === 'review') {
    const { runReviewCommand } = await import('./review.js');
    const stop = new AbortController();
    process.once('SIGINT', () => stop.abort());
    process.once('SIGTERM', () => stop.abort());
    return runReviewCommand(argv.slice(1), stop.signal);
  }
  if (isClusterCommand(verb)) {
    const { runClusterCommand } = await import('./cluster-commands.js');
    return runClusterCommand(verb, argv.slice(1), environment);
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new RescaleError('CONFIG_INVALID', `${errorMessage(error)}; see "rescale --help"`);
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`${RESCALE_VERSION}\n`);
    return 0;
  }
  const command = positionals[0];
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  const level = (values['log-level'] ?? 'info') as LogLevel;
  if (!['debug', 'info', 'warn', 'error'].includes(level))
    throw new RescaleError('CONFIG_INVALID', `--log-level must be debug, info, warn or error, got "${level}"`);
  const logger: Logger = new JsonLogger(level);

  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    process.stderr.write(
      `\n${signal}: stopping after the current documents; finished shards are kept — run the same command again to ` +
        `resume (press Ctrl-C again to quit at once)\n`,
    );
    controller.abort(new RescaleError('ABORTED', `interrupted by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  switch (command) {
    case 'run': {
      const { runLocalMode } = await import('./local-mode.js');
      const summary = await runLocalMode(
        {
          codebook: required('codebook', values.codebook),
          input: values.input ?? [required('input', undefined)],
          output: required('output', values.output),
          ...optionalNumbers(values),
          overwrite: values.overwrite ?? false,
          noFallback: values['no-fallback'] ?? false,
          fallbackOffline: values['fallback-offline'] ?? false,
          ...(values.endpoints !== undefined ? { endpoints: values.endpoints } : {}),
          noDedupe: values['no-dedupe'] ?? false,
          env: environment.variables,
          logger,
          progress: values['no-progress'] ? silentProgress : createProgress(),
          signal: controller.signal,
        },
        environment.llamaBuild,
      );
      const { fallback } = summary;
      const fallbackStats = fallback.active ? fallback.stats : null;
      const fallbackCounts =
        fallbackStats === null
          ? 'nothing to route (all shards reused)'
          : `${fallbackStats.routed} routed, ${fallbackStats.answered} answered, ` +
            `${fallbackStats.cacheHits} from cache, ${fallbackStats.invalid} invalid, ` +
            `${fallbackStats.overBudget} over budget, ${fallbackStats.failed} failed; ` +
            `$${fallbackStats.costUsd.toFixed(4)} this run, ` +
            `$${fallbackStats.budgetCommittedUsd.toFixed(4)} of the budget committed`;
      const fallbackLine = !fallback.active
        ? `fallback: off (${fallback.reason})\n`
        : `fallback (${fallback.mode}): ${fallbackCounts}; audit ${fallback.auditFile}\n`;
      process.stdout.write(
        `wrote ${summary.output} (${summary.rows} rows, ${summary.shards} shards, ${summary.shardsSkipped} reused) ` +
          `and ${summary.manifest}\n` +
          `scored ${summary.documentsScored} documents in ${summary.seconds.toFixed(1)} s ` +
          `(${summary.documentsPerSecond.toFixed(1)} docs/s)\n` +
          `statuses: ${Object.entries(summary.merge.statusCounts)
            .filter(([, n]) => n > 0)
            .map(([s, n]) => `${s} ${n}`)
            .join(', ')}\n` +
          `${duplicatesLine(summary.merge.duplicates)}\n` +
          fallbackLine,
      );
      return 0;
    }
    case 'inspect': {
      const { inspect } = await import('./inspect.js');
      await inspect({
        input: values.input ?? [required('input', undefined)],
        ...(values.codebook ? { codebook: values.codebook } : {}),
        logger,
      });
      return 0;
    }
    case 'merge': {
      const { mergeLocalMode } = await import('./local-mode.js');
      const summary = await mergeLocalMode(
        {
          codebook: required('codebook', values.codebook),
          input: values.input ?? [required('input', undefined)],
          output: required('output', values.output),
          ...optionalNumbers(values),
          noFallback: values['no-fallback'] ?? false,
          fallbackOffline: values['fallback-offline'] ?? false,
          ...(values.endpoints !== undefined ? { endpoints: values.endpoints } : {}),
          noDedupe: values['no-dedupe'] ?? false,
          env: environment.variables,
          logger,
        },
        environment.llamaBuild,
      );
      process.stdout.write(
        `wrote ${summary.output} (${summary.rows} rows from ${summary.shards} shards) and ${summary.manifestPath}\n`,
      );
      return 0;
    }
    case 'demo': {
      const { runDemo } = await import('./demo.js');
      await runDemo({
        ...(values.output ? { output: values.output } : {}),
        ...optionalNumbers(values),
        llamaBuild: environment.llamaBuild,
        logger,
        progress: values['no-progress'] ? silentProgress : createProgress(),
        signal: controller.signal,
      });
      return 0;
    }
    case 'batch': {
      const action = positionals[1];
      const { submitFallbackBatch, collectFallbackBatches } = await import('./fallback-batch.js');
      if (action === 'submit') {
        const summary = await submitFallbackBatch({
          codebook: required('codebook', values.codebook),
          input: values.input ?? [required('input', undefined)],
          output: required('output', values.output),
          ...optionalNumbers(values),
          env: environment.variables,
          endpoints: values.endpoints,
          llamaBuild: environment.llamaBuild,
          logger,
          signal: controller.signal,
        });
        process.stdout.write(
          `${summary.routed} documents routed: ${summary.cached} already answered in the cache, ` +
            `${summary.submitted} requests submitted` +
            (summary.leftOut > 0
              ? `, ${summary.leftOut} left out (the budget cannot cover their worst case; the run decides them)`
              : '') +
            (summary.batch !== null
              ? `\nbatch ${summary.batch.batchId} (worst case $${summary.reservedUsd.toFixed(4)} reserved); ` +
                `collect it with "rescale batch collect --codebook … --output …"\n`
              : '\nnothing to submit\n'),
        );
        return 0;
      }
      if (action === 'collect') {
        const poll = positiveInt('poll-seconds', values['poll-seconds']);
        const summary = await collectFallbackBatches({
          codebook: required('codebook', values.codebook),
          output: required('output', values.output),
          wait: values.wait ?? false,
          ...(poll !== undefined ? { pollMs: poll * 1000 } : {}),
          env: environment.variables,
          endpoints: values.endpoints,
          logger,
          signal: controller.signal,
        });
        const reasons = Object.entries(summary.reasons)
          .map(([reason, n]) => `  ${n} × ${reason}`)
          .join('\n');
        process.stdout.write(
          `${summary.answered} answers stored in the cache, ${summary.failed} failed, ${summary.missing} missing` +
            (summary.pending > 0
              ? `; ${summary.pending} batch${summary.pending === 1 ? '' : 'es'} still running (collect again ` +
                `later, or add --wait)`
              : '') +
            '\n' +
            (reasons !== '' ? `${reasons}\n` : '') +
            (summary.failed + summary.missing > 0
              ? 'failed and missing items are not cached: "rescale run" sends them live, or "rescale batch submit" ' +
                'puts them in a new batch\n'
              : ''),
        );
        return summary.pending > 0 ? 75 : 0;
      }
      throw new RescaleError(
        'CONFIG_INVALID',
        `"rescale batch" needs "submit" or "collect", got "${action ?? ''}"; see "rescale --help"`,
      );
    }
    case 'crowd': {
      const { crowdCommand, formatCrowd } = await import('./crowd.js');
      const inputs = values.input ?? [required('input', undefined)];
      if (inputs.length > 1)
        throw new RescaleError('CONFIG_INVALID', '"rescale crowd" reads one --input file (a corpus or a sample)');
      const seed = values.seed === undefined ? undefined : Number(values.seed);
      if (seed !== undefined && (!Number.isSafeInteger(seed) || seed < 0))
        throw new RescaleError('CONFIG_INVALID', `--seed must be a whole number ≥ 0, got "${values.seed ?? ''}"`);
      const summary = await crowdCommand({
        config: required('config', values.config),
        input: inputs[0] as string,
        out: required('out', values.out),
        sample: positiveInt('sample', values.sample),
        seed,
        endpoints: values.endpoints,
        offline: values.offline ?? false,
        env: environment.variables,
        build: environment.llamaBuild,
        logger,
        signal: controller.signal,
      });
      process.stdout.write(formatCrowd(summary));
      return 0;
    }
    case 'evaluate':
    case 'calibrate':
    case 'sample':
    case 'report':
      return runAnalysisCommand(command, values, positionals);
    default:
      throw new RescaleError('CONFIG_INVALID', `unknown command "${command}"; see "rescale --help"`);
  }
}

function optionalNumbers(values: { limit?: string; 'shard-rows'?: string; sequences?: string; threads?: string }): {
  limit?: number;
  shardRows?: number;
  sequences?: number;
  threads?: number;
} {
  const out: { limit?: number; shardRows?: number; sequences?: number; threads?: number } = {};
  const limit = positiveInt('limit', values.limit);
  const shardRows = positiveInt('shard-rows', values['shard-rows']);
  const sequences = positiveInt('sequences', values.sequences);
  const threads = positiveInt('threads', values.threads);
  if (limit !== undefined) out.limit = limit;
  if (shardRows !== undefined) out.shardRows = shardRows;
  if (sequences !== undefined) out.sequences = sequences;
  if (threads !== undefined) out.threads = threads;
  return out;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof RescaleError) {
      process.stderr.write(`rescale: ${error.message}\n`);
      // Exit codes per error code live in contracts/errors.ts; besides them: 75 batch still running, 130 interrupted.
      process.exit(ERROR_CODES[error.code].exitCode);
    }
    if (error instanceof Error && error.name === 'AbortError') {
      process.stderr.write('rescale: stopped; run the same command again to resume\n');
      process.exit(130);
    }
    process.stderr.write(
      `rescale: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
