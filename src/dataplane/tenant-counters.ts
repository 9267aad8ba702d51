/**
 * Per-tenant counters of one worker, in a SharedArrayBuffer that the main
 * thread reads for metrics without messages. Each worker writes only its own
 * rows, so plain stores suffice: a reader may see a value one update old,
 * never a torn one (aligned 64-bit stores).
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
} as const;
export const FIELD_COUNT = 9;

export class TenantCounters {
  readonly sab: SharedArrayBuffer;
  readonly tenants: number;
  readonly workers: number;
  private readonly cells: Float64Array;
  private readonly base: number;

  /** `worker` selects the rows this instance writes; -1 for a reader. */
  constructor(sab: SharedArrayBuffer, tenants: number, workers: number, worker: number) {
    this.sab = sab;
    this.tenants = tenants;
    this.workers = workers;
    this.cells = new Float64Array(sab);
    this.base = worker < 0 ? 0 : worker * tenants * FIELD_COUNT;
  }

  static allocate(tenants: number, workers: number): SharedArrayBuffer {
    return new SharedArrayBuffer(Math.max(1, tenants * workers * FIELD_COUNT) * 8);
  }

  add(tenant: number, field: number, value: number): void {
    this.cells[this.base + tenant * FIELD_COUNT + field] += value;
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
}
