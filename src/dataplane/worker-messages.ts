import type { DeviceSpec } from '../control/config.ts';
import type { PlaneState } from './plane-state.ts';

export interface WorkerDevice {
  name: string;
  spec: DeviceSpec;
  /** For memory devices: the store shared by all workers. */
  memoryStore?: SharedArrayBuffer;
  /** QoS: the device's global best-effort bucket and costs; null without a scheduler. */
  qos: null | { bucket: SharedArrayBuffer; readCost4k: number; writeCost4k: number };
}

/** What the main thread hands a worker at start. Plain data only. */
export interface WorkerInit {
  workerIndex: number;
  workerCount: number;
  devices: WorkerDevice[];
  engine: 'auto' | 'uring' | 'fs';
  faults: string | null;
  host: string;
  sectorSize: number;
  maxRequestBytes: number;
  maxOutstanding: number;
  nbdHandshakeTimeoutMs: number;
  queueDepth: number;
  /** io_uring engines evict read buffers from the CPU caches before submission (readCacheEvict, resolved). */
  evictReadBuffers: boolean;
  countersSab: SharedArrayBuffer;
  /** Per-worker counters (worker-stats.ts); this worker writes row workerIndex. */
  workerStatsSab: SharedArrayBuffer;
  /** Rows in the counters (most tenants). */
  tenantCapacity: number;
  /** NBD listener port, or null. */
  nbdPort: number | null;
  /** Attach-only data port, or null. */
  attachPort: number | null;
  /** Keep the event loop spinning instead of sleeping (ReFlex-style polling; costs a core). */
  poll: boolean;
  /** While polling, still batch submissions per turn instead of one io_uring_enter per request. */
  submitBatch: boolean;
  /** Receive coalescing sleep in µs after a turn with several requests; 0: off (src/dataplane/coalescing.ts). */
  coalesceUs: number;
  /** PEM contents for TLS listeners, or null. */
  tls: { cert: string; key: string } | null;
  state: PlaneState;
}

export type WorkerCommand =
  | { type: 'drain'; timeoutMs: number }
  | { type: 'state'; seq: number; state: PlaneState }
  /** Zero a byte range of device `device` (an index) durably; answered by 'zeroed'. */
  | { type: 'zero'; seq: number; device: number; offset: number; length: number };

export type WorkerReply =
  | { type: 'ready'; nbdPort: number | null; attachPort: number | null; engines: string[]; queueDepths: Array<number | null>; fallbackReason?: string }
  | { type: 'failed'; message: string }
  | { type: 'applied'; seq: number; problems: string[] }
  /** error: 0, or the negative errno the engine gave. */
  | { type: 'zeroed'; seq: number; error: number }
  | { type: 'drained' };
