/**
 * The client library against the real server (in-process, memory engine).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { useMemoryServer } from '../helpers/memory-server.ts';
import { connect, ReflexError } from '../../src/client/index.ts';
import { DEFAULT_COALESCE_US } from '../../src/control/config.ts';
import type { WorkerStatsView } from '../../src/control/control-plane.ts';
import { sleepUs } from '../../src/util/precise-sleep.ts';

const VOLUME = 64 * 2 ** 20;
const server = useMemoryServer();

test('HELLO reports the volume and sector size', async () => {
  const c = await connect({ port: server.port });
  try {
    assert.ok(c.info !== null);
    assert.equal(c.info.volumeSize, VOLUME);
    assert.equal(c.info.sectorSize, 512);
    assert.equal(c.sectorSize, 512);
    assert.ok(c.info.maxRequestBytes >= 4096);
  } finally {
    await c.close();
  }
});

test('random writes over many connections read back identical, pipelined and concurrent', async () => {
  const c = await connect({ port: server.port, connections: 4 });
  try {
    // Non-overlapping regions so that concurrent requests cannot race each other.
    const regions = 256;
    const stride = VOLUME / regions; // 256 KiB
    const writes: Array<{ off: number; data: Buffer }> = [];
    for (let i = 0; i < regions; i++) {
      const sectors = randomInt(1, stride / 512 + 1);
      const maxStart = stride / 512 - sectors;
      const off = i * stride + randomInt(0, maxStart + 1) * 512;
      writes.push({ off, data: randomBytes(sectors * 512) });
    }
    await Promise.all(writes.map((w) => c.write(w.off, w.data)));
    const back = await Promise.all(writes.map((w) => c.read(w.off, w.data.length)));
    for (let i = 0; i < writes.length; i++) assert.ok(back[i].equals(writes[i].data), `region ${i} differs`);
    // Every connection carried traffic.
    assert.equal(c.pool.outstanding, 0);
  } finally {
    await c.close();
  }
});

test('several clients at once each see their own data', async () => {
  const clients = await Promise.all([0, 1, 2].map(() => connect({ port: server.port, connections: 2 })));
  try {
    await Promise.all(
      clients.map(async (c, k) => {
        const base = 40 * 2 ** 20 + k * 2 ** 20;
        const data = randomBytes(64 * 1024);
        for (let i = 0; i < 8; i++) {
          await c.write(base + i * 65536, data);
          const back = await c.read(base + i * 65536, data.length);
          assert.ok(back.equals(data));
        }
      }),
    );
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
});

test('writeNoAck then read sees the data; FUA write and flush succeed', async () => {
  const c = await connect({ port: server.port });
  try {
    const data = randomBytes(8192);
    c.writeNoAck(1 << 20, data);
    const back = await c.read(1 << 20, 8192);
    assert.ok(back.equals(data));
    const d2 = randomBytes(4096);
    await c.write(2 << 20, d2, { fua: true });
    await c.flush();
    assert.ok((await c.read(2 << 20, 4096)).equals(d2));
  } finally {
    await c.close();
  }
});

test('trim and writeZeroes read back zeros', async () => {
  const c = await connect({ port: server.port });
  try {
    const off = 3 << 20;
    await c.write(off, randomBytes(65536));
    await c.writeZeroes(off, 16384);
    assert.ok((await c.read(off, 16384)).equals(Buffer.alloc(16384)));
    assert.ok(!(await c.read(off + 16384, 4096)).equals(Buffer.alloc(4096)), 'beyond the zeroed range the data stays');
    await c.trim(off + 16384, 49152);
    assert.ok((await c.read(off, 65536)).equals(Buffer.alloc(65536)));
  } finally {
    await c.close();
  }
});

test('an out-of-range read fails with ERANGE and the connection keeps working', async () => {
  const c = await connect({ port: server.port });
  try {
    await assert.rejects(c.read(VOLUME, 4096), (err: unknown) => err instanceof ReflexError && err.code === 'ERANGE');
    await assert.rejects(c.read(VOLUME - 512, 1024), (err: unknown) => err instanceof ReflexError && err.code === 'ERANGE');
    const data = randomBytes(4096);
    await c.write(VOLUME - 4096, data);
    assert.ok((await c.read(VOLUME - 4096, 4096)).equals(data));
  } finally {
    await c.close();
  }
});

test('misaligned or oversized requests are refused before sending', async () => {
  const c = await connect({ port: server.port });
  try {
    await assert.rejects(c.read(100, 512), RangeError);
    await assert.rejects(c.read(0, 100), RangeError);
    await assert.rejects(c.write(512, Buffer.alloc(513)), RangeError);
    await assert.rejects(c.read(0, c.maxRequestBytes + 512), RangeError);
    assert.throws(() => c.writeNoAck(1, Buffer.alloc(512)), RangeError);
    assert.equal(c.pool.outstanding, 0);
    assert.equal((await c.read(0, 512)).length, 512);
  } finally {
    await c.close();
  }
});

const coalescing = { skip: sleepUs === null ? 'SKIPPED LOUDLY: the native addon (sleepUs) is not built, so workers do not coalesce' : false };

/** The worker's coalescing counters once it has finished its turn (the check runs just after the replies leave). */
async function settledStats(): Promise<WorkerStatsView> {
  await new Promise((r) => setTimeout(r, 50));
  return server.srv.control.workerStats()[0];
}

test('receive coalescing shows per worker: pipelined turns sleep, a lone depth-1 client never waits', coalescing, async () => {
  const c = await connect({ port: server.port });
  try {
    const start = await settledStats();
    for (let i = 0; i < 20; i++) await c.read(i * 4096, 4096);
    const alone = await settledStats();
    assert.ok(alone.coalesceChecks - start.coalesceChecks >= 20, `one check per reply turn (${alone.coalesceChecks - start.coalesceChecks})`);
    assert.equal(alone.coalesceSleeps, start.coalesceSleeps, 'depth 1: no turn carried two requests');
    await Promise.all(Array.from({ length: 64 }, (_, i) => c.read(i * 4096, 4096)));
    const piped = await settledStats();
    assert.ok(piped.coalesceSleeps > alone.coalesceSleeps, 'a turn with many requests is followed by a sleep');
    assert.equal(piped.coalesceSleptUs - alone.coalesceSleptUs, (piped.coalesceSleeps - alone.coalesceSleeps) * DEFAULT_COALESCE_US);
  } finally {
    await c.close();
  }
});

test('an LC tenant\'s objective caps the coalescing sleep at 5% of it, and removing it lifts the cap', coalescing, async () => {
  const made = await server.srv.control.createTenant({ name: 'lc-cap', class: 'LC', iops: 1000, p95Us: 500 });
  assert.ok(made.ok, made.ok ? '' : made.reason);
  const c = await connect({ port: server.port });
  const pipelined = async (): Promise<{ sleeps: number; sleptUs: number }> => {
    const before = await settledStats();
    await Promise.all(Array.from({ length: 64 }, (_, i) => c.read(i * 4096, 4096)));
    const after = await settledStats();
    return { sleeps: after.coalesceSleeps - before.coalesceSleeps, sleptUs: after.coalesceSleptUs - before.coalesceSleptUs };
  };
  try {
    const capped = await pipelined();
    assert.ok(capped.sleeps > 0, 'pipelined turns still sleep');
    assert.equal(capped.sleptUs, capped.sleeps * 25, '5% of a 500 µs objective');
  } finally {
    const removed = await server.srv.control.removeTenant('lc-cap');
    assert.ok(removed.ok, removed.ok ? '' : removed.reason);
  }
  try {
    const free = await pipelined();
    assert.ok(free.sleeps > 0);
    assert.equal(free.sleptUs, free.sleeps * DEFAULT_COALESCE_US, 'no LC tenant left: the configured sleep');
  } finally {
    await c.close();
  }
});
