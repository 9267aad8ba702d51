/**
 * The control plane's core on the main thread: it owns the registry, applies
 * every accepted change to the running workers (a state snapshot message;
 * never on the per-request path), persists it through the store, and reads
 * the workers' shared counters for metrics and the status page.
 *
 * The admin API, the CLI and config-file seeding all go through these
 * methods, so there is one path for each kind of change.
 */
import type { TenantSpec } from './config.ts';
import { MAX_TENANTS, Registry, type ScrubRecord, type CredentialRecord, type PortRecord, type RegistrySnapshot, type Result, type TenantRecord, type VolumeRecord } from './registry.ts';
import { Field, HIST_BUCKETS, TenantCounters, quantileUs } from '../dataplane/tenant-counters.ts';
import { CLOSE_REASONS, WorkerField, type CloseReason, type WorkerStats } from '../dataplane/worker-stats.ts';
import type { PlaneState } from '../dataplane/plane-state.ts';

/** Persists registry snapshots; see store.ts. */
export interface RegistryStore {
  load(): RegistrySnapshot | null;
  save(s: RegistrySnapshot): void;
  close(): void;
}

export interface TenantCreate {
  name: string;
  class: 'LC' | 'BE';
  iops?: number;
  p95Us?: number;
  readPct?: number;
  /** Device name; default: the first device. */
  device?: string;
  /** Create a volume of this many bytes owned by the tenant, named like it. */
  volumeSize?: number;
  /** Bind this v1 port to the tenant and its new volume (0: pick a free one). */
  port?: number;
  /** Create a credential and return its secret once. */
  credential?: boolean;
}

export interface TenantCreated {
  tenant: TenantView;
  /** Tokens/s the tenant gets now. */
  rate: number;
  deviceRate: number;
  volume?: VolumeRecord;
  port?: number;
  /** Returned only here, once. */
  secret?: string;
}

export interface TenantView {
  id: number;
  name: string;
  device: string;
  class: 'LC' | 'BE';
  iops?: number;
  p95Us?: number;
  readPct?: number;
  rateTokensPerSec: number;
  hasCredential: boolean;
  volumes: string[];
  ports: number[];
}

export interface TenantStats {
  id: number;
  name: string;
  class: 'LC' | 'BE';
  readOps: number;
  writeOps: number;
  otherOps: number;
  readBytes: number;
  writeBytes: number;
  errors: number;
  refused: number;
  connections: number;
  queued: number;
  latencySumUs: number;
  /** Cumulative latency histogram (bucket counts; see tenant-counters.ts). */
  histogram: Float64Array;
}

export interface DeviceView {
  name: string;
  size: number;
  sectorSize: number;
  engine: string;
  /** Requests each worker keeps at the device at once (io_uring slots); null: the engine has no such limit. */
  queueDepth: number | null;
  deviceRateTokensPerSec: number;
  readCost4k: number;
  writeCost4k: number;
  volumes: number;
  allocatedBytes: number;
  /** Bytes freed by deleted or shrunk volumes and not yet zeroed (reserved until they are). */
  scrubPendingBytes: number;
}

export interface WorkerStatsView {
  worker: number;
  /** Event-loop turns that sent replies (each checked for a coalescing sleep). */
  coalesceChecks: number;
  coalesceSleeps: number;
  coalesceSleptUs: number;
  /** Data connections accepted (native and NBD). */
  connectionsOpened: number;
  /** Data connections ended, by why (see CLOSE_REASONS in dataplane/worker-stats.ts). */
  connectionsClosed: Record<CloseReason, number>;
  /** Requests at the worker's devices now (sampled every 100 ms), and waiting for a ring slot. */
  deviceInFlight: number;
  deviceAwaitingSlot: number;
}

/** What the server gives the control plane: apply state to workers, read counters. */
export interface PlaneHost {
  counters: TenantCounters;
  workerStats: WorkerStats;
  engineOf(device: string): string;
  /** The device's engine queue depth per worker, or null (see DeviceView.queueDepth). */
  queueDepthOf(device: string): number | null;
  apply(state: PlaneState): Promise<void>;
  /** Resolves port 0 to a free port the workers can bind. */
  freePort(): Promise<number>;
  /** Zeroes a byte range of a device durably; resolves to 0 or a negative errno. */
  zero(device: string, offset: number, length: number): Promise<number>;
}

export class ControlPlane {
  readonly registry: Registry;
  private readonly host: PlaneHost;
  private readonly store: RegistryStore | null;
  private readonly changeListeners: Array<() => void> = [];
  /** The scrub in progress (one at a time), or null. */
  private scrubbing: Promise<void> | null = null;
  /** Scrubs that failed, with the errno, for the log and tests. */
  readonly scrubFailures: Array<{ range: ScrubRecord; error: number }> = [];

  constructor(registry: Registry, host: PlaneHost, store: RegistryStore | null) {
    this.registry = registry;
    this.host = host;
    this.store = store;
  }

  onChange(f: () => void): void {
    this.changeListeners.push(f);
  }

  /** Pushes the registry to the workers and the store, then zeroes what the change freed. */
  async commit(): Promise<void> {
    const state = this.planeState();
    await this.host.apply(state);
    this.store?.save(this.registry.snapshot());
    for (const f of this.changeListeners) f();
    await this.scrub();
  }

  /**
   * Zeroes every freed range, oldest first. Runs only after the workers
   * applied the change that freed it, so no connection can reach the range
   * any more; until its zeroing is durable the range stays reserved (and
   * persisted), so no new volume sees the old bytes, even across a crash.
   * A range that fails to zero stays reserved and is tried again by the next
   * scrub (the next change, or the next start). One scrub at a time.
   */
  scrub(): Promise<void> {
    this.scrubbing ??= this.scrubAll().finally(() => {
      this.scrubbing = null;
    });
    return this.scrubbing;
  }

  private async scrubAll(): Promise<void> {
    const failed = new Set<ScrubRecord>();
    for (;;) {
      const next = this.registry.scrubs.find((r) => !failed.has(r));
      if (next === undefined) return;
      const error = await this.host.zero(next.device, next.offset, next.size);
      if (error < 0) {
        failed.add(next);
        this.scrubFailures.push({ range: { ...next }, error });
        continue;
      }
      this.registry.scrubDone(next);
      this.store?.save(this.registry.snapshot());
    }
  }

  planeState(): PlaneState {
    const r = this.registry;
    const rates = r.rates();
    const devices = [...r.devices.keys()];
    return {
      tenants: [...r.tenants.values()].map((t) => ({
        id: t.id,
        name: t.name,
        device: devices.indexOf(t.device),
        kind: t.spec.class,
        rate: rates.get(t.id) ?? 0,
        p95Us: t.spec.class === 'LC' ? t.spec.p95Us! : null,
      })),
      volumes: [...r.volumes.values()].map((v) => ({
        name: v.name,
        device: devices.indexOf(v.device),
        owner: r.tenants.get(v.owner)!.id,
        offset: v.offset,
        size: v.size,
      })),
      credentials: [...r.credentials.values()].map((c) => ({ tenant: r.tenants.get(c.tenant)!.id, secret: c.secret })),
      ports: [...r.ports.values()].map((p) => ({ port: p.port, tenant: r.tenants.get(p.tenant)!.id, volume: p.volume })),
    };
  }

  // ---- tenants -------------------------------------------------------------

  async createTenant(body: TenantCreate): Promise<Result<TenantCreated>> {
    const r = this.registry;
    const device = body.device ?? [...r.devices.keys()][0];
    const spec: TenantSpec = { name: body.name, class: body.class };
    if (body.class === 'LC') Object.assign(spec, { iops: body.iops, p95Us: body.p95Us, readPct: body.readPct ?? 100 });
    const made = r.createTenant(body.name, device, spec);
    if (!made.ok) return made;
    const out: TenantCreated = { tenant: this.view(made.value.tenant), rate: 0, deviceRate: 0 };
    const undo = (reason: Result<never>): Result<TenantCreated> => {
      if (out.volume) r.removeVolume(out.volume.name, false);
      r.removeTenant(body.name);
      return reason;
    };
    if (body.volumeSize !== undefined) {
      const v = r.createVolume({ name: body.name, owner: body.name, size: body.volumeSize, device });
      if (!v.ok) return undo(v);
      out.volume = v.value;
      if (body.port !== undefined) {
        const port = body.port === 0 ? await this.host.freePort() : body.port;
        const p = r.bindPort({ port, tenant: body.name, volume: body.name });
        if (!p.ok) return undo(p);
        out.port = port;
      }
    } else if (body.port !== undefined) {
      return undo({ ok: false, status: 400, reason: 'a port needs a volume: give volumeSize' });
    }
    if (body.credential) out.secret = (r.createCredential(body.name) as { value: CredentialRecord }).value.secret;
    this.host.counters.reset(made.value.tenant.id);
    await this.commit();
    out.tenant = this.view(made.value.tenant);
    out.rate = r.rates().get(made.value.tenant.id) ?? 0;
    out.deviceRate = r.table(device).deviceRate();
    return { ok: true, value: out };
  }

  async updateTenant(name: string, body: Partial<TenantCreate>): Promise<Result<TenantView>> {
    const t = this.registry.tenants.get(name);
    if (t === undefined) return { ok: false, status: 404, reason: `no tenant ${name}` };
    const cls = body.class ?? t.spec.class;
    const spec: TenantSpec = { name, class: cls };
    if (cls === 'LC') {
      Object.assign(spec, {
        iops: body.iops ?? t.spec.iops,
        p95Us: body.p95Us ?? t.spec.p95Us,
        readPct: body.readPct ?? t.spec.readPct ?? 100,
      });
    }
    const u = this.registry.updateTenant(name, spec);
    if (!u.ok) return u;
    await this.commit();
    return { ok: true, value: this.view(u.value.tenant) };
  }

  /** Removes a tenant with its volumes, ports and credential. */
  async removeTenant(name: string): Promise<Result<TenantView>> {
    const t = this.registry.tenants.get(name);
    if (t === undefined) return { ok: false, status: 404, reason: `no tenant ${name}` };
    const view = this.view(t);
    for (const v of [...this.registry.volumes.values()]) if (v.owner === name) this.registry.removeVolume(v.name);
    const r = this.registry.removeTenant(name);
    if (!r.ok) return r;
    await this.commit();
    return { ok: true, value: view };
  }

  listTenants(): TenantView[] {
    return [...this.registry.tenants.values()].map((t) => this.view(t));
  }

  getTenant(name: string): TenantView | undefined {
    const t = this.registry.tenants.get(name);
    return t && this.view(t);
  }

  private view(t: TenantRecord): TenantView {
    const r = this.registry;
    const v: TenantView = {
      id: t.id,
      name: t.name,
      device: t.device,
      class: t.spec.class,
      rateTokensPerSec: r.rates().get(t.id) ?? 0,
      hasCredential: r.credentials.has(t.name),
      volumes: [...r.volumes.values()].filter((x) => x.owner === t.name).map((x) => x.name),
      ports: [...r.ports.values()].filter((p) => p.tenant === t.name).map((p) => p.port),
    };
    if (t.spec.class === 'LC') Object.assign(v, { iops: t.spec.iops, p95Us: t.spec.p95Us, readPct: t.spec.readPct });
    return v;
  }

  // ---- volumes, credentials, ports ----------------------------------------

  async createVolume(v: { name: string; owner: string; size: number; offset?: number; device?: string }): Promise<Result<VolumeRecord>> {
    const r = this.registry.createVolume(v);
    if (r.ok) await this.commit();
    return r;
  }

  /**
   * Resizes a volume in place (see Registry.resizeVolume). Native
   * connections to a grown volume reach the new range at once (and are told,
   * if their HELLO asked); NBD connections keep the size they negotiated. A
   * shrink cuts them all, and the freed tail is zeroed before anyone else
   * may use it.
   */
  async resizeVolume(name: string, size: number): Promise<Result<VolumeRecord>> {
    const r = this.registry.resizeVolume(name, size);
    if (r.ok) await this.commit();
    return r.ok ? { ok: true, value: { ...r.value } } : r;
  }

  getVolume(name: string): VolumeRecord | undefined {
    const v = this.registry.volumes.get(name);
    return v && { ...v };
  }

  async removeVolume(name: string): Promise<Result<VolumeRecord>> {
    const r = this.registry.removeVolume(name);
    if (r.ok) await this.commit();
    return r;
  }

  listVolumes(): VolumeRecord[] {
    return [...this.registry.volumes.values()];
  }

  /** A new secret for the tenant (returned once; stored for verification). */
  async createCredential(tenant: string): Promise<Result<CredentialRecord>> {
    const r = this.registry.createCredential(tenant);
    if (r.ok) await this.commit();
    return r;
  }

  async removeCredential(tenant: string): Promise<Result<CredentialRecord>> {
    const r = this.registry.removeCredential(tenant);
    if (r.ok) await this.commit();
    return r;
  }

  async bindPort(p: PortRecord): Promise<Result<PortRecord>> {
    const port = p.port === 0 ? await this.host.freePort() : p.port;
    const r = this.registry.bindPort({ ...p, port });
    if (r.ok) await this.commit();
    return r;
  }

  async unbindPort(port: number): Promise<Result<PortRecord>> {
    const r = this.registry.unbindPort(port);
    if (r.ok) await this.commit();
    return r;
  }

  // ---- observation ---------------------------------------------------------

  listDevices(): DeviceView[] {
    const r = this.registry;
    return [...r.devices.values()].map((d) => {
      const vols = [...r.volumes.values()].filter((v) => v.device === d.name);
      const table = r.table(d.name);
      return {
        name: d.name,
        size: d.size,
        sectorSize: d.sectorSize,
        engine: this.host.engineOf(d.name),
        queueDepth: this.host.queueDepthOf(d.name),
        deviceRateTokensPerSec: table.deviceRate(),
        readCost4k: table.model.readCost4k,
        writeCost4k: table.model.writeCost4k,
        volumes: vols.length,
        allocatedBytes: vols.reduce((a, v) => a + v.size, 0),
        scrubPendingBytes: r.scrubs.filter((x) => x.device === d.name).reduce((a, x) => a + x.size, 0),
      };
    });
  }

  /** Cumulative per-worker counters (receive coalescing), one entry per worker. */
  workerStats(): WorkerStatsView[] {
    const w = this.host.workerStats;
    const out: WorkerStatsView[] = [];
    for (let i = 0; i < w.workers; i++) {
      out.push({
        worker: i,
        coalesceChecks: w.get(i, WorkerField.COALESCE_CHECKS),
        coalesceSleeps: w.get(i, WorkerField.COALESCE_SLEEPS),
        coalesceSleptUs: w.get(i, WorkerField.COALESCE_SLEPT_US),
        connectionsOpened: w.get(i, WorkerField.CONNECTIONS_OPENED),
        connectionsClosed: Object.fromEntries(CLOSE_REASONS.map((r, k) => [r, w.get(i, WorkerField.CONNECTIONS_CLOSED + k)])) as Record<CloseReason, number>,
        deviceInFlight: w.get(i, WorkerField.DEVICE_IN_FLIGHT),
        deviceAwaitingSlot: w.get(i, WorkerField.DEVICE_AWAITING_SLOT),
      });
    }
    return out;
  }

  /** Cumulative counters per tenant, summed over workers. Rates come from differences of two calls. */
  stats(): TenantStats[] {
    const c = this.host.counters;
    return [...this.registry.tenants.values()].map((t) => ({
      id: t.id,
      name: t.name,
      class: t.spec.class,
      readOps: c.total(t.id, Field.READ_OPS),
      writeOps: c.total(t.id, Field.WRITE_OPS),
      otherOps: c.total(t.id, Field.OTHER_OPS),
      readBytes: c.total(t.id, Field.READ_BYTES),
      writeBytes: c.total(t.id, Field.WRITE_BYTES),
      errors: c.total(t.id, Field.ERRORS),
      refused: c.total(t.id, Field.REFUSED),
      connections: c.total(t.id, Field.CONNECTIONS),
      queued: c.total(t.id, Field.QUEUED),
      latencySumUs: c.total(t.id, Field.LATENCY_SUM_US),
      histogram: c.histogram(t.id),
    }));
  }

  close(): void {
    this.store?.close();
  }
}

/** p-quantile, µs, of the requests between two cumulative histograms. */
export function windowQuantileUs(now: Float64Array, before: Float64Array | null, p: number): number {
  if (before === null) return quantileUs(now, p);
  const diff = new Float64Array(HIST_BUCKETS);
  for (let i = 0; i < HIST_BUCKETS; i++) diff[i] = now[i] - before[i];
  return quantileUs(diff, p);
}

export { MAX_TENANTS };
