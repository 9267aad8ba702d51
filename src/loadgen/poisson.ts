/**
 * Open-loop arrivals: a Poisson process, i.e. exponentially distributed gaps
 * with mean 1/rate. The random source is injectable so tests can seed it.
 */
import { assert } from '../util/assert.ts';
import { seededRandom, type Random } from '../util/random.ts';

export { seededRandom, type Random };

export class PoissonArrivals {
  private readonly meanGapMs: number;
  private readonly random: Random;
  /** Intended time of the next arrival, ms on the performance.now() clock. */
  next: number;

  constructor(ratePerSec: number, startMs: number, random: Random = Math.random) {
    assert(ratePerSec > 0 && Number.isFinite(ratePerSec), 'arrival rate must be positive');
    this.meanGapMs = 1000 / ratePerSec;
    this.random = random;
    this.next = startMs + this.gap();
  }

  /** One exponential gap, ms. 1 - u is in (0, 1], so the log is finite. */
  gap(): number {
    return -Math.log(1 - this.random()) * this.meanGapMs;
  }

  /** Returns the current arrival time and moves to the next. */
  advance(): number {
    const t = this.next;
    this.next = t + this.gap();
    return t;
  }
}
