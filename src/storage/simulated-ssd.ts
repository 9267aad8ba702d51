/**
 * A simulated Flash SSD on a virtual clock: an Engine for deterministic
 * simulations of the QoS scheduler (and anything else above the engine seam).
 *
 * Model:
 * - `channels` internal parallel units; a request waits FIFO for a free one.
 *   Latency = queueing + service, so it grows with load like a real device.
 * - Service time per 4 KiB page: readNs / writeNs (a request of k pages takes
 *   k times as long; under 4 KiB counts as one page), times a jitter factor
 *   (1 − j) + j × Exp(1) (mean 1, a tail like real flash).
 * - Writes disturb reads: a read that starts while w channels are busy with
 *   writes takes (1 + writeInterference × w / channels) times longer.
 * - FLUSH takes flushNs, TRIM trimNs, WRITE_ZEROES is a write.
 * Deterministic for a given seed and submission sequence.
 *
 * Time moves only through `advance(toNs)`: completions due by then are
 * delivered in time order, with `nowNs` set to each completion's time while
 * `onComplete` runs (so a handler can read the exact completion time and
 * submit follow-ups at that instant). `submit` never completes inline.
 *
 * With `storeData` (default true) data lives in a sparse map of 4 KiB pages,
 * so reads return what was written (unwritten and trimmed pages read as
 * zeros); simulations that carry no buffers turn it off.
 */
import { Errno, Op, type CompletionHandler, type Engine, type IoRequest } from './engine.ts';

/** Seeded PRNG: a Weyl sequence through a 32-bit avalanche mix. Deterministic and cheap. */
export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    this.state = (this.state + 0x9e3779b9) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Exponentially distributed with the given mean. */
  exp(mean: number): number {
    return -Math.log(1 - this.next()) * mean;
  }
}

export interface SimulatedSsdOptions {
  /** Device size in bytes. Default 1 TiB. */
  size?: number;
  /** Parallel internal units. Default 16. */
  channels?: number;
  /** Service time of a 4 KiB read, ns. Default 50 µs. */
  readNs?: number;
  /** Service time of a 4 KiB write, ns. Default 500 µs. */
  writeNs?: number;
  flushNs?: number;
  trimNs?: number;
  /** Read slow-down per fraction of channels busy writing. Default 1. */
  writeInterference?: number;
  /** Jitter weight j in [0, 1]. Default 0.5. */
  jitter?: number;
  seed?: number;
  storeData?: boolean;
}

const PAGE = 4096;

interface Pending {
  req: IoRequest;
  doneNs: number;
  seq: number;
  isWrite: boolean;
}

export class SimulatedSsd implements Engine {
  readonly name = 'simulated-ssd';
  readonly blockSize = 1;
  readonly size: number;
  readonly channels: number;
  onComplete: CompletionHandler = () => {
    throw new Error('SimulatedSsd: onComplete not set');
  };
  private readonly readNs: number;
  private readonly writeNs: number;
  private readonly flushNs: number;
  private readonly trimNs: number;
  private readonly interference: number;
  private readonly jitter: number;
  private readonly rng: SeededRandom;
  private readonly pages: Map<number, Buffer> | null;
  private now = 0;
  private seq = 0;
  private busy = 0;
  private busyWriting = 0;
  /** FIFO of requests waiting for a channel (array + head index, compacted as it drains). */
  private waiting: IoRequest[] = [];
  private waitHead = 0;
  /** Min-heap of in-service requests by completion time, then submission order. */
  private readonly heap: Pending[] = [];
  private submitted = 0;
  private completed = 0;
  /** Sum over channels of busy time, ns: utilization = busyNs / (channels × elapsed). */
  busyNs = 0;

  constructor(opts: SimulatedSsdOptions = {}) {
    this.size = opts.size ?? 2 ** 40;
    this.channels = opts.channels ?? 16;
    this.readNs = opts.readNs ?? 50_000;
    this.writeNs = opts.writeNs ?? 500_000;
    this.flushNs = opts.flushNs ?? 20_000;
    this.trimNs = opts.trimNs ?? 10_000;
    this.interference = opts.writeInterference ?? 1;
    this.jitter = opts.jitter ?? 0.5;
    this.rng = new SeededRandom(opts.seed ?? 1);
    this.pages = (opts.storeData ?? true) ? new Map() : null;
    if (!(this.channels >= 1 && this.jitter >= 0 && this.jitter <= 1)) throw new RangeError('SimulatedSsd: bad options');
  }

  /** Current virtual time, ns. */
  get nowNs(): number {
    return this.now;
  }

  get inFlight(): number {
    return this.submitted - this.completed;
  }

  /** Requests waiting for a channel (not yet in service). */
  get queueDepth(): number {
    return this.waiting.length - this.waitHead;
  }

  /** Time of the next completion, or Infinity when idle. */
  nextEventNs(): number {
    return this.heap.length === 0 ? Infinity : this.heap[0].doneNs;
  }

  allocBuffer(length: number): Buffer {
    return Buffer.alloc(length);
  }

  submit(req: IoRequest): void {
    this.submitted++;
    this.waiting.push(req);
    this.dispatch();
  }

  kick(): void {}

  /** Delivers every completion due at or before `toNs`, then sets the clock to `toNs`. */
  advance(toNs: number): void {
    if (toNs < this.now) throw new RangeError(`SimulatedSsd.advance: ${toNs} is before now (${this.now})`);
    while (this.heap.length > 0 && this.heap[0].doneNs <= toNs) {
      const p = this.popHeap();
      this.now = p.doneNs;
      this.busy--;
      if (p.isWrite) this.busyWriting--;
      p.req.result = this.execute(p.req);
      this.completed++;
      // Free channel first, so follow-ups submitted by the handler queue behind waiters.
      this.dispatch();
      this.onComplete(p.req);
    }
    this.now = toNs;
  }

  async close(): Promise<void> {
    this.pages?.clear();
  }

  private dispatch(): void {
    while (this.busy < this.channels && this.waitHead < this.waiting.length) {
      const req = this.waiting[this.waitHead];
      this.waiting[this.waitHead++] = undefined as unknown as IoRequest;
      if (this.waitHead > 1024 && this.waitHead * 2 > this.waiting.length) {
        this.waiting = this.waiting.slice(this.waitHead);
        this.waitHead = 0;
      }
      this.start(req);
    }
  }

  private start(req: IoRequest): void {
    const pages = req.length <= PAGE ? 1 : Math.ceil(req.length / PAGE);
    let base: number;
    let isWrite = false;
    switch (req.op) {
      case Op.READ:
        base = pages * this.readNs * (1 + (this.interference * this.busyWriting) / this.channels);
        break;
      case Op.WRITE:
      case Op.WRITE_ZEROES:
        base = pages * this.writeNs;
        isWrite = true;
        break;
      case Op.FLUSH:
        base = this.flushNs;
        break;
      default:
        base = this.trimNs;
    }
    const service = base * (1 - this.jitter + this.jitter * this.rng.exp(1));
    this.busy++;
    if (isWrite) this.busyWriting++;
    this.busyNs += service;
    this.pushHeap({ req, doneNs: this.now + service, seq: this.seq++, isWrite });
  }

  private execute(req: IoRequest): number {
    if (req.op === Op.FLUSH) return 0;
    if (req.offset < 0 || req.length < 0 || req.offset + req.length > this.size) return Errno.EINVAL;
    const pages = this.pages;
    if (pages === null) return 0;
    switch (req.op) {
      case Op.READ:
        if (req.buf === null) return Errno.EINVAL;
        this.copy(req.offset, req.length, req.buf, false);
        return 0;
      case Op.WRITE:
        if (req.buf === null) return Errno.EINVAL;
        this.copy(req.offset, req.length, req.buf, true);
        return 0;
      case Op.TRIM:
      case Op.WRITE_ZEROES:
        this.copy(req.offset, req.length, null, true);
        return 0;
      default:
        return Errno.EOPNOTSUPP;
    }
  }

  /** Moves bytes between `buf` and the page map; a null buf writes zeros. */
  private copy(offset: number, length: number, buf: Buffer | null, toDevice: boolean): void {
    const pages = this.pages!;
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const idx = Math.floor(pos / PAGE);
      const within = pos - idx * PAGE;
      const n = Math.min(length - done, PAGE - within);
      let page = pages.get(idx);
      if (!toDevice) {
        if (page === undefined) buf!.fill(0, done, done + n);
        else page.copy(buf!, done, within, within + n);
      } else if (buf === null) {
        if (page !== undefined) {
          if (n === PAGE) pages.delete(idx);
          else page.fill(0, within, within + n);
        }
      } else {
        if (page === undefined) {
          page = Buffer.alloc(PAGE);
          pages.set(idx, page);
        }
        buf.copy(page, within, done, done + n);
      }
      done += n;
    }
  }

  private less(a: Pending, b: Pending): boolean {
    return a.doneNs < b.doneNs || (a.doneNs === b.doneNs && a.seq < b.seq);
  }

  private pushHeap(p: Pending): void {
    const h = this.heap;
    let i = h.length;
    h.push(p);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(h[i], h[parent])) break;
      [h[i], h[parent]] = [h[parent], h[i]];
      i = parent;
    }
  }

  private popHeap(): Pending {
    const h = this.heap;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l], h[m])) m = l;
        if (r < h.length && this.less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}
