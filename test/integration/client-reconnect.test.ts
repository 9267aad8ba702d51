/**
 * The client library across server restarts (`connect({ reconnect })`):
 * requests in flight when the server dies are sent again once it is back and
 * every one completes with the right data; requests that wait longer than
 * their timeout fail with ETIMEDOUT while the client keeps trying; a server
 * that refuses the credential ends the reconnecting with EPERM; close() stops
 * it. Servers are real processes on a real file, killed with SIGKILL or
 * stopped with SIGTERM (which drains and answers ESHUTDOWN).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { connect, type ReflexClient, type ReflexError } from '../../src/client/index.ts';
import { freePort, startServer } from '../../src/dataplane/server.ts';
import { resolveConfig } from '../../src/control/config.ts';
import { spawnServer, type ServerProcess } from '../reliability/server-process.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';

const BLOCK = 4096;
const MiB = 1 << 20;
let dir: string;
let device: string;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reflex-reconnect-'));
  device = path.join(dir, 'device.img');
  fs.writeFileSync(device, '');
  fs.truncateSync(device, 64 * MiB);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function serverOn(port: number): Promise<ServerProcess> {
  return spawnServer(['--device', device, '--size', '64M', '--port', String(port), '--workers', '1', '--no-persist', '--no-admin']);
}

async function stop(s: ServerProcess, sig: NodeJS.Signals): Promise<void> {
  s.kill(sig);
  await s.exited;
}

/**
 * An in-process memory server behind a TcpProxy (so a test can cut, freeze
 * or black-hole the path) and a reconnecting client through it; all three
 * are torn down after `body`.
 */
async function proxied(
  o: { faults?: string; timeoutMs: number; connectTimeoutMs?: number },
  body: (c: ReflexClient, proxy: TcpProxy) => Promise<void>,
): Promise<void> {
  const server = await startServer(resolveConfig({ memory: 16 * MiB, workers: 1, faults: o.faults, ports: [{ port: 0, volumeSize: '8M' }] }, 1));
  const proxy = await TcpProxy.start(server.bindings[0].port);
  try {
    const c = await connect({ port: proxy.port, timeoutMs: o.timeoutMs, connectTimeoutMs: o.connectTimeoutMs, reconnect: { initialDelayMs: 10, maxDelayMs: 20 } });
    try {
      await body(c, proxy);
    } finally {
      c.destroy();
    }
  } finally {
    await proxy.close();
    await server.close();
  }
}

/** A block's contents for (lane, version): every byte says which write it was. */
function pattern(lane: number, version: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  for (let i = 0; i < BLOCK; i += 8) {
    b.writeUInt32LE(lane, i);
    b.writeUInt32LE(version, i + 4);
  }
  return b;
}

/** Writes then reads back its own block, `rounds` times; throws on any failure or mismatch. */
async function lane(c: ReflexClient, n: number, rounds: number, progress: number[]): Promise<void> {
  for (let v = 1; v <= rounds; v++) {
    const data = pattern(n, v);
    await c.write(n * BLOCK, data);
    const back = await c.read(n * BLOCK, BLOCK);
    assert.ok(back.equals(data), `lane ${n} round ${v}: read back something else`);
    if (v % 4 === 0) await c.flush();
    progress[n] = v;
  }
}

describe('client reconnect', () => {
  for (const sig of ['SIGKILL', 'SIGTERM'] as const) {
    it(`requests in flight when the server gets ${sig} complete once it is back, with the right data`, async () => {
      const port = await freePort();
      let server = await serverOn(port);
      const c = await connect({ port, connections: 2, timeoutMs: 20_000, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
      const events: string[] = [];
      c.on('disconnect', (e: { connection: number }) => events.push(`disconnect ${e.connection}`));
      c.on('reconnect', (e: { connection: number }) => events.push(`reconnect ${e.connection}`));
      try {
        const before = pattern(99, 1);
        await c.write(99 * BLOCK, before);
        await c.flush();
        const LANES = 8;
        const ROUNDS = 60;
        const progress = new Array<number>(LANES).fill(0);
        // Settled, not raced: a lane's failure is reported below, not as an unhandled rejection.
        const lanes = Array.from({ length: LANES }, (_, n) => lane(c, n, ROUNDS, progress).then(() => null, (e: Error) => e));
        // Let the lanes get going, then take the server away mid-stream.
        while (progress.reduce((a, b) => a + b, 0) < LANES * 4) await new Promise((r) => setTimeout(r, 5));
        await stop(server, sig);
        const atStop = progress.reduce((a, b) => a + b, 0);
        await new Promise((r) => setTimeout(r, 300));
        assert.ok(c.pool.connections.every((conn) => conn.closed), 'the connections saw the server go');
        server = await serverOn(port);
        const failures = (await Promise.all(lanes)).filter((e) => e !== null);
        assert.deepEqual(failures.map((e) => e.message), [], 'every request completed');
        assert.ok(atStop < LANES * ROUNDS, 'the server went away while the lanes were still running');
        assert.deepEqual(progress, new Array<number>(LANES).fill(ROUNDS));
        for (let n = 0; n < LANES; n++) assert.ok((await c.read(n * BLOCK, BLOCK)).equals(pattern(n, ROUNDS)), `lane ${n}: last write`);
        assert.ok((await c.read(99 * BLOCK, BLOCK)).equals(before), 'a flushed write from before the restart');
        assert.ok(events.includes('disconnect 0') && events.includes('disconnect 1'), events.join(', '));
        assert.ok(events.includes('reconnect 0') && events.includes('reconnect 1'), events.join(', '));
        assert.equal(c.reconnectGaveUp, null);
      } finally {
        await c.close();
        await stop(server, 'SIGKILL');
      }
    });
  }

  it('a request that waits past its timeout fails with ETIMEDOUT, and the client reconnects when the server is back', async () => {
    const port = await freePort();
    let server = await serverOn(port);
    const c = await connect({ port, timeoutMs: 600, reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
    try {
      await c.write(0, pattern(1, 1));
      await stop(server, 'SIGKILL');
      const t0 = performance.now();
      const err = (await c.read(0, BLOCK).then(() => null, (e: ReflexError) => e))!;
      const waited = performance.now() - t0;
      assert.ok(err !== null, 'the read cannot succeed with no server');
      assert.equal(err.code, 'ETIMEDOUT', err.message);
      assert.ok(waited >= 500, `failed after ${waited.toFixed(0)} ms, before its deadline`);
      const reconnected = new Promise((r) => c.once('reconnect', r));
      server = await serverOn(port);
      await reconnected;
      assert.ok((await c.read(0, BLOCK)).equals(pattern(1, 1)));
    } finally {
      await c.close();
      await stop(server, 'SIGKILL');
    }
  });

  it('without reconnect, a lost connection fails its requests with ECONNRESET at once', async () => {
    const port = await freePort();
    const server = await serverOn(port);
    const c = await connect({ port, timeoutMs: 10_000 });
    try {
      await stop(server, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 50));
      await assert.rejects(c.read(0, BLOCK), { code: 'ECONNRESET' });
    } finally {
      c.destroy();
    }
  });

  it('close() while the server is away stops reconnecting and fails waiting requests with ECONNRESET', async () => {
    const port = await freePort();
    const server = await serverOn(port);
    const c = await connect({ port, timeoutMs: 30_000, reconnect: { initialDelayMs: 20, maxDelayMs: 50 } });
    let reconnects = 0;
    c.on('reconnect', () => reconnects++);
    await stop(server, 'SIGKILL');
    const waiting = c.read(0, BLOCK);
    await new Promise((r) => setTimeout(r, 200));
    await c.close();
    await assert.rejects(waiting, { code: 'ECONNRESET' });
    // A server that comes back now must not see the closed client again.
    const again = await serverOn(port);
    await new Promise((r) => setTimeout(r, 200));
    await stop(again, 'SIGKILL');
    assert.equal(reconnects, 0);
  });

  it('a server that refuses the credential on reconnect ends it with EPERM, for waiting and later requests', async () => {
    const server = await startServer(resolveConfig({ memory: 16 * MiB, workers: 1, attachPort: 0 }, 1));
    let c: ReflexClient | null = null;
    try {
      const r = await server.control.createTenant({ name: 'gone', class: 'BE', volumeSize: MiB, credential: true });
      assert.ok(r.ok, r.ok ? '' : r.reason);
      c = await connect({ port: server.attachPort!, timeoutMs: 10_000, attach: { tenant: 'gone', volume: 'gone', secret: r.value.secret! }, reconnect: { initialDelayMs: 20, maxDelayMs: 50 } });
      await c.write(0, pattern(2, 1));
      const gaveUp = new Promise<Error>((resolve) => c!.once('giveup', resolve));
      // Removing the tenant cuts its connection; the reconnect's ATTACH is then refused.
      const removed = await server.control.removeTenant('gone');
      assert.ok(removed.ok);
      const err = await gaveUp;
      assert.equal((err as ReflexError).code, 'EPERM', err.message);
      assert.equal(c.reconnectGaveUp, err);
      await assert.rejects(c.read(0, BLOCK), { code: 'EPERM' });
    } finally {
      c?.destroy();
      await server.close();
    }
  });

  it('a request sent again keeps its first deadline', async () => {
    // Every device request takes 1.5 s, so the read is still in flight when its connection is cut.
    await proxied({ faults: 'delay-us=1500000', timeoutMs: 1000 }, async (c, proxy) => {
      const t0 = performance.now();
      const read = c.read(0, BLOCK).then(() => null, (e: ReflexError) => e);
      const reconnected = new Promise((r) => c.once('reconnect', r));
      setTimeout(() => proxy.cut(), 300);
      await reconnected;
      const err = await read;
      const took = performance.now() - t0;
      assert.equal(err?.code, 'ETIMEDOUT');
      assert.ok(took < 1250, `failed after ${took.toFixed(0)} ms: the re-send got a fresh timeout`);
    });
  });

  it('a server that accepts and never answers the handshake does not stall reconnecting, and close() leaves no socket behind', async () => {
    await proxied({ timeoutMs: 10_000, connectTimeoutMs: 300 }, async (c, proxy) => {
      await c.write(0, pattern(3, 1));
      proxy.blackhole = true;
      const accepted = proxy.accepted;
      proxy.cut();
      const read = c.read(0, BLOCK);
      // Two attempts that hang, each given up after connectTimeoutMs; then the server answers again.
      while (proxy.accepted < accepted + 4) await new Promise((r) => setTimeout(r, 20));
      proxy.blackhole = false;
      const t1 = performance.now();
      assert.ok((await read).equals(pattern(3, 1)));
      assert.ok(performance.now() - t1 < 1000, 'the first attempt after the server answered again succeeded');
      const d = await connect({ port: proxy.port, timeoutMs: 10_000, connectTimeoutMs: 5000, reconnect: { initialDelayMs: 10, maxDelayMs: 20 } });
      try {
        // d is stuck in a handshake that will never be answered: close() must end it.
        proxy.blackhole = true;
        const before = proxy.accepted;
        for (const conn of d.pool.connections) conn.destroy();
        while (proxy.accepted === before) await new Promise((r) => setTimeout(r, 10));
        const t0 = performance.now();
        await d.close();
        assert.ok(performance.now() - t0 < 500, 'close() waited for the hung handshake');
        for (let i = 0; i < 50 && proxy.openClients > 1; i++) await new Promise((r) => setTimeout(r, 10));
        assert.equal(proxy.openClients, 1, 'only c’s connection is left open');
      } finally {
        d.destroy();
      }
    });
  });

  it('a connection that silently stops answering is replaced once a request on it times out', async () => {
    await proxied({ timeoutMs: 400 }, async (c, proxy) => {
      await c.write(0, pattern(4, 1));
      const reconnected = new Promise((r) => c.once('reconnect', r));
      proxy.freeze();
      await assert.rejects(c.read(0, BLOCK), { code: 'ETIMEDOUT' });
      const giveUp = new Promise((_, reject) => setTimeout(() => reject(new Error('the dead connection was not replaced')), 3000).unref());
      await Promise.race([reconnected, giveUp]);
      assert.ok((await c.read(0, BLOCK)).equals(pattern(4, 1)), 'served on the new connection');
    });
  });

  it('after a connection is given up for a timeout, its reads are sent again but its writes fail with ECONNABORTED', async () => {
    await proxied({ timeoutMs: 400 }, async (c, proxy) => {
      await c.write(0, pattern(5, 1));
      proxy.freeze();
      const first = c.read(0, BLOCK).then(() => null, (e: ReflexError) => e.code);
      await new Promise((r) => setTimeout(r, 200));
      // Outstanding when the first read's timeout condemns the connection.
      const write = c.write(BLOCK, pattern(5, 2)).then(() => null, (e: ReflexError) => e.code);
      const read = c.read(0, BLOCK).then((b) => b.equals(pattern(5, 1)), (e: ReflexError) => e.code);
      assert.equal(await first, 'ETIMEDOUT');
      assert.equal(await write, 'ECONNABORTED', 'a write that may still land must not be sent again');
      assert.equal(await read, true, 'a read is sent again on the new connection');
    });
  });

  it('a slow server after a reconnect is not taken for dead: inherited deadlines do not condemn the new connection', async () => {
    // Every request takes 250 ms on the device, well inside the 400 ms timeout.
    await proxied({ faults: 'delay-us=250000', timeoutMs: 400 }, async (c, proxy) => {
      const stop = { now: false };
      let ok = 0;
      const lanes = Array.from({ length: 8 }, async (_, n) => {
        // Staggered, so the lanes' deadlines are spread over the timeout.
        await new Promise((r) => setTimeout(r, n * 31));
        while (!stop.now) {
          try {
            await c.read(0, BLOCK);
            ok++;
          } catch {
            // Timeouts around the stall are expected.
          }
        }
      });
      try {
        await new Promise((r) => setTimeout(r, 300));
        proxy.freeze();
        await new Promise((r) => setTimeout(r, 1000));
        const before = ok;
        await new Promise((r) => setTimeout(r, 1500));
        assert.ok(ok - before >= 16, `only ${ok - before} reads completed in 1.5 s after the stall (8 lanes at 250 ms each could do ~48)`);
      } finally {
        stop.now = true;
        c.destroy();
        await Promise.all(lanes);
      }
    });
  });

  it('bad reconnect options are a RangeError before any connection is opened', async () => {
    let accepted = 0;
    const peer = net.createServer((sock) => {
      accepted++;
      sock.destroy();
    });
    await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
    const port = (peer.address() as net.AddressInfo).port;
    try {
      for (const reconnect of [{ initialDelayMs: 0 }, { initialDelayMs: 100, maxDelayMs: 10 }, { maxDelayMs: Infinity }, { initialDelayMs: Number.NaN }]) {
        await assert.rejects(connect({ port, hello: false, reconnect }), RangeError, JSON.stringify(reconnect));
      }
      assert.equal(accepted, 0, 'a connection was opened for a client that could not be made');
    } finally {
      await new Promise<void>((r) => peer.close(() => r()));
    }
  });
});
