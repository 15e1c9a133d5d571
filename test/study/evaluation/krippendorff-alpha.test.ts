import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { isRescaleError } from '../../../contracts/errors.js';
import {
  alphaFromCoincidences,
  krippendorffAlpha,
  type MeasurementLevel,
  type ReliabilityData,
  type ReliabilityValue,
} from '../../../study/evaluation/krippendorff-alpha.js';
import { krippendorffAlphaWithDistance } from '../../../study/evaluation/krippendorff-alpha.js';
import { createSeededRandom } from '../../../study/evaluation/seeded-random.js';

const TOL = 1e-6;
const _ = null;

function close(actual: number, expected: number, tol = TOL): void {
  assert.ok(Math.abs(actual - expected) <= tol, `expected ${expected}, got ${actual}`);
}

// 3 coders × 15 units, the Wikipedia "A computational example" data. Source: pln-fing-udelar/fast-krippendorff,
// tests/test_krippendorff.py (test_nominal_metric_reliability_data: 0.691358; test_interval_metric: 0.810845), and
// grrrr/krippendorff-alpha, krippendorff_alpha.py __main__ (same matrix, "*" for missing).
const WIKIPEDIA: ReliabilityData = [
  [_, _, _, _, _, 3, 4, 1, 2, 1, 1, 3, 3, _, 3],
  [1, _, 2, 1, 3, 3, 4, 3, _, _, _, _, _, _, _],
  [_, _, 2, 1, 3, 4, 4, _, 2, 1, 1, 3, 3, _, 4],
];

// 4 coders (A–D) × 12 units, Krippendorff (2011) "Computing Krippendorff's Alpha-Reliability", section C
// (https://repository.upenn.edu/asc_papers/43): published alpha nominal .743, ordinal .815, interval .849, ratio .797.
// The same matrix is in fast-krippendorff's test_ordinal_metric / test_ratio_metric.
const KRIPPENDORFF_C: ReliabilityData = [
  [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
  [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
  [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
  [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
];

/**
 * Independent computation by pairwise differences (no coincidence matrix):
 * D_o = Σ_u Σ_{i≠j in u} δ(v_i, v_j) / (m_u − 1) / n,
 * D_e = Σ_{i≠j over all pairable values} δ(v_i, v_j) / (n (n − 1)).
 * Ordinal δ uses the frequencies of the pairable values between the two ranks.
 */
function alphaPairwise(data: ReliabilityData, level: MeasurementLevel, order?: readonly ReliabilityValue[]): number {
  const units: ReliabilityValue[][] = [];
  const width = data[0]?.length ?? 0;
  for (let u = 0; u < width; u++) {
    const values = data.map((row) => row[u]).filter((v): v is ReliabilityValue => v !== null && v !== undefined);
    if (values.length >= 2) units.push(values);
  }
  const all = units.flat();
  const n = all.length;
  const ranks = order ?? [...new Set(all)].sort((a, b) => (a as number) - (b as number));
  const freq = ranks.map((r) => all.filter((v) => v === r).length);
  const delta = (a: ReliabilityValue, b: ReliabilityValue): number => {
    if (a === b) return 0;
    switch (level) {
      case 'nominal':
        return 1;
      case 'ordinal': {
        const i = ranks.indexOf(a);
        const j = ranks.indexOf(b);
        const lo = Math.min(i, j);
        const hi = Math.max(i, j);
        let s = 0;
        for (let g = lo; g <= hi; g++) s += freq[g] as number;
        const x = s - ((freq[i] as number) + (freq[j] as number)) / 2;
        return x * x;
      }
      case 'interval':
        return ((a as number) - (b as number)) ** 2;
      case 'ratio':
        return (((a as number) - (b as number)) / ((a as number) + (b as number))) ** 2;
    }
  };
  let dO = 0;
  for (const values of units) {
    let s = 0;
    for (let i = 0; i < values.length; i++) {
      for (let j = 0; j < values.length; j++)
        if (i !== j) s += delta(values[i] as ReliabilityValue, values[j] as ReliabilityValue);
    }
    dO += s / (values.length - 1);
  }
  dO /= n;
  let dE = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) if (i !== j) dE += delta(all[i] as ReliabilityValue, all[j] as ReliabilityValue);
  }
  dE /= n * (n - 1);
  return 1 - dO / dE;
}

function throwsCode(fn: () => unknown, code: 'INPUT_INVALID' | 'CONFIG_INVALID', pattern: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(isRescaleError(error, code), `expected ${code}, got ${String(error)}`);
    assert.match(error.message, pattern);
    return true;
  });
}

describe('krippendorffAlpha', () => {
  it('reproduces the Wikipedia 3 × 15 example: nominal 0.691358, interval 0.810845', () => {
    close(krippendorffAlpha(WIKIPEDIA, { level: 'nominal' }).alpha, 0.691358);
    close(krippendorffAlpha(WIKIPEDIA, { level: 'interval' }).alpha, 0.810845);
    // As a fraction the nominal value is 56/81.
    close(krippendorffAlpha(WIKIPEDIA, { level: 'nominal' }).alpha, 56 / 81, 1e-12);
  });

  it('reproduces Krippendorff (2011) C data to the published three decimals', () => {
    const published: Record<MeasurementLevel, number> = {
      nominal: 0.743,
      ordinal: 0.815,
      interval: 0.849,
      ratio: 0.797,
    };
    for (const level of Object.keys(published) as MeasurementLevel[]) {
      const alpha = krippendorffAlpha(KRIPPENDORFF_C, { level }).alpha;
      assert.equal(Math.round(alpha * 1000) / 1000, published[level], `${level}: ${alpha}`);
    }
  });

  it('agrees to 1e-6 with the independent pairwise-difference formulation on both reference data sets', () => {
    for (const data of [WIKIPEDIA, KRIPPENDORFF_C]) {
      for (const level of ['nominal', 'ordinal', 'interval', 'ratio'] as const) {
        close(krippendorffAlpha(data, { level }).alpha, alphaPairwise(data, level));
      }
    }
  });

  it('builds the coincidence matrix published for the C data (n = 40, n_c = 9, 13, 10, 5, 3)', () => {
    const r = krippendorffAlpha(KRIPPENDORFF_C, { level: 'nominal' });
    assert.deepEqual(r.values, [1, 2, 3, 4, 5]);
    assert.equal(r.pairableValues, 40);
    assert.equal(r.pairableUnits, 11); // unit 12 has a single value
    const marginals = r.coincidences.map((row) => row.reduce((a, b) => a + b, 0));
    [9, 13, 10, 5, 3].forEach((expected, c) => close(marginals[c] as number, expected, 1e-12));
    close(r.coincidences[0]?.[0] ?? NaN, 7, 1e-12);
    close(r.coincidences[0]?.[1] ?? NaN, 4 / 3, 1e-12);
    close(r.coincidences[4]?.[4] ?? NaN, 3, 1e-12);
  });

  it('orders string values by valueOrder for ordinal alpha (same 0.815 as the numeric C data)', () => {
    const names = ['very low', 'low', 'mid', 'high', 'very high'];
    const asText = KRIPPENDORFF_C.map((row) =>
      row.map((v) => (v === null || v === undefined ? null : (names[(v as number) - 1] as string))),
    );
    const r = krippendorffAlpha(asText, { level: 'ordinal', valueOrder: names });
    close(r.alpha, krippendorffAlpha(KRIPPENDORFF_C, { level: 'ordinal' }).alpha, 1e-12);
  });

  it('reproduces fast-krippendorff test_string_labels_nominal: 0.722222', () => {
    const data: ReliabilityData = [
      ['pos', 'neg', 'neu', _],
      ['pos', 'neg', 'neu', 'pos'],
      ['pos', 'neg', 'pos', 'pos'],
    ];
    close(krippendorffAlpha(data, { level: 'nominal' }).alpha, 0.722222);
  });

  it('is 1 for perfect agreement, including ratio data with zeros', () => {
    const data: ReliabilityData = [
      [0, 1, 2],
      [0, 1, 2],
    ];
    for (const level of ['nominal', 'ordinal', 'interval', 'ratio'] as const)
      assert.equal(krippendorffAlpha(data, { level }).alpha, 1);
  });

  it('treats NaN and undefined as missing like null', () => {
    const withNaN = WIKIPEDIA.map((row) => row.map((v) => (v === null ? Number.NaN : v)));
    const withUndefined = WIKIPEDIA.map((row) => row.map((v) => (v === null ? undefined : v)));
    close(krippendorffAlpha(withNaN, { level: 'interval' }).alpha, 0.810845);
    close(krippendorffAlpha(withUndefined, { level: 'nominal' }).alpha, 0.691358);
  });

  it('returns NaN when every pairable value is the same (alpha undefined)', () => {
    assert.ok(
      Number.isNaN(
        krippendorffAlpha(
          [
            [1, 1, _],
            [1, 1, 2],
          ],
          { level: 'nominal' },
        ).alpha,
      ),
    );
  });

  it('rejects data with nothing to compare, ragged rows and values that do not fit the level', () => {
    throwsCode(() => krippendorffAlpha([], { level: 'nominal' }), 'INPUT_INVALID', /empty/);
    throwsCode(
      () =>
        krippendorffAlpha(
          [
            [1, _],
            [_, 2],
          ],
          { level: 'nominal' },
        ),
      'INPUT_INVALID',
      /at least two coders/,
    );
    throwsCode(() => krippendorffAlpha([[1, 2], [1]], { level: 'nominal' }), 'INPUT_INVALID', /coder 1 has 1 units/);
    throwsCode(
      () =>
        krippendorffAlpha(
          [
            ['a', 'b'],
            ['a', 'a'],
          ],
          { level: 'interval' },
        ),
      'INPUT_INVALID',
      /needs numbers/,
    );
    throwsCode(
      () =>
        krippendorffAlpha(
          [
            ['a', 'b'],
            ['a', 'a'],
          ],
          { level: 'ordinal' },
        ),
      'CONFIG_INVALID',
      /valueOrder/,
    );
    throwsCode(
      () =>
        krippendorffAlpha(
          [
            [1, -2],
            [1, 1],
          ],
          { level: 'ratio' },
        ),
      'INPUT_INVALID',
      /non-negative/,
    );
    throwsCode(
      () =>
        krippendorffAlpha(
          [
            [1, '1'],
            [1, 1],
          ],
          { level: 'nominal' },
        ),
      'INPUT_INVALID',
      /mixes numbers and strings/,
    );
    throwsCode(
      () =>
        krippendorffAlpha(
          [
            ['a', 'b'],
            ['a', 'c'],
          ],
          { level: 'ordinal', valueOrder: ['a', 'b'] },
        ),
      'INPUT_INVALID',
      /"c"/,
    );
    throwsCode(
      () => krippendorffAlpha([[1]], { level: 'cardinal' as MeasurementLevel }),
      'CONFIG_INVALID',
      /level must be/,
    );
  });
});

describe('alphaFromCoincidences', () => {
  it('reproduces the published values from the coincidence matrix alone, for every level', () => {
    for (const data of [WIKIPEDIA, KRIPPENDORFF_C]) {
      for (const level of ['nominal', 'ordinal', 'interval', 'ratio'] as const) {
        const full = krippendorffAlpha(data, { level });
        close(alphaFromCoincidences(full.coincidences, full.values, level).alpha, full.alpha, 1e-12);
      }
    }
    const c = krippendorffAlpha(KRIPPENDORFF_C, { level: 'ordinal' });
    assert.equal(Math.round(alphaFromCoincidences(c.coincidences, c.values, 'ordinal').alpha * 1000) / 1000, 0.815);
  });

  it("gives two coders' alpha from C + Cᵀ of their confusion matrix", () => {
    const a = ['x', 'x', 'y', 'z', 'y', 'x', 'z', 'z', 'y', 'x'];
    const b = ['x', 'y', 'y', 'z', 'y', 'x', 'x', 'z', 'z', 'x'];
    const values = ['x', 'y', 'z'];
    const confusion = values.map((u) => values.map((v) => a.filter((value, i) => value === u && b[i] === v).length));
    const coincidences = confusion.map((row, i) => row.map((count, j) => count + (confusion[j]?.[i] ?? 0)));
    for (const level of ['nominal', 'ordinal'] as const) {
      const options = level === 'ordinal' ? { level, valueOrder: values } : { level };
      close(alphaFromCoincidences(coincidences, values, level).alpha, krippendorffAlpha([a, b], options).alpha, 1e-12);
    }
  });
});

describe('krippendorffAlphaWithDistance', () => {
  it('reproduces fast-krippendorff test_custom_distance_metric: |a − b| on [[1, 2, 3], [1, 2, 4]] is 0.761905', () => {
    const r = krippendorffAlphaWithDistance(
      [
        [1, 2, 3],
        [1, 2, 4],
      ],
      (a: number, b: number) => Math.abs(a - b),
      String,
    );
    assert.equal(Math.round(r.alpha * 1e6) / 1e6, 0.761905);
  });

  it('equals the nominal and interval levels when given their difference functions (C data: .743, .849)', () => {
    const nominal = krippendorffAlphaWithDistance(KRIPPENDORFF_C, (a, b) => (a === b ? 0 : 1), String).alpha;
    const interval = krippendorffAlphaWithDistance(
      KRIPPENDORFF_C,
      (a, b) => ((a as number) - (b as number)) ** 2,
      String,
    ).alpha;
    close(nominal, krippendorffAlpha(KRIPPENDORFF_C, { level: 'nominal' }).alpha, 1e-12);
    close(interval, krippendorffAlpha(KRIPPENDORFF_C, { level: 'interval' }).alpha, 1e-12);
    assert.equal(Math.round(nominal * 1000) / 1000, 0.743);
    assert.equal(Math.round(interval * 1000) / 1000, 0.849);
  });
});

describe('krippendorffAlpha on random data', () => {
  it('agrees to 1e-9 with the pairwise-difference formulation for every level (4 coders, missing values)', () => {
    const random = createSeededRandom(1980);
    for (let trial = 0; trial < 15; trial++) {
      const coders = 2 + random.nextInt(3);
      const units = 5 + random.nextInt(40);
      const scale = 3 + random.nextInt(4);
      const data: ReliabilityData = Array.from({ length: coders }, () =>
        Array.from({ length: units }, () => (random.nextFloat() < 0.15 ? null : 1 + random.nextInt(scale))),
      );
      for (const level of ['nominal', 'ordinal', 'interval', 'ratio'] as const) {
        let expected: number;
        try {
          expected = alphaPairwise(data, level);
        } catch {
          continue;
        }
        close(krippendorffAlpha(data, { level }).alpha, expected, 1e-9);
      }
    }
  });
});
