/**
 * The control plane's model: devices, tenants (with objectives), volumes
 * (byte ranges of one device owned by one tenant), credentials and v1 port
 * bindings. Pure and synchronous: every change is checked here (admission,
 * overlap, references) and either applied whole or refused with a reason.
 *
 * The data plane never reads this object; the server turns it into a
 * `PlaneState` snapshot for the workers after each change, and the store
 * persists it. Tenant ids are small integers: they index the workers'
 * counter rows and scheduler tables, so ids of removed tenants are reused.
 */
import crypto from 'node:crypto';
import type { AdmissionResult } from '../qos/admission.ts';
import type { DeviceModel } from '../qos/device-model.ts';
import { TenantTable } from './tenants.ts';
import type { TenantSpec } from './config.ts';

/** Most tenants one server holds (counter rows are preallocated). */
export const MAX_TENANTS = 1024;

export interface DeviceRecord {
  name: string;
  /** Bytes. */
  size: number;
  sectorSize: number;
}

export interface TenantRecord {
  id: number;
  name: string;
  device: string;
  spec: TenantSpec;
}

export interface VolumeRecord {
  name: string;
  device: string;
  owner: string;
  offset: number;
  size: number;
}

/**
 * A device range whose volume is gone but whose bytes are not yet zeroed.
 * No new volume may take it until the scrub is done, so one tenant's data
 * never shows up in another tenant's volume.
 */
export interface ScrubRecord {
  device: string;
  offset: number;
  size: number;
}

export interface CredentialRecord {
  tenant: string;
  /** Hex HMAC key. Never sent on the data path; clients prove they hold it. */
  secret: string;
  createdAt: string;
}

export interface PortRecord {
  port: number;
  tenant: string;
  volume: string;
}

/** Everything the store persists. */
export interface RegistrySnapshot {
  tenants: TenantRecord[];
  volumes: VolumeRecord[];
  credentials: CredentialRecord[];
  ports: PortRecord[];
  /** Missing in snapshots written before scrubbing existed. */
  scrubs?: ScrubRecord[];
}

export type Result<T> = { ok: true; value: T } | { ok: false; status: number; reason: string };

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function fail<T>(status: number, reason: string): Result<T> {
  return { ok: false, status, reason };
}

export class Registry {
  readonly devices = new Map<string, DeviceRecord>();
  private readonly tables = new Map<string, TenantTable>();
  readonly tenants = new Map<string, TenantRecord>();
  readonly volumes = new Map<string, VolumeRecord>();
  readonly credentials = new Map<string, CredentialRecord>();
  readonly ports = new Map<number, PortRecord>();
  /** Freed ranges waiting to be zeroed, oldest first. */
  readonly scrubs: ScrubRecord[] = [];
  private readonly freeIds: number[] = [];
  private nextId = 0;

  addDevice(d: DeviceRecord, model: DeviceModel): void {
    this.devices.set(d.name, d);
    this.tables.set(d.name, new TenantTable(model));
  }

  /** The device's admission table (model and rates). */
  table(device: string): TenantTable {
    const t = this.tables.get(device);
    if (t === undefined) throw new Error(`no device ${device}`);
    return t;
  }

  // ---- tenants -------------------------------------------------------------

  createTenant(name: string, device: string, spec: TenantSpec, id?: number): Result<{ tenant: TenantRecord; admission: AdmissionResult }> {
    if (!NAME_RE.test(name)) return fail(400, `tenant name "${name}" must be 1-64 of letters, digits, . _ - (not starting with a symbol)`);
    if (this.tenants.has(name)) return fail(409, `tenant ${name} exists`);
    if (!this.devices.has(device)) return fail(404, `no device ${device}`);
    // A persisted id already taken (by a config-file tenant) gets a fresh one.
    if (id !== undefined && [...this.tenants.values()].some((t) => t.id === id)) id = undefined;
    const tid = id ?? this.allocateId();
    if (tid < 0) return fail(507, `the server holds at most ${MAX_TENANTS} tenants`);
    const admission = this.table(device).register(tid, spec);
    if (!admission.admitted) {
      if (id === undefined) this.freeIds.push(tid);
      return fail(422, admission.reason);
    }
    if (id !== undefined) this.claimId(id);
    const tenant: TenantRecord = { id: tid, name, device, spec: { ...spec, name } };
    this.tenants.set(name, tenant);
    return { ok: true, value: { tenant, admission } };
  }

  updateTenant(name: string, spec: TenantSpec): Result<{ tenant: TenantRecord; admission: AdmissionResult }> {
    const t = this.tenants.get(name);
    if (t === undefined) return fail(404, `no tenant ${name}`);
    const admission = this.table(t.device).update(t.id, spec);
    if (!admission.admitted) return fail(422, admission.reason);
    t.spec = { ...spec, name };
    return { ok: true, value: { tenant: t, admission } };
  }

  removeTenant(name: string): Result<TenantRecord> {
    const t = this.tenants.get(name);
    if (t === undefined) return fail(404, `no tenant ${name}`);
    const owned = [...this.volumes.values()].filter((v) => v.owner === name).map((v) => v.name);
    if (owned.length > 0) return fail(409, `tenant ${name} still owns volumes: ${owned.join(', ')}`);
    this.table(t.device).remove(t.id);
    this.tenants.delete(name);
    this.credentials.delete(name);
    for (const [port, p] of this.ports) if (p.tenant === name) this.ports.delete(port);
    this.freeIds.push(t.id);
    return { ok: true, value: t };
  }

  private allocateId(): number {
    if (this.freeIds.length > 0) return this.freeIds.pop()!;
    if (this.nextId >= MAX_TENANTS) return -1;
    return this.nextId++;
  }

  private claimId(id: number): void {
    const i = this.freeIds.indexOf(id);
    if (i >= 0) this.freeIds.splice(i, 1);
    while (this.nextId <= id) {
      if (this.nextId !== id) this.freeIds.push(this.nextId);
      this.nextId++;
    }
  }

  /** Tokens/s per tenant id, over all devices. */
  rates(): Map<number, number> {
    const out = new Map<number, number>();
    for (const table of this.tables.values()) for (const [id, r] of table.rates()) out.set(id, r);
    return out;
  }

  // ---- volumes -------------------------------------------------------------

  createVolume(v: { name: string; owner: string; size: number; offset?: number; device?: string }): Result<VolumeRecord> {
    if (!NAME_RE.test(v.name)) return fail(400, `volume name "${v.name}" must be 1-64 of letters, digits, . _ -`);
    if (this.volumes.has(v.name)) return fail(409, `volume ${v.name} exists`);
    const owner = this.tenants.get(v.owner);
    if (owner === undefined) return fail(404, `no tenant ${v.owner}`);
    const device = v.device ?? owner.device;
    if (device !== owner.device) return fail(400, `tenant ${v.owner} lives on device ${owner.device}, not ${device}`);
    const dev = this.devices.get(device)!;
    if (!Number.isSafeInteger(v.size) || v.size <= 0 || v.size % dev.sectorSize !== 0) {
      return fail(400, `size ${v.size} must be a positive multiple of the sector size ${dev.sectorSize}`);
    }
    let offset = v.offset;
    if (offset === undefined) {
      offset = this.firstFit(device, v.size);
      if (offset < 0) return fail(507, `no free range of ${v.size} bytes on device ${device}`);
    }
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % dev.sectorSize !== 0) return fail(400, `offset ${offset} must be a multiple of ${dev.sectorSize}`);
    if (offset + v.size > dev.size) return fail(400, `[${offset}, +${v.size}) runs past the end of device ${device} (${dev.size} bytes)`);
    const clash = this.overlap(device, offset, v.size, null);
    if (clash !== null) return fail(409, `[${offset}, +${v.size}) overlaps ${clash}`);
    const rec: VolumeRecord = { name: v.name, device, owner: v.owner, offset, size: v.size };
    this.volumes.set(v.name, rec);
    return { ok: true, value: rec };
  }

  /** What [offset, +size) of `device` overlaps (a volume other than `except`, or a range being scrubbed), or null. */
  private overlap(device: string, offset: number, size: number, except: string | null): string | null {
    for (const o of this.volumes.values()) {
      if (o.name !== except && o.device === device && offset < o.offset + o.size && o.offset < offset + size) return `volume ${o.name} [${o.offset}, +${o.size})`;
    }
    for (const r of this.scrubs) {
      if (r.device === device && offset < r.offset + r.size && r.offset < offset + size) return `[${r.offset}, +${r.size}), freed and still being zeroed`;
    }
    return null;
  }

  /**
   * Grows or shrinks a volume in place. Growing needs the range right after
   * it to be free; shrinking hands the tail to a scrub.
   */
  resizeVolume(name: string, size: number): Result<VolumeRecord> {
    const v = this.volumes.get(name);
    if (v === undefined) return fail(404, `no volume ${name}`);
    const dev = this.devices.get(v.device)!;
    if (!Number.isSafeInteger(size) || size <= 0 || size % dev.sectorSize !== 0) {
      return fail(400, `size ${size} must be a positive multiple of the sector size ${dev.sectorSize}`);
    }
    if (size > v.size) {
      if (v.offset + size > dev.size) return fail(400, `[${v.offset}, +${size}) runs past the end of device ${v.device} (${dev.size} bytes)`);
      const clash = this.overlap(v.device, v.offset + v.size, size - v.size, v.name);
      if (clash !== null) return fail(409, `cannot grow ${name} to ${size} bytes: the range after it overlaps ${clash}`);
    } else if (size < v.size) {
      this.scrubs.push({ device: v.device, offset: v.offset + size, size: v.size - size });
    }
    v.size = size;
    return { ok: true, value: v };
  }

  /**
   * Forgets pending scrubs that overlap [offset, +size) of `device`: the
   * config file defines a volume there and takes it back as it is. Returns
   * what was dropped.
   */
  dropScrubs(device: string, offset: number, size: number): ScrubRecord[] {
    const hit = this.scrubs.filter((r) => r.device === device && offset < r.offset + r.size && r.offset < offset + size);
    for (const r of hit) this.scrubDone(r);
    return hit;
  }

  /** A scrub finished: its range is free again. */
  scrubDone(r: ScrubRecord): void {
    const i = this.scrubs.indexOf(r);
    if (i >= 0) this.scrubs.splice(i, 1);
  }

  /** Removes a volume; its range is scrubbed before reuse unless `scrub` is false (a volume no one could have used yet). */
  removeVolume(name: string, scrub = true): Result<VolumeRecord> {
    const v = this.volumes.get(name);
    if (v === undefined) return fail(404, `no volume ${name}`);
    this.volumes.delete(name);
    if (scrub) this.scrubs.push({ device: v.device, offset: v.offset, size: v.size });
    for (const [port, p] of this.ports) if (p.volume === name) this.ports.delete(port);
    return { ok: true, value: v };
  }

  /** Lowest offset where `size` bytes are free on `device`, or -1. */
  private firstFit(device: string, size: number): number {
    const dev = this.devices.get(device)!;
    const used = [...this.volumes.values(), ...this.scrubs].filter((v) => v.device === device).sort((a, b) => a.offset - b.offset);
    let at = 0;
    for (const v of used) {
      if (v.offset - at >= size) return at;
      at = Math.max(at, v.offset + v.size);
    }
    return dev.size - at >= size ? at : -1;
  }

  // ---- credentials and ports ----------------------------------------------

  /** A fresh random key for `tenant`, replacing any previous one. */
  createCredential(tenant: string, secret?: string): Result<CredentialRecord> {
    if (!this.tenants.has(tenant)) return fail(404, `no tenant ${tenant}`);
    if (secret !== undefined && !/^[0-9a-f]{32,128}$/.test(secret)) return fail(400, 'secret must be 32-128 lowercase hex digits');
    const rec: CredentialRecord = { tenant, secret: secret ?? crypto.randomBytes(32).toString('hex'), createdAt: new Date().toISOString() };
    this.credentials.set(tenant, rec);
    return { ok: true, value: rec };
  }

  removeCredential(tenant: string): Result<CredentialRecord> {
    const c = this.credentials.get(tenant);
    if (c === undefined) return fail(404, `tenant ${tenant} has no credential`);
    this.credentials.delete(tenant);
    return { ok: true, value: c };
  }

  bindPort(p: PortRecord): Result<PortRecord> {
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) return fail(400, `port ${p.port} is not a TCP port`);
    if (this.ports.has(p.port)) return fail(409, `port ${p.port} is bound to tenant ${this.ports.get(p.port)!.tenant}`);
    const v = this.volumes.get(p.volume);
    if (v === undefined) return fail(404, `no volume ${p.volume}`);
    if (v.owner !== p.tenant) return fail(403, `volume ${p.volume} belongs to ${v.owner}, not ${p.tenant}`);
    this.ports.set(p.port, { ...p });
    return { ok: true, value: p };
  }

  unbindPort(port: number): Result<PortRecord> {
    const p = this.ports.get(port);
    if (p === undefined) return fail(404, `port ${port} is not bound`);
    this.ports.delete(port);
    return { ok: true, value: p };
  }

  // ---- persistence ---------------------------------------------------------

  snapshot(): RegistrySnapshot {
    return {
      tenants: [...this.tenants.values()].map((t) => ({ ...t, spec: { ...t.spec } })),
      volumes: [...this.volumes.values()].map((v) => ({ ...v })),
      credentials: [...this.credentials.values()].map((c) => ({ ...c })),
      ports: [...this.ports.values()].map((p) => ({ ...p })),
      scrubs: this.scrubs.map((r) => ({ ...r })),
    };
  }

  /**
   * Loads a persisted snapshot through the same checks as live changes, in
   * dependency order; returns what could not be restored (e.g. a device
   * that is no longer configured) instead of failing the whole start.
   */
  restore(s: RegistrySnapshot): string[] {
    const problems: string[] = [];
    for (const t of [...s.tenants].sort((a, b) => a.id - b.id)) {
      if (this.tenants.has(t.name)) continue;
      const r = this.createTenant(t.name, t.device, t.spec, t.id);
      if (!r.ok) problems.push(`tenant ${t.name}: ${r.reason}`);
    }
    // Ranges freed but not yet zeroed when the server stopped stay reserved.
    for (const r of s.scrubs ?? []) {
      const dev = this.devices.get(r.device);
      if (dev === undefined) problems.push(`scrub of [${r.offset}, +${r.size}) on device ${r.device}: no such device`);
      else if (r.offset + r.size <= dev.size) this.scrubs.push({ ...r });
      else problems.push(`scrub of [${r.offset}, +${r.size}) runs past the end of device ${r.device}`);
    }
    for (const v of s.volumes) {
      if (this.volumes.has(v.name)) continue;
      const r = this.createVolume(v);
      if (!r.ok) problems.push(`volume ${v.name}: ${r.reason}`);
    }
    for (const c of s.credentials) {
      const r = this.createCredential(c.tenant, c.secret);
      if (r.ok) r.value.createdAt = c.createdAt;
      else problems.push(`credential of ${c.tenant}: ${r.reason}`);
    }
    for (const p of s.ports) {
      if (this.ports.has(p.port)) continue;
      const r = this.bindPort(p);
      if (!r.ok) problems.push(`port ${p.port}: ${r.reason}`);
    }
    return problems;
  }
}
