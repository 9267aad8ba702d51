/**
 * Prometheus text metrics for GET /metrics, read at scrape time from the
 * control plane (cumulative counters, gauges, admission state) and the
 * sampler (last second's p95). Uses a private prom-client Registry so that
 * nothing else in the process (or a second server in the same test process)
 * leaks into it.
 *
 * The latency histogram is written by hand: prom-client's Histogram can only
 * be fed one observation at a time, while the data plane already keeps
 * exact bucket counts (tenant-counters.ts). We expose the subset of our
 * buckets whose upper bounds are powers of two of microseconds (8 µs .. about
 * 72 min), which are exact cumulative counts because those bounds are
 * bucket edges.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { ControlPlane, DeviceView, TenantStats, TenantView, WorkerStatsView } from './control-plane.ts';
import type { Sampler } from './sampler.ts';
import type { PushState } from './stats-push.ts';
import { HIST_BUCKETS, bucketUpperUs } from '../dataplane/tenant-counters.ts';

/** Histogram bucket indexes exposed as `le` bounds: every 8th (powers of two µs). */
const EXPOSED_BUCKETS: number[] = [];
for (let b = 7; b < HIST_BUCKETS; b += 8) EXPOSED_BUCKETS.push(b);

interface Scrape {
  stats: TenantStats[];
  workers: WorkerStatsView[];
  tenants: Map<string, TenantView>;
  devices: DeviceView[];
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** `le` as Prometheus writes it: seconds, shortest exact decimal. */
function leSeconds(us: number): string {
  return String(us / 1e6);
}

export class AdminMetrics {
  readonly registry = new Registry();
  private readonly control: ControlPlane;
  private readonly sampler: Sampler;
  /** Filled at the start of each scrape so all families agree and stats() is read once. */
  private scrape: Scrape = { stats: [], workers: [], tenants: new Map(), devices: [] };

  constructor(control: ControlPlane, sampler: Sampler, pushState: () => PushState | null = () => null) {
    this.control = control;
    this.sampler = sampler;
    const registers = [this.registry];
    const m = this;

    // Counters: reset and re-set from the cumulative values at each scrape.
    const counter = (name: string, help: string, labelNames: string[], fill: (c: Counter<string>) => void): void => {
      new Counter({ name, help, labelNames, registers, collect() { this.reset(); fill(this); } });
    };
    counter('reflex_tenant_requests_total', 'Requests completed, by operation', ['tenant', 'op'], (c) => {
      for (const s of m.scrape.stats) {
        c.inc({ tenant: s.name, op: 'read' }, s.readOps);
        c.inc({ tenant: s.name, op: 'write' }, s.writeOps);
        c.inc({ tenant: s.name, op: 'other' }, s.otherOps);
      }
    });
    counter('reflex_tenant_bytes_total', 'Bytes transferred, by direction', ['tenant', 'dir'], (c) => {
      for (const s of m.scrape.stats) {
        c.inc({ tenant: s.name, dir: 'read' }, s.readBytes);
        c.inc({ tenant: s.name, dir: 'write' }, s.writeBytes);
      }
    });
    counter('reflex_tenant_errors_total', 'Requests answered with an error', ['tenant'], (c) => {
      for (const s of m.scrape.stats) c.inc({ tenant: s.name }, s.errors);
    });
    // Data connections per worker: accepted, and ended by why (a rise in
    // 'error' after a network event is keepalive closing dead peers).
    counter('reflex_worker_connections_opened_total', 'Data connections accepted (native and NBD)', ['worker'], (c) => {
      for (const w of m.scrape.workers) c.inc({ worker: String(w.worker) }, w.connectionsOpened);
    });
    counter('reflex_worker_connections_closed_total', 'Data connections ended, by reason: peer, error (reset or keepalive), protocol, revoked, timeout (NBD negotiation), shutdown', ['worker', 'reason'], (c) => {
      for (const w of m.scrape.workers) for (const [reason, n] of Object.entries(w.connectionsClosed)) c.inc({ worker: String(w.worker), reason }, n);
    });
    // Stats pushed to a cluster controller (--push-url); no samples when off.
    counter('reflex_stats_push_total', 'Stats pushes to the cluster controller, by result (skipped: the previous push was still running)', ['result'], (c) => {
      const p = pushState();
      if (p === null) return;
      c.inc({ result: 'sent' }, p.sent);
      c.inc({ result: 'failed' }, p.failed);
      c.inc({ result: 'skipped' }, p.skipped);
    });
    // Receive coalescing (see dataplane/coalescing.ts): how often a worker
    // slept to gather pipelined requests, and for how long in all.
    counter('reflex_worker_coalesce_checks_total', 'Event-loop turns that sent replies, each checked for a receive-coalescing sleep (none counted while coalescing is off)', ['worker'], (c) => {
      for (const w of m.scrape.workers) c.inc({ worker: String(w.worker) }, w.coalesceChecks);
    });
    counter('reflex_worker_coalesce_sleeps_total', 'Turns followed by a receive-coalescing sleep', ['worker'], (c) => {
      for (const w of m.scrape.workers) c.inc({ worker: String(w.worker) }, w.coalesceSleeps);
    });
    counter('reflex_worker_coalesce_sleep_seconds_total', 'Time asked of receive-coalescing sleeps', ['worker'], (c) => {
      for (const w of m.scrape.workers) c.inc({ worker: String(w.worker) }, w.coalesceSleptUs / 1e6);
    });
    counter('reflex_tenant_refused_total', 'Requests or connections refused (authentication, limits)', ['tenant'], (c) => {
      for (const s of m.scrape.stats) c.inc({ tenant: s.name }, s.refused);
    });

    // Gauges: set from the scrape; families with no value for a tenant omit it.
    const gauge = (name: string, help: string, labelNames: string[], fill: (g: Gauge<string>) => void): void => {
      new Gauge({ name, help, labelNames, registers, collect() { this.reset(); fill(this); } });
    };
    // A device queue that sits at its depth with requests awaiting a slot is saturated (as iostat's aqu-sz).
    gauge('reflex_worker_device_in_flight', 'Requests at the worker\'s devices (io_uring slots in use; every request in flight for other engines), sampled every 100 ms', ['worker'], (g) => {
      for (const w of m.scrape.workers) g.set({ worker: String(w.worker) }, w.deviceInFlight);
    });
    gauge('reflex_worker_device_awaiting_slot', 'Requests waiting in order for a free io_uring slot, sampled every 100 ms', ['worker'], (g) => {
      for (const w of m.scrape.workers) g.set({ worker: String(w.worker) }, w.deviceAwaitingSlot);
    });
    gauge('reflex_device_queue_depth', 'io_uring slots each worker keeps for the device (--queue-depth); absent for engines without slots', ['device'], (g) => {
      for (const d of m.scrape.devices) if (d.queueDepth !== null) g.set({ device: d.name }, d.queueDepth);
    });
    gauge('reflex_tenant_p95_seconds', 'p95 latency of the requests completed in the last sampled second', ['tenant'], (g) => {
      for (const s of m.scrape.stats) {
        const p95 = m.sampler.lastP95Us(s.name);
        if (!Number.isNaN(p95)) g.set({ tenant: s.name }, p95 / 1e6);
      }
    });
    gauge('reflex_tenant_p95_objective_seconds', 'p95 latency objective of a latency-critical tenant', ['tenant'], (g) => {
      for (const t of m.scrape.tenants.values()) if (t.p95Us !== undefined) g.set({ tenant: t.name }, t.p95Us / 1e6);
    });
    gauge('reflex_tenant_iops_objective', 'IOPS objective (4 KiB requests) of a latency-critical tenant', ['tenant'], (g) => {
      for (const t of m.scrape.tenants.values()) if (t.iops !== undefined) g.set({ tenant: t.name }, t.iops);
    });
    gauge('reflex_tenant_rate_tokens_per_second', 'Token rate the scheduler gives the tenant', ['tenant', 'class'], (g) => {
      for (const t of m.scrape.tenants.values()) g.set({ tenant: t.name, class: t.class }, t.rateTokensPerSec);
    });
    gauge('reflex_tenant_queue_depth', 'Requests waiting in the scheduler', ['tenant'], (g) => {
      for (const s of m.scrape.stats) g.set({ tenant: s.name }, s.queued);
    });
    gauge('reflex_tenant_connections', 'Open data connections', ['tenant'], (g) => {
      for (const s of m.scrape.stats) g.set({ tenant: s.name }, s.connections);
    });
    gauge('reflex_device_size_bytes', 'Device size', ['device', 'engine'], (g) => {
      for (const d of m.scrape.devices) g.set({ device: d.name, engine: d.engine }, d.size);
    });
    gauge('reflex_device_rate_tokens_per_second', 'Device token rate at the strictest admitted objective', ['device'], (g) => {
      for (const d of m.scrape.devices) g.set({ device: d.name }, d.deviceRateTokensPerSec);
    });
    gauge('reflex_device_allocated_bytes', 'Bytes of the device given to volumes', ['device'], (g) => {
      for (const d of m.scrape.devices) g.set({ device: d.name }, d.allocatedBytes);
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The full exposition text. */
  async text(): Promise<string> {
    this.scrape = {
      stats: this.control.stats(),
      workers: this.control.workerStats(),
      tenants: new Map(this.control.listTenants().map((t) => [t.name, t])),
      devices: this.control.listDevices(),
    };
    const rest = await this.registry.metrics();
    return rest + '\n' + this.latencyHistogram(this.scrape.stats);
  }

  private latencyHistogram(stats: TenantStats[]): string {
    const name = 'reflex_tenant_latency_seconds';
    const lines = [`# HELP ${name} Request latency (server side, arrival to completion)`, `# TYPE ${name} histogram`];
    for (const s of stats) {
      const tenant = `tenant="${escapeLabel(s.name)}"`;
      let cumulative = 0;
      let next = 0;
      for (let b = 0; b < HIST_BUCKETS; b++) {
        cumulative += s.histogram[b];
        if (b === EXPOSED_BUCKETS[next]) {
          lines.push(`${name}_bucket{${tenant},le="${leSeconds(bucketUpperUs(b))}"} ${cumulative}`);
          next++;
        }
      }
      lines.push(`${name}_bucket{${tenant},le="+Inf"} ${cumulative}`);
      lines.push(`${name}_sum{${tenant}} ${s.latencySumUs / 1e6}`);
      lines.push(`${name}_count{${tenant}} ${cumulative}`);
    }
    return lines.join('\n') + '\n';
  }
}
