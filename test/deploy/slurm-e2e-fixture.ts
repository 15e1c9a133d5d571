// The TypeScript half of deploy/slurm/test/e2e.sh: writes the study it runs on the SLURM cluster (a DuckDB-written
// corpus and a codebook on the keyword fixture model, as the cluster tests use), scores it in local mode for
// reference, and compares the cluster's output with local mode's. Run under tsx:
//
//   node --import tsx test/deploy/slurm-e2e-fixture.ts prepare DIR ROWS SHARD_ROWS   → JSON paths on stdout
//   node --import tsx test/deploy/slurm-e2e-fixture.ts compare CLUSTER.parquet LOCAL.parquet   → exit 1 if they differ

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { runLocalMode } from '../../cli/local-mode.js';
import { clusterFixture } from '../../scripts/harness/cluster.js';
import { queryDuckDB, sqlString } from '../../scripts/harness/parquet.js';

async function prepare(dir: string, rows: number, shardRows: number): Promise<void> {
  // clusterFixture makes its folder with mkdtemp in os.tmpdir(), which follows TMPDIR: put it on the "shared" dir.
  process.env.TMPDIR = dir;
  const fixture = await clusterFixture(rows, { rowGroupRows: shardRows });
  const localOutput = path.join(fixture.dir, 'local', 'results.parquet');
  const started = performance.now();
  await runLocalMode({ codebook: fixture.codebook, input: [fixture.corpus], output: localOutput, shardRows, env: {} });
  const localMs = Math.round(performance.now() - started);
  const result = { dir: fixture.dir, codebook: fixture.codebook, corpus: fixture.corpus, localOutput, localMs };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** Same bytes, or else a description of how the rows differ (for the failure message). */
async function compare(cluster: string, local: string): Promise<number> {
  const same = (await readFile(cluster)).equals(await readFile(local));
  const a = sqlString(cluster);
  const b = sqlString(local);
  const [stats] = await queryDuckDB(
    `SELECT (SELECT count(*) FROM read_parquet('${a}'))::INT AS cluster_rows,
            (SELECT count(*) FROM read_parquet('${b}'))::INT AS local_rows,
            (SELECT count(DISTINCT "row") FROM read_parquet('${a}'))::INT AS cluster_distinct_rows,
            (SELECT count(*) FROM (SELECT * FROM read_parquet('${a}') ` +
      `EXCEPT ALL SELECT * FROM read_parquet('${b}')))::INT AS only_cluster,
            (SELECT count(*) FROM (SELECT * FROM read_parquet('${b}') ` +
      `EXCEPT ALL SELECT * FROM read_parquet('${a}')))::INT AS only_local`,
  );
  const summary = { sameBytes: same, ...stats };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  const rowsEqual =
    stats !== undefined &&
    stats.cluster_rows === stats.local_rows &&
    stats.cluster_distinct_rows === stats.cluster_rows &&
    stats.only_cluster === 0 &&
    stats.only_local === 0;
  return same && rowsEqual ? 0 : 1;
}

const [command, ...args] = process.argv.slice(2);
if (command === 'prepare' && args.length === 3) {
  await prepare(path.resolve(args[0] ?? ''), Number(args[1]), Number(args[2]));
} else if (command === 'compare' && args.length === 2) {
  process.exitCode = await compare(args[0] ?? '', args[1] ?? '');
} else {
  process.stderr.write(
    'usage: slurm-e2e-fixture.ts prepare DIR ROWS SHARD_ROWS | compare CLUSTER.parquet LOCAL.parquet\n',
  );
  process.exitCode = 2;
}
