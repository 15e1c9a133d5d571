// How a codebook's validation problems are worded, in one place: each names the field and, when the codebook came
// from a YAML file, its line; none echoes a value the file holds. A codebook path is chosen by whoever submits a run,
// and the coordinator returns these messages to them and logs them: a file that is not a codebook (a password file,
// a token file, another service's configuration) must not come back line by line through its keys or values.

import type { z } from 'zod';

/** Where a field (or one of its keys) is in the source file; null when not known (a codebook given as an object). */
export type FieldLocator = (path: readonly PropertyKey[], key?: string) => number | null;

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/;

/** An unknown key's name when it looks like a field name (a misspelling worth showing), else only its length. */
export function describeUnknownKey(key: string): string {
  return PLAIN_KEY.test(key) ? `"${key}"` : `of ${key.length} characters (not shown)`;
}

/**
 * A short, escaped excerpt of text from a file: at most `max` characters, control characters and quotes escaped, so
 * it never spans lines or hides terminal escapes.
 */
export function shortExcerpt(text: string, max = 60): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return JSON.stringify(cut);
}

export function formatIssuePath(issuePath: readonly PropertyKey[]): string {
  let out = '';
  for (const key of issuePath) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out === '' ? '(top level)' : out;
}

/** `field "a.b" (line 3)`: the field and, when known, where it is. */
export function fieldAt(issuePath: readonly PropertyKey[], locate: FieldLocator | null, key?: string): string {
  const line = locate?.(issuePath, key) ?? null;
  return `field "${formatIssuePath(issuePath)}"${line !== null ? ` (line ${line})` : ''}`;
}

/**
 * One line per zod issue, under `prefix` (e.g. ["fallback"]): the field, its line, and the schema's own message —
 * which describes what is expected, never the value found. Unknown keys are named only when they look like field
 * names, and their values never. `fieldsDoc` says where the file's fields are described.
 */
export function issueLines(
  issues: readonly z.core.$ZodIssue[],
  prefix: readonly PropertyKey[],
  locate: FieldLocator | null,
  fieldsDoc = 'the codebook fields (README, "The codebook")',
): string[] {
  const lines: string[] = [];
  for (const issue of issues) {
    const at = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        lines.push(
          `${fieldAt(at, locate, key)}: unknown key ${describeUnknownKey(key)}; remove it or check its spelling ` +
            `against ${fieldsDoc}`,
        );
      }
    } else {
      lines.push(`${fieldAt(at, locate)}: ${issue.message}`);
    }
  }
  return lines;
}
