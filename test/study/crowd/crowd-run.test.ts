// End to end: a crowd of two local fixture codebooks (the keyword model, and the multi-token keyword model with the
// crowd's label names) and two closed models on the loopback server (one choosing among the labels, one noisy model
// choosing among finer labels mapped to them), over a DuckDB-written corpus. Proposals are checked row by row, the
// agreement against a computation written here, two runs for identical bytes and the second for zero requests.

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { localScoring } from '../../../cli/crowd.js';
import { silentLogger } from '../../../contracts/logger.js';
import { isRescaleError } from '../../../contracts/errors.js';
import { EndpointList } from '../../../fallback/endpoint-list.js';
import { loadCrowdConfig } from '../../../study/crowd/crowd-config.js';
import { runCrowd, type CrowdRunOptions } from '../../../study/crowd/crowd-run.js';
import { readCrowdFolder } from '../../../study/review/crowd-folder.js';
import { fixtureModel } from '../../../scripts/harness/fixture-models.js';
import { keywordLabel, OpenAIServer, type SeenRequest, type Fault } from '../../helpers/openai-server.js';
import { fallbackSection } from '../../helpers/fallback.js';
import { queryDuckDB, sqlString, withTempDir, writeParquetWithDuckDB } from '../../../scripts/harness/parquet.js';

const KEY = 'RESCALE_TEST_CROWD_KEY';
const LABELS = ['negative', 'neutral', 'positive'] as const;

/** 20 tweets in four kinds; the truth column agrees with the keywords except on the "sad" kind, called neutral. */
const CORPUS_SQL =
  `SELECT i::BIGINT AS id, CASE i % 4 WHEN 0 THEN 'I love this great day ' || i ` +
  `WHEN 1 THEN 'what a terrible awful thing ' || i WHEN 2 THEN 'the meeting is scheduled ' || i ` +
  `ELSE 'so sad and bad news ' || i END AS text, ` +
  `CASE i % 4 WHEN 0 THEN 'positive' WHEN 1 THEN 'negative' ELSE 'neutral' END AS truth FROM range(20) t(i)`;

/** What the keyword fixture models answer (their lexicon) and the loopback server's default labeller too. */
function keywordAnswer(text: string): string {
  if (/love|great/.test(text)) return 'positive';
  if (/terrible|awful|sad|bad/.test(text)) return 'negative';
  return 'neutral';
}

/** The noisy model's fine label: sadness read as a fact (wrong); on tweets 6 and 14 an answer outside the list. */
function noisyFine(tweet: string): string {
  if (/scheduled (6|14)$/.test(tweet)) return 'banana';
  if (/love/.test(tweet)) return 'joy';
  if (/terrible/.test(tweet)) return 'anger';
  return 'fact';
}
const FINE_MAPS: Record<string, string> = { joy: 'positive', anger: 'negative', sadness: 'negative', fact: 'neutral' };

/** The direct model answers a label outside the codebook on tweets 2, 10 and 18. */
const DIRECT_OUTSIDE = /scheduled (2|10|18)$/;

function tweetOf(request: SeenRequest): string {
  const first = request.body.messages.find((m) => m.role === 'user')?.content ?? '';
  return (first.split('Tweet: ').pop() ?? '').split('\n')[0] ?? '';
}

let server: OpenAIServer;
let keyword: string;
let multitoken: string;
let transientFaults = 0;

before(async () => {
  server = await OpenAIServer.start({
    respond: (request): Fault | null => {
      const tweet = tweetOf(request);
      // One transient 500 on the first request for a "terrible" tweet: retried by the fallback's policy, then answered.
      if (/terrible/.test(tweet) && transientFaults === 0) {
        transientFaults++;
        return { kind: 'status', status: 500 };
      }
      if (request.body.model === 'noisy-test')
        return { kind: 'answer', content: JSON.stringify({ label: noisyFine(tweet) }) };
      if (DIRECT_OUTSIDE.test(tweet)) return { kind: 'answer', content: JSON.stringify({ label: 'mixed' }) };
      return null;
    },
    label: keywordLabel,
  });
  [keyword, multitoken] = await Promise.all([fixtureModel('keyword'), fixtureModel('keyword-multitoken')]);
});
after(async () => {
  await server.close();
});

const TEMPLATE = 'Classify the sentiment of the tweet as one of: {labels}.\n\nTweet: {text}';

function codebookYaml(model: string, answers: Partial<Record<(typeof LABELS)[number], string>> = {}): string {
  return stringify({
    task: 'sentiment',
    input: { text_column: 'text', id_column: 'id' },
    labels: LABELS.map((name) => ({
      name,
      description: `The tweet is ${name}.`,
      ...(answers[name] !== undefined ? { answer: answers[name] } : {}),
    })),
    prompt: { format: 'chat', system: 'You are a careful annotator. Answer with one label.', template: TEMPLATE },
    model: { path: model, max_document_tokens: 64, threads: 1 },
  });
}

function closedLabeller(name: string, model: string, extra: object = {}): object {
  const {
    routing: _routing,
    enabled: _enabled,
    ...section
  } = fallbackSection(server.baseUrl, {
    api_key_env: KEY,
    max_retries: 2,
    timeout_seconds: 2,
  });
  return { name, kind: 'closed', ...section, model, ...extra };
}

async function writeStudy(dir: string, labellers?: object[]): Promise<{ config: string; input: string }> {
  const input = await writeParquetWithDuckDB(CORPUS_SQL, path.join(dir, 'corpus.parquet'));
  await writeFile(path.join(dir, 'crowd.codebook.yaml'), codebookYaml(keyword));
  await writeFile(path.join(dir, 'keyword.codebook.yaml'), codebookYaml(keyword));
  await writeFile(
    path.join(dir, 'multitoken.codebook.yaml'),
    codebookYaml(multitoken, { negative: 'very negative', positive: 'very positive' }),
  );
  const config = path.join(dir, 'crowd.yaml');
  await writeFile(
    config,
    stringify({
      codebook: 'crowd.codebook.yaml',
      gold: { label: 'truth' },
      labellers: labellers ?? [
        { name: 'keyword', kind: 'local', codebook: 'keyword.codebook.yaml' },
        { name: 'multitoken', kind: 'local', codebook: 'multitoken.codebook.yaml' },
        closedLabeller('direct', 'gpt-test', { strategy: 'direct' }),
        closedLabeller('noisy', 'noisy-test', {
          strategy: 'mapped',
          fine_labels: Object.entries(FINE_MAPS).map(([name, mapsTo]) => ({ name, maps_to: mapsTo })),
        }),
      ],
    }),
  );
  return { config, input };
}

function options(study: { config: string; input: string }, out: string): CrowdRunOptions {
  return {
    ...study,
    out,
    sample: 12,
    seed: 7,
    env: { [KEY]: server.apiKey },
    scoreLocal: localScoring({}, silentLogger, 'auto'),
    backoff: { baseMs: 1, maxMs: 5 },
    now: () => new Date('2026-01-01T00:00:00Z'),
  };
}

interface Row {
  id: string;
  labeller: string;
  question: string;
  labels: string[];
  probability: number | null;
  error: string | null;
}

async function proposals(dir: string): Promise<Row[]> {
  return (await queryDuckDB(
    `SELECT id, labeller, question, labels, probability, error FROM read_parquet('${sqlString(
      path.join(dir, 'proposals.parquet'),
    )}')`,
  )) as unknown as Row[];
}

/** Fleiss' kappa from the pair-agreement definition: P_i = agreeing ordered pairs / n(n−1). */
function fleissByPairs(units: string[][]): number {
  const n = units[0]?.length ?? 0;
  const all = units.flat();
  const observed =
    units.reduce((sum, u) => {
      let agree = 0;
      u.forEach((a, i) => u.forEach((b, j) => (agree += i !== j && a === b ? 1 : 0)));
      return sum + agree / (n * (n - 1));
    }, 0) / units.length;
  const expected = LABELS.reduce((sum, l) => sum + (all.filter((x) => x === l).length / all.length) ** 2, 0);
  return (observed - expected) / (1 - expected);
}

/** Nominal alpha from the coincidence definition: 1 − (n − 1) Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k. */
function nominalAlpha(units: string[][]): number {
  const o = new Map<string, number>();
  for (const u of units.filter((x) => x.length >= 2)) {
    u.forEach((a, i) =>
      u.forEach((b, j) => {
        if (i !== j) o.set(`${a}|${b}`, (o.get(`${a}|${b}`) ?? 0) + 1 / (u.length - 1));
      }),
    );
  }
  const nc = new Map<string, number>();
  for (const [key, v] of o) nc.set(key.split('|')[0] as string, (nc.get(key.split('|')[0] as string) ?? 0) + v);
  const n = [...nc.values()].reduce((a, b) => a + b, 0);
  let disagree = 0;
  for (const [key, v] of o) if (key.split('|')[0] !== key.split('|')[1]) disagree += v;
  let expected = 0;
  for (const [c, a] of nc) for (const [k, b] of nc) if (c !== k) expected += a * b;
  return 1 - ((n - 1) * disagree) / expected;
}

function cohen(a: string[], b: string[]): number {
  const po = a.filter((x, i) => x === b[i]).length / a.length;
  const pe = LABELS.reduce(
    (sum, l) => sum + (a.filter((x) => x === l).length / a.length) * (b.filter((x) => x === l).length / b.length),
    0,
  );
  return (po - pe) / (1 - pe);
}

describe('runCrowd', () => {
  it(
    'writes one proposal per document, labeller and question with the known answers, agreement as computed ' +
      'independently, the same bytes twice, and nothing requested again',
    async () => {
      await withTempDir(async (dir) => {
        const study = await writeStudy(dir);
        const first = path.join(dir, 'first');
        const before = server.requests.length;
        const summary = await runCrowd(options(study, first));
        assert.equal(summary.documents, 12);
        assert.equal(summary.proposalRows, 12 * 4);
        assert.ok(server.requests.length - before > 0);
        assert.equal(transientFaults, 1);

        const documents = await queryDuckDB(
          `SELECT id, text, gold__label FROM read_parquet('${sqlString(path.join(first, 'documents.parquet'))}')`,
        );
        assert.equal(documents.length, 12);
        // Stratified by the truth: 20 rows are 5 positive, 5 negative, 10 neutral → 3, 3, 6 of 12.
        const byGold = (label: string): number => documents.filter((d) => d.gold__label === label).length;
        assert.deepEqual([byGold('positive'), byGold('negative'), byGold('neutral')], [3, 3, 6]);
        const ids = documents.map((d) => Number(d.id));
        assert.deepEqual(
          ids,
          [...ids].sort((a, b) => a - b),
          'documents in sample (corpus) order',
        );
        const textOf = new Map(documents.map((d) => [String(d.id), String(d.text)]));

        const rows = await proposals(first);
        assert.equal(rows.length, 48);
        const seen = new Set(rows.map((r) => `${r.id}/${r.labeller}/${r.question}`));
        assert.equal(seen.size, 48, 'exactly one row per (document, labeller, question)');
        for (const row of rows) {
          const text = textOf.get(row.id) as string;
          assert.equal(row.question, 'label');
          if (row.labeller === 'keyword' || row.labeller === 'multitoken') {
            assert.deepEqual([...row.labels], [keywordAnswer(text)], `${row.labeller} on "${text}"`);
            assert.ok(row.probability !== null && row.probability > 1 / 3 && row.probability <= 1);
            assert.equal(row.error, null);
          } else if (row.labeller === 'direct') {
            if (DIRECT_OUTSIDE.test(text)) {
              assert.deepEqual([...row.labels], []);
              assert.equal(row.error, 'invalid_label', 'an answer outside the codebook is an error, not mapped');
            } else {
              assert.deepEqual([...row.labels], [keywordAnswer(text)], `direct on "${text}"`);
              assert.equal(row.error, null);
            }
          } else {
            const fine = noisyFine(text);
            if (fine === 'banana') {
              assert.deepEqual([...row.labels], []);
              assert.equal(row.error, 'invalid_label');
            } else {
              assert.deepEqual([...row.labels], [FINE_MAPS[fine]], `noisy on "${text}"`);
              assert.equal(row.probability, null);
            }
          }
        }

        // Agreement, computed here from the rows read back.
        const names = ['keyword', 'multitoken', 'direct', 'noisy'];
        const labelOf = (id: string, labeller: string): string | null => {
          const row = rows.find((r) => r.id === id && r.labeller === labeller);
          return row?.error === null ? (row.labels[0] ?? null) : null;
        };
        const docIds = documents.map((d) => String(d.id));
        const complete = docIds
          .map((id) => names.map((n) => labelOf(id, n)))
          .filter((u): u is string[] => u.every((x) => x !== null));
        const units = docIds.map((id) => names.map((n) => labelOf(id, n)).filter((x): x is string => x !== null));
        const agreement = JSON.parse(await readFile(path.join(first, 'agreement.json'), 'utf8')) as {
          format: string;
          questions: {
            question: string;
            complete_documents: number;
            fleiss_kappa: number;
            krippendorff_alpha: { level: string; value: number };
            pairwise_cohen_kappa: { a: string; b: string; documents: number; kappa: number | null }[];
            disagreements: number;
          }[];
        };
        assert.equal(agreement.format, 'rescale-crowd-agreement/1');
        const [q] = agreement.questions;
        assert.ok(q !== undefined);
        assert.equal(q.complete_documents, complete.length);
        assert.ok(Math.abs(q.fleiss_kappa - fleissByPairs(complete)) < 1e-12);
        assert.equal(q.krippendorff_alpha.level, 'nominal');
        assert.ok(Math.abs(q.krippendorff_alpha.value - nominalAlpha(units)) < 1e-12);
        assert.equal(q.disagreements, units.filter((u) => u.length >= 2 && new Set(u).size > 1).length);
        assert.ok(q.disagreements >= 1, `the noisy model disagrees on the sad tweets (${docIds.join(',')})`);
        for (const labeller of ['direct', 'noisy']) {
          assert.ok(
            rows.some((r) => r.labeller === labeller && r.error === 'invalid_label'),
            `${labeller} errs once`,
          );
        }
        assert.equal(q.pairwise_cohen_kappa.length, 6);
        for (const pair of q.pairwise_cohen_kappa) {
          const both = docIds
            .map((id) => [labelOf(id, pair.a), labelOf(id, pair.b)])
            .filter((p): p is [string, string] => p[0] !== null && p[1] !== null);
          assert.equal(pair.documents, both.length);
          const expected = cohen(
            both.map((p) => p[0]),
            both.map((p) => p[1]),
          );
          if (Number.isFinite(expected)) assert.ok(Math.abs((pair.kappa ?? NaN) - expected) < 1e-12);
          else assert.equal(pair.kappa, null);
        }

        const crowd = JSON.parse(await readFile(path.join(first, 'crowd.json'), 'utf8')) as Record<string, unknown>;
        assert.equal(crowd.format, 'rescale-crowd/1');
        assert.deepEqual(crowd.sample, { source: study.input, n: 12, seed: 7, stratified_by: 'label' });
        assert.deepEqual((crowd.questions as { labels: unknown[] }[])[0]?.labels[0], {
          name: 'negative',
          description: 'The tweet is negative.',
        });
        assert.deepEqual(
          (crowd.labellers as { name: string; kind: string; strategy: string }[]).map((l) => [
            l.name,
            l.kind,
            l.strategy,
          ]),
          [
            ['keyword', 'local', 'scored'],
            ['multitoken', 'local', 'scored'],
            ['direct', 'closed', 'direct'],
            ['noisy', 'closed', 'mapped'],
          ],
        );
        assert.ok(!JSON.stringify(crowd).includes(server.apiKey), 'no key in crowd.json');
        // The folder is what "rescale review" reads: every document with four proposals, descriptions included.
        const review = await readCrowdFolder(first);
        assert.equal(review.documents.length, 12);
        assert.equal(review.questions[0]?.labels[0]?.description, 'The tweet is negative.');
        for (const doc of review.documents) assert.equal(doc.proposals.get('label')?.length, 4);

        // A second run into another folder: same bytes, and every closed answer from the cache.
        const second = path.join(dir, 'second');
        const sent = server.requests.length;
        await writeFile(
          study.config,
          (await readFile(study.config, 'utf8')) + `cache_dir: ${JSON.stringify(path.join(first, 'fallback-cache'))}\n`,
        );
        const again = await runCrowd(options(study, second));
        assert.equal(server.requests.length - sent, 0, 'the second run makes no HTTP request');
        assert.deepEqual(
          again.labellers.filter((l) => l.kind === 'closed').map((l) => l.requests),
          [0, 0],
        );
        for (const file of ['documents.parquet', 'proposals.parquet', 'agreement.json', 'crowd.json']) {
          assert.ok(
            (await readFile(path.join(first, file))).equals(await readFile(path.join(second, file))),
            `${file} is byte-identical`,
          );
        }
      });
    },
  );

  it('ends 500s, timeouts and malformed JSON in error rows after the retries, losing no document', async () => {
    await withTempDir(async (dir) => {
      const flaky = (model: string): object => closedLabeller(model, model, { timeout_seconds: 0.5, max_retries: 1 });
      const study = await writeStudy(dir, [flaky('flaky-a'), flaky('flaky-b')]);
      const previous = server.requests.length;
      server.setResponder((request) => {
        const tweet = tweetOf(request);
        if (/meeting/.test(tweet)) return { kind: 'status', status: 500 };
        if (/sad/.test(tweet)) return { kind: 'hang' };
        if (/terrible/.test(tweet)) return { kind: 'malformed' };
        return null;
      });
      try {
        const summary = await runCrowd({ ...options(study, path.join(dir, 'out')), sample: undefined });
        assert.equal(summary.documents, 20);
        const rows = await proposals(path.join(dir, 'out'));
        assert.equal(rows.length, 40);
        const texts = new Map(
          (await queryDuckDB(`SELECT id::VARCHAR AS id, text FROM read_parquet('${sqlString(study.input)}')`)).map(
            (r) => [String(r.id), String(r.text)],
          ),
        );
        for (const row of rows) {
          const text = texts.get(row.id) as string;
          if (/love/.test(text)) assert.deepEqual([row.labels, row.error], [['positive'], null]);
          else assert.deepEqual([row.labels, row.error, row.probability], [[], 'request_failed', null], text);
        }
        // Two attempts (one retry) for each of the 15 failing documents, per labeller.
        assert.equal(server.requests.length - previous, 2 * (5 + 15 * 2));
      } finally {
        server.setResponder(() => null);
      }
    });
  });
  it('replays closed labellers offline from the cache: no key, no request, the uncached over_budget', async () => {
    await withTempDir(async (dir) => {
      const study = await writeStudy(dir, [closedLabeller('direct', 'gpt-test'), closedLabeller('other', 'gpt-other')]);
      const live = path.join(dir, 'live');
      await runCrowd(options(study, live));
      await writeFile(
        study.config,
        (await readFile(study.config, 'utf8')) + `cache_dir: ${JSON.stringify(path.join(live, 'fallback-cache'))}\n`,
      );
      const sent = server.requests.length;
      const replay = path.join(dir, 'replay');
      await runCrowd({ ...options(study, replay), env: {}, offline: true, sample: undefined });
      assert.equal(server.requests.length, sent);
      const before = new Map((await proposals(live)).map((r) => [`${r.id}/${r.labeller}`, r]));
      const after = await proposals(replay);
      assert.equal(after.length, 40);
      for (const row of after) {
        const earlier = before.get(`${row.id}/${row.labeller}`);
        if (earlier === undefined) assert.deepEqual([row.labels, row.error], [[], 'over_budget']);
        else assert.deepEqual(row, earlier);
      }
      assert.equal(after.filter((r) => r.error === 'over_budget').length, 16, '8 documents outside the sample, twice');
    });
  });
  it('refuses a truth value that is not a label of its question, naming the file, column, row and value', async () => {
    await withTempDir(async (dir) => {
      const study = await writeStudy(dir, [
        { name: 'keyword', kind: 'local', codebook: 'keyword.codebook.yaml' },
        { name: 'multitoken', kind: 'local', codebook: 'multitoken.codebook.yaml' },
      ]);
      const input = await writeParquetWithDuckDB(
        `SELECT id, text, CASE WHEN id = 5 THEN 'Negative' ELSE truth END AS truth FROM (${CORPUS_SQL})`,
        path.join(dir, 'typo.parquet'),
      );
      await assert.rejects(runCrowd({ ...options(study, path.join(dir, 'out')), input }), (error: unknown) => {
        assert.ok(isRescaleError(error, 'INPUT_INVALID'));
        assert.match(
          error.message,
          /typo\.parquet, column "truth", row 5: truth label "Negative" is not a label of question "label" \(negative, neutral, positive\)/,
        );
        return true;
      });
    });
  });

  it('takes a closed labeller’s URL and key source from the endpoint list it names', async () => {
    await withTempDir(async (dir) => {
      const {
        base_url: _url,
        api_key_env: _key,
        ...named
      } = closedLabeller('listed', 'gpt-test') as Record<string, unknown>;
      const study = await writeStudy(dir, [{ ...named, endpoint: 'loop' }, closedLabeller('inline', 'gpt-test')]);
      const endpoints = EndpointList.parse(
        stringify({ endpoints: [{ name: 'loop', base_url: server.baseUrl, models: ['gpt-test'], api_key_env: KEY }] }),
        path.join(dir, 'endpoints.yaml'),
      );
      await assert.rejects(runCrowd(options(study, path.join(dir, 'none'))), (error: unknown) => {
        assert.ok(isRescaleError(error));
        assert.match(error.message, /field "labellers\[0\]\.endpoint".*--endpoints FILE/);
        return true;
      });
      await runCrowd({ ...options(study, path.join(dir, 'out')), endpoints });
      const rows = await proposals(path.join(dir, 'out'));
      const listed = rows.filter((r) => r.labeller === 'listed');
      assert.equal(listed.length, 12);
      for (const row of listed) {
        const inline = rows.find((r) => r.labeller === 'inline' && r.id === row.id);
        assert.deepEqual([row.labels, row.error], [inline?.labels, inline?.error], 'same URL and model, same answer');
      }
      const crowd = await readFile(path.join(dir, 'out', 'crowd.json'), 'utf8');
      assert.match(crowd, /"endpoint": "loop"/);
    });
  });
});

describe('loadCrowdConfig', () => {
  const refuses = async (dir: string, config: object, pattern: RegExp): Promise<void> => {
    const file = path.join(dir, 'crowd.yaml');
    await writeFile(file, stringify(config));
    await assert.rejects(loadCrowdConfig(file), (error: unknown) => {
      assert.ok(isRescaleError(error));
      assert.match(error.message, pattern);
      return true;
    });
  };

  it('refuses an unknown kind, duplicate names, a missing codebook, a bad fine label, naming the field', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'c.yaml'), codebookYaml(keyword));
      const local = { name: 'a', kind: 'local', codebook: 'c.yaml' };
      await refuses(
        dir,
        { codebook: 'c.yaml', labellers: [local, { name: 'b', kind: 'human' }] },
        /labellers\[1\]\.kind/,
      );
      await refuses(dir, { codebook: 'c.yaml', labellers: [local, local] }, /"labellers\[1\]\.name": "a" names two/);
      await refuses(dir, { codebook: 'nowhere.yaml', labellers: [local, local] }, /field "codebook": cannot read/);
      await refuses(
        dir,
        { codebook: 'c.yaml', labellers: [local, { ...local, name: 'b', codebook: 'gone.yaml' }] },
        /field "labellers\[1\]\.codebook"/,
      );
      await refuses(
        dir,
        {
          codebook: 'c.yaml',
          labellers: [
            local,
            closedLabeller('m', 'm', { strategy: 'mapped', fine_labels: [{ name: 'joy', maps_to: 'happy' }] }),
          ],
        },
        /"labellers\[1\]\.fine_labels\[0\]\.maps_to": question "label" has no label "happy"/,
      );
      await refuses(
        dir,
        { codebook: 'c.yaml', labellers: [local, { ...closedLabeller('k', 'k'), api_key: 'sk-x' }] },
        /"labellers\[1\]\.api_key": never put an API key/,
      );
    });
  });
});
