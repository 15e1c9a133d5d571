// GGUF v3 constants and value types shared by the writer and the reader, plus float16 conversion
// (Node 20 has no Float16Array). Spec: ggml's docs/gguf.md.

import { GGUF_MAGIC, GGUF_VALUE_TYPE_CODES } from '../contracts/gguf-metadata.js';

// Owned by contracts/gguf-metadata.ts, whose reader of one key the coordinator and worker use.
export { GGUF_MAGIC, GGUF_VALUE_TYPE_CODES };
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

export type GgufValueTypeName = keyof typeof GGUF_VALUE_TYPE_CODES;
export type GgufNumberType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64';
export type GgufBigIntType = 'u64' | 'i64';
export type GgufScalarType = GgufNumberType | GgufBigIntType | 'bool' | 'string';

export type GgufScalarValue =
  | { readonly type: GgufNumberType; readonly value: number }
  // 64-bit integers are read as bigint; a number is accepted when writing.
  | { readonly type: GgufBigIntType; readonly value: bigint | number }
  | { readonly type: 'bool'; readonly value: boolean }
  | { readonly type: 'string'; readonly value: string };

export type GgufArrayValue =
  | { readonly type: 'array'; readonly itemType: GgufNumberType; readonly value: ArrayLike<number> }
  | { readonly type: 'array'; readonly itemType: GgufBigIntType; readonly value: ArrayLike<bigint | number> }
  | { readonly type: 'array'; readonly itemType: 'bool'; readonly value: ArrayLike<boolean> }
  | { readonly type: 'array'; readonly itemType: 'string'; readonly value: ArrayLike<string> }
  | { readonly type: 'array'; readonly itemType: 'array'; readonly value: ArrayLike<GgufArrayValue> };

/** One metadata value together with its exact GGUF type, so it can be copied verbatim. */
export type GgufValue = GgufScalarValue | GgufArrayValue;

/** Ordered metadata: GGUF keeps keys in file order. */
export type GgufMetadata = Map<string, GgufValue>;

/** Shorthand constructors, e.g. `gguf.u32(32)`, `gguf.strings(['a', 'b'])`. */
export const gguf = {
  u8: (value: number): GgufValue => ({ type: 'u8', value }),
  i8: (value: number): GgufValue => ({ type: 'i8', value }),
  u16: (value: number): GgufValue => ({ type: 'u16', value }),
  i16: (value: number): GgufValue => ({ type: 'i16', value }),
  u32: (value: number): GgufValue => ({ type: 'u32', value }),
  i32: (value: number): GgufValue => ({ type: 'i32', value }),
  f32: (value: number): GgufValue => ({ type: 'f32', value }),
  f64: (value: number): GgufValue => ({ type: 'f64', value }),
  u64: (value: bigint | number): GgufValue => ({ type: 'u64', value }),
  i64: (value: bigint | number): GgufValue => ({ type: 'i64', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  str: (value: string): GgufValue => ({ type: 'string', value }),
  strings: (value: ArrayLike<string>): GgufValue => ({ type: 'array', itemType: 'string', value }),
  numbers: (itemType: GgufNumberType, value: ArrayLike<number>): GgufValue => ({ type: 'array', itemType, value }),
} as const;

/** The ggml tensor types this project writes (codes from ggml.h's `enum ggml_type`). */
export const GGML_TYPE_CODES = { f32: 0, f16: 1 } as const;
export type GgmlTensorType = keyof typeof GGML_TYPE_CODES;
export const GGML_TYPE_SIZES: Record<GgmlTensorType, number> = { f32: 4, f16: 2 };

export function ggmlTypeFromCode(code: number): GgmlTensorType | undefined {
  for (const [name, value] of Object.entries(GGML_TYPE_CODES)) {
    if (value === code) return name as GgmlTensorType;
  }
  return undefined;
}

export function valueTypeFromCode(code: number): GgufValueTypeName | undefined {
  for (const [name, value] of Object.entries(GGUF_VALUE_TYPE_CODES)) {
    if (value === code) return name as GgufValueTypeName;
  }
  return undefined;
}

export function alignUp(offset: number, alignment: number): number {
  return Math.ceil(offset / alignment) * alignment;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE 754 binary16 bits of a number, rounded to nearest even (the same rounding as ggml's F16 conversion). */
export function float32ToFloat16Bits(value: number): number {
  f32Scratch[0] = value;
  const bits = u32Scratch[0] ?? 0;
  const sign = (bits >>> 16) & 0x8000;
  const exponent32 = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent32 === 0xff) return sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200);
  const exponent = exponent32 - 127 + 15;
  if (exponent >= 0x1f) return sign | 0x7c00;
  if (exponent <= 0) {
    if (exponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - exponent;
    let half = mantissa >>> shift;
    const remainder = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (remainder > halfway || (remainder === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (exponent << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (remainder > 0x1000 || (remainder === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
