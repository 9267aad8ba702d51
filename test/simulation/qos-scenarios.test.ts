/**
 * The QoS "done means", checked on the virtual clock: scheduler -> simulated
 * SSD with the calibrated model in sim-ssd.devmodel.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { admit, TenantRegistry } from '../../src/qos/admission.ts';
import { parseDevModel } from '../../src/qos/device-model.ts';
import { runSimulation, type SimTenant } from './harness.ts';

const model = parseDevModel(
  readFileSync(new URL('./sim-ssd.devmodel', import.meta.url), 'utf8'),
  'sim-ssd.devmodel',
);
const MS = 1_000_000;
const P95 = 500;

const LC_READ: SimTenant = {
  id: 1,
  spec: { kind: 'LC', iops: 60_000, readPct: 100, p95Us: P95 },
  load: { type: 'poisson', iops: 60_000, readPct: 100 },
};
const LC_MIXED: SimTenant = {
  id: 2,
  spec: { kind: 'LC', iops: 20_000, readPct: 80, p95Us: P95 },
  load: { type: 'poisson', iops: 20_000, readPct: 80 },
};
const BE_READ: SimTenant = { id: 3, spec: { kind: 'BE' }, load: { type: 'closed', depth: 32, readPct: 100 } };
const BE_WRITE: SimTenant = { id: 4, spec: { kind: 'BE' }, load: { type: 'closed', depth: 32, readPct: 0 } };
const mixedScenario = [LC_READ, LC_MIXED, BE_READ, BE_WRITE];

function checkLcMet(r: ReturnType<typeof runSimulation>, lc: SimTenant): void {
  const res = r.tenants.get(lc.id)!;
  const spec = lc.spec as { iops: number };
  assert.ok(res.iops >= 0.97 * spec.iops, `tenant ${lc.id}: ${res.iops.toFixed(0)} IOPS < objective ${spec.iops}`);
  assert.ok(res.readP95Us <= P95, `tenant ${lc.id}: read p95 ${res.readP95Us.toFixed(0)} µs > ${P95} µs`);
}

test('QoS on: both LC tenants meet IOPS and p95 while two BE tenants (one writing) saturate', () => {
  const r = runSimulation({ model, tenants: mixedScenario, qos: true, durationNs: 1000 * MS, warmupNs: 100 * MS });
  checkLcMet(r, LC_READ);
  checkLcMet(r, LC_MIXED);
  // BE tenants really load the device: together the tenants use most of the device rate.
  const be = r.tenants.get(3)!.tokensPerSec + r.tenants.get(4)!.tokensPerSec;
  assert.ok(be > 0.8 * (r.deviceRate - 11.6e6), `BE got only ${be} tokens/s`);
  assert.ok(r.totalTokensPerSec >= 0.9 * r.deviceRate, `device used ${r.totalTokensPerSec} of ${r.deviceRate}`);
});

test('QoS off: the same load makes the LC tenants miss their p95', () => {
  const r = runSimulation({ model, tenants: mixedScenario, qos: false, durationNs: 400 * MS, warmupNs: 50 * MS });
  for (const id of [1, 2]) {
    const p = r.tenants.get(id)!.readP95Us;
    assert.ok(p > P95, `tenant ${id}: p95 ${p.toFixed(0)} µs should exceed ${P95} µs without QoS`);
  }
});

test('BE tenants with equal demand get shares within 10%', () => {
  const tenants: SimTenant[] = [
    LC_READ,
    { id: 3, spec: { kind: 'BE' }, load: { type: 'closed', depth: 32, readPct: 90 } },
    { id: 4, spec: { kind: 'BE' }, load: { type: 'closed', depth: 32, readPct: 90 } },
  ];
  const r = runSimulation({ model, tenants, qos: true, durationNs: 600 * MS, warmupNs: 50 * MS });
  const a = r.tenants.get(3)!.tokensPerSec;
  const b = r.tenants.get(4)!.tokensPerSec;
  assert.ok(a > 1e6 && b > 1e6, `BE shares too small: ${a}, ${b}`);
  assert.ok(Math.abs(a - b) <= 0.1 * Math.max(a, b), `BE shares ${a.toFixed(0)} vs ${b.toFixed(0)} differ by > 10%`);
  checkLcMet(r, LC_READ);
});

test('work conservation: an under-using LC tenant leaves its reservation to BE (one worker)', () => {
  const tenants: SimTenant[] = [
    // Reserves 15M tokens/s but sends a fifth of that.
    { id: 1, spec: { kind: 'LC', iops: 150_000, readPct: 100, p95Us: P95 }, load: { type: 'poisson', iops: 30_000, readPct: 100 } },
    { id: 3, spec: { kind: 'BE' }, load: { type: 'closed', depth: 64, readPct: 90 } },
  ];
  const r = runSimulation({ model, tenants, qos: true, durationNs: 500 * MS, warmupNs: 50 * MS });
  assert.ok(r.totalTokensPerSec >= 0.9 * r.deviceRate, `issued ${r.totalTokensPerSec} < 90% of ${r.deviceRate}`);
  assert.ok(r.totalTokensPerSec <= 1.05 * r.deviceRate, `issued ${r.totalTokensPerSec} well above ${r.deviceRate}`);
  assert.ok(r.tenants.get(1)!.readP95Us <= P95);
});

test('two workers: leftover crosses workers through the global bucket; LC still met', () => {
  const tenants: SimTenant[] = [
    { ...LC_READ, worker: 0, spec: { kind: 'LC', iops: 100_000, readPct: 100, p95Us: P95 } },
    { ...LC_MIXED, worker: 1 },
    { id: 3, spec: { kind: 'BE' }, load: { type: 'closed', depth: 64, readPct: 90 }, worker: 1 },
  ];
  const r = runSimulation({ model, tenants, qos: true, workers: 2, durationNs: 600 * MS, warmupNs: 50 * MS });
  // Tenant 1 reserves 10M but sends 6M: its 4M of spare on worker 0 must reach the BE tenant on worker 1.
  assert.ok(r.totalTokensPerSec >= 0.9 * r.deviceRate, `issued ${r.totalTokensPerSec} < 90% of ${r.deviceRate}`);
  const beRate = r.tenants.get(3)!.rate;
  assert.ok(r.tenants.get(3)!.tokensPerSec > beRate + 2e6, 'BE tenant got no leftover from worker 0');
  checkLcMet(r, { ...LC_READ, spec: { kind: 'LC', iops: 60_000, readPct: 100, p95Us: P95 } });
  checkLcMet(r, LC_MIXED);
});

test('an objective that cannot fit is refused by admission, with the numbers', () => {
  const reg = new TenantRegistry<number>(model);
  assert.equal(reg.register(1, LC_READ.spec).admitted, true);
  assert.equal(reg.register(2, LC_MIXED.spec).admitted, true);
  const r = reg.register(5, { kind: 'LC', iops: 50_000, readPct: 50, p95Us: 300 });
  assert.equal(r.admitted, false);
  if (!r.admitted) {
    assert.match(r.reason, /27,500,000 tokens\/s/); // 50k × (0.5×100 + 0.5×1000)
    assert.match(r.reason, /at p95 300 µs/);
  }
  assert.equal(reg.size, 2);
  // Same check through the pure function.
  assert.equal(admit(model, { kind: 'LC', iops: 400_000, readPct: 100, p95Us: 1000 }, []).admitted, false);
});

test('simulation is deterministic for a seed', () => {
  const run = (seed: number) =>
    runSimulation({ model, tenants: mixedScenario, qos: true, durationNs: 50 * MS, seed });
  const a = run(7);
  const b = run(7);
  const c = run(8);
  assert.deepEqual([...a.tenants.values()], [...b.tenants.values()]);
  assert.notDeepEqual([...a.tenants.values()], [...c.tenants.values()]);
});
