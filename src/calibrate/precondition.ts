/**
 * Preconditioning: bring the device to the state it will serve in. A fresh
 * (or sparse) span is filled sequentially, so that reads hit real blocks
 * (reads of a file's holes never reach the device); then, optionally,
 * random 4 KiB writes run until throughput settles, as Flash is slower once
 * garbage collection has work to do (SNIA's steady state, simplified).
 */
import type { Engine } from '../storage/engine.ts';
import { assert } from '../util/assert.ts';
import { runClosedLoop, type ClosedLoopResult } from './closed-loop.ts';

export type Progress = (line: string) => void;

const FILL_CHUNK = 128 * 1024;
const FILL_QD = 16;
const RANDOM_QD = 32;

/** Writes every byte of [0, spanBytes) once, 128 KiB at a time, with percent progress. */
export async function fillSequential(engine: Engine, spanBytes: number, progress: Progress): Promise<ClosedLoopResult> {
  assert(spanBytes % Math.max(engine.blockSize, 1) === 0, 'fill: span must be block aligned');
  const chunks = Math.ceil(spanBytes / FILL_CHUNK);
  // Whole 128 KiB chunks first; a span that is not a multiple of 128 KiB gets its tail in 4 KiB writes below.
  const whole = Math.floor(spanBytes / FILL_CHUNK);
  let next = 0;
  let lastPct = -1;
  const res = await runClosedLoop(engine, {
    qd: FILL_QD,
    sizeBytes: FILL_CHUNK,
    readFraction: 0,
    maxMs: Infinity,
    nextOffset: () => (next < whole ? FILL_CHUNK * next++ : null),
    onWindow: (iops) => {
      const pct = Math.floor((100 * next) / chunks);
      if (pct !== lastPct) {
        lastPct = pct;
        progress(`precondition: sequential fill ${pct}% (${((iops * FILL_CHUNK) / 2 ** 20).toFixed(0)} MiB/s)`);
      }
    },
  });
  const tail = spanBytes - whole * FILL_CHUNK;
  if (tail > 0) {
    const bs = Math.max(engine.blockSize, 4096);
    let off = whole * FILL_CHUNK;
    await runClosedLoop(engine, {
      qd: 1,
      sizeBytes: Math.min(bs, tail),
      readFraction: 0,
      maxMs: Infinity,
      nextOffset: () => {
        if (off + Math.min(bs, tail) > spanBytes) return null;
        const o = off;
        off += bs;
        return o;
      },
    });
  }
  if (res.errors > 0) throw new Error(`precondition: ${res.errors} fill writes failed`);
  progress(`precondition: sequential fill 100% (${(spanBytes / 2 ** 20).toFixed(0)} MiB in ${(res.elapsedMs / 1000).toFixed(1)} s)`);
  return res;
}

export interface SteadyOptions {
  /** Give up waiting for steady state after this long. */
  maxMs: number;
  /** Window length; default 1000 ms. */
  windowMs?: number;
  /** Steady when the last `windows` windows differ by less than this fraction of their mean. Default 0.05. */
  tolerance?: number;
  windows?: number;
}

export interface SteadyResult extends ClosedLoopResult {
  steady: boolean;
}

/** True when the last `n` window rates lie within `tolerance` × their mean of each other. */
export function isSteady(windows: number[], n: number, tolerance: number): boolean {
  if (windows.length < n) return false;
  const last = windows.slice(-n);
  const mean = last.reduce((s, v) => s + v, 0) / n;
  return mean > 0 && (Math.max(...last) - Math.min(...last)) / mean < tolerance;
}

/** Random aligned 4 KiB writes over the span until throughput settles or the cap is reached. */
export async function randomWritesUntilSteady(engine: Engine, spanBytes: number, o: SteadyOptions, progress: Progress): Promise<SteadyResult> {
  const tolerance = o.tolerance ?? 0.05;
  const n = o.windows ?? 3;
  const size = Math.max(4096, engine.blockSize);
  const positions = Math.floor(spanBytes / size);
  assert(positions >= 1, 'precondition: span smaller than one write');
  const res = await runClosedLoop(engine, {
    qd: RANDOM_QD,
    sizeBytes: size,
    readFraction: 0,
    maxMs: o.maxMs,
    windowMs: o.windowMs ?? 1000,
    nextOffset: () => Math.floor(Math.random() * positions) * size,
    shouldStop: (w) => isSteady(w, n, tolerance),
    onWindow: (iops, w, elapsed) => {
      const pct = Math.min(100, Math.floor((100 * elapsed) / o.maxMs));
      progress(`precondition: random writes ${pct}% of the time cap, window ${w.length}: ${Math.round(iops)} IOPS`);
    },
  });
  if (res.errors > 0) throw new Error(`precondition: ${res.errors} random writes failed`);
  const steady = isSteady(res.windows, n, tolerance);
  progress(`precondition: random writes ${steady ? 'steady' : 'not steady at the time cap'} at ${Math.round(res.windows.at(-1) ?? res.iops)} IOPS`);
  return { ...res, steady };
}
