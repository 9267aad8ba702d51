/**
 * Receive coalescing: the policy sleeps only after a turn that carried two
 * or more requests; the shell checks once per event-loop turn.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Coalescer, CoalescingPolicy, strictestObjective } from '../../src/dataplane/coalescing.ts';
import { resolveConfig, DEFAULT_COALESCE_US } from '../../src/control/config.ts';
import { sleepUs } from '../../src/util/precise-sleep.ts';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('policy: a lone request (depth 1) never waits; two or more in a turn do', () => {
  const p = new CoalescingPolicy(40);
  assert.equal(p.endTurn(), 0, 'an empty turn');
  p.noteRequest();
  assert.equal(p.endTurn(), 0, 'one request: the client waits for this reply before sending more');
  p.noteRequest();
  p.noteRequest();
  assert.equal(p.endTurn(), 40, 'two requests: more are coming, let them land together');
  p.noteRequest();
  assert.equal(p.endTurn(), 0, 'the count starts over every turn: a sleep that gathered one stops the sleeping');
  const off = new CoalescingPolicy(0);
  for (let i = 0; i < 10; i++) off.noteRequest();
  assert.equal(off.endTurn(), 0, '0 is off');
});

test('policy: the sleep is capped at a share of the strictest LC objective, and restored without one', () => {
  const p = new CoalescingPolicy(40);
  const busy = (): number => {
    p.noteRequest();
    p.noteRequest();
    return p.endTurn();
  };
  p.setStrictestObjective(1500);
  assert.equal(busy(), 40, '5% of 1.5 ms is 75 µs: the configured 40 stands');
  p.setStrictestObjective(200);
  assert.equal(busy(), 10, '5% of 200 µs');
  p.setStrictestObjective(10);
  assert.equal(busy(), 0, 'an objective of a few tens of µs leaves no room: no sleep');
  p.setStrictestObjective(null);
  assert.equal(busy(), 40, 'no LC tenant: the configured sleep again');
  assert.equal(strictestObjective([]), null);
  assert.equal(strictestObjective([{ p95Us: null }, { p95Us: 900 }, { p95Us: 300 }, { p95Us: null }]), 300);
});

test('shell: one check per event-loop turn, however many flushes', async () => {
  const naps: number[] = [];
  const c = new Coalescer(25, (us) => naps.push(us));
  for (let i = 0; i < 5; i++) c.noteRequest();
  c.noteFlush();
  c.noteFlush();
  c.noteFlush();
  await turn();
  assert.deepEqual(naps, [25]);
  c.noteRequest();
  c.noteFlush();
  await turn();
  assert.deepEqual(naps, [25], 'a turn with one request does not sleep');
  assert.equal(c.sleeps, 1);
  assert.equal(c.sleptUs, 25);
});

test('config: on by default, 0 turns it off', () => {
  assert.equal(resolveConfig({ memory: '1G' }, 1).coalesceUs, DEFAULT_COALESCE_US);
  assert.equal(resolveConfig({ memory: '1G', coalesceUs: 0 }, 1).coalesceUs, 0);
});

test('the native sleep naps for µs, not ms', (t) => {
  if (sleepUs === null) {
    if (process.env.REFLEX_ALLOW_SKIP === '1') return t.skip('native addon not built');
    assert.fail('native addon not built; set REFLEX_ALLOW_SKIP=1 to skip');
  }
  const n = 200;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sleepUs(20);
  const avgUs = Number(process.hrtime.bigint() - t0) / 1000 / n;
  // The lower bound is exact. Above it come the wake-up from idle (15-25 µs
  // on a VM) and scheduling noise: the upper bound only says "not ms".
  assert.ok(avgUs >= 20, `slept ${avgUs.toFixed(1)} µs on average`);
  assert.ok(avgUs < 500, `slept ${avgUs.toFixed(1)} µs on average`);
});
