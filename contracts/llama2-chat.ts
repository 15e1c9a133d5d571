// Whether a chat codebook's model uses Llama-2's chat layout, decided from the GGUF's own chat template, so the
// coordinator (from the file, for the result hash) and the worker (from the loaded model, to render) agree.
// Such prompts are rendered as Meta's reference does (worker/engine/prompt-builder.ts), not by node-llama-cpp.

import { open, stat } from 'node:fs/promises';
import type { Codebook } from './codebook.js';

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

const GGUF_MAGIC = 0x46554747;
const CHAT_TEMPLATE_KEY = 'tokenizer.chat_template';
/** Byte size of each GGUF metadata value type by its code; strings (8) and arrays (9) have their own length. */
const SCALAR_BYTES: Readonly<Record<number, number>> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  10: 8,
  11: 8,
  12: 8,
};
const STRING = 8;
const ARRAY = 9;
const templateCache = new Map<string, Promise<string | null>>();

/**
 * The `tokenizer.chat_template` of a GGUF file, null when it has none or is not a GGUF file (loading it fails later,
 * with its own error). Reads the metadata only, in order, stopping at the key; memoised by path, size and mtime.
 * gguf/gguf-reader.ts reads whole headers for the fixture generator; this needs one key of any model's.
 */
export async function ggufChatTemplate(file: string): Promise<string | null> {
  const info = await stat(file);
  const key = `${file}\0${info.size}\0${info.mtimeMs}`;
  let pending = templateCache.get(key);
  if (pending === undefined) {
    pending = readChatTemplate(file);
    templateCache.set(key, pending);
    pending.catch(() => templateCache.delete(key));
  }
  return pending;
}

async function readChatTemplate(file: string): Promise<string | null> {
  const handle = await open(file, 'r');
  try {
    const reader = new MetadataReader(handle);
    if ((await reader.u32()) !== GGUF_MAGIC) return null;
    const version = await reader.u32();
    if (version < 2 || version > 3) return null;
    await reader.skip(8); // tensor count
    const count = await reader.u64();
    for (let i = 0; i < count; i++) {
      const name = await reader.string();
      const type = await reader.u32();
      if (name === CHAT_TEMPLATE_KEY && type === STRING) return await reader.string();
      await reader.skipValue(type);
    }
    return null;
  } catch (error) {
    if (error instanceof UnreadableGguf) return null;
    throw error;
  } finally {
    await handle.close();
  }
}

class UnreadableGguf extends Error {}

/** Reads forward through a file in 1 MiB chunks. */
class MetadataReader {
  private buffer = Buffer.alloc(0);
  private offset = 0;
  private filePosition = 0;

  constructor(private readonly handle: Awaited<ReturnType<typeof open>>) {}

  private async need(length: number): Promise<void> {
    if (this.offset + length <= this.buffer.length) return;
    const rest = this.buffer.subarray(this.offset);
    const next = Buffer.alloc(Math.max(length, 1 << 20));
    rest.copy(next);
    const { bytesRead } = await this.handle.read(next, rest.length, next.length - rest.length, this.filePosition);
    this.filePosition += bytesRead;
    this.buffer = next.subarray(0, rest.length + bytesRead);
    this.offset = 0;
    if (this.buffer.length < length) throw new UnreadableGguf();
  }

  async u32(): Promise<number> {
    await this.need(4);
    const value = this.buffer.readUInt32LE(this.offset);
    this.offset += 4;
    return value;
  }

  async u64(): Promise<number> {
    await this.need(8);
    const value = this.buffer.readBigUInt64LE(this.offset);
    this.offset += 8;
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new UnreadableGguf();
    return Number(value);
  }

  async string(): Promise<string> {
    const length = await this.u64();
    await this.need(length);
    const value = this.buffer.toString('utf8', this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  async skip(length: number): Promise<void> {
    while (length > 0) {
      const step = Math.min(length, 1 << 20);
      await this.need(step);
      this.offset += step;
      length -= step;
    }
  }

  async skipValue(type: number): Promise<void> {
    if (type === STRING) return this.skip(await this.u64());
    if (type === ARRAY) {
      const itemType = await this.u32();
      const length = await this.u64();
      const size = SCALAR_BYTES[itemType];
      if (size !== undefined) return this.skip(size * length);
      for (let i = 0; i < length; i++) await this.skipValue(itemType);
      return;
    }
    const size = SCALAR_BYTES[type];
    if (size === undefined) throw new UnreadableGguf();
    return this.skip(size);
  }
}
