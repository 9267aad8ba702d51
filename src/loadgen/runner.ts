/**
 * Runs a network benchmark in this thread or spread over worker threads
 * (each with its share of the connections and of the target rate), merges
 * the histograms, reads the server's CPU time around the measured window,
 * and returns one row per phase.
 */
import { Worker } from 'node:worker_threads';
import { STATUS_NAMES } from '../protocol/reflex-constants.ts';
import { LocalStatus } from '../client/errors.ts';
import { decodeHistogram, mergeHistograms, summarize, type Histogram } from './histogram.ts';
import { NetworkTarget, type NetworkTargetOptions } from './network-target.ts';
import { LocalTarget } from './local-target.ts';
import { fallbackWarning } from '../storage/open-engine.ts';
import type { IoTarget } from './target.ts';
import { runSequence, type PhasePlan } from './phases.ts';
import type { Progress } from './generator.ts';
import { processCpuSeconds } from './proc-cpu.ts';
import type { BenchRow } from './report.ts';

export interface BenchOptions {
  target: Omit<NetworkTargetOptions, 'connections' | 'maxLength' | 'span'>;
  /** Drive this file or block device directly through the storage engine instead of a server. */
  local?: { path: string; size?: number; engine?: 'auto' | 'uring' | 'fs'; queueDepth?: number };
  connections: number;
  threads: number;
  /** Bytes touched; default the whole volume. */
  span?: number;
  qd: number;
  /** Open-loop rates (whole run); empty for closed loop. */
  rates: number[];
  readPct: number;
  size: number;
  random: boolean;
  warmupSec: number;
  durationSec: number;
  lateUs: number;
  serverPid?: number;
}

export interface BenchOutcome {
  rows: BenchRow[];
  span: number;
  sectorSize: number;
  /** --local only: the engine that ran, and why io_uring did not when it did not. */
  local?: { engine: string; queueDepth?: number; fallbackReason?: string };
}

/** What a worker thread is given. */
export interface WorkerJob {
  target: NetworkTargetOptions;
  plan: PhasePlan;
}

export type WorkerEvent =
  | { type: 'window-start'; phase: number }
  | { type: 'window-end'; phase: number }
  | { type: 'progress'; phase: number; p: Progress }
  | { type: 'result'; phase: number; completed: number; errors: number; firstError: number; late: number; dropped: number; windowSec: number; histogram: string }
  | { type: 'failed'; message: string };

interface Merged {
  completed: number;
  errors: number;
  firstError: number;
  missed: number;
  windowSec: number;
  parts: Histogram[];
}

export async function runBench(o: BenchOptions, progress?: (phase: number, p: Progress) => void, warn?: (line: string) => void): Promise<BenchOutcome> {
  if (!Number.isInteger(o.threads) || o.threads < 1) throw new RangeError(`threads ${o.threads} must be >= 1`);
  if (o.connections < o.threads) throw new RangeError(`${o.connections} connection(s) cannot be shared by ${o.threads} threads`);
  if (o.local !== undefined && o.threads !== 1) throw new RangeError('--local runs in one thread');
  // One connection in this thread learns the volume size and sector size.
  const probe: IoTarget =
    o.local !== undefined
      ? await LocalTarget.open({ ...o.local, lanes: o.connections, maxLength: o.size, poll: o.rates.length === 0 })
      : await NetworkTarget.open({ ...o.target, connections: o.threads === 1 ? o.connections : 1, span: o.span, maxLength: o.size });
  let local: BenchOutcome['local'];
  if (probe instanceof LocalTarget) {
    local = { engine: probe.engine.name };
    if (probe.engine.queueDepth !== undefined) local.queueDepth = probe.engine.queueDepth;
    // A local run on the fs engine measures the page cache, not the device: say so before it starts.
    if (probe.fallbackReason !== undefined) {
      local.fallbackReason = probe.fallbackReason;
      warn?.(fallbackWarning(probe.fallbackReason));
    }
  }
  const span = o.span ?? probe.size;
  if (span > probe.size) {
    await probe.close();
    throw new RangeError(`span ${span} exceeds the volume's ${probe.size} bytes`);
  }
  const sectorSize = probe.sectorSize;
  const spec: PhasePlan['spec'] = {
    qd: o.qd,
    readPct: o.readPct,
    size: o.size,
    random: o.random,
    span,
    warmupSec: o.warmupSec,
    durationSec: o.durationSec,
    lateUs: o.lateUs,
    drainSec: o.target.timeoutMs / 1000 + 1,
  };
  const phases = Math.max(1, o.rates.length);
  const merged: Merged[] = Array.from({ length: phases }, () => ({ completed: 0, errors: 0, firstError: 0, missed: 0, windowSec: 0, parts: [] }));
  const cpu = { start: new Array<number>(phases).fill(0), end: new Array<number>(phases).fill(0), wallStart: new Array<number>(phases).fill(0), wallEnd: new Array<number>(phases).fill(0) };
  const cpuNow = (): number => (o.serverPid !== undefined ? processCpuSeconds(o.serverPid) : 0);
  const onStart = (i: number): void => {
    cpu.start[i] = cpuNow();
    cpu.wallStart[i] = performance.now();
  };
  const onEnd = (i: number): void => {
    cpu.end[i] = cpuNow();
    cpu.wallEnd[i] = performance.now();
  };

  if (o.threads === 1) {
    try {
      await runSequence(probe, { spec, rates: o.rates }, {
        onWindowStart: onStart,
        onWindowEnd: onEnd,
        onProgress: progress,
        onResult: (i, r) => addResult(merged[i], r.completed, r.errors, r.firstError, r.late + r.dropped, r.windowSec, r.histogram),
      });
    } finally {
      await probe.close();
    }
  } else {
    await probe.close();
    await runThreads(o, spec, span, sectorSize, merged, onStart, onEnd, progress);
  }

  const rows: BenchRow[] = merged.map((m, i) => {
    const h = mergeHistograms(m.parts);
    const windowSec = m.windowSec;
    const achieved = windowSec > 0 ? m.completed / windowSec : 0;
    const row: BenchRow = {
      requestedIops: o.rates[i] ?? 0,
      achievedIops: achieved,
      completed: m.completed,
      errors: m.errors,
      missed: m.missed,
      windowSec,
      latencyUs: summarize(h),
    };
    if (m.firstError !== 0) row.firstError = statusName(m.firstError);
    if (o.serverPid !== undefined) {
      const cpuSec = cpu.end[i] - cpu.start[i];
      const wallSec = (cpu.wallEnd[i] - cpu.wallStart[i]) / 1000;
      row.serverCpuSec = cpuSec;
      row.iopsPerServerCore = cpuSec > 0 ? achieved / (cpuSec / wallSec) : 0;
    }
    return row;
  });
  return local === undefined ? { rows, span, sectorSize } : { rows, span, sectorSize, local };
}

function addResult(m: Merged, completed: number, errors: number, firstError: number, missed: number, windowSec: number, h: Histogram): void {
  m.completed += completed;
  m.errors += errors;
  if (m.firstError === 0) m.firstError = firstError;
  m.missed += missed;
  // Threads measure (nearly) the same window; the longest is the honest divisor.
  m.windowSec = Math.max(m.windowSec, windowSec);
  m.parts.push(h);
}

function statusName(status: number): string {
  if (status === LocalStatus.TIMEOUT) return 'ETIMEDOUT';
  if (status === LocalStatus.CLOSED) return 'ECONNRESET';
  if (status === LocalStatus.PROTOCOL) return 'EPROTO';
  return STATUS_NAMES[status] ?? `0x${status.toString(16)}`;
}

async function runThreads(
  o: BenchOptions,
  spec: PhasePlan['spec'],
  span: number,
  sectorSize: number,
  merged: Merged[],
  onStart: (i: number) => void,
  onEnd: (i: number) => void,
  progress?: (phase: number, p: Progress) => void,
): Promise<void> {
  const latest: Array<Progress | null> = new Array(o.threads).fill(null);
  const jobs = Array.from({ length: o.threads }, (_, t) => {
    const conns = Math.floor(o.connections / o.threads) + (t < o.connections % o.threads ? 1 : 0);
    const share = conns / o.connections;
    const job: WorkerJob = {
      target: { ...o.target, hello: false, sectorSize, span, connections: conns, maxLength: o.size },
      plan: { spec, rates: o.rates.map((r) => r * share) },
    };
    return new Promise<void>((resolve, reject) => {
      const w = new Worker(new URL('./worker.ts', import.meta.url), { workerData: job, name: `reflex-bench-${t}` });
      w.on('message', (ev: WorkerEvent) => {
        switch (ev.type) {
          case 'window-start':
            if (t === 0) onStart(ev.phase);
            break;
          case 'window-end':
            if (t === 0) onEnd(ev.phase);
            break;
          case 'progress':
            latest[t] = ev.p;
            if (t === 0 && progress !== undefined) progress(ev.phase, sumProgress(latest));
            break;
          case 'result':
            addResult(merged[ev.phase], ev.completed, ev.errors, ev.firstError, ev.late + ev.dropped, ev.windowSec, decodeHistogram(ev.histogram));
            break;
          case 'failed':
            reject(new Error(`load thread ${t}: ${ev.message}`));
            break;
        }
      });
      w.once('error', reject);
      w.once('exit', () => resolve());
    });
  });
  await Promise.all(jobs);
}

function sumProgress(all: Array<Progress | null>): Progress {
  const out: Progress = { elapsedSec: 0, warmingUp: false, completed: 0, iops: 0, p99Us: 0 };
  for (const p of all) {
    if (p === null) continue;
    out.elapsedSec = Math.max(out.elapsedSec, p.elapsedSec);
    out.warmingUp ||= p.warmingUp;
    out.completed += p.completed;
    out.iops += p.iops;
    out.p99Us = Math.max(out.p99Us, p.p99Us);
  }
  return out;
}


