/**
 * Result rows and the human table, laid out like the original ReFlex IX
 * client's output: one row per target rate, latencies in microseconds.
 */
import type { LatencySummary } from './histogram.ts';

export interface BenchRow {
  /** Open loop: the target rate; closed loop: 0. */
  requestedIops: number;
  achievedIops: number;
  completed: number;
  errors: number;
  /** Name of the first error's code, when there were errors. */
  firstError?: string;
  /** Open loop: sends later than the threshold plus arrivals that could not be issued. */
  missed: number;
  windowSec: number;
  latencyUs: LatencySummary;
  /** With --server-pid: the server's CPU seconds over the window. */
  serverCpuSec?: number;
  /** IOPS divided by server cores busy (CPU seconds / wall seconds). */
  iopsPerServerCore?: number;
}

const COLUMNS: Array<[string, (r: BenchRow) => string]> = [
  ['RQ_IOPS', (r) => (r.requestedIops > 0 ? String(Math.round(r.requestedIops)) : 'closed')],
  ['IOPS', (r) => String(Math.round(r.achievedIops))],
  ['avg', (r) => fmtUs(r.latencyUs.avg)],
  ['p10', (r) => fmtUs(r.latencyUs.p10)],
  ['p50', (r) => fmtUs(r.latencyUs.p50)],
  ['p90', (r) => fmtUs(r.latencyUs.p90)],
  ['p95', (r) => fmtUs(r.latencyUs.p95)],
  ['p99', (r) => fmtUs(r.latencyUs.p99)],
  ['p99.9', (r) => fmtUs(r.latencyUs.p999)],
  ['max', (r) => fmtUs(r.latencyUs.max)],
  ['missed', (r) => String(r.missed)],
  ['errors', (r) => String(r.errors)],
];

function fmtUs(v: number): string {
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}

/** The table, right-aligned columns, latencies in µs; server CPU columns when measured. */
export function formatTable(rows: BenchRow[]): string {
  const cols = [...COLUMNS];
  if (rows.some((r) => r.serverCpuSec !== undefined)) {
    cols.push(['srv_cpu_s', (r) => (r.serverCpuSec ?? 0).toFixed(2)]);
    cols.push(['IOPS/core', (r) => String(Math.round(r.iopsPerServerCore ?? 0))]);
  }
  const cells = rows.map((r) => cols.map(([, f]) => f(r)));
  const widths = cols.map(([h], i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (values: string[]): string => values.map((v, i) => v.padStart(widths[i])).join('  ');
  return [line(cols.map(([h]) => h)), ...cells.map(line)].join('\n') + '\n(latencies in microseconds)';
}
