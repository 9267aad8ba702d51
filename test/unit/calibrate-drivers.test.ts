import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runClosedLoop } from '../../src/calibrate/closed-loop.ts';
import { runOpenLoop } from '../../src/calibrate/open-loop.ts';
import { isSteady } from '../../src/calibrate/precondition.ts';
import { seededRandom } from '../../src/loadgen/poisson.ts';
import { MemoryEngine } from '../../src/storage/memory-engine.ts';
import { Op, type Engine, type IoRequest } from '../../src/storage/engine.ts';

/** Wraps an engine so every request takes `delayMs` and offsets/ops are observable. */
function slowEngine(inner: Engine, delayMs: number, seen: IoRequest[]): Engine {
  const outer: Engine = {
    name: 'slow',
    size: inner.size,
    blockSize: inner.blockSize,
    onComplete: () => {},
    allocBuffer: (n) => inner.allocBuffer(n),
    submit: (req) => {
      seen.push({ ...req });
      inFlight++;
      setTimeout(() => {
        inFlight--;
        req.result = 0;
        outer.onComplete(req);
      }, delayMs);
    },
    kick: () => {},
    get inFlight() {
      return inFlight;
    },
    close: () => inner.close(),
  };
  let inFlight = 0;
  return outer;
}

test('open loop offers the target rate, mixes reads and writes, keeps offsets aligned within the span', async () => {
  const seen: IoRequest[] = [];
  const engine = slowEngine(new MemoryEngine(1 << 20), 1, seen);
  const r = await runOpenLoop(engine, {
    iops: 2000, durationMs: 500, warmupMs: 50, readFraction: 0.7, sizeBytes: 8192,
    spanBytes: 256 * 1024, spanOffset: 64 * 1024, random: seededRandom(5),
  });
  assert.equal(r.errors, 0);
  assert.equal(r.missed, 0);
  assert.ok(r.achievedIops > 1500 && r.achievedIops < 2500, `achieved ${r.achievedIops}`);
  const reads = seen.filter((q) => q.op === Op.READ).length;
  assert.ok(Math.abs(reads / seen.length - 0.7) < 0.1, `read share ${reads / seen.length}`);
  for (const q of seen) {
    assert.equal(q.offset % 4096, 0);
    assert.ok(q.offset >= 64 * 1024 && q.offset + q.length <= 320 * 1024, `offset ${q.offset}`);
    assert.equal(q.length, 8192);
  }
  // Every request took a 1 ms timer (libuv may fire it a little early by the precise clock); latency is measured from the intended arrival.
  assert.ok(r.read.p50 >= 500, `p50 ${r.read.p50}`);
  assert.ok(r.read.p95 >= r.read.p50 && r.read.p99 >= r.read.p95);
});

test('open loop counts arrivals as missed when the outstanding bound is reached', async () => {
  const engine = slowEngine(new MemoryEngine(1 << 20), 50, []);
  const r = await runOpenLoop(engine, {
    iops: 2000, durationMs: 300, readFraction: 1, sizeBytes: 4096, spanBytes: 1 << 20, maxOutstanding: 4, random: seededRandom(9),
  });
  // 4 slots of 50 ms each sustain ~80 IOPS: almost everything offered is missed.
  assert.ok(r.missed > r.arrivals / 2, `missed ${r.missed} of ${r.arrivals}`);
  assert.ok(r.achievedIops < 0.2 * r.targetIops);
});

test('closed loop keeps qd in flight, stops when offsets run out, restores the handler', async () => {
  const engine = new MemoryEngine(1 << 20);
  const before = (): void => {};
  engine.onComplete = before;
  let next = 0;
  const r = await runClosedLoop(engine, {
    qd: 4, sizeBytes: 4096, readFraction: 0, maxMs: 10_000,
    nextOffset: () => (next < 256 ? 4096 * next++ : null),
  });
  assert.equal(r.completed, 256);
  assert.equal(r.errors, 0);
  assert.equal(engine.onComplete, before);
  // Writes landed: the memory device no longer reads back zeros everywhere.
  const buf = Buffer.alloc(4096);
  const req = { op: Op.READ, offset: 255 * 4096, length: 4096, buf, fua: false, result: 0, ctx: null } as IoRequest;
  await new Promise<void>((resolve) => {
    engine.onComplete = () => resolve();
    engine.submit(req);
    engine.kick();
  });
  assert.ok(buf.some((b) => b !== 0));
});

test('isSteady: needs n windows within the tolerance of their mean', () => {
  assert.equal(isSteady([100, 101], 3, 0.05), false);
  assert.equal(isSteady([50, 100, 101, 102], 3, 0.05), true);
  assert.equal(isSteady([100, 110, 100], 3, 0.05), false);
  assert.equal(isSteady([0, 0, 0], 3, 0.05), false);
});
