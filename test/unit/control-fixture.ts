/**
 * A ControlPlane over a real Registry and a fake host whose shared counters
 * the tests write to simulate traffic (counters.add / counters.latency).
 */
import { ControlPlane, type PlaneHost, type RegistryStore } from '../../src/control/control-plane.ts';
import { Registry } from '../../src/control/registry.ts';
import { SAMPLE_MODEL_URL, loadDeviceModel } from '../../src/control/tenants.ts';
import { Field, TenantCounters } from '../../src/dataplane/tenant-counters.ts';
import { WorkerStats } from '../../src/dataplane/worker-stats.ts';

export const DEVICE_SIZE = 1 << 30;

export interface Fixture {
  control: ControlPlane;
  counters: TenantCounters;
  /** One worker's counters (receive coalescing). */
  workerStats: WorkerStats;
  applied: number;
  /** Ranges the control plane asked to zero, in order. */
  zeroed: Array<{ device: string; offset: number; length: number }>;
  /** What `zero` answers (0, or a negative errno to simulate a failing device). */
  zeroError: number;
}

export function makeControl(store: RegistryStore | null = null): Fixture {
  const registry = new Registry();
  registry.addDevice({ name: 'default', size: DEVICE_SIZE, sectorSize: 512 }, loadDeviceModel(SAMPLE_MODEL_URL));
  const counters = new TenantCounters(TenantCounters.allocate(1024, 1), 1024, 1, 0);
  let nextPort = 20000;
  const workerStats = new WorkerStats(WorkerStats.allocate(1), 1);
  const fx: Fixture = { control: null as unknown as ControlPlane, counters, workerStats, applied: 0, zeroed: [], zeroError: 0 };
  const host: PlaneHost = {
    counters,
    workerStats,
    engineOf: () => 'memory',
    queueDepthOf: () => null,
    apply: async () => {
      fx.applied++;
    },
    freePort: async () => nextPort++,
    zero: async (device, offset, length) => {
      fx.zeroed.push({ device, offset, length });
      return fx.zeroError;
    },
  };
  fx.control = new ControlPlane(registry, host, store);
  return fx;
}

/** Simulates `n` completed 4 KiB reads of `us` µs each for tenant `id`. */
export function simulateReads(counters: TenantCounters, id: number, n: number, us: number): void {
  counters.add(id, Field.READ_OPS, n);
  counters.add(id, Field.READ_BYTES, n * 4096);
  for (let i = 0; i < n; i++) counters.latency(id, us);
}
