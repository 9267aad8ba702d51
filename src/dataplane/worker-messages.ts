import type { DeviceSpec, PortBinding } from '../control/config.ts';

/** What the main thread hands a worker at start. Plain data only. */
export interface WorkerInit {
  workerIndex: number;
  workerCount: number;
  device: DeviceSpec;
  engine: 'auto' | 'uring' | 'fs';
  memoryStore?: SharedArrayBuffer;
  host: string;
  bindings: PortBinding[];
  sectorSize: number;
  maxRequestBytes: number;
  maxOutstanding: number;
  countersSab: SharedArrayBuffer;
  /** NBD listener port (resolved by worker 0 when 0), or null. */
  nbdPort: number | null;
  /** QoS: null runs without a scheduler (`--no-qos`). */
  qos: null | {
    bucket: SharedArrayBuffer;
    readCost4k: number;
    writeCost4k: number;
    /** Server-wide tokens/s and class per tenant (index = binding index). */
    tenants: Array<{ kind: 'LC' | 'BE'; rate: number }>;
  };
}

export type WorkerCommand = { type: 'drain'; timeoutMs: number } | { type: 'rates'; rates: number[] };

export type WorkerReply =
  | { type: 'ready'; ports: number[]; nbdPort: number | null; engine: string; size: number; fallbackReason?: string }
  | { type: 'failed'; message: string }
  | { type: 'drained' };
