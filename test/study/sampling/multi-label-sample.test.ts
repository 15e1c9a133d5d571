// `rescale sample` with multi-label questions: a per_label question gives one yes/no example per label, a list question
// one example whose answer is the gold set in the codebook's list syntax. Each example, put through the model's chat
// template (chat codebooks) or tokenised whole as a trainer tokenises a raw string (raw codebooks), is token for token
// the prompt the scorer renders followed by the answer path it scores for the gold answer. The Dataverse example is
// also checked against the paper's training text, rendered here independently.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { resolveChatWrapper, type LlamaModel, type Token } from 'node-llama-cpp';
import { parse } from 'yaml';
import { parseCodebook, type Question } from '../../../contracts/codebook.js';
import { llamaBuildFromEnvironment } from '../../../contracts/environment.js';
import {
  writeTrainingSample,
  type ChatExample,
  type RawExample,
  type TrainingSample,
} from '../../../study/sampling/training-sample.js';
import { LabelSetScorer } from '../../../worker/engine/label-set-scorer.js';
import { LabelTrieScorer } from '../../../worker/engine/label-trie-scorer.js';
import { getRuntime, loadModel } from '../../../worker/engine/llama-runtime.js';
import { QuestionPrompts } from '../../../worker/engine/question-prompts.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';
import { duckDBTypes, queryDuckDB, sqlString, withTempDir } from '../../../scripts/harness/parquet.js';
import { writeRowsParquet } from '../../helpers/analysis-files.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

async function jsonl<T>(file: string): Promise<T[]> {
  return (await readFile(file, 'utf8'))
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as T);
}

/** Every training subset's ids holds the previous one's, and none is held out. */
function assertNested(sample: TrainingSample): void {
  const heldOut = new Set(sample.heldOut.map((d) => d.id));
  let previous = new Set<string>();
  for (const subset of sample.subsets) {
    const ids = new Set(subset.documents.map((d) => d.id));
    for (const id of previous) assert.ok(ids.has(id), `subset ${subset.size} lacks ${id} of the smaller one`);
    for (const id of ids) assert.ok(!heldOut.has(id), `held-out document ${id} in subset ${subset.size}`);
    previous = ids;
  }
}

const startsWith = (tokens: readonly Token[], prefix: readonly Token[]): boolean =>
  prefix.every((token, i) => tokens[i] === token);

describe('rescale sample with a per_label question (chat)', () => {
  let modelPath: string;
  let model: LlamaModel;
  before(async () => {
    modelPath = await fixtureModel('keyword');
    model = await loadModel(await getRuntime({ build: llamaBuildFromEnvironment() }), modelPath, 0);
  });
  after(async () => {
    await model.dispose();
  });

  const MOODS = ['cheer', 'gloom', 'mixed'];
  const toneOf = (i: number): string => (i % 2 === 0 ? 'negative' : 'positive');
  const moodsOf = (i: number): string[] => MOODS.filter((_, k) => ((i >> k) & 1) === 1);

  it('writes a yes/no example per label, each exactly the scorer’s prompt and answer tokens', async () => {
    await withTempDir(async (dir) => {
      const codebook = parseCodebook(
        {
          task: 'moods',
          input: { id_column: 'id' },
          questions: [
            {
              name: 'tone',
              question: 'Is the tone negative or positive?',
              labels: [{ name: 'negative', answer: 'neg' }, { name: 'positive' }],
            },
            {
              name: 'moods',
              type: 'multi_label',
              question: 'Does the tweet feel {description}?',
              labels: [
                { name: 'cheer', description: 'glad' },
                { name: 'gloom', description: 'sad' },
                { name: 'mixed', description: 'torn' },
              ],
              multi_label: { format: 'per_label', answers: { yes: 'positive', no: 'negative' } },
            },
          ],
          prompt: { system: 'You are a careful annotator.', template: 'Tweet: {text}\n\n{question}' },
          model: { path: modelPath, max_document_tokens: 64 },
        },
        { source: 'moods.yaml' },
      );
      // The moods gold as a delimited string, as evaluate reads it with --truth-separator, in a column named as
      // results and review export name a label set.
      const gold = await writeRowsParquet(
        path.join(dir, 'gold.parquet'),
        { id: 'BIGINT', text: 'VARCHAR', tone: 'VARCHAR', moods__labels: 'VARCHAR' },
        Array.from({ length: 24 }, (_, i) => ({
          id: i,
          text: `tweet number ${i} feels fine`,
          tone: toneOf(i),
          moods__labels: moodsOf(i % 8).join('; '),
        })),
      );
      const out = path.join(dir, 's');
      const sample = await writeTrainingSample({
        gold,
        idColumn: 'id',
        textColumn: 'text',
        labelColumn: 'gold',
        sizes: [8, 4],
        seed: 5,
        heldOut: 8,
        outDir: out,
        codebook,
        truthSeparator: ';',
      });
      assertNested(sample);
      assert.deepEqual(sample.manifest.questions?.[1], {
        name: 'moods',
        labels: MOODS,
        multiLabel: 'per_label',
        goldColumn: 'moods__labels',
      });
      assert.equal(sample.manifest.stratifiedBy, undefined, 'stratified by the first question, single-label');
      assert.deepEqual(sample.manifest.subsets[0]?.counts, [
        { label: 'negative', count: 2 },
        { label: 'positive', count: 2 },
      ]);
      const docs = sample.subsets[1]?.documents ?? [];
      const lines = await jsonl<ChatExample>(path.join(out, sample.manifest.subsets[1]?.jsonl ?? ''));
      assert.equal(lines.length, docs.length * 4, 'one example for tone, one per mood');

      const wrapper = resolveChatWrapper(model);
      assert.ok(wrapper !== null);
      const prompts = QuestionPrompts.create(model, codebook, codebook.questions);
      const [tone, moods] = codebook.questions as [Question, Question];
      const toneTokens = LabelTrieScorer.create(model, codebook, tone, 0).labelTokens;
      const [yes, no] = LabelTrieScorer.createYesNo(model, codebook, moods, 1).labelTokens as [Token[], Token[]];
      docs.forEach((doc, d) => {
        const i = Number(doc.id);
        assert.deepEqual(doc.answers, { tone: toneOf(i), moods: moodsOf(i % 8) });
        const rendered = prompts.render({ text: doc.text }, codebook.model.maxDocumentTokens);
        const expected = [
          {
            reply: toneOf(i) === 'negative' ? 'neg' : 'positive',
            answer: toneTokens[toneOf(i) === 'negative' ? 0 : 1],
          },
          ...MOODS.map((mood) =>
            moodsOf(i % 8).includes(mood) ? { reply: 'positive', answer: yes } : { reply: 'negative', answer: no },
          ),
        ];
        expected.forEach(({ reply, answer }, unit) => {
          const example = lines[4 * d + unit] as ChatExample;
          assert.equal(example.messages[2]?.content, reply, `document ${i}, prompt ${unit}`);
          if (unit > 0) {
            const description = ['glad', 'sad', 'torn'][unit - 1] as string;
            assert.ok(example.messages[1]?.content.endsWith(`Does the tweet feel ${description}?`));
          }
          const { contextText } = wrapper.generateContextState({
            chatHistory: [
              { type: 'system', text: example.messages[0]?.content ?? '' },
              { type: 'user', text: example.messages[1]?.content ?? '' },
              { type: 'model', response: [example.messages[2]?.content ?? ''] },
            ],
          });
          const trained = contextText.tokenize(model.tokenizer);
          const prompt = rendered.prompts[unit] as Token[];
          assert.ok(startsWith(trained, prompt), `document ${i}, prompt ${unit}: the prompt tokens`);
          assert.deepEqual(
            trained.slice(prompt.length, prompt.length + (answer?.length ?? 0)),
            [...(answer ?? [])],
            `document ${i}, prompt ${unit}: the answer tokens`,
          );
        });
      });

      const heldOut = sqlString(path.join(out, 'held-out.parquet'));
      const types = await duckDBTypes(path.join(out, 'held-out.parquet'));
      assert.equal(types.moods__labels, 'VARCHAR[]', 'the gold set is written back as a list, as evaluate reads it');
      const rows = await queryDuckDB(`SELECT id::INT AS id, tone, moods__labels FROM read_parquet('${heldOut}')`);
      assert.equal(rows.length, 8);
      for (const row of rows) assert.deepEqual(row.moods__labels, moodsOf(Number(row.id) % 8));
    });
  });
});

/** The 14 Dataverse subjects in the paper's fixed order, and the example codebook's names for them. */
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

/** The paper's training text (its data set's `text`): prompt, then the list as Python prints it, then "</s>". */
function paperTrainingText(title: string, description: string, subjects: readonly string[]): string {
  return (
    "<s>[INST] Here are Title and Description of a dataset. Title :'" +
    title +
    "' Description:'" +
    description +
    "'. And this are subject categories: ['" +
    SUBJECTS.join("','") +
    "']. Please return only a json list of at most 3 elements corresponding to the text labels:[/INST]" +
    ` [${subjects.map((s) => `'${s}'`).join(', ')}]. </s>`
  );
}

describe('rescale sample with examples/dataverse (list, raw)', () => {
  it('writes the paper’s training text, and each example tokenises to the scorer’s prompt and list', async () => {
    await withTempDir(async (dir) => {
      const modelPath = await fixtureModel('small');
      const file = path.join(ROOT, 'examples', 'dataverse', 'codebook.yaml');
      const raw = parse(await readFile(file, 'utf8')) as { model: Record<string, unknown> };
      raw.model = { ...raw.model, path: modelPath };
      const codebook = parseCodebook(raw, { source: file });
      // Sets of 1-3 subjects, mostly one; the rarest subjects stratify. Row 30 has 4 subjects (no list of at most 3
      // holds it), row 31 none, row 32 no gold.
      const setOf = (i: number): number[] =>
        i === 30 ? [0, 1, 3, 10] : i === 31 ? [] : i % 5 === 0 ? [3, 10] : i % 7 === 0 ? [1, 3, 13] : [i % 4];
      const rows = Array.from({ length: 33 }, (_, i) => ({
        id: `dv-${i}`,
        title: `Replication data ${i}`,
        description: `Survey of voters, ${i} waves; see the codebook's "notes".`,
        subjects: i === 32 ? null : setOf(i).map((k) => NAMES[k]),
      }));
      const gold = await writeRowsParquet(
        path.join(dir, 'dv.parquet'),
        { id: 'VARCHAR', title: 'VARCHAR', description: 'VARCHAR', subjects: 'VARCHAR[]' },
        rows,
      );
      const out = path.join(dir, 's');
      const sample = await writeTrainingSample({
        gold,
        idColumn: 'id',
        textColumn: 'description',
        labelColumn: 'subjects',
        sizes: [10, 20],
        seed: 2,
        heldOut: 10,
        outDir: out,
        codebook,
      });
      const m = sample.manifest;
      assert.deepEqual(m.skipped, { noText: 0, noLabel: 1, overMaxLabels: 1, emptySet: 1 });
      assert.deepEqual(m.stratifiedBy, { question: 'subjects', by: 'rarest label' });
      assert.equal(m.prompt.format, 'raw');
      assertNested(sample);
      // Rarest first: agricultural (rows 7, 14, 21, 28, with arts and social) is those documents' stratum, so its 4
      // documents are spread in proportion: 10 of 30 held out gives 1, and all 3 left are in the 20 of 20.
      const agricultural = (counts: readonly { label: string; count: number }[] | undefined): number =>
        counts?.find((c) => c.label === 'agricultural')?.count ?? 0;
      assert.equal(agricultural(m.heldOut.strata), 1);
      assert.ok([1, 2].includes(agricultural(m.subsets[0]?.strata)));
      assert.equal(agricultural(m.subsets[1]?.strata), 3);
      const docs = sample.subsets[1]?.documents ?? [];
      assert.equal(
        m.subsets[1]?.counts.find((c) => c.label === 'social')?.count,
        docs.filter((d) => (d.answers?.subjects as string[]).includes('social')).length,
        'counts are documents holding each label',
      );
      const types = await duckDBTypes(path.join(out, 'held-out.parquet'));
      assert.deepEqual(types, { id: 'VARCHAR', description: 'VARCHAR', title: 'VARCHAR', subjects: 'VARCHAR[]' });

      const examples = await jsonl<RawExample>(path.join(out, m.subsets[1]?.jsonl ?? ''));
      assert.equal(examples.length, docs.length);
      const model = await loadModel(await getRuntime({ build: llamaBuildFromEnvironment() }), modelPath, 0);
      try {
        const prompts = QuestionPrompts.create(model, codebook, codebook.questions);
        const lists = LabelSetScorer.forQuestion(model, codebook, codebook.questions[0] as Question, 0);
        docs.forEach((doc, k) => {
          const i = Number(doc.id.slice(3));
          const example = examples[k] as RawExample;
          assert.deepEqual(Object.keys(example), ['prompt', 'completion']);
          const title = `Replication data ${i}`;
          assert.deepEqual(doc.columns, { title });
          const subjects = setOf(i).map((s) => SUBJECTS[s] as string);
          // The paper's own training text, less its end of text.
          assert.equal(`${example.prompt}${example.completion} </s>`, paperTrainingText(title, doc.text, subjects));
          // Tokenised whole (BOS added, special-token text parsed, as a trainer tokenises the string): the prompt
          // the scorer renders, then the list path it scores for the gold set, and nothing else.
          const trained = [model.tokens.bos as Token, ...model.tokenize(example.prompt + example.completion, true)];
          const prompt = prompts.render({ text: doc.text, columns: { title } }, codebook.model.maxDocumentTokens);
          const list = lists.trie.answers.findIndex((a) => a.valid && a.labels.join() === setOf(i).join());
          assert.ok(list >= 0, `document ${i}: its set is a list of the grammar`);
          assert.deepEqual(trained, [...(prompt.prompts[0] as Token[]), ...(lists.trie.sequences[list] as Token[])]);
        });
      } finally {
        await model.dispose();
      }
    });
  });
});
