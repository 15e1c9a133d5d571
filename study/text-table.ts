// Plain-text tables and number formats for terminal output and Markdown docs: columns padded to their widest cell.

import type { BootstrapInterval } from './evaluation/bootstrap.js';

export type Align = 'left' | 'right';

function width(text: string): number {
  return [...text].length;
}

function pad(text: string, size: number, align: Align): string {
  const fill = ' '.repeat(Math.max(0, size - width(text)));
  return align === 'left' ? text + fill : fill + text;
}

/** A table with a header rule; the first column is left-aligned, the others right-aligned unless `align` says. */
export function formatTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  align?: readonly Align[],
): string {
  const columns = header.length;
  const sizes = header.map((h, c) => Math.max(width(h), ...rows.map((r) => width(r[c] ?? ''))));
  const alignOf = (c: number): Align => align?.[c] ?? (c === 0 ? 'left' : 'right');
  const line = (cells: readonly string[]): string =>
    Array.from({ length: columns }, (_, c) => pad(cells[c] ?? '', sizes[c] as number, alignOf(c)))
      .join('  ')
      .trimEnd();
  return [line(header), sizes.map((s) => '-'.repeat(s)).join('  '), ...rows.map(line)].join('\n');
}

/** The same table as GitHub Markdown. */
export function formatMarkdownTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  align?: readonly Align[],
): string {
  const alignOf = (c: number): Align => align?.[c] ?? (c === 0 ? 'left' : 'right');
  const esc = (cell: string): string => cell.replace(/\|/g, '\\|');
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `| ${header.map((_, c) => (alignOf(c) === 'left' ? ':---' : '---:')).join(' | ')} |`,
    ...rows.map((r) => `| ${header.map((_, c) => esc(r[c] ?? '')).join(' | ')} |`),
  ].join('\n');
}

/** A number with fixed decimals; "n/a" for NaN or null (an undefined metric). */
export function fixed(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || Number.isNaN(value)) return 'n/a';
  const text = value.toFixed(digits);
  return text === `-${(0).toFixed(digits)}` ? (0).toFixed(digits) : text;
}

/** "0.612 [0.595, 0.630]". */
export function withInterval(ci: BootstrapInterval, digits = 3): string {
  if (Number.isNaN(ci.estimate)) return 'n/a';
  return `${fixed(ci.estimate, digits)} [${fixed(ci.lower, digits)}, ${fixed(ci.upper, digits)}]`;
}

/** "+0.012 [-0.004, +0.029]" for differences. */
export function signedInterval(ci: BootstrapInterval, digits = 3): string {
  const s = (v: number): string => (v > 0 ? '+' : '') + fixed(v, digits);
  return `${s(ci.estimate)} [${s(ci.lower)}, ${s(ci.upper)}]`;
}

/** Share as a percentage: "12.5%". */
export function percent(share: number, digits = 1): string {
  return `${fixed(share * 100, digits)}%`;
}
