// examples/flourishing/: the paper's own prompt (paper-prompt.yaml) against classify-L2-7B-FT.py's f-string, and the
// 46-question re-posed form (codebook.yaml) against Llama-3's chat layout, each rendered here independently by plain
// string concatenation (on the small fixture's Llama-2 SPM vocabulary and the keyword fixture's Llama-3 vocabulary and
// chat template); then `rescale run` on the re-posed form.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { LlamaModel, Token } from 'node-llama-cpp';
import { parse, stringify } from 'yaml';
import { loadCodebook, parseCodebook, singleQuestion, type Codebook } from '../../contracts/codebook.js';
import { llamaBuildFromEnvironment } from '../../contracts/environment.js';
import { questionLayout } from '../../contracts/question-layout.js';
import { runLocalMode } from '../../cli/local-mode.js';
import { LabelScorer } from '../../worker/engine/label-scorer.js';
import { getRuntime, loadModel } from '../../worker/engine/llama-runtime.js';
import { fixtureModel } from '../../scripts/harness/fixture-models.js';
import { queryDuckDB, sqlString, withTempDir, writeParquetWithDuckDB } from '../../scripts/harness/parquet.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const REPOSED = path.join(ROOT, 'examples', 'flourishing', 'codebook.yaml');
const PAPER = path.join(ROOT, 'examples', 'flourishing', 'paper-prompt.yaml');

/** The 46 dimensions as the paper's prompt lists them (classify-L2-7B-FT.py), in its order. */
const PROMPT_DIMENSIONS = [
  'Happiness', 'Resilience', 'Self-esteem', 'Life satisfaction', 'Fear of future', 'Vitality', 'Having energy',
  'Positive functioning', 'Expressing job satisfaction', 'Expressing optimism', 'Peace with thoughts and feelings',
  'Purpose in life', 'Depression', 'Anxiety', 'Suffering', 'Feeling pain', 'Expressing altruism', 'Loneliness',
  'Quality of relationships', 'Belonging to society', 'Expressing gratitude', 'Expressing trust', 'Feeling trusted',
  'Balance in the various aspects of own life', 'Mastery (ability or capability)', 'Perceiving discrimination',
  'Feeling loved by God', 'Belief in God', 'Religious criticism', 'Spiritual punishment', 'Feeling religious comfort',
  'Financial/material worry', 'Life after death belief', 'Volunteering', 'Charitable giving/helping',
  'Seeking for forgiveness', 'Feeling having a political voice', 'Expressing government approval', 'Having hope',
  'Promoting good', 'Expressing delayed gratification', 'PTSD (Post-traumatic stress disorder)',
  'Describing smoking related health issues', 'Describing drinking related health issues',
  'Describing health limitations', 'Expressing empathy',
]; // prettier-ignore

/** The script's `instruction`: the list broken after the 16th, 31st and 41st dimension, a space after "reasoning.". */
const INSTRUCTION =
  "Please classify the following text based on the well-being dimensions listed below. Use only the scale: 'low', " +
  "'medium', and 'high'. Return a JSON dictionary that contains only the well-being dimensions that apply. Do not " +
  'explain your reasoning. \n\nWell-being dimensions:\n[' +
  [PROMPT_DIMENSIONS.slice(0, 16), PROMPT_DIMENSIONS.slice(16, 31), PROMPT_DIMENSIONS.slice(31, 41)]
    .map((line) => line.join(', ') + ',\n')
    .join('') +
  PROMPT_DIMENSIONS.slice(41).join(', ') +
  '].\n';

/** The dimension names as the answers (answers.csv) and verify-test.R spell them: lower case, Mastery reworded. */
function answerKey(dimension: string): string {
  return dimension === 'Mastery (ability or capability)' ? 'mastery (ability, capability)' : dimension.toLowerCase();
}

/** classify-L2-7B-FT.py's `analyze`: f"""<s>[INST] {instruction}<s>Text: "{thistext}"[/INST]""". */
function paperPrompt(tweet: string): string {
  return `<s>[INST] ${INSTRUCTION}<s>Text: "${tweet}"[/INST]`;
}

const REPOSED_SYSTEM =
  'You are a medical professional expert in subjective well-being. Rate the text on the one well-being dimension ' +
  "named after it. Use only the scale: 'absent', 'low', 'medium' and 'high'. Answer with one word and do not explain " +
  'your reasoning.';

/** Llama-3-Instruct's chat layout for one system and one user message, then the reply if given. */
function llama3Chat(system: string, user: string, reply?: string): string {
  const header = (role: string): string => `<|start_header_id|>${role}<|end_header_id|>\n\n`;
  const prompt =
    `<|begin_of_text|>${header('system')}${system.trim()}<|eot_id|>${header('user')}${user.trim()}<|eot_id|>` +
    header('assistant');
  return reply === undefined ? prompt : `${prompt}${reply.trim()}<|eot_id|>`;
}

function reposedUser(tweet: string, dimension: string): string {
  return `Text: "${tweet}"\n\nWell-being dimension: ${dimension}`;
}

const TWEETS = [
  'So grateful for my friends who showed up today. Feeling hopeful about the new year!',
  "Can't sleep again, worried about rent and the job interview tomorrow... #anxiety",
  'Volunteered at the food bank with my church group this morning 🙏 God is good',
];

/** Llama-2's SPM vocabulary, as the paper's fine-tune. */
let llama2: LlamaModel;
/** Llama-3's BPE vocabulary and chat template, as the re-posed form's model. */
let llama3: LlamaModel;
const paths = new Map<LlamaModel, string>();
before(async () => {
  const llama = await getRuntime({ build: llamaBuildFromEnvironment() });
  llama2 = await loadModel(llama, await fixtureModel('small'), 0);
  llama3 = await loadModel(llama, await fixtureModel('keyword'), 0);
  paths.set(llama2, await fixtureModel('small')).set(llama3, await fixtureModel('keyword'));
});
after(async () => {
  await Promise.all([llama2.dispose(), llama3.dispose()]);
});

/**
 * An example codebook with a fixture in place of the paper's model (and no adapter). One thread: the fixtures are tiny,
 * and on a busy machine a second thread waits at every synchronisation point of a decode.
 */
async function onFixture(file: string, model: LlamaModel): Promise<{ yaml: string; codebook: Codebook }> {
  const raw = parse(await readFile(file, 'utf8')) as { model: Record<string, unknown> };
  raw.model = { path: paths.get(model), threads: 1, context_size: 1024, max_document_tokens: 256 };
  return { yaml: stringify(raw), codebook: parseCodebook(raw, { source: file }) };
}

/** A whole string tokenised as llama-cpp-python does: BOS added, special-token text parsed. */
function paperTokens(text: string): Token[] {
  return [llama2.tokens.bos as Token, ...llama2.tokenize(text, true)];
}

/** A chat string tokenised with its special-token text parsed; the template writes its own BOS. */
function chatTokens(text: string): Token[] {
  return llama3.tokenize(text, true);
}

describe('examples/flourishing: the paper’s prompt', () => {
  it('lists the 46 dimensions as answers.csv spells them, each an answer opening the dictionary', async () => {
    const codebook = await loadCodebook(PAPER);
    assert.equal(codebook.prompt.format, 'raw');
    assert.equal(codebook.prompt.template, paperPrompt('{text}'));
    assert.equal(codebook.prompt.answerPrefix, " { '");
    assert.deepEqual(
      singleQuestion(codebook).labels.map((l) => l.answer),
      PROMPT_DIMENSIONS.map((d) => `${answerKey(d)}'`),
    );
  });

  it('renders classify-L2-7B-FT.py’s prompt as its tokens, each first key as a dictionary’s tokens', async () => {
    const { codebook } = await onFixture(PAPER, llama2);
    const scorer = await LabelScorer.create(codebook, { model: llama2 });
    try {
      for (const tweet of TWEETS) {
        const prompt = scorer.promptTokens({ text: tweet });
        assert.deepEqual(prompt.tokens, paperTokens(paperPrompt(tweet)));
        assert.equal(prompt.truncated, false);
      }
      const tweet = TWEETS[0] as string;
      const prompt = scorer.promptTokens({ text: tweet }).tokens;
      PROMPT_DIMENSIONS.forEach((dimension, i) => {
        // What the model writes after the prompt, as the training answers hold it.
        const answered = paperTokens(`${paperPrompt(tweet)} { '${answerKey(dimension)}' : 'high' }`);
        assert.deepEqual(answered.slice(0, prompt.length), prompt);
        const path = [...scorer.labelTokens[i]!];
        assert.deepEqual(answered.slice(prompt.length, prompt.length + path.length), path, dimension);
      });
    } finally {
      await scorer.dispose();
    }
  });
});

describe('examples/flourishing: 46 ordered questions', () => {
  it('asks the 46 dimensions in the paper’s order, each absent < low < medium < high, the tweet first', async () => {
    const codebook = await loadCodebook(REPOSED);
    assert.deepEqual(
      codebook.questions.map((q) => q.text),
      PROMPT_DIMENSIONS,
    );
    for (const question of codebook.questions) {
      assert.equal(question.ordered, true);
      assert.deepEqual(
        question.labels.map((l) => l.name),
        ['absent', 'low', 'medium', 'high'],
      );
    }
    assert.equal(questionLayout(codebook).kind, 'document-first');
    assert.equal(codebook.prompt.format, 'chat');
    assert.equal(codebook.prompt.system, REPOSED_SYSTEM);
  });

  it('renders each question’s prompt in Llama-3’s chat layout, and each level as the reply’s tokens', async () => {
    const { codebook } = await onFixture(REPOSED, llama3);
    const scorer = await LabelScorer.create(codebook, { model: llama3 });
    try {
      for (const tweet of TWEETS) {
        PROMPT_DIMENSIONS.forEach((dimension, q) => {
          const prompt = scorer.promptTokens({ text: tweet }, q).tokens;
          assert.deepEqual(prompt, chatTokens(llama3Chat(REPOSED_SYSTEM, reposedUser(tweet, dimension))), dimension);
        });
      }
      // The tweet is evaluated once: the prompts share everything up to the dimension's name.
      const tweet = TWEETS[1] as string;
      const cost = scorer.documentCost({ text: tweet });
      const shared = chatTokens(llama3Chat(REPOSED_SYSTEM, reposedUser(tweet, 'X'))).length;
      assert.ok(cost.sharedPrefix + cost.document < shared, 'the checkpoint lies before the dimension');
      assert.ok(Math.max(...cost.tails) < 20, `tails of ${Math.max(...cost.tails)} tokens`);
      const labels = scorer.questionLabelTokens[0]!;
      const prompt = scorer.promptTokens({ text: tweet }, 0).tokens;
      ['absent', 'low', 'medium', 'high'].forEach((level, i) => {
        const trained = chatTokens(llama3Chat(REPOSED_SYSTEM, reposedUser(tweet, 'Happiness'), level));
        assert.deepEqual(trained.slice(0, prompt.length), prompt);
        const path = [...labels[i]!];
        assert.deepEqual(trained.slice(prompt.length, prompt.length + path.length), path, level);
      });
    } finally {
      await scorer.dispose();
    }
  });

  it('runs end to end with `rescale run`: 46 question column groups, each a level and four probabilities', async () => {
    await withTempDir(async (dir) => {
      const { yaml, codebook } = await onFixture(REPOSED, llama3);
      const codebookFile = path.join(dir, 'codebook.yaml');
      await writeFile(codebookFile, yaml);
      const rows = TWEETS.map((t, i) => `SELECT ${i}::BIGINT AS id, '${sqlString(t)}' AS text`).join(' UNION ALL ');
      const input = await writeParquetWithDuckDB(rows, path.join(dir, 'tweets.parquet'));
      const output = path.join(dir, 'levels.parquet');
      const summary = await runLocalMode({ codebook: codebookFile, input: [input], output, env: {} });
      assert.equal(summary.rows, TWEETS.length);
      const results = await queryDuckDB(`SELECT * FROM read_parquet('${sqlString(output)}') ORDER BY row`);
      const columns = Object.keys(results[0] ?? {});
      const groups = new Set(columns.filter((c) => c.includes('__')).map((c) => c.split('__')[0]));
      assert.deepEqual(
        [...groups],
        codebook.questions.map((q) => q.name),
      );
      const levels = ['absent', 'low', 'medium', 'high'];
      for (const row of results) {
        assert.equal(row.status, 'ok');
        for (const question of codebook.questions) {
          const p = levels.map((level) => row[`${question.name}__p_${level}`] as number);
          assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-9, `${question.name} sums to 1`);
          assert.ok(levels.includes(row[`${question.name}__label`] as string));
          assert.equal(row[`${question.name}__confidence`], Math.max(...p));
        }
        // One document evaluation and 46 short tails, far below 46 whole prompts.
        const whole = chatTokens(llama3Chat(REPOSED_SYSTEM, reposedUser(TWEETS[0] as string, 'Happiness'))).length;
        assert.ok((row.tokens as number) < 46 * whole * 0.5, `${String(row.tokens)} tokens`);
      }
    });
  });
});
