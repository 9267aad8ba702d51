import assert from 'node:assert/strict';
import { test } from 'node:test';
import { admit, allocateRates, deviceRateFor, lcReservation, TenantRegistry } from '../../src/qos/admission.ts';
import { CostOp, requestCost } from '../../src/qos/cost.ts';
import type { DeviceModel } from '../../src/qos/device-model.ts';
import { Op } from '../../src/storage/engine.ts';

const costs = { readCost4k: 100, writeCost4k: 1000 };
const model: DeviceModel = {
  ...costs,
  maxTokenRate: 100_000_000,
  tokenLimits: [
    { p95LatencyUs: 500, maxTokenRate: 36_000_000, maxReadOnlyTokenRate: 85_000_000 },
    { p95LatencyUs: 3000, maxTokenRate: 80_000_000, maxReadOnlyTokenRate: 100_000_000 },
  ],
};

test('cost op numbers agree with the engine op codes', () => {
  assert.deepEqual({ ...CostOp }, { ...Op });
});

test('request cost: per started 4 KiB, minimum one page; flush, trim, write-zeroes', () => {
  assert.equal(requestCost(costs, CostOp.READ, 4096), 100);
  assert.equal(requestCost(costs, CostOp.READ, 512), 100);
  assert.equal(requestCost(costs, CostOp.READ, 0), 100);
  assert.equal(requestCost(costs, CostOp.READ, 4097), 200);
  assert.equal(requestCost(costs, CostOp.READ, 128 * 1024), 3200);
  assert.equal(requestCost(costs, CostOp.WRITE, 8192), 2000);
  assert.equal(requestCost(costs, CostOp.WRITE_ZEROES, 1 << 20), 256_000);
  assert.equal(requestCost(costs, CostOp.FLUSH, 0), 100);
  assert.equal(requestCost(costs, CostOp.TRIM, 1 << 30), 1000);
  assert.throws(() => requestCost(costs, 9, 4096), RangeError);
});

test('LC reservation = iops × (r × read + (1 − r) × write)', () => {
  assert.equal(lcReservation(model, { kind: 'LC', iops: 10_000, readPct: 100, p95Us: 500 }), 1_000_000);
  assert.equal(lcReservation(model, { kind: 'LC', iops: 10_000, readPct: 80, p95Us: 500 }), 2_800_000);
});

test('device rate: strictest p95, read-only column only when every tenant is read-only', () => {
  const ro = { kind: 'LC', iops: 1, readPct: 100, p95Us: 3000 } as const;
  const strict = { kind: 'LC', iops: 1, readPct: 100, p95Us: 500 } as const;
  assert.equal(deviceRateFor(model, [ro]).rate, 100_000_000);
  assert.equal(deviceRateFor(model, [ro, strict]).rate, 85_000_000);
  assert.equal(deviceRateFor(model, [ro, strict, { kind: 'BE' }]).rate, 36_000_000);
  assert.equal(deviceRateFor(model, [ro, strict, { kind: 'BE', readPct: 100 }]).rate, 85_000_000);
  assert.equal(deviceRateFor(model, [{ kind: 'BE' }]).rate, 100_000_000);
});

test('admission: admits within the rate, refuses beyond it with the numbers', () => {
  const existing = [{ kind: 'LC', iops: 100_000, readPct: 80, p95Us: 1000 } as const]; // 28M
  // Strictest p95 1000 µs, mixed: 36M + 0.2 × 44M = 44.8M; 16.8M left.
  const ok = admit(model, { kind: 'LC', iops: 168_000, readPct: 100, p95Us: 1000 }, existing);
  assert.deepEqual(ok, { admitted: true, rate: 16_800_000, deviceRate: 44_800_000 });
  const no = admit(model, { kind: 'LC', iops: 169_000, readPct: 100, p95Us: 1000 }, existing);
  assert.equal(no.admitted, false);
  if (!no.admitted) {
    assert.match(no.reason, /needs 16,900,000 tokens\/s/);
    assert.match(no.reason, /only 16,800,000 tokens\/s are available/);
    assert.match(no.reason, /device rate 44,800,000 tokens\/s at p95 1000 µs \(mixed\)/);
    assert.match(no.reason, /28,000,000 tokens\/s already reserved/);
  }
  // A stricter objective lowers the device rate for everyone: 28M + 1M > 36M? no; 28M + 9M > 36M yes.
  assert.equal(admit(model, { kind: 'LC', iops: 10_000, readPct: 100, p95Us: 500 }, existing).admitted, true);
  assert.equal(admit(model, { kind: 'LC', iops: 90_000, readPct: 100, p95Us: 500 }, existing).admitted, false);
  const tight = admit(model, { kind: 'LC', iops: 1, readPct: 100, p95Us: 100 }, []);
  assert.equal(tight.admitted, false);
  if (!tight.admitted) assert.match(tight.reason, /below the strictest calibrated p95 \(500 µs\)/);
  assert.equal(admit(model, { kind: 'LC', iops: -1, readPct: 100, p95Us: 500 }, []).admitted, false);
  assert.equal(admit(model, { kind: 'LC', iops: 1, readPct: 101, p95Us: 500 }, []).admitted, false);
});

test('admission: a possibly-writing BE tenant is refused if it would drop the read-only rate below LC reservations', () => {
  const lc = [{ kind: 'LC', iops: 500_000, readPct: 100, p95Us: 500 } as const]; // 50M of 85M read-only
  assert.equal(admit(model, { kind: 'BE', readPct: 100 }, lc).admitted, true);
  const r = admit(model, { kind: 'BE' }, lc);
  assert.equal(r.admitted, false);
});

test('rates: BE split the spare; with no BE, LC split it', () => {
  const lc1 = { kind: 'LC', iops: 100_000, readPct: 100, p95Us: 3000 } as const; // 10M
  const lc2 = { kind: 'LC', iops: 10_000, readPct: 0, p95Us: 3000 } as const; // 10M
  // Mixed at 3000 µs: 80M; spare 60M.
  assert.deepEqual(allocateRates(model, [lc1, lc2, { kind: 'BE' }, { kind: 'BE' }]), [10e6, 10e6, 30e6, 30e6]);
  assert.deepEqual(allocateRates(model, [lc1, lc2]), [40e6, 40e6]);
});

test('TenantRegistry: one path for register, update, remove; refusals change nothing', () => {
  const reg = new TenantRegistry<string>(model);
  assert.equal(reg.register('a', { kind: 'LC', iops: 100_000, readPct: 100, p95Us: 3000 }).admitted, true);
  assert.equal(reg.register('b', { kind: 'BE' }).admitted, true);
  assert.equal(reg.register('a', { kind: 'BE' }).admitted, false);
  assert.deepEqual([...reg.rates()], [
    ['a', 10e6],
    ['b', 70e6],
  ]);
  const up = reg.update('a', { kind: 'LC', iops: 10_000_000, readPct: 100, p95Us: 3000 });
  assert.equal(up.admitted, false);
  assert.equal((reg.get('a') as { iops: number }).iops, 100_000);
  assert.equal(reg.update('a', { kind: 'LC', iops: 200_000, readPct: 100, p95Us: 3000 }).admitted, true);
  assert.equal(reg.rates().get('b'), 60e6);
  assert.equal(reg.update('zzz', { kind: 'BE' }).admitted, false);
  assert.equal(reg.remove('a'), true);
  assert.equal(reg.rates().get('b'), 100e6);
  assert.equal(reg.remove('a'), false);
});
