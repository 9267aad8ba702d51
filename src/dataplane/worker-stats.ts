/**
 * Per-worker counters, for what belongs to a worker thread rather than to a
 * tenant: receive coalescing so far. One row per worker in a
 * SharedArrayBuffer that the main thread reads at scrape time; each worker
 * writes only its own row (plain aligned stores, as in tenant-counters.ts).
 */
export const WorkerField = {
  /** Event-loop turns that sent replies, each checked for a coalescing sleep. */
  COALESCE_CHECKS: 0,
  /** Of those, turns followed by a sleep. */
  COALESCE_SLEEPS: 1,
  /** µs asked of those sleeps. */
  COALESCE_SLEPT_US: 2,
} as const;
export const WORKER_FIELD_COUNT = 3;

export class WorkerStats {
  readonly workers: number;
  private readonly values: Float64Array;

  static allocate(workers: number): SharedArrayBuffer {
    return new SharedArrayBuffer(workers * WORKER_FIELD_COUNT * Float64Array.BYTES_PER_ELEMENT);
  }

  constructor(sab: SharedArrayBuffer, workers: number) {
    if (sab.byteLength !== workers * WORKER_FIELD_COUNT * Float64Array.BYTES_PER_ELEMENT) {
      throw new RangeError(`worker stats: ${sab.byteLength} bytes for ${workers} workers`);
    }
    this.workers = workers;
    this.values = new Float64Array(sab);
  }

  /** The row a worker writes (a view: stores land in the shared memory). */
  row(worker: number): Float64Array {
    const at = this.index(worker, 0);
    return this.values.subarray(at, at + WORKER_FIELD_COUNT);
  }

  get(worker: number, field: number): number {
    return this.values[this.index(worker, field)];
  }

  private index(worker: number, field: number): number {
    if (!Number.isInteger(worker) || worker < 0 || worker >= this.workers) throw new RangeError(`worker ${worker} of ${this.workers}`);
    if (!Number.isInteger(field) || field < 0 || field >= WORKER_FIELD_COUNT) throw new RangeError(`field ${field}`);
    return worker * WORKER_FIELD_COUNT + field;
  }
}
