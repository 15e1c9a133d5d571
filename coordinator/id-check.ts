// Reads the planned rows' id column once at planning and says what would otherwise surface only when the results are
// evaluated: missing ids, NaN or infinite float ids, -0 beside 0, and ids that repeat within a file or across files.

import type { DocumentId } from '../contracts/results.js';
import type { ShardPlan } from '../contracts/shard.js';
import { readShardRows, toDocumentId } from '../storage/parquet-rows.js';

/** Above this many planned rows, ids are checked for nulls and non-finite values but not for duplicates (memory). */
export const MAX_DUPLICATE_CHECK_ROWS = 10_000_000;

const EXAMPLES = 3;

export interface IdCheck {
  readonly column: string;
  readonly rows: number;
  readonly nulls: number;
  readonly nan: number;
  readonly infinite: number;
  readonly negativeZero: number;
  /** Rows whose id appeared earlier in the same file; null when duplicates were not checked. */
  readonly duplicatesWithinFiles: number | null;
  /** Rows whose id appeared earlier only in another file; null when duplicates were not checked. */
  readonly duplicatesAcrossFiles: number | null;
  /** A few repeated ids as text. */
  readonly examples: readonly string[];
}

/**
 * The text an id is compared by: -0, NaN and ±Infinity keep their own spelling (String(-0) is "0"), integers of any
 * width compare by their decimal text, strings (hex for binary ids) as they are.
 */
export function idText(id: DocumentId): string {
  if (typeof id === 'number' && Object.is(id, -0)) return '-0';
  return String(id);
}

/** Checks the id column over the planned rows; null when the plan has no id column (row indexes are the ids). */
export async function checkCorpusIds(plan: ShardPlan, signal?: AbortSignal): Promise<IdCheck | null> {
  const column = plan.idColumn;
  if (column === null) return null;
  const checkDuplicates = plan.totalRows <= MAX_DUPLICATE_CHECK_ROWS;
  const firstFile = new Map<string, number>();
  const fileIndex = new Map(plan.files.map((file, i) => [file.path, i]));
  const examples: string[] = [];
  let rows = 0;
  let nulls = 0;
  let nan = 0;
  let infinite = 0;
  let negativeZero = 0;
  let within = 0;
  let across = 0;
  for (const shard of plan.shards) {
    const file = fileIndex.get(shard.file) ?? -1;
    for await (const batch of readShardRows(shard, [column], signal === undefined ? {} : { signal })) {
      for (const value of batch.columns.get(column) ?? []) {
        rows += 1;
        const id = toDocumentId(value);
        if (id === null) {
          nulls += 1;
          continue;
        }
        if (typeof id === 'number') {
          if (Number.isNaN(id)) nan += 1;
          else if (!Number.isFinite(id)) infinite += 1;
          else if (Object.is(id, -0)) negativeZero += 1;
        }
        if (!checkDuplicates) continue;
        const key = idText(id);
        const seenIn = firstFile.get(key);
        if (seenIn === undefined) {
          firstFile.set(key, file);
          continue;
        }
        if (seenIn === file) within += 1;
        else across += 1;
        if (examples.length < EXAMPLES && !examples.includes(key)) examples.push(key);
      }
    }
  }
  return {
    column,
    rows,
    nulls,
    nan,
    infinite,
    negativeZero,
    duplicatesWithinFiles: checkDuplicates ? within : null,
    duplicatesAcrossFiles: checkDuplicates ? across : null,
    examples,
  };
}

/** The planning warnings an id check gives (none for a clean id column). */
export function idCheckWarnings(check: IdCheck | null): string[] {
  if (check === null) return [];
  const { column } = check;
  const warnings: string[] = [];
  const of = `of ${check.rows} planned rows`;
  if (check.nulls > 0) {
    warnings.push(
      `Id column "${column}": ${check.nulls} ${of} have no id (null); their results have a null id and cannot be ` +
        'joined to gold labels by id',
    );
  }
  if (check.nan + check.infinite > 0) {
    warnings.push(
      `Id column "${column}": ${check.nan} ${of} have the id NaN and ${check.infinite} an infinite id; they are ` +
        'kept as such in the results (NaN, Infinity, -Infinity), but an id column of integers or strings is safer',
    );
  }
  if (check.negativeZero > 0) {
    warnings.push(
      `Id column "${column}": ${check.negativeZero} ${of} have the id -0, which rescale keeps apart from 0`,
    );
  }
  const shown = check.examples.map((id) => JSON.stringify(id)).join(', ');
  if (check.duplicatesWithinFiles !== null && check.duplicatesWithinFiles > 0) {
    warnings.push(
      `Id column "${column}": ${check.duplicatesWithinFiles} ${of} repeat an id seen earlier in the same file ` +
        `(e.g. ${shown}); every row is still classified, but evaluate and report need unique ids per file: ` +
        'deduplicate the corpus or choose another id column',
    );
  }
  if (check.duplicatesAcrossFiles !== null && check.duplicatesAcrossFiles > 0) {
    warnings.push(
      `Id column "${column}": ${check.duplicatesAcrossFiles} ${of} reuse an id of another corpus file ` +
        `(e.g. ${shown}); every row is classified, and evaluate and report key such results by file and id`,
    );
  }
  if (check.duplicatesWithinFiles === null) {
    warnings.push(
      `Id column "${column}": ${check.rows} planned rows are more than ${MAX_DUPLICATE_CHECK_ROWS}; ids were ` +
        'checked for nulls and NaN but not for duplicates',
    );
  }
  return warnings;
}
