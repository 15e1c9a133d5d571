// Where a run keeps its files beside the output: the one module that spells their names. Local mode, the cluster
// coordinator, merge-only, the fallback and the report ask outputLayout(output) instead of building paths.

import path from 'node:path';

export interface OutputLayout {
  /** The merged Parquet file, as given. */
  readonly output: string;
  /** `<output>.parts/`: the plan and the shard results, kept so a run can resume. */
  readonly partsDir: string;
  /** `<output>.parts/shards/`: one `<shardId>.arrow` per finished shard (shardResultPath). */
  readonly shardDir: string;
  /** `<output>.parts/plan.json`: the shard plan, for people and tools looking at a run in progress. */
  readonly planFile: string;
  /**
   * `<output>.manifest.json`: removed when a merge starts and renamed into place last, with the results file's sha256,
   * so its presence (with no lock file) and a matching hash mean the run completed.
   */
  readonly manifestFile: string;
  /**
   * `<output>.lock`: held by the run writing this output (host, pid, start time; in cluster mode the run id and
   * whether it is running, cancelled or failed). Present means the output is not complete.
   */
  readonly lockFile: string;
  /** `<output>.fallback-audit.jsonl`: every fallback call, kept across runs (money was spent). */
  readonly fallbackAuditFile: string;
  /** `<output>.fallback-cache/`: the fallback's response cache unless the codebook names another folder. */
  readonly fallbackCacheDir: string;
  /** `<output>.fallback-batches.json`: the Batch API submissions not yet collected. */
  readonly fallbackBatchStateFile: string;
  /** `<output>.fallback-batch-<tag>.jsonl`: the requests of one Batch API submission. */
  fallbackBatchInputFile(tag: string): string;
}

export function outputLayout(output: string): OutputLayout {
  const partsDir = `${output}.parts`;
  return {
    output,
    partsDir,
    shardDir: path.join(partsDir, 'shards'),
    planFile: path.join(partsDir, 'plan.json'),
    manifestFile: `${output}.manifest.json`,
    lockFile: `${output}.lock`,
    fallbackAuditFile: `${output}.fallback-audit.jsonl`,
    fallbackCacheDir: `${output}.fallback-cache`,
    fallbackBatchStateFile: `${output}.fallback-batches.json`,
    fallbackBatchInputFile: (tag) => `${output}.fallback-batch-${tag}.jsonl`,
  };
}

const SHARD_RESULT_EXTENSION = '.arrow';

/** `<shardId>.arrow`: the name alone says the shard is complete (temp files never have it). */
export function shardResultFileName(shardId: string): string {
  return `${shardId}${SHARD_RESULT_EXTENSION}`;
}

/** `<shardDir>/<shardId>.arrow`. */
export function shardResultPath(shardDir: string, shardId: string): string {
  return path.join(shardDir, shardResultFileName(shardId));
}

/**
 * `.<name>.<unique>.tmp` beside `target`: in the same folder, so the rename onto `target` is atomic; the leading dot
 * and the `.tmp` suffix keep it from ever matching a final name such as `<shardId>.arrow`.
 */
export function tempFileFor(target: string, unique: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${unique}.tmp`);
}

/**
 * Whether `name`, in the folder beside `output`, is a temp file a merge of `output` left behind (the results file's or
 * its manifest's, `.<name>.<pid>-<hex>.tmp`); the next run into that output removes them.
 */
export function isMergeTempOf(output: string, name: string): boolean {
  const base = path.basename(output);
  if (!name.startsWith(`.${base}.`) || !name.endsWith('.tmp')) return false;
  const rest = name.slice(base.length + 2, -'.tmp'.length);
  return /^(?:manifest\.json\.)?\d+-[0-9a-f]+$/.test(rest);
}

/**
 * Whether the file `name` is a result file rescale wrote, judged from the names in its folder: its manifest or its
 * parts folder lies beside it. Corpus discovery skips such files, so an output inside the input folder is never read
 * back as corpus.
 */
export function isRescaleOutputName(name: string, siblings: ReadonlySet<string>): boolean {
  const layout = outputLayout(name);
  return siblings.has(layout.manifestFile) || siblings.has(layout.partsDir) || siblings.has(layout.lockFile);
}
