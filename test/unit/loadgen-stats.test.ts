/**
 * Load generator pieces: Poisson arrivals, histogram summaries and merging,
 * the result table, and the measuring loop over a fake target whose delay
 * the test controls.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PoissonArrivals, seededRandom } from '../../src/loadgen/poisson.ts';
import { decodeHistogram, encodeHistogram, mergeHistograms, newHistogram, recordMs, summarize } from '../../src/loadgen/histogram.ts';
import { formatTable, type BenchRow } from '../../src/loadgen/report.ts';
import { runPhase, type LoadSpec } from '../../src/loadgen/generator.ts';
import type { CompletionListener, IoKindCode, IoTarget } from '../../src/loadgen/target.ts';

test('Poisson gaps have the right mean and an exponential spread', () => {
  const rate = 50_000;
  const p = new PoissonArrivals(rate, 0, seededRandom(42));
  const n = 200_000;
  let prev = 0;
  let sum = 0;
  let sumSq = 0;
  let aboveMean = 0;
  for (let i = 0; i < n; i++) {
    const t = p.advance();
    const gap = t - prev;
    assert.ok(gap >= 0);
    prev = t;
    sum += gap;
    sumSq += gap * gap;
    if (gap > 1000 / rate) aboveMean++;
  }
  const mean = sum / n;
  const sd = Math.sqrt(sumSq / n - mean * mean);
  const expected = 1000 / rate; // ms
  assert.ok(Math.abs(mean / expected - 1) < 0.01, `mean gap ${mean} vs ${expected}`);
  // Exponential: standard deviation equals the mean, P(gap > mean) = 1/e.
  assert.ok(Math.abs(sd / expected - 1) < 0.02, `sd ${sd} vs ${expected}`);
  assert.ok(Math.abs(aboveMean / n - Math.exp(-1)) < 0.005, `P(gap > mean) = ${aboveMean / n}`);
});

test('histogram summary in microseconds, and merging equals recording everything in one', () => {
  const a = newHistogram();
  const b = newHistogram();
  const all = newHistogram();
  for (let i = 1; i <= 1000; i++) {
    const ms = i / 1000; // 1..1000 µs
    recordMs(i % 2 === 0 ? a : b, ms);
    recordMs(all, ms);
  }
  const merged = mergeHistograms([decodeHistogram(encodeHistogram(a)), decodeHistogram(encodeHistogram(b))]);
  assert.deepEqual(summarize(merged), summarize(all));
  const s = summarize(all);
  assert.equal(s.count, 1000);
  assert.ok(Math.abs(s.p50 - 500) <= 1, `p50 ${s.p50}`);
  assert.ok(Math.abs(s.p99 - 990) <= 1, `p99 ${s.p99}`);
  assert.ok(Math.abs(s.avg - 500.5) <= 1, `avg ${s.avg}`);
  assert.ok(Math.abs(s.max - 1000) <= 1, `max ${s.max}`);
  assert.equal(summarize(newHistogram()).count, 0);
});

test('the table has one row per rate and the ReFlex columns', () => {
  const lat = { count: 10, avg: 98.25, p10: 50, p50: 90.5, p90: 120, p95: 130, p99: 250, p999: 400, max: 1234.5 };
  const rows: BenchRow[] = [
    { requestedIops: 10000, achievedIops: 9998.4, completed: 99984, errors: 0, missed: 3, windowSec: 10, latencyUs: lat },
    { requestedIops: 0, achievedIops: 250000, completed: 2.5e6, errors: 2, missed: 0, windowSec: 10, latencyUs: lat, serverCpuSec: 5, iopsPerServerCore: 500000 },
  ];
  const lines = formatTable(rows).split('\n');
  assert.deepEqual(lines[0].trim().split(/\s+/), ['RQ_IOPS', 'IOPS', 'avg', 'p10', 'p50', 'p90', 'p95', 'p99', 'p99.9', 'max', 'missed', 'errors', 'srv_cpu_s', 'IOPS/core']);
  assert.deepEqual(lines[1].trim().split(/\s+/), ['10000', '9998', '98.3', '50.0', '90.5', '120', '130', '250', '400', '1235', '3', '0', '0.00', '0']);
  assert.deepEqual(lines[2].trim().split(/\s+/).slice(0, 2), ['closed', '250000']);
  assert.equal(lines[2].trim().split(/\s+/).at(-1), '500000');
  // Right-aligned: every line is as wide as the header.
  assert.equal(lines[1].length, lines[0].length);
});

/** Completes every request after `delayMs` (or holds them while `stalled`). */
class FakeTarget implements IoTarget {
  readonly lanes: number;
  readonly size = 1 << 30;
  readonly sectorSize = 512;
  delayMs = 0;
  submitted = 0;
  maxOutstanding = 0;
  outstanding = 0;
  offsets: number[] = [];
  private listener: CompletionListener | null = null;
  constructor(lanes: number) {
    this.lanes = lanes;
  }
  setListener(l: CompletionListener): void {
    this.listener = l;
  }
  submit(_lane: number, _kind: IoKindCode, offset: number, length: number, tag: number): void {
    assert.equal(offset % length, 0);
    this.submitted++;
    this.outstanding++;
    this.maxOutstanding = Math.max(this.maxOutstanding, this.outstanding);
    if (this.offsets.length < 100) this.offsets.push(offset);
    setTimeout(() => {
      this.outstanding--;
      this.listener!.onComplete(tag, 0);
    }, this.delayMs);
  }
  async close(): Promise<void> {}
}

const base: LoadSpec = { mode: 'closed', qd: 4, iops: 0, readPct: 100, size: 4096, random: false, span: 1 << 20, warmupSec: 0.05, durationSec: 0.3, lateUs: 100, drainSec: 1 };

test('closed loop keeps qd per lane outstanding and measures the target delay', async () => {
  const t = new FakeTarget(2);
  t.delayMs = 5;
  const r = await runPhase(t, { ...base, qd: 4 });
  assert.equal(t.maxOutstanding, 8);
  assert.equal(t.outstanding, 0);
  const s = summarize(r.histogram);
  assert.ok(s.p50 >= 4900, `p50 ${s.p50} µs should be at least the 5 ms delay`);
  // 8 outstanding, ~5+ ms each: at most ~1600 IOPS.
  const iops = r.completed / r.windowSec;
  assert.ok(iops > 400 && iops <= 1700, `IOPS ${iops}`);
  // Sequential offsets: each lane walks its half of the span.
  assert.deepEqual(t.offsets.slice(0, 8).sort((a, b) => a - b), [0, 4096, 8192, 12288, 524288, 528384, 532480, 536576]);
});

test('open loop measures from the intended time: a slow target shows queueing, not just service time', async () => {
  const t = new FakeTarget(1);
  t.delayMs = 10; // one slot, 10 ms each: at most ~100/s served
  const r = await runPhase(t, { ...base, mode: 'open', qd: 1, iops: 400, durationSec: 0.5, drainSec: 10 }, {}, seededRandom(7));
  const s = summarize(r.histogram);
  assert.equal(t.maxOutstanding, 1);
  // Service takes 10 ms, but arrivals at 4x the capacity queue: the tail
  // must be far above the service time (a generator measuring from the
  // actual send would report ~10 ms).
  assert.ok(s.p99 > 100_000, `p99 ${s.p99} µs should include the queueing delay`);
  assert.ok(r.late > 0, 'sends behind schedule count as missed');
});

test('open loop at a sustainable rate achieves it', async () => {
  const t = new FakeTarget(2);
  t.delayMs = 1;
  const r = await runPhase(t, { ...base, mode: 'open', qd: 32, iops: 2000, durationSec: 0.5, random: true }, {}, seededRandom(1));
  const iops = r.completed / r.windowSec;
  assert.ok(iops > 1500 && iops < 2500, `achieved ${iops} of 2000`);
  assert.equal(r.dropped, 0);
  assert.ok(summarize(r.histogram).p50 < 20_000);
});
