/**
 * A server started with a push URL POSTs its stats to a controller (here a
 * loopback HTTP server) every interval: who it is, its devices, and each
 * tenant's live numbers, which move once there is traffic. A controller that
 * is down does not disturb serving.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { connect } from '../../src/client/index.ts';
import { freePort, startServer } from '../../src/dataplane/server.ts';
import { resolveConfig } from '../../src/control/config.ts';
import type { PushedStats } from '../../src/control/stats-push.ts';

const MiB = 1 << 20;

test('stats are pushed every interval with the server identity and live tenant numbers', async () => {
  const docs: PushedStats[] = [];
  const controller = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      assert.equal(req.method, 'POST');
      assert.equal(req.headers['content-type'], 'application/json');
      docs.push(JSON.parse(body) as PushedStats);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => controller.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(controller.address() as { port: number }).port}/reflex`;
  // The controller is closed even when the server fails to start.
  const server = await startServer(
    resolveConfig({ memory: 16 * MiB, workers: 1, pushUrl: url, pushIntervalMs: 200, serverId: 'flash-7', adminPort: 0, adminToken: 'push-test-token-0123', ports: [{ port: 0, volumeSize: '8M' }] }, 1),
  ).catch(async (err: unknown) => {
    await new Promise<void>((r) => controller.close(() => r()));
    throw err;
  });
  try {
    const port = server.bindings[0].port;
    const c = await connect({ port });
    // Traffic for a couple of sampler seconds, so a pushed document carries a rate.
    const until = Date.now() + 2300;
    while (Date.now() < until) await c.read(0, 4096);
    await c.close();
    const deadline = Date.now() + 3000;
    while (!docs.some((d) => (d.tenants[0]?.current.iops ?? 0) > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(docs.length >= 5, `only ${docs.length} pushes in about 2.5 s at 200 ms`);
    const last = docs.at(-1)!;
    assert.equal(last.server.id, 'flash-7');
    assert.deepEqual(last.server.ports, [port]);
    assert.equal(last.devices.length, 1);
    assert.equal(last.tenants.length, 1);
    assert.equal('series' in last.tenants[0], false);
    assert.ok(docs.some((d) => (d.tenants[0].current.iops ?? 0) > 0), 'no pushed document shows the reads');
    assert.ok(last.tenants[0].totals.readOps > 0);
    assert.equal(server.push!.state.failed, 0);
    // The same counts on /metrics.
    const metrics = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
    const sent = /^reflex_stats_push_total\{result="sent"\} (\d+)/m.exec(metrics);
    assert.ok(sent !== null && Number(sent[1]) >= 5, `no push count on /metrics:\n${metrics.split('\n').filter((l) => l.includes('push')).join('\n')}`);
  } finally {
    await server.close();
    await new Promise<void>((r) => controller.close(() => r()));
  }
});

test('a controller that is down does not disturb serving; failures are counted', async () => {
  const dead = await freePort();
  const server = await startServer(resolveConfig({ memory: 16 * MiB, workers: 1, pushUrl: `http://127.0.0.1:${dead}/`, pushIntervalMs: 100, ports: [{ port: 0, volumeSize: '8M' }] }, 1));
  try {
    const c = await connect({ port: server.bindings[0].port });
    const data = Buffer.alloc(4096, 9);
    for (let i = 0; i < 50; i++) {
      await c.write(i * 4096, data);
      assert.ok((await c.read(i * 4096, 4096)).equals(data));
    }
    await c.close();
    const deadline = Date.now() + 2000;
    while (server.push!.state.failed < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(server.push!.state.failed >= 2, `failed ${server.push!.state.failed}`);
    assert.equal(server.push!.state.sent, 0);
    assert.match(server.push!.state.lastError ?? '', /ECONNREFUSED/);
  } finally {
    await server.close();
  }
});

test('a controller that answers garbage counts as failing and does not disturb serving', async () => {
  // Not HTTP at all: a line of noise, then the connection closes.
  const socks = new Set<net.Socket>();
  const noisy = net.createServer((sock) => {
    socks.add(sock);
    sock.on('error', () => {});
    sock.end('\u0000\u0001 not http at all\r\n');
  });
  // The client may keep its side open: close() waits for every connection.
  const closeNoisy = (): Promise<void> => {
    for (const sock of socks) sock.destroy();
    return new Promise<void>((r) => noisy.close(() => r()));
  };
  await new Promise<void>((r) => noisy.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(noisy.address() as net.AddressInfo).port}/`;
  const server = await startServer(resolveConfig({ memory: 16 * MiB, workers: 1, pushUrl: url, pushIntervalMs: 100, ports: [{ port: 0, volumeSize: '8M' }] }, 1)).catch(async (err: unknown) => {
    await closeNoisy();
    throw err;
  });
  try {
    const c = await connect({ port: server.bindings[0].port });
    const data = Buffer.alloc(4096, 3);
    await c.write(0, data);
    assert.ok((await c.read(0, 4096)).equals(data));
    await c.close();
    const deadline = Date.now() + 2000;
    while (server.push!.state.failed < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(server.push!.state.failed >= 2, `failed ${server.push!.state.failed}`);
    assert.equal(server.push!.state.sent, 0);
    assert.ok((server.push!.state.lastError ?? '').length > 0);
  } finally {
    await server.close();
    await closeNoisy();
  }
});
