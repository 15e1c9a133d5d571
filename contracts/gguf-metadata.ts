// GGUF's header constants and value types (owned here, re-exported by gguf/gguf-format.ts, since contracts/ imports no
// other folder), and a reader of one string key of any model's metadata that reads only as far as that key.

import { open } from 'node:fs/promises';
import { RescaleError } from './errors.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32

/** Metadata value types with their on-disk codes. */
export const GGUF_VALUE_TYPE_CODES = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

const { string: STRING, array: ARRAY } = GGUF_VALUE_TYPE_CODES;

/** Byte size of each fixed-size value type by its code; strings and arrays carry their own length. */
const FIXED_SIZES: ReadonlyMap<number, number> = new Map(
  (
    [
      ['u8', 1],
      ['i8', 1],
      ['u16', 2],
      ['i16', 2],
      ['u32', 4],
      ['i32', 4],
      ['f32', 4],
      ['bool', 1],
      ['u64', 8],
      ['i64', 8],
      ['f64', 8],
    ] as const
  ).map(([type, size]) => [GGUF_VALUE_TYPE_CODES[type], size]),
);

/** Not a GGUF file (wrong magic or version, cut short): the caller leaves the error to the model loader. */
class NotGguf extends Error {}

/**
 * The string value of metadata `key` in a GGUF file (v2 or v3): null when the file has no such string key, is not a
 * GGUF file, or is cut short. Reads the metadata in order, stopping at the key; other values are skipped by their
 * sizes, except arrays of strings (the vocabulary's tokens and merges), whose entries are stepped over one length at a
 * time (~130 ms for a 128k vocabulary). A length that runs past the end of the file is an error naming it.
 */
export async function readGgufMetadataString(file: string, key: string): Promise<string | null> {
  const handle = await open(file, 'r');
  try {
    const reader = new MetadataReader(handle, file, (await handle.stat()).size);
    if ((await reader.u32()) !== GGUF_MAGIC) return null;
    const version = await reader.u32();
    if (version < 2 || version > 3) return null;
    reader.skip(8); // tensor count
    const count = await reader.length('metadata count');
    for (let i = 0; i < count; i++) {
      const name = await reader.string();
      const type = await reader.u32();
      if (name === key && type === STRING) return await reader.string();
      await reader.skipValue(type);
    }
    return null;
  } catch (error) {
    if (error instanceof NotGguf) return null;
    throw error;
  } finally {
    await handle.close();
  }
}

/** Reads forward through a file in chunks of up to 1 MiB; skipped bytes are not read. */
class MetadataReader {
  private buffer = Buffer.alloc(0);
  /** File offset of `buffer[0]`. */
  private bufferStart = 0;
  /** File offset of the next byte to parse. */
  private position = 0;

  constructor(
    private readonly handle: Awaited<ReturnType<typeof open>>,
    private readonly file: string,
    private readonly size: number,
  ) {}

  private async take(length: number): Promise<number> {
    const offset = this.position - this.bufferStart;
    if (offset + length > this.buffer.length) {
      if (this.position + length > this.size) throw new NotGguf();
      const next = Buffer.alloc(Math.min(Math.max(length, 1 << 20), this.size - this.position));
      const { bytesRead } = await this.handle.read(next, 0, next.length, this.position);
      if (bytesRead < length) throw new NotGguf();
      this.buffer = next.subarray(0, bytesRead);
      this.bufferStart = this.position;
    }
    const at = this.position - this.bufferStart;
    this.position += length;
    return at;
  }

  /** `length`, checked to lie within the file from the current position. */
  private checkedLength(length: number, what: string): number {
    if (this.position + length > this.size) {
      throw new RescaleError(
        'MODEL_INVALID',
        `GGUF file ${this.file}: ${what} of ${length} bytes at byte ${this.position} runs past the end of the file ` +
          `(${this.size} bytes); the file is corrupt or cut short: download it again`,
      );
    }
    return length;
  }

  async u32(): Promise<number> {
    const at = await this.take(4); // before reading this.buffer, which take may replace
    return this.buffer.readUInt32LE(at);
  }

  /** A u64 count or length. */
  async length(what: string): Promise<number> {
    const at = await this.take(8);
    const value = this.buffer.readBigUInt64LE(at);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new RescaleError(
        'MODEL_INVALID',
        `GGUF file ${this.file}: ${what} ${value} at byte ${this.position - 8} is impossibly large; the file is ` +
          'corrupt: download it again',
      );
    }
    return Number(value);
  }

  async string(): Promise<string> {
    const length = this.checkedLength(await this.length('string length'), 'a string');
    const at = await this.take(length);
    return this.buffer.toString('utf8', at, at + length);
  }

  skip(length: number, what = 'a value'): void {
    this.position += this.checkedLength(length, what);
  }

  async skipValue(type: number): Promise<void> {
    if (type === STRING) {
      this.skip(await this.length('string length'), 'a string');
      return;
    }
    if (type === ARRAY) {
      const itemType = await this.u32();
      const length = await this.length('array length');
      const size = FIXED_SIZES.get(itemType);
      if (size !== undefined) this.skip(size * length, 'an array');
      else for (let i = 0; i < length; i++) await this.skipValue(itemType);
      return;
    }
    const size = FIXED_SIZES.get(type);
    if (size === undefined) throw new NotGguf();
    this.skip(size);
  }
}
