// Turns the user's corpus input (Parquet files, directories, globs) into the ordered list of files to
// classify, reading each footer once: rows, row groups, columns and a fingerprint of the content.

import type { Dirent } from 'node:fs';
import { open, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { parquetSchema, type FileMetaData, type SchemaElement } from 'hyparquet';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import type { CorpusColumn, CorpusFile } from '../contracts/shard.js';
import { isRescaleOutputName } from '../storage/output-layout.js';
import { readParquetFooter } from '../storage/parquet-rows.js';

const GLOB_MAGIC = /[*?[{]/;
const FOOTER_CONCURRENCY = 8;

/**
 * Expands each input in order and reads every file's footer. A directory means every *.parquet file
 * below it (recursively, skipping hidden and `_`-prefixed entries such as Spark's `_SUCCESS` and
 * `_temporary`, and rescale's own results: a file with its manifest, lock or parts folder beside it); a glob
 * supports `*`, `?`, `**`, `[abc]` and `{a,b}`. Files are sorted by path
 * (code-point order, so the order and the row indexes never depend on locale). Symlinks are followed, but a file is
 * counted once by its real path (at its first position, under the name it was first reached by), a folder reached
 * twice is listed once and a symlink loop is not entered. What was skipped, and files with the same content
 * fingerprint (copies whose documents would be classified twice), go to `options.warnings`.
 */
export async function resolveCorpus(
  input: string | readonly string[],
  options: { readonly warnings?: string[] } = {},
): Promise<CorpusFile[]> {
  const warnings = options.warnings ?? [];
  const inputs = typeof input === 'string' ? [input] : [...input];
  if (inputs.length === 0) {
    throw new RescaleError(
      'INPUT_NOT_FOUND',
      'No corpus input given: pass a Parquet file, a directory of *.parquet files, or a glob such as ' +
        '"data/**/*.parquet".',
    );
  }
  const paths: string[] = [];
  const seen = new Map<string, string>();
  for (const item of inputs) {
    for (const filePath of await expandInput(item, warnings)) {
      const real = await realpath(filePath).catch(() => filePath);
      const first = seen.get(real);
      if (first !== undefined) {
        if (first !== filePath) {
          warnings.push(`Corpus file ${filePath} is the same file as ${first} (a symlink); it is counted once`);
        }
        continue;
      }
      seen.set(real, filePath);
      paths.push(filePath);
    }
  }
  const files = await mapConcurrent(paths, FOOTER_CONCURRENCY, readCorpusFile);
  const byFingerprint = new Map<string, string>();
  for (const file of files) {
    warnings.push(...(file.warnings ?? []));
    const first = byFingerprint.get(file.fingerprint);
    if (first === undefined) byFingerprint.set(file.fingerprint, file.path);
    else {
      warnings.push(
        `Corpus files ${first} and ${file.path} have the same content fingerprint (byte-identical copies?): the ` +
          'documents of both are classified; drop one from the corpus if that is not intended',
      );
    }
  }
  return files;
}

/** Reads one file's footer into a CorpusFile; INPUT_INVALID names the file if it is not complete Parquet. */
export async function readCorpusFile(filePath: string): Promise<CorpusFile> {
  const absolute = path.resolve(filePath);
  let handle;
  try {
    handle = await open(absolute, 'r');
  } catch (cause) {
    throw new RescaleError(
      'INPUT_NOT_FOUND',
      `Cannot open corpus file ${absolute} (${errorMessage(cause)}); check the path and its permissions.`,
      { cause },
    );
  }
  try {
    const { size, metadata, fingerprint, warnings } = await readParquetFooter(handle, absolute);
    let rowStart = 0;
    const rowGroups = metadata.row_groups.map((group) => {
      const rows = Number(group.num_rows);
      const entry = { rowStart, rows };
      rowStart += rows;
      return entry;
    });
    const columns = corpusColumns(metadata, absolute);
    return {
      path: absolute,
      size,
      fingerprint,
      rows: rowStart,
      rowGroups,
      columns,
      ...(warnings.length > 0 ? { warnings } : {}),
    };
  } finally {
    await handle.close();
  }
}

function corpusColumns(metadata: FileMetaData, filePath: string): CorpusColumn[] {
  try {
    return parquetSchema(metadata).children.map(({ element, children }) => ({
      name: element.name,
      physicalType: children.length > 0 ? 'GROUP' : (element.type ?? 'GROUP'),
      logicalType: logicalTypeName(element),
      nullable: element.repetition_type !== 'REQUIRED',
      ...(element.repetition_type === 'REPEATED' ? { repeated: true as const } : {}),
    }));
  } catch (cause) {
    throw new RescaleError(
      'INPUT_INVALID',
      `Corpus file ${filePath} has a schema that cannot be read (${errorMessage(cause)}): it is corrupt.`,
      { cause },
    );
  }
}

/** Logical type, else converted type; integers spelled INT_8 ... UINT_64 so their width and sign survive. */
function logicalTypeName(element: SchemaElement): string | null {
  const logical = element.logical_type;
  if (logical !== undefined) {
    if (logical.type === 'INTEGER') return `${logical.isSigned ? '' : 'U'}INT_${logical.bitWidth}`;
    return logical.type;
  }
  if (element.converted_type === undefined) return null;
  return element.converted_type === 'UTF8' ? 'STRING' : element.converted_type;
}

async function expandInput(input: string, warnings: string[]): Promise<string[]> {
  const absolute = path.resolve(input);
  const info = await stat(absolute).catch(() => undefined);
  if (info === undefined) {
    // A literal path wins over a glob reading, so files named with brackets still work.
    if (GLOB_MAGIC.test(input)) return expandGlob(input, absolute, warnings);
    throw new RescaleError(
      'INPUT_NOT_FOUND',
      `Corpus input ${input} does not exist (resolved to ${absolute}); check the path.`,
    );
  }
  if (info.isFile()) return [absolute];
  if (!info.isDirectory()) {
    throw new RescaleError(
      'INPUT_INVALID',
      `Corpus input ${absolute} is neither a file nor a directory; pass Parquet files, directories or globs.`,
    );
  }
  const files = await walk(
    absolute,
    (relative, isFile) => !isFile || relative.endsWith('.parquet'),
    Infinity,
    warnings,
  );
  if (files.length === 0) {
    throw new RescaleError(
      'INPUT_NOT_FOUND',
      `Directory ${absolute} contains no *.parquet files; point the corpus at the files or use a glob.`,
    );
  }
  return files;
}

async function expandGlob(input: string, absolute: string, warnings: string[]): Promise<string[]> {
  const segments = absolute.split(path.sep);
  const firstMagic = segments.findIndex((segment) => GLOB_MAGIC.test(segment));
  const base = segments.slice(0, firstMagic).join(path.sep) || path.sep;
  const pattern = segments.slice(firstMagic).join('/');
  const matcher = globToRegExp(pattern);
  const depth = pattern.includes('**') ? Infinity : pattern.split('/').length;
  const baseInfo = await stat(base).catch(() => undefined);
  const files =
    baseInfo?.isDirectory() === true
      ? await walk(base, (relative, isFile) => !isFile || matcher.test(relative), depth, warnings)
      : [];
  if (files.length === 0) {
    throw new RescaleError(
      'INPUT_NOT_FOUND',
      `Glob ${input} matched no files under ${base}; check the pattern (quote it so the shell does not expand it).`,
    );
  }
  return files;
}

/**
 * Files below `root` accepted by `keep`, as absolute paths sorted by their relative path in code-point order. Folders
 * are followed through symlinks but listed once by real path; a folder that is its own ancestor (a loop) is skipped.
 */
async function walk(
  root: string,
  keep: (relative: string, isFile: boolean) => boolean,
  maxDepth: number,
  warnings: string[],
): Promise<string[]> {
  const found: string[] = [];
  /** Real paths of the folders listed so far → the path they were first reached by. */
  const walked = new Map<string, string>();
  const visit = async (dir: string, relative: string, depth: number, ancestors: readonly string[]): Promise<void> => {
    const real = await realpath(dir).catch(() => dir);
    if (ancestors.includes(real)) {
      warnings.push(`Corpus folder ${dir} is a symlink loop (it leads back to ${real}); it is not entered`);
      return;
    }
    const first = walked.get(real);
    if (first !== undefined) {
      warnings.push(
        `Corpus folder ${real} is reached twice (as ${first} and ${dir}); its files are counted once, under ${first}`,
      );
      return;
    }
    walked.set(real, dir);
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (cause) {
      throw new RescaleError(
        'INPUT_NOT_FOUND',
        `Cannot list corpus directory ${dir} (${errorMessage(cause)}); check its permissions.`,
        { cause },
      );
    }
    const all = new Set(entries.map((entry) => entry.name));
    const names = [...all]
      .filter((name) => !name.startsWith('.') && !name.startsWith('_') && !isRescaleOutputName(name, all))
      .sort(compareCodePoints);
    for (const name of names) {
      const full = path.join(dir, name);
      const rel = relative === '' ? name : `${relative}/${name}`;
      const info = await stat(full).catch(() => undefined); // follows symlinks; dangling ones are skipped
      if (info?.isFile() === true) {
        if (keep(rel, true)) found.push(full);
      } else if (info?.isDirectory() === true && depth > 1) {
        await visit(full, rel, depth - 1, [...ancestors, real]);
      }
    }
  };
  await visit(root, '', maxDepth, []);
  return found;
}

function compareCodePoints(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A small glob matcher over '/'-separated relative paths (Node 20 has no fs.glob): `*` and `?` stay
 * within a path segment, a `**` segment spans any number of segments, `[...]` is a character class
 * (`[!...]` negated) and `{a,b}` an alternative.
 */
export function globToRegExp(glob: string): RegExp {
  let source = '';
  let braceDepth = 0;
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i] ?? '';
    if (char === '*') {
      const double = glob[i + 1] === '*';
      const segmentStart = i === 0 || glob[i - 1] === '/';
      const segmentEnd = i + 2 === glob.length || glob[i + 2] === '/';
      if (double && segmentStart && segmentEnd) {
        if (glob[i + 2] === '/') {
          source += '(?:[^/]+/)*';
          i += 2;
        } else {
          source += '.*';
          i += 1;
        }
      } else {
        source += '[^/]*';
        if (double) i += 1;
      }
    } else if (char === '?') {
      source += '[^/]';
    } else if (char === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close < 0) {
        source += '\\[';
        continue;
      }
      let body = glob.slice(i + 1, close);
      const negated = body.startsWith('!') || body.startsWith('^');
      if (negated) body = body.slice(1);
      source += `[${negated ? '^' : ''}${body.replace(/[\\\]]/g, '\\$&')}]`;
      i = close;
    } else if (char === '{') {
      braceDepth += 1;
      source += '(?:';
    } else if (char === '}' && braceDepth > 0) {
      braceDepth -= 1;
      source += ')';
    } else if (char === ',' && braceDepth > 0) {
      source += '|';
    } else {
      source += char.replace(/[.+^$()|\\\]{}]/g, '\\$&');
    }
  }
  if (braceDepth > 0)
    throw new RescaleError('INPUT_INVALID', `Glob ${glob} has an unclosed "{"; close it or escape the brace.`);
  return new RegExp(`^${source}$`);
}

async function mapConcurrent<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const run = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run));
  return results;
}
