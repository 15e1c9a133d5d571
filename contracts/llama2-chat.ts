// Whether a chat codebook's model uses Llama-2's chat layout, decided from the GGUF's own chat template, so the
// coordinator (from the file, for the result hash) and the worker (from the loaded model, to render) agree.
// Such prompts are rendered as Meta's reference does (worker/engine/prompt-builder.ts), not by node-llama-cpp.

import { stat } from 'node:fs/promises';
import type { Codebook } from './codebook.js';
import { readGgufMetadataString } from './gguf-metadata.js';

/**
 * A Llama-2 chat template (Llama-2-chat, Code Llama - Instruct): `[INST]` turns with the `<<SYS>>` system block.
 * Mistral's `[INST]` templates have no `<<SYS>>` and keep node-llama-cpp's rendering.
 */
export function isLlama2ChatTemplate(template: string | null | undefined): boolean {
  return (
    typeof template === 'string' &&
    template.includes('[INST]') &&
    template.includes('[/INST]') &&
    template.includes('<<SYS>>')
  );
}

/** Whether the codebook's prompts are Llama-2 chat turns: chat format on a model with a Llama-2 chat template. */
export async function usesLlama2Chat(codebook: Codebook): Promise<boolean> {
  return codebook.prompt.format === 'chat' && isLlama2ChatTemplate(await ggufChatTemplate(codebook.model.path));
}

const templateCache = new Map<string, Promise<string | null>>();

/**
 * The `tokenizer.chat_template` of a GGUF file, null when it has none or is not a GGUF file (loading it fails later,
 * with its own error); a corrupt length in its metadata is an error naming the file. Reads the metadata only as far as
 * the key (readGgufMetadataString); memoised by path, size and mtime.
 */
export async function ggufChatTemplate(file: string): Promise<string | null> {
  const info = await stat(file);
  const key = `${file}\0${info.size}\0${info.mtimeMs}`;
  let pending = templateCache.get(key);
  if (pending === undefined) {
    pending = readGgufMetadataString(file, 'tokenizer.chat_template');
    templateCache.set(key, pending);
    pending.catch(() => templateCache.delete(key));
  }
  return pending;
}
