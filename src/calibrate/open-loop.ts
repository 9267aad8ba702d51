/**
 * One calibration step: open-loop Poisson arrivals straight into an Engine
 * (no network, no scheduler), so what is measured is the device.
 *
 * Latency is measured from each arrival's *intended* time, so a slow pump or
 * a busy event loop shows up as latency instead of silently lowering the
 * offered load. An arrival that finds `maxOutstanding` requests already in
 * the device is not sent and counts as missed: the device (or this process)
 * could not keep up with the target rate.
 *
 * Timing: Node timers are ~1 ms coarse, so each wake-up issues every arrival
 * whose time has come, then sleeps with setTimeout when the next arrival is
 * far off and spins with setImmediate (letting completions in) when it is
 * near. Requests, buffers and their bookkeeping are preallocated per slot.
 */
import { performance } from 'node:perf_hooks';
import { Op, newRequest, type Engine, type IoRequest } from '../storage/engine.ts';
import { newHistogram, recordMs, summarize, type LatencySummary } from '../loadgen/histogram.ts';
import { PoissonArrivals, type Random } from '../loadgen/poisson.ts';
import { assert } from '../util/assert.ts';

export interface OpenLoopOptions {
  /** Offered arrivals per second. */
  iops: number;
  /** Measured window, ms (after the warm-up). */
  durationMs: number;
  /** Arrivals before the window are sent but not measured. Default 0. */
  warmupMs?: number;
  /** Share of reads in [0, 1]; the rest are writes. */
  readFraction: number;
  sizeBytes: number;
  /** Offsets fall in [spanOffset, spanOffset + spanBytes). */
  spanBytes: number;
  spanOffset?: number;
  /** Requests in the device at once before arrivals are missed. Default 256. */
  maxOutstanding?: number;
  random?: Random;
}

export interface OpenLoopResult {
  targetIops: number;
  readFraction: number;
  sizeBytes: number;
  /** Measured requests completed successfully per second of the window. */
  achievedIops: number;
  /** Measured arrivals, sent or not. */
  arrivals: number;
  /** Arrivals not sent because maxOutstanding were in flight. */
  missed: number;
  /** Requests the engine failed (negative result). */
  errors: number;
  /** Read latency from intended arrival to completion, µs. */
  read: LatencySummary;
  write: LatencySummary;
  windowMs: number;
}

/** Above this gap to the next arrival the pump sleeps on a timer instead of spinning. */
const SLEEP_THRESHOLD_MS = 2;
/** After the window, in-flight requests get this long to finish. */
const DRAIN_TIMEOUT_MS = 30_000;

interface Slot {
  req: IoRequest;
  /** Intended arrival time, performance.now() ms. */
  intended: number;
  measured: boolean;
}

export function runOpenLoop(engine: Engine, o: OpenLoopOptions): Promise<OpenLoopResult> {
  const warmupMs = o.warmupMs ?? 0;
  const spanOffset = o.spanOffset ?? 0;
  const maxOut = o.maxOutstanding ?? 256;
  const random = o.random ?? Math.random;
  assert(o.iops > 0 && Number.isFinite(o.iops), 'open loop: iops must be positive');
  assert(o.durationMs > 0, 'open loop: duration must be positive');
  assert(o.readFraction >= 0 && o.readFraction <= 1, 'open loop: read fraction must be in [0, 1]');
  const align = Math.max(4096, engine.blockSize);
  assert(o.sizeBytes > 0 && o.sizeBytes % engine.blockSize === 0, `open loop: size ${o.sizeBytes} not a multiple of the block size ${engine.blockSize}`);
  assert(spanOffset % align === 0, 'open loop: span offset must be aligned');
  assert(spanOffset + o.spanBytes <= engine.size, 'open loop: span beyond the device');
  const positions = Math.floor((o.spanBytes - o.sizeBytes) / align) + 1;
  assert(positions >= 1, 'open loop: span smaller than one request');

  // Write payloads are random bytes, so compressing or deduplicating devices are not flattered.
  const slots: Slot[] = [];
  const free: number[] = [];
  for (let i = 0; i < maxOut; i++) {
    const req = newRequest();
    req.buf = engine.allocBuffer(o.sizeBytes);
    for (let b = 0; b < o.sizeBytes; b += 4) req.buf.writeUInt32LE((random() * 0x100000000) >>> 0, b);
    req.length = o.sizeBytes;
    req.ctx = i;
    slots.push({ req, intended: 0, measured: false });
    free.push(i);
  }

  const readHist = newHistogram();
  const writeHist = newHistogram();
  let achieved = 0;
  let arrivals = 0;
  let missed = 0;
  let errors = 0;
  const start = performance.now();
  const windowStart = start + warmupMs;
  const end = windowStart + o.durationMs;
  const arrivalsGen = new PoissonArrivals(o.iops, start, random);

  const previous = engine.onComplete;
  return new Promise<OpenLoopResult>((resolve, reject) => {
    let stopped = false;
    let drainTimer: NodeJS.Timeout | null = null;
    const finish = (): void => {
      if (drainTimer !== null) clearTimeout(drainTimer);
      engine.onComplete = previous;
      const windowMs = o.durationMs;
      resolve({
        targetIops: o.iops,
        readFraction: o.readFraction,
        sizeBytes: o.sizeBytes,
        achievedIops: (achieved * 1000) / windowMs,
        arrivals,
        missed,
        errors,
        read: summarize(readHist),
        write: summarize(writeHist),
        windowMs,
      });
    };

    engine.onComplete = (req: IoRequest): void => {
      const i = req.ctx as number;
      const s = slots[i];
      const now = performance.now();
      if (req.result < 0) errors++;
      else if (s.measured) {
        achieved++;
        recordMs(req.op === Op.READ ? readHist : writeHist, now - s.intended);
      }
      free.push(i);
      if (stopped && free.length === maxOut) finish();
    };

    const pump = (): void => {
      try {
        const now = performance.now();
        let sent = 0;
        while (arrivalsGen.next <= now && arrivalsGen.next < end) {
          const t = arrivalsGen.advance();
          const measured = t >= windowStart;
          if (measured) arrivals++;
          const i = free.pop();
          if (i === undefined) {
            if (measured) missed++;
            continue;
          }
          const s = slots[i];
          s.intended = t;
          s.measured = measured;
          const r = s.req;
          r.op = random() < o.readFraction ? Op.READ : Op.WRITE;
          r.offset = spanOffset + Math.floor(random() * positions) * align;
          r.result = 0;
          engine.submit(r);
          sent++;
        }
        if (sent > 0) engine.kick();
        if (arrivalsGen.next >= end) {
          stopped = true;
          if (free.length === maxOut) finish();
          else drainTimer = setTimeout(() => reject(new Error(`open loop: ${maxOut - free.length} requests still in flight ${DRAIN_TIMEOUT_MS} ms after the window`)), DRAIN_TIMEOUT_MS);
          return;
        }
        const wait = arrivalsGen.next - performance.now();
        if (wait > SLEEP_THRESHOLD_MS) setTimeout(pump, wait - 1);
        else setImmediate(pump);
      } catch (err) {
        engine.onComplete = previous;
        reject(err as Error);
      }
    };
    setImmediate(pump);
  });
}
