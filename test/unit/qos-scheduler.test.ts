import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GlobalBucket } from '../../src/qos/global-bucket.ts';
import { Scheduler } from '../../src/qos/scheduler.ts';

const READ = 100;
const WRITE = 1000;
const US = 1000;

function make(opts: { bucket?: GlobalBucket | null; worker?: number; qos?: boolean; deficitLimit?: number } = {}) {
  return new Scheduler<number>({
    readCost4k: READ,
    writeCost4k: WRITE,
    bucket: opts.bucket === undefined ? GlobalBucket.create(1) : opts.bucket,
    workerIndex: opts.worker ?? 0,
    nowNs: 0,
    qos: opts.qos,
    deficitLimit: opts.deficitLimit,
  });
}

/** Runs rounds every stepNs from fromNs (exclusive) to toNs; returns issued items. */
function runRounds(s: Scheduler<number>, fromNs: number, toNs: number, stepNs: number, out: number[] = []): number[] {
  for (let t = fromNs + stepNs; t <= toNs; t += stepNs) s.round(t, (x) => out.push(x));
  return out;
}

test('LC: deficit limit bounds the initial burst to 100 × write cost', () => {
  const s = make();
  s.addTenant({ id: 1, kind: 'LC', rateTokensPerSec: 1_000_000 });
  for (let i = 0; i < 5000; i++) s.enqueue(1, i, READ);
  const out: number[] = [];
  assert.equal(s.round(0, (x) => out.push(x)), 1000); // 100 000 tokens of deficit / 100
  assert.deepEqual(out.slice(0, 3), [0, 1, 2], 'FIFO within a tenant');
  assert.equal(s.queued(), 4000);
  assert.equal(s.tenant(1)!.credit, -100_000);
});

test('LC: long-run rate equals the reservation (plus the one-time deficit)', () => {
  const s = make();
  s.addTenant({ id: 1, kind: 'LC', rateTokensPerSec: 1_000_000 }); // 10 000 reads/s
  for (let i = 0; i < 50_000; i++) s.enqueue(1, i, READ);
  const out = runRounds(s, 0, 1e9, 10 * US);
  assert.ok(Math.abs(out.length - 11_000) <= 2, `issued ${out.length}`);
});

test('LC: a custom deficit limit of 0 issues nothing ahead of credit', () => {
  const s = make({ deficitLimit: 0 });
  s.addTenant({ id: 1, kind: 'LC', rateTokensPerSec: 1_000_000 });
  for (let i = 0; i < 10; i++) s.enqueue(1, i, READ);
  assert.equal(s.round(0, () => {}), 0);
  assert.equal(s.round(100 * US, () => {}), 1); // 100 tokens earned, spent, credit 0: stop
});

test('unused LC reservation flows to BE (work conservation)', () => {
  const s = make();
  s.addTenant({ id: 1, kind: 'LC', rateTokensPerSec: 1_000_000 });
  s.addTenant({ id: 2, kind: 'BE', rateTokensPerSec: 0 });
  for (let i = 0; i < 50_000; i++) s.enqueue(2, i, READ);
  const out = runRounds(s, 0, 1e9, 10 * US);
  assert.ok(out.length >= 9_900 && out.length <= 10_001, `BE issued ${out.length}`);
});

test('LC credit above 3 × increment is given away (90%) to BE', () => {
  const s = make({ bucket: null });
  s.addTenant({ id: 1, kind: 'LC', rateTokensPerSec: 10_000_000 });
  s.addTenant({ id: 2, kind: 'BE', rateTokensPerSec: 0 });
  // A lightly loaded LC tenant: one read per round keeps it active, earning 1000 tokens/round.
  const be: number[] = [];
  for (let i = 0; i < 100_000; i++) s.enqueue(2, i, READ);
  let lcIssued = 0;
  for (let t = 100 * US; t <= 100_000 * US; t += 100 * US) {
    s.enqueue(1, -1, READ);
    s.round(t, (x) => (x === -1 ? lcIssued++ : be.push(x)));
    assert.ok(s.tenant(1)!.credit <= 3 * 1000 + 1e-6, `LC credit ${s.tenant(1)!.credit} kept above 3 × increment`);
  }
  assert.equal(lcIssued, 1000);
  // LC used 100 000 of 1 000 000 tokens; BE got at least 90% of the rest (9000 reads) in 0.1 s.
  assert.ok(be.length >= 8000, `BE issued ${be.length}`);
});

test('BE: round-robin shares equally and the start rotates', () => {
  const s = make();
  s.addTenant({ id: 1, kind: 'BE', rateTokensPerSec: 500_000 });
  s.addTenant({ id: 2, kind: 'BE', rateTokensPerSec: 500_000 });
  s.addTenant({ id: 3, kind: 'LC', rateTokensPerSec: 2_000_000 }); // idle: its rate is pooled
  for (let i = 0; i < 40_000; i++) {
    s.enqueue(1, 1, READ);
    s.enqueue(2, 2, READ);
  }
  const out = runRounds(s, 0, 1e9, 10 * US);
  const a = out.filter((x) => x === 1).length;
  const b = out.length - a;
  assert.ok(Math.abs(a - b) <= 0.02 * out.length, `shares ${a} vs ${b}`);
  assert.ok(out.length >= 29_500 && out.length <= 30_100, `total ${out.length}`);
});

test('BE: a request bigger than one round of tokens waits until saved tokens cover it', () => {
  const s = make({ bucket: null });
  s.addTenant({ id: 1, kind: 'BE', rateTokensPerSec: 1_000_000 });
  s.enqueue(1, 7, 256 * WRITE); // a 1 MiB write: 256 000 tokens = 0.256 s
  let issuedAt = -1;
  for (let t = US; t <= 400_000 * US; t += US) {
    s.round(t, () => (issuedAt = t));
    if (issuedAt >= 0) break;
    const st = s.tenant(1)!;
    assert.ok(st.credit <= st.queuedCost, 'saved tokens are capped at queued demand');
  }
  assert.ok(Math.abs(issuedAt - 256_000 * US) <= 2 * US, `issued at ${issuedAt} ns`);
});

test('BE: saved tokens are capped at queued demand, so an idle spell builds no burst', () => {
  const s = make({ bucket: null });
  s.addTenant({ id: 1, kind: 'BE', rateTokensPerSec: 1_000_000 });
  s.enqueue(1, 0, READ);
  s.round(1000 * US, () => {});
  assert.equal(s.tenant(1)!.credit, 0);
  assert.equal(s.activeCount(), 0);
  // Idle for a second, then a backlog: the first round accounts at most maxRoundNs (10 ms) of rate,
  // 100 reads, not the 10,000 a whole idle second would buy.
  for (let i = 0; i < 1000; i++) s.enqueue(1, i, READ);
  assert.equal(s.round(1000 * US + 1e9, () => {}), 100, 'no catch-up burst for the idle second');
  const n = s.round(1000 * US + 1e9 + 100 * US, () => {});
  assert.equal(n, 1);
});

test('global bucket carries one worker\'s leftover to another worker\'s BE tenant', () => {
  const bucket = GlobalBucket.create(2);
  const w0 = make({ bucket, worker: 0 });
  const w1 = make({ bucket, worker: 1 });
  w0.addTenant({ id: 1, kind: 'LC', rateTokensPerSec: 1_000_000 }); // idle
  w1.addTenant({ id: 2, kind: 'BE', rateTokensPerSec: 0 });
  for (let i = 0; i < 20_000; i++) w1.enqueue(2, i, READ);
  let issued = 0;
  for (let t = 10 * US; t <= 1e9; t += 10 * US) {
    w0.round(t, () => {});
    w1.round(t, () => issued++);
  }
  assert.ok(issued >= 9_800 && issued <= 10_001, `BE on worker 1 issued ${issued}`);
  assert.ok(w0.bucketPut > 0 && w1.bucketTaken > 0);
});

test('idle tenants cost nothing per round; reactivation accrues from the last round only', () => {
  const s = make();
  for (let i = 0; i < 1000; i++) s.addTenant({ id: i, kind: i % 2 ? 'LC' : 'BE', rateTokensPerSec: 10_000 });
  s.round(1e9, () => {});
  assert.equal(s.activeCount(), 0);
  // LC tenant 1 was idle a second: it has no hoard beyond the deficit allowance.
  for (let i = 0; i < 5000; i++) s.enqueue(1, i, READ);
  assert.equal(s.activeCount(), 1);
  assert.equal(s.round(1e9, () => {}), 1000);
});

test('removeTenant returns queued items oldest first; a removed handle is refused', () => {
  const s = make();
  const h = s.addTenant({ id: 1, kind: 'BE', rateTokensPerSec: 0 });
  s.addTenant({ id: 2, kind: 'BE', rateTokensPerSec: 0 });
  for (let i = 0; i < 5; i++) s.enqueue(1, i, READ);
  s.enqueue(2, 99, READ);
  assert.deepEqual(s.removeTenant(1), [0, 1, 2, 3, 4]);
  assert.equal(s.queued(), 1);
  assert.equal(s.activeCount(), 1);
  assert.throws(() => s.enqueueTenant(h, 5, READ), /removed/);
  assert.throws(() => s.enqueue(1, 5, READ), RangeError);
  assert.throws(() => s.addTenant({ id: 2, kind: 'BE', rateTokensPerSec: 0 }), /already/);
});

test('setRate applies to idle and active tenants', () => {
  const s = make({ bucket: null });
  s.addTenant({ id: 1, kind: 'BE', rateTokensPerSec: 0 });
  s.setRate(1, 1_000_000);
  for (let i = 0; i < 100_000; i++) s.enqueue(1, i, READ);
  assert.equal(runRounds(s, 0, 100e6, 10 * US).length, 1000);
  s.setRate(1, 2_000_000);
  assert.equal(runRounds(s, 100e6, 200e6, 10 * US).length, 2000);
});

test('pass-through mode issues everything at once, whatever the rates', () => {
  const s = make({ qos: false });
  s.addTenant({ id: 1, kind: 'LC', rateTokensPerSec: 0 });
  s.addTenant({ id: 2, kind: 'BE', rateTokensPerSec: 0 });
  for (let i = 0; i < 3000; i++) s.enqueue(i % 2 ? 1 : 2, i, WRITE);
  const out: number[] = [];
  assert.equal(s.round(0, (x) => out.push(x)), 3000);
  assert.equal(s.queued(), 0);
  assert.equal(s.activeCount(), 0);
  assert.equal(new Set(out).size, 3000);
});

test('time must not go backwards', () => {
  const s = make();
  s.round(1000, () => {});
  assert.throws(() => s.round(999, () => {}), /backwards/);
});
