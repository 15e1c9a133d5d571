// `rescale run` in process on the keyword fixture model: identical texts are scored once per shard, the merged
// Parquet says which rows are copies, the manifest counts them and records the setting, and `--no-dedupe` scores
// every copy under other shard ids with the same labels and probabilities.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { runLocalMode } from '../../cli/local-mode.js';
import { parseRunManifest } from '../../contracts/run-manifest.js';
import { fixtureModel } from '../../scripts/harness/fixture-models.js';
import { queryDuckDB, sqlString, withTempDir } from '../../scripts/harness/parquet.js';
import { writeSentimentStudy } from '../helpers/fallback.js';

/** 24 rows in shards of 8: row i repeats the text of row i - 3 when i % 6 ≥ 3, so 12 rows repeat an earlier one. */
const CORPUS_SQL =
  `SELECT i::BIGINT AS id, CASE (i - (CASE WHEN i % 6 >= 3 THEN 3 ELSE 0 END)) % 3 ` +
  `WHEN 0 THEN 'I love this great day ' WHEN 1 THEN 'what a terrible awful thing ' ELSE 'the meeting is at ' END ` +
  `|| (i - (CASE WHEN i % 6 >= 3 THEN 3 ELSE 0 END)) AS text FROM range(24) t(i)`;

let model: string;
before(async () => {
  model = await fixtureModel('keyword');
});

interface MergedRow {
  readonly row: number;
  readonly duplicate_of: number | null;
  readonly tokens: number;
  readonly label: string;
  readonly p: string;
  readonly shard_id: string;
}

async function merged(output: string): Promise<MergedRow[]> {
  const rows = await queryDuckDB(
    `SELECT "row"::INT AS row, duplicate_of::INT AS duplicate_of, tokens, label, ` +
      `p_negative::VARCHAR || ',' || p_neutral::VARCHAR || ',' || p_positive::VARCHAR AS p, shard_id ` +
      `FROM read_parquet('${sqlString(output)}') ORDER BY "row"`,
  );
  return rows as unknown as MergedRow[];
}

describe('rescale run with identical texts', () => {
  it('scores them once per shard, marks the copies, counts them in the manifest; --no-dedupe scores each', async () => {
    await withTempDir(async (dir) => {
      const { codebook, input } = await writeSentimentStudy(dir, model, CORPUS_SQL, undefined);
      const run = (output: string, noDedupe: boolean) =>
        runLocalMode({ codebook, input: [input], output, shardRows: 8, noDedupe, env: {} });

      const dedupeOutput = path.join(dir, 'dedupe', 'results.parquet');
      const everyOutput = path.join(dir, 'every', 'results.parquet');
      const summary = await run(dedupeOutput, false);
      const every = await run(everyOutput, true);
      // Copies: rows 3–5 of every 6 whose earlier text (row i - 3) lies in the same shard of 8; rows 9, 10, 16 and 17
      // repeat a text of the shard before theirs and are scored again.
      const expected = Array.from({ length: 24 }, (_, i) =>
        i % 6 >= 3 && Math.floor((i - 3) / 8) === Math.floor(i / 8) ? i - 3 : null,
      );
      const copies = expected.filter((o) => o !== null).length;
      assert.equal(summary.merge.duplicates, copies);
      assert.equal(every.merge.duplicates, 0);

      const manifest = parseRunManifest(await readFile(summary.manifest, 'utf8'), summary.manifest);
      assert.equal(manifest.merge.duplicates, copies);
      assert.equal(manifest.settings.dedupe, true);
      const everyManifest = parseRunManifest(await readFile(every.manifest, 'utf8'), every.manifest);
      assert.equal(everyManifest.settings.dedupe, false);
      assert.notEqual(everyManifest.codebook.hash, manifest.codebook.hash, '--no-dedupe is another result hash');

      const rows = await merged(dedupeOutput);
      const all = await merged(everyOutput);
      assert.deepEqual(
        rows.map((r) => r.duplicate_of),
        expected,
      );
      assert.ok(all.every((r) => r.duplicate_of === null && r.tokens > 0));
      rows.forEach((row, i) => {
        const other = all[i] as MergedRow;
        assert.equal(row.p, other.p, `row ${i}: the same probabilities with and without dedupe`);
        assert.equal(row.label, other.label);
        assert.equal(row.tokens, expected[i] === null ? other.tokens : 0);
        assert.notEqual(row.shard_id, other.shard_id, 'shards of the two settings never mix');
      });
      const tokens = (list: readonly MergedRow[]): number => list.reduce((n, r) => n + r.tokens, 0);
      assert.ok(tokens(rows) < tokens(all));
    });
  });
});
