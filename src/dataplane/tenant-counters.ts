/**
 * Per-tenant counters and latency histograms of every worker, in one
 * SharedArrayBuffer that the main thread reads for metrics and the status
 * page without messages. Each worker writes only its own rows, so plain
 * stores suffice: a reader may see a value one update old, never a torn one
 * (aligned stores).
 *
 * Latency histogram: log-linear buckets, 8 per power of two of microseconds
 * (≤ 12.5% relative error), from 1 µs to about 17 minutes.
 */
export const Field = {
  READ_OPS: 0,
  WRITE_OPS: 1,
  READ_BYTES: 2,
  WRITE_BYTES: 3,
  OTHER_OPS: 4,
  ERRORS: 5,
  LATENCY_SUM_US: 6,
  CONNECTIONS: 7,
  REFUSED: 8,
  /** Requests waiting in the scheduler (a gauge, set per worker). */
  QUEUED: 9,
} as const;
export const FIELD_COUNT = 10;

const SUB = 8;
const SUB_SHIFT = 3;
export const HIST_BUCKETS = 30 * SUB;

/** Bucket of a latency in µs. */
export function bucketOf(us: number): number {
  if (us < SUB) return us < 0 ? 0 : Math.floor(us);
  const v = Math.floor(us);
  const exp = 31 - Math.clz32(v); // floor(log2)
  const sub = (v >>> (exp - SUB_SHIFT)) & (SUB - 1);
  const b = (exp - SUB_SHIFT + 1) * SUB + sub;
  return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

/** Upper bound, µs, of a bucket's values. */
export function bucketUpperUs(b: number): number {
  if (b < SUB) return b + 1;
  const exp = Math.floor(b / SUB) + SUB_SHIFT - 1;
  const sub = b % SUB;
  return (SUB + sub + 1) * 2 ** (exp - SUB_SHIFT);
}

/** The p-quantile (0..1) of a histogram, µs (bucket upper bound); 0 when empty. */
export function quantileUs(hist: ArrayLike<number>, p: number): number {
  let total = 0;
  for (let i = 0; i < hist.length; i++) total += hist[i];
  if (total === 0) return 0;
  const want = Math.ceil(p * total);
  let seen = 0;
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i];
    if (seen >= want) return bucketUpperUs(i);
  }
  return bucketUpperUs(hist.length - 1);
}

export class TenantCounters {
  readonly sab: SharedArrayBuffer;
  readonly tenants: number;
  readonly workers: number;
  private readonly cells: Float64Array;
  private readonly hist: Float64Array;
  private readonly base: number;
  private readonly histBase: number;

  /** `worker` selects the rows this instance writes; -1 for a reader. */
  constructor(sab: SharedArrayBuffer, tenants: number, workers: number, worker: number) {
    this.sab = sab;
    this.tenants = tenants;
    this.workers = workers;
    const cellCount = tenants * workers * FIELD_COUNT;
    this.cells = new Float64Array(sab, 0, cellCount);
    this.hist = new Float64Array(sab, cellCount * 8, tenants * workers * HIST_BUCKETS);
    this.base = worker < 0 ? 0 : worker * tenants * FIELD_COUNT;
    this.histBase = worker < 0 ? 0 : worker * tenants * HIST_BUCKETS;
  }

  static allocate(tenants: number, workers: number): SharedArrayBuffer {
    return new SharedArrayBuffer(Math.max(1, tenants * workers * (FIELD_COUNT + HIST_BUCKETS)) * 8);
  }

  add(tenant: number, field: number, value: number): void {
    this.cells[this.base + tenant * FIELD_COUNT + field] += value;
  }

  set(tenant: number, field: number, value: number): void {
    this.cells[this.base + tenant * FIELD_COUNT + field] = value;
  }

  /** Records one completed request's latency. */
  latency(tenant: number, us: number): void {
    this.cells[this.base + tenant * FIELD_COUNT + Field.LATENCY_SUM_US] += us;
    this.hist[this.histBase + tenant * HIST_BUCKETS + bucketOf(us)]++;
  }

  /** This worker's own value. */
  local(tenant: number, field: number): number {
    return this.cells[this.base + tenant * FIELD_COUNT + field];
  }

  /** Sum over all workers. */
  total(tenant: number, field: number): number {
    let sum = 0;
    const stride = this.tenants * FIELD_COUNT;
    for (let w = 0; w < this.workers; w++) sum += this.cells[w * stride + tenant * FIELD_COUNT + field];
    return sum;
  }

  /** The tenant's latency histogram summed over workers (a copy). */
  histogram(tenant: number, into: Float64Array = new Float64Array(HIST_BUCKETS)): Float64Array {
    into.fill(0);
    const stride = this.tenants * HIST_BUCKETS;
    for (let w = 0; w < this.workers; w++) {
      const at = w * stride + tenant * HIST_BUCKETS;
      for (let b = 0; b < HIST_BUCKETS; b++) into[b] += this.hist[at + b];
    }
    return into;
  }

  /** Zeroes a tenant's rows in every worker (its id is being reused). */
  reset(tenant: number): void {
    for (let w = 0; w < this.workers; w++) {
      this.cells.fill(0, (w * this.tenants + tenant) * FIELD_COUNT, (w * this.tenants + tenant + 1) * FIELD_COUNT);
      this.hist.fill(0, (w * this.tenants + tenant) * HIST_BUCKETS, (w * this.tenants + tenant + 1) * HIST_BUCKETS);
    }
  }
}
