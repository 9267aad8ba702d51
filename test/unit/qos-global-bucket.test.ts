import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { GlobalBucket } from '../../src/qos/global-bucket.ts';

const OPS = 200_000;

if (!isMainThread) {
  // Worker half of the concurrency test: hammer the shared bucket.
  const b = new GlobalBucket(workerData.sab as SharedArrayBuffer);
  let taken = 0;
  for (let i = 0; i < OPS; i++) {
    b.put(3);
    taken += b.take(2 + (i % 3));
  }
  parentPort!.postMessage(taken);
} else {
  test('take never goes below zero and returns what it got', () => {
    const b = GlobalBucket.create(1);
    assert.equal(b.take(10), 0);
    b.put(25.9);
    assert.equal(b.tokens, 25);
    assert.equal(b.take(10), 10);
    assert.equal(b.take(100), 15);
    assert.equal(b.tokens, 0);
    b.put(-5);
    b.put(0.5);
    assert.equal(b.tokens, 0);
  });

  test('a second wrapper over the same buffer sees the same bucket', () => {
    const a = GlobalBucket.create(3);
    const b = new GlobalBucket(a.buffer);
    assert.equal(b.nWorkers, 3);
    a.put(7);
    assert.equal(b.take(100), 7);
  });

  test('reset: only once every worker has ended a round; drops tokens older than one full cycle', () => {
    const b = GlobalBucket.create(2);
    b.put(100);
    assert.equal(b.endRound(0), false);
    assert.equal(b.endRound(0), false, 'a worker counts once per cycle');
    assert.equal(b.endRound(1), true, 'cycle complete');
    // The 100 tokens were put during this cycle: they survive one more cycle.
    assert.equal(b.tokens, 100);
    b.put(50);
    assert.equal(b.endRound(1), false);
    assert.equal(b.endRound(0), true);
    // The 100 from before the last reset expire; the 50 put since survive.
    assert.equal(b.tokens, 50);
    assert.equal(b.endRound(0), false);
    assert.equal(b.endRound(1), true);
    assert.equal(b.tokens, 0, 'nothing piles up across cycles');
  });

  test('reset after takes drops at most what is left', () => {
    const b = GlobalBucket.create(1);
    b.put(100);
    assert.equal(b.endRound(0), true); // stale = 100
    assert.equal(b.take(80), 80);
    b.put(30); // 50 in bucket, 20 of them old
    assert.equal(b.endRound(0), true);
    assert.ok(b.tokens >= 0 && b.tokens <= 50);
    assert.equal(b.endRound(0), true);
    assert.equal(b.tokens, 0);
  });

  test('concurrent put/take from two threads conserves tokens', async () => {
    const b = GlobalBucket.create(2);
    const w = new Worker(new URL(import.meta.url), { workerData: { sab: b.buffer } });
    let taken = 0;
    for (let i = 0; i < OPS; i++) {
      b.put(3);
      taken += b.take(2 + (i % 3));
    }
    const other = await new Promise<number>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    assert.equal(taken + other + b.tokens, 2 * OPS * 3);
    assert.ok(b.tokens >= 0);
  });
}
