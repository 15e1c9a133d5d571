// Reads a GGUF file's metadata (each value with its exact GGUF type, so it can be copied verbatim into a new
// file) and its tensor infos; tensor data is read only on request.

import { closeSync, openSync, readSync } from 'node:fs';
import {
  GGML_TYPE_SIZES,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  alignUp,
  float16BitsToFloat32,
  ggmlTypeFromCode,
  valueTypeFromCode,
  type GgmlTensorType,
  type GgufArrayValue,
  type GgufBigIntType,
  type GgufMetadata,
  type GgufScalarType,
  type GgufScalarValue,
  type GgufValue,
  type GgufValueTypeName,
} from './gguf-format.js';

export interface GgufTensorInfo {
  readonly name: string;
  /** ggml order: shape[0] (ne[0]) is the row length. */
  readonly shape: readonly number[];
  readonly type: GgmlTensorType;
  /** Offset from the start of the file. */
  readonly fileOffset: number;
  readonly byteLength: number;
}

export interface GgufFile {
  readonly path: string;
  readonly version: number;
  readonly metadata: GgufMetadata;
  readonly tensors: readonly GgufTensorInfo[];
  readonly alignment: number;
  readonly dataOffset: number;
}

/** Reads forward through a file, fetching more bytes only when the parser needs them. */
class FileCursor {
  private buffer = Buffer.alloc(0);
  private bufferStart = 0;
  position = 0;

  constructor(
    private readonly fd: number,
    private readonly path: string,
  ) {}

  private ensure(length: number): number {
    const offset = this.position - this.bufferStart;
    if (offset + length <= this.buffer.length) return offset;
    const chunk = Math.max(length, 1 << 20);
    const next = Buffer.alloc(chunk);
    const read = readSync(this.fd, next, 0, chunk, this.position);
    if (read < length) throw new Error(`GGUF file ${this.path} is truncated at byte ${this.position + read}`);
    this.buffer = next.subarray(0, read);
    this.bufferStart = this.position;
    return 0;
  }

  private take(length: number): { buffer: Buffer; offset: number } {
    const offset = this.ensure(length);
    this.position += length;
    return { buffer: this.buffer, offset };
  }

  u8(): number {
    const { buffer, offset } = this.take(1);
    return buffer.readUInt8(offset);
  }
  i8(): number {
    const { buffer, offset } = this.take(1);
    return buffer.readInt8(offset);
  }
  u16(): number {
    const { buffer, offset } = this.take(2);
    return buffer.readUInt16LE(offset);
  }
  i16(): number {
    const { buffer, offset } = this.take(2);
    return buffer.readInt16LE(offset);
  }
  u32(): number {
    const { buffer, offset } = this.take(4);
    return buffer.readUInt32LE(offset);
  }
  i32(): number {
    const { buffer, offset } = this.take(4);
    return buffer.readInt32LE(offset);
  }
  f32(): number {
    const { buffer, offset } = this.take(4);
    return buffer.readFloatLE(offset);
  }
  f64(): number {
    const { buffer, offset } = this.take(8);
    return buffer.readDoubleLE(offset);
  }
  u64(): bigint {
    const { buffer, offset } = this.take(8);
    return buffer.readBigUInt64LE(offset);
  }
  i64(): bigint {
    const { buffer, offset } = this.take(8);
    return buffer.readBigInt64LE(offset);
  }

  safeU64(what: string): number {
    const value = this.u64();
    if (value > BigInt(Number.MAX_SAFE_INTEGER))
      throw new Error(`GGUF file ${this.path}: ${what} ${value} is too large`);
    return Number(value);
  }

  string(): string {
    const length = this.safeU64('string length');
    const { buffer, offset } = this.take(length);
    return buffer.toString('utf8', offset, offset + length);
  }
}

function readTypeCode(cursor: FileCursor, path: string): GgufValueTypeName {
  const code = cursor.u32();
  const type = valueTypeFromCode(code);
  if (type === undefined)
    throw new Error(`GGUF file ${path}: unknown metadata value type ${code} at byte ${cursor.position - 4}`);
  return type;
}

function readScalar(cursor: FileCursor, type: GgufScalarType): GgufScalarValue {
  switch (type) {
    case 'string':
      return { type, value: cursor.string() };
    case 'bool':
      return { type, value: cursor.u8() !== 0 };
    case 'u64':
      return { type, value: cursor.u64() };
    case 'i64':
      return { type, value: cursor.i64() };
    default:
      return { type, value: cursor[type]() };
  }
}

function readArray(cursor: FileCursor, path: string): GgufArrayValue {
  const itemType = readTypeCode(cursor, path);
  const length = cursor.safeU64('array length');
  if (itemType === 'array') {
    const value: GgufArrayValue[] = [];
    for (let i = 0; i < length; i++) value.push(readArray(cursor, path));
    return { type: 'array', itemType, value };
  }
  switch (itemType) {
    case 'string': {
      const value: string[] = new Array<string>(length);
      for (let i = 0; i < length; i++) value[i] = cursor.string();
      return { type: 'array', itemType, value };
    }
    case 'bool': {
      const value: boolean[] = new Array<boolean>(length);
      for (let i = 0; i < length; i++) value[i] = cursor.u8() !== 0;
      return { type: 'array', itemType, value };
    }
    case 'u64':
    case 'i64': {
      const value: bigint[] = new Array<bigint>(length);
      for (let i = 0; i < length; i++) value[i] = itemType === 'u64' ? cursor.u64() : cursor.i64();
      return { type: 'array', itemType, value };
    }
    default: {
      const value: number[] = new Array<number>(length);
      for (let i = 0; i < length; i++) value[i] = cursor[itemType]();
      return { type: 'array', itemType, value };
    }
  }
}

function readValue(cursor: FileCursor, path: string): GgufValue {
  const type = readTypeCode(cursor, path);
  return type === 'array' ? readArray(cursor, path) : readScalar(cursor, type);
}

/** Parses header, metadata and tensor infos (not tensor data). */
export function readGguf(path: string): GgufFile {
  const fd = openSync(path, 'r');
  try {
    const cursor = new FileCursor(fd, path);
    if (cursor.u32() !== GGUF_MAGIC) throw new Error(`${path} is not a GGUF file (bad magic)`);
    const version = cursor.u32();
    if (version < 2 || version > 3)
      throw new Error(`GGUF file ${path} has version ${version}; only 2 and 3 are supported`);
    const tensorCount = cursor.safeU64('tensor count');
    const kvCount = cursor.safeU64('metadata count');

    const metadata: GgufMetadata = new Map();
    for (let i = 0; i < kvCount; i++) {
      const key = cursor.string();
      metadata.set(key, readValue(cursor, path));
    }
    const alignmentValue = metadata.get('general.alignment');
    const alignment = alignmentValue?.type === 'u32' ? alignmentValue.value : GGUF_DEFAULT_ALIGNMENT;

    const infos: { name: string; shape: number[]; type: GgmlTensorType; offset: number }[] = [];
    for (let i = 0; i < tensorCount; i++) {
      const name = cursor.string();
      const dims = cursor.u32();
      const shape: number[] = [];
      for (let d = 0; d < dims; d++) shape.push(cursor.safeU64(`tensor '${name}' dimension`));
      const code = cursor.u32();
      const type = ggmlTypeFromCode(code);
      if (type === undefined)
        throw new Error(`GGUF file ${path}: tensor '${name}' has ggml type ${code}; only F32 and F16 are supported`);
      infos.push({ name, shape, type, offset: cursor.safeU64(`tensor '${name}' offset`) });
    }
    const dataOffset = alignUp(cursor.position, alignment);
    const tensors = infos.map(({ name, shape, type, offset }) => ({
      name,
      shape,
      type,
      fileOffset: dataOffset + offset,
      byteLength: shape.reduce((product, dim) => product * dim, 1) * GGML_TYPE_SIZES[type],
    }));
    return { path, version, metadata, tensors, alignment, dataOffset };
  } finally {
    closeSync(fd);
  }
}

/** A tensor's values as float32 (F16 is widened). */
export function readGgufTensor(file: GgufFile, name: string): Float32Array {
  const info = file.tensors.find((tensor) => tensor.name === name);
  if (info === undefined) throw new Error(`GGUF file ${file.path} has no tensor '${name}'`);
  const bytes = Buffer.alloc(info.byteLength);
  const fd = openSync(file.path, 'r');
  try {
    const read = readSync(fd, bytes, 0, bytes.length, info.fileOffset);
    if (read !== bytes.length) throw new Error(`GGUF file ${file.path} is truncated inside tensor '${name}'`);
  } finally {
    closeSync(fd);
  }
  const count = info.byteLength / GGML_TYPE_SIZES[info.type];
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    values[i] = info.type === 'f32' ? bytes.readFloatLE(i * 4) : float16BitsToFloat32(bytes.readUInt16LE(i * 2));
  }
  return values;
}

type ScalarOf<T extends GgufScalarType> = T extends GgufBigIntType
  ? bigint | number
  : T extends 'bool'
    ? boolean
    : T extends 'string'
      ? string
      : number;

/** A scalar metadata value, checked against the expected type. */
export function ggufScalar<T extends GgufScalarType>(
  metadata: GgufMetadata,
  key: string,
  type: T,
): ScalarOf<T> | undefined {
  const value = metadata.get(key);
  if (value === undefined) return undefined;
  if (value.type !== type) throw new Error(`GGUF metadata '${key}' has type ${value.type}, expected ${type}`);
  return (value as GgufScalarValue).value as ScalarOf<T>;
}
