// The operator's endpoint list: validation that names the file, field and line; a codebook's `endpoint:` resolved
// against it (allowlisted models, budget cap, rate caps); refusal of codebook-chosen URLs and keys in cluster mode;
// the fallback identity follows the resolved URL and model and holds no key material.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isRescaleError } from '../../contracts/errors.js';
import { fallbackIdentity, parseFallbackConfig, type FallbackConfigInput } from '../../contracts/fallback-config.js';
import { EndpointList } from '../../fallback/endpoint-list.js';
import { resolveFallback } from '../../fallback/resolve-fallback.js';
import { endpointSection, fallbackSection, sentimentCodebook } from '../helpers/fallback.js';

const FILE = '/etc/rescale/endpoints.yaml';

const LIST = `endpoints:
  - name: openai
    base_url: https://api.example.test/v1/
    models: [gpt-test, gpt-mini]
    api_key_env: RESCALE_TEST_ENDPOINT_KEY
    limits:
      max_budget_usd: 20
      max_requests_per_minute: 100
  - name: azure
    base_url: https://azure.example.test/openai/deployments/d1
    models: [d1]
    api_key_file: keys/azure.key
    auth_header: api-key
    api_version: 2024-06-01
`;

/** A fallback section that names the "openai" endpoint (the cluster form): no URL, no key source. */
function namedSection(overrides: Partial<FallbackConfigInput> = {}): FallbackConfigInput {
  return endpointSection('openai', overrides);
}

function listInvalid(text: string, pattern: RegExp): void {
  assert.throws(
    () => EndpointList.parse(text, FILE),
    (error: unknown) =>
      isRescaleError(error, 'CONFIG_INVALID') && error.message.includes(FILE) && pattern.test(error.message),
  );
}

describe('EndpointList.parse', () => {
  it('reads every field, strips a trailing slash and resolves a key file against the list’s folder', () => {
    const list = EndpointList.parse(LIST, FILE);
    assert.deepEqual(list.names, ['openai', 'azure']);
    const openai = list.endpoint('openai');
    assert.equal(openai?.baseUrl, 'https://api.example.test/v1');
    assert.deepEqual(openai?.apiKey, { kind: 'env', name: 'RESCALE_TEST_ENDPOINT_KEY' });
    assert.deepEqual([openai?.maxBudgetUsd, openai?.maxRequestsPerMinute, openai?.maxTokensPerMinute], [20, 100, null]);
    const azure = list.endpoint('azure');
    assert.deepEqual(azure?.apiKey, { kind: 'file', path: '/etc/rescale/keys/azure.key' });
    assert.deepEqual([azure?.authHeader, azure?.apiVersion], ['api-key', '2024-06-01']);
  });

  it('names the file, the field and its line for missing fields, a bad URL, an unknown key', () => {
    listInvalid(
      'endpoints:\n  - name: a\n    base_url: https://x.test\n    api_key_env: K\n',
      /"endpoints\[0\]\.models"/,
    );
    listInvalid(
      'endpoints:\n  - name: a\n    base_url: ftp.x.test\n    models: [m]\n    api_key_env: K\n',
      /field "endpoints\[0\]\.base_url" \(line 3\): give an http\(s\) URL/,
    );
    listInvalid(
      'endpoints:\n  - base_url: https://x.test\n    models: [m]\n    api_key_env: K\n',
      /endpoints\[0\]\.name/,
    );
    listInvalid(
      'endpoints:\n  - name: a\n    base_url: https://x.test\n    models: [m]\n',
      /endpoints\[0\]\.api_key_env.*exactly one of api_key_env or api_key_file/,
    );
    listInvalid(
      'endpoints:\n  - name: a\n    base_url: https://x.test\n    models: [m]\n    api_key_env: K\n    api_key: sk-1\n',
      /unknown key "api_key".*endpoint list fields/,
    );
    listInvalid('endpoints: []\n', /"endpoints".*at least one endpoint/);
    listInvalid('endpoints:\n  - name: [unclosed\n', /not valid YAML at line/);
  });

  it('refuses two endpoints of the same name, naming the second', () => {
    listInvalid(
      `${LIST}  - name: openai\n    base_url: https://evil.test/v1\n    models: [gpt-test]\n    api_key_env: K\n`,
      /field "endpoints\[2\]\.name" \(line 15\).*"openai".*its own name/,
    );
  });

  it('never echoes a value of the file in an error', () => {
    const secret = 'sk-live-0123456789abcdef';
    assert.throws(
      () =>
        EndpointList.parse(
          `endpoints:\n  - name: a\n    base_url: ${secret}\n    models: [m]\n    api_key_env: K\n`,
          FILE,
        ),
      (error: unknown) => isRescaleError(error, 'CONFIG_INVALID') && !error.message.includes(secret),
    );
  });
});

describe('EndpointList.load and keyWarnings', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'rescale-endpoints-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('names the file it cannot read', async () => {
    const missing = path.join(dir, 'missing.yaml');
    await assert.rejects(
      EndpointList.load(missing),
      (error: unknown) =>
        isRescaleError(error, 'CONFIG_INVALID') && error.message.includes(missing) && /--endpoints/.test(error.message),
    );
  });

  it('warns about each key it cannot read, naming the endpoint and the source, never the key', async () => {
    const file = path.join(dir, 'endpoints.yaml');
    await writeFile(file, LIST);
    const list = await EndpointList.load(file);
    const secret = 'sk-test-endpoint-key-42';
    const warnings = await list.keyWarnings({ RESCALE_TEST_ENDPOINT_KEY: secret });
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0] ?? '', /endpoint "azure".*keys\/azure\.key cannot be read \(ENOENT\)/);
    const none = await list.keyWarnings({});
    assert.equal(none.length, 2);
    assert.match(none[0] ?? '', /endpoint "openai".*environment variable RESCALE_TEST_ENDPOINT_KEY is not set/);
    assert.ok(![...warnings, ...none].some((line) => line.includes(secret)));
  });
});

describe('a codebook fallback that names an endpoint', () => {
  const list = EndpointList.parse(LIST, FILE);
  const env = { RESCALE_TEST_ENDPOINT_KEY: 'sk-coordinator' };

  it('parses without a URL or key source of its own, and refuses one beside the name', () => {
    const config = parseFallbackConfig(namedSection());
    assert.equal(config?.endpoint, 'openai');
    assert.equal(config?.baseUrl, '');
    assert.throws(
      () => parseFallbackConfig(namedSection({ base_url: 'http://evil.test/v1' }), { source: 'cb.yaml' }),
      (error: unknown) =>
        isRescaleError(error, 'CODEBOOK_INVALID') && /cb\.yaml: field "fallback\.base_url"/.test(error.message),
    );
    assert.throws(() => fallbackIdentity(config!), /resolved/);
  });

  it('resolves to the endpoint’s URL, key source and header, with rate limits lowered to its caps', async () => {
    const codebook = sentimentCodebook(
      namedSection({ rate_limit: { requests_per_minute: 500, tokens_per_minute: 9 } }),
    );
    const plan = await resolveFallback(codebook, { env, endpoints: list, endpointsOnly: true });
    assert.ok(plan.active);
    assert.equal(plan.apiKey, 'sk-coordinator');
    assert.equal(plan.config.baseUrl, 'https://api.example.test/v1');
    assert.deepEqual(plan.config.apiKey, { kind: 'env', name: 'RESCALE_TEST_ENDPOINT_KEY' });
    assert.deepEqual(plan.config.rateLimit, { requestsPerMinute: 100, tokensPerMinute: 9 });
  });

  it('refuses an unknown endpoint, a model off the allowlist and a budget over the cap, naming the field', async () => {
    const refused = async (section: FallbackConfigInput, pattern: RegExp): Promise<void> => {
      await assert.rejects(
        resolveFallback(sentimentCodebook(section), { env, endpoints: list, endpointsOnly: true }),
        (error: unknown) => isRescaleError(error, 'CODEBOOK_INVALID') && pattern.test(error.message),
      );
    };
    await refused(namedSection({ endpoint: 'evil' }), /field "fallback\.endpoint": no endpoint "evil".*openai, azure/);
    await refused(namedSection({ model: 'gpt-huge' }), /field "fallback\.model".*allowed: gpt-test, gpt-mini/);
    await refused(namedSection({ budget: { usd: 50 } }), /field "fallback\.budget\.usd".*at most 20 USD/);
    await refused(namedSection({ budget: { requests: 5 } }), /field "fallback\.budget\.usd"/);
  });

  it('is refused without an endpoint list, even offline; --no-fallback turns it off without one', async () => {
    const codebook = sentimentCodebook(namedSection());
    await assert.rejects(
      resolveFallback(codebook, { env, offline: true }),
      (error: unknown) =>
        isRescaleError(error, 'CODEBOOK_INVALID') && /fallback\.endpoint.*--endpoints FILE/.test(error.message),
    );
    const off = await resolveFallback(codebook, { env, disabled: true });
    assert.equal(off.active, false);
  });
});

describe('cluster mode (endpointsOnly)', () => {
  const list = EndpointList.parse(LIST, FILE);

  it('refuses a codebook that picks its own URL or key, naming the field and the endpoints to use', async () => {
    const cases: [FallbackConfigInput, string][] = [
      [fallbackSection('http://127.0.0.1:9/v1', { api_key_env: 'RESCALE_REDIS_URL' }), 'base_url'],
      [{ ...fallbackSection('http://x'), base_url: undefined, api_key_env: 'RESCALE_REDIS_URL' }, 'api_key_env'],
      [
        { ...fallbackSection('http://x'), base_url: undefined, api_key_env: undefined, api_key_file: '/t' },
        'api_key_file',
      ],
      [{ ...fallbackSection('http://x'), base_url: undefined, api_key_env: undefined }, 'endpoint'],
    ];
    for (const [section, field] of cases) {
      const codebook = sentimentCodebook(section);
      for (const endpoints of [list, null]) {
        await assert.rejects(
          resolveFallback(codebook, { env: { RESCALE_REDIS_URL: 'redis://secret' }, endpoints, endpointsOnly: true }),
          (error: unknown) =>
            isRescaleError(error, 'CODEBOOK_INVALID') &&
            error.message.includes(`field "fallback.${field}"`) &&
            /endpoint:/.test(error.message) &&
            (endpoints === null ? /--endpoints FILE/ : /openai, azure/).test(error.message) &&
            !error.message.includes('redis://secret'),
        );
      }
    }
  });

  it('still lets a codebook with its own URL run local labels only with --no-fallback', async () => {
    const plan = await resolveFallback(sentimentCodebook(fallbackSection('http://evil.test/v1')), {
      env: {},
      endpoints: list,
      endpointsOnly: true,
      disabled: true,
    });
    assert.deepEqual(plan, { active: false, reason: 'disabled with --no-fallback' });
  });
});

describe('fallbackIdentity of a resolved endpoint', () => {
  const resolved = async (
    listText: string,
    section: FallbackConfigInput,
    key = 'sk-a',
    offline = false,
  ): Promise<string> => {
    const plan = await resolveFallback(sentimentCodebook(section), {
      env: { RESCALE_TEST_ENDPOINT_KEY: key },
      offline,
      endpoints: EndpointList.parse(listText, FILE),
      endpointsOnly: true,
    });
    assert.ok(plan.active);
    return plan.identity;
  };

  it('is stable, follows the resolved URL and model, and not the key, its source or the endpoint’s name', async () => {
    const base = await resolved(LIST, namedSection());
    assert.equal(await resolved(LIST, namedSection()), base);
    assert.equal(await resolved(LIST, namedSection(), 'sk-other-key'), base, 'the key changes the identity');
    assert.equal(
      await resolved(
        LIST.replace('api_key_env: RESCALE_TEST_ENDPOINT_KEY', 'api_key_file: k.key'),
        namedSection(),
        'sk-a',
        true,
      ),
      base,
      'the key source changes the identity',
    );
    assert.equal(
      await resolved(LIST.replaceAll('openai', 'primary'), namedSection({ endpoint: 'primary' })),
      base,
      'the name changes the identity',
    );
    // The same URL and model given in the codebook (local mode) is the same fallback: the cache and shards carry over.
    const inline = parseFallbackConfig(fallbackSection('https://api.example.test/v1'));
    assert.equal(fallbackIdentity(inline!), base);
    assert.notEqual(await resolved(LIST.replace('api.example.test', 'other.example.test'), namedSection()), base);
    assert.notEqual(await resolved(LIST, namedSection({ model: 'gpt-mini' })), base);
    assert.ok(!base.includes('sk-a'));
  });
});
