/**
 * The load generator's measuring loop, over any IoTarget.
 *
 * Closed loop: every lane keeps `qd` requests outstanding; each completion
 * issues the next request on the same tag. Latency is completion minus send.
 *
 * Open loop: arrivals follow a Poisson process at the target rate. Latency
 * is measured from each arrival's *intended* time, not from when it was
 * actually sent, so a stalled server (or generator) cannot hide queueing
 * delay (coordinated omission). Arrivals that find every slot busy wait in
 * a backlog and keep their intended time. A send later than `lateUs` past
 * its intended time counts as late; an arrival the backlog cannot hold is
 * dropped. Both are reported as missed deadlines.
 *
 * Timing: a warm-up, then the measured window. Requests are tagged with
 * small integers that index preallocated arrays, so the loop allocates
 * nothing per request.
 */
import { assert } from '../util/assert.ts';
import { newHistogram, recordMs, type Histogram } from './histogram.ts';
import { PoissonArrivals, type Random } from './poisson.ts';
import { IoKind, type CompletionListener, type IoTarget } from './target.ts';

export interface LoadSpec {
  mode: 'closed' | 'open';
  /** Closed: requests outstanding per lane. Open: the most outstanding per lane. */
  qd: number;
  /** Open loop: arrivals per second (this process's share). */
  iops: number;
  /** Percentage of reads, 0..100; the rest are writes. */
  readPct: number;
  /** Bytes per request. */
  size: number;
  random: boolean;
  /** Bytes of the target touched, from offset 0. */
  span: number;
  warmupSec: number;
  durationSec: number;
  /** Open loop: a send this much later than intended counts as a missed deadline. */
  lateUs: number;
  /** After the window, how long to wait for requests that arrived in it. */
  drainSec: number;
}

export interface Progress {
  elapsedSec: number;
  warmingUp: boolean;
  completed: number;
  iops: number;
  p99Us: number;
}

export interface PhaseHooks {
  onWindowStart?(): void;
  onWindowEnd?(): void;
  /** About once a second. */
  onProgress?(p: Progress): void;
}

export interface PhaseResult {
  mode: 'closed' | 'open';
  requestedIops: number;
  /** Successful completions inside the measured window. */
  completed: number;
  errors: number;
  /** First error status seen (0: none). */
  firstError: number;
  late: number;
  dropped: number;
  windowSec: number;
  histogram: Histogram;
}

const BACKLOG_CAPACITY = 1 << 17;

class Run implements CompletionListener {
  private readonly target: IoTarget;
  private readonly spec: LoadSpec;
  private readonly hooks: PhaseHooks;
  private readonly random: Random;
  private readonly slots: number;
  private readonly lanes: number;
  private readonly start: Float64Array;
  private readonly laneOf: Int32Array;
  private readonly laneOut: Int32Array;
  private readonly seqCursor: Float64Array;
  private readonly freeTags: Int32Array;
  private freeCount = 0;
  private readonly backlog = new Float64Array(BACKLOG_CAPACITY);
  private backlogHead = 0;
  private backlogLen = 0;
  private nextLane = 0;

  private histogram: Histogram = newHistogram();
  private outstanding = 0;
  private completed = 0;
  private errors = 0;
  private firstError = 0;
  private late = 0;
  private dropped = 0;
  private readonly lateMs: number;
  private readonly blocks: number;

  private t0 = 0;
  private windowStart = Infinity;
  private windowEnd = Infinity;
  private windowEndedAt = 0;
  private stopping = false;
  private arrivals: PoissonArrivals | null = null;
  private generating = false;
  private finish: (() => void) | null = null;
  private readonly tickBound = (): void => this.tick();

  constructor(target: IoTarget, spec: LoadSpec, hooks: PhaseHooks, random: Random) {
    this.target = target;
    this.spec = spec;
    this.hooks = hooks;
    this.random = random;
    this.lanes = target.lanes;
    this.slots = target.lanes * spec.qd;
    this.start = new Float64Array(this.slots);
    this.laneOf = new Int32Array(this.slots);
    this.laneOut = new Int32Array(this.lanes);
    this.seqCursor = new Float64Array(this.lanes);
    this.freeTags = new Int32Array(this.slots);
    this.lateMs = spec.lateUs / 1000;
    this.blocks = Math.floor(spec.span / spec.size);
    assert(this.blocks >= 1, 'span smaller than one request');
    for (let l = 0; l < this.lanes; l++) this.seqCursor[l] = Math.floor((this.blocks * l) / this.lanes);
  }

  run(): Promise<PhaseResult> {
    const s = this.spec;
    return new Promise((resolve) => {
      this.finish = () => resolve(this.result());
      this.target.setListener(this);
      this.t0 = performance.now();
      const progress = setInterval(() => this.progress(), 1000);
      const warm = setTimeout(() => this.openWindow(), s.warmupSec * 1000);
      const end = setTimeout(() => this.closeWindow(), (s.warmupSec + s.durationSec) * 1000);
      const prevFinish = this.finish;
      this.finish = () => {
        clearInterval(progress);
        clearTimeout(warm);
        clearTimeout(end);
        prevFinish();
      };
      if (s.mode === 'closed') {
        for (let tag = 0; tag < this.slots; tag++) {
          this.laneOf[tag] = Math.floor(tag / s.qd);
          this.issue(tag, performance.now());
        }
      } else {
        for (let tag = this.slots - 1; tag >= 0; tag--) this.freeTags[this.freeCount++] = tag;
        // Open loop: intended times are fixed in advance, so the window is too.
        this.windowStart = this.t0 + s.warmupSec * 1000;
        this.windowEnd = this.windowStart + s.durationSec * 1000;
        this.arrivals = new PoissonArrivals(s.iops, this.t0, this.random);
        this.generating = true;
        this.tick();
      }
    });
  }

  private openWindow(): void {
    if (this.spec.mode === 'closed') {
      this.windowStart = performance.now();
      this.histogram = newHistogram();
      this.completed = 0;
      this.errors = 0;
    }
    this.hooks.onWindowStart?.();
  }

  private closeWindow(): void {
    if (this.spec.mode === 'closed') {
      this.windowEnd = performance.now();
      this.stopping = true;
    }
    this.windowEndedAt = performance.now();
    this.hooks.onWindowEnd?.();
    const drain = setTimeout(() => this.done(), this.spec.drainSec * 1000);
    drain.unref();
    this.maybeDone();
  }

  private result(): PhaseResult {
    const s = this.spec;
    return {
      mode: s.mode,
      requestedIops: s.mode === 'open' ? s.iops : 0,
      completed: this.completed,
      errors: this.errors,
      firstError: this.firstError,
      late: this.late,
      dropped: this.dropped + (s.mode === 'open' ? this.backlogLen : 0),
      windowSec: (this.windowEnd - this.windowStart) / 1000,
      histogram: this.histogram,
    };
  }

  private progress(): void {
    const now = performance.now();
    const warmingUp = now < this.windowStart;
    const measured = (now - this.windowStart) / 1000;
    this.hooks.onProgress?.({
      elapsedSec: (now - this.t0) / 1000,
      warmingUp,
      completed: this.completed,
      iops: warmingUp || measured <= 0 ? 0 : this.completed / measured,
      p99Us: this.histogram.totalCount > 0 ? this.histogram.getValueAtPercentile(99) / 1000 : 0,
    });
  }

  /** Sends one request on `tag`; `intended` is its latency origin. */
  private issue(tag: number, intended: number): void {
    const s = this.spec;
    const lane = this.laneOf[tag];
    let block: number;
    if (s.random) {
      block = Math.floor(this.random() * this.blocks);
    } else {
      block = this.seqCursor[lane];
      this.seqCursor[lane] = block + 1 === this.blocks ? 0 : block + 1;
    }
    const kind = s.readPct >= 100 ? IoKind.READ : s.readPct <= 0 ? IoKind.WRITE : this.random() * 100 < s.readPct ? IoKind.READ : IoKind.WRITE;
    this.start[tag] = intended;
    this.outstanding++;
    this.laneOut[lane]++;
    this.target.submit(lane, kind, block * s.size, s.size, tag);
  }

  onComplete(tag: number, status: number): void {
    const now = performance.now();
    const lane = this.laneOf[tag];
    this.outstanding--;
    this.laneOut[lane]--;
    const origin = this.start[tag];
    if (this.spec.mode === 'closed') {
      if (now >= this.windowStart && now < this.windowEnd) this.account(now, origin, status);
      if (!this.stopping) this.issue(tag, now);
      else this.maybeDone();
      return;
    }
    // Open loop: latency counts for arrivals intended inside the window.
    if (origin >= this.windowStart && origin < this.windowEnd) this.account(now, origin, status);
    this.freeTags[this.freeCount++] = tag;
    if (this.backlogLen > 0) this.sendBacklog(now);
    else this.maybeDone();
  }

  private account(now: number, origin: number, status: number): void {
    if (status === 0) {
      this.completed++;
      recordMs(this.histogram, now - origin);
    } else {
      this.errors++;
      if (this.firstError === 0) this.firstError = status;
    }
  }

  // ---- open loop -------------------------------------------------------------

  private tick(): void {
    if (!this.generating) return;
    const arrivals = this.arrivals!;
    const now = performance.now();
    while (arrivals.next <= now) {
      if (arrivals.next >= this.windowEnd) {
        this.generating = false;
        this.maybeDone();
        return;
      }
      const intended = arrivals.advance();
      if (this.backlogLen < BACKLOG_CAPACITY) {
        this.backlog[(this.backlogHead + this.backlogLen) % BACKLOG_CAPACITY] = intended;
        this.backlogLen++;
      } else if (intended >= this.windowStart) {
        this.dropped++;
      }
    }
    if (this.backlogLen > 0) this.sendBacklog(now);
    const wait = arrivals.next - performance.now();
    // Timers are coarse (about 1 ms): sleep only when the next arrival is
    // far off, and poll the event loop (which also runs completions) otherwise.
    if (wait > 2) setTimeout(this.tickBound, wait - 1);
    else setImmediate(this.tickBound);
  }

  private sendBacklog(now: number): void {
    while (this.backlogLen > 0 && this.freeCount > 0) {
      const intended = this.backlog[this.backlogHead];
      this.backlogHead = (this.backlogHead + 1) % BACKLOG_CAPACITY;
      this.backlogLen--;
      const tag = this.freeTags[--this.freeCount];
      this.laneOf[tag] = this.pickLane();
      if (now - intended > this.lateMs && intended >= this.windowStart && intended < this.windowEnd) this.late++;
      this.issue(tag, intended);
    }
  }

  /** The lane with the fewest outstanding requests (ties: round robin); one always has room here. */
  private pickLane(): number {
    const n = this.lanes;
    let best = this.nextLane;
    let l = best;
    for (let i = 1; i < n; i++) {
      l = l + 1 === n ? 0 : l + 1;
      if (this.laneOut[l] < this.laneOut[best]) best = l;
    }
    this.nextLane = best + 1 === n ? 0 : best + 1;
    return best;
  }

  // ---- end -----------------------------------------------------------------

  private maybeDone(): void {
    if (this.windowEndedAt === 0) return;
    if (this.spec.mode === 'open' && (this.generating || this.backlogLen > 0)) return;
    if (this.outstanding === 0) this.done();
  }

  private done(): void {
    const f = this.finish;
    if (f === null) return;
    this.finish = null;
    this.generating = false;
    this.stopping = true;
    f();
  }
}

/**
 * Runs one measured phase against `target` (which must be idle). Resolves
 * after the window and the drain; requests still outstanding then are left
 * to the caller (close the target).
 */
export function runPhase(target: IoTarget, spec: LoadSpec, hooks: PhaseHooks = {}, random: Random = Math.random): Promise<PhaseResult> {
  if (!(spec.qd >= 1 && Number.isInteger(spec.qd))) throw new RangeError(`qd ${spec.qd} must be an integer >= 1`);
  if (spec.size % target.sectorSize !== 0 || spec.size <= 0) throw new RangeError(`size ${spec.size} must be a positive multiple of the sector size ${target.sectorSize}`);
  if (spec.span > target.size) throw new RangeError(`span ${spec.span} exceeds the target's ${target.size} bytes`);
  if (spec.mode === 'open' && !(spec.iops > 0)) throw new RangeError('open loop needs a target rate');
  return new Run(target, spec, hooks, random).run();
}
