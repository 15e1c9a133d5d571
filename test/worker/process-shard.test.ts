// The shard path on the keyword fixture model and DuckDB-written Parquet: identical prompt inputs within a shard are
// scored once (across read batches too) and their results copied bit for bit, with `duplicate_of` naming the first
// occurrence; a routed copy asks the fallback once; `dedupe: false` scores every copy.

import assert from 'node:assert/strict';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { parseCodebook, type Codebook } from '../../contracts/codebook.js';
import type { FallbackConfigInput } from '../../contracts/fallback-config.js';
import type { ResultRow } from '../../contracts/results.js';
import type { ShardPlan } from '../../contracts/shard.js';
import { readCorpusFile } from '../../coordinator/corpus.js';
import { planShards } from '../../coordinator/shard-planner.js';
import { promptInputColumns } from '../../coordinator/run-plan.js';
import { FallbackStage } from '../../fallback/fallback-stage.js';
import { readShardResult, resultRowsOf } from '../../storage/shard-result-file.js';
import { LabelScorer } from '../../worker/engine/label-scorer.js';
import { processShard, type ShardFallback, type ShardOutcome } from '../../worker/process-shard.js';
import { fixtureModel } from '../../scripts/harness/fixture-models.js';
import { sqlString, withTempDir, writeParquetWithDuckDB } from '../../scripts/harness/parquet.js';
import { capturingLogger, fallbackSection } from '../helpers/fallback.js';
import { OpenAIServer } from '../helpers/openai-server.js';

const LABELS = ['negative', 'neutral', 'positive'];

/**
 * Two files, one shard each. With read batches of 5 rows the first shard's copies lie in the original's batch (3)
 * and in later ones (6, 8, 10, 12); 9 differs by a trailing space; blank and null texts are never copies. The second
 * shard repeats a first-shard text (scored again: dedupe is per shard) and copies it once.
 */
const FIRST: (string | null)[] = [
  'I love this great day',
  'what a terrible awful thing',
  'the meeting is scheduled at noon',
  'I love this great day',
  '',
  'hmm maybe tomorrow',
  'what a terrible awful thing',
  '',
  'I love this great day',
  'I love this great day ',
  'hmm maybe tomorrow',
  null,
  'the meeting is scheduled at noon',
];
const SECOND: (string | null)[] = ['I love this great day', 'I love this great day'];
const EXPECTED_COPIES = new Map([
  [3, 0],
  [6, 1],
  [8, 0],
  [10, 5],
  [12, 2],
  [14, 13],
]);

let model: string;
before(async () => {
  model = await fixtureModel('keyword');
});

function codebookFor(template = 'Tweet: {text}', fallback?: FallbackConfigInput): Codebook {
  return parseCodebook(
    {
      task: 'sentiment',
      input: { text_column: 'text', id_column: 'id' },
      labels: LABELS.map((name) => ({ name })),
      prompt: { format: 'chat', system: 'Classify the sentiment of the tweet. Answer with one word.', template },
      model: { path: model, threads: 1 },
      ...(fallback === undefined ? {} : { fallback }),
    },
    { source: 'test.yaml' },
  );
}

function valuesSql(texts: readonly (string | null)[], firstId: number, party?: (i: number) => string): string {
  const rows = texts.map((text, i) => {
    const value = text === null ? 'NULL::VARCHAR' : `'${sqlString(text)}'`;
    return `(${firstId + i}::BIGINT, ${value}${party === undefined ? '' : `, '${party(i)}'`})`;
  });
  return `SELECT * FROM (VALUES ${rows.join(', ')}) t(id, text${party === undefined ? '' : ', party'})`;
}

async function planFiles(codebook: Codebook, files: readonly string[]): Promise<ShardPlan> {
  return planShards(await Promise.all(files.map((file) => readCorpusFile(file))), {
    codebookHash: 'test',
    maxRowsPerShard: 100,
    idColumn: 'id',
    textColumn: 'text',
    promptColumns: promptInputColumns(codebook),
  });
}

interface ShardRun {
  readonly outcomes: ShardOutcome[];
  readonly rows: ResultRow[];
}

async function runShards(
  plan: ShardPlan,
  codebook: Codebook,
  resultDir: string,
  options: { dedupe?: boolean; fallback?: ShardFallback } = {},
): Promise<ShardRun> {
  const scorer = await LabelScorer.create(codebook);
  try {
    const outcomes: ShardOutcome[] = [];
    const rows: ResultRow[] = [];
    for (const shard of plan.shards) {
      const outcome = await processShard(
        {
          shard,
          idColumn: plan.idColumn,
          idType: plan.idType,
          textColumn: plan.textColumn,
          resultDir,
          ...(options.dedupe !== undefined ? { dedupe: options.dedupe } : {}),
        },
        { scorer, readBatchRows: 5, ...(options.fallback ? { fallback: options.fallback } : {}) },
      );
      outcomes.push(outcome);
      rows.push(...resultRowsOf((await readShardResult(outcome.path as string)).table, LABELS));
    }
    return { outcomes, rows };
  } finally {
    await scorer.dispose();
  }
}

/** What a copy shares with its original: everything but id, row, tokens and duplicate_of. */
function scoredPart(row: ResultRow): object {
  const { id: _id, row: _row, tokens: _tokens, duplicateOf: _duplicateOf, ...rest } = row;
  return { ...rest, probabilities: row.probabilities === null ? null : [...row.probabilities] };
}

describe('processShard', () => {
  it('scores identical texts of a shard once, across read batches, and copies their results bit for bit', async () => {
    await withTempDir(async (dir) => {
      const codebook = codebookFor();
      const plan = await planFiles(codebook, [
        await writeParquetWithDuckDB(valuesSql(FIRST, 0), path.join(dir, 'a.parquet')),
        await writeParquetWithDuckDB(valuesSql(SECOND, 100), path.join(dir, 'b.parquet')),
      ]);
      assert.equal(plan.shards.length, 2);
      const deduped = await runShards(plan, codebook, path.join(dir, 'dedupe'));
      const every = await runShards(plan, codebook, path.join(dir, 'every'), { dedupe: false });

      assert.deepEqual(
        deduped.outcomes.map((o) => o.duplicates),
        [5, 1],
      );
      assert.deepEqual(
        every.outcomes.map((o) => o.duplicates),
        [0, 0],
      );
      assert.equal(deduped.rows.length, FIRST.length + SECOND.length);
      deduped.rows.forEach((row, i) => {
        const original = EXPECTED_COPIES.get(i);
        assert.equal(row.row, i);
        assert.equal(row.id, BigInt(i < FIRST.length ? i : 100 + i - FIRST.length), `row ${i}: its own id`);
        assert.equal(row.duplicateOf ?? null, original ?? null, `row ${i}: duplicate_of`);
        // Scored alone after the same prefix, every document has the same bits with and without dedupe.
        assert.deepEqual(scoredPart(row), scoredPart(every.rows[i] as ResultRow), `row ${i}: same results`);
        assert.equal(every.rows[i]?.duplicateOf ?? null, null);
        if (original === undefined) {
          assert.equal(row.tokens, every.rows[i]?.tokens, `row ${i}: scored itself`);
        } else {
          assert.equal(row.tokens, 0, `row ${i}: a copy evaluates no tokens`);
          assert.deepEqual(scoredPart(row), scoredPart(deduped.rows[original] as ResultRow));
          assert.ok((every.rows[i]?.tokens ?? 0) > 0, `row ${i}: scored when dedupe is off`);
        }
      });
      assert.equal(deduped.rows[9]?.duplicateOf ?? null, null, 'a trailing space makes another text');
      assert.deepEqual(
        [4, 7, 11].map((i) => [deduped.rows[i]?.status, deduped.rows[i]?.duplicateOf ?? null]),
        [
          ['empty_text', null],
          ['empty_text', null],
          ['empty_text', null],
        ],
      );

      const sum = (run: ShardRun): number => run.outcomes.reduce((n, o) => n + o.tokens, 0);
      const copyTokens = [...EXPECTED_COPIES.keys()].reduce((n, i) => n + (every.rows[i]?.tokens ?? 0), 0);
      assert.equal(
        sum(deduped),
        deduped.rows.reduce((n, r) => n + r.tokens, 0),
      );
      assert.equal(sum(deduped), sum(every) - copyTokens, 'only the unique documents’ tokens are evaluated');
      assert.ok(sum(deduped) < sum(every));
      assert.deepEqual(deduped.outcomes[0]?.statuses, every.outcomes[0]?.statuses, 'copies are counted by status');
    });
  });

  it('does not take a document with the same text but another value of a prompt column for a copy', async () => {
    await withTempDir(async (dir) => {
      const codebook = codebookFor('Party: {party}\nTweet: {text}');
      const texts = ['I love this great day', 'I love this great day', 'I love this great day', 'so awful'];
      const party = (i: number): string => ['left', 'right', 'left', 'left'][i] as string;
      const plan = await planFiles(codebook, [
        await writeParquetWithDuckDB(valuesSql(texts, 0, party), path.join(dir, 'c.parquet')),
      ]);
      const { outcomes, rows } = await runShards(plan, codebook, path.join(dir, 'out'));
      assert.deepEqual(
        rows.map((row) => row.duplicateOf ?? null),
        [null, null, 0, null],
      );
      assert.equal(outcomes[0]?.duplicates, 1);
      assert.ok((rows[1]?.tokens ?? 0) > 0, 'the same text under another party is scored');
    });
  });

  it('copies every question’s answer of a multi-question codebook to a copy', async () => {
    await withTempDir(async (dir) => {
      const codebook = parseCodebook(
        {
          task: 'multi',
          input: { text_column: 'text', id_column: 'id' },
          questions: [
            {
              name: 'sentiment',
              question: 'What is the sentiment of the tweet?',
              labels: LABELS.map((name) => ({ name })),
            },
            {
              name: 'polarity',
              question: 'Is it rather negative or positive?',
              labels: [{ name: 'negative' }, { name: 'positive' }],
            },
          ],
          prompt: {
            system: 'Answer with one label.',
            template: 'Tweet: {text}\n\n{question} Answer with one of: {labels}.',
          },
          model: { path: model, threads: 1 },
        },
        { source: 'test.yaml' },
      );
      const texts = ['I love this great day', 'so awful', 'I love this great day'];
      const plan = await planFiles(codebook, [
        await writeParquetWithDuckDB(valuesSql(texts, 0), path.join(dir, 'm.parquet')),
      ]);
      const scorer = await LabelScorer.create(codebook);
      let outcome: ShardOutcome;
      try {
        outcome = await processShard(
          { shard: plan.shards[0]!, idColumn: 'id', idType: plan.idType, textColumn: 'text', resultDir: dir },
          { scorer },
        );
      } finally {
        await scorer.dispose();
      }
      const questions = [
        { name: 'sentiment', labels: LABELS },
        { name: 'polarity', labels: ['negative', 'positive'] },
      ];
      const rows = resultRowsOf((await readShardResult(outcome.path as string)).table, [], questions);
      assert.equal(outcome.duplicates, 1);
      assert.equal(rows[2]?.duplicateOf, 0);
      assert.equal(rows[2]?.tokens, 0);
      assert.ok((rows[0]?.answers?.length ?? 0) === 2 && rows[0]?.answers?.[1]?.label !== null);
      const answers = (row: ResultRow | undefined): unknown =>
        row?.answers?.map((a) => ({ ...a, probabilities: a.probabilities === null ? null : [...a.probabilities] }));
      assert.deepEqual(answers(rows[2]), answers(rows[0]));
    });
  });

  it('asks the fallback once for a routed document and its copies, and gives every copy the answer', async () => {
    const server = await OpenAIServer.start({ label: () => 'positive' });
    try {
      await withTempDir(async (dir) => {
        // "hmm maybe tomorrow" has no keyword: neutral at low confidence, so it is routed; the rest are sure.
        const codebook = codebookFor('Tweet: {text}', fallbackSection(server.baseUrl));
        const fallbackConfig = codebook.fallback;
        assert.ok(fallbackConfig !== null);
        const plan = await planFiles(codebook, [
          await writeParquetWithDuckDB(valuesSql(FIRST, 0), path.join(dir, 'a.parquet')),
        ]);
        const { logger } = capturingLogger();
        const stage = await FallbackStage.open({
          codebook,
          config: fallbackConfig,
          mode: 'live',
          apiKey: server.apiKey,
          cacheDir: path.join(dir, 'cache'),
          auditFile: path.join(dir, 'audit.jsonl'),
          logger,
        });
        const before = server.requests.length;
        let run: ShardRun;
        try {
          run = await runShards(plan, codebook, path.join(dir, 'out'), { fallback: stage });
        } finally {
          await stage.close();
        }
        const stats = stage.stats();
        const routed = run.rows.filter((row) => row.fallback !== undefined && row.fallback !== null);
        assert.deepEqual(
          routed.map((row) => row.row),
          [5, 10],
          'the unsure document and its copy',
        );
        assert.equal(server.requests.length - before, 1, 'one request for the document and its copy');
        assert.equal(stats.routed, 1);
        assert.equal(stats.answered, 1);
        for (const row of routed) {
          assert.equal(row.label, 'positive');
          assert.equal(row.source, 'fallback');
          assert.equal(row.fallback?.status, 'ok');
        }
        assert.deepEqual(scoredPart(run.rows[10] as ResultRow), scoredPart(run.rows[5] as ResultRow));
        assert.equal(run.rows[10]?.duplicateOf, 5);
        assert.deepEqual(run.outcomes[0]?.fallbackStatuses, { ok: 2 });
      });
    } finally {
      await server.close();
    }
  });
});
