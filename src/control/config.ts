/**
 * Server configuration: which device, which ports, and which tenant (with
 * its volume and objective) each port is bound to. It is plain data, so it
 * can cross into worker threads unchanged.
 *
 * A JSON config file gives the same fields; command-line flags override it.
 * Validation happens once here, with messages that name the field.
 */
import fs from 'node:fs';
import path from 'node:path';
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
  tenant: TenantSpec;
  /** The volume this port's connections reach: a byte range of the device. */
  volume: { offset: number; size: number };
}

export interface ServerConfig {
  dataDir: string;
  device: DeviceSpec;
  host: string;
  workers: number;
  sectorSize: number;
  maxRequestBytes: number;
  /** Requests one connection may have outstanding before the server stops reading it. */
  maxOutstanding: number;
  ports: PortBinding[];
  /** Engine choice for file devices: io_uring when it loads, else Node's fs. */
  engine: 'auto' | 'uring' | 'fs';
  qos: boolean;
  /** NBD listener port; null: no NBD front end. Exports are the tenants' volumes, by tenant name. */
  nbdPort: number | null;
  /** Device model file (.devmodel or JSON); null: the original's sample model. */
  deviceModel: string | null;
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
  engine?: string;
  qos?: boolean;
  deviceModel?: string;
  nbdPort?: number;
  ports?: Array<{
    port: number;
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
  const given = [raw.device !== undefined, raw.memory !== undefined, raw.null !== undefined].filter(Boolean).length;
  if (given > 1) throw new ConfigError('give at most one of device, memory, null');
  let device: DeviceSpec;
  if (raw.memory !== undefined) device = { kind: 'memory', size: parseSize(raw.memory, 'memory') };
  else if (raw.null !== undefined) device = { kind: 'null', size: parseSize(raw.null, 'null') };
  else if (raw.device !== undefined) {
    device = { kind: 'file', path: path.resolve(raw.device) };
    if (raw.deviceSize !== undefined) device.size = parseSize(raw.deviceSize, 'deviceSize');
  } else {
    // The embedded default: a sparse file in the data directory.
    device = {
      kind: 'file',
      path: path.join(dataDir, 'reflex.img'),
      size: raw.deviceSize !== undefined ? parseSize(raw.deviceSize, 'deviceSize') : DEFAULT_FILE_SIZE,
      create: true,
    };
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
  const engine = (raw.engine ?? 'auto') as ServerConfig['engine'];
  if (!['auto', 'uring', 'fs'].includes(engine)) throw new ConfigError(`engine: "${raw.engine}" must be auto, uring or fs`);

  const rawPorts = raw.ports ?? [{ port: DEFAULT_PORT }];
  if (!Array.isArray(rawPorts) || rawPorts.length === 0) throw new ConfigError('ports: give at least one');
  const seen = new Set<number>();
  const ports = rawPorts.map((p, i): PortBinding => {
    const where = `ports[${i}]`;
    if (!Number.isInteger(p.port) || p.port < 0 || p.port > 65535) throw new ConfigError(`${where}.port: ${p.port} is not a TCP port`);
    if (p.port !== 0 && seen.has(p.port)) throw new ConfigError(`${where}.port: ${p.port} is bound twice`);
    seen.add(p.port);
    const cls = (p.class ?? 'BE').toUpperCase();
    if (cls !== 'LC' && cls !== 'BE') throw new ConfigError(`${where}.class: "${p.class}" must be LC or BE`);
    const tenant: TenantSpec = { name: p.tenant ?? `port-${p.port}`, class: cls };
    if (cls === 'LC') {
      if (!(typeof p.iops === 'number' && p.iops > 0)) throw new ConfigError(`${where}.iops: an LC tenant needs an IOPS objective > 0`);
      if (!(typeof p.p95Us === 'number' && p.p95Us > 0)) throw new ConfigError(`${where}.p95Us: an LC tenant needs a p95 latency objective > 0`);
      const readPct = p.readPct ?? 100;
      if (!(readPct >= 0 && readPct <= 100)) throw new ConfigError(`${where}.readPct: ${readPct} must be 0..100`);
      Object.assign(tenant, { iops: p.iops, p95Us: p.p95Us, readPct });
    }
    const offset = p.volumeOffset !== undefined ? parseSize(p.volumeOffset, `${where}.volumeOffset`) : 0;
    const size = p.volumeSize !== undefined ? parseSize(p.volumeSize, `${where}.volumeSize`) : -1;
    if (offset % sectorSize !== 0 || (size > 0 && size % sectorSize !== 0)) {
      throw new ConfigError(`${where}: volume offset and size must be multiples of the sector size ${sectorSize}`);
    }
    return { port: p.port, tenant, volume: { offset, size } };
  });
  return {
    dataDir,
    device,
    host: raw.host ?? '127.0.0.1',
    workers,
    sectorSize,
    maxRequestBytes,
    maxOutstanding,
    ports,
    engine,
    qos: raw.qos ?? true,
    nbdPort: checkNbdPort(raw.nbdPort, seen),
    deviceModel: raw.deviceModel !== undefined ? path.resolve(raw.deviceModel) : null,
  };
}

function checkNbdPort(port: number | undefined, dataPorts: Set<number>): number | null {
  if (port === undefined) return null;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`nbdPort: ${port} is not a TCP port`);
  if (port !== 0 && dataPorts.has(port)) throw new ConfigError(`nbdPort: ${port} is also a data port`);
  return port;
}

/** Fills in volume sizes (-1: the rest of the device) once the device size is known, and checks the ranges. */
export function settleVolumes(ports: PortBinding[], deviceSize: number, sectorSize: number): PortBinding[] {
  return ports.map((p) => {
    const size = p.volume.size < 0 ? deviceSize - p.volume.offset : p.volume.size;
    if (size <= 0 || p.volume.offset + size > deviceSize) {
      throw new ConfigError(`port ${p.port}: volume [${p.volume.offset}, +${p.volume.size}) does not fit the ${deviceSize}-byte device`);
    }
    return { ...p, volume: { offset: p.volume.offset, size: size - (size % sectorSize) } };
  });
}
