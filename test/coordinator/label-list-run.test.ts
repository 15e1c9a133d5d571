// A list multi-label codebook (`multi_label.format: list`) through the local pipeline (`rescale run`): the merged
// Parquet as DuckDB reads it holds the most probable set as a list column, each label's marginal, the set's
// probability and the unscored mass, equal to what LabelSetScorer gives for the same prompts scored on their own; a
// second run writes the same bytes. Beside a single-label question (the document evaluated once, each question's
// tail after it) the list question's columns still equal LabelSetScorer's for that layout.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LlamaModel, Token } from 'node-llama-cpp';
import { loadCodebook, type Codebook, type Question } from '../../contracts/codebook.js';
import { llamaBuildFromEnvironment } from '../../contracts/environment.js';
import { runLocalMode } from '../../cli/local-mode.js';
import { planContext } from '../../worker/engine/context-plan.js';
import { LabelSetScorer, type SetScore } from '../../worker/engine/label-set-scorer.js';
import { getRuntime, loadModel } from '../../worker/engine/llama-runtime.js';
import { PromptBuilder } from '../../worker/engine/prompt-builder.js';
import { SequencePool } from '../../worker/engine/sequence-pool.js';
import { serialDecode } from '../../worker/engine/serial-decode.js';
import { fixtureModel } from '../../scripts/harness/fixture-models.js';
import {
  duckDBTypes,
  queryDuckDB,
  sqlString,
  withTempDir,
  writeParquetWithDuckDB,
} from '../../scripts/harness/parquet.js';

/** The subjects question's labels, in codebook order. */
const names = ['social', 'law', 'arts'];

let modelPath: string;
let model: LlamaModel;
before(async () => {
  modelPath = await fixtureModel('small');
  model = await loadModel(await getRuntime({ build: llamaBuildFromEnvironment() }), modelPath, 0);
});
after(async () => {
  await model.dispose();
});

/** With `tone`, a single-label question comes first and the template asks each question after the document. */
function codebookYaml(tone = false): string {
  const toneQuestion = `
  - name: tone
    question: "Tone:"
    labels: [{ name: dry }, { name: lively }]`;
  return `task: subjects
input:
  id_column: id
questions:${tone ? toneQuestion : ''}
  - name: subjects
    question: "Subjects:"
    type: multi_label
    labels:
      - { name: social, answer: Social Sciences }
      - { name: law, answer: Law }
      - { name: arts, answer: Arts and Humanities }
    multi_label: { format: list, max_labels: 2 }
prompt:
  format: raw
  template: "Classify the dataset. Return a list of at most 2 subjects.\\nDescription: {text}\\n{question}"
  answer_prefix: " "
model:
  path: ${JSON.stringify(modelPath)}
  max_document_tokens: 64
  threads: 2
  sequences: 1
`;
}

const TEXTS = ['Survey of voters and courts in three countries, 1990-2020.', 'Interviews with painters.', null];

/**
 * Each document's set score from LabelSetScorer alone, decoded serially in the layout the run uses (shared prefix,
 * then the document up to the prompt's last token, then the walk), so the numbers must agree bit for bit.
 */
async function referenceScores(codebook: Codebook): Promise<(SetScore | null)[]> {
  const index = codebook.questions.findIndex((q) => q.name === 'subjects');
  const question = codebook.questions[index] as Question;
  const setScorer = LabelSetScorer.forQuestion(model, codebook, question, index);
  const builders = codebook.questions.map((q) => PromptBuilder.create(model, codebook, q));
  const builder = builders[index] as PromptBuilder;
  const plan = planContext(codebook, {
    sharedPrefixTokens: builder.sharedPrefix.length,
    templateTokens: 32,
    longestLabelTokens: setScorer.longestListTokens,
    trainContextSize: model.trainContextSize,
  });
  const pool = await SequencePool.create(model, codebook.model, plan, builder.sharedPrefix);
  try {
    const scores: (SetScore | null)[] = [];
    for (const text of TEXTS) {
      if (text === null) {
        scores.push(null);
        continue;
      }
      // Where the questions' prompts part (the run evaluates the document once, up to there): at most the last token.
      const prompts = builders.map((b) => b.render({ text }, codebook.model.maxDocumentTokens).tokens);
      const tokens = prompts[index] as Token[];
      let checkpoint = Math.min(...prompts.map((p) => p.length - 1));
      while (prompts.some((p) => p.slice(0, checkpoint).some((t, k) => t !== tokens[k]))) checkpoint--;
      const cached = await pool.prepare(0, tokens);
      await pool.sequence(0).controlledEvaluate(tokens.slice(cached, checkpoint));
      const [score] = await setScorer.scoreGroup(pool, [{ tokens, start: checkpoint }], serialDecode);
      scores.push(score as SetScore);
    }
    return scores;
  } finally {
    await pool.dispose();
  }
}

/**
 * Batched vs one-by-one decoding (README, "Determinism"): beside another question, the run decodes the list's tail
 * together with that question's tail (batched tails), the reference after the document alone.
 */
const BATCH_TOLERANCE = 1e-3;

/**
 * The subjects columns of a merged file, checked against LabelSetScorer on the same prompts (equal bits, or within
 * `tolerance` where the run's layout differs), the status column against the texts; returns the rows read.
 */
async function checkAgainstReference(
  file: string,
  codebookFile: string,
  tolerance = 0,
): Promise<Record<string, unknown>[]> {
  const read = await queryDuckDB(
    `SELECT subjects__labels AS labels, subjects__confidence AS confidence, subjects__margin AS margin, ` +
      `subjects__p_social AS p0, subjects__p_law AS p1, subjects__p_arts AS p2, subjects__label_mass AS mass, ` +
      `subjects__set_probability AS setp, subjects__unscored_mass AS unscored, ` +
      `subjects__greedy_labels AS greedy, subjects__invalid_mass AS invalid, status ` +
      `FROM read_parquet('${sqlString(file)}') ORDER BY row`,
  );
  assert.deepEqual(
    read.map((r) => r['status']),
    ['ok', 'ok', 'empty_text'],
  );

  const references = await referenceScores(await loadCodebook(codebookFile));
  references.forEach((reference, i) => {
    const row = read[i] as Record<string, unknown>;
    if (reference === null) {
      for (const column of ['labels', 'confidence', 'p0', 'setp', 'unscored', 'greedy', 'invalid'])
        assert.equal(row[column], null);
      return;
    }
    assert.deepEqual(
      row['labels'],
      (reference.top ?? []).map((l) => names[l]),
    );
    const same = (actual: unknown, expected: number, what: string): void => {
      if (tolerance === 0) assert.equal(actual, expected, `row ${i} ${what}`);
      else
        assert.ok(
          Math.abs((actual as number) - expected) <= tolerance,
          `row ${i} ${what}: ${String(actual)} vs ${expected}`,
        );
    };
    same(row['setp'], reference.setProbability as number, 'set probability');
    same(row['confidence'], reference.setProbability as number, 'confidence');
    same(row['unscored'], reference.unscoredMass, 'unscored mass');
    same(row['invalid'], reference.invalidMass, 'invalid mass');
    assert.notEqual(reference.greedy, null);
    assert.deepEqual(
      row['greedy'],
      (reference.greedy ?? []).map((l) => names[l]),
      `row ${i} greedy decode`,
    );
    same(row['mass'], reference.listMass, 'label mass');
    [row['p0'], row['p1'], row['p2']].forEach((p, l) => same(p, reference.marginals[l] as number, `p_${names[l]}`));
    const others = [...reference.sets.entries()].filter(([key]) => key !== (reference.top ?? []).join(','));
    const second = Math.max(0, ...others.map(([, p]) => p));
    same(row['margin'], (reference.setProbability as number) - second, 'margin');
  });
  return read;
}

describe('rescale run with a list multi-label question', () => {
  it('writes the top set and the scores LabelSetScorer gives for the same prompts, the same bytes twice', async () => {
    await withTempDir(async (dir) => {
      const rows = TEXTS.map((text, i) => `(${i + 1}::BIGINT, ${text === null ? 'NULL' : `'${sqlString(text)}'`})`);
      const input = await writeParquetWithDuckDB(
        `SELECT * FROM (VALUES ${rows.join(', ')}) t(id, text)`,
        path.join(dir, 'corpus.parquet'),
      );
      const codebookFile = path.join(dir, 'subjects.yaml');
      await writeFile(codebookFile, codebookYaml());
      const out = (name: string): string => path.join(dir, name, 'results.parquet');
      for (const name of ['a', 'b'])
        await runLocalMode({ codebook: codebookFile, input: [input], output: out(name), shardRows: 4, env: {} });

      const types = await duckDBTypes(out('a'));
      assert.deepEqual(Object.keys(types).slice(0, 13), [
        'id',
        'row',
        'subjects__labels',
        'subjects__confidence',
        'subjects__margin',
        'subjects__p_social',
        'subjects__p_law',
        'subjects__p_arts',
        'subjects__label_mass',
        'subjects__set_probability',
        'subjects__unscored_mass',
        'subjects__greedy_labels',
        'subjects__invalid_mass',
      ]);
      assert.equal(types['subjects__labels'], 'VARCHAR[]');
      assert.equal(types['subjects__greedy_labels'], 'VARCHAR[]');
      const read = await checkAgainstReference(out('a'), codebookFile);
      // The sets hold real mass: the top set is a proper probability.
      assert.ok((read[0]?.['setp'] as number) > 0 && (read[0]?.['setp'] as number) <= 1);

      const [meta] = await queryDuckDB(
        `SELECT decode(value) AS v FROM parquet_kv_metadata('${sqlString(out('a'))}') ` +
          `WHERE decode(key) = 'rescale.questions'`,
      );
      assert.deepEqual(JSON.parse(String(meta?.['v'])), [
        { name: 'subjects', labels: names, type: 'multi_label', format: 'list' },
      ]);

      // Determinism: a second run gives the same bytes.
      assert.deepEqual(await readFile(out('b')), await readFile(out('a')));
    });
  });

  it('scores it beside a single-label question, the document evaluated once for both', async () => {
    await withTempDir(async (dir) => {
      const rows = TEXTS.map((text, i) => `(${i + 1}::BIGINT, ${text === null ? 'NULL' : `'${sqlString(text)}'`})`);
      const input = await writeParquetWithDuckDB(
        `SELECT * FROM (VALUES ${rows.join(', ')}) t(id, text)`,
        path.join(dir, 'corpus.parquet'),
      );
      const codebookFile = path.join(dir, 'subjects.yaml');
      await writeFile(codebookFile, codebookYaml(true));
      const out = path.join(dir, 'out', 'results.parquet');
      await runLocalMode({ codebook: codebookFile, input: [input], output: out, shardRows: 4, env: {} });
      const columns = Object.keys(await duckDBTypes(out));
      assert.deepEqual(columns.slice(2, 4), ['tone__label', 'tone__confidence']);
      assert.ok(columns.includes('subjects__set_probability') && columns.includes('subjects__unscored_mass'));
      assert.ok(!columns.some((c) => c.startsWith('tone__set') || c.startsWith('tone__unscored')));
      const read = await checkAgainstReference(out, codebookFile, BATCH_TOLERANCE);
      const [tone] = await queryDuckDB(`SELECT tone__label AS t FROM read_parquet('${sqlString(out)}') ORDER BY row`);
      assert.ok(['dry', 'lively'].includes(String(tone?.['t'])));
      assert.equal(read.length, TEXTS.length);
    });
  });
});
