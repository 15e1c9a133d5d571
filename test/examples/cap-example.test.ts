// examples/cap/codebook.yaml against the paper's own format, rendered here independently by plain string
// concatenation as its scripts do (cap/README.md's training text, cut after "Answer =" as
// cap/test-L2-7B-CAP_verified.py cuts it), on the small fixture's Llama-2 SPM vocabulary; then `rescale run` on it.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { LlamaModel, Token } from 'node-llama-cpp';
import { parse, stringify } from 'yaml';
import { loadCodebook, parseCodebook, singleQuestion, type Codebook } from '../../contracts/codebook.js';
import { llamaBuildFromEnvironment } from '../../contracts/environment.js';
import { runLocalMode } from '../../cli/local-mode.js';
import { writeTrainingSample, type RawExample } from '../../study/sampling/training-sample.js';
import { LabelScorer } from '../../worker/engine/label-scorer.js';
import { getRuntime, loadModel } from '../../worker/engine/llama-runtime.js';
import { fixtureModel } from '../../scripts/harness/fixture-models.js';
import { queryDuckDB, sqlString, withTempDir, writeParquetWithDuckDB } from '../../scripts/harness/parquet.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CODEBOOK = path.join(ROOT, 'examples', 'cap', 'codebook.yaml');

/** The 21 CAP major topics as the paper's prompt lists them (codes 11 and 22 do not exist). */
const POLICY_AREAS: readonly (readonly [number, string])[] = [
  [1, 'Macroeconomics'],
  [2, 'Civil Rights, Minority Issues and Civil Liberties'],
  [3, 'Health'],
  [4, 'Agriculture and Fisheries'],
  [5, 'Labour, employment and pensions'],
  [6, 'Education'],
  [7, 'Environment'],
  [8, 'Energy'],
  [9, 'Immigration'],
  [10, 'Transportation'],
  [12, 'Law and Crime'],
  [13, 'Social welfare'],
  [14, 'Regional and Urban issues and Planning'],
  [15, 'Banking, finance and domestic commerce issues'],
  [16, 'Defence'],
  [17, 'Space, science, technology, and communications issues'],
  [18, 'Foreign trade'],
  [19, 'International affairs and foreign aid'],
  [20, 'Governance and government'],
  [21, 'Public Lands, Water Management and Territorial Issues'],
  [23, 'Culture and media'],
];

/** A training example's `text` field, as cap/README.md shows it. */
function trainingText(question: string, code: number): string {
  return (
    '<s>[INST] The next text is a question of a member of the European parliament. Classify the question ' +
    'according to only one of the policy areas below. Use only the policy area number taken from the list below. ' +
    'Do not explain your answer. Return only a python list containing the policy area number.:"' +
    question +
    '" Analyze carefully the text and assign it to the most relevant policy area among those listed below. Do not ' +
    'explain your answer and return only a number. Policy area numbers: ' +
    POLICY_AREAS.map(([c, name]) => `${c} = ${name}`).join(' ') +
    ' [/INST]. Answer = [' +
    String(code) +
    ']. </s>'
  );
}

/** What the test script sends: `query[:query.find('Answer =') + len('Answer =')].strip()`. */
function inferencePrompt(text: string): string {
  return text.slice(0, text.indexOf('Answer =') + 'Answer ='.length).trim();
}

const QUESTIONS = [
  // The example of cap/README.md.
  '1.Will the Commission estimate the cost to employers of implementing in full its agency workers directive ' +
    'proposal for each Member State? Will it express such a cost as a percentage of the total pay bill? 2.What ' +
    'estimate does the Commission make of any likely reduction in employment by Member State? 3.How is this ' +
    'proposal consistent with the Commission’s objective of increasing employment?',
  'Can the Commission say how much of the cohesion funding for rail links in the eastern regions has been spent?',
  'Subject: Fishing quotas in the Baltic Sea\n\nWhat does the Council intend to do about "illegal" catches?',
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

/** The example's codebook with the fixture in place of the paper's model. */
async function exampleOnFixture(): Promise<{ yaml: string; codebook: Codebook }> {
  const raw = parse(await readFile(CODEBOOK, 'utf8')) as { model: Record<string, unknown> };
  raw.model = { ...raw.model, path: modelPath, threads: 2, context_size: 1024 };
  return { yaml: stringify(raw), codebook: parseCodebook(raw, { source: CODEBOOK }) };
}

/** llama-cpp-python's tokenisation of a prompt string: BOS added, special-token text parsed. */
function paperTokens(text: string): Token[] {
  return [model.tokens.bos as Token, ...model.tokenize(text, true)];
}

describe('examples/cap', () => {
  it('lists the 21 CAP codes with the names of the paper’s prompt, each answered as " [<code>]."', async () => {
    const codebook = await loadCodebook(CODEBOOK);
    const labels = singleQuestion(codebook).labels;
    assert.deepEqual(
      labels.map((l) => [Number(l.name), l.description]),
      POLICY_AREAS.map(([code, name]) => [code, name]),
    );
    assert.deepEqual(
      labels.map((l) => l.answer),
      POLICY_AREAS.map(([code]) => `${code}].`),
    );
    assert.equal(codebook.prompt.format, 'raw');
    assert.equal(codebook.prompt.answerPrefix, ' [');
    assert.equal(codebook.prompt.truncate, null);
  });

  it('renders the paper’s inference string as its tokens, and each code’s answer as its training tokens', async () => {
    const { codebook } = await exampleOnFixture();
    const scorer = await LabelScorer.create(codebook, { model });
    try {
      for (const question of QUESTIONS) {
        const prompt = scorer.promptTokens({ text: question });
        const expected = paperTokens(inferencePrompt(trainingText(question, 5)));
        assert.deepEqual(prompt.tokens, expected);
        assert.equal(prompt.truncated, false);
      }
      // The label paths are the tokens the adapter was trained to emit after the prompt: " [", the digits (split one
      // token each by Llama-2's tokenizer), and "]." (one token), which ends every path so 1 and 12 are told apart.
      const question = QUESTIONS[0] as string;
      const prompt = scorer.promptTokens({ text: question }).tokens;
      POLICY_AREAS.forEach(([code], i) => {
        const trained = paperTokens(trainingText(question, code));
        assert.deepEqual(trained.slice(0, prompt.length), prompt);
        const path = scorer.labelTokens[i] as readonly Token[];
        assert.deepEqual(trained.slice(prompt.length, prompt.length + path.length), [...path], `code ${code}`);
        assert.equal(path.length, String(code).length + 2);
        assert.equal(model.detokenize(path.slice(-1)), '].');
      });
    } finally {
      await scorer.dispose();
    }
  });

  it('`rescale sample` writes the paper’s training text as prompt and completion', async () => {
    await withTempDir(async (dir) => {
      const codes = POLICY_AREAS.map(([code]) => code);
      const rows = QUESTIONS.flatMap((q, i) =>
        codes
          .slice(0, 4)
          .map((code, k) => `SELECT ${10 * i + k}::BIGINT AS id, '${sqlString(q)}' AS text, '${code}' AS gold`),
      ).join(' UNION ALL ');
      const gold = await writeParquetWithDuckDB(rows, path.join(dir, 'gold.parquet'));
      const sample = await writeTrainingSample({
        gold,
        idColumn: 'id',
        textColumn: 'text',
        labelColumn: 'gold',
        sizes: [8],
        seed: 1,
        heldOut: 4,
        outDir: path.join(dir, 's'),
        codebook: await loadCodebook(CODEBOOK),
      });
      const lines = (await readFile(path.join(dir, 's', sample.manifest.subsets[0]?.jsonl ?? ''), 'utf8'))
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line) as RawExample);
      const docs = sample.subsets[0]?.documents ?? [];
      assert.equal(lines.length, 8);
      docs.forEach((doc, k) => {
        const example = lines[k] as RawExample;
        // The data set's text field less the end of text a trainer appends.
        assert.equal(`${example.prompt}${example.completion} </s>`, trainingText(doc.text, Number(doc.label)));
        // The cut the test script makes is where prompt and completion meet.
        assert.equal(example.prompt, inferencePrompt(trainingText(doc.text, Number(doc.label))));
      });
    });
  });

  it('runs end to end with `rescale run`: a code per row, probabilities over the 21, label mass', async () => {
    await withTempDir(async (dir) => {
      const { yaml } = await exampleOnFixture();
      const codebookFile = path.join(dir, 'codebook.yaml');
      await writeFile(codebookFile, yaml);
      const rows = QUESTIONS.map((q, i) => `SELECT ${i}::BIGINT AS id, '${sqlString(q)}' AS text`).join(' UNION ALL ');
      const input = await writeParquetWithDuckDB(rows, path.join(dir, 'questions.parquet'));
      const output = path.join(dir, 'labels.parquet');
      const summary = await runLocalMode({ codebook: codebookFile, input: [input], output, env: {} });
      assert.equal(summary.rows, QUESTIONS.length);
      const results = await queryDuckDB(`SELECT * FROM read_parquet('${sqlString(output)}') ORDER BY row`);
      const codes = POLICY_AREAS.map(([code]) => String(code));
      for (const row of results) {
        assert.equal(row.status, 'ok');
        assert.ok(codes.includes(row.label as string), `label ${String(row.label)}`);
        const probabilities = codes.map((code) => row[`p_${code}`] as number);
        const total = probabilities.reduce((a, b) => a + b, 0);
        assert.ok(Math.abs(total - 1) < 1e-9, `p_ columns sum to ${total}`);
        assert.equal(row.confidence, Math.max(...probabilities));
        const mass = row.label_mass as number;
        assert.ok(mass > 0 && mass <= 1, `label mass ${mass}`);
      }
    });
  });
});
