// rescale sample: nested stratified subsets disjoint from the held-out split, valid chat JSONL whose prompts are
// exactly what the scorer will see, Parquet splits DuckDB can read, a manifest that matches, and the CLI.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { resolveChatWrapper } from 'node-llama-cpp';
import { parseCodebook, singleQuestion } from '../../../contracts/codebook.js';
import { isRescaleError } from '../../../contracts/errors.js';
import { writeTrainingSample, type ChatMessage } from '../../../study/sampling/training-sample.js';
import { llamaBuildFromEnvironment } from '../../../contracts/environment.js';
import { getRuntime } from '../../../worker/engine/llama-runtime.js';
import { PromptBuilder } from '../../../worker/engine/prompt-builder.js';
import { runCli, writeGold } from '../../helpers/analysis-files.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';
import { queryDuckDB, sqlString, withTempDir } from '../../../scripts/harness/parquet.js';

const LABEL_OF = (i: number): string => (i % 6 < 3 ? 'neutral' : i % 6 < 5 ? 'negative' : 'positive'); // 3 : 2 : 1

function codebook(modelPath = '/nonexistent/model.gguf') {
  return parseCodebook(
    {
      task: 'sample-test',
      input: { text_column: 'text', id_column: 'id' },
      labels: [
        { name: 'negative', answer: 'neg', description: 'Bad.' },
        { name: 'neutral', description: 'Neither.' },
        { name: 'positive' },
      ],
      prompt: { system: 'Answer with one of: {labels}.', template: 'Labels:\n{label_descriptions}\n\nTweet: {text}' },
      model: { path: modelPath },
    },
    { source: 'test-codebook.yaml' },
  );
}

async function goldFile(dir: string, n = 300): Promise<string> {
  return writeGold(
    path.join(dir, 'labelled.parquet'),
    Array.from({ length: n }, (_, i) => ({
      id: 1000 + i,
      gold: LABEL_OF(i),
      text: `tweet number ${i} about {braces}`,
    })),
  );
}

async function jsonl(file: string): Promise<{ messages: ChatMessage[] }[]> {
  return (await readFile(file, 'utf8'))
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as { messages: ChatMessage[] });
}

const idOf = (example: { messages: ChatMessage[] }): string =>
  /tweet number (\d+)/.exec(example.messages[1]?.content ?? '')?.[1] ?? '';

describe('writeTrainingSample', () => {
  it('writes nested, stratified subsets disjoint from the held-out split, as chat JSONL and Parquet', async () => {
    await withTempDir(async (dir) => {
      const out = path.join(dir, 'sample');
      const sample = await writeTrainingSample({
        gold: await goldFile(dir),
        idColumn: 'id',
        textColumn: 'text',
        labelColumn: 'gold',
        sizes: [120, 30, 60],
        seed: 9,
        heldOut: 0.2,
        outDir: out,
        codebook: codebook(),
      });
      const m = sample.manifest;
      assert.deepEqual(
        m.subsets.map((s) => [s.size, s.jsonl]),
        [
          [30, 'train-030.jsonl'],
          [60, 'train-060.jsonl'],
          [120, 'train-120.jsonl'],
        ],
      );
      assert.equal(m.heldOut.size, 60);
      assert.deepEqual(m.heldOut.counts, [
        { label: 'negative', count: 20 },
        { label: 'neutral', count: 30 },
        { label: 'positive', count: 10 },
      ]);
      assert.deepEqual(m.subsets[0]?.counts, [
        { label: 'negative', count: 10 },
        { label: 'neutral', count: 15 },
        { label: 'positive', count: 5 },
      ]);
      assert.equal(m.poolSize, 240);

      const sets = [];
      for (const subset of m.subsets) {
        const examples = await jsonl(path.join(out, subset.jsonl));
        assert.equal(examples.length, subset.size);
        sets.push(new Set(examples.map(idOf)));
        const counts = new Map<string, number>();
        for (const e of examples) {
          assert.deepEqual(
            e.messages.map((x) => x.role),
            ['system', 'user', 'assistant'],
          );
          counts.set(e.messages[2]?.content ?? '', (counts.get(e.messages[2]?.content ?? '') ?? 0) + 1);
        }
        // Answers are the codebook's answer texts ("neg" for negative), in the manifest's proportions.
        assert.deepEqual([...counts.keys()].sort(), ['neg', 'neutral', 'positive']);
        assert.equal(counts.get('neg'), subset.counts.find((c) => c.label === 'negative')?.count);
      }
      for (let i = 1; i < sets.length; i++)
        for (const id of sets[i - 1] ?? [])
          assert.ok(sets[i]?.has(id), `subset ${i - 1} id ${id} missing from the next subset`);
      const heldOut = await queryDuckDB(
        `SELECT id, text, gold FROM read_parquet('${sqlString(path.join(out, 'held-out.parquet'))}') ORDER BY id`,
      );
      assert.equal(heldOut.length, 60);
      assert.equal(typeof heldOut[0]?.id, 'bigint');
      for (const row of heldOut) {
        const n = String(Number(row.id) - 1000);
        assert.ok(!(sets[2]?.has(n) ?? false), `held-out document ${n} is in a training subset`);
        assert.equal(row.gold, LABEL_OF(Number(n)));
      }
      const train = await queryDuckDB(
        `SELECT count(*) AS n FROM read_parquet('${sqlString(path.join(out, 'train-060.parquet'))}')`,
      );
      assert.equal(Number(train[0]?.n), 60);
      const first = (await jsonl(path.join(out, 'train-030.jsonl')))[0];
      assert.equal(first?.messages[0]?.content, 'Answer with one of: neg, neutral, positive.');
      assert.match(
        first?.messages[1]?.content ?? '',
        /^Labels:\n- neg: Bad\.\n- neutral: Neither\.\n- positive\n\nTweet: tweet number \d+ about \{braces\}$/,
      );
    });
  });

  it('is deterministic for a seed and changes with it', async () => {
    await withTempDir(async (dir) => {
      const gold = await goldFile(dir);
      const run = (seed: number, name: string) =>
        writeTrainingSample({
          gold,
          idColumn: 'id',
          textColumn: 'text',
          labelColumn: 'gold',
          sizes: [50],
          seed,
          heldOut: 30,
          outDir: path.join(dir, name),
        });
      const a = await run(4, 'a');
      const b = await run(4, 'b');
      const c = await run(5, 'c');
      assert.equal(a.manifest.subsets[0]?.jsonlSha256, b.manifest.subsets[0]?.jsonlSha256);
      assert.notEqual(a.manifest.subsets[0]?.jsonlSha256, c.manifest.subsets[0]?.jsonlSha256);
      assert.equal(a.manifest.prompt.source, 'default');
    });
  });

  it('renders prompts that give exactly the tokens the scorer evaluates', async () => {
    await withTempDir(async (dir) => {
      const modelPath = await fixtureModel('keyword');
      const book = codebook(modelPath);
      const sample = await writeTrainingSample({
        gold: await goldFile(dir, 60),
        idColumn: 'id',
        textColumn: 'text',
        labelColumn: 'gold',
        sizes: [10],
        seed: 1,
        heldOut: 0.5,
        outDir: path.join(dir, 's'),
        codebook: book,
      });
      const example = (await jsonl(path.join(dir, 's', sample.manifest.subsets[0]?.jsonl ?? '')))[0];
      const doc = sample.subsets[0]?.documents[0];
      assert.ok(example !== undefined && doc !== undefined);
      const llama = await getRuntime({ build: llamaBuildFromEnvironment() });
      const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
      try {
        const scorerTokens = PromptBuilder.create(model, book, singleQuestion(book)).render(
          { text: doc.text },
          256,
        ).tokens;
        const wrapper = resolveChatWrapper(model);
        assert.ok(wrapper !== null);
        const { contextText } = wrapper.generateContextState({
          chatHistory: [
            { type: 'system', text: example.messages[0]?.content ?? '' },
            { type: 'user', text: example.messages[1]?.content ?? '' },
            { type: 'model', response: [] },
          ],
        });
        assert.deepEqual(contextText.tokenize(model.tokenizer), scorerTokens);
      } finally {
        await model.dispose();
      }
    });
  });

  it('refuses gold labels the codebook does not know, naming them', async () => {
    await withTempDir(async (dir) => {
      const gold = await writeGold(path.join(dir, 'g.parquet'), [
        { id: 1, gold: 'negative', text: 'x' },
        { id: 2, gold: 'angry', text: 'y' },
      ]);
      await assert.rejects(
        writeTrainingSample({
          gold,
          idColumn: 'id',
          textColumn: 'text',
          labelColumn: 'gold',
          sizes: [1],
          seed: 1,
          heldOut: 0,
          outDir: path.join(dir, 'o'),
          codebook: codebook(),
        }),
        (e: unknown) => isRescaleError(e, 'INPUT_INVALID') && e.message.includes('"angry"'),
      );
    });
  });
});

describe('rescale sample (CLI)', () => {
  it('prints the counts per split and label, and needs --seed', async () => {
    await withTempDir(async (dir) => {
      const gold = await goldFile(dir);
      const out = path.join(dir, 'out');
      const ok = await runCli(['sample', '--gold', gold, '--sizes', '30,60', '--seed', '3', '--out', out]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /held-out\s+60\s+20\s+30\s+10\s+held-out\.parquet/);
      assert.match(ok.stdout, /train 60\s+60\s+20\s+30\s+10\s+train-60\.jsonl/);
      const manifest = JSON.parse(await readFile(path.join(out, 'sample.json'), 'utf8')) as {
        seed: number;
        kind: string;
      };
      assert.equal(manifest.seed, 3);
      const noSeed = await runCli(['sample', '--gold', gold, '--sizes', '30', '--out', out]);
      assert.equal(noSeed.code, 2);
      assert.match(noSeed.stderr, /--seed is required/);
      const tooBig = await runCli(['sample', '--gold', gold, '--sizes', '500', '--seed', '1', '--out', out]);
      assert.equal(tooBig.code, 2);
      assert.match(tooBig.stderr, /size 500 exceeds the 240 items left/);
    });
  });
});
