import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newRequest, Op, type IoRequest } from '../../src/storage/engine.ts';
import { SeededRandom, SimulatedSsd } from '../../src/storage/simulated-ssd.ts';

function req(op: number, offset: number, length: number, buf: Buffer | null): IoRequest {
  const r = newRequest();
  r.op = op as IoRequest['op'];
  r.offset = offset;
  r.length = length;
  r.buf = buf;
  return r;
}

test('reads return what was written; trimmed and unwritten ranges read as zeros', () => {
  const ssd = new SimulatedSsd({ size: 1 << 20 });
  const done: IoRequest[] = [];
  ssd.onComplete = (r) => done.push(r);
  const data = Buffer.alloc(6000, 0xab);
  ssd.submit(req(Op.WRITE, 1000, 6000, data));
  assert.equal(done.length, 0, 'never completes inside submit');
  ssd.advance(ssd.nextEventNs());
  assert.equal(done.length, 1);
  assert.equal(done[0].result, 0);
  const out = Buffer.alloc(8000, 0xff);
  ssd.submit(req(Op.READ, 0, 8000, out));
  const outOfRange = req(Op.READ, 1 << 20, 1, Buffer.alloc(1));
  ssd.submit(outOfRange);
  ssd.advance(ssd.nowNs + 10_000_000);
  assert.equal(done.length, 3);
  assert.equal(outOfRange.result, -22, 'out-of-range read fails with EINVAL');
  assert.deepEqual(out.subarray(0, 1000), Buffer.alloc(1000));
  assert.deepEqual(out.subarray(1000, 7000), data);
  assert.deepEqual(out.subarray(7000), Buffer.alloc(1000));
  ssd.submit(req(Op.TRIM, 4096, 4096, null));
  ssd.advance(ssd.nowNs + 10_000_000);
  const again = Buffer.alloc(8000, 0xff);
  ssd.submit(req(Op.READ, 0, 8000, again));
  ssd.advance(ssd.nowNs + 10_000_000);
  assert.deepEqual(again.subarray(4096, 7000), Buffer.alloc(7000 - 4096));
  assert.deepEqual(again.subarray(1000, 4096), data.subarray(0, 3096));
  assert.equal(ssd.inFlight, 0);
});

/** Mean latency, µs, of n reads submitted at `iops` evenly spaced. */
function meanReadLatency(iops: number, n: number, writes = 0): number {
  const ssd = new SimulatedSsd({ storeData: false, seed: 3 });
  let sum = 0;
  let count = 0;
  const startAt = new Map<IoRequest, number>();
  ssd.onComplete = (r) => {
    if (r.op === Op.READ) {
      sum += ssd.nowNs - startAt.get(r)!;
      count++;
    }
  };
  const gap = 1e9 / iops;
  for (let i = 0; i < n; i++) {
    const t = i * gap;
    ssd.advance(t);
    const isWrite = i % 10 < writes;
    const r = req(isWrite ? Op.WRITE : Op.READ, 0, 4096, null);
    startAt.set(r, t);
    ssd.submit(r);
  }
  ssd.advance(n * gap + 1e9);
  return sum / count / 1000;
}

test('latency grows with load and with concurrent writes', () => {
  const light = meanReadLatency(10_000, 5000);
  const heavy = meanReadLatency(315_000, 50_000); // 16 channels × 20 000 reads/s = 320 000/s capacity
  assert.ok(light >= 45 && light <= 60, `light-load read latency ${light} µs`);
  assert.ok(heavy > 1.3 * light, `heavy-load read latency ${heavy} µs vs light ${light} µs`);
  const overload = meanReadLatency(400_000, 50_000); // beyond capacity: the queue keeps growing
  assert.ok(overload > 20 * light, `overloaded read latency ${overload} µs vs light ${light} µs`);
  const withWrites = meanReadLatency(10_000, 5000, 2);
  assert.ok(withWrites > light * 1.05, `reads beside writes ${withWrites} µs vs ${light} µs`);
});

test('deterministic for a seed; the PRNG is uniform enough', () => {
  assert.equal(meanReadLatency(200_000, 20_000), meanReadLatency(200_000, 20_000));
  const rng = new SeededRandom(9);
  let sum = 0;
  for (let i = 0; i < 100_000; i++) sum += rng.next();
  assert.ok(Math.abs(sum / 100_000 - 0.5) < 0.01);
  assert.notEqual(new SeededRandom(1).nextU32(), new SeededRandom(2).nextU32());
});

test('advance refuses to move time backwards', () => {
  const ssd = new SimulatedSsd();
  ssd.advance(100);
  assert.throws(() => ssd.advance(50), RangeError);
});
