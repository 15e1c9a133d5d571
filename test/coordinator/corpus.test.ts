import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, symlink, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';

import { isRescaleError } from '../../contracts/errors.js';
import { globToRegExp, readCorpusFile, resolveCorpus } from '../../coordinator/corpus.js';
import { withTempDir, writeParquetWithDuckDB } from '../../scripts/harness/parquet.js';

const QUERY =
  `SELECT i::BIGINT AS id, CASE WHEN i % 5 = 0 THEN NULL ELSE 'doc ' || i ` + `END AS text FROM range(5000) t(i)`;

describe('resolveCorpus', () => {
  it('reads a file footer: rows, row groups, columns and a sha256 fingerprint', async () => {
    await withTempDir(async (dir) => {
      const file = await writeParquetWithDuckDB(QUERY, path.join(dir, 'a.parquet'), { rowGroupSize: 2048 });
      const [corpus] = await resolveCorpus(file);
      assert.ok(corpus);
      assert.equal(corpus.path, file);
      assert.equal(corpus.rows, 5000);
      assert.deepEqual(corpus.rowGroups, [
        { rowStart: 0, rows: 2048 },
        { rowStart: 2048, rows: 2048 },
        { rowStart: 4096, rows: 904 },
      ]);
      assert.deepEqual(corpus.columns, [
        { name: 'id', physicalType: 'INT64', logicalType: 'INT_64', nullable: true },
        { name: 'text', physicalType: 'BYTE_ARRAY', logicalType: 'STRING', nullable: true },
      ]);
      assert.match(corpus.fingerprint, /^[0-9a-f]{64}$/);
    });
  });

  it(
    'expands a directory to every *.parquet below it, sorted, ' + 'skipping hidden, _-prefixed and other files',
    async () => {
      await withTempDir(async (dir) => {
        await mkdir(path.join(dir, 'year=2024'));
        await mkdir(path.join(dir, '_temporary'));
        for (const name of [
          'b.parquet',
          'a.parquet',
          'year=2024/c.parquet',
          '_temporary/x.parquet',
          '.hidden.parquet',
        ]) {
          await writeParquetWithDuckDB("SELECT 1 AS id, 't' AS text", path.join(dir, name));
        }
        await writeFile(path.join(dir, '_SUCCESS'), '');
        await writeFile(path.join(dir, 'README.txt'), 'not parquet');
        const files = await resolveCorpus(dir);
        assert.deepEqual(
          files.map((file) => path.relative(dir, file.path)),
          ['a.parquet', 'b.parquet', 'year=2024/c.parquet'],
        );
      });
    },
  );

  it('expands globs with *, ** and {a,b}, keeping input order and dropping repeats', async () => {
    await withTempDir(async (dir) => {
      await mkdir(path.join(dir, 'sub', 'deep'), { recursive: true });
      for (const name of ['p1.parquet', 'p2.parquet', 'q.parquet', 'sub/p3.parquet', 'sub/deep/p4.parquet']) {
        await writeParquetWithDuckDB("SELECT 1 AS id, 't' AS text", path.join(dir, name));
      }
      const rel = (files: { path: string }[]): string[] => files.map((file) => path.relative(dir, file.path));
      assert.deepEqual(rel(await resolveCorpus(path.join(dir, 'p*.parquet'))), ['p1.parquet', 'p2.parquet']);
      assert.deepEqual(rel(await resolveCorpus(path.join(dir, '**/p*.parquet'))), [
        'p1.parquet',
        'p2.parquet',
        'sub/deep/p4.parquet',
        'sub/p3.parquet',
      ]);
      assert.deepEqual(rel(await resolveCorpus(path.join(dir, '{q,p2}.parquet'))), ['p2.parquet', 'q.parquet']);
      assert.deepEqual(rel(await resolveCorpus([path.join(dir, 'q.parquet'), path.join(dir, '*.parquet')])), [
        'q.parquet',
        'p1.parquet',
        'p2.parquet',
      ]);
    });
  });

  it(
    'reports a missing path, an empty directory and a glob without matches ' + 'as INPUT_NOT_FOUND naming the input',
    async () => {
      await withTempDir(async (dir) => {
        const missing = path.join(dir, 'nope.parquet');
        await assert.rejects(
          resolveCorpus(missing),
          (error: unknown) => isRescaleError(error, 'INPUT_NOT_FOUND') && error.message.includes(missing),
        );
        await assert.rejects(
          resolveCorpus(dir),
          (error: unknown) => isRescaleError(error, 'INPUT_NOT_FOUND') && error.message.includes('no *.parquet'),
        );
        await assert.rejects(
          resolveCorpus(path.join(dir, '*.parquet')),
          (error: unknown) => isRescaleError(error, 'INPUT_NOT_FOUND') && error.message.includes('matched no files'),
        );
        await assert.rejects(resolveCorpus([]), (error: unknown) => isRescaleError(error, 'INPUT_NOT_FOUND'));
      });
    },
  );

  it('rejects a file that is not Parquet with INPUT_INVALID naming the file', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'data.parquet');
      await writeFile(file, 'id,text\n1,hello\n'.repeat(10));
      await assert.rejects(
        resolveCorpus(file),
        (error: unknown) =>
          isRescaleError(error, 'INPUT_INVALID') &&
          error.message.includes(file) &&
          error.message.includes('not a Parquet file'),
      );
      await writeFile(file, '');
      await assert.rejects(
        resolveCorpus(file),
        (error: unknown) => isRescaleError(error, 'INPUT_INVALID') && error.message.includes(file),
      );
    });
  });

  it('rejects a truncated file with INPUT_INVALID naming the file', async () => {
    await withTempDir(async (dir) => {
      const file = await writeParquetWithDuckDB(QUERY, path.join(dir, 'cut.parquet'));
      const { length } = await readFile(file);
      await truncate(file, Math.floor(length * 0.7));
      await assert.rejects(
        readCorpusFile(file),
        (error: unknown) =>
          isRescaleError(error, 'INPUT_INVALID') && error.message.includes(file) && error.message.includes('truncated'),
      );
    });
  });

  it('rejects a corrupt footer with INPUT_INVALID naming the file', async () => {
    await withTempDir(async (dir) => {
      const file = await writeParquetWithDuckDB(QUERY, path.join(dir, 'bad.parquet'));
      const bytes = await readFile(file);
      const footerLength = bytes.readUInt32LE(bytes.length - 8);
      bytes.fill(0xff, bytes.length - 8 - footerLength, bytes.length - 8 - footerLength + 40);
      await writeFile(file, bytes);
      await assert.rejects(
        readCorpusFile(file),
        (error: unknown) =>
          isRescaleError(error, 'INPUT_INVALID') &&
          error.message.includes(file) &&
          /corrupt|truncated/.test(error.message),
      );
    });
  });

  it('changes the fingerprint when the file content changes', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'a.parquet');
      await writeParquetWithDuckDB(QUERY, file);
      const before = await readCorpusFile(file);
      await writeParquetWithDuckDB(QUERY.replace("'doc '", "'Doc '"), file);
      const after = await readCorpusFile(file);
      assert.notEqual(before.fingerprint, after.fingerprint);
      assert.equal((await readCorpusFile(file)).fingerprint, after.fingerprint);
    });
  });
});

describe('globToRegExp', () => {
  it('keeps * and ? inside one path segment and lets ** span segments', () => {
    assert.ok(globToRegExp('*.parquet').test('a.parquet'));
    assert.ok(!globToRegExp('*.parquet').test('x/a.parquet'));
    assert.ok(globToRegExp('**/*.parquet').test('a.parquet'));
    assert.ok(globToRegExp('**/*.parquet').test('x/y/a.parquet'));
    assert.ok(globToRegExp('part-?.parquet').test('part-1.parquet'));
    assert.ok(!globToRegExp('part-?.parquet').test('part-12.parquet'));
  });

  it('supports character classes, negation and braces, and escapes regex characters', () => {
    assert.ok(globToRegExp('part-[0-4].parquet').test('part-3.parquet'));
    assert.ok(!globToRegExp('part-[!0-4].parquet').test('part-3.parquet'));
    assert.ok(globToRegExp('{a,b}/*.parquet').test('b/x.parquet'));
    assert.ok(!globToRegExp('a.parquet').test('aXparquet'));
    assert.ok(globToRegExp('(x)+.parquet').test('(x)+.parquet'));
  });
});

describe('resolveCorpus: symlinks and copies', () => {
  it('counts a file reached through a symlinked folder once and names the link', async () => {
    await withTempDir(async (dir) => {
      await mkdir(path.join(dir, 'v1'));
      await writeParquetWithDuckDB("SELECT 1 AS id, 'a' AS text", path.join(dir, 'v1', 'a.parquet'));
      await writeParquetWithDuckDB("SELECT 2 AS id, 'b' AS text", path.join(dir, 'v1', 'b.parquet'));
      await symlink('v1', path.join(dir, 'latest'));
      const warnings: string[] = [];
      const files = await resolveCorpus(dir, { warnings });
      assert.deepEqual(
        files.map((file) => path.relative(dir, file.path)),
        ['latest/a.parquet', 'latest/b.parquet'],
      );
      assert.ok(
        warnings.some((w) => w.includes(path.join(dir, 'v1')) && w.includes('once')),
        warnings.join('\n'),
      );
    });
  });

  it('stops at a symlink loop instead of multiplying the corpus', async () => {
    await withTempDir(async (dir) => {
      await mkdir(path.join(dir, 'data'));
      await writeParquetWithDuckDB("SELECT 1 AS id, 'a' AS text", path.join(dir, 'data', 'a.parquet'));
      await symlink('..', path.join(dir, 'data', 'loop'));
      const warnings: string[] = [];
      const files = await resolveCorpus(path.join(dir, 'data'), { warnings });
      assert.deepEqual(
        files.map((file) => path.relative(dir, file.path)),
        ['data/a.parquet'],
      );
      assert.ok(
        warnings.some((w) => w.includes('loop')),
        warnings.join('\n'),
      );
      // The same through a glob.
      const globbed = await resolveCorpus(path.join(dir, 'data', '**', '*.parquet'));
      assert.equal(globbed.length, 1);
    });
  });

  it('warns when two corpus files have the same content fingerprint', async () => {
    await withTempDir(async (dir) => {
      const a = await writeParquetWithDuckDB("SELECT 1 AS id, 'a' AS text", path.join(dir, 'a.parquet'));
      await copyFile(a, path.join(dir, 'copy-of-a.parquet'));
      const warnings: string[] = [];
      const files = await resolveCorpus(dir, { warnings });
      assert.equal(files.length, 2);
      assert.ok(
        warnings.some((w) => w.includes('a.parquet') && w.includes('copy-of-a.parquet') && w.includes('same content')),
        warnings.join('\n'),
      );
    });
  });
});
