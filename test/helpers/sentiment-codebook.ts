// The three-label sentiment codebook the local-run tests write for the keyword fixture model.

/** `system` replaces the instruction (a changed codebook). */
export function sentimentCodebookYaml(
  modelPath: string,
  system = 'You are a careful annotator. Answer with one label.',
): string {
  return `task: sentiment
input:
  text_column: text
  id_column: id
labels:
  - name: negative
  - name: neutral
  - name: positive
prompt:
  system: ${system}
  template: "Classify the sentiment of the tweet as one of: {labels}.\\n\\nTweet: {text}"
model:
  path: ${JSON.stringify(modelPath)}
  max_document_tokens: 64
  threads: 2
`;
}
