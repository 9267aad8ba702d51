/**
 * Tenant admission and rate allocation (QOS.md, "Tenants").
 *
 * - LC reservation, tokens/s = iops × (r × read_cost + (1 − r) × write_cost),
 *   r = readPct / 100.
 * - Device rate = model rate at the strictest LC p95. The read-only column
 *   applies only while every tenant is read-only: every LC tenant has
 *   readPct 100 and every BE tenant declared readPct 100 (a BE tenant that
 *   declares nothing may write). With no LC tenant the device rate is the
 *   model's overall max_token_rate.
 * - A new or changed LC objective is admitted only if all LC reservations,
 *   the new one included, fit within the device rate recomputed with it.
 * - BE tenants each get (device_rate − ΣLC) / nBE. With no BE tenant, LC
 *   tenants split the spare rate equally on top of their reservations.
 *
 * TenantRegistry is the one registration path, for config-file tenants and
 * the admin API alike.
 */
import { strictestCalibratedP95, tokenRateFor, type DeviceModel } from './device-model.ts';

export interface LcSpec {
  kind: 'LC';
  /** 4 KiB requests per second. */
  iops: number;
  /** 0..100 */
  readPct: number;
  /** p95 read latency objective, µs. */
  p95Us: number;
}

export interface BeSpec {
  kind: 'BE';
  /** Optional declaration; 100 lets the device use its read-only rate. */
  readPct?: number;
}

export type TenantSpec = LcSpec | BeSpec;

export type AdmissionResult =
  | { admitted: true; /** tokens/s this tenant gets now */ rate: number; deviceRate: number }
  | { admitted: false; reason: string };

/** Tokens/s an LC objective reserves. */
export function lcReservation(model: DeviceModel, spec: LcSpec): number {
  // Percent form keeps integer inputs exact (0.8 × 100 is not 80 in binary floating point).
  return (spec.iops * (spec.readPct * model.readCost4k + (100 - spec.readPct) * model.writeCost4k)) / 100;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Null when the spec is well formed, else why not. */
export function specError(spec: TenantSpec): string | null {
  if (spec.kind === 'BE') {
    if (spec.readPct !== undefined && !(spec.readPct >= 0 && spec.readPct <= 100)) {
      return `readPct must be within 0..100, got ${spec.readPct}`;
    }
    return null;
  }
  if (spec.kind !== 'LC') return `kind must be 'LC' or 'BE'`;
  if (!(Number.isFinite(spec.iops) && spec.iops > 0)) return `iops must be a positive number, got ${spec.iops}`;
  if (!(spec.readPct >= 0 && spec.readPct <= 100)) return `readPct must be within 0..100, got ${spec.readPct}`;
  if (!(Number.isFinite(spec.p95Us) && spec.p95Us > 0)) return `p95Us must be a positive number, got ${spec.p95Us}`;
  return null;
}

function isReadOnly(spec: TenantSpec): boolean {
  return spec.readPct === 100;
}

export interface DeviceRate {
  rate: number;
  /** Strictest LC p95, µs; null when there is no LC tenant. */
  p95Us: number | null;
  readOnly: boolean;
}

/** The device's token rate for a set of tenants. */
export function deviceRateFor(model: DeviceModel, specs: Iterable<TenantSpec>): DeviceRate {
  let strictest = Infinity;
  let readOnly = true;
  let any = false;
  for (const s of specs) {
    any = true;
    if (!isReadOnly(s)) readOnly = false;
    if (s.kind === 'LC' && s.p95Us < strictest) strictest = s.p95Us;
  }
  if (strictest === Infinity) return { rate: model.maxTokenRate, p95Us: null, readOnly: any && readOnly };
  return { rate: tokenRateFor(model, strictest, readOnly), p95Us: strictest, readOnly };
}

/**
 * Would `spec` fit beside `existing`? Pure; the numbers in a refusal are the
 * requested reservation, what is available, and the device rate at the
 * strictest p95 (with the new tenant counted).
 */
export function admit(model: DeviceModel, spec: TenantSpec, existing: readonly TenantSpec[]): AdmissionResult {
  const bad = specError(spec);
  if (bad !== null) return { admitted: false, reason: `invalid objective: ${bad}` };
  const all = [...existing, spec];
  const dev = deviceRateFor(model, all);
  let lcSum = 0;
  for (const s of existing) if (s.kind === 'LC') lcSum += lcReservation(model, s);
  if (spec.kind === 'LC') {
    const minP95 = strictestCalibratedP95(model);
    if (spec.p95Us < minP95) {
      return {
        admitted: false,
        reason:
          `p95 objective ${spec.p95Us} µs is below the strictest calibrated p95 (${minP95} µs): ` +
          `the device model cannot promise it`,
      };
    }
    const want = lcReservation(model, spec);
    const available = dev.rate - lcSum;
    if (want > available) {
      return {
        admitted: false,
        reason:
          `LC objective needs ${fmt(want)} tokens/s (${fmt(spec.iops)} IOPS, ${spec.readPct}% read) but only ` +
          `${fmt(Math.max(0, available))} tokens/s are available: device rate ${fmt(dev.rate)} tokens/s at p95 ` +
          `${dev.p95Us} µs (${dev.readOnly ? 'read-only' : 'mixed'}), ${fmt(lcSum)} tokens/s already reserved`,
      };
    }
  } else if (lcSum > dev.rate) {
    // A BE tenant that may write can turn the read-only rate into the lower mixed one.
    return {
      admitted: false,
      reason:
        `adding this BE tenant lowers the device rate to ${fmt(dev.rate)} tokens/s at p95 ${dev.p95Us} µs ` +
        `(mixed), below the ${fmt(lcSum)} tokens/s reserved by LC tenants; declare readPct 100 if it only reads`,
    };
  }
  const rates = allocateRates(model, all);
  return { admitted: true, rate: rates[rates.length - 1], deviceRate: dev.rate };
}

/** Rates, tokens/s, in the order of `specs`. */
export function allocateRates(model: DeviceModel, specs: readonly TenantSpec[]): number[] {
  const dev = deviceRateFor(model, specs);
  let lcSum = 0;
  let nLc = 0;
  let nBe = 0;
  for (const s of specs) {
    if (s.kind === 'LC') {
      lcSum += lcReservation(model, s);
      nLc++;
    } else nBe++;
  }
  const spare = Math.max(0, dev.rate - lcSum);
  return specs.map((s) => {
    if (s.kind === 'BE') return spare / nBe;
    const own = lcReservation(model, s);
    return nBe === 0 ? own + spare / nLc : own;
  });
}

/** The single registration path. Ids are whatever the caller names tenants by. */
export class TenantRegistry<K = string> {
  private readonly model: DeviceModel;
  private readonly specs = new Map<K, TenantSpec>();

  constructor(model: DeviceModel) {
    this.model = model;
  }

  get size(): number {
    return this.specs.size;
  }

  get(id: K): TenantSpec | undefined {
    return this.specs.get(id);
  }

  entries(): IterableIterator<[K, TenantSpec]> {
    return this.specs.entries();
  }

  register(id: K, spec: TenantSpec): AdmissionResult {
    if (this.specs.has(id)) return { admitted: false, reason: `tenant ${String(id)} is already registered` };
    const r = admit(this.model, spec, [...this.specs.values()]);
    if (r.admitted) this.specs.set(id, { ...spec });
    return r;
  }

  /** Replaces an objective; on refusal the old one stays. */
  update(id: K, spec: TenantSpec): AdmissionResult {
    if (!this.specs.has(id)) return { admitted: false, reason: `tenant ${String(id)} is not registered` };
    const others: TenantSpec[] = [];
    for (const [k, s] of this.specs) if (k !== id) others.push(s);
    const r = admit(this.model, spec, others);
    if (r.admitted) this.specs.set(id, { ...spec });
    return r;
  }

  remove(id: K): boolean {
    return this.specs.delete(id);
  }

  deviceRate(): DeviceRate {
    return deviceRateFor(this.model, this.specs.values());
  }

  /** Every tenant's current rate, tokens/s. Changes whenever the set changes. */
  rates(): Map<K, number> {
    const ids = [...this.specs.keys()];
    const r = allocateRates(this.model, [...this.specs.values()]);
    const out = new Map<K, number>();
    ids.forEach((id, i) => out.set(id, r[i]));
    return out;
  }
}
