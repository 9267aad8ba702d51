/**
 * Data connections are counted per worker when accepted and when they end,
 * by why they ended, and the counts reach /metrics and /api/stats: a client
 * that closes (peer), one that resets (error), one that sends a bad frame or
 * a bad NBD handshake (protocol), one whose tenant is removed (revoked), and
 * one still open when the server shuts down (shutdown), and an NBD client
 * that never finishes negotiating (timeout).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { connect } from '../../src/client/index.ts';
import { startServer } from '../../src/dataplane/server.ts';
import { resolveConfig } from '../../src/control/config.ts';
import { header } from '../helpers/raw-peer.ts';
import { Cmd } from '../../src/protocol/reflex-constants.ts';
import { Cmd as NbdCmd } from '../../src/nbd/constants.ts';
import { encodeRequest } from '../../src/nbd/client-codec.ts';
import { go, greet, simple } from '../helpers/nbd-raw.ts';

const MiB = 1 << 20;

/** Sums of the connection counters over workers, as /metrics shows them. */
async function scrape(adminPort: number): Promise<{ opened: number; closed: Record<string, number> }> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  let opened = 0;
  const closed: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (line.startsWith('reflex_worker_connections_opened_total{')) opened += Number(line.split(' ').at(-1));
    const m = /^reflex_worker_connections_closed_total\{.*reason="(\w+)".*\} (\d+)/.exec(line);
    if (m !== null) closed[m[1]] = (closed[m[1]] ?? 0) + Number(m[2]);
  }
  return { opened, closed };
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`timed out waiting for ${what}`);
}

function rawConnect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => resolve(s));
    s.once('error', reject);
  });
}

test('connections are counted when accepted and when they end, by reason', async () => {
  const server = await startServer(
    resolveConfig({ memory: 16 * MiB, workers: 2, attachPort: 0, nbdPort: 0, adminPort: 0, adminToken: 'conn-metrics-token-0123', ports: [{ port: 0, volumeSize: '4M' }] }, 2),
  );
  const port = server.bindings[0].port;
  const admin = server.adminPort!;
  let closedServer = false;
  try {
    const expect = async (reason: string, n: number): Promise<void> => {
      await until(`${n} '${reason}' closes`, async () => ((await scrape(admin)).closed[reason] ?? 0) >= n);
    };
    // peer: a client closes.
    const c = await connect({ port });
    await c.read(0, 4096);
    await c.close();
    await expect('peer', 1);
    // error: a client resets the connection.
    const r = await rawConnect(port);
    await new Promise((res) => setTimeout(res, 50));
    r.resetAndDestroy();
    await expect('error', 1);
    // protocol: a frame with a bad magic loses the stream; the server answers and closes.
    const bad = await rawConnect(port);
    bad.on('error', () => {});
    const ended = new Promise((res) => bad.once('end', res));
    bad.resume();
    bad.write(header(Cmd.GET, 1, 0, 8, 0x4242));
    await ended;
    bad.destroy();
    await expect('protocol', 1);
    // protocol, NBD: a client whose handshake flags are not fixed newstyle.
    const nbd = await rawConnect(server.nbdPort!);
    nbd.on('error', () => {});
    nbd.on('data', () => {});
    const nbdEnded = new Promise((res) => nbd.once('end', res));
    nbd.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    await nbdEnded;
    nbd.destroy();
    await expect('protocol', 2);
    // revoked: the tenant of an attached connection is removed.
    const t = await server.control.createTenant({ name: 'gone', class: 'BE', volumeSize: MiB, credential: true });
    assert.ok(t.ok, t.ok ? '' : t.reason);
    const g = await connect({ port: server.attachPort!, attach: { tenant: 'gone', volume: 'gone', secret: t.value.secret! } });
    assert.ok((await server.control.removeTenant('gone')).ok);
    await expect('revoked', 1);
    g.destroy();
    const now = await scrape(admin);
    assert.equal(now.opened, 5, `opened ${now.opened}`);
    // The same numbers in /api/stats, per worker.
    const stats = (await (await fetch(`http://127.0.0.1:${admin}/api/stats`)).json()) as { workers: Array<{ connectionsOpened: number; connectionsClosed: Record<string, number> }> };
    assert.equal(stats.workers.reduce((a, w) => a + w.connectionsOpened, 0), now.opened);
    assert.equal(stats.workers.reduce((a, w) => a + w.connectionsClosed.revoked, 0), 1);
    // shutdown: a connection still open when the server drains.
    const last = await connect({ port });
    await last.read(0, 4096);
    await server.close();
    closedServer = true;
    const after = server.control.workerStats().reduce((a, w) => a + w.connectionsClosed.shutdown, 0);
    assert.equal(after, 1, 'the open connection counted as ended by shutdown: ' + JSON.stringify(server.control.workerStats()));
    last.destroy();
  } finally {
    if (!closedServer) await server.close();
  }
});

test('an NBD client stalled in negotiation is cut off after nbdHandshakeTimeoutMs and counted as timeout; a negotiated idle one stays', async () => {
  const server = await startServer(
    resolveConfig({ memory: 16 * MiB, workers: 1, nbdPort: 0, adminPort: 0, adminToken: 'conn-metrics-token-0123', nbdHandshakeTimeoutMs: 300, ports: [{ port: 0, volumeSize: '4M' }] }, 1),
  );
  try {
    const name = [...server.control.registry.volumes.keys()][0];
    // Greeting read and flags sent, then nothing: the server must not wait for ever.
    const stalled = await greet(server.nbdPort!);
    const t0 = performance.now();
    await stalled.closed(5000);
    const waited = performance.now() - t0;
    assert.ok(waited >= 250 && waited < 3000, `cut off after ${waited.toFixed(0)} ms`);
    stalled.destroy();
    await until("a 'timeout' close", async () => ((await scrape(server.adminPort!)).closed.timeout ?? 0) === 1);
    // Negotiated, then idle for longer than the timeout: still served.
    const idle = await greet(server.nbdPort!);
    await go(idle, name);
    await new Promise((r) => setTimeout(r, 700));
    idle.send(encodeRequest({ type: NbdCmd.READ, cookieLo: 7, offset: 0, length: 4096 }));
    const reply = await simple(idle, 4096);
    assert.equal(reply.error, 0);
    assert.equal(reply.cookie, 7);
    idle.destroy();
    assert.equal((await scrape(server.adminPort!)).closed.timeout ?? 0, 1, 'only the stalled client timed out');
  } finally {
    await server.close();
  }
});

test('nbdHandshakeTimeoutMs out of range is a config error', () => {
  for (const bad of [0, 99, 600_001, 1.5]) assert.throws(() => resolveConfig({ memory: MiB, nbdHandshakeTimeoutMs: bad }, 1), /nbdHandshakeTimeoutMs/);
});
