// examples/dataverse/codebook.yaml against the paper's own format, rendered here independently by plain string
// concatenation as its data set and scripts do (dataverse/README.md's training text, the inference prompt ending at
// "[/INST]" and cut to its first 4,096 characters as dataverse/test-dv.py cuts it), on the small fixture's Llama-2 SPM
// vocabulary; then `rescale run` on it.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { LlamaModel, Token } from 'node-llama-cpp';
import { parse, stringify } from 'yaml';
import { loadCodebook, parseCodebook, type Codebook, type Question } from '../../contracts/codebook.js';
import { llamaBuildFromEnvironment } from '../../contracts/environment.js';
import { runLocalMode } from '../../cli/local-mode.js';
import { LabelSetScorer } from '../../worker/engine/label-set-scorer.js';
import { getRuntime, loadModel } from '../../worker/engine/llama-runtime.js';
import { PromptBuilder } from '../../worker/engine/prompt-builder.js';
import { fixtureModel } from '../../scripts/harness/fixture-models.js';
import { queryDuckDB, sqlString, withTempDir, writeParquetWithDuckDB } from '../../scripts/harness/parquet.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CODEBOOK = path.join(ROOT, 'examples', 'dataverse', 'codebook.yaml');

/** The 14 Dataverse subjects in the paper's fixed order. */
const SUBJECTS = [
  'Medicine, Health and Life Sciences',
  'Arts and Humanities',
  'Computer and Information Science',
  'Social Sciences',
  'Mathematical Sciences',
  'Physics',
  'Earth and Environmental Sciences',
  'Chemistry',
  'Engineering',
  'Other',
  'Law',
  'Business and Management',
  'Astronomy and Astrophysics',
  'Agricultural Sciences',
];

/** The codebook's label names, one per subject. */
const NAMES = [
  'medicine',
  'arts',
  'computer',
  'social',
  'math',
  'physics',
  'earth',
  'chemistry',
  'engineering',
  'other',
  'law',
  'business',
  'astronomy',
  'agricultural',
];

/** The data set's `prompt` field: what the test scripts send, before their character cut. */
function datasetPrompt(title: string, description: string): string {
  return (
    "<s>[INST] Here are Title and Description of a dataset. Title :'" +
    title +
    "' Description:'" +
    description +
    "'. And this are subject categories: ['" +
    SUBJECTS.join("','") +
    "']. Please return only a json list of at most 3 elements corresponding to the text labels:[/INST]"
  );
}

/** A training example's `text` field: the prompt, then the answer list as Python prints it. */
function trainingText(title: string, description: string, subjects: readonly string[]): string {
  return `${datasetPrompt(title, description)} [${subjects.map((s) => `'${s}'`).join(', ')}]. </s>`;
}

/** `row['prompt'][:4096]`: Python slices code points. */
function cut(prompt: string, chars = 4096): string {
  return Array.from(prompt).slice(0, chars).join('');
}

const DATASETS: readonly (readonly [string, string])[] = [
  // The example of dataverse/README.md.
  [
    'A15_29234.jpg',
    "Link to OCHRE database: <a href = 'http://pi.lib.uchicago.edu/1001/org/ochre/526ee9d3-6b44-44b9-b407-" +
      "adebe96fcf82'>http://pi.lib.uchicago.edu/1001/org/ochre/526ee9d3-6b44-44b9-b407-adebe96fcf82",
  ],
  ['Replication Data for: Courts and Voters', 'Survey of voters and court rulings in three countries, 1990–2020.'],
  ['Soil samples', 'Nitrogen content of wheat fields.\nSee the README for units.'],
];

let model: LlamaModel;
let modelPath: string;
before(async () => {
  modelPath = await fixtureModel('small');
  model = await loadModel(await getRuntime({ build: llamaBuildFromEnvironment() }), modelPath, 0);
});
after(async () => {
  await model.dispose();
});

/** The example's codebook with the fixture in place of the paper's model, and optionally fewer labels per list. */
async function exampleOnFixture(maxLabels?: number): Promise<{ yaml: string; codebook: Codebook }> {
  const raw = parse(await readFile(CODEBOOK, 'utf8')) as {
    model: Record<string, unknown>;
    questions: { multi_label: Record<string, unknown> }[];
  };
  raw.model = { ...raw.model, path: modelPath, threads: 2 };
  const question = raw.questions[0] as { multi_label: Record<string, unknown> };
  if (maxLabels !== undefined) question.multi_label = { ...question.multi_label, max_labels: maxLabels };
  return { yaml: stringify(raw), codebook: parseCodebook(raw, { source: CODEBOOK }) };
}

/** llama-cpp-python's tokenisation of a prompt string: BOS added, special-token text parsed. */
function paperTokens(text: string): Token[] {
  return [model.tokens.bos as Token, ...model.tokenize(text, true)];
}

describe('examples/dataverse', () => {
  it('lists the 14 subjects in the paper’s order, answered as one list of at most 3', async () => {
    const codebook = await loadCodebook(CODEBOOK);
    const question = codebook.questions[0] as Question;
    assert.equal(codebook.questions.length, 1);
    assert.deepEqual(
      question.labels.map((l) => [l.name, l.answer]),
      SUBJECTS.map((s, i) => [NAMES[i], s]),
    );
    const list = question.multiLabel?.format === 'list' ? question.multiLabel.list : null;
    assert.ok(list !== null, 'a list question');
    assert.deepEqual(
      [list.open, list.separator, list.close, list.quote, list.maxLabels],
      ['[', ', ', '].', 'single', 3],
    );
    assert.equal(list.allowEmpty, false);
    assert.equal(codebook.prompt.format, 'raw');
    assert.equal(codebook.prompt.answerPrefix, ' ');
    assert.deepEqual(codebook.prompt.truncate, { chars: 4096, of: 'prompt' });
    assert.equal(codebook.textColumn, 'description');
  });

  it('renders the paper’s inference string as its tokens, cut at 4,096 characters as test-dv.py cuts it', async () => {
    const { codebook } = await exampleOnFixture();
    const builder = PromptBuilder.create(model, codebook, codebook.questions[0] as Question);
    const long = 'Panel data on household income and schooling, by district and year. '.repeat(70);
    for (const [title, description] of [...DATASETS, ['Household panel', long] as const]) {
      const prompt = builder.render({ text: description, columns: { title } }, codebook.model.maxDocumentTokens);
      const full = datasetPrompt(title, description);
      assert.deepEqual(prompt.tokens, paperTokens(cut(full)), title);
      assert.equal(prompt.truncated, full.length > 4096, title);
    }
    // The long description pushes the instruction out of the first 4,096 characters, as in the paper's runs.
    const prompt = builder.render({ text: long, columns: { title: 'Household panel' } }, 3800);
    assert.ok(!model.detokenize(prompt.tokens).includes('[/INST]'));
  });

  it('scores each list as the adapter was trained to write it after the prompt', async () => {
    const { codebook } = await exampleOnFixture();
    const scorer = LabelSetScorer.forQuestion(model, codebook, codebook.questions[0] as Question, 0);
    const builder = PromptBuilder.create(model, codebook, codebook.questions[0] as Question);
    const [title, description] = DATASETS[1] as readonly [string, string];
    const prompt = builder.render({ text: description, columns: { title } }, codebook.model.maxDocumentTokens).tokens;
    const sets: number[][] = [...SUBJECTS.map((_, i) => [i]), [3, 10], [0, 1, 13], [10, 3]];
    for (const set of sets) {
      const index = scorer.trie.answers.findIndex((a) => a.labels.join() === set.join());
      assert.ok(index >= 0, `list ${set.join()}`);
      const list = scorer.trie.sequences[index] as readonly Token[];
      const trained = paperTokens(
        trainingText(
          title,
          description,
          set.map((i) => SUBJECTS[i] as string),
        ),
      );
      assert.deepEqual(trained.slice(0, prompt.length), prompt);
      assert.deepEqual(trained.slice(prompt.length, prompt.length + list.length), [...list], `list ${set.join()}`);
    }
  });

  it('runs end to end with `rescale run`: the most probable set, marginals and set probability', async () => {
    await withTempDir(async (dir) => {
      // Lists of at most 2 keep the walk short on the fixture; the grammar is otherwise the example's.
      const { yaml } = await exampleOnFixture(2);
      const codebookFile = path.join(dir, 'codebook.yaml');
      await writeFile(codebookFile, yaml);
      const rows = DATASETS.map(
        ([t, d], i) => `SELECT ${i}::BIGINT AS id, '${sqlString(t)}' AS title, '${sqlString(d)}' AS description`,
      ).join(' UNION ALL ');
      const input = await writeParquetWithDuckDB(rows, path.join(dir, 'datasets.parquet'));
      const output = path.join(dir, 'subjects.parquet');
      const summary = await runLocalMode({ codebook: codebookFile, input: [input], output, env: {} });
      assert.equal(summary.rows, DATASETS.length);
      const results = await queryDuckDB(`SELECT * FROM read_parquet('${sqlString(output)}') ORDER BY row`);
      assert.equal(results.length, DATASETS.length);
      for (const row of results) {
        assert.equal(row.status, 'ok');
        const labels = row.subjects__labels as string[];
        assert.ok(labels.length >= 1 && labels.length <= 2, `labels ${JSON.stringify(labels)}`);
        for (const label of labels) assert.ok(NAMES.includes(label), label);
        const setProbability = row.subjects__set_probability as number;
        assert.ok(setProbability > 0 && setProbability <= 1, `set probability ${setProbability}`);
        assert.equal(row.subjects__confidence, setProbability);
        for (const name of NAMES) {
          const marginal = row[`subjects__p_${name}`] as number;
          assert.ok(marginal >= 0 && marginal <= 1, `P(${name}) = ${marginal}`);
        }
        for (const label of labels)
          assert.ok((row[`subjects__p_${label}`] as number) >= setProbability, `marginal of ${label}`);
        const unscored = row.subjects__unscored_mass as number;
        assert.ok(unscored >= 0 && unscored <= 1, `unscored ${unscored}`);
      }
    });
  });
});
