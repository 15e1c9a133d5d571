// The local pipeline end to end (`rescale run`): real Parquet written by DuckDB, real GGUF fixtures, the real CLI
// in a child process where exit codes, messages and SIGKILL matter.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseCodebook } from '../../contracts/codebook.js';
import { runLocalMode } from '../../cli/local-mode.js';
import { LabelScorer } from '../../worker/engine/label-scorer.js';
import { fixtureModel } from '../../scripts/harness/fixture-models.js';
import { queryDuckDB, sqlString, withTempDir, writeParquetWithDuckDB } from '../../scripts/harness/parquet.js';
import { sentimentCodebookYaml } from '../helpers/sentiment-codebook.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'cli', 'rescale.ts');

let model: string;
before(async () => {
  model = await fixtureModel('keyword');
});

/** A corpus of `n` short tweets-like texts with nulls, blanks and one very long document. */
function corpusQuery(n: number): string {
  const words = `['love', 'hate', 'meeting', 'great', 'awful', 'today', 'phone', 'happy']`;
  return `SELECT i::BIGINT AS id,
    CASE WHEN i % 17 = 5 THEN NULL
         WHEN i % 23 = 7 THEN '   '
         WHEN i = 11 THEN repeat('great ', 20000)
         ELSE 'tweet ' || i || ' ' || ${words}[1 + (i % 8)] || ' ' || ${words}[1 + ((i * 3) % 8)] END AS text,
    'x' || i AS extra
    FROM range(${n}) t(i)`;
}

interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runCli(
  args: readonly string[],
  options: { killWhen?: () => boolean; signal?: NodeJS.Signals } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args, '--no-progress', '--log-level', 'warn'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let timer: NodeJS.Timeout | undefined;
    if (options.killWhen) {
      timer = setInterval(() => {
        if (options.killWhen?.()) {
          child.kill(options.signal ?? 'SIGKILL');
          clearInterval(timer);
        }
      }, 20);
    }
    child.on('error', reject);
    child.on('close', (code) => {
      if (timer) clearInterval(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function readOutput(file: string): Promise<Record<string, unknown>[]> {
  return queryDuckDB(`SELECT * FROM read_parquet('${sqlString(file)}') ORDER BY row`);
}

describe('rescale run (local mode)', () => {
  it('writes every input row exactly once, with its id, and the scores the engine gives directly', async () => {
    await withTempDir(async (dir) => {
      const input = await writeParquetWithDuckDB(corpusQuery(120), path.join(dir, 'corpus.parquet'), {
        rowGroupSize: 50,
        codec: 'zstd',
      });
      const codebookFile = path.join(dir, 'codebook.yaml');
      await writeFile(codebookFile, sentimentCodebookYaml(model));
      const output = path.join(dir, 'out', 'results.parquet');
      const summary = await runLocalMode({ codebook: codebookFile, input: [input], output, shardRows: 40, env: {} });
      assert.equal(summary.rows, 120);
      const rows = await readOutput(output);
      assert.deepEqual(
        rows.map((r) => r.id),
        Array.from({ length: 120 }, (_, i) => BigInt(i)),
      );
      assert.deepEqual(
        rows.map((r) => r.row),
        Array.from({ length: 120 }, (_, i) => BigInt(i)),
      );
      const expectedEmpty = Array.from({ length: 120 }, (_, i) => i).filter(
        (i) => i % 17 === 5 || (i % 23 === 7 && i !== 11),
      );
      assert.deepEqual(
        rows.flatMap((r, i) => (r.status === 'empty_text' ? [i] : [])),
        expectedEmpty,
        'null and blank texts get empty_text',
      );
      assert.equal(rows[11]?.status, 'truncated', 'the 120k-character document is truncated and flagged');
      assert.equal(rows[11]?.label, 'positive');

      // The same documents through the engine directly give bit-identical probabilities.
      const texts = await queryDuckDB(`SELECT text FROM read_parquet('${sqlString(input)}') ORDER BY id`);
      const scorer = await LabelScorer.create(
        parseCodebook((await import('yaml')).parse(sentimentCodebookYaml(model)), { source: codebookFile }),
      );
      try {
        const direct = await scorer.score(texts.map((t) => ({ text: (t.text as string | null) ?? null })));
        direct.forEach((d, i) => {
          const row = rows[i] as Record<string, unknown>;
          assert.equal(row.status, d.status);
          assert.equal(row.label, d.label);
          if (d.probabilities)
            ['negative', 'neutral', 'positive'].forEach((l, j) => assert.equal(row[`p_${l}`], d.probabilities?.[j]));
        });
      } finally {
        await scorer.dispose();
      }
      const manifest = JSON.parse(await readFile(summary.manifest, 'utf8')) as {
        model: { sha256: string };
        shards: unknown[];
        rows: { planned: number };
      };
      assert.match(manifest.model.sha256, /^[0-9a-f]{64}$/);
      assert.equal(manifest.shards.length, 3);
      assert.equal(manifest.rows.planned, 120);
    });
  });

  it(
    'resumes after SIGKILL without recomputing or duplicating, ' + 'and writes the same output as an uninterrupted run',
    async () => {
      await withTempDir(async (dir) => {
        const input = await writeParquetWithDuckDB(corpusQuery(400), path.join(dir, 'corpus.parquet'), {
          rowGroupSize: 100,
        });
        const codebookFile = path.join(dir, 'codebook.yaml');
        await writeFile(codebookFile, sentimentCodebookYaml(model));
        const args = (out: string): string[] => [
          'run',
          '--codebook',
          codebookFile,
          '--input',
          input,
          '--output',
          out,
          '--shard-rows',
          '50',
        ];

        const clean = path.join(dir, 'clean', 'results.parquet');
        const first = await runCli(args(clean));
        assert.equal(first.code, 0, first.stderr);

        const killed = path.join(dir, 'killed', 'results.parquet');
        const shardDir = path.join(killed + '.parts', 'shards');
        const countShards = (): number =>
          existsSync(shardDir) ? readdirSync(shardDir).filter((f) => f.endsWith('.arrow')).length : 0;
        const interrupted = await runCli(args(killed), { killWhen: () => countShards() >= 2 });
        assert.equal(interrupted.code, null, 'the run was killed');
        assert.equal(existsSync(killed), false, 'no final output after a kill');
        const doneBefore = countShards();
        assert.ok(doneBefore >= 2 && doneBefore < 8);
        assert.ok(
          (await readdir(shardDir)).every((f) => f.endsWith('.arrow')),
          'no partial shard file is left looking complete',
        );

        const resumed = await runCli(args(killed));
        assert.equal(resumed.code, 0, resumed.stderr);
        assert.match(resumed.stdout, new RegExp(`${doneBefore} reused`));
        assert.deepEqual(await readOutput(killed), await readOutput(clean));
        assert.deepEqual(await readFile(killed), await readFile(clean), 'the merged Parquet files are byte-identical');
      });
    },
  );

  it('stops cleanly on Ctrl-C (SIGINT) with exit code 130, no final output, and resumes', async () => {
    await withTempDir(async (dir) => {
      const input = await writeParquetWithDuckDB(corpusQuery(300), path.join(dir, 'corpus.parquet'));
      const codebookFile = path.join(dir, 'codebook.yaml');
      await writeFile(codebookFile, sentimentCodebookYaml(model));
      const output = path.join(dir, 'o.parquet');
      const shardDir = path.join(output + '.parts', 'shards');
      const args = ['run', '--codebook', codebookFile, '--input', input, '--output', output, '--shard-rows', '50'];
      const stopped = await runCli(args, {
        signal: 'SIGINT',
        killWhen: () => existsSync(shardDir) && readdirSync(shardDir).some((f) => f.endsWith('.arrow')),
      });
      assert.equal(stopped.code, 130, stopped.stderr);
      assert.match(stopped.stderr, /run the same command again to resume/);
      assert.equal(existsSync(output), false);
      assert.ok(
        readdirSync(shardDir).every((f) => f.endsWith('.arrow')),
        'no temp file left behind',
      );
      const resumed = await runCli(args);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.equal((await readOutput(output)).length, 300);
    });
  });

  it('names the file, the missing column and the columns that exist', async () => {
    await withTempDir(async (dir) => {
      const input = await writeParquetWithDuckDB(
        `SELECT i AS id, 'x' AS body FROM range(5) t(i)`,
        path.join(dir, 'corpus.parquet'),
      );
      const codebookFile = path.join(dir, 'codebook.yaml');
      await writeFile(codebookFile, sentimentCodebookYaml(model));
      const result = await runCli([
        'run',
        '--codebook',
        codebookFile,
        '--input',
        input,
        '--output',
        path.join(dir, 'o.parquet'),
      ]);
      assert.equal(result.code, 3);
      assert.match(result.stderr, /text/);
      assert.match(result.stderr, /body/);
      assert.match(result.stderr, /corpus\.parquet/);
    });
  });

  it('rejects a corrupt Parquet file by name, and a missing input', async () => {
    await withTempDir(async (dir) => {
      const input = await writeParquetWithDuckDB(corpusQuery(20), path.join(dir, 'corpus.parquet'));
      const bytes = await readFile(input);
      const corrupt = path.join(dir, 'corrupt.parquet');
      await writeFile(corrupt, bytes.subarray(0, bytes.length - 30));
      const codebookFile = path.join(dir, 'codebook.yaml');
      await writeFile(codebookFile, sentimentCodebookYaml(model));
      const result = await runCli([
        'run',
        '--codebook',
        codebookFile,
        '--input',
        corrupt,
        '--output',
        path.join(dir, 'o.parquet'),
      ]);
      assert.equal(result.code, 3);
      assert.match(result.stderr, /corrupt\.parquet/);
      const missing = await runCli([
        'run',
        '--codebook',
        codebookFile,
        '--input',
        path.join(dir, 'nope.parquet'),
        '--output',
        path.join(dir, 'o.parquet'),
      ]);
      assert.equal(missing.code, 3);
      assert.match(missing.stderr, /nope\.parquet/);
    });
  });

  it('reports an invalid codebook field and an unwritable output with their own exit codes', async () => {
    await withTempDir(async (dir) => {
      const input = await writeParquetWithDuckDB(corpusQuery(5), path.join(dir, 'corpus.parquet'));
      const bad = path.join(dir, 'bad.yaml');
      await writeFile(
        bad,
        sentimentCodebookYaml(model).replace('max_document_tokens: 64', 'max_document_tokens: many'),
      );
      const invalid = await runCli([
        'run',
        '--codebook',
        bad,
        '--input',
        input,
        '--output',
        path.join(dir, 'o.parquet'),
      ]);
      assert.equal(invalid.code, 2);
      assert.match(invalid.stderr, /model\.max_document_tokens/);
      const good = path.join(dir, 'good.yaml');
      await writeFile(good, sentimentCodebookYaml(model));
      await writeFile(path.join(dir, 'file'), 'x');
      const unwritable = await runCli([
        'run',
        '--codebook',
        good,
        '--input',
        input,
        '--output',
        path.join(dir, 'file', 'o.parquet'),
      ]);
      assert.equal(unwritable.code, 4);
      assert.match(unwritable.stderr, /cannot write/);
    });
  });

  it(
    'turns an empty corpus into an empty result file, ' + 'and scores non-UTF-8 text with replacement characters',
    async () => {
      await withTempDir(async (dir) => {
        const codebookFile = path.join(dir, 'codebook.yaml');
        await writeFile(codebookFile, sentimentCodebookYaml(model));
        const empty = await writeParquetWithDuckDB(
          `SELECT i::BIGINT AS id, 'x' AS text FROM range(0) t(i)`,
          path.join(dir, 'empty.parquet'),
        );
        const emptyOut = path.join(dir, 'empty-out.parquet');
        const summary = await runLocalMode({ codebook: codebookFile, input: [empty], output: emptyOut, env: {} });
        assert.equal(summary.rows, 0);
        assert.equal((await readOutput(emptyOut)).length, 0);

        const binary = await writeParquetWithDuckDB(
          `SELECT 1::BIGINT AS id, '\\xFF\\xFEgreat'::BLOB AS text`,
          path.join(dir, 'binary.parquet'),
        );
        const binaryOut = path.join(dir, 'binary-out.parquet');
        await runLocalMode({ codebook: codebookFile, input: [binary], output: binaryOut, env: {} });
        const [row] = await readOutput(binaryOut);
        assert.equal(row?.status, 'ok');
        assert.equal(row?.label, 'positive');
      });
    },
  );

  it('runs a trial with --limit and starts over with --overwrite', async () => {
    await withTempDir(async (dir) => {
      const input = await writeParquetWithDuckDB(corpusQuery(60), path.join(dir, 'corpus.parquet'));
      const codebookFile = path.join(dir, 'codebook.yaml');
      await writeFile(codebookFile, sentimentCodebookYaml(model));
      const output = path.join(dir, 'o.parquet');
      const trial = await runLocalMode({ codebook: codebookFile, input: [input], output, limit: 25, env: {} });
      assert.equal(trial.rows, 25);
      const full = await runLocalMode({ codebook: codebookFile, input: [input], output, overwrite: true, env: {} });
      assert.equal(full.rows, 60);
      assert.equal(full.shardsSkipped, 0);
    });
  });
});
