// Writes GGUF v3 files: typed metadata, F32/F16 tensors, aligned tensor data. Written to a temporary file and
// renamed into place, so a reader (or a concurrent test) never sees a half-written model.

import { open, rename, rm } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import {
  GGML_TYPE_CODES,
  GGML_TYPE_SIZES,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VALUE_TYPE_CODES,
  GGUF_VERSION,
  alignUp,
  float32ToFloat16Bits,
  type GgmlTensorType,
  type GgufArrayValue,
  type GgufMetadata,
  type GgufScalarType,
  type GgufValue,
} from './gguf-format.js';

export interface GgufTensorSpec {
  readonly name: string;
  /** Dimensions in ggml order: shape[0] (ne[0]) is the length of one row, the fastest-varying index. */
  readonly shape: readonly number[];
  readonly type: GgmlTensorType;
  /** Row-major values; a function is called only when the tensor is written, to keep peak memory at one tensor. */
  readonly data: Float32Array | (() => Float32Array);
}

export interface GgufFileSpec {
  readonly metadata: GgufMetadata;
  readonly tensors: readonly GgufTensorSpec[];
}

export interface GgufWriteResult {
  readonly bytes: number;
}

/** Little-endian byte sink that grows as needed. */
class ByteWriter {
  private buffer = Buffer.alloc(1 << 16);
  length = 0;

  private reserve(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    const next = Buffer.alloc(Math.max(this.buffer.length * 2, this.length + extra));
    this.buffer.copy(next, 0, 0, this.length);
    this.buffer = next;
  }

  u8(v: number): void {
    this.reserve(1);
    this.buffer.writeUInt8(v, this.length);
    this.length += 1;
  }
  i8(v: number): void {
    this.reserve(1);
    this.buffer.writeInt8(v, this.length);
    this.length += 1;
  }
  u16(v: number): void {
    this.reserve(2);
    this.buffer.writeUInt16LE(v, this.length);
    this.length += 2;
  }
  i16(v: number): void {
    this.reserve(2);
    this.buffer.writeInt16LE(v, this.length);
    this.length += 2;
  }
  u32(v: number): void {
    this.reserve(4);
    this.buffer.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.buffer.writeInt32LE(v, this.length);
    this.length += 4;
  }
  f32(v: number): void {
    this.reserve(4);
    this.buffer.writeFloatLE(v, this.length);
    this.length += 4;
  }
  f64(v: number): void {
    this.reserve(8);
    this.buffer.writeDoubleLE(v, this.length);
    this.length += 8;
  }
  u64(v: bigint | number): void {
    this.reserve(8);
    this.buffer.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  i64(v: bigint | number): void {
    this.reserve(8);
    this.buffer.writeBigInt64LE(BigInt(v), this.length);
    this.length += 8;
  }

  string(v: string): void {
    const bytes = Buffer.from(v, 'utf8');
    this.u64(bytes.length);
    this.reserve(bytes.length);
    bytes.copy(this.buffer, this.length);
    this.length += bytes.length;
  }

  padTo(alignment: number): void {
    const target = alignUp(this.length, alignment);
    this.reserve(target - this.length);
    this.buffer.fill(0, this.length, target);
    this.length = target;
  }

  bytes(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

function writeScalar(out: ByteWriter, type: GgufScalarType, value: unknown, key: string): void {
  const expect = (kind: string): never => {
    throw new TypeError(`GGUF metadata '${key}': a ${type} value must be a ${kind}, got ${typeof value}`);
  };
  switch (type) {
    case 'string':
      return typeof value === 'string' ? out.string(value) : expect('string');
    case 'bool':
      return typeof value === 'boolean' ? out.u8(value ? 1 : 0) : expect('boolean');
    case 'u64':
    case 'i64':
      if (typeof value !== 'bigint' && typeof value !== 'number') return expect('bigint or number');
      return type === 'u64' ? out.u64(value) : out.i64(value);
    default:
      if (typeof value !== 'number') return expect('number');
      out[type](value);
  }
}

function writeArray(out: ByteWriter, array: GgufArrayValue, key: string): void {
  out.u32(GGUF_VALUE_TYPE_CODES[array.itemType]);
  out.u64(array.value.length);
  for (let i = 0; i < array.value.length; i++) {
    const item = array.value[i];
    if (array.itemType === 'array') writeArray(out, item as GgufArrayValue, key);
    else writeScalar(out, array.itemType, item, key);
  }
}

function writeValue(out: ByteWriter, value: GgufValue, key: string): void {
  out.u32(GGUF_VALUE_TYPE_CODES[value.type]);
  if (value.type === 'array') writeArray(out, value, key);
  else writeScalar(out, value.type, value.value, key);
}

function elementCount(tensor: GgufTensorLayoutSpec): number {
  return tensor.shape.reduce((product, dim) => product * dim, 1);
}

function tensorBytes(tensor: GgufTensorSpec): Buffer {
  const values = typeof tensor.data === 'function' ? tensor.data() : tensor.data;
  if (values.length !== elementCount(tensor)) {
    throw new RangeError(
      `GGUF tensor '${tensor.name}': shape [${tensor.shape.join(', ')}] needs ${elementCount(tensor)} values, got ` +
        `${values.length}`,
    );
  }
  // GGUF is little-endian, as are the typed arrays on every platform llama.cpp runs on.
  if (tensor.type === 'f32') return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  const half = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) half[i] = float32ToFloat16Bits(values[i] ?? 0);
  return Buffer.from(half.buffer);
}

/** A tensor's place in the file, without its values. */
export type GgufTensorLayoutSpec = Pick<GgufTensorSpec, 'name' | 'shape' | 'type'>;

/** Builds everything before the tensor data: header, metadata, tensor infos, padding. */
function encodeHeader(
  file: { readonly metadata: GgufMetadata; readonly tensors: readonly GgufTensorLayoutSpec[] },
  alignment: number,
): { header: Buffer; offsets: number[]; dataBytes: number } {
  const metadata: GgufMetadata = new Map(file.metadata);
  if (!metadata.has('general.alignment')) metadata.set('general.alignment', { type: 'u32', value: alignment });

  const out = new ByteWriter();
  out.u32(GGUF_MAGIC);
  out.u32(GGUF_VERSION);
  out.u64(file.tensors.length);
  out.u64(metadata.size);
  for (const [key, value] of metadata) {
    out.string(key);
    writeValue(out, value, key);
  }

  const offsets: number[] = [];
  let offset = 0;
  const names = new Set<string>();
  for (const tensor of file.tensors) {
    if (names.has(tensor.name)) throw new Error(`GGUF tensor '${tensor.name}' is listed twice`);
    names.add(tensor.name);
    out.string(tensor.name);
    out.u32(tensor.shape.length);
    for (const dim of tensor.shape) out.u64(dim);
    out.u32(GGML_TYPE_CODES[tensor.type]);
    out.u64(offset);
    offsets.push(offset);
    offset = alignUp(offset + elementCount(tensor) * GGML_TYPE_SIZES[tensor.type], alignment);
  }
  out.padTo(alignment);
  return { header: out.bytes(), offsets, dataBytes: offset };
}

export interface GgufLayout {
  /** Everything before the tensor data (magic, metadata, tensor infos, padding). */
  readonly header: Buffer;
  /** Each tensor's data offset from the end of the header, in `tensors` order. */
  readonly offsets: readonly number[];
  /** Length of the data section, the last tensor padded to the alignment: the file is header + dataBytes long. */
  readonly dataBytes: number;
}

/**
 * The header of a GGUF file and where each tensor's data goes, for writers that fill the data section themselves
 * (models too large to pass through Float32Arrays). Same bytes and offsets as `writeGguf` produces.
 */
export function ggufLayout(metadata: GgufMetadata, tensors: readonly GgufTensorLayoutSpec[]): GgufLayout {
  const alignmentValue = metadata.get('general.alignment');
  const alignment = alignmentValue?.type === 'u32' ? alignmentValue.value : GGUF_DEFAULT_ALIGNMENT;
  return encodeHeader({ metadata, tensors }, alignment);
}

/** Writes a GGUF v3 file; `general.alignment` is added (32) unless the metadata sets it. */
export async function writeGguf(path: string, file: GgufFileSpec): Promise<GgufWriteResult> {
  const alignmentValue = file.metadata.get('general.alignment');
  const alignment = alignmentValue?.type === 'u32' ? alignmentValue.value : GGUF_DEFAULT_ALIGNMENT;
  const { header, offsets } = encodeHeader(file, alignment);

  const temporaryPath = `${path}.${randomUUID()}.tmp`;
  const handle = await open(temporaryPath, 'w');
  let position = 0;
  try {
    await handle.write(header, 0, header.length, position);
    position += header.length;
    const dataStart = position;
    for (const [index, tensor] of file.tensors.entries()) {
      position = dataStart + (offsets[index] ?? 0);
      const bytes = tensorBytes(tensor);
      await handle.write(bytes, 0, bytes.length, position);
      position += bytes.length;
    }
    // Pad the last tensor too, as gguf.c does, so the data section is a whole number of alignment units.
    const end = dataStart + alignUp(position - dataStart, alignment);
    if (end > position) await handle.write(Buffer.alloc(end - position), 0, end - position, position);
    position = end;
  } catch (error) {
    await handle.close();
    await rm(temporaryPath, { force: true });
    throw error;
  }
  await handle.close();
  await rename(temporaryPath, path);
  return { bytes: position };
}
