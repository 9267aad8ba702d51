import { assert } from '../util/assert.ts';

/**
 * The global best-effort token bucket shared by all data-plane workers
 * (QOS.md, BE sub-round and step 3).
 *
 * Lives in a SharedArrayBuffer so workers share it: create it once with
 * `GlobalBucket.create(nWorkers)`, pass `bucket.buffer` to each worker, and
 * wrap it there with `new GlobalBucket(sab)`. All access is through Atomics.
 *
 * Layout:
 *   BigInt64 [0] tokens         whole tokens in the bucket (never negative)
 *   BigInt64 [1] staleMark      tokens present at the last reset
 *   Int32    [4] nWorkers
 *   Int32    [5] epoch          bumped at each reset
 *   Int32    [6] seen           workers that ended a round in this epoch
 *   Int32    [8 + w]            epoch in which worker w last ended a round
 *
 * Reset rule. ReFlex empties the bucket once every worker has run a round
 * since the last reset, so BE tokens cannot pile up into a burst. Emptying
 * everything at that instant, though, throws away tokens that the worker
 * completing the cycle put in a moment ago, before any other worker could
 * take them (so one worker's surplus would never reach the others). Here a
 * reset drops the tokens that were already in the bucket at the previous
 * reset: every token is offered to every worker for at least one full cycle,
 * then expires; at most two cycles of surplus can accumulate.
 *
 * Tokens are integers: fractions stay in the worker's local accounting.
 */
const HEADER_BYTES = 32;

export class GlobalBucket {
  readonly buffer: SharedArrayBuffer;
  private readonly big: BigInt64Array;
  private readonly i32: Int32Array;
  readonly nWorkers: number;

  static create(nWorkers: number): GlobalBucket {
    assert(Number.isInteger(nWorkers) && nWorkers >= 1, 'GlobalBucket needs at least one worker');
    const sab = new SharedArrayBuffer(HEADER_BYTES + 4 * nWorkers);
    const i32 = new Int32Array(sab);
    i32[4] = nWorkers;
    for (let w = 0; w < nWorkers; w++) i32[8 + w] = -1;
    return new GlobalBucket(sab);
  }

  /** Wraps a buffer made by `create` (in this or another worker). */
  constructor(sab: SharedArrayBuffer) {
    this.buffer = sab;
    this.big = new BigInt64Array(sab, 0, 2);
    this.i32 = new Int32Array(sab);
    this.nWorkers = Atomics.load(this.i32, 4);
    assert(this.nWorkers >= 1 && sab.byteLength >= HEADER_BYTES + 4 * this.nWorkers, 'GlobalBucket: bad buffer');
  }

  get tokens(): number {
    return Number(Atomics.load(this.big, 0));
  }

  /** Adds whole tokens (fractions are dropped). */
  put(amount: number): void {
    const n = Math.floor(amount);
    if (n <= 0) return;
    Atomics.add(this.big, 0, BigInt(n));
  }

  /** Takes up to `amount` whole tokens; returns how many it got. */
  take(amount: number): number {
    const want = Math.floor(amount);
    if (want <= 0) return 0;
    for (;;) {
      const cur = Atomics.load(this.big, 0);
      if (cur <= 0n) return 0;
      const got = cur < BigInt(want) ? cur : BigInt(want);
      if (Atomics.compareExchange(this.big, 0, cur, cur - got) === cur) return Number(got);
    }
  }

  /**
   * Worker `w` finished a round. When this completes the set of workers
   * since the last reset, this call performs the reset (see the file comment).
   * Returns true when it reset.
   */
  endRound(w: number): boolean {
    if (!(w >= 0 && w < this.nWorkers)) assert(false, `GlobalBucket.endRound: worker ${w} out of range`);
    const epoch = Atomics.load(this.i32, 5);
    const mine = Atomics.load(this.i32, 8 + w);
    if (mine === epoch) return false;
    // Only the worker itself writes its slot, but a CAS keeps a stray double call harmless.
    if (Atomics.compareExchange(this.i32, 8 + w, mine, epoch) !== mine) return false;
    if (Atomics.add(this.i32, 6, 1) + 1 < this.nWorkers) return false;
    this.expireStale();
    Atomics.store(this.i32, 6, 0);
    Atomics.add(this.i32, 5, 1);
    return true;
  }

  private expireStale(): void {
    const stale = Atomics.load(this.big, 1);
    for (;;) {
      const cur = Atomics.load(this.big, 0);
      const drop = cur < stale ? cur : stale;
      const next = cur - (drop > 0n ? drop : 0n);
      if (Atomics.compareExchange(this.big, 0, cur, next) === cur) {
        Atomics.store(this.big, 1, next);
        return;
      }
    }
  }
}
