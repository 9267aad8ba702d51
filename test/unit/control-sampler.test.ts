import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Ring, Sampler } from '../../src/control/sampler.ts';
import { Field } from '../../src/dataplane/tenant-counters.ts';
import { makeControl, simulateReads } from './control-fixture.ts';

test('ring: keeps the newest `capacity` values in order; NaN reads as null', () => {
  const r = new Ring(3);
  assert.deepEqual(r.toArray(), []);
  assert.ok(Number.isNaN(r.last()));
  r.push(1);
  r.push(NaN);
  assert.deepEqual(r.toArray(), [1, null]);
  r.push(3);
  r.push(4);
  r.push(5);
  assert.deepEqual(r.toArray(), [3, 4, 5]);
  assert.equal(r.last(), 5);
  assert.equal(r.length, 3);
});

test('sampler: per-second IOPS, bytes/s and the window p95 from cumulative counters', async () => {
  const { control, counters } = makeControl();
  const made = await control.createTenant({ name: 'a', class: 'LC', iops: 5000, p95Us: 500 });
  assert.ok(made.ok);
  const id = made.value.tenant.id;
  let now = 1_000_000;
  const s = new Sampler(control, { now: () => now, capacity: 4 });
  s.sample(); // baseline only
  assert.equal(s.series('a')!.iops.length, 0);

  // Second 1: 1000 reads at 100 µs. Second 2 (2 s long): 500 reads at 900 µs + 100 writes.
  simulateReads(counters, id, 1000, 100);
  now += 1000;
  s.sample();
  simulateReads(counters, id, 500, 900);
  counters.add(id, Field.WRITE_OPS, 100);
  now += 2000;
  s.sample();
  const a = s.series('a')!;
  assert.deepEqual(a.iops.toArray(), [1000, 300]);
  assert.deepEqual(a.readIops.toArray(), [1000, 250]);
  assert.deepEqual(a.bytesPerSec.toArray(), [1000 * 4096, (500 * 4096) / 2]);
  // Window p95 sees only that second's requests: ~100 µs then ~900 µs (bucket upper bounds, ≤12.5% high).
  const [p1, p2] = a.p95Us.toArray() as number[];
  assert.ok(p1 >= 100 && p1 <= 113, `p95 of second 1: ${p1}`);
  assert.ok(p2 >= 900 && p2 <= 1013, `p95 of second 2: ${p2}`);
  assert.equal(s.lastP95Us('a'), p2);

  // An idle second has no p95 (null in JSON), and zero IOPS.
  now += 1000;
  s.sample();
  assert.equal(a.iops.last(), 0);
  assert.equal(a.p95Us.toArray().at(-1), null);
  assert.deepEqual(a.t.toArray(), [1_001_000, 1_003_000, 1_004_000]);
});

test('sampler: a removed tenant disappears; one recreated under the same name starts over', async () => {
  const { control, counters } = makeControl();
  let now = 0;
  const s = new Sampler(control, { now: () => now });
  const first = await control.createTenant({ name: 'x', class: 'BE' });
  assert.ok(first.ok);
  await control.createTenant({ name: 'y', class: 'BE' });
  s.sample();
  simulateReads(counters, first.value.tenant.id, 10, 50);
  now += 1000;
  s.sample();
  assert.equal(s.series('x')!.iops.last(), 10);
  assert.ok((await control.removeTenant('x')).ok);
  now += 1000;
  s.sample();
  assert.equal(s.series('x'), undefined);
  assert.ok(s.series('y'));
});
