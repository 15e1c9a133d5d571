import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';

import { parseCodebook } from '../../contracts/codebook.js';
import { planRun } from '../../coordinator/run-plan.js';
import { withTempDir, writeParquetWithDuckDB } from '../../scripts/harness/parquet.js';

async function plan(dir: string, idColumn: string): Promise<readonly string[]> {
  await writeFile(path.join(dir, 'model.gguf'), 'not read at planning beyond its fingerprint');
  const codebook = parseCodebook(
    {
      task: 't',
      input: { id_column: idColumn },
      labels: [{ name: 'a' }, { name: 'b' }],
      prompt: { template: 'Classify: {text}' },
      model: { path: 'model.gguf' },
    },
    { source: 'cb.yaml', baseDir: dir },
  );
  const planned = await planRun(codebook, [path.join(dir, 'in')], { sequences: 1 }, 1000);
  return planned.warnings ?? [];
}

describe('planRun: id column check', () => {
  it('warns at planning about null, duplicated and cross-file ids, naming the column and the counts', async () => {
    await withTempDir(async (dir) => {
      await mkdir(path.join(dir, 'in'));
      await writeParquetWithDuckDB(
        "SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (2, 'c'), (NULL, 'd')) t(doc, text)",
        path.join(dir, 'in', 'a.parquet'),
      );
      await writeParquetWithDuckDB(
        "SELECT * FROM (VALUES (1, 'e'), (3, 'f')) t(doc, text)",
        path.join(dir, 'in', 'b.parquet'),
      );
      const warnings = await plan(dir, 'doc');
      const find = (part: string): string | undefined => warnings.find((w) => w.includes(part));
      assert.match(find('null') ?? '', /Id column "doc": 1 of 6 planned rows have no id/);
      assert.match(find('same file') ?? '', /Id column "doc": 1 of 6 planned rows repeat an id .*"2"/);
      assert.match(find('another corpus file') ?? '', /Id column "doc": 1 of 6 planned rows reuse an id .*"1"/);
    });
  });

  it('counts NaN, infinite and -0 float ids and keeps -0 apart from 0', async () => {
    await withTempDir(async (dir) => {
      await mkdir(path.join(dir, 'in'));
      await writeParquetWithDuckDB(
        `SELECT * FROM (VALUES ('nan'::DOUBLE, 'a'), ('inf'::DOUBLE, 'b'), ('-inf'::DOUBLE, 'c'), (-0.0::DOUBLE, 'd'),
           (0.0::DOUBLE, 'e')) t(doc, text)`,
        path.join(dir, 'in', 'a.parquet'),
      );
      const warnings = await plan(dir, 'doc');
      assert.ok(
        warnings.some((w) => w.includes('1 of 5 planned rows have the id NaN and 2 an infinite id')),
        warnings.join('\n'),
      );
      assert.ok(warnings.some((w) => w.includes('1 of 5 planned rows have the id -0')));
      assert.ok(!warnings.some((w) => w.includes('repeat')), warnings.join('\n'));
    });
  });

  it('says nothing about a clean id column', async () => {
    await withTempDir(async (dir) => {
      await mkdir(path.join(dir, 'in'));
      await writeParquetWithDuckDB(
        "SELECT i AS doc, 'x' AS text FROM range(50) t(i)",
        path.join(dir, 'in', 'a.parquet'),
      );
      assert.deepEqual(await plan(dir, 'doc'), []);
    });
  });
});
