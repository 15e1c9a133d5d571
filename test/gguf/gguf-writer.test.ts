// The GGUF writer and reader: every metadata type round-trips with its exact type, tensors are aligned, F16 is
// rounded like ggml, and node-llama-cpp's own GGUF parser reads what we write.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readGgufFileInfo } from 'node-llama-cpp';
import { float16BitsToFloat32, float32ToFloat16Bits, gguf, type GgufMetadata } from '../../gguf/gguf-format.js';
import { readGguf, readGgufTensor } from '../../gguf/gguf-reader.js';
import { writeGguf } from '../../gguf/gguf-writer.js';
import { readVocab } from '../../gguf/fixtures/vocab.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rescale-gguf-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const everyType: GgufMetadata = new Map([
  ['general.architecture', gguf.str('llama')],
  ['test.u8', gguf.u8(255)],
  ['test.i8', gguf.i8(-128)],
  ['test.u16', gguf.u16(65535)],
  ['test.i16', gguf.i16(-32768)],
  ['test.u32', gguf.u32(4294967295)],
  ['test.i32', gguf.i32(-2147483648)],
  ['test.f32', gguf.f32(0.5)],
  ['test.f64', gguf.f64(Math.PI)],
  ['test.u64', gguf.u64(2n ** 63n + 5n)],
  ['test.i64', gguf.i64(-(2n ** 62n))],
  ['test.bool', gguf.bool(true)],
  ['test.string', gguf.str('héllo\nwörld ✓')],
  ['test.strings', gguf.strings(['a', '', 'ünïcode'])],
  ['test.i32s', gguf.numbers('i32', [1, -2, 3])],
  ['test.f32s', gguf.numbers('f32', [0.25, -1.5])],
  ['test.bools', { type: 'array', itemType: 'bool', value: [true, false] }],
  ['test.u64s', { type: 'array', itemType: 'u64', value: [1n, 2n] }],
  [
    'test.nested',
    {
      type: 'array',
      itemType: 'array',
      value: [
        { type: 'array', itemType: 'string', value: ['x'] },
        { type: 'array', itemType: 'i32', value: [7, 8] },
      ],
    },
  ],
]);

function plain(metadata: GgufMetadata): unknown {
  return JSON.parse(
    JSON.stringify([...metadata], (_key, value: unknown) =>
      typeof value === 'bigint' ? `${value}n` : ArrayBuffer.isView(value) ? Array.from(value as Float32Array) : value,
    ),
  );
}

describe('writeGguf / readGguf', () => {
  it('round-trips every metadata value type with its exact GGUF type', async () => {
    const path = join(dir, 'types.gguf');
    await writeGguf(path, { metadata: everyType, tensors: [] });
    const file = readGguf(path);
    assert.equal(file.version, 3);
    const expected = new Map(everyType);
    expected.set('general.alignment', gguf.u32(32));
    // Numbers written as f32 come back as the nearest float32; these values are exact.
    assert.deepEqual(plain(file.metadata), plain(expected));
  });

  it('writes F32 and F16 tensors at 32-byte aligned offsets that read back', async () => {
    const path = join(dir, 'tensors.gguf');
    const a = Float32Array.from({ length: 3 * 5 }, (_, i) => i - 7.25);
    const b = Float32Array.from({ length: 7 }, (_, i) => 1 / (i + 1));
    await writeGguf(path, {
      metadata: new Map([['general.architecture', gguf.str('llama')]]),
      tensors: [
        { name: 'a', shape: [3, 5], type: 'f32', data: a },
        { name: 'b', shape: [7], type: 'f16', data: () => b },
        { name: 'c', shape: [1], type: 'f32', data: Float32Array.of(42) },
      ],
    });
    const file = readGguf(path);
    assert.equal(file.dataOffset % 32, 0);
    for (const tensor of file.tensors) assert.equal((tensor.fileOffset - file.dataOffset) % 32, 0, tensor.name);
    assert.deepEqual(
      file.tensors.map((t) => [t.name, t.shape, t.type]),
      [
        ['a', [3, 5], 'f32'],
        ['b', [7], 'f16'],
        ['c', [1], 'f32'],
      ],
    );
    assert.deepEqual(readGgufTensor(file, 'a'), a);
    assert.deepEqual(
      readGgufTensor(file, 'b'),
      Float32Array.from(b, (v) => float16BitsToFloat32(float32ToFloat16Bits(v))),
    );
    assert.deepEqual(readGgufTensor(file, 'c'), Float32Array.of(42));
    assert.equal(readFileSync(path).length % 32, 0);
  });

  it('is read by node-llama-cpp’s own GGUF parser', async () => {
    const path = join(dir, 'types.gguf');
    const info = await readGgufFileInfo(path, { readTensorInfo: true });
    assert.equal(info.version, 3);
    const metadata = info.metadata as unknown as { test: Record<string, unknown>; general: { alignment: number } };
    assert.equal(metadata.general.alignment, 32);
    assert.equal(metadata.test.string, 'héllo\nwörld ✓');
    assert.deepEqual(metadata.test.strings, ['a', '', 'ünïcode']);
    assert.equal(metadata.test.i32, -2147483648);
  });

  it('copies a real tokenizer’s metadata verbatim (byte-identical on rewrite)', async () => {
    const vocab = await readVocab('llama-spm');
    const source = readGguf(vocab.path);
    const first = join(dir, 'copy-1.gguf');
    const second = join(dir, 'copy-2.gguf');
    await writeGguf(first, { metadata: source.metadata, tensors: [] });
    await writeGguf(second, { metadata: readGguf(first).metadata, tensors: [] });
    assert.deepEqual(readFileSync(second), readFileSync(first));
    const copied = readGguf(first).metadata;
    for (const [key, value] of source.metadata) assert.deepEqual(copied.get(key), value, key);
  });

  it('converts to F16 with round-to-nearest-even, subnormals and overflow like ggml', () => {
    assert.equal(float32ToFloat16Bits(1), 0x3c00);
    assert.equal(float32ToFloat16Bits(-2), 0xc000);
    assert.equal(float32ToFloat16Bits(65504), 0x7bff);
    assert.equal(float32ToFloat16Bits(65520), 0x7c00); // rounds up to infinity
    assert.equal(float32ToFloat16Bits(2 ** -24), 0x0001); // smallest subnormal
    assert.equal(float32ToFloat16Bits(2 ** -26), 0x0000);
    assert.equal(float32ToFloat16Bits(1 + 2 ** -11), 0x3c00); // tie goes to even
    assert.equal(float32ToFloat16Bits(1 + 3 * 2 ** -11), 0x3c02);
    assert.ok(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(NaN))));
    for (const value of [0.1, -3.75, 1e-5, 1234.5]) {
      assert.ok(
        Math.abs(float16BitsToFloat32(float32ToFloat16Bits(value)) - value) <= Math.abs(value) * 2 ** -11 + 2 ** -25,
      );
    }
  });

  it('refuses a tensor whose data does not match its shape, leaving no file behind', async () => {
    const path = join(dir, 'bad.gguf');
    await assert.rejects(
      writeGguf(path, {
        metadata: new Map(),
        tensors: [{ name: 'x', shape: [4], type: 'f32', data: new Float32Array(3) }],
      }),
      /shape \[4\] needs 4 values, got 3/,
    );
    assert.throws(() => readFileSync(path));
    assert.deepEqual(
      (await readdir(dir)).filter((file) => file.endsWith('.tmp')),
      [],
    );
  });
});
