import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildCurves, crossingIops, fitDeviceModel, fitWriteCost, sizeScaling, type SweepPoint } from '../../src/calibrate/fit.ts';
import { seededRandom } from '../../src/loadgen/poisson.ts';
import { tokenRateFor, validateDeviceModel } from '../../src/qos/device-model.ts';

/**
 * A synthetic device whose read p95 depends only on the weighted load
 * x = IOPS × (r + (1 - r) × w / 100): p95 = base / (1 - x / C), as an M/M/1
 * queue would. Noise is multiplicative, seeded.
 */
function synthetic(trueWriteCost: number, opts: { capacity?: number; baseUs?: number; noise?: number; seed?: number; sizes?: number[] } = {}): SweepPoint[] {
  const C = opts.capacity ?? 50_000;
  const base = opts.baseUs ?? 100;
  const noise = opts.noise ?? 0.04;
  const rnd = seededRandom(opts.seed ?? 1);
  const jitter = (): number => 1 + noise * (2 * rnd() - 1);
  const out: SweepPoint[] = [];
  const fractions = [0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1];
  const curve = (r: number, size: number): void => {
    const pages = Math.ceil(size / 4096);
    const perReq = pages * (r + ((1 - r) * trueWriteCost) / 100);
    const capReqs = C / perReq;
    for (const f of fractions) {
      const target = f * capReqs;
      const achieved = Math.min(target, capReqs * 0.98);
      const load = (achieved * perReq) / C;
      const p95 = Math.min(base / Math.max(1 - load, 0.02), 50 * base);
      out.push({ readFraction: r, sizeBytes: size, targetIops: target, iops: achieved * jitter(), p95Us: p95 * jitter() });
    }
  };
  for (const r of [1, 0.9, 0.7, 0.5]) curve(r, 4096);
  for (const s of opts.sizes ?? []) curve(1, s);
  return out;
}

test('fitWriteCost recovers a known write cost within 20% from noisy curves', () => {
  for (const [w, seed] of [[400, 1], [1000, 2], [250, 3], [1500, 4]] as const) {
    const fit = fitWriteCost(synthetic(w, { seed }));
    assert.equal(fit.method, 'overlap');
    assert.ok(Math.abs(fit.writeCost4k - w) / w < 0.2, `true ${w}, fitted ${fit.writeCost4k}`);
    assert.ok(fit.levelsUs.length > 0);
  }
});

test('fitWriteCost is exact enough on noise-free data', () => {
  const fit = fitWriteCost(synthetic(700, { noise: 0 }));
  assert.ok(Math.abs(fit.writeCost4k - 700) / 700 < 0.03, `fitted ${fit.writeCost4k}`);
});

test('the fitted cost overlaps curves better than a wrong cost would', () => {
  const points = synthetic(800, { noise: 0 });
  const fit = fitWriteCost(points);
  const wrong = fitWriteCost(points, 100, 100, 100); // forced to 100: writes as cheap as reads
  assert.ok(fit.spread < wrong.spread / 10, `${fit.spread} vs ${wrong.spread}`);
});

test('crossingIops interpolates, reports 0 when above from the start and null when never reached', () => {
  const curve = { readFraction: 1, sizeBytes: 4096, points: [{ iops: 1000, p95Us: 100 }, { iops: 2000, p95Us: 300 }] };
  assert.equal(crossingIops(curve, 200), 1500);
  assert.equal(crossingIops(curve, 50), 0);
  assert.equal(crossingIops(curve, 400), null);
});

test('buildCurves flattens noise into monotone curves ordered by offered load', () => {
  const pts: SweepPoint[] = [
    { readFraction: 1, sizeBytes: 4096, targetIops: 300, iops: 290, p95Us: 150 },
    { readFraction: 1, sizeBytes: 4096, targetIops: 100, iops: 100, p95Us: 120 },
    { readFraction: 1, sizeBytes: 4096, targetIops: 200, iops: 199, p95Us: 110 },
  ];
  const [c] = buildCurves(pts);
  assert.deepEqual(c.points.map((p) => p.iops), [100, 199, 290]);
  assert.deepEqual(c.points.map((p) => p.p95Us), [120, 120, 150]);
});

test('fitDeviceModel yields a valid model with monotone rows, read-only >= mixed, capped by saturation', () => {
  const fit = fitDeviceModel(synthetic(500, { seed: 7 }));
  const m = validateDeviceModel(fit.model);
  assert.equal(m.readCost4k, 100);
  assert.ok(Math.abs(m.writeCost4k - 500) / 500 < 0.2);
  assert.ok(m.tokenLimits.length >= 2, JSON.stringify(m.tokenLimits));
  for (let i = 1; i < m.tokenLimits.length; i++) {
    assert.ok(m.tokenLimits[i].maxTokenRate >= m.tokenLimits[i - 1].maxTokenRate);
    assert.ok(m.tokenLimits[i].maxReadOnlyTokenRate >= m.tokenLimits[i - 1].maxReadOnlyTokenRate);
  }
  for (const r of m.tokenLimits) {
    assert.ok(r.p95LatencyUs >= 1.5 * fit.unloadedP95Us);
    assert.ok(r.maxTokenRate <= m.maxTokenRate && r.maxReadOnlyTokenRate <= m.maxTokenRate);
  }
  // Capacity is 50k read-equivalents/s = 5M tokens/s; saturation was measured at ~98% of it.
  assert.ok(m.maxTokenRate > 4.5e6 && m.maxTokenRate < 5.3e6, String(m.maxTokenRate));
  // At p95 = 2 × base the M/M/1 device runs at half capacity: ~2.5M tokens/s.
  const at200 = tokenRateFor(m, 200, true);
  assert.ok(at200 > 2.0e6 && at200 < 3.0e6, String(at200));
});

test('explicit levels give one row per level', () => {
  const fit = fitDeviceModel(synthetic(500, { noise: 0 }), { levelsUs: [200, 400, 1000] });
  assert.deepEqual(fit.model.tokenLimits.map((r) => r.p95LatencyUs), [200, 400, 1000]);
});

test('sizeScaling reports token rates relative to 4 KiB (1 when cost is linear in size)', () => {
  const s = sizeScaling(synthetic(500, { noise: 0, sizes: [8192, 16384, 32768] }));
  assert.deepEqual(s.map((e) => e.sizeBytes), [4096, 8192, 16384, 32768]);
  for (const e of s) assert.ok(Math.abs(e.relativeTo4k - 1) < 0.01, JSON.stringify(e));
  assert.ok(Math.abs(s[3].saturationIops * 8 - s[0].saturationIops) / s[0].saturationIops < 0.01);
});

test('fitDeviceModel refuses a sweep without a read-only curve', () => {
  const pts = synthetic(500).filter((p) => p.readFraction < 1);
  assert.throws(() => fitDeviceModel(pts), /read-only/);
});

test('an isolated latency spike at low load does not poison the curve', () => {
  const pts = synthetic(500, { noise: 0 });
  const clean = fitDeviceModel(pts).model;
  const firstRo = pts.find((p) => p.readFraction === 1) as SweepPoint;
  firstRo.p95Us = 400 * firstRo.p95Us; // a 40 ms stall in the lightest step
  const spiked = fitDeviceModel(pts);
  assert.ok(spiked.unloadedP95Us < 200, String(spiked.unloadedP95Us));
  // Dropping the spike loses one point, not the curve: rates at a mid-range limit stay close.
  for (const ro of [true, false]) {
    const a = tokenRateFor(clean, 400, ro);
    const b = tokenRateFor(spiked.model, 400, ro);
    assert.ok(a > 0 && Math.abs(b - a) / a < 0.1, `${ro}: ${a} vs ${b}`);
  }
});
