/**
 * Turns the control plane's cumulative per-tenant counters into time series:
 * once a second it reads `stats()`, differences it against the previous
 * reading, and appends IOPS, bytes/s and the p95 latency of the requests
 * completed in that second to fixed-size ring buffers (about five minutes).
 *
 * The status page charts these series and the metrics report the last
 * window's p95, so both agree with each other. Rates are divided by the
 * measured interval, not the nominal one, so a late timer does not inflate
 * them.
 */
import type { ControlPlane, TenantStats } from './control-plane.ts';
import { windowQuantileUs } from './control-plane.ts';
import { assert } from '../util/assert.ts';

export const DEFAULT_SAMPLE_INTERVAL_MS = 1000;
export const DEFAULT_SAMPLE_CAPACITY = 300;

/** A fixed-capacity ring of numbers; NaN marks "no value" (e.g. p95 of an idle second). */
export class Ring {
  private readonly buf: Float64Array;
  private head = 0;
  private count = 0;

  constructor(capacity: number) {
    assert(Number.isInteger(capacity) && capacity > 0, 'ring capacity must be a positive integer');
    this.buf = new Float64Array(capacity);
  }

  get length(): number {
    return this.count;
  }

  get capacity(): number {
    return this.buf.length;
  }

  push(v: number): void {
    this.buf[this.head] = v;
    this.head = (this.head + 1) % this.buf.length;
    if (this.count < this.buf.length) this.count++;
  }

  /** The newest value, or NaN when empty. */
  last(): number {
    if (this.count === 0) return NaN;
    return this.buf[(this.head - 1 + this.buf.length) % this.buf.length];
  }

  /** Oldest first; NaN becomes null so the array survives JSON. */
  toArray(): Array<number | null> {
    const out: Array<number | null> = new Array(this.count);
    const start = (this.head - this.count + this.buf.length) % this.buf.length;
    for (let i = 0; i < this.count; i++) {
      const v = this.buf[(start + i) % this.buf.length];
      out[i] = Number.isNaN(v) ? null : v;
    }
    return out;
  }
}

/** One tenant's series; all rings advance together. */
export class TenantSeries {
  readonly id: number;
  readonly name: string;
  readonly t: Ring;
  readonly iops: Ring;
  readonly readIops: Ring;
  readonly writeIops: Ring;
  readonly bytesPerSec: Ring;
  readonly p95Us: Ring;
  readonly errorsPerSec: Ring;
  readonly refusedPerSec: Ring;
  /** The reading the next sample is differenced against. */
  prev: TenantStats;
  prevAt: number;

  constructor(id: number, name: string, capacity: number, first: TenantStats, at: number) {
    this.id = id;
    this.name = name;
    this.t = new Ring(capacity);
    this.iops = new Ring(capacity);
    this.readIops = new Ring(capacity);
    this.writeIops = new Ring(capacity);
    this.bytesPerSec = new Ring(capacity);
    this.p95Us = new Ring(capacity);
    this.errorsPerSec = new Ring(capacity);
    this.refusedPerSec = new Ring(capacity);
    this.prev = first;
    this.prevAt = at;
  }
}

export interface SamplerOptions {
  intervalMs?: number;
  capacity?: number;
  /** Milliseconds; injectable for tests. */
  now?: () => number;
}

/** Difference of two cumulative readings, never negative (counters restart when an id is reused). */
function delta(now: number, before: number): number {
  return now >= before ? now - before : now;
}

export class Sampler {
  readonly intervalMs: number;
  readonly capacity: number;
  private readonly control: ControlPlane;
  private readonly now: () => number;
  private readonly byName = new Map<string, TenantSeries>();
  private timer: NodeJS.Timeout | null = null;

  constructor(control: ControlPlane, opts: SamplerOptions = {}) {
    this.control = control;
    this.intervalMs = opts.intervalMs ?? DEFAULT_SAMPLE_INTERVAL_MS;
    this.capacity = opts.capacity ?? DEFAULT_SAMPLE_CAPACITY;
    this.now = opts.now ?? Date.now;
    assert(this.intervalMs > 0, 'sample interval must be positive');
  }

  /** Samples every interval until stop(); the timer does not keep the process alive. */
  start(): void {
    if (this.timer !== null) return;
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * Takes one reading. A tenant seen for the first time only gets a
   * baseline (no point: there is no interval yet); a tenant whose id changed
   * (removed and created again under the same name) starts over.
   */
  sample(): void {
    const at = this.now();
    const seen = new Set<string>();
    for (const s of this.control.stats()) {
      seen.add(s.name);
      const series = this.byName.get(s.name);
      if (series === undefined || series.id !== s.id) {
        this.byName.set(s.name, new TenantSeries(s.id, s.name, this.capacity, s, at));
        continue;
      }
      const dt = (at - series.prevAt) / 1000;
      if (dt <= 0) continue;
      const p = series.prev;
      const reads = delta(s.readOps, p.readOps);
      const writes = delta(s.writeOps, p.writeOps);
      const other = delta(s.otherOps, p.otherOps);
      series.t.push(at);
      series.iops.push((reads + writes + other) / dt);
      series.readIops.push(reads / dt);
      series.writeIops.push(writes / dt);
      series.bytesPerSec.push((delta(s.readBytes, p.readBytes) + delta(s.writeBytes, p.writeBytes)) / dt);
      const restarted = s.readOps + s.writeOps + s.otherOps < p.readOps + p.writeOps + p.otherOps;
      const p95 = windowQuantileUs(s.histogram, restarted ? null : p.histogram, 0.95);
      series.p95Us.push(p95 > 0 ? p95 : NaN);
      series.errorsPerSec.push(delta(s.errors, p.errors) / dt);
      series.refusedPerSec.push(delta(s.refused, p.refused) / dt);
      series.prev = s;
      series.prevAt = at;
    }
    for (const name of [...this.byName.keys()]) if (!seen.has(name)) this.byName.delete(name);
  }

  series(name: string): TenantSeries | undefined {
    return this.byName.get(name);
  }

  /** p95 (µs) of the requests in the last sampled second; NaN when there were none. */
  lastP95Us(name: string): number {
    return this.byName.get(name)?.p95Us.last() ?? NaN;
  }
}
