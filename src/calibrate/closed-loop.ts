/**
 * Closed-loop driving of an Engine: `qd` requests always outstanding, the
 * next one sent as each completes. Used where throughput matters and
 * latency does not: preconditioning (fill, then random writes) and the
 * capacity probe that places each sweep's target rates.
 *
 * The caller decides where each request goes and when to stop; completions
 * are counted in fixed windows so callers can watch throughput settle.
 */
import { performance } from 'node:perf_hooks';
import { Op, newRequest, type Engine, type IoRequest } from '../storage/engine.ts';
import { assert } from '../util/assert.ts';

export interface ClosedLoopOptions {
  qd: number;
  sizeBytes: number;
  /** Share of reads in [0, 1]. */
  readFraction: number;
  /** Offset of the next request, or null when there is nothing more to send. */
  nextOffset: () => number | null;
  /** Checked at every window boundary: true ends the run. */
  shouldStop?: (windows: number[], elapsedMs: number) => boolean;
  /** Hard cap on the run's length. */
  maxMs: number;
  /** Completions are counted per window of this length. Default 1000. */
  windowMs?: number;
  /** Called at each window boundary with that window's rate. */
  onWindow?: (iops: number, windows: number[], elapsedMs: number) => void;
  random?: () => number;
}

export interface ClosedLoopResult {
  completed: number;
  errors: number;
  elapsedMs: number;
  iops: number;
  /** Completions per second in each full window. */
  windows: number[];
}

export function runClosedLoop(engine: Engine, o: ClosedLoopOptions): Promise<ClosedLoopResult> {
  assert(o.qd >= 1, 'closed loop: qd must be at least 1');
  const windowMs = o.windowMs ?? 1000;
  const random = o.random ?? Math.random;
  const reqs: IoRequest[] = [];
  for (let i = 0; i < o.qd; i++) {
    const r = newRequest();
    r.buf = engine.allocBuffer(o.sizeBytes);
    for (let b = 0; b + 4 <= o.sizeBytes; b += 4) r.buf.writeUInt32LE((random() * 0x100000000) >>> 0, b);
    r.length = o.sizeBytes;
    reqs.push(r);
  }
  const previous = engine.onComplete;
  const start = performance.now();
  let completed = 0;
  let errors = 0;
  let inFlight = 0;
  let windowStart = start;
  let windowCount = 0;
  let stopping = false;
  const windows: number[] = [];

  return new Promise<ClosedLoopResult>((resolve) => {
    const done = (): void => {
      engine.onComplete = previous;
      const elapsedMs = performance.now() - start;
      resolve({ completed, errors, elapsedMs, iops: (completed * 1000) / elapsedMs, windows });
    };
    /** Sends `r` again if there is more to do; returns whether it did. */
    const send = (r: IoRequest): boolean => {
      if (stopping) return false;
      const off = o.nextOffset();
      if (off === null) {
        stopping = true;
        return false;
      }
      r.op = random() < o.readFraction ? Op.READ : Op.WRITE;
      r.offset = off;
      r.result = 0;
      inFlight++;
      engine.submit(r);
      return true;
    };
    engine.onComplete = (r: IoRequest): void => {
      inFlight--;
      if (r.result < 0) errors++;
      else {
        completed++;
        windowCount++;
      }
      const now = performance.now();
      if (now - windowStart >= windowMs) {
        const rate = (windowCount * 1000) / (now - windowStart);
        windows.push(rate);
        windowStart = now;
        windowCount = 0;
        o.onWindow?.(rate, windows, now - start);
        if (o.shouldStop?.(windows, now - start) === true) stopping = true;
      }
      if (now - start >= o.maxMs) stopping = true;
      if (send(r)) engine.kick();
      else if (inFlight === 0) done();
    };
    let sent = 0;
    for (const r of reqs) if (send(r)) sent++;
    if (sent > 0) engine.kick();
    else done();
  });
}
