// Reads whole columns of a small analysis input (gold labels, result files, labelled samples) with errors that name
// the option the file came from, the file and the column; and writes the Parquet files the analysis commands emit.

import { open } from 'node:fs/promises';
import path from 'node:path';
import { parquetRead, type SchemaElement } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { parquetWriteBuffer, type ColumnSource } from 'hyparquet-writer';
import { RescaleError, errorMessage, isRescaleError } from '../contracts/errors.js';
import { writeBytesAtomic } from './atomic-file.js';
import { fileAsyncBuffer, readParquetFooter, topLevelColumnNames } from './parquet-rows.js';

export interface ColumnRequest {
  readonly name: string;
  /** The option that chose the name (e.g. "--label-column"), for the error message; omit for fixed schema columns. */
  readonly option?: string;
  /** A missing optional column is simply absent from the result. */
  readonly optional?: boolean;
}

export interface ParquetTable {
  /** Absolute path. */
  readonly file: string;
  readonly rows: number;
  readonly columnNames: readonly string[];
  /** Key-value metadata of the footer (e.g. rescale.labels). */
  readonly keyValue: ReadonlyMap<string, string>;
  /** Values of each requested column the file has, in row order (INT64 as bigint). */
  readonly columns: ReadonlyMap<string, readonly unknown[]>;
}

/**
 * Reads the requested columns of one Parquet file completely. `role` says where the file came from (e.g.
 * "--gold") so every error points at the option to fix.
 */
export async function readParquetTable(
  file: string,
  role: string,
  requests: readonly ColumnRequest[],
): Promise<ParquetTable> {
  const absolute = path.resolve(file);
  let handle;
  try {
    handle = await open(absolute, 'r');
  } catch (cause) {
    throw new RescaleError(
      'INPUT_NOT_FOUND',
      `${role} ${absolute}: cannot open it (${(cause as NodeJS.ErrnoException).code ?? errorMessage(cause)}); check ` +
        'the path',
      { cause },
    );
  }
  try {
    let footer;
    try {
      footer = await readParquetFooter(handle, absolute);
    } catch (cause) {
      if (isRescaleError(cause)) throw new RescaleError(cause.code, `${role}: ${cause.message}`, { cause });
      throw cause;
    }
    const { size, metadata } = footer;
    const columnNames = topLevelColumnNames(metadata);
    const present = requests.filter((r) => columnNames.includes(r.name));
    const missing = requests.filter((r) => !r.optional && !columnNames.includes(r.name));
    if (missing.length > 0) {
      const first = missing[0] as ColumnRequest;
      const fix = first.option ? `; pass ${first.option} with the right column name` : '';
      throw new RescaleError(
        'COLUMN_MISSING',
        `${role} ${absolute} has no column "${first.name}"${fix} (it has: ${columnNames.join(', ')})`,
      );
    }
    const names = [...new Set(present.map((r) => r.name))];
    const columns = new Map<string, unknown[]>(names.map((name) => [name, []]));
    if (names.length > 0 && Number(metadata.num_rows) > 0) {
      let rows: unknown[][] = [];
      try {
        await parquetRead({
          file: fileAsyncBuffer(handle, size),
          metadata,
          columns: names,
          compressors,
          onComplete: (result: unknown[][]) => {
            rows = result;
          },
        });
      } catch (cause) {
        throw new RescaleError(
          'INPUT_INVALID',
          `${role} ${absolute}: cannot read columns ${names.join(', ')} (${errorMessage(cause)}); is the file ` +
            'complete?',
          { cause },
        );
      }
      names.forEach((name, c) => {
        const values = columns.get(name) as unknown[];
        for (const row of rows) values.push(row[c]);
      });
    }
    const keyValue = new Map<string, string>();
    for (const entry of metadata.key_value_metadata ?? []) {
      if (entry.value !== undefined) keyValue.set(entry.key, entry.value);
    }
    return { file: absolute, rows: Number(metadata.num_rows), columnNames, keyValue, columns };
  } finally {
    await handle.close();
  }
}

/** A UTF8 string column's Parquet schema element. */
export function utf8Element(name: string, nullable: boolean): SchemaElement {
  const repetition_type = nullable ? 'OPTIONAL' : 'REQUIRED';
  return { name, type: 'BYTE_ARRAY', converted_type: 'UTF8', logical_type: { type: 'STRING' }, repetition_type };
}

/** A list-of-strings column's Parquet schema elements (Parquet's three-level LIST of UTF8, Arrow List<Utf8>). */
export function utf8ListElements(name: string, nullable: boolean): SchemaElement[] {
  return [
    {
      name,
      repetition_type: nullable ? 'OPTIONAL' : 'REQUIRED',
      converted_type: 'LIST',
      logical_type: { type: 'LIST' },
      num_children: 1,
    },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    utf8Element('element', false),
  ];
}

/** Writes columns to a Parquet file atomically (storage/atomic-file.ts), so a failed write leaves nothing behind. */
export async function writeParquetAtomic(
  file: string,
  columnData: readonly ColumnSource[],
  /** An explicit schema (root first), for what column types cannot say (lists); the columns then carry no type. */
  schema?: readonly SchemaElement[],
): Promise<void> {
  try {
    // Encoded in memory (the same bytes parquetWriteFile streams): these analysis files are small.
    const options = { columnData: [...columnData], ...(schema !== undefined ? { schema: [...schema] } : {}) };
    await writeBytesAtomic(file, new Uint8Array(parquetWriteBuffer(options)));
  } catch (cause) {
    throw new RescaleError(
      'OUTPUT_NOT_WRITABLE',
      `cannot write ${file}: ${errorMessage(cause)}; choose a folder you can write to`,
      { cause },
    );
  }
}
