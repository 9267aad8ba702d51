/**
 * Server configuration: which device, which ports, and which tenant (with
 * its volume and objective) each port is bound to. It is plain data, so it
 * can cross into worker threads unchanged.
 *
 * A JSON config file gives the same fields; command-line flags override it.
 * Validation happens once here, with messages that name the field.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseFaultSpec } from '../storage/fault-engine.ts';
import { DEFAULT_MAX_REQUEST_BYTES, DEFAULT_SECTOR_SIZE } from '../protocol/reflex-constants.ts';

export type DeviceSpec =
  | { kind: 'file'; path: string; size?: number; create?: boolean }
  | { kind: 'memory'; size: number }
  | { kind: 'null'; size: number };

export interface TenantSpec {
  name: string;
  class: 'LC' | 'BE';
  /** LC objective: IOPS counted in 4 KiB requests. */
  iops?: number;
  /** LC objective: p95 read latency, µs. */
  p95Us?: number;
  /** LC objective: share of reads, 0..100. */
  readPct?: number;
}

export interface PortBinding {
  port: number;
  /** Device name the tenant and its volume live on. */
  device: string;
  tenant: TenantSpec;
  /** The volume this port's connections reach: a byte range of the device. */
  volume: { offset: number; size: number };
}

export interface NamedDevice {
  name: string;
  spec: DeviceSpec;
  /** Device model file (.devmodel or JSON); null: the original's sample model. */
  deviceModel: string | null;
}

export interface ServerConfig {
  dataDir: string;
  /** One or more devices; each has its own engine, device model and token budget. */
  devices: NamedDevice[];
  host: string;
  workers: number;
  sectorSize: number;
  maxRequestBytes: number;
  /** Requests one connection may have outstanding before the server stops reading it. */
  maxOutstanding: number;
  /** An NBD client that has not finished negotiating by then is disconnected. */
  nbdHandshakeTimeoutMs: number;
  /** io_uring slots per worker per device: requests at the device at once (more wait in order). */
  queueDepth: number;
  /**
   * Evict each read buffer from the CPU caches before the device fills it
   * (io_uring engine): `on`, `off`, or `auto` (on under a hypervisor, where
   * the disk's "DMA" is a host thread's copy; see native/src/cache-evict.h).
   */
  readCacheEvict: ReadCacheEvict;
  ports: PortBinding[];
  /** Engine choice for file devices: io_uring when it loads, else Node's fs. */
  engine: 'auto' | 'uring' | 'fs';
  qos: boolean;
  /** NBD listener port; null: no NBD front end. Exports are volumes, by name. */
  nbdPort: number | null;
  /** Data port with no tenant of its own: connections must HELLO and ATTACH. */
  attachPort: number | null;
  /** Admin API port (HTTP; HTTPS with tls); null: no admin API. */
  adminPort: number | null;
  /** Admin bearer token; null: read or create <dataDir>/admin.token. */
  adminToken: string | null;
  /** Keep tenants, volumes and credentials in <dataDir>/registry.db. */
  persist: boolean;
  /** Workers spin instead of sleeping when idle: lower latency, one busy core per worker. */
  poll: boolean;
  /**
   * While polling, submit each turn's requests in one batch (the kernel
   * plugs it) instead of one io_uring_enter per request. Per request suits
   * the virtio disks measured here; a batch saves syscalls and doorbell
   * writes on NVMe at high rates. Measure both on your device.
   */
  submitBatch: boolean;
  /**
   * Receive coalescing: µs a worker sleeps after a turn that carried two or
   * more requests, so the next ones arrive together (fewer wake-ups and
   * syscalls per request). 0 turns it off; refused with poll, which never sleeps.
   */
  coalesceUs: number;
  /** Fault injection spec applied to every device's engine (testing), or null. */
  faults: string | null;
  /** PEM files: TLS on data, NBD-less data and admin ports when given. */
  tls: { cert: string; key: string } | null;
  /** Where to POST stats (a cluster controller) and how often; null: no pushing. */
  push: { url: string; intervalMs: number } | null;
  /** This server's name in pushed stats. Default: the host name. */
  serverId: string;
}

const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** Parses "4096", "64M", "1.5G", "2T" (binary units) into bytes. */
export function parseSize(text: string | number, what = 'size'): number {
  if (typeof text === 'number') {
    if (!Number.isSafeInteger(text) || text < 0) throw new ConfigError(`${what}: ${text} is not a byte count`);
    return text;
  }
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new ConfigError(`${what}: "${text}" is not a size (examples: 4096, 64M, 10G)`);
  const bytes = Math.round(Number(m[1]) * UNITS[m[2].toUpperCase()]);
  if (!Number.isSafeInteger(bytes)) throw new ConfigError(`${what}: "${text}" is too large`);
  return bytes;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** The original's compiled-in example: best-effort tenant on port 1234. */
export const DEFAULT_PORT = 1234;
export const DEFAULT_FILE_SIZE = 10 * 2 ** 30;

export interface RawConfig {
  dataDir?: string;
  device?: string;
  deviceSize?: string | number;
  memory?: string | number;
  null?: string | number;
  host?: string;
  workers?: number;
  sectorSize?: number;
  maxRequestBytes?: number;
  maxOutstanding?: number;
  nbdHandshakeTimeoutMs?: number;
  queueDepth?: number;
  readCacheEvict?: string;
  engine?: string;
  qos?: boolean;
  deviceModel?: string;
  nbdPort?: number;
  attachPort?: number;
  adminPort?: number;
  adminToken?: string;
  persist?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  faults?: string;
  poll?: boolean;
  submitBatch?: boolean;
  coalesceUs?: number;
  pushUrl?: string;
  pushIntervalMs?: number;
  serverId?: string;
  devices?: Array<{
    name: string;
    device?: string;
    deviceSize?: string | number;
    memory?: string | number;
    null?: string | number;
    deviceModel?: string;
  }>;
  ports?: Array<{
    port: number;
    device?: string;
    tenant?: string;
    class?: string;
    iops?: number;
    p95Us?: number;
    readPct?: number;
    volumeOffset?: string | number;
    volumeSize?: string | number;
  }>;
}

export function readConfigFile(file: string): RawConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config ${file}: ${(err as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('top level must be an object');
    return parsed as RawConfig;
  } catch (err) {
    throw new ConfigError(`config ${file}: ${(err as Error).message}`);
  }
}

/** Turns raw settings (file merged with flags) into a checked config. */
export function resolveConfig(raw: RawConfig, cpuCount: number): ServerConfig {
  const dataDir = path.resolve(raw.dataDir ?? 'data');
  const devices: NamedDevice[] = [];
  if (raw.devices !== undefined) {
    if (!Array.isArray(raw.devices) || raw.devices.length === 0) throw new ConfigError('devices: give a non-empty list');
    if (raw.device !== undefined || raw.memory !== undefined || raw.null !== undefined) {
      throw new ConfigError('give the device either with devices[] or with device/memory/null, not both');
    }
    raw.devices.forEach((d, i) => {
      if (typeof d.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(d.name)) throw new ConfigError(`devices[${i}].name: "${d.name}" is not a name`);
      if (devices.some((x) => x.name === d.name)) throw new ConfigError(`devices[${i}].name: ${d.name} appears twice`);
      devices.push({ name: d.name, spec: deviceSpec(d, dataDir, `devices[${i}]`, d.name), deviceModel: d.deviceModel !== undefined ? path.resolve(d.deviceModel) : null });
    });
  } else {
    devices.push({ name: 'default', spec: deviceSpec(raw, dataDir, 'device', 'reflex'), deviceModel: raw.deviceModel !== undefined ? path.resolve(raw.deviceModel) : null });
  }
  const sectorSize = raw.sectorSize ?? DEFAULT_SECTOR_SIZE;
  if (!Number.isInteger(sectorSize) || sectorSize < 512 || sectorSize > 65536 || (sectorSize & (sectorSize - 1)) !== 0) {
    throw new ConfigError(`sectorSize: ${sectorSize} must be a power of two from 512 to 65536`);
  }
  const maxRequestBytes = raw.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  if (!Number.isInteger(maxRequestBytes) || maxRequestBytes < sectorSize || maxRequestBytes > 64 * 2 ** 20 || maxRequestBytes % sectorSize !== 0) {
    throw new ConfigError(`maxRequestBytes: ${maxRequestBytes} must be a multiple of the sector size, at most 64 MiB`);
  }
  const workers = raw.workers ?? cpuCount;
  if (!Number.isInteger(workers) || workers < 1 || workers > 256) throw new ConfigError(`workers: ${workers} must be 1..256`);
  const maxOutstanding = raw.maxOutstanding ?? 1024;
  if (!Number.isInteger(maxOutstanding) || maxOutstanding < 1) throw new ConfigError(`maxOutstanding: ${maxOutstanding} must be >= 1`);
  const queueDepth = raw.queueDepth ?? DEFAULT_QUEUE_DEPTH;
  if (!Number.isInteger(queueDepth) || queueDepth < 1 || queueDepth > 4096) throw new ConfigError(`queueDepth: ${queueDepth} must be an integer from 1 to 4096`);
  const nbdHandshakeTimeoutMs = raw.nbdHandshakeTimeoutMs ?? DEFAULT_NBD_HANDSHAKE_TIMEOUT_MS;
  if (!Number.isInteger(nbdHandshakeTimeoutMs) || nbdHandshakeTimeoutMs < 100 || nbdHandshakeTimeoutMs > 600_000) {
    throw new ConfigError(`nbdHandshakeTimeoutMs: ${nbdHandshakeTimeoutMs} must be an integer from 100 to 600000`);
  }
  const engine = (raw.engine ?? 'auto') as ServerConfig['engine'];
  if (!['auto', 'uring', 'fs'].includes(engine)) throw new ConfigError(`engine: "${raw.engine}" must be auto, uring or fs`);
  // Settings of the io_uring engine do nothing without a file device it can open.
  const uringCapable = engine !== 'fs' && devices.some((d) => d.spec.kind === 'file');
  if (raw.queueDepth !== undefined && !uringCapable) {
    throw new ConfigError('queueDepth: only for file or block devices on the io_uring engine');
  }
  const readCacheEvict = (raw.readCacheEvict ?? 'auto') as ReadCacheEvict;
  if (!READ_CACHE_EVICT.includes(readCacheEvict)) throw new ConfigError(`readCacheEvict: "${raw.readCacheEvict}" must be auto, on or off`);
  if (readCacheEvict === 'on' && !uringCapable) {
    throw new ConfigError('readCacheEvict: on is only for file or block devices on the io_uring engine');
  }

  // No ports configured: the original's best-effort port, on the first half of
  // the device; the other half stays free for volumes made through the admin API.
  const rawPorts = raw.ports ?? [{ port: DEFAULT_PORT, tenant: 'default', volumeSize: HALF_DEVICE }];
  if (!Array.isArray(rawPorts) || rawPorts.length === 0) throw new ConfigError('ports: give at least one');
  const seen = new Set<number>();
  const ports = rawPorts.map((p, i): PortBinding => {
    const where = `ports[${i}]`;
    if (!Number.isInteger(p.port) || p.port < 0 || p.port > 65535) throw new ConfigError(`${where}.port: ${p.port} is not a TCP port`);
    if (p.port !== 0 && seen.has(p.port)) throw new ConfigError(`${where}.port: ${p.port} is bound twice`);
    seen.add(p.port);
    const cls = (p.class ?? 'BE').toUpperCase();
    if (cls !== 'LC' && cls !== 'BE') throw new ConfigError(`${where}.class: "${p.class}" must be LC or BE`);
    const device = p.device ?? devices[0].name;
    if (!devices.some((d) => d.name === device)) throw new ConfigError(`${where}.device: no device named ${device}`);
    const tenant: TenantSpec = { name: p.tenant ?? (p.port === 0 ? `tenant-${i}` : `port-${p.port}`), class: cls };
    if (cls === 'LC') {
      if (!(typeof p.iops === 'number' && p.iops > 0)) throw new ConfigError(`${where}.iops: an LC tenant needs an IOPS objective > 0`);
      if (!(typeof p.p95Us === 'number' && p.p95Us > 0)) throw new ConfigError(`${where}.p95Us: an LC tenant needs a p95 latency objective > 0`);
      const readPct = p.readPct ?? 100;
      if (!(readPct >= 0 && readPct <= 100)) throw new ConfigError(`${where}.readPct: ${readPct} must be 0..100`);
      Object.assign(tenant, { iops: p.iops, p95Us: p.p95Us, readPct });
    }
    const offset = p.volumeOffset !== undefined ? parseSize(p.volumeOffset, `${where}.volumeOffset`) : 0;
    const size = p.volumeSize === HALF_DEVICE ? HALF : p.volumeSize !== undefined ? parseSize(p.volumeSize, `${where}.volumeSize`) : -1;
    if (offset % sectorSize !== 0 || (size > 0 && size % sectorSize !== 0 && size !== HALF)) {
      throw new ConfigError(`${where}: volume offset and size must be multiples of the sector size ${sectorSize}`);
    }
    return { port: p.port, device, tenant, volume: { offset, size: p.volumeOffset === undefined && size === -1 ? AUTO_SPLIT : size } };
  });
  const tls = raw.tlsCert !== undefined || raw.tlsKey !== undefined ? { cert: path.resolve(req(raw.tlsCert, 'tlsCert')), key: path.resolve(req(raw.tlsKey, 'tlsKey')) } : null;
  return {
    dataDir,
    devices,
    host: raw.host ?? '127.0.0.1',
    workers,
    sectorSize,
    maxRequestBytes,
    maxOutstanding,
    nbdHandshakeTimeoutMs,
    queueDepth,
    readCacheEvict,
    ports,
    engine,
    qos: raw.qos ?? true,
    nbdPort: checkExtraPort('nbdPort', raw.nbdPort, seen),
    attachPort: checkExtraPort('attachPort', raw.attachPort, seen),
    adminPort: checkExtraPort('adminPort', raw.adminPort, seen),
    adminToken: raw.adminToken ?? null,
    persist: raw.persist ?? false,
    faults: checkFaults(raw.faults),
    poll: raw.poll ?? false,
    submitBatch: checkSubmitBatch(raw.submitBatch, raw.poll ?? false),
    coalesceUs: checkCoalesce(raw.coalesceUs, raw.poll ?? false),
    tls,
    push: checkPush(raw.pushUrl, raw.pushIntervalMs),
    serverId: checkServerId(raw.serverId),
  };
}

export const DEFAULT_PUSH_INTERVAL_MS = 1000;
/** Enough to keep a virtio disk or a SATA SSD busy from one worker; NVMe drives may want 256 or more. */
export const DEFAULT_QUEUE_DEPTH = 128;
/** Long enough for a client that has to load TLS credentials; short enough that idle sockets do not pile up. */
export const DEFAULT_NBD_HANDSHAKE_TIMEOUT_MS = 30_000;

function checkPush(url: string | undefined, intervalMs: number | undefined): { url: string; intervalMs: number } | null {
  if (url === undefined) {
    if (intervalMs !== undefined) throw new ConfigError('pushIntervalMs: given without pushUrl');
    return null;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(`pushUrl: "${url}" is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ConfigError(`pushUrl: "${url}" must be http:// or https://`);
  // fetch refuses them, and the URL is printed at startup and in failures.
  if (parsed.username !== '' || parsed.password !== '') throw new ConfigError('pushUrl: credentials in the URL are not supported (they would be logged)');
  const every = intervalMs ?? DEFAULT_PUSH_INTERVAL_MS;
  if (!Number.isInteger(every) || every < 100 || every > 3_600_000) throw new ConfigError(`pushIntervalMs: ${every} must be an integer from 100 to 3600000`);
  return { url: parsed.href, intervalMs: every };
}

function checkServerId(id: string | undefined): string {
  if (id === undefined) return os.hostname();
  if (typeof id !== 'string' || !/^[\w.:-]{1,128}$/.test(id)) throw new ConfigError(`serverId: "${id}" must be 1-128 letters, digits, '.', ':', '_' or '-'`);
  return id;
}

/** Default receive-coalescing sleep: enough for several pipelined requests to land. */
export const DEFAULT_COALESCE_US = 40;

export const READ_CACHE_EVICT = ['auto', 'on', 'off'] as const;
export type ReadCacheEvict = (typeof READ_CACHE_EVICT)[number];

/** The setting for this machine: `auto` follows `virtual` (whether a hypervisor is present). */
export function resolveReadCacheEvict(mode: ReadCacheEvict, virtual: boolean): boolean {
  return mode === 'on' || (mode === 'auto' && virtual);
}

// A knob that would do nothing is refused: a user who sets it expects an effect.
function checkSubmitBatch(on: boolean | undefined, poll: boolean): boolean {
  if (on === true && !poll) throw new ConfigError('submitBatch: only with poll (an event-loop worker always batches its submissions)');
  return on ?? false;
}

function checkCoalesce(us: number | undefined, poll: boolean): number {
  if (us === undefined) return DEFAULT_COALESCE_US;
  if (poll && us !== 0) throw new ConfigError('coalesceUs: has no effect with poll (a polling worker never sleeps); drop one of them');
  if (!Number.isInteger(us) || us < 0 || us > 1000) throw new ConfigError(`coalesceUs: ${us} must be an integer from 0 (off) to 1000`);
  return us;
}

function checkExtraPort(what: string, port: number | undefined, taken: Set<number>): number | null {
  if (port === undefined) return null;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`${what}: ${port} is not a TCP port`);
  if (port !== 0 && taken.has(port)) throw new ConfigError(`${what}: port ${port} is used twice`);
  taken.add(port);
  return port;
}

function checkFaults(spec: string | undefined): string | null {
  if (spec === undefined || spec === '') return null;
  try {
    parseFaultSpec(spec);
  } catch (err) {
    throw new ConfigError(`faults: ${(err as Error).message}`);
  }
  return spec;
}

function req(v: string | undefined, what: string): string {
  if (v === undefined) throw new ConfigError(`${what}: TLS needs both tlsCert and tlsKey`);
  return v;
}

/** One device's spec from its raw fields; the embedded default is a sparse file in the data directory. */
function deviceSpec(
  d: { device?: string; deviceSize?: string | number; memory?: string | number; null?: string | number },
  dataDir: string,
  where: string,
  fileName: string,
): DeviceSpec {
  const given = [d.device !== undefined, d.memory !== undefined, d.null !== undefined].filter(Boolean).length;
  if (given > 1) throw new ConfigError(`${where}: give at most one of device, memory, null`);
  if (d.memory !== undefined) return { kind: 'memory', size: parseSize(d.memory, `${where}.memory`) };
  if (d.null !== undefined) return { kind: 'null', size: parseSize(d.null, `${where}.null`) };
  if (d.device !== undefined) {
    const spec: DeviceSpec = { kind: 'file', path: path.resolve(d.device) };
    // With a size, a missing regular file is created (sparse), as for the embedded default.
    if (d.deviceSize !== undefined) Object.assign(spec, { size: parseSize(d.deviceSize, `${where}.deviceSize`), create: true });
    return spec;
  }
  return {
    kind: 'file',
    path: path.join(dataDir, `${fileName}.img`),
    size: d.deviceSize !== undefined ? parseSize(d.deviceSize, `${where}.deviceSize`) : DEFAULT_FILE_SIZE,
    create: true,
  };
}

/** Marks a port that gave no volume range: it gets an equal share of its device. */
export const AUTO_SPLIT = -2;
/** The default port's volume: the first half of the device. */
const HALF = -3;
const HALF_DEVICE = 'half-device';

/**
 * Fills in volume ranges once the device size is known, and checks them.
 * Ports that name no range split their device in equal parts, in config
 * order, so tenants are isolated by default (the original let every port
 * reach the whole device); -1 means "from the offset to the end".
 */
export function settleVolumes(ports: PortBinding[], deviceSize: number, sectorSize: number, shareCount = 1, shareIndex = 0): PortBinding[] {
  return ports.map((p) => {
    if (p.volume.size === HALF) {
      return { ...p, volume: { offset: 0, size: Math.floor(deviceSize / 2 / sectorSize) * sectorSize } };
    }
    if (p.volume.size === AUTO_SPLIT) {
      const part = Math.floor(deviceSize / shareCount / sectorSize) * sectorSize;
      return { ...p, volume: { offset: part * shareIndex, size: part } };
    }
    const size = p.volume.size < 0 ? deviceSize - p.volume.offset : p.volume.size;
    if (size <= 0 || p.volume.offset + size > deviceSize) {
      throw new ConfigError(`port ${p.port}: volume [${p.volume.offset}, +${p.volume.size}) does not fit the ${deviceSize}-byte device`);
    }
    return { ...p, volume: { offset: p.volume.offset, size: size - (size % sectorSize) } };
  });
}
