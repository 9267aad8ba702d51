/**
 * Axis scales for the SVG charts: map data values to pixels and choose
 * readable tick positions (1-2-5 steps on linear axes, decades on log axes).
 */
import { assert } from '../util/assert.ts';

export interface Scale {
  /** Data value to pixel coordinate. */
  map(v: number): number;
  ticks: number[];
  log: boolean;
}

/** A "nice" step (1, 2 or 5 × 10^k) giving about `count` intervals over `span`. */
export function niceStep(span: number, count: number): number {
  assert(span > 0 && count > 0, 'niceStep needs a positive span and count');
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  const nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return nice * mag;
}

/**
 * Domain [lo, hi] widened to whole ticks. A degenerate domain (one value)
 * is padded so that the scale stays invertible.
 */
export function linearScale(lo: number, hi: number, pxFrom: number, pxTo: number, includeZero: boolean): Scale {
  assert(Number.isFinite(lo) && Number.isFinite(hi), 'linearScale: finite domain required');
  if (includeZero) {
    lo = Math.min(lo, 0);
    hi = Math.max(hi, 0);
  }
  if (hi === lo) {
    const pad = hi === 0 ? 1 : Math.abs(hi) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const step = niceStep(hi - lo, 5);
  const a = Math.floor(lo / step) * step;
  const b = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  // Counting steps (not adding floats) keeps ticks like 0.3 exact enough to print.
  const n = Math.round((b - a) / step);
  for (let i = 0; i <= n; i++) ticks.push(Number((a + i * step).toPrecision(12)));
  const map = (v: number): number => pxFrom + ((v - a) / (b - a)) * (pxTo - pxFrom);
  return { map, ticks, log: false };
}

/** Log10 scale over whole decades containing [lo, hi]; both must be positive. */
export function logScale(lo: number, hi: number, pxFrom: number, pxTo: number): Scale {
  assert(lo > 0 && hi > 0 && Number.isFinite(lo) && Number.isFinite(hi), 'logScale: positive finite domain required');
  const a = Math.floor(Math.log10(lo));
  let b = Math.ceil(Math.log10(hi));
  if (a === b) b = a + 1;
  const ticks: number[] = [];
  for (let e = a; e <= b; e++) ticks.push(10 ** e);
  // With only one or two decades, add 2× and 5× ticks so the axis is readable.
  if (b - a <= 2) {
    const extra: number[] = [];
    for (let e = a; e < b; e++) extra.push(2 * 10 ** e, 5 * 10 ** e);
    ticks.push(...extra);
    ticks.sort((x, y) => x - y);
  }
  const map = (v: number): number => pxFrom + ((Math.log10(v) - a) / (b - a)) * (pxTo - pxFrom);
  return { map, ticks, log: true };
}

/** Short tick label: 1500 -> "1.5k", 2000000 -> "2M", 0.25 -> "0.25". */
export function formatTick(v: number): string {
  const abs = Math.abs(v);
  const trim = (x: number): string => String(Number(x.toPrecision(3)));
  if (abs >= 1e9) return `${trim(v / 1e9)}G`;
  if (abs >= 1e6) return `${trim(v / 1e6)}M`;
  if (abs >= 1e4) return `${trim(v / 1e3)}k`;
  return trim(v);
}
