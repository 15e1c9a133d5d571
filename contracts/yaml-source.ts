// A YAML file as rescale's configuration files are read: parsed with unique keys and bounded aliases, a syntax error
// reported by its line, column and kind only (never the file's lines: the file may hold secrets or not be what it was
// named as), and a locator that gives the line of a field for validation messages.

import { isMap, isScalar, LineCounter, parseDocument, type Document } from 'yaml';
import { RescaleError, type ErrorCode } from './errors.js';
import { shortExcerpt, type FieldLocator } from './validation-issues.js';

export interface YamlSource {
  readonly raw: unknown;
  readonly locate: FieldLocator;
}

export interface YamlSourceOptions {
  /** The error code of a file that cannot be parsed. */
  readonly code: ErrorCode;
  /** What the file should be, for messages: "a codebook". */
  readonly what: string;
  /** What to check after a syntax error: "the --codebook path". */
  readonly check: string;
}

export function parseYamlSource(text: string, file: string, options: YamlSourceOptions): YamlSource {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const [error] = document.errors;
  if (error !== undefined) {
    const position = lineCounter.linePos(error.pos[0]);
    // The parser's sentence up to its first ": " (after which some messages quote the file).
    const what = (error.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '').split(': ')[0] ?? '';
    throw new RescaleError(
      options.code,
      `${file} is not valid YAML at line ${position.line}, column ${position.col} (${error.code}: ` +
        `${shortExcerpt(what)}); check ${options.check} and the file's indentation`,
    );
  }
  let raw: unknown;
  try {
    raw = document.toJS({ maxAliasCount: 100 });
  } catch {
    throw new RescaleError(
      options.code,
      `${file} is not ${options.what}: its YAML aliases cannot be resolved (or expand too far); write the values out`,
    );
  }
  return { raw, locate: yamlLocator(document, lineCounter) };
}

/** The line of a field (or of one key inside it) in a parsed YAML document. */
function yamlLocator(document: Document, lineCounter: LineCounter): FieldLocator {
  return (fieldPath, key) => {
    const node: unknown = fieldPath.length === 0 ? document.contents : document.getIn(fieldPath, true);
    let offset: number | undefined;
    if (key !== undefined && isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === key);
      offset = isScalar(pair?.key) ? pair.key.range?.[0] : undefined;
    } else if (node !== null && typeof node === 'object' && 'range' in node) {
      offset = (node as { range?: [number, number, number] | null }).range?.[0];
    }
    return offset === undefined ? null : lineCounter.linePos(offset).line;
  };
}
