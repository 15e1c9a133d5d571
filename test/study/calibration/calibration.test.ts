import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { isRescaleError } from '../../../contracts/errors.js';
import {
  expectedCalibrationError,
  recommendThreshold,
  reliabilityBins,
  thresholdSweep,
  type CalibrationItem,
  type RoutingItem,
  type ThresholdSweepOptions,
} from '../../../study/calibration/calibration.js';
import { createSeededRandom } from '../../../study/evaluation/seeded-random.js';

const TOL = 1e-9;

function close(actual: number | null, expected: number, tol = TOL): void {
  assert.ok(actual !== null && Math.abs(actual - expected) <= tol, `expected ${expected}, got ${String(actual)}`);
}

function items(confidence: number, total: number, correct: number): CalibrationItem[] {
  return Array.from({ length: total }, (_, i) => ({ confidence, correct: i < correct }));
}

describe('expectedCalibrationError', () => {
  it('is near 0 for perfectly calibrated predictions (sampling error only)', () => {
    const random = createSeededRandom(2025);
    const data = Array.from({ length: 200_000 }, () => {
      const confidence = random.nextFloat();
      return { confidence, correct: random.nextFloat() < confidence };
    });
    // Per bin |acc − conf| is ~ sqrt(p(1−p)/20 000) ≈ 0.003 here; 0.01 leaves room.
    assert.ok(expectedCalibrationError(data) < 0.01);
  });

  it('equals the gap for a known overconfidence: confidence 0.9, accuracy 0.6 → 0.3', () => {
    close(expectedCalibrationError(items(0.9, 1000, 600)), 0.3);
  });

  it('weights each bin by its share of items', () => {
    // 100 at 0.25 with accuracy 0.5 (gap 0.25), 300 at 0.75 with accuracy 0.9 (gap 0.15): (25 + 45)/400.
    close(expectedCalibrationError([...items(0.25, 100, 50), ...items(0.75, 300, 270)]), 0.175);
    // Under- and overconfidence cancel inside one bin but not across bins: 0 with 1 bin, 0.25 with 10.
    const mixed = [...items(0.25, 100, 50), ...items(0.75, 100, 50)];
    close(expectedCalibrationError(mixed, { bins: 1 }), 0);
    close(expectedCalibrationError(mixed), 0.25);
  });

  it('rejects confidences outside [0, 1] naming the item, and a bad bin count', () => {
    assert.throws(
      () =>
        expectedCalibrationError([
          { confidence: 0.5, correct: true },
          { confidence: 1.2, correct: false },
        ]),
      (e: unknown) => isRescaleError(e, 'INPUT_INVALID') && /item 1 has confidence 1.2/.test(e.message),
    );
    assert.throws(
      () => expectedCalibrationError(items(0.5, 2, 1), { bins: 0 }),
      (e: unknown) => isRescaleError(e, 'CONFIG_INVALID'),
    );
    assert.throws(
      () => expectedCalibrationError([]),
      (e: unknown) => isRescaleError(e, 'INPUT_INVALID'),
    );
  });
});

describe('reliabilityBins', () => {
  it('reports count, mean confidence and accuracy per equal-width bin, null for empty bins', () => {
    const bins = reliabilityBins([...items(0.25, 100, 50), ...items(0.75, 300, 270)], { bins: 4 });
    assert.equal(bins.length, 4);
    assert.deepEqual(
      bins.map((b) => [b.lower, b.upper, b.count]),
      [
        [0, 0.25, 100],
        [0.25, 0.5, 0],
        [0.5, 0.75, 300],
        [0.75, 1, 0],
      ],
    );
    close(bins[0]?.meanConfidence ?? null, 0.25);
    close(bins[0]?.accuracy ?? null, 0.5);
    close(bins[2]?.accuracy ?? null, 0.9);
    assert.equal(bins[1]?.meanConfidence, null);
    assert.equal(bins[1]?.accuracy, null);
  });

  it('uses right-closed bins (lower, upper] with 0 in the first bin, exactly at the edges', () => {
    const edges = [0, 0.1, 0.3, 0.7, 0.9, 1];
    const bins = reliabilityBins(
      edges.map((confidence) => ({ confidence, correct: true })),
      { bins: 10 },
    );
    const counts = bins.map((b) => b.count);
    // 0 and 0.1 → bin 0; 0.3 → bin 2; 0.7 → bin 6; 0.9 → bin 8; 1 → bin 9.
    assert.deepEqual(counts, [2, 0, 1, 0, 0, 0, 1, 0, 1, 1]);
  });
});

// Ten labelled items, most certain first. With fallback accuracy 0.9 assumed, routing the k least confident gives:
// k:      0     1     2     3     4     5     6     7     8     9     10
// hybrid: 0.60  0.69  0.68  0.77  0.86  0.85  0.94  0.93  0.92  0.91  0.90
// cost:   0     2000  4000  6000  8000  10000 12000 14000 16000 18000 20000 (N = 1e6, 0.02 per routed document)
const CONFIDENCE = [0.95, 0.9, 0.85, 0.8, 0.7, 0.65, 0.6, 0.55, 0.5, 0.4];
const CORRECT = [true, true, true, true, false, true, false, false, true, false];
const ENTROPY = [0.05, 0.1, 0.15, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6];
const ROUTING: RoutingItem[] = CONFIDENCE.map((confidence, i) => ({
  confidence,
  correct: CORRECT[i] as boolean,
  entropy: ENTROPY[i] as number,
  margin: null,
}));
const OPTIONS: ThresholdSweepOptions = { fallbackAccuracy: 0.9, fallbackCostPerDocument: 0.02, corpusSize: 1_000_000 };
const EXPECTED_HYBRID = [0.6, 0.69, 0.68, 0.77, 0.86, 0.85, 0.94, 0.93, 0.92, 0.91, 0.9];

describe('thresholdSweep', () => {
  it('evaluates every distinct confidence plus route-everything, with known accuracy and cost', () => {
    const points = thresholdSweep(ROUTING, OPTIONS);
    assert.equal(points.length, 11);
    points.forEach((p, k) => {
      assert.equal(p.routed, k);
      close(p.routedShare, k / 10);
      close(p.hybridAccuracy, EXPECTED_HYBRID[k] as number);
      close(p.expectedCost, 2000 * k, 1e-6);
      close(p.expectedFallbackDocuments, 100_000 * k, 1e-6);
    });
    assert.equal(points[0]?.threshold, 0.4);
    close(points[0]?.keptAccuracy ?? null, 0.6);
    assert.equal(points[0]?.fallbackAccuracy, null);
    assert.equal(points[6]?.threshold, 0.8); // keep confidence ≥ 0.8
    close(points[6]?.keptAccuracy ?? null, 1);
    assert.equal(points[10]?.threshold, Number.POSITIVE_INFINITY);
    assert.equal(points[10]?.keptAccuracy, null);
  });

  it('routes by entropy the other way round (keep entropy ≤ t)', () => {
    const points = thresholdSweep(ROUTING, { ...OPTIONS, rule: 'entropy' });
    assert.deepEqual(
      points.map((p) => p.threshold),
      [0.6, 0.5, 0.45, 0.4, 0.35, 0.3, 0.2, 0.15, 0.1, 0.05, Number.NEGATIVE_INFINITY],
    );
    points.forEach((p, k) => close(p.hybridAccuracy, EXPECTED_HYBRID[k] as number));
  });

  it('evaluates a given grid of thresholds', () => {
    const points = thresholdSweep(ROUTING, { ...OPTIONS, thresholds: [1, 0, 0.75, 0.5] });
    assert.deepEqual(
      points.map((p) => [p.threshold, p.kept]),
      [
        [0, 10],
        [0.5, 9],
        [0.75, 4],
        [1, 0],
      ],
    );
  });

  it("uses each routed item's fallback outcome with fallbackAccuracy 'from-items'", () => {
    const measured = ROUTING.map((item, i) => ({ ...item, fallbackCorrect: i !== 9 }));
    const points = thresholdSweep(measured, { ...OPTIONS, fallbackAccuracy: 'from-items' });
    // Routing only the last item: the fallback gets it wrong, so hybrid = (6 − 0 + 0)/10.
    close(points[1]?.fallbackAccuracy ?? null, 0);
    close(points[1]?.hybridAccuracy ?? null, 0.6);
    close(points[2]?.fallbackAccuracy ?? null, 0.5);
    close(points[10]?.hybridAccuracy ?? null, 0.9);
  });

  it('agrees with a direct recount on random data', () => {
    const random = createSeededRandom(31);
    const data: RoutingItem[] = Array.from({ length: 300 }, () => {
      const confidence = Math.round(random.nextFloat() * 50) / 50; // ties on purpose
      return {
        confidence,
        correct: random.nextFloat() < confidence,
        margin: random.nextFloat(),
        fallbackCorrect: random.nextFloat() < 0.8,
      };
    });
    for (const rule of ['confidence', 'margin'] as const) {
      for (const p of thresholdSweep(data, {
        ...OPTIONS,
        rule,
        fallbackAccuracy: 'from-items',
        localCostPerDocument: 0.001,
      })) {
        const score = (d: RoutingItem): number => (rule === 'confidence' ? d.confidence : (d.margin as number));
        const kept = data.filter((d) => score(d) >= p.threshold);
        const routed = data.filter((d) => score(d) < p.threshold);
        assert.equal(p.kept, kept.length);
        const hybrid =
          (kept.filter((d) => d.correct).length + routed.filter((d) => d.fallbackCorrect).length) / data.length;
        close(p.hybridAccuracy, hybrid);
        close(p.expectedCost, 1_000_000 * (0.001 + (routed.length / data.length) * 0.02), 1e-6);
      }
    }
  });

  it('rejects items without a score for the rule and bad options, naming the field', () => {
    assert.throws(
      () => thresholdSweep(ROUTING, { ...OPTIONS, rule: 'margin' }),
      (e: unknown) => isRescaleError(e, 'INPUT_INVALID') && /item 0 has no margin/.test(e.message),
    );
    assert.throws(
      () => thresholdSweep(ROUTING, { ...OPTIONS, fallbackAccuracy: 'from-items' }),
      (e: unknown) => isRescaleError(e, 'INPUT_INVALID') && /fallbackCorrect/.test(e.message),
    );
    assert.throws(
      () => thresholdSweep(ROUTING, { ...OPTIONS, fallbackAccuracy: 1.5 }),
      (e: unknown) => isRescaleError(e, 'CONFIG_INVALID') && /fallbackAccuracy/.test(e.message),
    );
    assert.throws(
      () => thresholdSweep(ROUTING, { ...OPTIONS, fallbackCostPerDocument: -1 }),
      (e: unknown) => isRescaleError(e, 'CONFIG_INVALID') && /fallbackCostPerDocument/.test(e.message),
    );
    assert.throws(
      () => thresholdSweep([], OPTIONS),
      (e: unknown) => isRescaleError(e, 'INPUT_INVALID'),
    );
  });
});

describe('recommendThreshold', () => {
  const points = thresholdSweep(ROUTING, OPTIONS);

  it('picks the cheapest threshold that meets a target accuracy', () => {
    const at90 = recommendThreshold(points, { targetAccuracy: 0.9 });
    assert.equal(at90.point?.threshold, 0.8);
    assert.equal(at90.point?.routed, 6);
    close(at90.point?.expectedCost ?? null, 12_000, 1e-6);
    const at85 = recommendThreshold(points, { targetAccuracy: 0.85 });
    assert.equal(at85.point?.threshold, 0.65);
    close(at85.point?.hybridAccuracy ?? null, 0.86);
  });

  it('says so when no threshold reaches the target', () => {
    const r = recommendThreshold(points, { targetAccuracy: 0.95 });
    assert.equal(r.point, null);
    assert.match(r.reason, /no threshold reaches accuracy 0.95/);
  });

  it('picks the most accurate threshold within a budget', () => {
    const r = recommendThreshold(points, { budget: 7000 });
    assert.equal(r.point?.threshold, 0.6);
    close(r.point?.hybridAccuracy ?? null, 0.77);
    assert.equal(recommendThreshold(points, { budget: 1000 }).point?.routed, 0);
    assert.equal(recommendThreshold(points, { budget: 1e9 }).point?.routed, 6);
  });

  it('returns null when even routing nothing exceeds the budget', () => {
    const withLocalCost = thresholdSweep(ROUTING, { ...OPTIONS, localCostPerDocument: 0.01 });
    const r = recommendThreshold(withLocalCost, { budget: 5000 });
    assert.equal(r.point, null);
    assert.match(r.reason, /cheapest costs 10000/);
  });
});
