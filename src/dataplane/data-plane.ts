import { Errno, Op, type Engine, type IoRequest, type OpCode } from '../storage/engine.ts';
import { BufferPool } from './buffer-pool.ts';
import { RequestPool, type DpRequest } from './request.ts';
import type { TenantCounters } from './tenant-counters.ts';
import type { Coalescer } from './coalescing.ts';

/**
 * Decides when queued requests reach the engine. The pass-through gate
 * (no QoS) issues at once; the QoS gate runs scheduler rounds.
 */
export interface Gate {
  /** Accept a request for the tenant at `req.tenant`. */
  enqueue(req: DpRequest): void;
  /** Run a scheduling round: call `issue` for each request allowed now. Returns the number issued. */
  round(nowMs: number, issue: (req: DpRequest) => void): number;
  /** Requests held back. */
  readonly queued: number;
}

class PassThroughGate implements Gate {
  private held: DpRequest[] = [];
  enqueue(req: DpRequest): void {
    this.held.push(req);
  }
  round(_now: number, issue: (req: DpRequest) => void): number {
    const held = this.held;
    if (held.length === 0) return 0;
    this.held = [];
    for (let i = 0; i < held.length; i++) issue(held[i]);
    return held.length;
  }
  get queued(): number {
    return this.held.length;
  }
}

const SCRATCH_BYTES = 1 << 20;
/** Largest WRITE_ZEROES one scrub step asks of the engine. */
const SCRUB_CHUNK = 1 << 30;
/** Size of the zero buffer written where the device cannot zero a range itself. */
const ZERO_WRITE_CHUNK = 1 << 20;

/** Something with responses waiting to be written. */
export interface Flushable {
  flush(): void;
}

/**
 * The per-worker core: one engine, one gate, pools, and the batching of
 * engine submissions and socket writes. Work that arrives during one event
 * loop callback is issued with one `kick` and answered with one write per
 * connection, from microtasks queued once per batch.
 */
export class DataPlane {
  readonly engine: Engine;
  readonly requests = new RequestPool();
  readonly buffers: BufferPool;
  readonly counters: TenantCounters;
  gate: Gate = new PassThroughGate();
  /** The worker's receive coalescing (shared by its planes); null: off. */
  coalescer: Coalescer | null = null;
  /**
   * Serialization space for replies, shared by the worker's connections.
   * A socket write that completes synchronously leaves the kernel with a copy,
   * so the same memory serves the next flush; one that does not keeps a
   * reference, and the plane takes fresh memory (`scratchTaken`).
   */
  scratch: Buffer = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
  private roundQueued = false;
  private flushQueued = false;
  private dirty: Flushable[] = [];
  private retryTimer: NodeJS.Immediate | null = null;
  private readonly issueBound = (req: DpRequest): void => this.engine.submit(req);
  private readonly roundBound = (): void => this.runRound();
  private readonly flushBound = (): void => this.flushAll();

  constructor(engine: Engine, counters: TenantCounters) {
    this.engine = engine;
    this.counters = counters;
    this.buffers = new BufferPool(engine);
    engine.onComplete = (r: IoRequest) => this.completed(r as DpRequest);
  }

  private completed(req: DpRequest): void {
    if (req.op === Op.WRITE_ZEROES && req.result === Errno.EOPNOTSUPP) {
      // No zeroing in the filesystem or device (tmpfs, some block devices):
      // write zeros instead, as the command promises zeros, not a method.
      void this.zeroByWriting(req);
      return;
    }
    if (req.fua && req.result === 0 && (req.op === Op.TRIM || req.op === Op.WRITE_ZEROES)) {
      // Engines make a FUA write durable themselves, not these: a flush does.
      // A closing engine takes no more: then durability cannot be promised.
      if (this.closing) {
        req.result = Errno.ECANCELED;
        this.completed(req);
        return;
      }
      req.flushFor = req.op;
      req.op = Op.FLUSH;
      req.fua = false;
      this.engine.submit(req);
      this.engine.kick();
      return;
    }
    if (req.flushFor !== 0) {
      req.op = req.flushFor as OpCode;
      req.flushFor = 0;
      req.fua = true;
    }
    const owner = req.owner;
    if (owner !== null) owner.complete(req);
    else this.release(req);
    // Completions free device capacity: the gate may now issue more.
    if (this.gate.queued > 0) this.scheduleRound();
  }

  private zeroBuffer: Buffer | null = null;
  /** Set while the worker closes the engine: follow-up requests are not submitted. */
  closing = false;

  /** Finishes a WRITE_ZEROES by writing a shared buffer of zeros over its range. */
  private async zeroByWriting(req: DpRequest): Promise<void> {
    if (this.zeroBuffer === null) this.zeroBuffer = this.engine.allocBuffer(ZERO_WRITE_CHUNK).fill(0);
    const end = req.offset + req.length;
    let err = 0;
    for (let at = req.offset; at < end && err === 0; at += ZERO_WRITE_CHUNK) {
      // Stop for a connection that is gone: its volume may already belong to
      // someone else (a shrink cuts connections, then frees the tail).
      if (this.closing || req.owner?.live === false) {
        err = Errno.ECANCELED;
        break;
      }
      err = await this.oneOp(Op.WRITE, at, Math.min(ZERO_WRITE_CHUNK, end - at), this.zeroBuffer);
    }
    req.result = err;
    this.completed(req);
  }

  /** A request object from this plane's pool, tied to this plane for its release. */
  newRequest(): DpRequest {
    const r = this.requests.get();
    r.plane = this;
    return r;
  }

  submit(req: DpRequest): void {
    if (this.coalescer !== null) this.coalescer.noteRequest();
    this.gate.enqueue(req);
    this.scheduleRound();
  }

  scheduleRound(): void {
    if (this.roundQueued) return;
    this.roundQueued = true;
    queueMicrotask(this.roundBound);
  }

  private runRound(): void {
    this.roundQueued = false;
    const issued = this.gate.round(performance.now(), this.issueBound);
    if (issued > 0) this.engine.kick();
    if (this.gate.queued > 0 && this.retryTimer === null) {
      // Held back for tokens: try again on the next loop turn without blocking I/O.
      this.retryTimer = setImmediate(() => {
        this.retryTimer = null;
        this.runRound();
      });
    }
  }

  markDirty(c: Flushable): void {
    this.dirty.push(c);
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushBound);
    }
  }

  private flushAll(): void {
    this.flushQueued = false;
    const list = this.dirty;
    this.dirty = [];
    for (let i = 0; i < list.length; i++) list[i].flush();
    if (this.coalescer !== null) this.coalescer.noteFlush();
  }

  /** The socket kept the scratch buffer: use new memory for the next flush. */
  scratchTaken(): void {
    this.scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
  }

  /**
   * Zeroes [offset, offset + length) of the device and makes it durable
   * (in chunks, then FLUSH): how a volume's old bytes are scrubbed before
   * its range serves another tenant. A file gets holes punched (zeros that
   * take no space); a block device gets WRITE_ZEROES, since a discard need
   * not read back as zeros. Control-plane work, so it goes straight to the
   * engine, not through the tenants' gate. Resolves to 0 or a negative errno.
   */
  async zeroRange(offset: number, length: number): Promise<number> {
    const op = this.engine.trimReadsZeroes === true ? Op.TRIM : Op.WRITE_ZEROES;
    for (let at = offset; at < offset + length; at += SCRUB_CHUNK) {
      const err = await this.oneOp(op, at, Math.min(SCRUB_CHUNK, offset + length - at));
      if (err < 0) return err;
    }
    return this.oneOp(Op.FLUSH, 0, 0);
  }

  /** One request straight to the engine (no scheduler); `shared` is a buffer the pools must not take. */
  private oneOp(op: OpCode, offset: number, length: number, shared: Buffer | null = null): Promise<number> {
    return new Promise((resolve) => {
      const req = this.newRequest();
      req.op = op;
      req.offset = offset;
      req.length = length;
      req.fua = false;
      req.result = 0;
      req.buf = shared;
      req.owner = {
        complete: (r: DpRequest) => {
          const result = r.result;
          r.buf = null;
          this.release(r);
          resolve(result < 0 ? result : 0);
        },
      };
      this.engine.submit(req);
      this.engine.kick();
    });
  }

  /** Returns a finished request and its buffer to the pools. */
  release(req: DpRequest): void {
    if (req.buf !== null) this.buffers.put(req.buf);
    this.requests.put(req);
  }
}
