/**
 * The main thread's side of the data plane: prepares the devices, builds the
 * registry (persisted tenants, then config-file seeds), starts one worker per
 * core, hands the control plane a way to push state to them, and stops them
 * gracefully.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { AUTO_SPLIT, ConfigError, resolveReadCacheEvict, settleVolumes, type NamedDevice, type PortBinding, type ServerConfig } from '../control/config.ts';
import { ControlPlane, type PlaneHost, type RegistryStore } from '../control/control-plane.ts';
import { MAX_TENANTS, Registry } from '../control/registry.ts';
import { loadDeviceModel, SAMPLE_MODEL_URL } from '../control/tenants.ts';
import { GlobalBucket } from '../qos/global-bucket.ts';
import { Errno } from '../storage/engine.ts';
import { underHypervisor } from '../storage/hypervisor.ts';
import type { Sampler } from '../control/sampler.ts';
import type { PushState, StatsPusher } from '../control/stats-push.ts';
import type { AdminServerOptions } from '../control/admin-api.ts';
import type { PlaneState } from './plane-state.ts';
import { TenantCounters } from './tenant-counters.ts';
import { WorkerStats } from './worker-stats.ts';
import type { WorkerCommand, WorkerDevice, WorkerInit, WorkerReply } from './worker-messages.ts';

export interface RunningServer {
  readonly config: ServerConfig;
  /** Config-file port bindings with resolved port numbers and volume ranges. */
  readonly bindings: PortBinding[];
  /** Engine of each device, in config order. */
  readonly engines: string[];
  readonly engineName: string;
  /** readCacheEvict as resolved on this machine (io_uring engines only). */
  readonly evictReadBuffers: boolean;
  readonly deviceSize: number;
  readonly nbdPort: number | null;
  readonly attachPort: number | null;
  readonly adminPort: number | null;
  readonly adminToken: string | null;
  readonly fallbackReason: string | undefined;
  readonly counters: TenantCounters;
  readonly control: ControlPlane;
  readonly workers: Worker[];
  /** Problems met restoring persisted state (the rest was restored). */
  readonly restoreProblems: string[];
  /** The stats pusher (with its counters), when `push` is configured. */
  readonly push: StatsPusher | null;
  close(timeoutMs?: number): Promise<void>;
}

const WORKER_URL = new URL('./worker.ts', import.meta.url);

/** Size of a device, creating the embedded default file when asked. */
function prepareDevice(d: NamedDevice): number {
  const spec = d.spec;
  if (spec.kind !== 'file') return spec.size;
  if (spec.create) {
    fs.mkdirSync(path.dirname(spec.path), { recursive: true });
    const fd = fs.openSync(spec.path, 'a');
    try {
      if (spec.size !== undefined && fs.fstatSync(fd).size < spec.size) fs.ftruncateSync(fd, spec.size);
    } finally {
      fs.closeSync(fd);
    }
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(spec.path);
  } catch (err) {
    throw new ConfigError(`device ${d.name}: ${(err as Error).message}`);
  }
  if (st.isBlockDevice()) {
    const name = path.basename(fs.realpathSync(spec.path));
    return Number(fs.readFileSync(`/sys/class/block/${name}/size`, 'utf8').trim()) * 512;
  }
  if (spec.size !== undefined) return spec.size;
  if (st.size === 0) throw new ConfigError(`device ${d.name}: ${spec.path} is empty; give a size`);
  return st.size;
}

/** A port the kernel says is free now (for port 0 in configs and API calls). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen({ port: 0, host }, () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function openStore(config: ServerConfig): Promise<RegistryStore | null> {
  if (!config.persist) return null;
  fs.mkdirSync(config.dataDir, { recursive: true });
  const { SqliteStore } = await import('../control/store.ts');
  return new SqliteStore(path.join(config.dataDir, 'registry.db'));
}

/** Config-file tenants go through the same registration path as the admin API. */
async function seed(registry: Registry, config: ServerConfig, sizes: Map<string, number>): Promise<PortBinding[]> {
  const out: PortBinding[] = [];
  const splitters = (device: string): PortBinding[] => config.ports.filter((p) => p.device === device && p.volume.size === AUTO_SPLIT);
  for (const b of config.ports) {
    const peers = splitters(b.device);
    const [settled] = settleVolumes([b], sizes.get(b.device)!, config.sectorSize, peers.length, peers.indexOf(b));
    const port = settled.port === 0 ? await freePort(config.host) : settled.port;
    const name = settled.tenant.name;
    if (!registry.tenants.has(name)) {
      const t = registry.createTenant(name, settled.device, settled.tenant);
      if (!t.ok) throw new ConfigError(`tenant ${name} (port ${b.port}) refused: ${t.reason}`);
    }
    if (!registry.volumes.has(name)) {
      // The config defines this range: a scrub left pending by a crash does not keep it from the volume.
      registry.dropScrubs(settled.device, settled.volume.offset, settled.volume.size);
      const v = registry.createVolume({ name, owner: name, offset: settled.volume.offset, size: settled.volume.size, device: settled.device });
      if (!v.ok) throw new ConfigError(`volume for port ${b.port}: ${v.reason}`);
    }
    const bound = registry.ports.get(port);
    if (bound === undefined) {
      const p = registry.bindPort({ port, tenant: name, volume: name });
      if (!p.ok) throw new ConfigError(`port ${port}: ${p.reason}`);
    } else if (bound.tenant !== name) {
      throw new ConfigError(`port ${port} is bound to tenant ${bound.tenant} in the registry, but to ${name} in the config`);
    }
    const vol = registry.volumes.get(name)!;
    out.push({ ...settled, port, volume: { offset: vol.offset, size: vol.size } });
  }
  return out;
}

export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const sizes = new Map<string, number>();
  for (const d of config.devices) sizes.set(d.name, prepareDevice(d));
  const registry = new Registry();
  for (const d of config.devices) registry.addDevice({ name: d.name, size: sizes.get(d.name)!, sectorSize: config.sectorSize }, loadDeviceModel(d.deviceModel ?? SAMPLE_MODEL_URL));
  const store = await openStore(config);
  let restoreProblems: string[] = [];
  try {
    const saved = store?.load() ?? null;
    if (saved !== null) restoreProblems = registry.restore(saved);
  } catch (err) {
    store?.close();
    throw err;
  }
  let bindings: PortBinding[];
  try {
    bindings = await seed(registry, config, sizes);
  } catch (err) {
    store?.close();
    throw err;
  }

  const countersSab = TenantCounters.allocate(MAX_TENANTS, config.workers);
  const counters = new TenantCounters(countersSab, MAX_TENANTS, config.workers, -1);
  const workerStatsSab = WorkerStats.allocate(config.workers);
  const workerStats = new WorkerStats(workerStatsSab, config.workers);
  const workerDevices: WorkerDevice[] = config.devices.map((d) => {
    const model = registry.table(d.name).model;
    return {
      name: d.name,
      spec: d.spec,
      memoryStore: d.spec.kind === 'memory' ? new SharedArrayBuffer(d.spec.size) : undefined,
      qos: config.qos ? { bucket: GlobalBucket.create(config.workers).buffer, readCost4k: model.readCost4k, writeCost4k: model.writeCost4k } : null,
    };
  });

  // The control plane's snapshot; built before the ControlPlane exists for the first start.
  const hostRef: { apply: (s: PlaneState) => Promise<void>; zero: (device: string, offset: number, length: number) => Promise<number> } = {
    apply: async () => {},
    zero: async () => Errno.EIO,
  };
  const host: PlaneHost = {
    counters,
    workerStats,
    engineOf: (name) => engines[config.devices.findIndex((d) => d.name === name)] ?? 'unknown',
    queueDepthOf: (name) => queueDepths[config.devices.findIndex((d) => d.name === name)] ?? null,
    apply: (s) => hostRef.apply(s),
    freePort: () => freePort(config.host),
    zero: (device, offset, length) => hostRef.zero(device, offset, length),
  };
  const control = new ControlPlane(registry, host, store);
  const initialState = control.planeState();
  store?.save(registry.snapshot());

  const workers: Worker[] = [];
  let engines: string[] = [];
  const evictReadBuffers = resolveReadCacheEvict(config.readCacheEvict, underHypervisor());
  let queueDepths: Array<number | null> = [];
  let fallbackReason: string | undefined;
  let nbdPort = config.nbdPort;
  let attachPort = config.attachPort;

  const spawn = (index: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const init: WorkerInit = {
        workerIndex: index,
        workerCount: config.workers,
        devices: workerDevices,
        engine: config.engine,
        faults: config.faults,
        host: config.host,
        sectorSize: config.sectorSize,
        maxRequestBytes: config.maxRequestBytes,
        maxOutstanding: config.maxOutstanding,
        nbdHandshakeTimeoutMs: config.nbdHandshakeTimeoutMs,
        queueDepth: config.queueDepth,
        evictReadBuffers,
        countersSab,
        workerStatsSab,
        tenantCapacity: MAX_TENANTS,
        nbdPort,
        attachPort,
        tls: config.tls,
        poll: config.poll,
        submitBatch: config.submitBatch,
        coalesceUs: config.coalesceUs,
        state: initialState,
      };
      const w = new Worker(WORKER_URL, { workerData: init, name: `reflex-dp-${index}` });
      workers.push(w);
      const onMessage = (msg: WorkerReply): void => {
        if (msg.type === 'ready') {
          w.off('message', onMessage);
          if (index === 0) {
            // Port 0 resolved by the first worker: the others bind the same port.
            nbdPort = msg.nbdPort;
            attachPort = msg.attachPort;
            engines = msg.engines;
            queueDepths = msg.queueDepths;
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
    store?.close();
    throw err;
  }

  let seq = 0;
  /** Posts a command to a worker; resolves with its reply of type `type` carrying the same seq. */
  const ask = <T extends 'applied' | 'zeroed'>(w: Worker, cmd: WorkerCommand & { seq: number }, type: T): Promise<Extract<WorkerReply, { type: T }>> =>
    new Promise((resolve, reject) => {
      const onExit = (code: number): void => {
        w.off('message', onMessage);
        reject(new Error(`data-plane worker exited (code ${code}) before answering ${cmd.type}`));
      };
      const onMessage = (m: WorkerReply): void => {
        if (m.type !== type || m.seq !== cmd.seq) return;
        w.off('message', onMessage);
        w.off('exit', onExit);
        resolve(m as Extract<WorkerReply, { type: T }>);
      };
      w.on('message', onMessage);
      w.once('exit', onExit);
      w.postMessage(cmd);
    });
  hostRef.apply = async (state) => {
    const replies = await Promise.all(workers.map((w) => ask(w, { type: 'state', seq: ++seq, state }, 'applied')));
    const problems = replies.flatMap((r) => r.problems);
    if (problems.length > 0) throw new Error(problems.join('; '));
  };
  // Any worker can zero a range: every worker's engine reaches the whole device.
  hostRef.zero = async (device, offset, length) => {
    const index = config.devices.findIndex((d) => d.name === device);
    if (index < 0) return Errno.EINVAL;
    try {
      return (await ask(workers[0], { type: 'zero', seq: ++seq, device: index, offset, length }, 'zeroed')).error;
    } catch {
      return Errno.EIO;
    }
  };
  // Ranges a crash left unscrubbed: zero them now (they stay reserved until done).
  void control.scrub();

  // One sampler for the status page, the metrics and the pusher, so they agree.
  let sampler: Sampler | null = null;
  if (config.adminPort !== null || config.push !== null) {
    const { Sampler } = await import('../control/sampler.ts');
    sampler = new Sampler(control);
    sampler.start();
  }
  let admin: { port: number; token: string; close(): Promise<void> } | null = null;
  let pusher: StatsPusher | null = null;
  if (config.adminPort !== null) {
    try {
      admin = await startAdmin(config, control, sampler!, () => pusher?.state ?? null);
    } catch (err) {
      sampler?.stop();
      await Promise.all(workers.map((w) => w.terminate()));
      store?.close();
      throw err;
    }
  }
  if (config.push !== null) {
    const { StatsPusher, pushPayload } = await import('../control/stats-push.ts');
    const { statsView } = await import('../control/admin-stats.ts');
    const identity = {
      id: config.serverId,
      host: config.host,
      ports: [...control.registry.ports.keys()],
      nbdPort,
      attachPort,
      adminPort: admin?.port ?? null,
      startedAt: Date.now(),
    };
    pusher = new StatsPusher(config.push, () => {
      identity.ports = [...control.registry.ports.keys()];
      return pushPayload(identity, statsView(control, sampler!));
    });
    pusher.start();
  }

  let closed: Promise<void> | null = null;
  const first = config.devices[0].name;
  return {
    config,
    bindings,
    engines,
    engineName: engines[0],
    evictReadBuffers,
    deviceSize: sizes.get(first)!,
    nbdPort,
    attachPort,
    adminPort: admin?.port ?? null,
    adminToken: admin?.token ?? null,
    fallbackReason,
    counters,
    control,
    workers,
    restoreProblems,
    push: pusher,
    close(timeoutMs = 5000) {
      closed ??= (async () => {
        await pusher?.stop();
        await admin?.close();
        sampler?.stop();
        await Promise.all(workers.map((w) => drainWorker(w, timeoutMs)));
        control.close();
      })();
      return closed;
    },
  };
}

function drainWorker(w: Worker, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
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
  });
}

/** The admin API (its module is loaded only when an admin port is configured). */
async function startAdmin(
  config: ServerConfig,
  control: ControlPlane,
  sampler: Sampler,
  pushState: () => PushState | null,
): Promise<{ port: number; token: string; close(): Promise<void> }> {
  const mod = await import('../control/admin-api.ts');
  const token = mod.loadOrCreateAdminToken(config.dataDir, config.adminToken ?? undefined);
  const opts: AdminServerOptions = { control, host: config.host, port: config.adminPort!, token, sampler, pushState };
  if (config.tls) opts.tls = { cert: fs.readFileSync(config.tls.cert), key: fs.readFileSync(config.tls.key) };
  const s = await mod.startAdminServer(opts);
  return { port: s.port, token, close: () => s.close() };
}
