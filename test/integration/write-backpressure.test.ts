/**
 * A client that pipelines large writes to a slow device must not make the
 * server hold them all: the connection stops reading once about 4 MiB of
 * request data is in flight (write payloads count as read replies do), on
 * the native protocol and on NBD. The device here takes a second per request
 * (fault injection), and the worker's gauges show what the server holds.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { resolveConfig } from '../../src/control/config.ts';
import { startServer, type RunningServer } from '../../src/dataplane/server.ts';
import { Cmd } from '../../src/protocol/reflex-constants.ts';
import { Cmd as NbdCmd } from '../../src/nbd/constants.ts';
import { encodeRequest } from '../../src/nbd/client-codec.ts';
import { header } from '../helpers/raw-peer.ts';
import { go, greet } from '../helpers/nbd-raw.ts';

const MiB = 1 << 20;
const TOKEN = 'write-backpressure-token';
let server: RunningServer;

before(async () => {
  server = await startServer(
    resolveConfig({ memory: 128 * MiB, workers: 1, qos: false, faults: 'delay-us=1000000', nbdPort: 0, adminPort: 0, adminToken: TOKEN, ports: [{ port: 0, tenant: 'slow', volumeOffset: 0, volumeSize: 64 * MiB }] }, 1),
  );
});
after(async () => {
  await server.close(3000);
});

async function gauge(): Promise<number> {
  const s = (await (await fetch(`http://127.0.0.1:${server.adminPort}/api/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { workers: Array<{ deviceInFlight: number }> };
  return s.workers[0].deviceInFlight;
}

/** Requests the worker holds at the device once the gauges have caught up. */
async function held(): Promise<number> {
  await new Promise((r) => setTimeout(r, 300));
  return gauge();
}

/** Waits out an earlier test's writes, still at the slow device after their connection went. */
async function idle(): Promise<void> {
  for (let i = 0; i < 60 && (await gauge()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await gauge(), 0, 'the device is idle before the test');
}

test('native: 48 pipelined 1 MiB SETs to a slow device, at most ~4 MiB of them held', async () => {
  await idle();
  const s = net.connect({ port: server.bindings[0].port, host: '127.0.0.1' });
  await once(s, 'connect');
  try {
    const payload = Buffer.alloc(MiB, 0x11);
    for (let i = 0; i < 48; i++) s.write(Buffer.concat([header(Cmd.SET, 1 + i, (i * MiB) / 512, MiB / 512), payload]));
    const n = await held();
    assert.ok(n >= 1 && n <= 6, `${n} writes of 1 MiB held`);
  } finally {
    s.destroy();
  }
});

test('NBD: 48 pipelined 1 MiB writes to a slow device, at most ~4 MiB of them held', async () => {
  await idle();
  const nbd = await greet(server.nbdPort!);
  try {
    await go(nbd, 'slow');
    const payload = Buffer.alloc(MiB, 0x22);
    for (let i = 0; i < 48; i++) nbd.send(encodeRequest({ type: NbdCmd.WRITE, cookieLo: 1 + i, offset: i * MiB, length: MiB }, payload));
    const n = await held();
    assert.ok(n >= 1 && n <= 6, `${n} writes of 1 MiB held`);
  } finally {
    nbd.destroy();
  }
});
