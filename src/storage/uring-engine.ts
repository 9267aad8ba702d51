/**
 * Engine over Linux io_uring (native/ addon): O_DIRECT file or block device,
 * one ring per engine (so one per worker thread that opens one).
 *
 * Per request, `submit` only writes eight numbers into a descriptor array
 * shared with C; `kick` hands the whole batch to the kernel with a single
 * N-API call and a single io_uring_enter. Completions arrive through an
 * eventfd watched by libuv and are handed to JS as one batch of (tag, result)
 * pairs, where tag is the request's slot in `slots`; a caller with nothing
 * else to do can instead `reap` them (submit and wait in one syscall). Requests beyond the ring
 * depth wait in a FIFO and enter as completions free slots. No scheduling
 * policy lives here: requests go to the kernel in submission order.
 */

import fs from 'node:fs';
import type { CompletionHandler, Engine, IoRequest } from './engine.ts';
import { Errno, Op } from './engine.ts';
import { assert } from '../util/assert.ts';
import type { NativeRing, UringNative } from './uring-native.ts';
import { DESC_STRIDE, DescFlag, NativeOp, loadUring } from './uring-native.ts';

export interface UringOpenOptions {
  /** Usable size. Regular files shorter than this are extended. Default: current size. */
  size?: number;
  /** Create the file if missing (regular files only). */
  create?: boolean;
  /** O_DIRECT (default true). Falls back to buffered I/O when the filesystem refuses it. */
  direct?: boolean;
  /** Requests in the kernel at once (ring depth). Default 128. */
  queueDepth?: number;
  /**
   * Evict each READ buffer from the CPU caches before it goes to the kernel
   * (default false): for a caller that reads its buffers after completion,
   * such as a server copying them into sockets, on a disk whose "DMA" is a
   * host thread's copy (native/src/cache-evict.h). Ignored where the build
   * cannot evict.
   */
  evictReadBuffers?: boolean;
}

const PAGE = 4096;
/** Buffers up to this size are carved out of shared slabs (one native allocation each). */
const SLAB_CARVE_MAX = 128 * 1024;
const SLAB_SIZE = 1024 * 1024;
/** Released buffers kept per size class for reuse. */
const POOL_KEEP = 256;
const NO_BUFFER = -1;

/**
 * Native table id of every ArrayBuffer allocated by an engine on this thread.
 * Module state is per thread (each worker loads its own copy), matching the
 * addon's per-environment buffer table, so engines on one thread can share
 * buffers.
 */
const bufferIds = new WeakMap<ArrayBufferLike, number>();

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** FIFO of requests waiting for a ring slot; grows, never shifts. */
class RequestQueue {
  private items: (IoRequest | null)[] = new Array(64).fill(null);
  private head = 0;
  length = 0;

  push(req: IoRequest): void {
    if (this.length === this.items.length) {
      const old = this.items;
      const next: (IoRequest | null)[] = new Array(old.length * 2).fill(null);
      for (let i = 0; i < this.length; i++) next[i] = old[(this.head + i) % old.length];
      this.items = next;
      this.head = 0;
    }
    this.items[(this.head + this.length) % this.items.length] = req;
    this.length++;
  }

  shift(): IoRequest {
    assert(this.length > 0, 'shift from empty request queue');
    const req = this.items[this.head] as IoRequest;
    this.items[this.head] = null;
    this.head = (this.head + 1) % this.items.length;
    this.length--;
    return req;
  }
}

export class UringEngine implements Engine {
  readonly name = 'uring';
  readonly size: number;
  readonly blockSize: number;
  /** True when the device is open with O_DIRECT. */
  readonly direct: boolean;
  /** Why O_DIRECT was not used although asked for, else null. */
  readonly directFallbackReason: string | null;
  readonly isBlockDevice: boolean;
  /** A regular file: TRIM punches a hole, which reads back as zeros. */
  get trimReadsZeroes(): boolean {
    return !this.isBlockDevice;
  }
  /** Ring depth: the most requests in the kernel at once. */
  readonly queueDepth: number;
  /** Whether READ buffers are evicted from the CPU caches before submission. */
  readonly evictReadBuffers: boolean;
  onComplete: CompletionHandler = () => {
    throw new Error('UringEngine: onComplete not set');
  };

  private readonly native: UringNative;
  private readonly ring: NativeRing;
  private readonly fd: number;
  /** fd as named in descriptors: registered-file index 0, or the raw fd. */
  private readonly ringFd: number;
  private readonly fdFlag: number;
  private readonly desc: Float64Array;
  private readonly comp: Int32Array;
  /** Request per ring slot (tag), null when free. */
  private readonly slots: (IoRequest | null)[];
  /** Non-zero: the result to report for this slot instead of the kernel's (rejected requests ride a NOP). */
  private readonly forced: Int32Array;
  private readonly freeSlots: Int32Array;
  private freeTop: number;
  private readonly overflow = new RequestQueue();
  /** Descriptors written since the last kick. */
  private batch = 0;
  /** Buffers not from allocBuffer referenced by the current batch. */
  private readonly foreign: Uint8Array[] = [];
  private count = 0;
  private inCallback = false;
  private closed = false;
  private closedRing = false;
  /** Inside reap(): handlers' submissions wait for the next reap (unless submitEach), not a flush at the batch's end. */
  private reaping = false;
  /** setSubmitEach(true): handlers' submissions go in one by one, not as a batch. */
  private submitEach = false;
  /** DescFlag.EVICT when evictReadBuffers, else 0: or-ed into every READ. */
  private readonly readFlags: number;
  private drained: (() => void) | null = null;

  private lastAb: ArrayBufferLike | null = null;
  private lastId = NO_BUFFER;
  private slab: Buffer | null = null;
  private slabUsed = 0;
  private readonly pool = new Map<number, Buffer[]>();

  private constructor(native: UringNative, fd: number, size: number, blockSize: number, direct: boolean,
    fallback: string | null, isBlock: boolean, depth: number, evict: boolean) {
    this.native = native;
    this.fd = fd;
    this.size = size;
    this.blockSize = blockSize;
    this.direct = direct;
    this.directFallbackReason = fallback;
    this.isBlockDevice = isBlock;
    this.evictReadBuffers = evict && native.cacheEvictSupported() === 1;
    this.readFlags = this.evictReadBuffers ? DescFlag.EVICT : 0;
    // The completion array holds every request that can be in flight, so one
    // callback drains a whole batch.
    // The kernel rounds the SQ up to a power of two and the native side
    // wants room for all of it.
    this.desc = new Float64Array(2 ** Math.ceil(Math.log2(depth)) * DESC_STRIDE);
    this.comp = new Int32Array(depth * 2);
    this.ring = new native.Ring(depth, this.desc, this.comp, (n) => this.onBatch(n));
    this.queueDepth = Math.min(depth, this.ring.sqEntries);
    this.slots = new Array(this.queueDepth).fill(null);
    this.forced = new Int32Array(this.queueDepth);
    this.freeSlots = new Int32Array(this.queueDepth);
    for (let i = 0; i < this.queueDepth; i++) this.freeSlots[i] = this.queueDepth - 1 - i;
    this.freeTop = this.queueDepth;
    // A registered file spares the kernel an fd lookup and refcount per request.
    if (this.ring.registerFiles(Int32Array.of(fd)) === 0) {
      this.ringFd = 0;
      this.fdFlag = DescFlag.FIXED_FILE;
    } else {
      this.ringFd = fd;
      this.fdFlag = 0;
    }
  }

  /** Opens `path` (regular file or block device). Throws if io_uring is unavailable or the open fails. */
  static open(path: string, opts: UringOpenOptions = {}): UringEngine {
    const loaded = loadUring();
    if (!loaded.ok) throw new Error(`io_uring unavailable: ${loaded.reason}`);
    const native = loaded.native;
    const wantDirect = opts.direct ?? true;
    const depth = opts.queueDepth ?? 128;
    assert(Number.isInteger(depth) && depth >= 1 && depth <= 4096, `queueDepth ${depth} out of range`);
    const base = fs.constants.O_RDWR | (opts.create ? fs.constants.O_CREAT : 0);
    let fd: number;
    let direct = wantDirect;
    let fallback: string | null = null;
    try {
      fd = fs.openSync(path, base | (wantDirect ? fs.constants.O_DIRECT : 0), 0o644);
    } catch (err) {
      if (!wantDirect || (err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      fd = fs.openSync(path, base, 0o644);
      direct = false;
      fallback = `O_DIRECT refused by the filesystem (EINVAL) for ${path}; using buffered I/O`;
    }
    try {
      const info = native.deviceInfo(fd);
      if (typeof info === 'number') throw new Error(`deviceInfo(${path}) failed: errno ${-info}`);
      const [isBlockFlag, devSize, lbs, , dioOffsetAlign] = info;
      const isBlock = isBlockFlag === 1;
      let size: number;
      if (isBlock) {
        size = opts.size === undefined ? devSize : Math.min(opts.size, devSize);
      } else {
        size = opts.size ?? devSize;
        if (devSize < size) fs.ftruncateSync(fd, size);
      }
      const blockSize = !direct ? 1 : isBlock ? lbs : Math.max(512, dioOffsetAlign);
      return new UringEngine(native, fd, size, blockSize, direct, fallback, isBlock, depth, opts.evictReadBuffers ?? false);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  get inFlight(): number {
    return this.count;
  }

  get awaitingSlot(): number {
    return this.overflow.length;
  }

  /**
   * Page-aligned, zeroed on first use. Small sizes are carved from shared
   * 1 MiB slabs, so one native allocation serves many requests.
   */
  allocBuffer(length: number): Buffer {
    assert(Number.isInteger(length) && length >= 0, `allocBuffer: bad length ${length}`);
    const cls = roundUp(Math.max(length, 1), PAGE);
    const free = this.pool.get(cls);
    if (free !== undefined && free.length > 0) return (free.pop() as Buffer).subarray(0, length);
    let whole: Buffer;
    if (cls <= SLAB_CARVE_MAX) {
      if (this.slab === null || this.slabUsed + cls > SLAB_SIZE) {
        this.slab = this.nativeAlloc(SLAB_SIZE);
        this.slabUsed = 0;
      }
      whole = this.slab.subarray(this.slabUsed, this.slabUsed + cls);
      this.slabUsed += cls;
    } else {
      whole = this.nativeAlloc(cls);
    }
    return whole.subarray(0, length);
  }

  /**
   * Returns a buffer from allocBuffer for reuse by a later allocBuffer of the
   * same size class. Contents are not cleared. The caller must not touch it
   * afterwards.
   */
  releaseBuffer(buf: Buffer): void {
    if (!bufferIds.has(buf.buffer) || buf.byteOffset % PAGE !== 0) return;
    const cls = roundUp(Math.max(buf.length, 1), PAGE);
    let free = this.pool.get(cls);
    if (free === undefined) this.pool.set(cls, (free = []));
    if (free.length < POOL_KEEP) free.push(Buffer.from(buf.buffer, buf.byteOffset, cls));
  }

  private nativeAlloc(len: number): Buffer {
    const [buf, id] = this.native.alloc(len);
    bufferIds.set(buf.buffer, id);
    return buf;
  }

  submit(req: IoRequest): void {
    assert(!this.closed, 'submit after close');
    this.count++;
    if (this.freeTop === 0) {
      this.overflow.push(req);
      return;
    }
    this.place(req, this.freeSlots[--this.freeTop]);
    if (this.submitEach && !this.inCallback && !this.reaping) this.flush();
  }

  kick(): void {
    if (this.batch === 0) return;
    // Submissions made from completion handlers go in with the rest of the
    // batch when the handler loop ends (one io_uring_enter per wakeup), or
    // one by one with setSubmitEach.
    if (!this.inCallback) this.flush();
  }

  reap(min: number): number {
    if (this.closedRing) return 0;
    assert(!this.inCallback, 'reap from a completion handler');
    // Queued requests go in with the same io_uring_enter that waits, and
    // what the handlers submit waits for the next reap (one syscall per
    // round trip at depth 1, as fio's submit-and-wait), or with
    // setSubmitEach goes in at once. One batch per call: loop for more.
    // The native side reads the descriptors before it delivers anything, so
    // handlers may place the next batch from index 0 meanwhile.
    const n = this.batch;
    const foreign = this.foreign.length > 0 ? this.foreign.splice(0) : undefined;
    this.batch = 0;
    this.reaping = true;
    let got: number;
    try {
      got = this.ring.reap(min, n, foreign);
    } finally {
      this.reaping = false;
    }
    // EAGAIN/EBUSY (completion queue backed up) and EINTR are transient: report nothing delivered.
    if (got === -11 || got === -16 || got === -4) return 0;
    if (got < 0) throw new Error(`io_uring reap failed: errno ${-got}`);
    return got;
  }

  setEventLoopNotify(on: boolean): void {
    if (!this.closedRing) this.ring.notify(on);
  }

  setSubmitEach(on: boolean): void {
    this.submitEach = on;
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    if (this.count === 0) {
      this.release();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.drained = () => {
        this.release();
        resolve();
      };
    });
  }

  private release(): void {
    this.closedRing = true;
    this.ring.close();
    fs.closeSync(this.fd);
  }

  /** Writes the descriptor for `req` in ring slot `slot` (or a NOP carrying an error). */
  private place(req: IoRequest, slot: number): void {
    this.slots[slot] = req;
    const d = this.desc;
    const at = this.batch * DESC_STRIDE;
    this.batch++;
    d[at + 7] = slot;
    d[at + 2] = this.ringFd;
    const op = req.op;
    const offset = req.offset;
    const length = req.length;
    let error = 0;
    if (op === Op.READ || op === Op.WRITE) {
      const buf = req.buf;
      if (buf === null || buf.length < length) error = Errno.EINVAL;
      else if (offset < 0 || offset + length > this.size) error = Errno.EINVAL;
      // Bitwise ops see offset modulo 2^32, which keeps the low bits we test.
      else if (((offset | length) & (this.blockSize - 1)) !== 0) error = Errno.EINVAL;
      if (error === 0 && length > 0 && buf !== null) {
        d[at] = op === Op.READ ? NativeOp.READ : NativeOp.WRITE;
        d[at + 1] = this.fdFlag | (op === Op.READ ? this.readFlags : req.fua ? DescFlag.FUA : 0);
        d[at + 3] = offset;
        d[at + 4] = length;
        if (this.setBuffer(d, at, buf)) return;
        error = Errno.EINVAL;
      }
    } else if (op === Op.FLUSH) {
      d[at] = NativeOp.FSYNC;
      d[at + 1] = this.fdFlag | DescFlag.DATASYNC;
      return;
    } else if (op === Op.TRIM || op === Op.WRITE_ZEROES) {
      if (offset < 0 || length < 0 || offset + length > this.size) {
        error = Errno.EINVAL;
      } else if (length > 0) {
        const trim = op === Op.TRIM;
        d[at] = this.isBlockDevice ? (trim ? NativeOp.BLKDISCARD : NativeOp.BLKZEROOUT)
          : (trim ? NativeOp.PUNCH_HOLE : NativeOp.ZERO_RANGE);
        // The ioctls run on the raw fd, not through the ring's file table.
        if (this.isBlockDevice) d[at + 2] = this.fd;
        d[at + 1] = this.isBlockDevice ? 0 : this.fdFlag;
        d[at + 3] = offset;
        d[at + 4] = length;
        d[at + 5] = NO_BUFFER;
        return;
      }
    } else {
      error = Errno.EOPNOTSUPP;
    }
    // Rejected or empty: a NOP completes it on a later tick with `error`.
    this.forced[slot] = error;
    d[at] = NativeOp.NOP;
    d[at + 1] = 0;
    d[at + 5] = NO_BUFFER;
  }

  /**
   * Names `buf` in descriptor `at`. False when it cannot be used: under
   * O_DIRECT a buffer must come from allocBuffer and sit on a block boundary
   * (the kernel may accept less alignment, but the contract is explicit).
   */
  private setBuffer(d: Float64Array, at: number, buf: Buffer): boolean {
    const ab = buf.buffer;
    let id: number;
    if (ab === this.lastAb) {
      id = this.lastId;
    } else {
      id = bufferIds.get(ab) ?? NO_BUFFER;
      if (id !== NO_BUFFER) {
        this.lastAb = ab;
        this.lastId = id;
      }
    }
    if (id !== NO_BUFFER) {
      // Backing memory is page aligned, so the offset decides the address alignment.
      if ((buf.byteOffset & (this.blockSize - 1)) !== 0) return false;
      d[at + 5] = id;
      d[at + 6] = buf.byteOffset;
      return true;
    }
    if (this.direct) return false;
    // Buffered I/O takes any memory: C resolves it from the batch's side array.
    d[at + 5] = -2 - this.foreign.length;
    d[at + 6] = 0;
    this.foreign.push(buf);
    return true;
  }

  private flush(): void {
    const n = this.batch;
    const taken = this.ring.submit(n, this.foreign.length > 0 ? this.foreign : undefined);
    // Reset before checking: a failed check must not leave descriptors that
    // a later flush would submit a second time.
    this.batch = 0;
    if (this.foreign.length > 0) this.foreign.length = 0;
    // The ring has at least queueDepth SQ entries and at most queueDepth
    // requests are placed, so the SQ never fills.
    if (taken !== n) assert(false, `io_uring submit took ${taken} of ${n}`);
  }

  private onBatch(n: number): void {
    this.inCallback = true;
    let failed = false;
    let failure: unknown;
    let i = 0;
    // A throwing handler must not strand the rest of the batch (their slots
    // would leak): finish every completion, then rethrow the first error.
    while (i < n) {
      try {
        while (i < n) {
          this.complete(i++);
          if (this.submitEach && this.batch > 0 && !this.closedRing) this.flush();
        }
      } catch (err) {
        if (!failed) {
          failed = true;
          failure = err;
        }
      }
    }
    this.inCallback = false;
    // Issue what the handlers submitted and what moved up from the overflow.
    if (this.batch > 0 && !this.closedRing && !this.reaping) this.flush();
    if (this.count === 0 && this.drained !== null) {
      const done = this.drained;
      this.drained = null;
      done();
    }
    if (failed) throw failure;
  }

  /** Hands completion `i` of the shared array back to its owner. */
  private complete(i: number): void {
    const slot = this.comp[2 * i];
    let res = this.comp[2 * i + 1];
    const req = this.slots[slot];
    if (req === null) assert(false, `completion for empty slot ${slot}`);
    this.slots[slot] = null;
    const forced = this.forced[slot];
    if (forced !== 0) {
      res = forced;
      this.forced[slot] = 0;
    } else if (res > 0) {
      // Short transfers (e.g. the file shrank underneath) are I/O errors.
      res = res === req.length ? 0 : Errno.EIO;
    }
    req.result = res;
    // Refill the freed slot from the overflow before anyone else can.
    if (this.overflow.length > 0) this.place(this.overflow.shift(), slot);
    else this.freeSlots[this.freeTop++] = slot;
    this.count--;
    this.onComplete(req);
  }
}
