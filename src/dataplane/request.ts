import { newRequest, type IoRequest } from '../storage/engine.ts';

/**
 * The one request type of the data plane: what the engine needs (IoRequest)
 * plus who asked and how to answer. Codecs fill it, the scheduler queues it,
 * engines execute it, the owning connection answers it. Objects are pooled.
 */
export interface DpRequest extends IoRequest {
  /** The plane (device) whose pools this request and its buffer came from. */
  plane: { release(req: DpRequest): void } | null;
  /** The connection that answers this request (null once it has gone). */
  owner: RequestOwner | null;
  /** Wire opcode as received (front-end specific). */
  wireOp: number;
  /** Opaque client handle, as two 32-bit halves (ReFlex) or the NBD cookie halves. */
  handleLo: number;
  handleHi: number;
  /** Echo fields for the reply (ReFlex echoes lba; NBD ignores). */
  lbaLo: number;
  lbaHi: number;
  count: number;
  /** Index of the tenant in this worker's table. */
  tenant: number;
  /** performance.now() when the request was parsed. */
  startMs: number;
  /** Cost in scheduler tokens. */
  cost: number;
  /** While a follow-up FLUSH runs for a FUA TRIM/WRITE_ZEROES: the op to answer for (else 0). */
  flushFor: number;
}

export interface RequestOwner {
  complete(req: DpRequest): void;
  /** False once the owner (a connection) is gone: work on its behalf may stop. */
  readonly live?: boolean;
}

export class RequestPool {
  private free: DpRequest[] = [];

  get(): DpRequest {
    const r = this.free.pop();
    if (r !== undefined) return r;
    const fresh = newRequest() as DpRequest;
    fresh.owner = null;
    fresh.plane = null;
    fresh.wireOp = 0;
    fresh.handleLo = 0;
    fresh.handleHi = 0;
    fresh.lbaLo = 0;
    fresh.lbaHi = 0;
    fresh.count = 0;
    fresh.tenant = 0;
    fresh.startMs = 0;
    fresh.cost = 0;
    fresh.flushFor = 0;
    fresh.ctx = fresh;
    return fresh;
  }

  put(r: DpRequest): void {
    r.owner = null;
    r.buf = null;
    this.free.push(r);
  }
}
