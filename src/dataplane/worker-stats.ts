/**
 * Per-worker counters, for what belongs to a worker thread rather than to a
 * tenant: receive coalescing, data connections opened and closed (by why
 * they closed), and how many requests it has at its devices (sampled every
 * DEVICE_SAMPLE_MS; gauges, not counters). One row per worker in a
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
  /** Data connections accepted (native and NBD). */
  CONNECTIONS_OPENED: 3,
  /** Gauge: requests at this worker's devices (in their rings, summed over devices). */
  DEVICE_IN_FLIGHT: 4,
  /** Gauge: requests waiting in order for a free ring slot (the device queue is full). */
  DEVICE_AWAITING_SLOT: 5,
  /** First of CLOSE_REASONS.length counters: connections closed, by reason. */
  CONNECTIONS_CLOSED: 6,
} as const;

/** How often a worker writes its device gauges. */
export const DEVICE_SAMPLE_MS = 100;

/**
 * Why a data connection ended, in counter order:
 *   peer      the client closed it
 *   error     the socket failed: reset by the peer, or keepalive gave up
 *   protocol  the server closed it for bad input, a failed negotiation or refused credentials
 *   revoked   its tenant or volume was taken away by the control plane
 *   timeout   NBD negotiation did not finish in time
 *   shutdown  the server was draining
 */
export const CLOSE_REASONS = ['peer', 'error', 'protocol', 'revoked', 'timeout', 'shutdown'] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];
export const WORKER_FIELD_COUNT = WorkerField.CONNECTIONS_CLOSED + CLOSE_REASONS.length;

/** Counts a closed connection in a worker's row. */
export function countClose(row: Float64Array, reason: CloseReason): void {
  row[WorkerField.CONNECTIONS_CLOSED + CLOSE_REASONS.indexOf(reason)]++;
}

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
