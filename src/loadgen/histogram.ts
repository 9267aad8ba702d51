/**
 * Latency histograms: HdrHistogram (3 significant digits) over nanoseconds,
 * reported in microseconds. The pure-JS build is used: recording is a few
 * array operations either way, and it needs no asynchronous WebAssembly
 * set-up inside every worker thread. Histograms cross threads in the HDR
 * compressed encoding and are merged by adding counts.
 */
import * as hdr from 'hdr-histogram-js';

export type Histogram = hdr.Histogram;

export function newHistogram(): Histogram {
  return hdr.build({ bitBucketSize: 32, numberOfSignificantValueDigits: 3, useWebAssembly: false });
}

/** Records one latency given in milliseconds (performance.now() units). */
export function recordMs(h: Histogram, ms: number): void {
  h.recordValue(ms > 0 ? Math.round(ms * 1e6) : 0);
}

export function encodeHistogram(h: Histogram): string {
  return hdr.encodeIntoCompressedBase64(h);
}

export function decodeHistogram(text: string): Histogram {
  return hdr.decodeFromCompressedBase64(text, 32, false);
}

/** Adds `parts` into a fresh histogram. */
export function mergeHistograms(parts: Histogram[]): Histogram {
  const out = newHistogram();
  for (const p of parts) out.add(p);
  return out;
}

export interface LatencySummary {
  count: number;
  avg: number;
  p10: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
}

/** Latency percentiles in microseconds (zeros when nothing was recorded). */
export function summarize(h: Histogram): LatencySummary {
  const n = h.totalCount;
  if (n === 0) return { count: 0, avg: 0, p10: 0, p50: 0, p90: 0, p95: 0, p99: 0, p999: 0, max: 0 };
  const us = (ns: number): number => Math.round(ns / 10) / 100;
  return {
    count: n,
    avg: us(h.mean),
    p10: us(h.getValueAtPercentile(10)),
    p50: us(h.getValueAtPercentile(50)),
    p90: us(h.getValueAtPercentile(90)),
    p95: us(h.getValueAtPercentile(95)),
    p99: us(h.getValueAtPercentile(99)),
    p999: us(h.getValueAtPercentile(99.9)),
    // The percentile form, not maxValue: it is what survives encoding and merging.
    max: us(h.getValueAtPercentile(100)),
  };
}
