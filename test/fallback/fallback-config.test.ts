// The codebook's fallback section: defaults, errors that name the field, no key in the codebook, routing rules.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isRescaleError } from '../../contracts/errors.js';
import { fallbackIdentity, parseFallbackConfig } from '../../contracts/fallback-config.js';
import { routeReason } from '../../fallback/routing.js';
import { fallbackSection, sentimentCodebook } from '../helpers/fallback.js';

const minimal = {
  enabled: true,
  model: 'gpt-4o',
  price: { input_per_million: 2.5, output_per_million: 10 },
  budget: { usd: 20 },
  routing: { confidence_below: 0.7 },
};

function invalid(raw: unknown, pattern: RegExp): void {
  assert.throws(
    () => parseFallbackConfig(raw, { source: 'cb.yaml', baseDir: '/study' }),
    (error: unknown) => isRescaleError(error, 'CODEBOOK_INVALID') && pattern.test(error.message),
  );
}

describe('parseFallbackConfig', () => {
  it('is off when the section is absent or says enabled: false (the rest unchecked)', () => {
    assert.equal(parseFallbackConfig(undefined), null);
    assert.equal(parseFallbackConfig({ enabled: false, model: 42 }), null);
    assert.equal(sentimentCodebook(undefined).fallback, null);
  });

  it('fills defaults and resolves paths against the codebook folder', () => {
    const config = parseFallbackConfig(
      { ...minimal, api_key_file: 'secrets/key', cache_dir: 'cache' },
      { baseDir: '/study' },
    );
    assert.ok(config !== null);
    assert.deepEqual(config.apiKey, { kind: 'file', path: '/study/secrets/key' });
    assert.equal(config.cacheDir, '/study/cache');
    assert.equal(config.baseUrl, 'https://api.openai.com/v1');
    assert.deepEqual(config.budget, { usd: 20, requests: null });
    assert.deepEqual(config.routing, {
      confidenceBelow: 0.7,
      marginBelow: null,
      entropyAbove: null,
      labelMassBelow: null,
      unscoredMassAbove: null,
    });
    assert.deepEqual(
      [config.timeoutMs, config.maxRetries, config.invalidRetries, config.concurrency, config.maxOutputTokens],
      [60_000, 6, 1, 8, 64],
    );
    assert.deepEqual(
      [config.responseFormat, config.logprobs, config.temperature, config.maxTokensField],
      ['json_schema', true, 0, 'max_completion_tokens'],
    );
    assert.ok(Object.isFrozen(config));
    assert.deepEqual(parseFallbackConfig(minimal)?.apiKey, { kind: 'env', name: 'OPENAI_API_KEY' });
  });

  it('refuses a key written into the codebook, naming the field and the alternatives', () => {
    invalid({ ...minimal, api_key: 'sk-live-123' }, /fallback\.api_key.*api_key_env.*api_key_file/);
  });

  it('names the field at fault', () => {
    invalid({ ...minimal, enabled: 'yes' }, /fallback\.enabled/);
    invalid({ ...minimal, budget: {} }, /fallback\.budget.*budget\.usd, budget\.requests/);
    invalid({ ...minimal, routing: {} }, /fallback\.routing.*confidence_below/);
    invalid({ ...minimal, routing: { confidence_below: 1.5 } }, /fallback\.routing\.confidence_below/);
    invalid({ ...minimal, base_url: 'api.openai.com' }, /fallback\.base_url/);
    invalid({ ...minimal, api_key_env: 'OPENAI_API_KEY', api_key_file: 'k' }, /api_key_env or api_key_file/);
    invalid(
      { ...minimal, price: { input_per_million: -1, output_per_million: 1 } },
      /fallback\.price\.input_per_million/,
    );
    invalid({ ...minimal, prompt: { template: 'no document here' } }, /\{text\}/);
    invalid({ ...minimal, temprature: 0 }, /temprature/);
    assert.throws(() => parseFallbackConfig(minimal, { promptFormat: 'raw' }), /fallback\.prompt\.template/);
  });

  it('changes identity with what changes answers, not with budget or rate limits', () => {
    const base = parseFallbackConfig(fallbackSection('http://127.0.0.1:1/v1'));
    const richer = parseFallbackConfig(
      fallbackSection('http://127.0.0.1:1/v1', {
        budget: { usd: 99 },
        rate_limit: { requests_per_minute: 5 },
        concurrency: 2,
      }),
    );
    const otherModel = parseFallbackConfig(fallbackSection('http://127.0.0.1:1/v1', { model: 'other' }));
    const otherRule = parseFallbackConfig(
      fallbackSection('http://127.0.0.1:1/v1', { routing: { confidence_below: 0.5 } }),
    );
    assert.ok(base && richer && otherModel && otherRule);
    assert.equal(fallbackIdentity(base), fallbackIdentity(richer));
    assert.notEqual(fallbackIdentity(base), fallbackIdentity(otherModel));
    assert.notEqual(fallbackIdentity(base), fallbackIdentity(otherRule));
  });
});

describe('routeReason', () => {
  const rules = {
    confidenceBelow: 0.6,
    marginBelow: 0.2,
    entropyAbove: 0.9,
    labelMassBelow: null,
    unscoredMassAbove: null,
  };
  const score = (confidence: number, margin: number, entropy: number, status = 'ok') => ({
    status,
    confidence,
    margin,
    entropy,
  });
  it('routes when any rule fires, strictly below / above its threshold', () => {
    assert.equal(routeReason(rules, score(0.59, 0.5, 0.1)), 'confidence');
    assert.equal(routeReason(rules, score(0.6, 0.5, 0.1)), null);
    assert.equal(routeReason(rules, score(0.8, 0.19, 0.1)), 'margin');
    assert.equal(routeReason(rules, score(0.8, 0.5, 0.91)), 'entropy');
    assert.equal(routeReason(rules, score(0.5, 0.1, 1.0, 'truncated')), 'confidence');
  });
  it('routes on label mass below its threshold, and not on rows that have none', () => {
    const massRules = {
      confidenceBelow: null,
      marginBelow: null,
      entropyAbove: null,
      labelMassBelow: 0.5,
      unscoredMassAbove: null,
    };
    assert.equal(routeReason(massRules, { ...score(0.99, 0.98, 0.05), labelMass: 1e-9 }), 'label_mass');
    assert.equal(routeReason(massRules, { ...score(0.99, 0.98, 0.05), labelMass: 0.5 }), null);
    assert.equal(routeReason(massRules, { ...score(0.99, 0.98, 0.05), labelMass: null }), null);
    assert.equal(routeReason(massRules, score(0.99, 0.98, 0.05)), null);
    assert.equal(routeReason(massRules, { ...score(0.99, 0.98, 0.05, 'error'), labelMass: 0 }), null);
    // Any rule fires: a confident document the model does not see as this task still goes.
    assert.equal(
      routeReason({ ...rules, labelMassBelow: 0.5 }, { ...score(0.9, 0.8, 0.1), labelMass: 0.01 }),
      'label_mass',
    );
  });

  it("parses label_mass_below, alone or with the others, and keeps earlier configs' identity", () => {
    const alone = parseFallbackConfig(fallbackSection('http://127.0.0.1:1/v1', { routing: { label_mass_below: 0.2 } }));
    assert.deepEqual(alone?.routing, {
      confidenceBelow: null,
      marginBelow: null,
      entropyAbove: null,
      labelMassBelow: 0.2,
      unscoredMassAbove: null,
    });
    invalid({ ...minimal, routing: { label_mass_below: 2 } }, /fallback\.routing\.label_mass_below/);
    const without = parseFallbackConfig(
      fallbackSection('http://127.0.0.1:1/v1', { routing: { confidence_below: 0.5 } }),
    );
    const withMass = parseFallbackConfig(
      fallbackSection('http://127.0.0.1:1/v1', { routing: { confidence_below: 0.5, label_mass_below: 0.2 } }),
    );
    assert.ok(without && withMass);
    assert.notEqual(fallbackIdentity(without), fallbackIdentity(withMass));
    // The identity of a config without the rule, as computed before label_mass_below existed.
    assert.equal(fallbackIdentity(without), '0c1e251260d140b83f8910bda33f38c3099060d84038f3351d929d60d20bea8e');
  });

  it('routes on unscored mass above its threshold, keeping the identity of configs without the rule', () => {
    const rules = {
      confidenceBelow: null,
      marginBelow: null,
      entropyAbove: null,
      labelMassBelow: null,
      unscoredMassAbove: 0.01,
    };
    const list = { status: 'ok', confidence: 0.9, margin: 0.8, entropy: null };
    assert.equal(routeReason(rules, { ...list, unscoredMass: 0.02 }), 'unscored_mass');
    assert.equal(routeReason(rules, { ...list, unscoredMass: 0.01 }), null);
    assert.equal(routeReason(rules, list), null, 'a question without unscored mass');
    assert.equal(routeReason(rules, { ...list, status: 'empty_text', unscoredMass: 1 }), null);
    const url = 'http://127.0.0.1:1/v1';
    const parsed = parseFallbackConfig(fallbackSection(url, { routing: { unscored_mass_above: 0.01 } }));
    assert.deepEqual(parsed?.routing, rules);
    invalid({ ...minimal, routing: { unscored_mass_above: -1 } }, /fallback\.routing\.unscored_mass_above/);
    // Identities of configs without the rule, as computed before it existed (label mass, per-question rules).
    const withMass = parseFallbackConfig(
      fallbackSection(url, { routing: { confidence_below: 0.5, label_mass_below: 0.2 } }),
    );
    const own = parseFallbackConfig(
      fallbackSection(url, {
        routing: { confidence_below: 0.5 },
        questions: { tone: { routing: { margin_below: 0.1 } } },
      }),
    );
    assert.ok(parsed && withMass && own);
    assert.equal(fallbackIdentity(withMass), '301980bc1542982b4d97556f412b71716cadb00251e03cce375b54fca2f45d45');
    assert.equal(fallbackIdentity(own), '453e4fe0dc8f2fd49bd34f54c25d7f1870946f3b0e2ab25e6d28c40e80868e09');
    const ownList = parseFallbackConfig(
      fallbackSection(url, {
        routing: { confidence_below: 0.5 },
        questions: { tone: { routing: { margin_below: 0.1, unscored_mass_above: 0.01 } } },
      }),
    );
    assert.ok(ownList);
    assert.notEqual(fallbackIdentity(ownList), fallbackIdentity(own));
  });

  it('mixes per-question rules into the identity only when a codebook sets them', () => {
    const url = 'http://127.0.0.1:1/v1';
    const base = parseFallbackConfig(fallbackSection(url, { routing: { confidence_below: 0.5 } }));
    const own = parseFallbackConfig(
      fallbackSection(url, {
        routing: { confidence_below: 0.5 },
        questions: { tone: { routing: { margin_below: 0.1 } } },
      }),
    );
    const off = parseFallbackConfig(
      fallbackSection(url, { routing: { confidence_below: 0.5 }, questions: { tone: { enabled: false } } }),
    );
    assert.ok(base && own && off);
    assert.deepEqual(base.questions, {});
    assert.equal(fallbackIdentity(base), '0c1e251260d140b83f8910bda33f38c3099060d84038f3351d929d60d20bea8e');
    assert.equal(new Set([base, own, off].map(fallbackIdentity)).size, 3);
  });

  it('never routes rows the local model did not score', () => {
    assert.equal(routeReason(rules, { status: 'empty_text', confidence: null, margin: null, entropy: null }), null);
    assert.equal(routeReason(rules, { status: 'error', confidence: null, margin: null, entropy: null }), null);
  });
});
