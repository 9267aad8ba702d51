/**
 * Fault injection as an engine wrapper, in the style of an nbdkit filter:
 * `new FaultEngine(inner, spec)` behaves exactly like `inner` except for the
 * requests the spec picks, which complete with a negative errno without
 * reaching the device:
 *
 *   readErrorRate   each READ fails with -EIO with this probability (0..1)
 *   writeErrorRate  each WRITE fails with -EIO with this probability (0..1)
 *   failOffsets     READ/WRITE/TRIM/WRITE_ZEROES touching any [start, end)
 *                   byte range fail with -EIO (a bad-sector region)
 *   fullAfterBytes  once this many bytes were written successfully, a WRITE
 *                   that would go past it fails with -ENOSPC (a thin pool
 *                   running out); smaller writes may still fit
 *   delayUs         every request reaches the device this much later (a slow
 *                   device); timers have millisecond granularity, so the
 *                   delay is rounded up to whole milliseconds
 *   seed            the random draws are a deterministic function of the
 *                   seed and the order of submission, so a failing run
 *                   can be replayed
 *
 * FLUSH is never failed: a spurious flush error would say that acknowledged
 * writes were lost, which this wrapper does not simulate.
 *
 * Each engine instance keeps its own byte budget and random stream; the data
 * plane opens one engine per worker, so `fullAfterBytes` is per worker there.
 */
import { assert } from '../util/assert.ts';
import { CompletionQueue } from './completion-queue.ts';
import { Errno, Op, type CompletionHandler, type Engine, type IoRequest } from './engine.ts';

export interface FaultSpec {
  readErrorRate?: number;
  writeErrorRate?: number;
  /** Byte ranges [start, end) (end exclusive) on the inner engine's device. */
  failOffsets?: Array<[number, number]>;
  delayUs?: number;
  fullAfterBytes?: number;
  seed?: number;
  /** Commands the device refuses with EOPNOTSUPP, as one without discard or zeroing does. */
  unsupported?: Array<'trim' | 'write-zeroes'>;
}

/** What the wrapper did so far (tests and logs read it). */
export interface FaultStats {
  readErrors: number;
  writeErrors: number;
  rangeErrors: number;
  enospc: number;
  unsupported: number;
  delayed: number;
  passed: number;
}

/** Checks a spec's values; throws RangeError naming the first bad one. */
export function checkFaultSpec(spec: FaultSpec): void {
  for (const k of ['readErrorRate', 'writeErrorRate'] as const) {
    const v = spec[k];
    if (v !== undefined && !(v >= 0 && v <= 1)) throw new RangeError(`fault spec: ${k} ${v} is not within 0..1`);
  }
  for (const k of ['delayUs', 'fullAfterBytes', 'seed'] as const) {
    const v = spec[k];
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) throw new RangeError(`fault spec: ${k} ${v} is not a non-negative integer`);
  }
  for (const r of spec.failOffsets ?? []) {
    if (!(Array.isArray(r) && r.length === 2 && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]) && r[0] >= 0 && r[1] > r[0])) {
      throw new RangeError(`fault spec: failure range ${JSON.stringify(r)} is not [start, end) with 0 <= start < end`);
    }
  }
}

const SIZE_UNITS: Record<string, number> = { '': 1, K: 1 << 10, M: 1 << 20, G: 1 << 30, T: 2 ** 40 };

function parseSize(key: string, v: string): number {
  const m = /^(\d+)([KMGT]?)i?B?$/i.exec(v.trim());
  if (m === null) throw new RangeError(`fault spec: ${key}=${v} is not a size (e.g. 4096, 64M)`);
  const n = Number(m[1]) * SIZE_UNITS[m[2].toUpperCase()];
  if (!Number.isSafeInteger(n)) throw new RangeError(`fault spec: ${key}=${v} is too large`);
  return n;
}

function parseRate(key: string, v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !(n >= 0 && n <= 1)) throw new RangeError(`fault spec: ${key}=${v} is not a probability within 0..1`);
  return n;
}

/**
 * Parses a compact spec: comma-separated key=value pairs, e.g.
 * "read-error=0.01,write-error=0.01,delay-us=500,full-after=64M,fail=0-4096,unsupported=trim/write-zeroes,seed=1".
 * `fail` may repeat and takes START-END (end exclusive) or START+LENGTH, with
 * size suffixes K, M, G, T. An empty string is an empty spec (no faults).
 */
export function parseFaultSpec(text: string): FaultSpec {
  const spec: FaultSpec = {};
  for (const part of text.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq < 0) throw new RangeError(`fault spec: "${item}" is not key=value`);
    const key = item.slice(0, eq).trim();
    const value = item.slice(eq + 1).trim();
    switch (key) {
      case 'read-error':
        spec.readErrorRate = parseRate(key, value);
        break;
      case 'write-error':
        spec.writeErrorRate = parseRate(key, value);
        break;
      case 'delay-us':
        spec.delayUs = parseSize(key, value);
        break;
      case 'full-after':
        spec.fullAfterBytes = parseSize(key, value);
        break;
      case 'seed':
        spec.seed = parseSize(key, value);
        break;
      case 'unsupported':
        for (const u of value.split('/')) {
          if (u !== 'trim' && u !== 'write-zeroes') throw new RangeError(`fault spec: unsupported=${value}: each of trim, write-zeroes (joined with /)`);
          (spec.unsupported ??= []).push(u);
        }
        break;
      case 'fail': {
        const m = /^([^-+]+)([-+])(.+)$/.exec(value);
        if (m === null) throw new RangeError(`fault spec: fail=${value} is not START-END or START+LENGTH`);
        const start = parseSize(key, m[1]);
        const other = parseSize(key, m[3]);
        const range: [number, number] = [start, m[2] === '-' ? other : start + other];
        (spec.failOffsets ??= []).push(range);
        break;
      }
      default:
        throw new RangeError(`fault spec: unknown key "${key}" (read-error, write-error, delay-us, full-after, fail, unsupported, seed)`);
    }
  }
  checkFaultSpec(spec);
  return spec;
}

/** Small fast deterministic generator (mulberry32): one u32 of state. */
function nextRandom(state: { s: number }): number {
  let t = (state.s = (state.s + 0x6d2b79f5) | 0);
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

export class FaultEngine implements Engine {
  readonly name: string;
  readonly size: number;
  readonly blockSize: number;
  readonly inner: Engine;
  readonly stats: FaultStats = { readErrors: 0, writeErrors: 0, rangeErrors: 0, enospc: 0, unsupported: 0, delayed: 0, passed: 0 };
  onComplete: CompletionHandler = () => {
    throw new Error('FaultEngine: onComplete not set');
  };

  private readonly readRate: number;
  private readonly writeRate: number;
  private readonly ranges: Array<[number, number]>;
  private readonly refused: Set<number>;
  private readonly delayMs: number;
  private readonly fullAfter: number;
  private readonly rng: { s: number };
  /** Bytes of WRITE that succeeded, or are in flight and were not refused. */
  private written = 0;
  /** Failed requests, handed back from a microtask (never inside submit). */
  private readonly failed = new CompletionQueue((r) => {
    this.failing--;
    this.onComplete(r);
  });
  private failing = 0;
  /** Requests held back by the delay, in submission order (equal delays: also due order). */
  private held: IoRequest[] = [];
  private heldDue: number[] = [];
  private heldHead = 0;
  private timer: NodeJS.Timeout | null = null;
  private closing: Promise<void> | null = null;

  get queueDepth(): number | undefined {
    return this.inner.queueDepth;
  }

  get awaitingSlot(): number | undefined {
    return this.inner.awaitingSlot;
  }

  get trimReadsZeroes(): boolean | undefined {
    return this.inner.trimReadsZeroes;
  }

  constructor(inner: Engine, spec: FaultSpec = {}) {
    checkFaultSpec(spec);
    this.inner = inner;
    this.name = `${inner.name}+faults`;
    this.size = inner.size;
    this.blockSize = inner.blockSize;
    this.readRate = spec.readErrorRate ?? 0;
    this.writeRate = spec.writeErrorRate ?? 0;
    this.ranges = (spec.failOffsets ?? []).map(([a, b]) => [a, b] as [number, number]);
    this.refused = new Set((spec.unsupported ?? []).map((u) => (u === 'trim' ? Op.TRIM : Op.WRITE_ZEROES)));
    this.delayMs = Math.ceil((spec.delayUs ?? 0) / 1000);
    this.fullAfter = spec.fullAfterBytes ?? Infinity;
    this.rng = { s: (spec.seed ?? 1) | 0 };
    // The inner engine's completions go straight to whoever owns this wrapper.
    inner.onComplete = (req) => {
      if (req.op === Op.WRITE && req.result < 0) this.written -= req.length; // the device did not take it
      this.onComplete(req);
    };
  }

  get inFlight(): number {
    return this.inner.inFlight + this.failing + (this.held.length - this.heldHead);
  }

  allocBuffer(length: number): Buffer {
    return this.inner.allocBuffer(length);
  }

  submit(req: IoRequest): void {
    assert(this.closing === null, 'FaultEngine: submit after close');
    const fault = this.decide(req);
    if (fault !== 0) {
      req.result = fault;
      this.failing++;
      this.failed.push(req);
      return;
    }
    if (this.delayMs > 0) {
      this.stats.delayed++;
      this.held.push(req);
      this.heldDue.push(performance.now() + this.delayMs);
      this.armTimer();
      return;
    }
    this.stats.passed++;
    this.inner.submit(req);
  }

  kick(): void {
    this.inner.kick();
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      // Held requests were accepted: they still go to the device.
      while (this.heldHead < this.held.length) await new Promise((r) => setTimeout(r, this.delayMs));
      while (this.failing > 0) await new Promise((r) => setImmediate(r));
      await this.inner.close();
    })();
    return this.closing;
  }

  /** 0 to pass the request on, else the errno it completes with. */
  private decide(req: IoRequest): number {
    const op = req.op;
    if (op === Op.FLUSH) return 0;
    if (this.refused.has(op)) {
      this.stats.unsupported++;
      return Errno.EOPNOTSUPP;
    }
    if (this.ranges.length > 0) {
      const start = req.offset;
      const end = req.offset + req.length;
      for (const [a, b] of this.ranges) {
        if (start < b && end > a) {
          this.stats.rangeErrors++;
          return Errno.EIO;
        }
      }
    }
    if (op === Op.READ) {
      if (this.readRate > 0 && nextRandom(this.rng) < this.readRate) {
        this.stats.readErrors++;
        return Errno.EIO;
      }
    } else if (op === Op.WRITE) {
      if (this.writeRate > 0 && nextRandom(this.rng) < this.writeRate) {
        this.stats.writeErrors++;
        return Errno.EIO;
      }
      if (this.written + req.length > this.fullAfter) {
        this.stats.enospc++;
        return Errno.ENOSPC;
      }
      this.written += req.length;
    }
    return 0;
  }

  private armTimer(): void {
    if (this.timer !== null) return;
    const wait = Math.max(0, this.heldDue[this.heldHead] - performance.now());
    this.timer = setTimeout(() => this.release(), wait);
  }

  /** Passes every held request that is due to the inner engine, as one batch. */
  private release(): void {
    this.timer = null;
    const now = performance.now();
    let n = 0;
    while (this.heldHead < this.held.length && this.heldDue[this.heldHead] <= now + 0.5) {
      const req = this.held[this.heldHead];
      this.heldHead++;
      this.stats.passed++;
      this.inner.submit(req);
      n++;
    }
    if (this.heldHead === this.held.length) {
      this.held = [];
      this.heldDue = [];
      this.heldHead = 0;
    } else if (this.heldHead > 1024) {
      this.held = this.held.slice(this.heldHead);
      this.heldDue = this.heldDue.slice(this.heldHead);
      this.heldHead = 0;
    }
    if (n > 0) this.inner.kick();
    if (this.heldHead < this.held.length) this.armTimer();
  }
}
