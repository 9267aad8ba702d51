/**
 * The one registration path for tenants: config-file tenants at start and
 * (later) the admin API at run time both call `TenantTable.register`, which
 * asks admission control and, when admitted, recomputes every tenant's rate.
 */
import fs from 'node:fs';
import { TenantRegistry, type AdmissionResult, type TenantSpec as QosSpec } from '../qos/admission.ts';
import { parseDeviceModelAuto, type DeviceModel } from '../qos/device-model.ts';
import type { TenantSpec } from './config.ts';
import { ConfigError } from './config.ts';

export const SAMPLE_MODEL_URL = new URL('../../config/sample.devmodel', import.meta.url);

export function loadDeviceModel(file: string | URL): DeviceModel {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read device model ${String(file)}: ${(err as Error).message}`);
  }
  try {
    return parseDeviceModelAuto(text, String(file));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
}

export function toQosSpec(t: TenantSpec): QosSpec {
  return t.class === 'LC' ? { kind: 'LC', iops: t.iops!, p95Us: t.p95Us!, readPct: t.readPct ?? 100 } : { kind: 'BE' };
}

export class TenantTable {
  readonly model: DeviceModel;
  private readonly registry: TenantRegistry<number>;

  constructor(model: DeviceModel) {
    this.model = model;
    this.registry = new TenantRegistry<number>(model);
  }

  /** Admission for tenant `id`; on success every tenant's rate may change (see `rates`). */
  register(id: number, spec: TenantSpec): AdmissionResult {
    return this.registry.register(id, toQosSpec(spec));
  }

  update(id: number, spec: TenantSpec): AdmissionResult {
    return this.registry.update(id, toQosSpec(spec));
  }

  remove(id: number): boolean {
    return this.registry.remove(id);
  }

  /** Tokens/s for each registered tenant. */
  rates(): Map<number, number> {
    return this.registry.rates();
  }

  deviceRate(): number {
    return this.registry.deviceRate().rate;
  }
}
