// `rescale review export` renders its training JSONL with the code `rescale sample` renders with: for a raw codebook
// (prompt + completion, a {title} column read from the crowd's sample, a multi-label list question) and a chat codebook
// (a per_label question, one yes/no example per label), the export's files are byte for byte what `rescale sample`
// writes from the export's own gold.parquet with the same sizes and seed and nothing held out.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { parseCodebook, type Codebook } from '../../../contracts/codebook.js';
import { readCrowdFolder, type CrowdFolder } from '../../../study/review/crowd-folder.js';
import { exportReview, type ReviewExportManifest } from '../../../study/review/review-export.js';
import { ReviewState, type GoldRow } from '../../../study/review/review-state.js';
import { ReviewStore } from '../../../study/review/review-store.js';
import { writeTrainingSample } from '../../../study/sampling/training-sample.js';
import { writeRowsParquet } from '../../helpers/analysis-files.js';
import { SENTIMENT, writeCrowdFolder } from '../../helpers/crowd-folder.js';

const N = 24;
/** The topics set a coder verifies for document i (the empty set included). */
const TOPICS = [[], ['service'], ['price'], ['service', 'price']];

const SENTIMENT_QUESTION = {
  name: 'sentiment',
  question: 'Is the tweet negative, neutral or positive?',
  labels: SENTIMENT.map((name) => ({ name, answer: name.slice(0, 3) })),
};

function rawCodebook(): Codebook {
  return parseCodebook(
    {
      task: 'tweets',
      input: { id_column: 'id' },
      questions: [
        SENTIMENT_QUESTION,
        {
          name: 'topics',
          type: 'multi_label',
          question: 'Which topics does it touch?',
          labels: [{ name: 'service', answer: 'Service' }, { name: 'price' }],
          multi_label: { format: 'list', max_labels: 2, allow_empty: true },
        },
      ],
      prompt: {
        format: 'raw',
        template: '<s>[INST] Title: {title}\nText: {text}\n\n{question}[/INST]',
        answer_prefix: ' ',
      },
      model: { path: 'tweets.gguf' },
    },
    { source: 'raw.yaml' },
  );
}

function chatCodebook(): Codebook {
  return parseCodebook(
    {
      task: 'tweets',
      input: { id_column: 'id' },
      questions: [
        SENTIMENT_QUESTION,
        {
          name: 'topics',
          type: 'multi_label',
          question: 'Is the tweet about {label}?',
          labels: [{ name: 'service' }, { name: 'price' }],
          multi_label: { format: 'per_label', answers: { yes: 'yes', no: 'no' } },
        },
      ],
      prompt: { system: 'You are a careful annotator.', template: 'Tweet: {text}\n\n{question}' },
      model: { path: 'tweets.gguf' },
    },
    { source: 'chat.yaml' },
  );
}

describe('rescale review export renders as rescale sample', () => {
  let dir: string;
  let crowd: CrowdFolder;
  let rows: GoldRow[];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'rescale-review-export-sample-'));
    const fixture = await writeCrowdFolder(path.join(dir, 'crowd'), N, { topics: true });
    // The sample the labellers read: the template's {title} column, in the documents' order.
    await writeRowsParquet(
      path.join(fixture.dir, 'sample.parquet'),
      { id: 'VARCHAR', text: 'VARCHAR', title: 'VARCHAR' },
      fixture.ids.map((id, i) => ({ id, text: `text ${i}`, title: `Title "${i}"` })),
    );
    crowd = await readCrowdFolder(fixture.dir);
    const db = path.join(dir, 'review.db');
    const store = ReviewStore.open(db);
    try {
      const ana = store.addReviewer('ana', 'coder').reviewer.id;
      store.assign(
        crowd.documents.map((d) => d.id),
        0,
        1,
      );
      crowd.documents.forEach((d, i) => {
        // Document 3's sentiment and document 5's topics are rejected: neither gives an example.
        store.decide({
          reviewerId: ana,
          key: `s${i}`,
          document: d.id,
          question: 'sentiment',
          decision: i === 3 ? 'reject' : 'pick',
          labels: [SENTIMENT[(i * 7) % 3] as string],
        });
        store.decide({
          reviewerId: ana,
          key: `t${i}`,
          document: d.id,
          question: 'topics',
          decision: i === 5 ? 'reject' : 'pick',
          labels: TOPICS[i % 4] as string[],
        });
      });
      rows = new ReviewState(store, crowd).gold();
    } finally {
      store.close();
    }
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function assertSameAsSample(codebook: Codebook, name: string): Promise<string[]> {
    const out = path.join(dir, `${name}-export`);
    const summary = await exportReview(crowd, rows, out, { codebook, sizes: [12, 6], seed: 7 });
    const documents = N - 2;
    assert.deepEqual(
      summary.subsets.map((s) => [path.basename(s.file), s.size]),
      [
        ['train-06.jsonl', 6],
        ['train-12.jsonl', 12],
      ],
    );
    const sample = await writeTrainingSample({
      gold: summary.gold,
      idColumn: 'id',
      textColumn: 'text',
      labelColumn: 'sentiment',
      sizes: [6, 12, documents],
      seed: 7,
      heldOut: 0,
      outDir: path.join(dir, `${name}-sample`),
      codebook,
    });
    assert.equal(sample.manifest.poolSize, documents);
    const read = (folder: string, file: string): Promise<string> => readFile(path.join(folder, file), 'utf8');
    const sampleDir = path.dirname(sample.manifestPath);
    for (const size of ['06', '12'])
      assert.equal(await read(out, `train-${size}.jsonl`), await read(sampleDir, `train-${size}.jsonl`), size);
    const all = await read(out, 'train.jsonl');
    assert.equal(all, await read(sampleDir, `train-${documents}.jsonl`), 'train.jsonl: every verified document');

    const manifest = JSON.parse(await read(out, 'export.json')) as ReviewExportManifest;
    assert.equal(manifest.prompt.format, codebook.prompt.format);
    assert.equal(manifest.training[0]?.documents, documents);
    assert.equal(manifest.training[0]?.examples, all.trimEnd().split('\n').length);
    return all.trimEnd().split('\n');
  }

  it('writes the raw prompt + completion lines of rescale sample, the list answer in the codebook syntax', async () => {
    const lines = await assertSameAsSample(rawCodebook(), 'raw');
    assert.equal(lines.length, 2 * (N - 2), 'one example per question');
    const [sentiment, topics] = lines.slice(0, 2).map((l) => JSON.parse(l) as { prompt: string; completion: string });
    assert.deepEqual(Object.keys(sentiment ?? {}), ['prompt', 'completion']);
    assert.ok(sentiment?.prompt.startsWith('<s>[INST] Title: Title "0"\nText: Tweet number 1:'), sentiment?.prompt);
    assert.equal(sentiment?.completion, ' neg');
    // Document 1 (doc-002) has the set [service]; document 0 the empty list.
    assert.match(topics?.completion ?? '', /^ \[\]$/);
    const second = JSON.parse(lines[3] as string) as { completion: string };
    assert.match(second.completion, /Service/);
  });

  it('writes the chat lines rescale sample writes, a yes/no example per label of a per_label question', async () => {
    const lines = await assertSameAsSample(chatCodebook(), 'chat');
    assert.equal(lines.length, 3 * (N - 2), 'one example for sentiment, one per topic');
    const replies = lines
      .slice(3, 6)
      .map((l) => (JSON.parse(l) as { messages: { content: string }[] }).messages.at(-1)?.content);
    assert.deepEqual(replies, ['neu', 'yes', 'no'], 'doc-002: neutral, topics [service]');
  });

  it('without a codebook writes the default prompt of rescale sample, naming the question left out', async () => {
    const out = path.join(dir, 'default-export');
    const summary = await exportReview(crowd, rows, out, { sizes: [6], seed: 7 });
    assert.deepEqual(summary.unrendered, ['topics']);
    assert.deepEqual(
      summary.training.map((t) => [t.question, t.documents, t.examples]),
      [['sentiment', N - 1, N - 1]],
    );
    const sample = await writeTrainingSample({
      gold: summary.gold,
      idColumn: 'id',
      textColumn: 'text',
      labelColumn: 'sentiment',
      sizes: [6, N - 1],
      seed: 7,
      heldOut: 0,
      outDir: path.join(dir, 'default-sample'),
    });
    const sampleDir = path.dirname(sample.manifestPath);
    assert.equal(
      await readFile(path.join(out, 'train-6.jsonl'), 'utf8'),
      await readFile(path.join(sampleDir, 'train-06.jsonl'), 'utf8'),
    );
    assert.equal(
      await readFile(path.join(out, 'train.jsonl'), 'utf8'),
      await readFile(path.join(sampleDir, `train-${N - 1}.jsonl`), 'utf8'),
    );
  });

  it('refuses a codebook whose question the crowd did not ask, naming it', async () => {
    const codebook = parseCodebook(
      {
        task: 'tweets',
        questions: [{ name: 'stance', labels: [{ name: 'for' }, { name: 'against' }] }],
        prompt: { template: 'Stance of: {text}' },
        model: { path: 'tweets.gguf' },
      },
      { source: 'stance.yaml' },
    );
    await assert.rejects(
      exportReview(crowd, rows, path.join(dir, 'stance'), { codebook }),
      /--codebook .*stance\.yaml asks the single-label question "stance", which the crowd in .* did not ask/,
    );
  });
});
