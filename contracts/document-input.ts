// One document as the scorer and the fallback see it: its text and the other input columns its prompt uses.

export interface DocumentInput {
  /** The document text; null or blank gives status empty_text. */
  readonly text: string | null;
  /** Values of other input columns the template uses. */
  readonly columns?: Readonly<Record<string, string | null | undefined>> | undefined;
}

/** A text that is not scored (status empty_text): null, empty or only whitespace. */
export function isBlankText(text: string | null): boolean {
  return text === null || text.trim() === '';
}
