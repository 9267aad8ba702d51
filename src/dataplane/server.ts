/**
 * The main thread's side of the data plane: prepares the device, starts one
 * worker per core, and stops them gracefully. Workers bind the same ports
 * with SO_REUSEPORT; the first worker resolves port 0 so the others (and
 * tests) share the real port.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { settleVolumes, type PortBinding, type ServerConfig } from '../control/config.ts';
import { GlobalBucket } from '../qos/global-bucket.ts';
import { loadDeviceModel, SAMPLE_MODEL_URL, TenantTable } from '../control/tenants.ts';
import { ConfigError } from '../control/config.ts';
import { TenantCounters } from './tenant-counters.ts';
import type { WorkerCommand, WorkerInit, WorkerReply } from './worker-messages.ts';

export interface RunningServer {
  readonly config: ServerConfig;
  /** Port bindings with resolved port numbers and volume sizes. */
  readonly bindings: PortBinding[];
  readonly engineName: string;
  /** The NBD front end's port, or null when it is off. */
  readonly nbdPort: number | null;
  readonly deviceSize: number;
  readonly fallbackReason: string | undefined;
  readonly counters: TenantCounters;
  readonly workers: Worker[];
  /** Admission and rates; present when QoS is on. */
  readonly tenants: TenantTable | null;
  close(timeoutMs?: number): Promise<void>;
}

const WORKER_URL = new URL('./worker.ts', import.meta.url);

/** Size of the device, creating the embedded default file when asked. */
function prepareDevice(config: ServerConfig): number {
  const d = config.device;
  if (d.kind !== 'file') return d.size;
  if (d.create) {
    fs.mkdirSync(path.dirname(d.path), { recursive: true });
    const fd = fs.openSync(d.path, 'a');
    try {
      if (d.size !== undefined && fs.fstatSync(fd).size < d.size) fs.ftruncateSync(fd, d.size);
    } finally {
      fs.closeSync(fd);
    }
  }
  const st = fs.statSync(d.path);
  if (st.isBlockDevice()) {
    const name = path.basename(fs.realpathSync(d.path));
    return Number(fs.readFileSync(`/sys/class/block/${name}/size`, 'utf8').trim()) * 512;
  }
  if (d.size !== undefined) return d.size;
  if (st.size === 0) throw new Error(`${d.path} is empty; give a size`);
  return st.size;
}

export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const deviceSize = prepareDevice(config);
  let bindings = settleVolumes(config.ports, deviceSize, config.sectorSize);
  const countersSab = TenantCounters.allocate(bindings.length, config.workers);
  const memoryStore = config.device.kind === 'memory' ? new SharedArrayBuffer(config.device.size) : undefined;
  const tenants = config.qos ? registerConfigTenants(config, bindings) : null;
  const qos: WorkerInit['qos'] =
    tenants === null
      ? null
      : {
          bucket: GlobalBucket.create(config.workers).buffer,
          readCost4k: tenants.model.readCost4k,
          writeCost4k: tenants.model.writeCost4k,
          tenants: bindings.map((b, i) => ({ kind: b.tenant.class, rate: tenants.rates().get(i) ?? 0 })),
        };
  const workers: Worker[] = [];
  let engineName = '';
  let nbdPort = config.nbdPort;
  let fallbackReason: string | undefined;

  const spawn = (index: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const init: WorkerInit = {
        workerIndex: index,
        workerCount: config.workers,
        device: config.device,
        engine: config.engine,
        memoryStore,
        host: config.host,
        bindings,
        sectorSize: config.sectorSize,
        maxRequestBytes: config.maxRequestBytes,
        maxOutstanding: config.maxOutstanding,
        countersSab,
        qos,
        nbdPort,
      };
      const w = new Worker(WORKER_URL, { workerData: init, name: `reflex-dp-${index}` });
      workers.push(w);
      const onMessage = (msg: WorkerReply): void => {
        if (msg.type === 'ready') {
          w.off('message', onMessage);
          if (index === 0) {
            bindings = bindings.map((b, i) => ({ ...b, port: msg.ports[i] }));
            engineName = msg.engine;
            nbdPort = msg.nbdPort;
            fallbackReason = msg.fallbackReason;
          }
          resolve();
        } else if (msg.type === 'failed') {
          reject(new Error(`worker ${index}: ${msg.message}`));
        }
      };
      w.on('message', onMessage);
      w.once('error', reject);
    });

  try {
    await spawn(0);
    await Promise.all(Array.from({ length: config.workers - 1 }, (_, i) => spawn(i + 1)));
  } catch (err) {
    await Promise.all(workers.map((w) => w.terminate()));
    throw err;
  }

  let closed: Promise<void> | null = null;
  return {
    config,
    get bindings() {
      return bindings;
    },
    engineName,
    get nbdPort() {
      return nbdPort;
    },
    deviceSize,
    fallbackReason,
    counters: new TenantCounters(countersSab, bindings.length, config.workers, -1),
    workers,
    tenants,
    close(timeoutMs = 5000) {
      closed ??= Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve) => {
              const timer = setTimeout(() => void w.terminate().then(() => resolve()), timeoutMs + 1000);
              w.on('message', (m: WorkerReply) => {
                if (m.type === 'drained') {
                  clearTimeout(timer);
                  void w.terminate().then(() => resolve());
                }
              });
              w.once('exit', () => {
                clearTimeout(timer);
                resolve();
              });
              const cmd: WorkerCommand = { type: 'drain', timeoutMs };
              w.postMessage(cmd);
            }),
        ),
      ).then(() => undefined);
      return closed;
    },
  };
}

/** Admits every configured tenant through the one registration path; a refusal stops the start. */
function registerConfigTenants(config: ServerConfig, bindings: PortBinding[]): TenantTable {
  const table = new TenantTable(loadDeviceModel(config.deviceModel ?? SAMPLE_MODEL_URL));
  bindings.forEach((b, i) => {
    const answer = table.register(i, b.tenant);
    if (!answer.admitted) throw new ConfigError(`tenant ${b.tenant.name} (port ${b.port}) refused: ${answer.reason}`);
  });
  return table;
}
