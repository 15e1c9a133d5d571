// What `rescale run` may do to the files around its output: never write over an input, the codebook or the model,
// delete with --overwrite only what it wrote, refuse another run's output without --overwrite, keep one run per
// output at a time, and commit results and manifest as a pair. Real Parquet, the keyword fixture model, the real CLI.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runLocalMode } from '../../cli/local-mode.js';
import { isRescaleError } from '../../contracts/errors.js';
import type { LogLevel, Logger } from '../../contracts/logger.js';
import { fixtureModel } from '../../scripts/harness/fixture-models.js';
import { withTempDir, writeParquetWithDuckDB } from '../../scripts/harness/parquet.js';
import { readPredictions } from '../../study/evaluation/labelled-predictions.js';
import { sentimentCodebookYaml } from '../helpers/sentiment-codebook.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'cli', 'rescale.ts');

let sharedModel: string;
before(async () => {
  sharedModel = await fixtureModel('keyword');
});

const CORPUS = `SELECT i::BIGINT AS id, 'tweet ' || i || ' ' || (['love', 'hate', 'today'])[1 + (i % 3)] AS text
  FROM range(30) t(i)`;

interface Setup {
  readonly dir: string;
  readonly corpus: string;
  readonly codebook: string;
  readonly model: string;
}

/** A corpus, a copy of the fixture model (so a failing test cannot destroy the shared one) and a codebook. */
async function setup(dir: string): Promise<Setup> {
  const corpus = await writeParquetWithDuckDB(CORPUS, path.join(dir, 'corpus.parquet'));
  const model = path.join(dir, 'model.gguf');
  await copyFile(sharedModel, model);
  const codebook = path.join(dir, 'codebook.yaml');
  await writeFile(codebook, sentimentCodebookYaml(model));
  return { dir, corpus, codebook, model };
}

interface CliResult {
  readonly code: number | null;
  readonly stderr: string;
}

function runCli(args: readonly string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args, '--no-progress', '--log-level', 'warn'], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

async function digest(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

function recordingLogger(lines: { level: LogLevel; msg: string }[]): Logger {
  const logger: Logger = {
    log: (level, msg) => {
      lines.push({ level, msg });
    },
    child: () => logger,
  };
  return logger;
}

describe('output safety (local mode)', () => {
  it('refuses an output that is the corpus, codebook or model (also through a symlink), touching nothing', async () => {
    await withTempDir(async (dir) => {
      const { corpus, codebook, model } = await setup(dir);
      const before = await Promise.all([corpus, codebook, model].map(digest));
      const link = path.join(dir, 'link.parquet');
      await symlink(corpus, link);
      for (const [output, what] of [
        [corpus, 'corpus file'],
        [codebook, 'codebook'],
        [model, 'model'],
        [link, 'corpus file'],
      ] as const) {
        for (const overwrite of [[], ['--overwrite']]) {
          const result = await runCli([
            'run',
            '--codebook',
            codebook,
            '--input',
            corpus,
            '--output',
            output,
            ...overwrite,
          ]);
          assert.equal(result.code, 2, `${output} ${overwrite.join('')}: ${result.stderr}`);
          assert.match(result.stderr, new RegExp(`would write over the ${what}`));
        }
      }
      assert.deepEqual(await Promise.all([corpus, codebook, model].map(digest)), before);
      assert.ok(!existsSync(`${corpus}.parts`) && !existsSync(`${codebook}.parts`) && !existsSync(`${model}.lock`));
    });
  });

  it('refuses an output whose parts folder is an input folder (--overwrite would delete it)', async () => {
    await withTempDir(async (dir) => {
      const { codebook } = await setup(dir);
      const inputDir = path.join(dir, 'x.parts');
      await mkdir(inputDir);
      const input = await writeParquetWithDuckDB(CORPUS, path.join(inputDir, 'a.parquet'));
      const result = await runCli([
        'run',
        '--codebook',
        codebook,
        '--input',
        inputDir,
        '--output',
        path.join(dir, 'x'),
        '--overwrite',
      ]);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /parts folder/);
      assert.ok(existsSync(input));
    });
  });

  it('--overwrite deletes only what rescale wrote and refuses anything else by name', async () => {
    await withTempDir(async (dir) => {
      const { corpus, codebook } = await setup(dir);
      const notes = path.join(dir, 'notes.parquet');
      await writeFile(notes, 'my own file');
      const refused = await runCli([
        'run',
        '--codebook',
        codebook,
        '--input',
        corpus,
        '--output',
        notes,
        '--overwrite',
      ]);
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, /notes\.parquet has no manifest or parts folder beside it/);
      assert.equal(await readFile(notes, 'utf8'), 'my own file');

      const output = path.join(dir, 'results.parquet');
      await runLocalMode({ codebook, input: [corpus], output, shardRows: 10, env: {} });
      const foreign = path.join(`${output}.parts`, 'shards', 'keep-me.txt');
      await writeFile(foreign, 'x');
      const withForeign = await runCli([
        'run',
        '--codebook',
        codebook,
        '--input',
        corpus,
        '--output',
        output,
        '--overwrite',
      ]);
      assert.equal(withForeign.code, 2, withForeign.stderr);
      assert.match(withForeign.stderr, /keep-me\.txt is not a shard result rescale wrote/);
      assert.ok(existsSync(foreign) && existsSync(output) && existsSync(`${output}.manifest.json`));
    });
  });

  it('refuses an existing folder, a device and /proc as output before scoring', async () => {
    await withTempDir(async (dir) => {
      const { corpus, codebook } = await setup(dir);
      const folder = path.join(dir, 'out');
      await mkdir(folder);
      for (const [output, pattern] of [
        [folder, /is an existing folder; name the results file/],
        ['/dev/null', /is not a regular file/],
        ['/proc/rescale-results.parquet', /procfs pseudo filesystem/],
      ] as const) {
        const started = performance.now();
        const result = await runCli(['run', '--codebook', codebook, '--input', corpus, '--output', output]);
        assert.equal(result.code, 2, `${output}: ${result.stderr}`);
        assert.match(result.stderr, pattern);
        assert.doesNotMatch(result.stderr, /shard done|scoring/);
        assert.ok(performance.now() - started < 60_000);
      }
      assert.deepEqual(await readdir(folder), []);
    });
  });

  it("refuses to replace another codebook's results without --overwrite, saying what differs", async () => {
    await withTempDir(async (dir) => {
      const { corpus, codebook, model } = await setup(dir);
      const output = path.join(dir, 'results.parquet');
      await runLocalMode({ codebook, input: [corpus], output, shardRows: 10, env: {} });
      const first = await digest(output);
      const changed = path.join(dir, 'changed.yaml');
      await writeFile(changed, sentimentCodebookYaml(model, 'Label the tweet.'));
      await assert.rejects(
        runLocalMode({ codebook: changed, input: [corpus], output, shardRows: 10, env: {} }),
        (error) =>
          isRescaleError(error) &&
          error.code === 'CONFIG_INVALID' &&
          /holds the results of another run \(codebook hash \w+ there, \w+ now\).*--overwrite/.test(error.message),
      );
      assert.equal(await digest(output), first, 'the earlier results are untouched');
      const plan = JSON.parse(await readFile(path.join(`${output}.parts`, 'plan.json'), 'utf8')) as {
        codebookHash: string;
      };
      const manifest = JSON.parse(await readFile(`${output}.manifest.json`, 'utf8')) as {
        merge: { codebookHash: string };
      };
      assert.equal(plan.codebookHash, manifest.merge.codebookHash, "the plan file is still the earlier run's");
      const replaced = await runLocalMode({
        codebook: changed,
        input: [corpus],
        output,
        shardRows: 10,
        overwrite: true,
        env: {},
      });
      assert.equal(replaced.shardsSkipped, 0);
      // The same command again is a resume, not a conflict.
      const again = await runLocalMode({ codebook: changed, input: [corpus], output, shardRows: 10, env: {} });
      assert.equal(again.shardsSkipped, 3);
    });
  });

  it('does not read an output inside the input folder back as corpus when the same command runs again', async () => {
    await withTempDir(async (dir) => {
      const { codebook } = await setup(dir);
      const corpusDir = path.join(dir, 'corpus');
      await mkdir(corpusDir);
      await writeParquetWithDuckDB(CORPUS, path.join(corpusDir, 'a.parquet'));
      const output = path.join(corpusDir, 'results.parquet');
      const first = await runLocalMode({ codebook, input: [corpusDir], output, shardRows: 10, env: {} });
      const second = await runLocalMode({ codebook, input: [corpusDir], output, shardRows: 10, env: {} });
      assert.equal(second.rows, first.rows);
      assert.equal(second.shardsSkipped, 3);
      assert.equal(second.merge.shards, 3);
    });
  });

  it('locks the output: a second run is refused naming the holder; a stale lock is replaced', async () => {
    await withTempDir(async (dir) => {
      const { corpus, codebook } = await setup(dir);
      const output = path.join(dir, 'results.parquet');
      const lockFile = `${output}.lock`;
      const holder = (pid: number): string =>
        JSON.stringify({
          owner: 'local',
          host: hostname(),
          pid,
          processStartedAt: new Date(Date.now() - process.uptime() * 1000).toISOString(),
          lockedAt: new Date().toISOString(),
          state: 'running',
        });
      // This test process holds the output, as a run in progress would.
      await writeFile(lockFile, holder(process.pid));
      const second = await runCli(['run', '--codebook', codebook, '--input', corpus, '--output', output]);
      assert.equal(second.code, 10, second.stderr);
      assert.match(second.stderr, new RegExp(`is being written by rescale process ${process.pid} on ${hostname()}`));
      assert.ok(!existsSync(`${output}.parts`), 'nothing was written');

      await rm(lockFile);
      await runLocalMode({ codebook, input: [corpus], output, shardRows: 10, env: {} });
      assert.ok(!existsSync(lockFile), 'the lock is released when the run ends');

      // A lock left by a process that is gone (a SIGKILLed run) is replaced with a warning.
      const gone = spawnSync(process.execPath, ['-e', 'process.pid'], { stdio: 'ignore' }).pid;
      await writeFile(lockFile, holder(gone));
      await assert.rejects(readPredictions(output, 'report'), /is not a finished run/);
      const lines: { level: LogLevel; msg: string }[] = [];
      const resumed = await runLocalMode({
        codebook,
        input: [corpus],
        output,
        shardRows: 10,
        env: {},
        logger: recordingLogger(lines),
      });
      assert.equal(resumed.shardsSkipped, 3);
      assert.ok(lines.some((l) => l.level === 'warn' && l.msg === 'replaced a stale output lock'));
      assert.ok(!existsSync(lockFile));
    });
  });

  it("commits results and manifest as a pair: the manifest's sha256 is checked by readers", async () => {
    await withTempDir(async (dir) => {
      const { corpus, codebook } = await setup(dir);
      const output = path.join(dir, 'results.parquet');
      await runLocalMode({ codebook, input: [corpus], output, shardRows: 10, env: {} });
      const manifest = JSON.parse(await readFile(`${output}.manifest.json`, 'utf8')) as { merge: { sha256: string } };
      assert.equal(manifest.merge.sha256, await digest(output));
      assert.equal((await readPredictions(output, 'report')).labels.length, 30);

      // Results of another run beside this manifest (a kill between the two renames, or a second writer).
      const other = path.join(dir, 'other.parquet');
      await runLocalMode({ codebook, input: [corpus], output: other, shardRows: 10, limit: 20, env: {} });
      await copyFile(other, output);
      await assert.rejects(readPredictions(output, 'report'), /does not match its manifest/);
    });
  });

  it('a run SIGKILLed between results and manifest rename is refused by readers, finished by the next', async () => {
    await withTempDir(async (dir) => {
      const { corpus, codebook } = await setup(dir);
      const output = path.join(dir, 'results.parquet');
      const manifestFile = `${output}.manifest.json`;
      const lockFile = `${output}.lock`;
      await runLocalMode({ codebook, input: [corpus], output, shardRows: 10, env: {} });
      assert.ok(existsSync(manifestFile));

      // The same command again (it merges anew), stopped in a child process between the two renames and killed there.
      const ready = path.join(dir, 'paused');
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          path.join(ROOT, 'test', 'helpers', 'paused-merge-run.ts'),
          JSON.stringify({ codebook, input: corpus, output, shardRows: 10, ready }),
        ],
        { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<NodeJS.Signals | null>((resolve) =>
        child.on('close', (_code, signal) => resolve(signal)),
      );
      for (let waited = 0; !existsSync(ready); waited += 100) {
        assert.ok(waited < 180_000 && child.exitCode === null, `the run did not reach the pause: ${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      child.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');

      // Results in place, no manifest (the earlier one was removed before the rename), the killed run's lock.
      assert.ok(existsSync(output));
      assert.ok(!existsSync(manifestFile), 'the earlier manifest must not stay beside results it did not describe');
      assert.ok(existsSync(lockFile));
      await assert.rejects(readPredictions(output, 'report'), /is not a finished run: .*\.lock says/);
      // Without the lock (removed by hand, as one does for a gone run on another host) the missing manifest still
      // tells the reader the output is incomplete.
      await rm(lockFile);
      await assert.rejects(readPredictions(output, 'report'), /is not a finished run: it has no manifest/);

      const resumed = await runLocalMode({ codebook, input: [corpus], output, shardRows: 10, env: {} });
      assert.equal(resumed.shardsSkipped, 3);
      const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as { merge: { sha256: string } };
      assert.equal(manifest.merge.sha256, await digest(output));
      assert.equal((await readPredictions(output, 'report')).labels.length, 30);
      assert.ok(!existsSync(lockFile));
      assert.deepEqual(
        (await readdir(dir)).filter((name) => name.endsWith('.tmp')),
        [],
        'no temp file of a merge is left',
      );
    });
  });

  it('removes the temp files a killed merge left beside the output on the next run', async () => {
    await withTempDir(async (dir) => {
      const { corpus, codebook } = await setup(dir);
      const output = path.join(dir, 'results.parquet');
      await runLocalMode({ codebook, input: [corpus], output, shardRows: 10, env: {} });
      const temps = ['.results.parquet.4242-0badf00d.tmp', '.results.parquet.manifest.json.4242-0badf00d.tmp'];
      const unrelated = '.results.parquet.notes.tmp';
      for (const name of [...temps, unrelated]) await writeFile(path.join(dir, name), 'partial');
      await runLocalMode({ codebook, input: [corpus], output, shardRows: 10, env: {} });
      const left = await readdir(dir);
      for (const name of temps) assert.ok(!left.includes(name), `${name} is left`);
      assert.ok(left.includes(unrelated), 'a file that is not a merge temp file is kept');
    });
  });
});
