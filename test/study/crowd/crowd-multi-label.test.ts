// `rescale crowd` with a multi-label question: local labellers propose their `<question>__labels` sets (the keyword
// model's known answers), the truth is a list column kept as a list in documents.parquet, the draw is stratified by
// each row's rarest true label, and agreement is Krippendorff's alpha per label over yes/no judgements, recomputed
// here from proposals.parquet as written. A closed labeller (strategy direct, on the loopback server) answers the set
// through the fallback's multi-label request: its rows, an answer outside the set after the correction round, a
// failed request, the agreement with a local labeller, and a re-run from the cache. The mapped strategy is refused.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { formatCrowd, localScoring } from '../../../cli/crowd.js';
import { isRescaleError } from '../../../contracts/errors.js';
import { silentLogger } from '../../../contracts/logger.js';
import { loadCrowdConfig } from '../../../study/crowd/crowd-config.js';
import { runCrowd } from '../../../study/crowd/crowd-run.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';
import { OpenAIServer, type SeenRequest } from '../../helpers/openai-server.js';
import { fallbackSection } from '../../helpers/fallback.js';
import {
  duckDBTypes,
  queryDuckDB,
  sqlString,
  withTempDir,
  writeParquetWithDuckDB,
} from '../../../scripts/harness/parquet.js';

const MOODS = ['cheer', 'gloom', 'mixed'];

/** The per_label codebook of test/coordinator/multi-label-run.test.ts, whose answers on the keyword model are known. */
function moodsCodebook(model: string, contrary = false): string {
  return stringify({
    task: 'moods',
    input: { id_column: 'id' },
    questions: [
      {
        name: 'moods',
        type: 'multi_label',
        question: 'Does the tweet feel {description}?',
        labels: [
          { name: 'cheer', description: 'glad' },
          { name: 'gloom', description: 'sad, angry and sorry' },
          { name: 'mixed', description: 'wonderful but awful and bad', threshold: 0.6 },
        ],
        multi_label: {
          format: 'per_label',
          // The contrary labeller reads the keyword model's "negative" as yes: it proposes the other labels.
          answers: contrary ? { yes: 'negative', no: 'positive' } : { yes: 'positive', no: 'negative' },
        },
      },
    ],
    prompt: { template: 'Tweet: {text}\n\n{question} Answer yes or no.' },
    model: { path: model, max_document_tokens: 64, threads: 1 },
  });
}

const TWEETS: readonly (readonly [string, readonly string[], readonly string[]])[] = [
  // text, the keyword model's set at the default thresholds, the truth
  ['I love this, what a great and happy day, best ever', ['cheer', 'gloom', 'mixed'], ['cheer']],
  ['The meeting is at 3pm in room 12', ['cheer'], []],
  ['This is awful. I hate it, terrible service', [], ['gloom']],
  ['great fun, nice but awful', ['cheer', 'mixed'], ['cheer', 'mixed']],
  ['The bus is late again today', ['cheer'], ['gloom']],
];

const KEY = 'RESCALE_TEST_CROWD_KEY';
/** The closed model answers a label outside the set for this tweet, also after the correction. */
const OUTSIDE = 4;

/** The tweet a request is about (the document is written once, before the questions). */
function tweetOf(request: SeenRequest): number {
  const user = request.body.messages.find((m) => m.role === 'user')?.content ?? '';
  return TWEETS.findIndex(([text]) => user.includes(`Tweet: ${text}\n`));
}

let keyword: string;
let server: OpenAIServer;
before(async () => {
  keyword = await fixtureModel('keyword');
  // The closed model answers each tweet's true set, listed back to front (the proposal is in codebook order).
  // The "gpt-flaky" model fails every request with a 500.
  server = await OpenAIServer.start({
    respond: (request) => {
      if (request.body.model === 'gpt-flaky') return { kind: 'status', status: 500 };
      const i = tweetOf(request);
      const moods = i === OUTSIDE ? ['gloom', 'joy'] : [...(TWEETS[i]?.[2] ?? ['nothing'])].reverse();
      return { kind: 'answer', content: JSON.stringify({ moods }) };
    },
  });
});
after(async () => {
  await server.close();
});

function closedLabeller(name: string, extra: object = {}): object {
  const { routing: _routing, enabled: _enabled, ...section } = fallbackSection(server.baseUrl, { api_key_env: KEY });
  return { name, kind: 'closed', ...section, ...extra };
}

interface Row {
  id: string;
  labeller: string;
  labels: string[];
  probability: number | null;
  error: string | null;
}

async function proposals(out: string): Promise<Row[]> {
  const file = sqlString(path.join(out, 'proposals.parquet'));
  return (await queryDuckDB(
    `SELECT id, labeller, labels, probability, error FROM read_parquet('${file}')`,
  )) as unknown as Row[];
}

async function writeStudy(dir: string, labellers: object[]): Promise<{ config: string; input: string }> {
  const sqlList = (set: readonly string[]): string =>
    set.length === 0 ? '[]::VARCHAR[]' : `[${set.map((l) => `'${l}'`).join(', ')}]`;
  const rows = TWEETS.map(([text, , truth], i) => `(${i}::BIGINT, '${sqlString(text)}', ${sqlList(truth)})`);
  const input = await writeParquetWithDuckDB(
    `SELECT * FROM (VALUES ${rows.join(', ')}) t(id, text, truth)`,
    path.join(dir, 'corpus.parquet'),
  );
  await writeFile(path.join(dir, 'moods.yaml'), moodsCodebook(keyword));
  await writeFile(path.join(dir, 'contrary.yaml'), moodsCodebook(keyword, true));
  const config = path.join(dir, 'crowd.yaml');
  await writeFile(config, stringify({ codebook: 'moods.yaml', gold: { moods: 'truth' }, labellers }));
  return { config, input };
}

/** Nominal alpha of binary judgements (closed form): 1 − (n − 1)·o_yn / (n_y·n_n) over documents with ≥ 2. */
function binaryAlpha(units: readonly (readonly boolean[])[]): number | null {
  let oYN = 0;
  let nY = 0;
  let nN = 0;
  for (const given of units.filter((u) => u.length >= 2)) {
    const yes = given.filter(Boolean).length;
    oYN += (yes * (given.length - yes)) / (given.length - 1);
    nY += yes;
    nN += given.length - yes;
  }
  return nY * nN === 0 ? null : 1 - ((nY + nN - 1) * oYN) / (nY * nN);
}

describe('rescale crowd with a multi-label question', () => {
  it('refuses a truth list holding a label its question lacks, naming the file, column, row and label', async () => {
    await withTempDir(async (dir) => {
      const study = await writeStudy(dir, [
        { name: 'default', kind: 'local', codebook: 'moods.yaml' },
        { name: 'contrary', kind: 'local', codebook: 'contrary.yaml' },
      ]);
      // Row 2's truth gains a misspelt label; the rest of the file is as before.
      await writeParquetWithDuckDB(
        `SELECT id, text, CASE WHEN id = 2 THEN ['gloom', 'Gloom'] ELSE truth END AS truth ` +
          `FROM read_parquet('${sqlString(study.input)}')`,
        path.join(dir, 'typo.parquet'),
      );
      for (const sample of [undefined, 3]) {
        await assert.rejects(
          runCrowd({
            ...study,
            input: path.join(dir, 'typo.parquet'),
            out: path.join(dir, `out-${sample ?? 'all'}`),
            ...(sample === undefined ? {} : { sample, seed: 1 }),
            env: {},
            scoreLocal: localScoring({}, silentLogger, 'auto'),
          }),
          (error: unknown) =>
            isRescaleError(error, 'INPUT_INVALID') &&
            error.message.includes(
              'typo.parquet, column "truth", row 2: truth label "Gloom" is not a label of ' +
                'question "moods" (cheer, gloom, mixed)',
            ),
        );
      }
    });
  });

  it('proposes local label sets, keeps the truth as a list and measures agreement per label', async () => {
    await withTempDir(async (dir) => {
      const study = await writeStudy(dir, [
        { name: 'default', kind: 'local', codebook: 'moods.yaml' },
        { name: 'contrary', kind: 'local', codebook: 'contrary.yaml' },
      ]);
      const out = path.join(dir, 'out');
      const summary = await runCrowd({
        ...study,
        out,
        sample: 4,
        seed: 3,
        env: {},
        scoreLocal: localScoring({}, silentLogger, 'auto'),
      });
      assert.equal(summary.documents, 4);
      const crowd = JSON.parse(await readFile(path.join(out, 'crowd.json'), 'utf8')) as {
        sample: { stratified_by?: string };
      };
      assert.equal(crowd.sample.stratified_by, 'moods');

      const documents = path.join(out, 'documents.parquet');
      assert.equal((await duckDBTypes(documents)).gold__moods, 'VARCHAR[]');
      const docs = await queryDuckDB(`SELECT id, text, gold__moods FROM read_parquet('${sqlString(documents)}')`);
      // Strata by the rarest true label: "mixed" (row 3, where cheer is commoner), the empty set (row 1), cheer
      // (row 0) one row each, gloom two; 4 of 5 by largest remainder takes one of each.
      for (const doc of docs) {
        const truth = TWEETS[Number(doc.id)]?.[2];
        assert.deepEqual(doc.gold__moods, truth);
      }
      assert.ok(docs.some((d) => (d.gold__moods as string[]).includes('mixed')));
      assert.ok(docs.some((d) => (d.gold__moods as string[]).length === 0));

      const rows = (await queryDuckDB(
        `SELECT id, labeller, labels, probability, error FROM read_parquet('${sqlString(
          path.join(out, 'proposals.parquet'),
        )}')`,
      )) as { id: string; labeller: string; labels: string[]; probability: number | null; error: string | null }[];
      assert.equal(rows.length, 8);
      for (const row of rows.filter((r) => r.labeller === 'default')) {
        assert.deepEqual(row.labels, TWEETS[Number(row.id)]?.[1], `tweet ${row.id}`);
        assert.equal(row.error, null);
        assert.ok(row.probability !== null && row.probability > 0 && row.probability <= 1);
      }
      for (const row of rows.filter((r) => r.labeller === 'contrary')) {
        const own = TWEETS[Number(row.id)]?.[1] ?? [];
        // mixed keeps its 0.6 bar on the other side, so only cheer and gloom are sure to flip.
        for (const mood of ['cheer', 'gloom']) assert.equal(row.labels.includes(mood), !own.includes(mood), row.id);
      }
      const [agreement] = summary.agreement;
      assert.ok(agreement !== undefined);
      const byId = (labeller: string): Map<string, string[]> =>
        new Map(rows.filter((r) => r.labeller === labeller).map((r) => [r.id, r.labels]));
      const [a, b] = [byId('default'), byId('contrary')];
      const expected = MOODS.map((mood) =>
        binaryAlpha(
          [...a.keys()].map((id) => [a.get(id)?.includes(mood) ?? false, b.get(id)?.includes(mood) ?? false]),
        ),
      );
      assert.deepEqual(
        agreement.perLabelAlpha?.map((p) => p.label),
        MOODS,
      );
      agreement.perLabelAlpha?.forEach((p, i) => {
        const want = expected[i] ?? null;
        if (want === null) assert.equal(p.alpha, null, p.label);
        else assert.ok(Math.abs((p.alpha as number) - want) < 1e-12, `${p.label}: ${p.alpha} vs ${want}`);
      });
      const defined = expected.filter((x): x is number => x !== null);
      assert.ok(defined.length >= 2, 'labels with an alpha');
      const mean = defined.reduce((x, y) => x + y, 0) / defined.length;
      assert.ok(Math.abs((agreement.krippendorffAlpha.value as number) - mean) < 1e-12);
      assert.ok(mean < 0, 'labellers who contradict each other agree worse than chance');
      assert.equal(agreement.disagreements, 4);
      const json = JSON.parse(await readFile(path.join(out, 'agreement.json'), 'utf8')) as {
        questions: { per_label_alpha?: unknown }[];
      };
      assert.deepEqual(json.questions[0]?.per_label_alpha, agreement.perLabelAlpha);
      const printed = formatCrowd(summary);
      assert.match(printed, /question moods \(multi-label\).*mean -?\d\.\d{3}/);
      assert.match(printed, /cheer\s+-?\d\.\d{3}/);
    });
  });

  it('has a direct closed labeller answer label sets, replayed from the cache with the same bytes', async () => {
    await withTempDir(async (dir) => {
      const study = await writeStudy(dir, [
        { name: 'default', kind: 'local', codebook: 'moods.yaml' },
        closedLabeller('api', { strategy: 'direct' }),
      ]);
      const run = (out: string): ReturnType<typeof runCrowd> =>
        runCrowd({
          ...study,
          out,
          env: { [KEY]: server.apiKey },
          scoreLocal: localScoring({}, silentLogger, 'auto'),
          backoff: { baseMs: 1, maxMs: 5 },
          now: () => new Date('2026-01-01T00:00:00Z'),
        });
      const first = path.join(dir, 'first');
      const sent = server.requests.length;
      const summary = await run(first);
      // One request per tweet, and the correction round for the answer outside the set.
      assert.equal(server.requests.length - sent, TWEETS.length + 1);
      // The closed labeller is asked which labels apply, not the local prompts' "Answer yes or no." of the template.
      const asked = server.requests.slice(sent).find((r) => tweetOf(r) === 1 && r.body.messages.length === 1);
      assert.equal(
        asked?.user,
        `Tweet: ${TWEETS[1]?.[0]}\n\nAnswer each question:\n\nmoods: Which of these labels apply?\n` +
          '- cheer: Does the tweet feel glad?\n- gloom: Does the tweet feel sad, angry and sorry?\n' +
          '- mixed: Does the tweet feel wonderful but awful and bad?\n' +
          'Answer with the list of the labels that apply.\n\n' +
          'Answer with a JSON object {"moods": ["<label>", ...]} where moods is a list of the labels that apply, ' +
          'each at most once ([] when none applies), from: "cheer", "gloom", "mixed".',
      );
      const rows = await proposals(first);
      assert.equal(rows.length, 2 * TWEETS.length);
      for (const row of rows.filter((r) => r.labeller === 'api')) {
        const i = Number(row.id);
        if (i === OUTSIDE) {
          assert.deepEqual([row.labels, row.probability, row.error], [[], null, 'invalid_label']);
          continue;
        }
        const truth = TWEETS[i]?.[2] ?? [];
        assert.deepEqual([row.labels, row.error], [truth, null], `tweet ${i}`);
        // The logprob confidence of the listed labels' tokens; an empty list has none.
        if (truth.length === 0) assert.equal(row.probability, null);
        else assert.ok(row.probability !== null && row.probability > 0 && row.probability < 1, `tweet ${i}`);
      }
      const api = summary.labellers.find((l) => l.name === 'api');
      assert.deepEqual([api?.kind, api?.errors, api?.requests], ['closed', 1, TWEETS.length + 1]);

      // The closed labeller counts in the per-label alpha, over the documents both answered.
      const answered = rows.filter((r) => r.error === null);
      const byId = (labeller: string): Map<string, string[]> =>
        new Map(answered.filter((r) => r.labeller === labeller).map((r) => [r.id, r.labels]));
      const [a, b] = [byId('default'), byId('api')];
      const [agreement] = summary.agreement;
      assert.deepEqual(
        agreement?.perLabelAlpha?.map((p) => p.label),
        MOODS,
      );
      agreement?.perLabelAlpha?.forEach((p, k) => {
        const mood = MOODS[k] as string;
        const want = binaryAlpha(
          [...a.keys()]
            .map((id) => [id, b.get(id)])
            .filter((x): x is [string, string[]] => x[1] !== undefined)
            .map(([id, set]) => [a.get(id)?.includes(mood) ?? false, set.includes(mood)]),
        );
        if (want === null) assert.equal(p.alpha, null, p.label);
        else assert.ok(Math.abs((p.alpha as number) - want) < 1e-12, `${p.label}: ${p.alpha} vs ${want}`);
      });
      assert.ok(agreement?.perLabelAlpha?.some((p) => p.alpha !== null));

      // A re-run from the first run's cache: no request, no cost, the same bytes.
      await writeFile(
        study.config,
        (await readFile(study.config, 'utf8')) + `cache_dir: ${JSON.stringify(path.join(first, 'fallback-cache'))}\n`,
      );
      const second = path.join(dir, 'second');
      const before = server.requests.length;
      const again = await run(second);
      assert.equal(server.requests.length, before, 'the re-run makes no HTTP request');
      const replayed = again.labellers.find((l) => l.name === 'api');
      assert.deepEqual([replayed?.requests, replayed?.costUsd], [0, 0]);
      for (const file of ['documents.parquet', 'proposals.parquet', 'agreement.json', 'crowd.json']) {
        assert.ok(
          (await readFile(path.join(first, file))).equals(await readFile(path.join(second, file))),
          `${file} is byte-identical`,
        );
      }
    });
  });

  it('ends failed requests in request_failed rows and refuses the mapped strategy, naming the field', async () => {
    await withTempDir(async (dir) => {
      const study = await writeStudy(dir, [
        closedLabeller('api'),
        closedLabeller('flaky', { model: 'gpt-flaky', max_retries: 0 }),
      ]);
      const summary = await runCrowd({
        ...study,
        out: path.join(dir, 'out'),
        env: { [KEY]: server.apiKey },
        scoreLocal: localScoring({}, silentLogger, 'auto'),
        backoff: { baseMs: 1, maxMs: 5 },
      });
      for (const row of await proposals(path.join(dir, 'out'))) {
        if (row.labeller === 'flaky') assert.deepEqual([row.labels, row.error], [[], 'request_failed']);
      }
      assert.equal(summary.labellers.find((l) => l.name === 'flaky')?.errors, TWEETS.length);
      await writeFile(
        study.config,
        stringify({
          codebook: 'moods.yaml',
          labellers: [
            closedLabeller('api'),
            closedLabeller('fine', { strategy: 'mapped', fine_labels: [{ name: 'joy', maps_to: 'cheer' }] }),
          ],
        }),
      );
      await assert.rejects(
        loadCrowdConfig(study.config),
        (error: unknown) =>
          isRescaleError(error, 'CONFIG_INVALID') &&
          error.message.includes('"labellers[1].strategy"') &&
          error.message.includes('multi-label'),
      );
    });
  });
});
