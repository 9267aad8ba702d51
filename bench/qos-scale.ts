/**
 * Scheduler cost per request: 1 tenant vs 1,000 registered tenants (LC and BE
 * mixed, most idle). The QoS design requires per-round work that does not
 * grow with idle tenants; the target is a ratio ≤ 2×.
 *
 * Both cases push the same load: REQS_PER_ROUND requests per round of 10 µs
 * virtual time. With 1,000 tenants the requests come from a few tenants drawn
 * at random each round, so tenants keep going active and idle (the costly
 * path) while 990+ sit idle. Rates are high enough that nothing is throttled:
 * this measures scheduling overhead, not rate limiting.
 *
 * Run: node bench/qos-scale.ts   (writes results/qos-scale.json)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { GlobalBucket } from '../src/qos/global-bucket.ts';
import { Scheduler, type SchedTenant } from '../src/qos/scheduler.ts';

const ROUNDS = 200_000;
const REQS_PER_ROUND = 16;
const ACTIVE_PER_ROUND = 4;
const ROUND_NS = 10_000;

interface Case {
  tenants: number;
  nsPerRequest: number;
  nsPerRound: number;
  requests: number;
}

/** xorshift32: deterministic tenant choice without Math.random. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function runCase(nTenants: number): Case {
  const s = new Scheduler<number>({
    readCost4k: 100,
    writeCost4k: 1000,
    bucket: GlobalBucket.create(1),
    workerIndex: 0,
    nowNs: 0,
  });
  const handles: SchedTenant[] = [];
  for (let i = 0; i < nTenants; i++) {
    // Every third tenant LC, the rest BE; rates far above the offered load.
    handles.push(s.addTenant({ id: i, kind: i % 3 === 0 ? 'LC' : 'BE', rateTokensPerSec: 1e10 }));
  }
  const next = rng(12345);
  let sink = 0;
  const issue = (x: number): void => {
    sink += x;
  };
  const pick = nTenants === 1 ? 1 : ACTIVE_PER_ROUND;
  const chosen: SchedTenant[] = new Array<SchedTenant>(pick).fill(handles[0]);
  const step = (t: number): void => {
    for (let k = 0; k < pick; k++) chosen[k] = handles[nTenants === 1 ? 0 : next() % nTenants];
    for (let r = 0; r < REQS_PER_ROUND; r++) s.enqueueTenant(chosen[r % pick], r, r % 4 === 0 ? 1000 : 100);
    s.round(t, issue);
  };
  // Warm up the JIT, then measure.
  let t = 0;
  for (let i = 0; i < 20_000; i++) step((t += ROUND_NS));
  const start = process.hrtime.bigint();
  for (let i = 0; i < ROUNDS; i++) step((t += ROUND_NS));
  const elapsed = Number(process.hrtime.bigint() - start);
  if (s.queued() !== 0) throw new Error(`bench: ${s.queued()} requests left queued; rates too low`);
  if (sink < 0) throw new Error('unreachable');
  const requests = ROUNDS * REQS_PER_ROUND;
  return { tenants: nTenants, nsPerRequest: elapsed / requests, nsPerRound: elapsed / ROUNDS, requests };
}

// Alternate the cases and keep each one's best run: the machine is shared.
const best = new Map<number, Case>();
for (let rep = 0; rep < 3; rep++) {
  for (const n of [1, 1000]) {
    const c = runCase(n);
    const b = best.get(n);
    if (b === undefined || c.nsPerRequest < b.nsPerRequest) best.set(n, c);
  }
}
const one = best.get(1)!;
const many = best.get(1000)!;
const ratio = many.nsPerRequest / one.nsPerRequest;
console.log(`1 tenant:      ${one.nsPerRequest.toFixed(1)} ns/request (${one.nsPerRound.toFixed(0)} ns/round)`);
console.log(`1000 tenants:  ${many.nsPerRequest.toFixed(1)} ns/request (${many.nsPerRound.toFixed(0)} ns/round)`);
console.log(`ratio:         ${ratio.toFixed(2)}x (target <= 2x) ${ratio <= 2 ? 'OK' : 'MISSED'}`);
mkdirSync(new URL('../results/', import.meta.url), { recursive: true });
writeFileSync(
  new URL('../results/qos-scale.json', import.meta.url),
  JSON.stringify(
    {
      bench: 'qos-scale',
      node: process.version,
      roundsMeasured: ROUNDS,
      requestsPerRound: REQS_PER_ROUND,
      activeTenantsPerRound: ACTIVE_PER_ROUND,
      oneTenant: one,
      thousandTenants: many,
      ratio,
      target: 2,
      ok: ratio <= 2,
    },
    null,
    2,
  ) + '\n',
);
