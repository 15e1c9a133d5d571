// The GPU benchmark's parts, rehearsed on this CPU: the bulk model header is byte-for-byte what the GGUF writer
// writes, the numpy filler makes a model that follows its plan (same bytes whatever the process count), and
// bench/gpu/run.sh --cpu runs the packed payload (carried Node.js, bundled engine, pruned node_modules) end to end
// on the prebuilt CPU binary with the tiny model and leaves its result files. Nothing is compiled.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { float16BitsToFloat32 } from '../../gguf/gguf-format.js';
import { readGguf } from '../../gguf/gguf-reader.js';
import { writeGguf } from '../../gguf/gguf-writer.js';
import { ggufLayout } from '../../gguf/gguf-writer.js';
import { gguf } from '../../gguf/gguf-format.js';
import {
  LLAMA_3_1_8B_SHAPE,
  LLAMA_3_2_1B_SHAPE,
  TINY_BPE_SHAPE,
  bulkRandomModelParts,
  f16ExponentBitsFor,
} from '../../gguf/fixtures/bulk-random-model.js';
import { PACKAGE_ROOT } from '../../contracts/package-root.js';

const FILL = path.join(PACKAGE_ROOT, 'bench', 'gpu', 'fill-gguf.py');
const RUN = path.join(PACKAGE_ROOT, 'bench', 'gpu', 'run.sh');
const PACK = path.join(PACKAGE_ROOT, '.gpu-pack');

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'rescale-gpu-bench-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('bulk random model layout', () => {
  it('lays out the header and offsets exactly as writeGguf writes the same tensors', async () => {
    const metadata = new Map([
      ['general.architecture', gguf.str('llama')],
      ['general.alignment', gguf.u32(32)],
    ]);
    const tensors = [
      { name: 'a', shape: [3], type: 'f32' as const, data: new Float32Array([1, 2, 3]) },
      { name: 'b', shape: [5, 2], type: 'f16' as const, data: new Float32Array(10).fill(0.5) },
      { name: 'c', shape: [7], type: 'f32' as const, data: new Float32Array(7) },
    ];
    const file = path.join(dir, 'layout.gguf');
    const { bytes } = await writeGguf(file, { metadata, tensors });
    const layout = ggufLayout(metadata, tensors);
    const written = readFileSync(file);
    assert.deepEqual(written.subarray(0, layout.header.length), layout.header);
    assert.equal(layout.header.length + layout.dataBytes, bytes);
    const read = readGguf(file);
    assert.deepEqual(
      read.tensors.map((t) => t.fileOffset),
      layout.offsets.map((o) => layout.header.length + o),
    );
  });

  it('sizes the 1B and 8B shapes like Llama-3.2-1B and Llama-3.1-8B (F16) with the Llama 3 vocabulary', async () => {
    const oneB = await bulkRandomModelParts(LLAMA_3_2_1B_SHAPE);
    const eightB = await bulkRandomModelParts(LLAMA_3_1_8B_SHAPE);
    // Llama-3.2-1B has 1.24B parameters with tied embeddings; here the output matrix is separate (+0.26B).
    assert.ok(oneB.plan.parameters > 1.45e9 && oneB.plan.parameters < 1.55e9, `1b: ${oneB.plan.parameters}`);
    assert.ok(eightB.plan.parameters > 8.0e9 && eightB.plan.parameters < 8.1e9, `8b: ${eightB.plan.parameters}`);
    assert.ok(eightB.plan.bytes > 16e9 && eightB.plan.bytes < 16.2e9);
    for (const t of eightB.plan.tensors) assert.ok(t.type === 'f32' ? t.value === 1 : (t.exponentBits ?? 0) >= 1);
  });

  it('picks an F16 exponent so values lie in [2^e, 2^(e+1)) with 2^e ≤ std', () => {
    assert.equal(f16ExponentBitsFor(1), 15);
    assert.equal(f16ExponentBitsFor(1 / Math.sqrt(4096)), 15 - 6);
    assert.equal(f16ExponentBitsFor(1 / Math.sqrt(14336)), 15 - 7);
    assert.throws(() => f16ExponentBitsFor(0), /positive/);
  });
});

describe('fill-gguf.py', () => {
  it('writes the tiny model as its plan says, the same bytes with 1 and 3 processes', async () => {
    const { header, plan } = await bulkRandomModelParts(TINY_BPE_SHAPE);
    const head = path.join(dir, 'tiny.head');
    const planFile = path.join(dir, 'tiny.plan.json');
    await writeFile(head, header);
    await writeFile(planFile, JSON.stringify(plan));
    const one = path.join(dir, 'one.gguf');
    const three = path.join(dir, 'three.gguf');
    const report = JSON.parse(
      execFileSync('python3', [FILL, head, planFile, one, '--procs', '1'], { encoding: 'utf8' }),
    );
    assert.equal(report.bytes, plan.bytes);
    execFileSync('python3', [FILL, head, planFile, three, '--procs', '3']);
    const a = readFileSync(one);
    assert.equal(a.length, plan.bytes);
    assert.ok(a.equals(readFileSync(three)), 'the bytes depend on the process count');

    const file = readGguf(one);
    assert.equal(file.tensors.length, plan.tensors.length);
    for (const tensor of plan.tensors) {
      if (tensor.type === 'f32') {
        const values = new Float32Array(
          a.buffer.slice(a.byteOffset + tensor.offset, a.byteOffset + tensor.offset + 16),
        );
        assert.deepEqual([...values], [1, 1, 1, 1], tensor.name);
        continue;
      }
      const bits = new Uint16Array(
        a.buffer.slice(a.byteOffset + tensor.offset, a.byteOffset + tensor.offset + tensor.elements * 2),
      );
      const e = tensor.exponentBits ?? 0;
      let negatives = 0;
      for (const b of bits) {
        assert.equal((b >> 10) & 0x1f, e, `${tensor.name}: exponent`);
        if (b & 0x8000) negatives++;
      }
      const fraction = negatives / bits.length;
      assert.ok(fraction > 0.45 && fraction < 0.55, `${tensor.name}: ${fraction} negative`);
      const v = Math.abs(float16BitsToFloat32(bits[0] ?? 0));
      assert.ok(v >= 2 ** (e - 15) && v < 2 ** (e - 14));
    }
  });

  it('refuses a header that does not match the plan, naming both files', async () => {
    const planFile = path.join(dir, 'tiny.plan.json');
    const bad = path.join(dir, 'bad.head');
    await writeFile(bad, Buffer.from('GGUF....'));
    const result = spawnSync('python3', [FILL, bad, planFile, path.join(dir, 'bad.gguf')], { encoding: 'utf8' });
    assert.equal(result.status, 2);
    assert.match(result.stderr, /bad\.head does not match .*tiny\.plan\.json/);
  });
});

describe('bench/gpu/run.sh --cpu', () => {
  it('runs the packed payload on the prebuilt CPU binary and leaves summary, results, steps and log', async () => {
    if (!existsSync(path.join(PACK, 'manifest.json'))) {
      execFileSync(process.execPath, ['--import', 'tsx', path.join(PACKAGE_ROOT, 'scripts', 'gpu-bench', 'pack.ts')], {
        stdio: 'inherit',
      });
    }
    const out = path.join(dir, 'out');
    const result = spawnSync(
      'bash',
      [RUN, '--cpu', '--out', out, '--work', path.join(dir, 'work'), '--documents', '12', '--sequences', '1,3'],
      { encoding: 'utf8', timeout: 600_000 },
    );
    assert.equal(result.status, 0, result.stdout + result.stderr);
    const steps = (await readFile(path.join(out, 'steps.tsv'), 'utf8')).trim().split('\n').slice(1);
    assert.deepEqual(
      steps.map((l) => l.split('\t')[0]),
      ['environment', 'unpack', 'fill-models', 'engine-tiny'],
    );
    for (const line of steps) assert.equal(line.split('\t')[2], '0', line);
    const results = JSON.parse(await readFile(path.join(out, 'results.json'), 'utf8'));
    const [tiny] = results.shapes;
    assert.equal(tiny.shape, 'tiny');
    assert.equal(tiny.engine.documents, 12);
    assert.equal(tiny.engine.gpu, false);
    const parts = tiny.engine.parts as { sequences: number; documents: number; nonFinite: number }[];
    assert.deepEqual(
      parts.map((p) => p.sequences),
      [1, 3, 1],
    );
    for (const p of parts) assert.equal(p.nonFinite, 0);
    const batched = tiny.engine.parts[1];
    assert.ok(batched.maxAbsDeltaP !== null && batched.maxAbsDeltaP <= 2e-3, String(batched.maxAbsDeltaP));
    assert.ok(tiny.engine.parts[2].tokensPerSecond > 0);
    assert.ok(tiny.fill.gbPerSecond > 0);
    const summary = await readFile(path.join(out, 'summary.md'), 'utf8');
    assert.match(summary, /## tiny/);
    assert.match(summary, /engine \(sequences 3\)/);
    assert.match(await readFile(path.join(out, 'log.txt'), 'utf8'), /== done in \d+ s/);
  });
});
