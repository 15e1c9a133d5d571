// Identical prompt inputs within a shard are scored once: the index remembers, per distinct input, where its first
// occurrence lies in the shard. It keys on everything the prompt builder reads (the text and each prompt column),
// and keeps a sha256 per distinct input, never the text, so its memory is bounded by the shard's rows.

import { createHash } from 'node:crypto';
import { isBlankText, type DocumentInput } from '../contracts/document-input.js';

export class DuplicateIndex {
  private readonly first = new Map<string, number>();

  /** `columns`: the input columns the prompt template names besides the text, in a fixed order. */
  constructor(private readonly columns: readonly string[]) {}

  /**
   * The position of an earlier document with the same prompt input, or null when there is none; then this document
   * becomes the first occurrence at `position`. Blank texts are never matched: they are not scored, so there is
   * nothing to copy.
   */
  claim(doc: DocumentInput, position: number): number | null {
    if (isBlankText(doc.text)) return null;
    const key = this.key(doc);
    const earlier = this.first.get(key);
    if (earlier !== undefined) return earlier;
    this.first.set(key, position);
    return null;
  }

  /** JSON of [text, column values…]: unambiguous whatever the values hold; null and absent read alike. */
  private key(doc: DocumentInput): string {
    const values = [doc.text, ...this.columns.map((name) => doc.columns?.[name] ?? null)];
    return createHash('sha256').update(JSON.stringify(values)).digest('base64');
  }
}
