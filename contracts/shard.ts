// What the planner hands to whoever processes a shard (local loop or BullMQ worker), and what the merge checks.

export interface CorpusColumn {
  readonly name: string;
  /** Parquet physical type (BYTE_ARRAY, INT64, ...). */
  readonly physicalType: string;
  /** Parquet logical/converted type when present (STRING, INT_32, ...), else null. */
  readonly logicalType: string | null;
  readonly nullable: boolean;
}

export interface CorpusFile {
  /** Absolute path. */
  readonly path: string;
  readonly size: number;
  /** sha256 over (file size, footer bytes): changes whenever the file content changes. */
  readonly fingerprint: string;
  readonly rows: number;
  readonly rowGroups: readonly { readonly rowStart: number; readonly rows: number }[];
  readonly columns: readonly CorpusColumn[];
}

export interface ShardSpec {
  /** Deterministic from (file fingerprint, row range, codebook hash); safe as a file name and a BullMQ job id. */
  readonly id: string;
  /** Position of the shard in the plan (input order). */
  readonly index: number;
  readonly file: string;
  readonly fingerprint: string;
  /** Row range within the file, end exclusive. */
  readonly rowStart: number;
  readonly rowEnd: number;
  /** Corpus-wide row index of rowStart (input order across all files). */
  readonly corpusRowStart: number;
}

export interface ShardPlan {
  readonly codebookHash: string;
  readonly files: readonly CorpusFile[];
  readonly shards: readonly ShardSpec[];
  readonly totalRows: number;
  readonly idColumn: string;
  readonly textColumn: string;
}
