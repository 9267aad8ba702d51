/**
 * The JSON behind GET /api/stats and the status page: per tenant its
 * objective, the last sampled second (IOPS, bytes/s, p95), live gauges
 * (connections, queue depth), cumulative error and refusal counts, and the
 * sampled series for charts.
 */
import type { ControlPlane, DeviceView, WorkerStatsView } from './control-plane.ts';
import type { Sampler } from './sampler.ts';

export interface TenantStatsView {
  id: number;
  name: string;
  class: 'LC' | 'BE';
  device: string;
  objective: { iops: number; p95Us: number; readPct: number } | null;
  rateTokensPerSec: number;
  current: {
    iops: number | null;
    bytesPerSec: number | null;
    p95Us: number | null;
    /** null: no objective, or no requests in the last second. */
    meetsObjective: boolean | null;
  };
  connections: number;
  queued: number;
  errors: number;
  refused: number;
  totals: { readOps: number; writeOps: number; readBytes: number; writeBytes: number };
  series: { t: Array<number | null>; iops: Array<number | null>; bytesPerSec: Array<number | null>; p95Us: Array<number | null> };
}

export interface StatsView {
  now: number;
  intervalMs: number;
  devices: DeviceView[];
  /** Per data-plane worker, cumulative since start (receive coalescing). */
  workers: WorkerStatsView[];
  tenants: TenantStatsView[];
}

const nullIfNaN = (v: number): number | null => (Number.isNaN(v) ? null : v);

export function statsView(control: ControlPlane, sampler: Sampler, now = Date.now()): StatsView {
  const views = new Map(control.listTenants().map((t) => [t.name, t]));
  const tenants: TenantStatsView[] = [];
  for (const s of control.stats()) {
    const v = views.get(s.name);
    if (v === undefined) continue;
    const series = sampler.series(s.name);
    const objective = v.class === 'LC' && v.iops !== undefined && v.p95Us !== undefined ? { iops: v.iops, p95Us: v.p95Us, readPct: v.readPct ?? 100 } : null;
    const p95 = series ? nullIfNaN(series.p95Us.last()) : null;
    tenants.push({
      id: s.id,
      name: s.name,
      class: s.class,
      device: v.device,
      objective,
      rateTokensPerSec: v.rateTokensPerSec,
      current: {
        iops: series ? nullIfNaN(series.iops.last()) : null,
        bytesPerSec: series ? nullIfNaN(series.bytesPerSec.last()) : null,
        p95Us: p95,
        meetsObjective: objective === null || p95 === null ? null : p95 <= objective.p95Us,
      },
      connections: s.connections,
      queued: s.queued,
      errors: s.errors,
      refused: s.refused,
      totals: { readOps: s.readOps, writeOps: s.writeOps, readBytes: s.readBytes, writeBytes: s.writeBytes },
      series: {
        t: series?.t.toArray() ?? [],
        iops: series?.iops.toArray() ?? [],
        bytesPerSec: series?.bytesPerSec.toArray() ?? [],
        p95Us: series?.p95Us.toArray() ?? [],
      },
    });
  }
  return { now, intervalMs: sampler.intervalMs, devices: control.listDevices(), workers: control.workerStats(), tenants };
}
