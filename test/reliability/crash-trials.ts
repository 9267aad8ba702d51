/**
 * Crash safety under SIGKILL: writers hammer a file-backed server with
 * versioned blocks, reads and flushes; the server is killed at a random
 * moment, restarted on the same file, and every block is checked.
 *
 * Bookkeeping per 4 KiB block (each block belongs to exactly one lane, and a
 * lane has at most one request outstanding, so a block never has two
 * writes in flight):
 *   acked     the last version whose write was acknowledged
 *   inflight  the version sent and not answered when the server died
 * After a restart the block must hold exactly `acked` (or zeros when nothing
 * was ever acknowledged) or exactly `inflight`: anything else, including a
 * torn mix, is a lost acknowledged write. A process kill leaves the page
 * cache alone, so an acknowledged write counts whether or not it was
 * flushed; power loss is not simulated here.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type ReflexClient } from '../../src/client/index.ts';
import { freePort } from '../../src/dataplane/server.ts';
import { Rng } from '../fuzz/rng.ts';
import { spawnServer, type ServerProcess } from './server-process.ts';

const BLOCK = 4096;
const PATTERN_MAGIC = 0x7ef1e55a;

export interface CrashOptions {
  trials: number;
  clients: number;
  lanesPerClient: number;
  blocksPerLane: number;
  /** Random kill moment within [minRunMs, maxRunMs] after the writers start. */
  minRunMs: number;
  maxRunMs: number;
  seed: number;
  /** Directory on a real disk for the device file (default: os.tmpdir()). */
  dir?: string;
  log?: (line: string) => void;
  /** Self-test of the checker: damage one acknowledged block in the file before the last restart. */
  corruptOneAcked?: boolean;
}

export interface CrashReport {
  trials: number;
  acknowledgedWrites: number;
  flushesCompleted: number;
  readsVerified: number;
  /** Writes in flight at a kill whose new version did reach the file. */
  inflightLanded: number;
  /** Blocks whose content was neither the last acknowledged nor the in-flight version. */
  lost: number;
  /** Reads during a run that did not return the last acknowledged version. */
  readMismatches: number;
  lossDetails: string[];
  device: string;
}

function pattern(block: number, version: number): Buffer {
  const b = Buffer.alloc(BLOCK, (block * 31 + version * 7) & 0xff);
  b.writeUInt32LE(PATTERN_MAGIC, 0);
  b.writeUInt32LE(block, 4);
  b.writeUInt32LE(version, 8);
  // The last bytes repeat the version: a torn (half-old, half-new) block shows.
  b.writeUInt32LE(version, BLOCK - 4);
  return b;
}

interface BlockState {
  acked: number;
  inflight: number;
}

async function lane(client: ReflexClient, rng: Rng, blocks: number[], state: BlockState[], report: CrashReport, stop: { dead: boolean }): Promise<void> {
  while (!stop.dead) {
    const roll = rng.int(10);
    try {
      if (roll < 6) {
        const blk = rng.pick(blocks);
        const s = state[blk];
        const v = Math.max(s.acked, s.inflight) + 1;
        s.inflight = v;
        await client.write(blk * BLOCK, pattern(blk, v));
        s.acked = v;
        s.inflight = 0;
        report.acknowledgedWrites++;
      } else if (roll < 9) {
        const blk = rng.pick(blocks);
        const got = await client.read(blk * BLOCK, BLOCK);
        const want = state[blk].acked === 0 ? Buffer.alloc(BLOCK) : pattern(blk, state[blk].acked);
        if (!got.equals(want)) report.readMismatches++;
        report.readsVerified++;
      } else {
        await client.flush();
        report.flushesCompleted++;
      }
    } catch {
      return; // the server died under us: what is recorded stays recorded
    }
  }
}

function describeBlock(buf: Buffer): string {
  if (buf.every((x) => x === 0)) return 'zeros';
  return `magic ${buf.readUInt32LE(0).toString(16)} block ${buf.readUInt32LE(4)} v${buf.readUInt32LE(8)}/v${buf.readUInt32LE(BLOCK - 4)}`;
}

/** Checks every block against the bookkeeping; folds landed in-flight versions into `acked`. */
async function verify(port: number, state: BlockState[], report: CrashReport, trial: number): Promise<void> {
  const c = await connect({ port, timeoutMs: 20000 });
  try {
    const BATCH = 64;
    for (let first = 0; first < state.length; first += BATCH) {
      const n = Math.min(BATCH, state.length - first);
      const data = await c.read(first * BLOCK, n * BLOCK);
      for (let i = 0; i < n; i++) {
        const blk = first + i;
        const s = state[blk];
        const got = data.subarray(i * BLOCK, (i + 1) * BLOCK);
        const okAcked = got.equals(s.acked === 0 ? Buffer.alloc(BLOCK) : pattern(blk, s.acked));
        const okInflight = s.inflight !== 0 && got.equals(pattern(blk, s.inflight));
        if (okInflight) {
          report.inflightLanded++;
          s.acked = s.inflight;
        } else if (!okAcked) {
          report.lost++;
          if (report.lossDetails.length < 20) report.lossDetails.push(`trial ${trial} block ${blk}: acked v${s.acked}, inflight v${s.inflight}, found ${describeBlock(got)}`);
          // Resynchronise with what is there so one loss is not counted again next trial.
          s.acked = got.readUInt32LE(0) === PATTERN_MAGIC ? got.readUInt32LE(8) : 0;
        }
        s.inflight = 0;
      }
    }
  } finally {
    await c.close();
  }
}

/** Signals a server process and waits for it to be gone. */
async function stopServer(server: ServerProcess, signal: NodeJS.Signals): Promise<void> {
  server.kill(signal);
  await server.exited;
}

export async function runCrashTrials(o: CrashOptions): Promise<CrashReport> {
  const dir = fs.mkdtempSync(path.join(o.dir ?? os.tmpdir(), 'reflex-crash-'));
  const device = path.join(dir, 'device.img');
  fs.writeFileSync(device, '');
  fs.truncateSync(device, 256 << 20);
  const totalBlocks = o.clients * o.lanesPerClient * o.blocksPerLane;
  const state: BlockState[] = Array.from({ length: totalBlocks }, () => ({ acked: 0, inflight: 0 }));
  const report: CrashReport = { trials: 0, acknowledgedWrites: 0, flushesCompleted: 0, readsVerified: 0, inflightLanded: 0, lost: 0, readMismatches: 0, lossDetails: [], device };
  const rng = new Rng(o.seed);
  const args = ['--device', device, '--size', '256M', '--port', '0', '--workers', '2', '--no-persist', '--no-admin'];
  let server: ServerProcess | null = null;
  try {
    for (let t = 0; t < o.trials; t++) {
      server = await spawnServer(args);
      const port = server.ports[0];
      if (t > 0) await verify(port, state, report, t);
      const stop = { dead: false };
      const clients = await Promise.all(Array.from({ length: o.clients }, () => connect({ port, timeoutMs: 20000 })));
      const lanes: Promise<void>[] = [];
      let laneNo = 0;
      for (const c of clients) {
        for (let l = 0; l < o.lanesPerClient; l++, laneNo++) {
          const blocks = Array.from({ length: o.blocksPerLane }, (_, i) => laneNo * o.blocksPerLane + i);
          lanes.push(lane(c, new Rng(o.seed * 1000 + t * 100 + laneNo), blocks, state, report, stop));
        }
      }
      await new Promise((r) => setTimeout(r, rng.range(o.minRunMs, o.maxRunMs)));
      server.kill('SIGKILL');
      await server.exited;
      stop.dead = true;
      for (const c of clients) c.destroy();
      await Promise.all(lanes);
      server = null;
      report.trials++;
      o.log?.(`trial ${t + 1}/${o.trials}: ${report.acknowledgedWrites} acknowledged writes so far, ${report.lost} lost`);
    }
    if (o.corruptOneAcked) {
      const blk = state.findIndex((s) => s.acked > 0);
      const fd = fs.openSync(device, 'r+');
      fs.writeSync(fd, Buffer.alloc(BLOCK, 0xee), 0, BLOCK, blk * BLOCK);
      fs.closeSync(fd);
    }
    server = await spawnServer(args);
    await verify(server.ports[0], state, report, o.trials);
    await stopServer(server, 'SIGTERM');
    server = null;
  } finally {
    if (server !== null) await stopServer(server, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return report;
}

export interface RegistryCrashReport {
  tenantCreated: boolean;
  tenantRestored: boolean;
  portRestored: boolean;
  dataRestored: boolean;
  note?: string;
}

async function admin(port: number, token: string, method: string, url: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await fetch(`http://127.0.0.1:${port}${url}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text === '' ? null : JSON.parse(text) };
}

/**
 * With persistence on: a tenant created through the admin API, and data
 * written through its port, are still there after a SIGKILL and restart.
 */
export async function runRegistryCrash(o: { dir?: string } = {}): Promise<RegistryCrashReport> {
  const dir = fs.mkdtempSync(path.join(o.dir ?? os.tmpdir(), 'reflex-registry-'));
  const device = path.join(dir, 'device.img');
  fs.writeFileSync(device, '');
  fs.truncateSync(device, 64 << 20);
  // The config's own tenant takes a quarter of the device, leaving room for one made through the API.
  const config = path.join(dir, 'config.json');
  const ownPort = await freePort();
  fs.writeFileSync(config, JSON.stringify({ device, deviceSize: '64M', workers: 2, dataDir: dir, adminPort: 0, ports: [{ port: ownPort, volumeSize: '16M' }] }));
  const args = ['--config', config];
  const report: RegistryCrashReport = { tenantCreated: false, tenantRestored: false, portRestored: false, dataRestored: false };
  let server: ServerProcess | null = null;
  try {
    server = await spawnServer(args, { admin: true });
    const token = fs.readFileSync(path.join(dir, 'admin.token'), 'utf8').trim();
    const created = await admin(server.adminPort!, token, 'POST', '/api/tenants', { name: 'survivor', class: 'BE', volumeSize: 1 << 20, port: 0 });
    report.tenantCreated = created.status === 201;
    const ports = (await admin(server.adminPort!, token, 'GET', '/api/ports')).body as Array<{ port: number; tenant: string }>;
    const bound = ports.find((p) => p.tenant === 'survivor');
    const data = pattern(3, 99);
    if (bound !== undefined) {
      const c = await connect({ port: bound.port });
      await c.write(3 * BLOCK, data);
      await c.close();
    } else {
      report.note = `tenant creation answered ${created.status}: ${JSON.stringify(created.body)}`;
    }
    server.kill('SIGKILL');
    await server.exited;
    server = await spawnServer(args, { admin: true });
    const t = await admin(server.adminPort!, token, 'GET', '/api/tenants/survivor');
    report.tenantRestored = t.status === 200;
    const after = (await admin(server.adminPort!, token, 'GET', '/api/ports')).body as Array<{ port: number; tenant: string }>;
    const again = after.find((p) => p.tenant === 'survivor');
    report.portRestored = again !== undefined && again.port === bound?.port;
    if (again !== undefined) {
      const c = await connect({ port: again.port });
      report.dataRestored = (await c.read(3 * BLOCK, BLOCK)).equals(data);
      await c.close();
    }
    await stopServer(server, 'SIGTERM');
    server = null;
  } finally {
    if (server !== null) await stopServer(server, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return report;
}
