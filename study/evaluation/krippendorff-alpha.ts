// Krippendorff's alpha for any number of coders with missing values, computed through the coincidence matrix as in
// Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", https://repository.upenn.edu/asc_papers/43.

import { RescaleError } from '../../contracts/errors.js';

export type MeasurementLevel = 'nominal' | 'ordinal' | 'interval' | 'ratio';

export type ReliabilityValue = string | number;

/** Rows are coders, columns units (Krippendorff's layout); null, undefined or NaN mark a missing value. */
export type ReliabilityData = readonly (readonly (ReliabilityValue | null | undefined)[])[];

export interface KrippendorffAlphaOptions {
  readonly level: MeasurementLevel;
  /**
   * The value domain in order. Required for ordinal string values (e.g. ['low', 'mid', 'high']); optional otherwise,
   * where it only checks that every value is known. Numbers are otherwise ordered numerically.
   */
  readonly valueOrder?: readonly ReliabilityValue[];
}

export interface KrippendorffAlphaResult {
  /** 1 − D_o/D_e; NaN when undefined (every pairable value is the same, so D_e = 0). */
  readonly alpha: number;
  readonly level: MeasurementLevel;
  /** D_o = Σ o_ck δ²_ck / n. */
  readonly observedDisagreement: number;
  /** D_e = Σ n_c n_k δ²_ck / (n (n − 1)). */
  readonly expectedDisagreement: number;
  /** The value domain, indexing the rows and columns of `coincidences`. */
  readonly values: readonly ReliabilityValue[];
  /** o_ck: coincidences of values c and k within units, each unit weighted by 1/(m_u − 1). */
  readonly coincidences: readonly (readonly number[])[];
  /** n: values in units coded by at least two coders. */
  readonly pairableValues: number;
  readonly pairableUnits: number;
}

const LEVELS: readonly MeasurementLevel[] = ['nominal', 'ordinal', 'interval', 'ratio'];

function isMissing(value: ReliabilityValue | null | undefined): value is null | undefined {
  return value === null || value === undefined || (typeof value === 'number' && Number.isNaN(value));
}

/** Orders the value domain and checks the values fit the level of measurement. */
function valueDomain(data: ReliabilityData, options: KrippendorffAlphaOptions): ReliabilityValue[] {
  const { level, valueOrder } = options;
  const seen = new Set<ReliabilityValue>();
  let kinds = 0; // bit 1: numbers, bit 2: strings
  data.forEach((row, coder) => {
    row.forEach((value, unit) => {
      if (isMissing(value)) return;
      if (typeof value === 'number') {
        if (!Number.isFinite(value)) {
          throw new RescaleError(
            'INPUT_INVALID',
            `coder ${coder}, unit ${unit} holds ${value}; values must be finite (use null for missing)`,
          );
        }
        if (level === 'ratio' && value < 0) {
          throw new RescaleError(
            'INPUT_INVALID',
            `coder ${coder}, unit ${unit} holds ${value}; the ratio metric needs non-negative values`,
          );
        }
        kinds |= 1;
      } else if (typeof value === 'string') {
        if (level === 'interval' || level === 'ratio') {
          throw new RescaleError(
            'INPUT_INVALID',
            `coder ${coder}, unit ${unit} holds the string ${JSON.stringify(value)}; the ${level} metric needs ` +
              `numbers, so map labels to their scale values first`,
          );
        }
        kinds |= 2;
      } else {
        throw new RescaleError(
          'INPUT_INVALID',
          `coder ${coder}, unit ${unit} holds a ${typeof value}; values must be strings or numbers`,
        );
      }
      seen.add(value);
    });
  });
  if (kinds === 3) {
    throw new RescaleError(
      'INPUT_INVALID',
      'reliability data mixes numbers and strings; code every value the same way (1 and "1" would count as ' +
        'different values)',
    );
  }

  if (valueOrder !== undefined) {
    const order = new Set<ReliabilityValue>();
    for (const value of valueOrder) {
      if (order.has(value)) throw new RescaleError('CONFIG_INVALID', `valueOrder lists ${JSON.stringify(value)} twice`);
      order.add(value);
    }
    for (const value of seen) {
      if (!order.has(value)) {
        throw new RescaleError(
          'INPUT_INVALID',
          `value ${JSON.stringify(value)} occurs in the data but not in valueOrder; add it in its place or fix the ` +
            `data`,
        );
      }
    }
    if ((level === 'interval' || level === 'ratio') && valueOrder.some((v) => typeof v !== 'number')) {
      throw new RescaleError('CONFIG_INVALID', `valueOrder must hold numbers for the ${level} metric`);
    }
    return valueOrder.slice();
  }
  if (level === 'ordinal' && kinds === 2) {
    throw new RescaleError(
      'CONFIG_INVALID',
      'ordinal alpha on string values needs valueOrder (the categories from lowest to highest)',
    );
  }
  const domain = [...seen];
  if (kinds === 1) (domain as number[]).sort((a, b) => a - b);
  else (domain as string[]).sort();
  return domain;
}

/** o_ck of Krippendorff (2011): every ordered pair of values from different coders in a unit adds 1/(m_u − 1). */
export function coincidenceMatrix(
  data: ReliabilityData,
  values: readonly ReliabilityValue[],
): { coincidences: number[][]; pairableUnits: number; pairableValues: number } {
  const index = new Map<ReliabilityValue, number>();
  values.forEach((v, i) => index.set(v, i));
  const v = values.length;
  const o = Array.from({ length: v }, () => new Array<number>(v).fill(0));
  const units = data[0]?.length ?? 0;
  let pairableUnits = 0;
  let pairableValues = 0;
  const counts = new Array<number>(v).fill(0);
  for (let u = 0; u < units; u++) {
    counts.fill(0);
    const present: number[] = [];
    let m = 0;
    for (const row of data) {
      const value = row[u];
      if (isMissing(value)) continue;
      const c = index.get(value);
      if (c === undefined) {
        throw new RescaleError(
          'INPUT_INVALID',
          `unit ${u} holds ${JSON.stringify(value)}, which is not in the value domain`,
        );
      }
      if (counts[c] === 0) present.push(c);
      counts[c] = (counts[c] as number) + 1;
      m++;
    }
    if (m < 2) continue; // a value no other coder saw cannot disagree with anything
    pairableUnits++;
    pairableValues += m;
    for (const c of present) {
      const nc = counts[c] as number;
      const oc = o[c] as number[];
      for (const k of present) {
        const pairs = c === k ? nc * (nc - 1) : nc * (counts[k] as number);
        oc[k] = (oc[k] as number) + pairs / (m - 1);
      }
    }
  }
  return { coincidences: o, pairableUnits, pairableValues };
}

/** δ²_ck for the level; ordinal uses the marginal frequencies n_g of the values between c and k. */
function differenceMatrix(
  level: MeasurementLevel,
  values: readonly ReliabilityValue[],
  marginals: readonly number[],
): number[][] {
  const v = values.length;
  const delta = Array.from({ length: v }, () => new Array<number>(v).fill(0));
  for (let c = 0; c < v; c++) {
    for (let k = 0; k < v; k++) {
      if (c === k) continue;
      let d: number;
      if (level === 'nominal') {
        d = 1;
      } else if (level === 'ordinal') {
        const lo = Math.min(c, k);
        const hi = Math.max(c, k);
        let between = 0;
        for (let g = lo; g <= hi; g++) between += marginals[g] as number;
        const x = between - ((marginals[c] as number) + (marginals[k] as number)) / 2;
        d = x * x;
      } else {
        const a = values[c] as number;
        const b = values[k] as number;
        if (level === 'interval') {
          d = (a - b) * (a - b);
        } else {
          // a + b > 0 here: values are non-negative and distinct.
          const x = (a - b) / (a + b);
          d = x * x;
        }
      }
      (delta[c] as number[])[k] = d;
    }
  }
  return delta;
}

/**
 * Alpha from a coincidence matrix over `values` (in the level's order; numbers for interval and ratio); n, the
 * pairable values, is the sum of its cells unless given exactly. For two coders without missing values the coincidence
 * matrix is C + Cᵀ of their confusion matrix, which is how repeated evaluations (bootstrap resamples) get alpha without
 * rebuilding the reliability data.
 */
export function alphaFromCoincidences(
  coincidences: readonly (readonly number[])[],
  values: readonly ReliabilityValue[],
  level: MeasurementLevel,
  pairableValues?: number,
): { alpha: number; observedDisagreement: number; expectedDisagreement: number } {
  const marginals = coincidences.map((row) => row.reduce((a, b) => a + b, 0));
  return alphaFromDistances(coincidences, differenceMatrix(level, values, marginals), pairableValues);
}

/**
 * Alpha from a coincidence matrix and any difference matrix δ²_ck (zero on the diagonal): the pluggable form behind
 * every level, and behind set-valued data with a set distance (MASI or Jaccard), where δ² is the distance itself as
 * in NLTK's AnnotationTask.alpha. Same NaN convention as alphaFromCoincidences.
 */
export function alphaFromDistances(
  coincidences: readonly (readonly number[])[],
  delta: readonly (readonly number[])[],
  pairableValues?: number,
): { alpha: number; observedDisagreement: number; expectedDisagreement: number } {
  const v = coincidences.length;
  const marginals = coincidences.map((row) => row.reduce((a, b) => a + b, 0));
  const n = pairableValues ?? marginals.reduce((a, b) => a + b, 0);
  let observed = 0;
  let expected = 0;
  for (let c = 0; c < v; c++) {
    const nc = marginals[c] as number;
    if (nc === 0) continue;
    const row = coincidences[c] as readonly number[];
    const deltaRow = delta[c] as readonly number[];
    for (let k = 0; k < v; k++) {
      const d = deltaRow[k] as number;
      if (d === 0) continue;
      observed += (row[k] as number) * d;
      expected += nc * (marginals[k] as number) * d;
    }
  }
  return {
    alpha: expected === 0 ? Number.NaN : 1 - ((n - 1) * observed) / expected,
    observedDisagreement: observed / n,
    expectedDisagreement: expected / (n * (n - 1)),
  };
}

/**
 * Krippendorff's alpha for a coders × units matrix of values of any kind (e.g. label sets) with a distance function:
 * values are told apart by `key` (equal keys are the same value), and δ²_ck = distance(c, k). Missing values are
 * null or undefined. Throws INPUT_INVALID when no unit has values from two coders.
 */
export function krippendorffAlphaWithDistance<T>(
  data: readonly (readonly (T | null | undefined)[])[],
  distance: (a: T, b: T) => number,
  key: (value: T) => string,
): { alpha: number; observedDisagreement: number; expectedDisagreement: number; pairableUnits: number } {
  const representative = new Map<string, T>();
  const keyed = data.map((row) =>
    row.map((value) => {
      if (value === null || value === undefined) return null;
      const k = key(value);
      if (!representative.has(k)) representative.set(k, value);
      return k;
    }),
  );
  const keys = [...representative.keys()];
  const { coincidences, pairableUnits, pairableValues } = coincidenceMatrix(keyed, keys);
  if (pairableUnits === 0) {
    throw new RescaleError(
      'INPUT_INVALID',
      'no unit was coded by at least two coders, so there is no agreement to measure',
    );
  }
  const items = keys.map((k) => representative.get(k) as T);
  const delta = items.map((a, c) => items.map((b, k) => (c === k ? 0 : distance(a, b))));
  return { ...alphaFromDistances(coincidences, delta, pairableValues), pairableUnits };
}

/**
 * Krippendorff's alpha for a coders × units matrix with missing values.
 * Throws INPUT_INVALID when no unit has values from two coders (nothing to compare), or on values that do not fit
 * the level (strings for interval/ratio, negatives for ratio); returns alpha = NaN when all pairable values agree on
 * a single value, where alpha is undefined (0/0).
 */
export function krippendorffAlpha(data: ReliabilityData, options: KrippendorffAlphaOptions): KrippendorffAlphaResult {
  const { level } = options;
  if (!LEVELS.includes(level)) {
    throw new RescaleError(
      'CONFIG_INVALID',
      `level must be one of ${LEVELS.join(', ')} (got ${JSON.stringify(level)})`,
    );
  }
  if (data.length === 0 || (data[0]?.length ?? 0) === 0) {
    throw new RescaleError(
      'INPUT_INVALID',
      'reliability data is empty; pass one row per coder and one column per unit',
    );
  }
  const units = (data[0] as readonly unknown[]).length;
  data.forEach((row, coder) => {
    if (row.length !== units) {
      throw new RescaleError(
        'INPUT_INVALID',
        `coder ${coder} has ${row.length} units but coder 0 has ${units}; pad missing codes with null`,
      );
    }
  });
  const values = valueDomain(data, options);
  const { coincidences, pairableUnits, pairableValues: n } = coincidenceMatrix(data, values);
  if (pairableUnits === 0) {
    throw new RescaleError(
      'INPUT_INVALID',
      'no unit was coded by at least two coders, so there is no agreement to measure',
    );
  }
  const { alpha, observedDisagreement, expectedDisagreement } = alphaFromCoincidences(coincidences, values, level, n);
  return {
    alpha,
    level,
    observedDisagreement,
    expectedDisagreement,
    values,
    coincidences,
    pairableValues: n,
    pairableUnits,
  };
}
