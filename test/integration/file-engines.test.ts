/**
 * The server on a real file, through both file engines: io_uring with
 * O_DIRECT (the default where it loads) and Node's fs (the fallback, forced
 * here with `engine: 'fs'` as `REFLEX_NO_URING=1` would). Data written by
 * the original-style C client over several connections and two workers reads
 * back identical; FLUSH and TRIM work. On a device whose logical block is
 * 4 KiB, a request the device cannot take unaligned gets EINVAL.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer } from '../../src/dataplane/server.ts';
import { loadUring } from '../../src/storage/uring-native.ts';
import { Cmd, Status } from '../../src/protocol/reflex-constants.ts';
import { connect } from '../../src/client/index.ts';
import { buildC } from '../helpers/build-c.ts';
import { RawPeer, header } from '../helpers/raw-peer.ts';
import { spawnServer, type ServerProcess } from '../reliability/server-process.ts';

const run = promisify(execFile);
const MiB = 1 << 20;
let client: string;
let dir: string;

/** A directory on the real disk: O_DIRECT fails on tmpfs. */
function diskDir(): string {
  const tmpIsTmpfs = fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === os.tmpdir() && l.split(' ')[2] === 'tmpfs');
  const base = tmpIsTmpfs ? path.join(fileURLToPath(new URL('../../data', import.meta.url))) : os.tmpdir();
  fs.mkdirSync(base, { recursive: true });
  return fs.mkdtempSync(path.join(base, 'reflex-engines-'));
}

before(() => {
  client = buildC(fileURLToPath(new URL('../interop/v1client.c', import.meta.url)), 'v1client');
  dir = diskDir();
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

for (const engine of ['uring', 'fs'] as const) {
  describe(`engine ${engine}`, () => {
    it('verifies data from 4 connections over 2 workers, then flush and trim', async (t) => {
      if (engine === 'uring' && !loadUring().ok) {
        const why = (loadUring() as { reason: string }).reason;
        if (process.env.REFLEX_ALLOW_SKIP === '1') return t.skip(`io_uring unavailable: ${why}`);
        assert.fail(`io_uring engine unavailable (${why}); set REFLEX_ALLOW_SKIP=1 to skip`);
      }
      const file = path.join(dir, `${engine}.img`);
      const server = await startServer(resolveConfig({ device: file, deviceSize: 64 * MiB, engine, workers: 2, ports: [{ port: 0 }] }, 2));
      try {
        assert.equal(server.engineName, engine === 'uring' ? 'uring' : 'file');
        const port = String(server.bindings[0].port);
        const { stdout } = await run(client, ['verify', '127.0.0.1', port, '4', '8', '25', String((64 * MiB) / 512)]);
        assert.match(stdout, /verified 800 mismatches 0 errors 0/);
        const c = await connect({ port: server.bindings[0].port });
        const data = Buffer.alloc(64 * 1024, 0x3c);
        await c.write(8 * MiB, data, { fua: true });
        await c.flush();
        assert.deepEqual(await c.read(8 * MiB, data.length), data);
        await c.trim(8 * MiB, 32 * 1024);
        const back = await c.read(8 * MiB, data.length);
        assert.deepEqual(back.subarray(0, 32 * 1024), Buffer.alloc(32 * 1024));
        assert.deepEqual(back.subarray(32 * 1024), data.subarray(32 * 1024));
        await c.close();
      } finally {
        await server.close();
      }
      // The bytes are in the file itself.
      const fd = fs.openSync(file, 'r');
      const b = Buffer.alloc(16);
      fs.readSync(fd, b, 0, 16, 8 * MiB + 32 * 1024);
      fs.closeSync(fd);
      assert.deepEqual(b, Buffer.alloc(16, 0x3c));
    });
  });
}

describe('scrubbing a deleted volume on a file', () => {
  it('the range reads back as zeros and its space is given back (holes, not written zeros)', async () => {
    const file = path.join(dir, 'scrub.img');
    const server = await startServer(resolveConfig({ device: file, deviceSize: 64 * MiB, workers: 2, attachPort: 0, ports: [{ port: 0, volumeSize: '16M' }] }, 2));
    try {
      assert.equal(server.engineName, 'uring');
      const made = await server.control.createTenant({ name: 'gone', class: 'BE', volumeSize: 32 * MiB, credential: true });
      assert.ok(made.ok);
      const offset = made.value.volume!.offset;
      const c = await connect({ port: server.attachPort!, attach: { tenant: 'gone', volume: 'gone', secret: made.value.secret! } });
      for (let at = 0; at < 32 * MiB; at += MiB) await c.write(at, Buffer.alloc(MiB, 0x6b));
      await c.flush();
      await c.close();
      const before = fs.statSync(file).blocks * 512;
      assert.ok((await server.control.removeVolume('gone')).ok);
      const freed = before - fs.statSync(file).blocks * 512;
      assert.ok(freed >= 31 * MiB, `only ${freed} bytes of the 32 MiB volume were given back`);
      const fd = fs.openSync(file, 'r');
      const b = Buffer.alloc(MiB);
      for (const at of [offset, offset + 31 * MiB]) {
        fs.readSync(fd, b, 0, MiB, at);
        assert.deepEqual(b, Buffer.alloc(MiB), `bytes at ${at} survived the volume`);
      }
      fs.closeSync(fd);
    } finally {
      await server.close();
    }
  });
});

describe('polling workers', () => {
  for (const submitBatch of [false, true]) {
    it(`serve correctly with --poll${submitBatch ? ' --submit-batch' : ' (one submission per request)'} and still drain and stop`, async () => {
      const file = path.join(dir, `poll-${submitBatch}.img`);
      const server = await startServer(resolveConfig({ device: file, deviceSize: 16 * MiB, workers: 2, poll: true, submitBatch, ports: [{ port: 0 }] }, 2));
      try {
        const { stdout } = await run(client, ['verify', '127.0.0.1', String(server.bindings[0].port), '2', '8', '10', String((16 * MiB) / 512)]);
        assert.match(stdout, /verified 160 mismatches 0 errors 0/);
      } finally {
        await server.close();
      }
    });
  }
});

describe('read buffers evicted from the CPU caches (readCacheEvict)', () => {
  for (const mode of ['on', 'off'] as const) {
    it(`data read back intact with readCacheEvict ${mode}, polling and not`, async () => {
      for (const poll of [false, true]) {
        const file = path.join(dir, `evict-${mode}-${poll}.img`);
        const server = await startServer(resolveConfig({ device: file, deviceSize: 16 * MiB, workers: 2, poll, readCacheEvict: mode, ports: [{ port: 0 }] }, 2));
        try {
          assert.equal(server.engineName, 'uring');
          const { stdout } = await run(client, ['verify', '127.0.0.1', String(server.bindings[0].port), '2', '8', '10', String((16 * MiB) / 512)]);
          assert.match(stdout, /verified 160 mismatches 0 errors 0/);
        } finally {
          await server.close();
        }
      }
    });
  }

  it('refuses a mode it does not know, and on where there is no io_uring file device', () => {
    assert.equal(resolveConfig({ device: 'x.img' }, 1).readCacheEvict, 'auto');
    assert.throws(() => resolveConfig({ device: 'x.img', readCacheEvict: 'yes' }, 1), /readCacheEvict: "yes" must be auto, on or off/);
    assert.throws(() => resolveConfig({ memory: '1G', readCacheEvict: 'on' }, 1), /readCacheEvict: on is only for file or block devices/);
    assert.throws(() => resolveConfig({ device: 'x.img', engine: 'fs', readCacheEvict: 'on' }, 1), /readCacheEvict: on is only/);
    assert.equal(resolveConfig({ memory: '1G', readCacheEvict: 'off' }, 1).readCacheEvict, 'off');
  });
});

describe('polling workers under overflow', () => {
  it('drain promptly with more requests outstanding than ring slots (refills are submitted, not stranded)', async () => {
    const file = path.join(dir, 'poll-overflow.img');
    const server = await startServer(resolveConfig({ device: file, deviceSize: 16 * MiB, workers: 1, poll: true, ports: [{ port: 0 }] }, 1));
    let closedMs = Infinity;
    try {
      // 4 connections × 96 = 384 outstanding against a 128-entry ring.
      const load = run(client, ['load', '127.0.0.1', String(server.bindings[0].port), '4', '96', '3', String((16 * MiB) / 512), '50', '8']).catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 1000));
      const t0 = performance.now();
      await server.close(4000);
      closedMs = performance.now() - t0;
      await load;
    } finally {
      await server.close();
    }
    // A stranded refill would hold the drain until its 4 s timeout.
    assert.ok(closedMs < 3000, `drain took ${Math.round(closedMs)} ms`);
  });
});

describe('the device queue depth', () => {
  it('--queue-depth sets the io_uring slots; the gauges show them full and the rest waiting under load', async (t) => {
    if (!loadUring().ok) {
      const why = (loadUring() as { reason: string }).reason;
      if (process.env.REFLEX_ALLOW_SKIP === '1') return t.skip(`io_uring unavailable: ${why}`);
      assert.fail(`io_uring engine unavailable (${why}); set REFLEX_ALLOW_SKIP=1 to skip`);
    }
    const file = path.join(dir, 'depth.img');
    // 12 is not a power of two: the kernel's ring is 16, the engine keeps 12.
    const server = await startServer(resolveConfig({ device: file, deviceSize: 16 * MiB, workers: 1, queueDepth: 12, adminPort: 0, adminToken: 'queue-depth-token-0123', ports: [{ port: 0 }] }, 1));
    try {
      const admin = `http://127.0.0.1:${server.adminPort}`;
      const auth = { headers: { authorization: 'Bearer queue-depth-token-0123' } };
      const stats = async (): Promise<{ devices: Array<{ queueDepth: number | null }>; workers: Array<{ deviceInFlight: number; deviceAwaitingSlot: number }> }> =>
        (await (await fetch(`${admin}/api/stats`, auth)).json()) as never;
      assert.equal((await stats()).devices[0].queueDepth, 12);
      assert.match(await (await fetch(`${admin}/metrics`, auth)).text(), /^reflex_device_queue_depth\{device="[^"]+"\} 12$/m);
      // Written data, so that reads reach the disk (holes would not).
      const c = await connect({ port: server.bindings[0].port, connections: 4 });
      for (let off = 0; off < 16 * MiB; off += MiB) await c.write(off, Buffer.alloc(MiB, 0x3c));
      let stop = false;
      const lane = async (): Promise<void> => {
        while (!stop) await c.read(Math.floor(Math.random() * 4096) * 4096, 4096);
      };
      const lanes = Array.from({ length: 64 }, lane);
      let seen: { deviceInFlight: number; deviceAwaitingSlot: number } | null = null;
      const deadline = Date.now() + 5000;
      while (seen === null && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        const w = (await stats()).workers[0];
        assert.ok(w.deviceInFlight <= 12, `${w.deviceInFlight} requests in a ring of 12`);
        if (w.deviceInFlight > 0 && w.deviceAwaitingSlot > 0) seen = w;
      }
      stop = true;
      await Promise.all(lanes);
      await c.close();
      assert.ok(seen !== null, 'never saw the ring in use with requests waiting for a slot');
      await new Promise((r) => setTimeout(r, 250));
      const idle = (await stats()).workers[0];
      assert.deepEqual([idle.deviceInFlight, idle.deviceAwaitingSlot], [0, 0], 'idle again');
    } finally {
      await server.close();
    }
  });

  it('--queue-depth out of range is refused', () => {
    for (const bad of [0, 4097, 2.5]) assert.throws(() => resolveConfig({ device: 'x.img', queueDepth: bad }, 1), /queueDepth: .* must be an integer from 1 to 4096/);
    assert.equal(resolveConfig({ memory: '1G' }, 1).queueDepth, 128);
  });
});

describe('a device with 4 KiB logical blocks', () => {
  it('answers EINVAL to 512-byte requests it cannot take with O_DIRECT, serves aligned ones', async (t) => {
    if (process.getuid?.() !== 0 || !loadUring().ok) {
      const why = process.getuid?.() !== 0 ? 'needs root for losetup' : 'io_uring unavailable';
      if (process.env.REFLEX_ALLOW_SKIP === '1') return t.skip(why);
      assert.fail(`${why}; set REFLEX_ALLOW_SKIP=1 to skip`);
    }
    const file = path.join(dir, 'lb4k.img');
    fs.writeFileSync(file, Buffer.alloc(0));
    fs.truncateSync(file, 16 * MiB);
    let loop: string;
    try {
      loop = execFileSync('losetup', ['--find', '--show', '--sector-size', '4096', file], { encoding: 'utf8' }).trim();
    } catch (err) {
      if (process.env.REFLEX_ALLOW_SKIP === '1') return t.skip(`losetup failed: ${(err as Error).message}`);
      throw err;
    }
    try {
      const server = await startServer(resolveConfig({ device: loop, engine: 'uring', workers: 1, ports: [{ port: 0 }] }, 1));
      try {
        const peer = await RawPeer.connect(server.bindings[0].port);
        peer.send(header(Cmd.GET, 1, 1, 1), header(Cmd.GET, 2, 8, 8), header(Cmd.GET, 3, 8, 4));
        await peer.waitReplies(3);
        assert.equal(peer.byHandle(1)!.opcode, Status.EINVAL, '512 B at offset 512');
        assert.equal(peer.byHandle(2)!.opcode, Cmd.GET, '4 KiB at offset 4 KiB');
        assert.equal(peer.byHandle(3)!.opcode, Status.EINVAL, '2 KiB at offset 4 KiB');
        peer.close();
      } finally {
        await server.close();
      }
    } finally {
      execFileSync('losetup', ['-d', loop]);
    }
  });
});

describe('the fallback is said, once', () => {
  it('reflex serve with REFLEX_NO_URING=1 prints one warning line naming why, and still serves', async () => {
    const file = path.join(dir, 'fallback.img');
    const saved = process.env.REFLEX_NO_URING;
    process.env.REFLEX_NO_URING = '1';
    let p: ServerProcess;
    try {
      p = await spawnServer(['--device', file, '--size', '16M', '--port', '0', '--workers', '1', '--no-admin', '--no-persist']);
    } finally {
      if (saved === undefined) delete process.env.REFLEX_NO_URING;
      else process.env.REFLEX_NO_URING = saved;
    }
    try {
      const c = await connect({ host: '127.0.0.1', port: p.ports[0] });
      const data = Buffer.alloc(4096, 0x5a);
      await c.write(8192, data);
      assert.ok((await c.read(8192, 4096)).equals(data), 'the fs engine serves');
      await c.close();
      const warnings = p.output().split('\n').filter((l) => l.startsWith('warning:'));
      assert.equal(warnings.length, 1, p.output());
      assert.match(warnings[0], /io_uring engine unavailable \(io_uring disabled by REFLEX_NO_URING=1\); using Node's fs engine/);
    } finally {
      p.kill('SIGTERM');
      await p.exited;
    }
  });
});
