// JSON outputs of the analysis commands (evaluation, calibration, sample manifests): written atomically
// (storage/atomic-file.ts), read back with an error naming the file and the option.

import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import { writeBytesAtomic } from '../storage/atomic-file.js';

/** Pretty JSON with NaN and ±Infinity as null (JSON has neither) and bigints as strings. */
export function toJson(value: unknown): string {
  const replacer = (_key: string, v: unknown): unknown =>
    typeof v === 'bigint' ? v.toString() : typeof v === 'number' && !Number.isFinite(v) ? null : v;
  return `${JSON.stringify(value, replacer, 2)}\n`;
}

export async function writeJsonFile(file: string, value: unknown): Promise<string> {
  const absolute = path.resolve(file);
  try {
    await mkdir(path.dirname(absolute), { recursive: true });
    await writeBytesAtomic(absolute, toJson(value));
  } catch (cause) {
    throw new RescaleError(
      'OUTPUT_NOT_WRITABLE',
      `cannot write ${absolute}: ${(cause as NodeJS.ErrnoException).code ?? errorMessage(cause)}; choose a folder ` +
        `you can write to`,
      { cause },
    );
  }
  return absolute;
}

/** Reads a JSON file written by one of the analysis commands; `kind` is checked when given. */
export async function readJsonFile(file: string, option: string, kind?: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new RescaleError(
      'INPUT_NOT_FOUND',
      `${option} ${file}: cannot read it (${(cause as NodeJS.ErrnoException).code ?? errorMessage(cause)}); check ` +
        `the path`,
      { cause },
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new RescaleError('INPUT_INVALID', `${option} ${file} is not valid JSON (${errorMessage(cause)})`, { cause });
  }
  if (
    kind !== undefined &&
    (typeof value !== 'object' || value === null || (value as { kind?: unknown }).kind !== kind)
  ) {
    throw new RescaleError(
      'INPUT_INVALID',
      `${option} ${file} is not a ${kind} file; pass the JSON written by the matching rescale command`,
    );
  }
  return value;
}
